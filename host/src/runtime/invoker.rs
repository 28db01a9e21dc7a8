//! [`Invoker`]: runs invocations. [`Invoker::serve_http`] runs one HTTP request in a fresh
//! instance of the function (or, when its deploy allows reuse, a warm one from its
//! [`InstancePool`](super::instance_pool::InstancePool)), under the function's limits: memory
//! (`StoreLimits`), wall-clock deadline (epoch yields + a timer), and concurrency.

use super::concurrency::Overloaded;
use super::function::LoadedFunction;
use super::guest_io::InvocationTags;
use super::http_p3::{P3Http, RequestTags};
use super::instance_pool::{IdleInstances, InstancePool, Lease};
use super::outbound::OutboundHooks;
use super::state::HostState;
use super::validate::HttpExport;
use crate::bindings::exports::faas::platform::event_handler::RecordedEvent;
use crate::bindings::message::KafkaBatch;
use crate::bindings::participant::Vote;
use crate::bindings::scheduled::ScheduledTick;
use crate::bindings::step::{StepError, StepRequest};
use crate::capabilities::{Capabilities, PlatformCtx};
use crate::metrics::Metrics;
use crate::model::reuse::ReuseSpec;
use crate::store::workflows::StepFence;
use crate::telemetry::{self, TraceContext};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;
use wasmtime::component::{Instance, Linker};
use wasmtime::{Engine, PoolConcurrencyLimitError, Store};
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, TrapOrPanicError};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{Error as HttpError, WasiHttpView};

/// Why an invocation produced no response of the guest's own. Mapped to HTTP in `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("too many requests are waiting for this function")]
    Overloaded,
    #[error("no instance became free within the function's timeout")]
    QueueTimeout,
    #[error("the request body is over this function's {limit}-byte limit")]
    BodyTooLarge { limit: u64 },
    #[error("the function did not respond within its {timeout_ms} ms timeout")]
    Timeout { timeout_ms: u64 },
    #[error("the function failed: {0}")]
    Trap(String),
    #[error("the function returned an error instead of a response: {0}")]
    GuestError(String),
    #[error("the event handler failed: {0}")]
    HandlerFailed(String),
    #[error("the function finished without sending a response")]
    NoResponse,
    #[error("the request could not be passed to the function: {0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The one answer to "the function is too busy to take this call" (its instances and queue are
/// full): the call never ran, so it is no failed attempt of a trigger or a saga step (an
/// overload must not park healthy events or compensate healthy sagas). The caller waits with
/// [`backoff::BUSY`](crate::backoff::BUSY) and offers it again, for up to [`BusyWait::PATIENCE`]; after that the busy
/// answer counts like any other failure.
#[derive(Debug)]
pub struct BusyWait {
    retries: crate::backoff::Retries,
    since: Instant,
}

impl Default for BusyWait {
    fn default() -> Self {
        Self { retries: crate::backoff::BUSY.retries(), since: Instant::now() }
    }
}

impl BusyWait {
    pub const PATIENCE: Duration = Duration::from_secs(300);

    /// Whether the call that failed with `error` should simply be made again: after the pause
    /// if it was only busy (and patience lasts), at once false otherwise.
    pub async fn again(&mut self, error: &InvokeError) -> bool {
        let busy = matches!(error, InvokeError::Overloaded | InvokeError::QueueTimeout);
        if !busy || self.since.elapsed() >= Self::PATIENCE {
            return false;
        }
        self.retries.wait().await;
        true
    }
}

/// A call of a two-phase-commit participant.
#[derive(Debug, Clone, Copy)]
pub enum ParticipantCall<'a> {
    Prepare { tx_id: &'a str, payload: &'a [u8] },
    Commit { tx_id: &'a str },
    Abort { tx_id: &'a str },
}

/// How the task running the guest ended.
enum Outcome {
    Finished,
    Trapped(String),
    TimedOut,
}

/// Runs functions. Holds the linker every component is checked and instantiated against.
pub struct Invoker {
    linker: Linker<HostState>,
    /// The same imports for the baseline engine's components, when deploys are tiered.
    baseline_linker: Option<Linker<HostState>>,
    metrics: Metrics,
    capabilities: Arc<Capabilities>,
    idle: Arc<IdleInstances>,
}

impl Invoker {
    /// Links all of WASI 0.2 (Rust's std imports `wasi:cli` beyond the `wasi:http/proxy` set),
    /// all of WASI 0.3, `wasi:http` of both, and `wasi:config` (the function's variables and secrets; also its drafts).
    pub fn new(engine: &Engine, metrics: Metrics, capabilities: Arc<Capabilities>) -> anyhow::Result<Self> {
        let linker = link(engine)?;
        Ok(Self { linker, baseline_linker: None, metrics, capabilities, idle: Arc::default() })
    }

    /// Also links the baseline engine, whose components a tiered deploy runs first.
    pub fn with_baseline(mut self, engine: &Engine) -> anyhow::Result<Self> {
        self.baseline_linker = Some(link(engine)?);
        Ok(self)
    }

    pub fn baseline_linker(&self) -> Option<&Linker<HostState>> {
        self.baseline_linker.as_ref()
    }

    /// The pool of idle instances for a function version deployed with `reuse`.
    pub fn instance_pool(&self, reuse: ReuseSpec) -> Arc<InstancePool> {
        self.idle.pool(reuse)
    }

    /// Where one invocation of `function` runs: an idle instance of it if its deploy allows
    /// reuse and one is warm, else a fresh store with its memory limit and an epoch deadline
    /// that yields at every tick (so a spinning guest neither starves other work nor escapes its
    /// timeout).
    fn lease(
        &self,
        function: &LoadedFunction,
        tags: Arc<InvocationTags>,
        fence: Option<StepFence>,
        deadline: tokio::time::Instant,
    ) -> Lease {
        if let Some(mut lease) = function.instances.take() {
            lease.store.data_mut().begin(tags, fence, deadline);
            lease.store.set_epoch_deadline(1);
            return lease;
        }
        Lease::fresh(fresh_store(&self.capabilities, &self.metrics, function, tags, fence, deadline))
    }

    /// The WASIp3 instances of `function`, made on its first request. They build their stores as
    /// [`Self::lease`] does; holding the function only weakly, they never keep an old version
    /// alive.
    fn p3_http<'f>(&self, function: &'f Arc<LoadedFunction>, pre: &ServicePre<HostState>) -> &'f P3Http {
        function.http_p3.get_or_init(|| {
            let (weak, caps, metrics) = (Arc::downgrade(function), self.capabilities.clone(), self.metrics.clone());
            let new_store = Arc::new(move || {
                let function = weak.upgrade()?;
                let deadline = tokio::time::Instant::now() + function.spec.limits.timeout();
                let tags = InvocationTags::of(&function, "", TraceContext::default());
                Some(fresh_store(&caps, &metrics, &function, tags, None, deadline))
            });
            let (reuse, timeout) = (function.spec.reuse, function.spec.limits.timeout());
            P3Http::new(function.name.clone(), pre.clone(), new_store, reuse, timeout, function.metrics.clone())
        })
    }

    /// Runs one batch of events through the function's `event-handler` export.
    pub async fn handle_events(
        &self,
        function: &Arc<LoadedFunction>,
        events: &[RecordedEvent],
        delivery_id: &str,
    ) -> Result<(), InvokeError> {
        let Some(exports) = &function.handlers.events else {
            return Err(InvokeError::Internal(format!("function `{}` exports no event handler", function.name)));
        };
        let started = Instant::now();
        let result = self
            .call(function, delivery_id, None, None, async |store, instance| {
                let handler = exports.load(&mut *store, &instance)?;
                handler.faas_platform_event_handler().call_handle(store, events).await
            })
            .await
            .and_then(|handled| handled.map_err(InvokeError::HandlerFailed));
        record(function, delivery_id, "events", started, &result);
        result
    }

    /// Runs one batch of Kafka records through the function's `message-handler` export.
    pub async fn handle_messages(
        &self,
        function: &Arc<LoadedFunction>,
        batch: &KafkaBatch,
        delivery_id: &str,
    ) -> Result<(), InvokeError> {
        let Some(exports) = &function.handlers.messages else {
            return Err(InvokeError::Internal(format!("function `{}` exports no message handler", function.name)));
        };
        let started = Instant::now();
        let result = self
            .call(function, delivery_id, None, None, async |store, instance| {
                let handler = exports.load(&mut *store, &instance)?;
                handler.faas_platform_message_handler().call_handle(store, batch).await
            })
            .await
            .and_then(|handled| handled.map_err(InvokeError::HandlerFailed));
        record(function, delivery_id, "kafka", started, &result);
        result
    }

    /// Runs one attempt of a saga step through the function's `step-handler` export. The inner
    /// result is the step's own answer.
    pub async fn run_step(
        &self,
        function: &Arc<LoadedFunction>,
        request: &StepRequest,
        timeout: Option<Duration>,
        fence: &StepFence,
    ) -> Result<Result<Vec<u8>, StepError>, InvokeError> {
        let Some(exports) = &function.handlers.step else {
            return Err(InvokeError::Internal(format!("function `{}` exports no step-handler", function.name)));
        };
        // Like the built-in HTTP step's keys: a compensation's attempts are told apart.
        let id = match request.kind {
            crate::bindings::step::StepKind::Action => format!("{}#{}", request.idempotency_key, request.attempt),
            crate::bindings::step::StepKind::Compensation => {
                format!("{}/compensation#{}", request.idempotency_key, request.attempt)
            }
        };
        let started = Instant::now();
        let result = self
            .call(function, &id, timeout, Some(fence.clone()), async |store, instance| {
                let handler = exports.load(&mut *store, &instance)?;
                handler.faas_platform_step_handler().call_handle(store, request).await
            })
            .await;
        record(function, &id, "step", started, &result);
        result
    }

    /// Runs one schedule tick through the function's `scheduled-handler` export. The inner
    /// result is the handler's own answer.
    pub async fn handle_tick(
        &self,
        function: &Arc<LoadedFunction>,
        tick: &ScheduledTick,
        invocation_id: &str,
    ) -> Result<Result<(), String>, InvokeError> {
        let Some(exports) = &function.handlers.scheduled else {
            return Err(InvokeError::Internal(format!("function `{}` exports no scheduled-handler", function.name)));
        };
        let started = Instant::now();
        let result = self
            .call(function, invocation_id, None, None, async |store, instance| {
                let handler = exports.load(&mut *store, &instance)?;
                handler.faas_platform_scheduled_handler().call_handle(store, tick).await
            })
            .await;
        record(function, invocation_id, "schedule", started, &result);
        result
    }

    /// One call of the function's two-phase-commit `participant` export.
    pub async fn participant(
        &self,
        function: &Arc<LoadedFunction>,
        call: ParticipantCall<'_>,
        timeout: Option<Duration>,
    ) -> Result<Result<(), String>, InvokeError> {
        let Some(exports) = &function.handlers.participant else {
            return Err(InvokeError::Internal(format!("function `{}` exports no participant", function.name)));
        };
        let (phase, tx_id) = match call {
            ParticipantCall::Prepare { tx_id, .. } => ("prepare", tx_id),
            ParticipantCall::Commit { tx_id } => ("commit", tx_id),
            ParticipantCall::Abort { tx_id } => ("abort", tx_id),
        };
        let id = format!("{tx_id}/{phase}");
        let started = Instant::now();
        let result = self
            .call(function, &id, timeout, None, async |store, instance| {
                let handler = exports.load(&mut *store, &instance)?;
                let participant = handler.faas_platform_participant();
                Ok(match call {
                    ParticipantCall::Prepare { tx_id, payload } => {
                        match participant.call_prepare(store, tx_id, payload).await? {
                            Vote::Commit => Ok(()),
                            Vote::Abort(reason) => Err(reason),
                        }
                    }
                    ParticipantCall::Commit { tx_id } => participant.call_commit(store, tx_id).await?,
                    ParticipantCall::Abort { tx_id } => participant.call_abort(store, tx_id).await?,
                })
            })
            .await;
        record(function, &id, "participant", started, &result);
        result
    }

    /// The skeleton of every non-HTTP invocation: a concurrency permit, an instance (fresh, or
    /// warm with reuse), and `body` (call an export) under the deadline: `timeout`, or the
    /// function's. A saga step's writes carry its `fence`. Only an invocation that finished
    /// hands its instance back; a trap or a timeout drops it.
    async fn call<R>(
        &self,
        function: &Arc<LoadedFunction>,
        invocation_id: &str,
        timeout: Option<Duration>,
        fence: Option<StepFence>,
        body: impl AsyncFnOnce(&mut Store<HostState>, Instance) -> wasmtime::Result<R>,
    ) -> Result<R, InvokeError> {
        let limits = function.spec.limits;
        let timeout = timeout.unwrap_or_else(|| limits.timeout());
        let deadline = tokio::time::Instant::now() + timeout;
        let span = telemetry::invocation(&function.name, function.version, invocation_id);
        let _permit = admit(function, deadline).instrument(span.clone()).await?;
        let tags = InvocationTags::of(function, invocation_id, TraceContext::of(&span));
        let mut lease = self.lease(function, tags, fence, deadline);
        let active = &function.metrics.active_instances;
        active.inc();
        let outcome = tokio::time::timeout_at(deadline, async {
            let instance = instantiate(&self.idle, function, &mut lease).await?;
            body(&mut lease.store, instance).await
        })
        .instrument(span.clone())
        .await;
        let result = match outcome {
            Ok(Ok(result)) => {
                function.instances.give_back(lease);
                Ok(result)
            }
            Ok(Err(trap)) => Err(InvokeError::Trap(trap_message(&trap))),
            Err(_elapsed) => Err(InvokeError::Timeout { timeout_ms: timeout.as_millis() as u64 }),
        };
        active.dec();
        // A call the function was too busy to take is offered again; it did not fail.
        if let Err(error) = &result
            && !matches!(error, InvokeError::Overloaded | InvokeError::QueueTimeout)
        {
            telemetry::failed(&span, &error.to_string());
        }
        result
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Runs `request` through the function's `wasi:http/incoming-handler`. Returns as soon as
    /// the guest has sent response headers; the body streams while the instance keeps running
    /// (still under the deadline and still holding its concurrency permit).
    pub async fn serve_http(
        &self,
        function: &Arc<LoadedFunction>,
        request: http::Request<axum::body::Body>,
        request_id: &str,
    ) -> Result<http::Response<axum::body::Body>, InvokeError> {
        let limits = function.spec.limits;
        let declared_length = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|len| len > limits.max_body_bytes) {
            return Err(InvokeError::BodyTooLarge { limit: limits.max_body_bytes });
        }
        let deadline = tokio::time::Instant::now() + limits.timeout();
        let permit = admit(function, deadline).await?;

        // The data plane runs this inside the request's span (see `telemetry::http_request`).
        let tags = InvocationTags::of(function, request_id, TraceContext::of(&tracing::Span::current()));
        let body_too_large = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| LimitedBody::new(body, limits.max_body_bytes, body_too_large.clone()));
        let result = match &function.handlers.http {
            Some(HttpExport::P2(_)) => self.serve_http_p2(function, request, tags, deadline, permit).await,
            Some(HttpExport::P3(pre)) => {
                let p3 = self.p3_http(function, pre);
                let request = request.map(http_body_util::BodyExt::boxed_unsync);
                match p3.handle(RequestTags { tags, deadline }, request).await {
                    // The permit goes with the body: the instance is busy until it is sent.
                    Ok(response) => {
                        Ok(response.map(|body| axum::body::Body::new(WithPermit { body, _permit: permit })))
                    }
                    Err(error) => Err(p3_failure(error, limits.timeout_ms)),
                }
            }
            None => Err(InvokeError::Internal(format!("function `{}` exports no HTTP handler", function.name))),
        };
        match result {
            Err(_) if body_too_large.load(Ordering::Acquire) => {
                Err(InvokeError::BodyTooLarge { limit: limits.max_body_bytes })
            }
            result => result,
        }
    }

    /// A WASIp2 `incoming-handler` call, driven by the caller's task: until the guest answers,
    /// then by the response body as hyper polls it (so the guest writes its body while it is
    /// sent). No task of its own on the common path: handing each request to a spawned task
    /// cost a cross-thread wake-up per request (criterion: ~100 µs on this 2-vCPU VM). Should
    /// the caller or the body be dropped before the guest is done (the client hung up), the rest
    /// of the run continues in a task: a function is never cancelled halfway by its client.
    async fn serve_http_p2(
        &self,
        function: &Arc<LoadedFunction>,
        request: http::Request<LimitedBody>,
        tags: Arc<InvocationTags>,
        deadline: tokio::time::Instant,
        permit: OwnedSemaphorePermit,
    ) -> Result<http::Response<axum::body::Body>, InvokeError> {
        let limits = function.spec.limits;
        let mut lease = self.lease(function, tags.clone(), None, deadline);
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let (req, out) = {
            let mut http = lease.store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
            let out = http.new_response_outparam(sender).map_err(|e| InvokeError::Internal(format!("{e:#}")))?;
            (req, out)
        };

        let idle = self.idle.clone();
        let function = function.clone();
        let run = async move {
            let _permit = permit;
            let active = function.metrics.active_instances.clone();
            active.inc();
            let run = async {
                let instance = instantiate(&idle, &function, &mut lease).await?;
                let Some(HttpExport::P2(exports)) = &function.handlers.http else { unreachable!("a p2 handler") };
                let proxy = exports.load(&mut lease.store, &instance)?;
                proxy.wasi_http_incoming_handler().call_handle(&mut lease.store, req, out).await
            };
            let outcome = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(())) => Outcome::Finished,
                Ok(Err(trap)) => Outcome::Trapped(trap_message(&trap)),
                Err(_elapsed) => Outcome::TimedOut,
            };
            if matches!(outcome, Outcome::Finished) {
                function.instances.give_back(lease);
            } else {
                drop(lease);
            }
            active.dec();
            match &outcome {
                Outcome::Finished => {}
                Outcome::Trapped(message) => tracing::error!(function = %tags.function, version = tags.version,
                    request_id = %tags.request_id, trap = %message, "function trapped"),
                Outcome::TimedOut => tracing::warn!(function = %tags.function, version = tags.version,
                    request_id = %tags.request_id, timeout_ms = limits.timeout_ms, "function timed out; instance killed"),
            }
            outcome
        };
        // The run keeps the request's span open until the guest is done (its body may stream on
        // after the handler has answered), wherever it finishes.
        let mut guest = GuestRun(Some(Box::pin(run.instrument(tracing::Span::current()))));

        // Drive the guest until it answers (or ends without answering).
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(answer) = Pin::new(&mut receiver).poll(cx) {
                return Poll::Ready(Ok(answer));
            }
            guest.poll_run(cx).map(Err)
        })
        .await;
        let failed = |outcome| match outcome {
            Outcome::Finished => InvokeError::NoResponse,
            Outcome::Trapped(message) => InvokeError::Trap(message),
            Outcome::TimedOut => InvokeError::Timeout { timeout_ms: limits.timeout_ms },
        };
        match first {
            Ok(Ok(Ok(response))) => Ok(response.map(|body| axum::body::Body::new(GuestDrivenBody { body, guest }))),
            Ok(Ok(Err(code))) => Err(InvokeError::GuestError(format!("{code:?}"))),
            // The guest dropped the response outparam: how it ends says why.
            Ok(Err(_dropped)) => Err(failed(std::future::poll_fn(|cx| guest.poll_run(cx)).await)),
            // It ended; it may have answered in the same step.
            Err(outcome) => match receiver.await {
                Ok(Ok(response)) => Ok(response.map(axum::body::Body::new)),
                Ok(Err(code)) => Err(InvokeError::GuestError(format!("{code:?}"))),
                Err(_dropped) => Err(failed(outcome)),
            },
        }
    }
}

/// One WASIp2 HTTP invocation's run (instance, call, hand-back), polled by whoever holds it.
/// Dropped unfinished, it goes on in a task of its own.
struct GuestRun(Option<Pin<Box<dyn Future<Output = Outcome> + Send>>>);

impl GuestRun {
    /// Polls the run; `Pending` forever once it has ended (its outcome was returned once).
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let Some(run) = &mut self.0 else { return Poll::Pending };
        let outcome = ready!(run.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(outcome)
    }
}

impl Drop for GuestRun {
    fn drop(&mut self) {
        if let Some(mut run) = self.0.take() {
            // Most runs end right after their body does (the handler returns): finish those
            // here, so a reused instance is back in its pool before the client can send its next
            // request. Polling with a no-op waker is sound: a future registers the waker of every
            // poll, and the task below polls it again with its own.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if run.as_mut().poll(&mut cx).is_pending() {
                tokio::spawn(run);
            }
        }
    }
}

/// The guest's response body, which also drives the guest (writing it) whenever hyper asks for
/// more.
struct GuestDrivenBody {
    body: HyperOutgoingBody,
    guest: GuestRun,
}

impl Body for GuestDrivenBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        // Its outcome was logged by the run itself; the body tells the client the rest.
        let _ = this.guest.poll_run(cx);
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why a WASIp3 request produced no response, from wasmtime-wasi-http's error types.
fn p3_failure(error: wasmtime::Error, timeout_ms: u64) -> InvokeError {
    use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode as P3ErrorCode;
    if error.downcast_ref::<ExpirationError>().is_some() {
        return InvokeError::Timeout { timeout_ms };
    }
    if error.downcast_ref::<TrapOrPanicError>().is_some() {
        return InvokeError::Trap("the instance trapped (its error is in the server log)".into());
    }
    if let Some(failed) = error.downcast_ref::<InstantiationError<RequestTags>>() {
        if failed.error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return InvokeError::Overloaded;
        }
        return InvokeError::Internal(format!("instantiating the function: {:#}", failed.error));
    }
    if let Some(code) = error.downcast_ref::<P3ErrorCode>() {
        return InvokeError::GuestError(format!("{code:?}"));
    }
    InvokeError::Trap(trap_message(&error))
}

/// A response body that holds the invocation's concurrency permit until it is sent.
struct WithPermit<B> {
    body: B,
    _permit: OwnedSemaphorePermit,
}

impl<B: Body + Unpin> Body for WithPermit<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A new store for one instance of `function`: its memory limit, an epoch deadline that yields
/// at every tick (so a spinning guest neither starves other work nor escapes its timeout), and
/// the sandbox (nothing granted but the function's own capabilities and outbound allow-list).
fn fresh_store(
    caps: &Arc<Capabilities>,
    metrics: &Metrics,
    function: &LoadedFunction,
    tags: Arc<InvocationTags>,
    fence: Option<StepFence>,
    deadline: tokio::time::Instant,
) -> Store<HostState> {
    let platform =
        PlatformCtx { caps: caps.clone(), access: function.access.clone(), fence, trace: tags.trace.clone() };
    let hooks = OutboundHooks::new(function.outbound.clone(), metrics.clone(), &tags.request_id, &tags.trace, deadline);
    let state = HostState::new(tags, function.spec.limits.memory_bytes, platform, hooks, function.config.clone());
    let mut store = Store::new(function.handlers.pre.engine(), state);
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// Every import a function may have, for `engine`'s components.
fn link(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, HostState::config)?;
    super::config_draft::add_to_linker(&mut linker)?;
    crate::capabilities::add_to_linker(&mut linker, HostState::platform)?;
    Ok(linker)
}

/// The lease's instance: the warm one, or a new one (timed for the metrics). Should the server's
/// instance pool be full, idle instances of reusing functions give way, and it tries once more.
async fn instantiate(idle: &IdleInstances, function: &LoadedFunction, lease: &mut Lease) -> wasmtime::Result<Instance> {
    if lease.is_warm() {
        return lease.instance(&function.handlers.pre).await;
    }
    let started = Instant::now();
    let instance = match lease.instance(&function.handlers.pre).await {
        Err(error) if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() && idle.evict_all() > 0 => {
            tracing::info!(function = %function.name, "instance pool full; dropped idle instances to make room");
            lease.instance(&function.handlers.pre).await?
        }
        result => result?,
    };
    function.metrics.instantiation.observe(started.elapsed().as_secs_f64());
    Ok(instance)
}

/// Waits for a free instance slot of `function`, at most until `deadline`.
async fn admit(function: &LoadedFunction, deadline: tokio::time::Instant) -> Result<OwnedSemaphorePermit, InvokeError> {
    match tokio::time::timeout_at(deadline, function.limiter.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(Overloaded)) => Err(InvokeError::Overloaded),
        Err(_elapsed) => Err(InvokeError::QueueTimeout),
    }
}

impl InvocationTags {
    fn of(function: &LoadedFunction, request_id: &str, trace: TraceContext) -> Arc<Self> {
        Arc::new(Self {
            function: function.name.clone(),
            version: function.version,
            request_id: request_id.to_owned(),
            secrets: function.config.secrets.clone(),
            trace,
        })
    }
}

/// What an invocation's outcome says for its record in `faas logs`: why it failed, if it did.
trait Recorded {
    fn failure(&self) -> Option<String>;
    fn error(&self) -> Option<&InvokeError>;
}

impl Recorded for Result<(), InvokeError> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(ToString::to_string)
    }

    fn error(&self) -> Option<&InvokeError> {
        self.as_ref().err()
    }
}

/// The guest's own answer inside: a step's, a tick's or a participant's error is a failure too.
impl<T, E: std::fmt::Debug> Recorded for Result<Result<T, E>, InvokeError> {
    fn failure(&self) -> Option<String> {
        match self {
            Ok(Ok(_)) => None,
            Ok(Err(answer)) => Some(format!("the function answered {answer:?}")),
            Err(error) => Some(error.to_string()),
        }
    }

    fn error(&self) -> Option<&InvokeError> {
        self.as_ref().err()
    }
}

/// The invocation record of a non-HTTP invocation (the data plane records its own). A call the
/// function was too busy to take never ran, and its trigger offers it again (see [`BusyWait`]):
/// no record, or an overload would fill the log with one per retry.
fn record(function: &LoadedFunction, id: &str, trigger: &str, started: Instant, outcome: &impl Recorded) {
    if matches!(outcome.error(), Some(InvokeError::Overloaded | InvokeError::QueueTimeout)) {
        return;
    }
    let error = outcome.failure();
    let status = if error.is_some() { 500 } else { 200 };
    record_invocation(function, id, trigger, started, status, error.as_deref());
}

/// Adds a finished invocation of `function` to what `faas logs` shows: for the triggers that
/// run HTTP handlers themselves (async invocations, schedules calling a route) with the
/// status the handler answered, and for every other invocation from here.
pub fn record_invocation(
    function: &LoadedFunction,
    id: &str,
    trigger: &str,
    started: Instant,
    status: u16,
    error: Option<&str>,
) {
    crate::function_logs::FunctionLogs::global().invocation(crate::function_logs::Finished {
        function: &function.name,
        version: function.version,
        request_id: id,
        trigger,
        status,
        took: started.elapsed(),
        error,
    });
}

/// The first line of a trap: what went wrong in the guest, without host backtraces.
fn trap_message(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        // wasmtime 50 says "wasm trap: ..." itself; older ones did not.
        Some(trap) => {
            let text = trap.to_string();
            if text.starts_with("wasm trap") { text } else { format!("wasm trap: {text}") }
        }
        None => format!("{error:#}").lines().next().unwrap_or("unknown error").to_owned(),
    }
}

/// The request body as the guest reads it: at most `limit` bytes, then an error (and a flag, so
/// the caller can answer 413 rather than blame the guest).
struct LimitedBody {
    inner: axum::body::Body,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl LimitedBody {
    fn new(inner: axum::body::Body, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self { inner, remaining: limit, limit, exceeded }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match frame {
            None => None,
            Some(Err(_)) => Some(Err(HttpError::ConnectionTerminated)),
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                if len > self.remaining {
                    self.exceeded.store(true, Ordering::Release);
                    Some(Err(HttpError::HttpRequestBodySize(Some(self.limit))))
                } else {
                    self.remaining -= len;
                    Some(Ok(frame))
                }
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
