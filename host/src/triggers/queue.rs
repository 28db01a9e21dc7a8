//! [`AsyncQueue`]: durable async invocations. `POST /v1/functions/{name}/invocations` and the
//! data plane's `x-faas-invoke: async` store the request ([`AsyncQueue::enqueue`]) and answer 202
//! at once; every node's worker claims due invocations from the database (`store::invocations`)
//! and runs each through the function's HTTP handler, like a request on its route, under its
//! limits. A 5xx, a trap or a timeout is retried with exponential backoff until the function's
//! `async.max_attempts` or `async.max_age_ms`, then the invocation is dead (kept and replayable).
//! A 1xx-3xx answer is `succeeded`, a 4xx `failed` (the request itself is wrong: no retry).
//!
//! Delivery is at least once: a node that dies mid-attempt has its claim expire (the lease is
//! the function's timeout plus a margin) and the attempt runs again elsewhere, with the same
//! `x-faas-invocation-id` header, from which a function derives idempotent effects (event ids).
//! Once an outcome is recorded it is final: the fenced write (`InvocationFence`) refuses a late
//! one from a node that lost its claim.
//!
//! A result with a `callback` URL is POSTed there (through the function's outbound allow-list,
//! as its own requests are), retried, and claimed like an invocation, so a crash between the
//! result and its callback delays the callback but does not lose it.

use super::Trigger;
use crate::backoff;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::function::LoadedFunction;
use crate::runtime::invoker::{InvokeError, Invoker, record_invocation};
use crate::store::StoreError;
use crate::store::invocations::{
    AttemptOutcome, InvocationRecord, InvocationStatus, InvocationStore, NewInvocation, StoredResponse,
};
use axum::response::IntoResponse as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument as _;

/// The largest request body an invocation may queue.
pub const MAX_QUEUED_BODY_BYTES: usize = 1 << 20;
/// The most of a response body kept with the invocation; the rest is dropped (and the stored
/// headers say so with `x-faas-body-truncated: true`).
pub const MAX_KEPT_RESPONSE_BYTES: usize = 1 << 20;
/// Added to the function's timeout for the claim's lease: the time a dead node's attempt waits
/// before another node takes it over.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How long a callback delivery may take, and how often it is tried.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
const CALLBACK_ATTEMPTS: u32 = 5;
/// Headers of the queued request the function never sees: hop-by-hop ones and the queue's own.
const DROPPED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
    "x-faas-invoke",
    "x-faas-callback",
];

/// How the queue runs on this node (`faas serve --async-*`).
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// Attempts this node runs at once.
    pub concurrency: usize,
    /// How long finished invocations (and their responses) are kept.
    pub retention: Duration,
    /// How often a node looks for due work when nothing woke it: the latency of an invocation
    /// queued through another node, or of a retry coming due.
    pub poll: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self { concurrency: 64, retention: Duration::from_secs(7 * 24 * 3600), poll: Duration::from_millis(100) }
    }
}

/// A request to queue.
#[derive(Debug)]
pub struct QueuedRequest {
    pub method: String,
    /// Path and query, as the function will see them.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub idempotency_key: Option<String>,
    pub callback: Option<String>,
    pub request_id: String,
}

impl QueuedRequest {
    /// From an incoming request: its method, headers (without `skip`) and body, to run at
    /// `path`; the queue's own headers are read off (`idempotency-key` also stays for the
    /// function, which may want it too).
    pub fn from_parts(
        parts: &http::request::Parts,
        path: String,
        body: Bytes,
        request_id: &str,
        skip: &[&str],
    ) -> Self {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !skip.iter().any(|s| name.as_str().eq_ignore_ascii_case(s)))
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        Self {
            method: parts.method.to_string(),
            path,
            headers,
            body,
            idempotency_key: header("idempotency-key"),
            callback: header("x-faas-callback"),
            request_id: request_id.to_owned(),
        }
    }
}

/// Reads a request body to queue, refusing one over [`MAX_QUEUED_BODY_BYTES`].
pub async fn read_body(body: axum::body::Body) -> Result<Bytes, QueueError> {
    axum::body::to_bytes(body, MAX_QUEUED_BODY_BYTES).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|cause| cause.downcast_ref::<http_body_util::LengthLimitError>().is_some());
        if too_large {
            QueueError::BodyTooLarge { limit: MAX_QUEUED_BODY_BYTES }
        } else {
            QueueError::Invalid(format!("reading the request body failed: {error}"))
        }
    })
}

/// Why an invocation was not queued (or replayed). Mapped to HTTP in `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("function `{0}` is not deployed")]
    NotDeployed(String),
    #[error("function `{0}` exports no HTTP handler: only HTTP functions take async invocations")]
    NotHttp(String),
    #[error("the request body is over the {limit}-byte limit of a queued invocation")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "callback `{0}` is not in the function's outbound allow-list (deploy with --allow-outbound <origin> to let \
         its results be sent there)"
    )]
    CallbackNotAllowed(String),
    #[error("idempotency key `{key}` was used for invocation {id} with a different request")]
    IdempotencyConflict { key: String, id: String },
    #[error("invocation {0} not found")]
    NotFound(String),
    #[error("invocation {id} is {status}: only dead or failed invocations are replayed")]
    NotReplayable { id: String, status: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct AsyncQueue {
    store: Arc<dyn InvocationStore>,
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    metrics: Metrics,
    node: String,
    settings: QueueSettings,
    /// Wakes the worker: an invocation was queued here, or a slot came free.
    wake: Notify,
    /// Wakes the callback sender.
    wake_callbacks: Notify,
    stopping: watch::Sender<bool>,
    slots: Arc<Semaphore>,
}

impl AsyncQueue {
    pub fn new(
        store: Arc<dyn InvocationStore>,
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        metrics: Metrics,
        node: String,
        settings: QueueSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            registry,
            invoker,
            metrics,
            node,
            settings,
            wake: Notify::new(),
            wake_callbacks: Notify::new(),
            stopping: watch::Sender::new(false),
            slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        })
    }

    /// Queues again what an earlier process with this node id was running, then starts the
    /// worker, the callback sender and the sweeper.
    pub async fn start(self: &Arc<Self>) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
        let requeued = self.store.requeue_own(&self.node, crate::store::now_ms()).await?;
        if requeued > 0 {
            tracing::info!(invocations = requeued, "queued again the async invocations this node was running");
        }
        let worker = tokio::spawn(self.clone().work());
        let callbacks = tokio::spawn(self.clone().send_callbacks());
        let sweeper = tokio::spawn(self.clone().sweep());
        Ok(vec![worker, callbacks, sweeper])
    }

    /// Stores an invocation of `function` (or finds the one its idempotency key names) and
    /// wakes the worker. Returns the invocation and whether it is new.
    pub async fn enqueue(
        &self,
        function: &LoadedFunction,
        request: QueuedRequest,
    ) -> Result<(InvocationRecord, bool), QueueError> {
        if function.handlers.http.is_none() {
            return Err(QueueError::NotHttp(function.name.to_string()));
        }
        if request.body.len() > MAX_QUEUED_BODY_BYTES {
            return Err(QueueError::BodyTooLarge { limit: MAX_QUEUED_BODY_BYTES });
        }
        if request.body.len() as u64 > function.spec.limits.max_body_bytes {
            return Err(QueueError::BodyTooLarge { limit: function.spec.limits.max_body_bytes as usize });
        }
        if let Some(key) = &request.idempotency_key
            && (key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(QueueError::Invalid(
                "the idempotency-key header must be 1-200 visible ASCII characters".into(),
            ));
        }
        if let Some(callback) = &request.callback {
            let uri: http::Uri = callback
                .parse()
                .map_err(|_| QueueError::Invalid(format!("x-faas-callback `{callback}` is not a URL")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(QueueError::Invalid(format!("x-faas-callback `{callback}` must be an http(s) URL")));
            }
            if !function.outbound.allows_url(&uri) {
                return Err(QueueError::CallbackNotAllowed(callback.clone()));
            }
        }
        if !request.path.starts_with('/') {
            return Err(QueueError::Invalid(format!("the path `{}` must start with `/`", request.path)));
        }
        http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| QueueError::Invalid(format!("`{}` is not an HTTP method", request.method)))?;
        let now = crate::store::now_ms();
        let spec = function.spec.asynchronous;
        let mut hash = sha2::Sha256::new();
        for part in [request.method.as_bytes(), b"\n", request.path.as_bytes(), b"\n", &request.body] {
            hash.update(part);
        }
        let new = NewInvocation {
            id: uuid::Uuid::new_v4().to_string(),
            function: function.name.to_string(),
            idempotency_key: request.idempotency_key.clone(),
            request_hash: hex::encode(hash.finalize()),
            request_id: request.request_id,
            method: request.method,
            path: request.path,
            headers: request.headers.into_iter().filter(|(name, _)| !dropped(name)).collect(),
            body: request.body.to_vec(),
            callback: request.callback,
            max_attempts: spec.max_attempts,
            lease_ms: (function.spec.limits.timeout() + LEASE_MARGIN).as_millis() as i64,
            expires_at_ms: now + spec.max_age_ms as i64,
            now_ms: now,
        };
        let (record, created) = self.store.enqueue(&new).await?;
        if !created && record.request_hash != new.request_hash {
            return Err(QueueError::IdempotencyConflict {
                key: new.idempotency_key.unwrap_or_default(),
                id: record.id,
            });
        }
        if created {
            self.wake.notify_one();
        }
        Ok((record, created))
    }

    pub async fn get(&self, id: &str) -> Result<InvocationRecord, QueueError> {
        self.store.invocation(id).await?.ok_or_else(|| QueueError::NotFound(id.to_owned()))
    }

    /// Queues a dead or failed invocation again, attempts counted from zero.
    pub async fn replay(&self, id: &str) -> Result<InvocationRecord, QueueError> {
        let current = self.get(id).await?;
        let max_age = self
            .registry
            .active(&current.function)
            .map_or(crate::model::spec::AsyncSpec::default().max_age_ms, |f| f.spec.asynchronous.max_age_ms);
        match self.store.replay(id, crate::store::now_ms(), max_age as i64).await? {
            Some(record) => {
                tracing::info!(invocation = %id, function = %record.function, "async invocation replayed");
                self.wake.notify_one();
                Ok(record)
            }
            None => {
                let status = self.get(id).await?.status.as_str();
                Err(QueueError::NotReplayable { id: id.to_owned(), status })
            }
        }
    }

    pub fn store(&self) -> &Arc<dyn InvocationStore> {
        &self.store
    }

    fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Sleeps until woken, `pause` passes, or the node stops.
    async fn idle(&self, wake: &Notify, pause: Duration) {
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }

    /// The worker: claims as many due invocations as it has free slots and runs each in a
    /// task of its own.
    async fn work(self: Arc<Self>) {
        let mut failures = backoff::STORE.retries();
        while !self.stopping() {
            let free = self.slots.available_permits();
            if free == 0 {
                self.idle(&self.wake, self.settings.poll).await;
                continue;
            }
            let limit = free.min(100) as u32;
            let claimed = match self.store.claim(&self.node, crate::store::now_ms(), limit).await {
                Ok(claimed) => {
                    failures.reset();
                    claimed
                }
                Err(error) => {
                    tracing::error!(%error, "claiming async invocations failed; retrying");
                    failures.wait().await;
                    continue;
                }
            };
            let full = claimed.len() as u32 == limit;
            for invocation in claimed {
                let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                    // Cannot happen (only this task takes slots); the claim expires if it did.
                    break;
                };
                let queue = self.clone();
                tokio::spawn(async move {
                    queue.attempt(invocation).await;
                    drop(slot);
                    queue.wake.notify_one();
                });
            }
            if !full {
                self.idle(&self.wake, self.settings.poll).await;
            }
        }
    }

    /// Runs one claimed attempt and records its outcome.
    async fn attempt(&self, invocation: InvocationRecord) {
        let function = invocation.function.as_str();
        let due = invocation.run_at_ms;
        let started = crate::store::now_ms();
        self.metrics.async_start_delay.with_label_values(&[function]).observe((started - due).max(0) as f64 / 1000.0);
        let outcome = self.run(&invocation).await;
        let label = match &outcome {
            AttemptOutcome::Done { status, .. } => status.as_str(),
            AttemptOutcome::Retry { .. } => "retried",
            AttemptOutcome::Busy { .. } => "busy",
        };
        self.metrics.async_invocations.with_label_values(&[function, label]).inc();
        match &outcome {
            AttemptOutcome::Done { status, error, .. } => tracing::info!(invocation = %invocation.id, function,
                attempt = invocation.attempts, status = status.as_str(), error = ?error, "async invocation finished"),
            AttemptOutcome::Retry { error, run_at_ms, .. } => tracing::warn!(invocation = %invocation.id, function,
                attempt = invocation.attempts, %error, retry_in_ms = run_at_ms - started, "async invocation failed; will retry"),
            AttemptOutcome::Busy { .. } => {}
        }
        let mut failures = backoff::STORE.retries();
        loop {
            match self.store.finish(&invocation.fence(), crate::store::now_ms(), &outcome).await {
                Ok(true) => break,
                Ok(false) => {
                    tracing::warn!(invocation = %invocation.id, function,
                        "async attempt outcome not recorded: another node took the invocation over meanwhile");
                    return;
                }
                // The outcome must not be lost while the claim holds: another node would run
                // it again after the lease, so keep trying until then.
                Err(error) if failures.failures() < 10 => {
                    tracing::error!(invocation = %invocation.id, %error, "recording an async outcome failed; retrying");
                    failures.wait().await;
                }
                Err(error) => {
                    tracing::error!(invocation = %invocation.id, %error,
                        "recording an async outcome failed; its claim will expire and it runs again");
                    return;
                }
            }
        }
        if matches!(outcome, AttemptOutcome::Done { .. }) && invocation.callback.is_some() {
            self.wake_callbacks.notify_one();
        }
        if matches!(outcome, AttemptOutcome::Retry { .. } | AttemptOutcome::Busy { .. }) {
            // Its retry may be due before the next poll.
            self.wake.notify_one();
        }
    }

    /// One attempt: the stored request through the function's HTTP handler.
    async fn run(&self, invocation: &InvocationRecord) -> AttemptOutcome {
        let Some(function) = self.registry.active(&invocation.function) else {
            return retry_or_dead(invocation, format!("function `{}` is not deployed", invocation.function), None);
        };
        let request = match build_request(invocation) {
            Ok(request) => request,
            Err(error) => {
                return AttemptOutcome::Done { status: InvocationStatus::Failed, response: None, error: Some(error) };
            }
        };
        let span = crate::telemetry::invocation(&function.name, function.version, &invocation.request_id);
        let started = std::time::Instant::now();
        let served = self.invoker.serve_http(&function, request, &invocation.request_id).instrument(span).await;
        let outcome = self.outcome(invocation, served).await;
        let (response, error) = match &outcome {
            AttemptOutcome::Done { response, error, .. } => (response, error.as_deref()),
            AttemptOutcome::Retry { response, error, .. } => (response, Some(error.as_str())),
            AttemptOutcome::Busy { .. } => return outcome,
        };
        let status = response.as_ref().map_or(500, |r| r.status);
        record_invocation(&function, &invocation.request_id, "async", started, status, error);
        outcome
    }

    /// What the handler's answer (or its failure) makes of the attempt.
    async fn outcome(
        &self,
        invocation: &InvocationRecord,
        served: Result<http::Response<axum::body::Body>, InvokeError>,
    ) -> AttemptOutcome {
        match served {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let kept = match keep_body(body).await {
                    Ok(kept) => kept,
                    Err(error) => {
                        return retry_or_dead(invocation, format!("the response body failed: {error}"), None);
                    }
                };
                let mut headers: Vec<(String, String)> = parts
                    .headers
                    .iter()
                    .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
                    .collect();
                if kept.truncated {
                    headers.push(("x-faas-body-truncated".into(), "true".into()));
                }
                let response = StoredResponse { status: parts.status.as_u16(), headers, body: kept.body };
                if parts.status.is_server_error() {
                    let error = format!("the function answered {}", parts.status);
                    return retry_or_dead(invocation, error, Some(response));
                }
                let status =
                    if parts.status.is_client_error() { InvocationStatus::Failed } else { InvocationStatus::Succeeded };
                let error =
                    status.eq(&InvocationStatus::Failed).then(|| format!("the function answered {}", parts.status));
                AttemptOutcome::Done { status, response: Some(response), error }
            }
            Err(InvokeError::Overloaded | InvokeError::QueueTimeout) => {
                AttemptOutcome::Busy { run_at_ms: crate::store::now_ms() + 200 }
            }
            Err(error @ (InvokeError::BodyTooLarge { .. } | InvokeError::BadRequest(_))) => AttemptOutcome::Done {
                status: InvocationStatus::Failed,
                response: None,
                error: Some(error.to_string()),
            },
            Err(error) => retry_or_dead(invocation, error.to_string(), None),
        }
    }

    /// Delivers due callbacks, one task each.
    async fn send_callbacks(self: Arc<Self>) {
        let mut failures = backoff::STORE.retries();
        let lease = (CALLBACK_TIMEOUT + LEASE_MARGIN).as_millis() as i64;
        while !self.stopping() {
            match self.store.claim_callbacks(&self.node, crate::store::now_ms(), lease, 32).await {
                Ok(claimed) => {
                    failures.reset();
                    let none = claimed.is_empty();
                    for invocation in claimed {
                        let queue = self.clone();
                        tokio::spawn(async move { queue.deliver(invocation).await });
                    }
                    if none {
                        self.idle(&self.wake_callbacks, Duration::from_secs(1)).await;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "claiming callbacks failed; retrying");
                    failures.wait().await;
                }
            }
        }
    }

    async fn deliver(&self, invocation: InvocationRecord) {
        let Some(url) = invocation.callback.as_deref() else { return };
        let function = invocation.function.as_str();
        let result = match self.registry.active(function) {
            None => Err(format!("function `{function}` is not deployed: its outbound allow-list is unknown")),
            Some(loaded) => self.post_result(&loaded, url, &invocation).await,
        };
        let (state, error, retry_at, outcome) = match result {
            Ok(()) => ("delivered", None, 0, "delivered"),
            Err(error) if invocation.callback_attempts < CALLBACK_ATTEMPTS => {
                let delay = backoff::ASYNC.delay(invocation.callback_attempts);
                ("pending", Some(error), crate::store::now_ms() + delay.as_millis() as i64, "retried")
            }
            Err(error) => ("failed", Some(error), 0, "failed"),
        };
        self.metrics.async_callbacks.with_label_values(&[function, outcome]).inc();
        if let Some(error) = &error {
            tracing::warn!(invocation = %invocation.id, function, callback = url, attempt = invocation.callback_attempts,
                %error, state, "callback not delivered");
        }
        if let Err(error) =
            self.store.callback_done(&invocation.id, &self.node, state, error.as_deref(), retry_at).await
        {
            tracing::error!(invocation = %invocation.id, %error, "recording a callback failed; it will be sent again");
        }
    }

    async fn post_result(
        &self,
        function: &LoadedFunction,
        url: &str,
        invocation: &InvocationRecord,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(&report(invocation)).map_err(|e| e.to_string())?;
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-faas-invocation-id", &invocation.id)
            .header("x-faas-invocation-status", invocation.status.as_str())
            // The receiver sees each result at least once: this lets it drop repeats.
            .header("idempotency-key", &invocation.id)
            .body(Bytes::from(body))
            .map_err(|e| format!("callback `{url}`: {e}"))?;
        let response = function
            .outbound
            .send_host(
                &self.metrics,
                &invocation.request_id,
                &crate::telemetry::TraceContext::of(&tracing::Span::current()),
                CALLBACK_TIMEOUT,
                request,
            )
            .await
            .map_err(|e| format!("callback `{url}`: {e}"))?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(format!("callback `{url}` answered {}", response.status))
        }
    }

    /// Every second: claims expired on dead nodes go back to the queue (or to the dead
    /// letters); every hour, finished invocations past the retention are deleted.
    async fn sweep(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        let mut last_purge = None::<tokio::time::Instant>;
        while !self.stopping() {
            ticks.tick().await;
            let now = crate::store::now_ms();
            match self.store.requeue_expired(now).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(invocations = n, "took over async invocations whose node stopped answering");
                    self.wake.notify_one();
                }
                Err(error) => tracing::error!(%error, "sweeping async invocations failed"),
            }
            if last_purge.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                last_purge = Some(tokio::time::Instant::now());
                match self.store.purge(now - self.settings.retention.as_millis() as i64).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(invocations = n, "deleted finished async invocations past the retention"),
                    Err(error) => tracing::error!(%error, "purging async invocations failed"),
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Trigger for AsyncQueue {
    fn name(&self) -> &'static str {
        "async"
    }

    async fn reconcile(self: Arc<Self>) {}

    /// Stops claiming; attempts in hand finish (each is bounded by its function's timeout).
    /// One cut short by the process ending is queued again when this node starts, or by
    /// another node when its lease expires.
    async fn drain(self: Arc<Self>) {
        self.stopping.send_replace(true);
        let all = self.settings.concurrency.max(1) as u32;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.slots.acquire_many(all)).await;
    }
}

/// An invocation as the API shows it and a callback receives it: status, attempts, the final
/// (or latest) response, and the callback's delivery. A body that is UTF-8 is shown as text,
/// any other as base64 (`body_encoding` says which).
pub fn report(invocation: &InvocationRecord) -> serde_json::Value {
    use crate::store::format_time;
    use base64::Engine as _;
    let body = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => (serde_json::json!(text), "utf8"),
        Err(_) => (serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bytes)), "base64"),
    };
    let response = invocation.response.as_ref().map(|r| {
        let (text, encoding) = body(&r.body);
        let headers: serde_json::Map<String, serde_json::Value> =
            r.headers.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        serde_json::json!({ "status": r.status, "headers": headers, "body": text, "body_encoding": encoding })
    });
    let callback = invocation.callback.as_ref().map(|url| {
        serde_json::json!({
            "url": url,
            "state": invocation.callback_state,
            "attempts": invocation.callback_attempts,
            "error": invocation.callback_error,
        })
    });
    serde_json::json!({
        "id": invocation.id,
        "function": invocation.function,
        "status": invocation.status.as_str(),
        "attempts": invocation.attempts,
        "max_attempts": invocation.max_attempts,
        "idempotency_key": invocation.idempotency_key,
        "request_id": invocation.request_id,
        "request": { "method": invocation.method, "path": invocation.path },
        "response": response,
        "error": invocation.error,
        "callback": callback,
        "replays": invocation.replays,
        "created_at": format_time(invocation.created_at_ms),
        "started_at": invocation.started_at_ms.map(format_time),
        "finished_at": invocation.finished_at_ms.map(format_time),
        "next_attempt_at": (invocation.status == InvocationStatus::Queued).then(|| format_time(invocation.run_at_ms)),
        "expires_at": format_time(invocation.expires_at_ms),
    })
}

/// The answer to a queued request: 202 and where to look, or 200 for an idempotent repeat.
pub fn accepted(record: &InvocationRecord, created: bool, location: &str) -> axum::response::Response {
    let mut body = report(record);
    body["duplicate"] = serde_json::json!(!created);
    let status = if created { http::StatusCode::ACCEPTED } else { http::StatusCode::OK };
    (status, [(http::header::LOCATION, location.to_owned())], axum::Json(body)).into_response()
}

fn dropped(name: &str) -> bool {
    DROPPED_HEADERS.iter().any(|d| name.eq_ignore_ascii_case(d))
}

/// A retry after the backoff, unless that was the last attempt or the invocation is too old.
fn retry_or_dead(invocation: &InvocationRecord, error: String, response: Option<StoredResponse>) -> AttemptOutcome {
    let now = crate::store::now_ms();
    let run_at_ms = now + backoff::ASYNC.delay(invocation.attempts).as_millis() as i64;
    if invocation.attempts >= invocation.max_attempts {
        let error = format!("{error} (attempt {} of {})", invocation.attempts, invocation.max_attempts);
        return AttemptOutcome::Done { status: InvocationStatus::Dead, response, error: Some(error) };
    }
    if run_at_ms >= invocation.expires_at_ms {
        let error = format!("{error} (attempt {}; its max age ends before the next retry)", invocation.attempts);
        return AttemptOutcome::Done { status: InvocationStatus::Dead, response, error: Some(error) };
    }
    AttemptOutcome::Retry { run_at_ms, response, error }
}

/// The stored request as the data plane would hand it to the function, plus who it is.
fn build_request(invocation: &InvocationRecord) -> Result<http::Request<axum::body::Body>, String> {
    let mut builder = http::Request::builder().method(invocation.method.as_str()).uri(invocation.path.as_str());
    for (name, value) in &invocation.headers {
        builder = builder.header(name, value);
    }
    // `wasi:http` wants an authority: the original `host`, else a stand-in.
    if !invocation.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        builder = builder.header(http::header::HOST, "localhost");
    }
    builder = builder
        .header("x-faas-invocation-id", &invocation.id)
        .header("x-faas-attempt", invocation.attempts.to_string())
        .header(http::header::CONTENT_LENGTH, invocation.body.len());
    builder
        .body(axum::body::Body::from(invocation.body.clone()))
        .map_err(|e| format!("the stored request is invalid: {e}"))
}

struct KeptBody {
    body: Vec<u8>,
    truncated: bool,
}

/// Reads the response body to its end, keeping the first [`MAX_KEPT_RESPONSE_BYTES`].
async fn keep_body<B>(mut body: B) -> Result<KeptBody, String>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut kept = KeptBody { body: Vec::new(), truncated: false };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            let room = MAX_KEPT_RESPONSE_BYTES - kept.body.len();
            if data.len() > room {
                kept.truncated = true;
            }
            kept.body.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(attempts: u32, max_attempts: u32, expires_in_ms: i64) -> InvocationRecord {
        let now = crate::store::now_ms();
        InvocationRecord {
            id: "i".into(),
            function: "f".into(),
            idempotency_key: None,
            request_hash: String::new(),
            request_id: "r".into(),
            method: "POST".into(),
            path: "/x".into(),
            headers: vec![],
            body: vec![],
            callback: None,
            status: InvocationStatus::Running,
            attempts,
            max_attempts,
            lease_ms: 1000,
            run_at_ms: now,
            expires_at_ms: now + expires_in_ms,
            owner: "n".into(),
            epoch: 1,
            response: None,
            error: None,
            callback_state: None,
            callback_attempts: 0,
            callback_error: None,
            replays: 0,
            created_at_ms: now,
            started_at_ms: None,
            finished_at_ms: None,
            updated_at_ms: now,
        }
    }

    #[test]
    fn failures_retry_until_the_last_attempt_or_the_max_age() {
        assert!(matches!(retry_or_dead(&record(1, 3, 60_000), "e".into(), None), AttemptOutcome::Retry { .. }));
        let last = retry_or_dead(&record(3, 3, 60_000), "boom".into(), None);
        assert!(
            matches!(&last, AttemptOutcome::Done { status: InvocationStatus::Dead, error: Some(e), .. } if e.contains("attempt 3 of 3")),
            "{last:?}"
        );
        let old = retry_or_dead(&record(1, 3, 500), "boom".into(), None);
        assert!(matches!(old, AttemptOutcome::Done { status: InvocationStatus::Dead, .. }), "{old:?}");
        assert!(dropped("Transfer-Encoding") && dropped("x-faas-invoke") && !dropped("authorization"));
    }
}
