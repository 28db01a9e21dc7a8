//! [`Sagas`]: starts sagas, runs each one's steps in a task of its own (outside the instance that
//! started it), and recovers in-flight sagas after a restart or another node's death.
//!
//! The runner's loop is: fold the journal, ask [`SagaState::next`], write the journal entry that
//! announces the move, act, write the outcome. Every effect (a step invocation) is preceded by a
//! durable entry, so after a crash the journal says exactly which attempt may have run; that
//! attempt runs again with the same idempotency key.

use super::builtin_steps;
use crate::backoff::{self, Backoff};
use crate::bindings::step::{StepError, StepKind, StepRequest};
use crate::capabilities::workflow_handle::{SagaError, SagaView};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::invoker::{BusyWait, Invoker};
use crate::store::StoreError;
use crate::store::saga_state::{Next, SagaState};
use crate::store::workflows::{
    Fence, JournalEntry, JournalRecord, ListQuery, Page, SagaDefinition, SagaRecord, SagaStatus, StepFence,
    WorkflowStore,
};
use crate::telemetry::{self, TraceContext};
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument as _;

/// Limits of a definition.
const MAX_STEPS: usize = 100;
const MAX_NAME: usize = 200;
const MAX_PAYLOAD_BYTES: usize = 1 << 20;
const MAX_ATTEMPTS: u32 = 100;
const MAX_STEP_TIMEOUT_MS: u32 = 15 * 60 * 1000;
/// How long a step waits for its function to be loaded on this node (see [`Sagas::loaded`]).
const LOAD_PATIENCE: Duration = Duration::from_secs(60);

pub struct Sagas {
    store: Arc<dyn WorkflowStore>,
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    metrics: Metrics,
    node: String,
    /// Sagas with a runner in this process, and their latest status (for waiters).
    active: Mutex<HashMap<String, watch::Sender<SagaStatus>>>,
    /// Set by [`Sagas::drain`]: runners stop before their next move, none start.
    stopping: watch::Sender<bool>,
}

impl Sagas {
    pub fn new(
        store: Arc<dyn WorkflowStore>,
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        metrics: Metrics,
        node: String,
    ) -> Arc<Self> {
        let stopping = watch::Sender::new(false);
        Arc::new(Self { store, registry, invoker, metrics, node, active: Mutex::new(HashMap::new()), stopping })
    }

    /// Validates and records a saga, then starts running it. Starting the same key again in the
    /// same namespace returns the existing saga (a conflict if its definition differs).
    pub async fn start(
        self: &Arc<Self>,
        namespace: &str,
        idempotency_key: &str,
        definition: SagaDefinition,
        trace_parent: Option<String>,
    ) -> Result<SagaRecord, SagaError> {
        self.check(namespace, idempotency_key, &definition)?;
        let now = crate::store::now_ms();
        let record = SagaRecord {
            id: saga_id(namespace, idempotency_key),
            namespace: namespace.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            definition,
            status: SagaStatus::Running,
            error: None,
            owner: self.node.clone(),
            epoch: 0,
            created_at_ms: now,
            updated_at_ms: now,
            trace_parent,
        };
        let (stored, created) = self.store.create_saga(&record).await?;
        if !created && stored.definition != record.definition {
            return Err(SagaError::Conflict(format!(
                "idempotency key `{idempotency_key}` already started saga {} with a different definition",
                stored.id
            )));
        }
        if created {
            tracing::info!(saga = %stored.id, name = %stored.definition.name, namespace, "saga started");
            self.spawn(stored.id.clone(), Fence { owner: stored.owner.clone(), epoch: stored.epoch });
        }
        Ok(stored)
    }

    /// Waits until the saga is completed, compensated or stuck, or `timeout` passes; returns its
    /// status then.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<SagaStatus, SagaError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let settled = |s: &SagaStatus| !s.in_flight();
        loop {
            let local = self.active().get(id).map(watch::Sender::subscribe);
            match local {
                Some(mut status) => {
                    // Ends when settled, or when the runner stops (then the store says why).
                    let _ = tokio::time::timeout_at(deadline, status.wait_for(settled)).await;
                }
                // Run by another node (or not at all): poll.
                None => {
                    let record = self.store.saga(id).await?.ok_or_else(|| SagaError::NotFound(id.to_owned()))?;
                    if settled(&record.status) || tokio::time::Instant::now() >= deadline {
                        return Ok(record.status);
                    }
                    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)))
                        .await;
                    continue;
                }
            }
            let record = self.store.saga(id).await?.ok_or_else(|| SagaError::NotFound(id.to_owned()))?;
            if settled(&record.status) || tokio::time::Instant::now() >= deadline {
                return Ok(record.status);
            }
        }
    }

    pub async fn view(&self, id: &str) -> Result<SagaView, SagaError> {
        let record = self.store.saga(id).await?.ok_or_else(|| SagaError::NotFound(id.to_owned()))?;
        let journal = self.store.journal(id).await?;
        let state = SagaState::fold(&record.definition, &journal);
        Ok(SagaView { record, state, journal })
    }

    pub async fn list(&self, query: &ListQuery<SagaStatus>) -> Result<Page<SagaRecord>, SagaError> {
        Ok(self.store.sagas(query).await?)
    }

    /// An operator's answer to a stuck saga: try its compensations again (`skip` = false), or
    /// give up on the one that keeps failing and go on with the rest (`skip` = true).
    pub async fn resolve(self: &Arc<Self>, id: &str, skip: bool) -> Result<SagaView, SagaError> {
        let view = self.view(id).await?;
        let action = if skip { "skip" } else { "resume" };
        if view.record.status != SagaStatus::Stuck {
            return Err(SagaError::NotStuck { id: id.to_owned(), status: view.record.status.as_str(), action });
        }
        // This node takes the saga over; a concurrent resolution elsewhere then loses its writes.
        let fence = self.store.claim_stuck_saga(id, &self.node).await?.ok_or_else(|| SagaError::NotStuck {
            id: id.to_owned(),
            status: "no longer stuck",
            action,
        })?;
        let mut seq = view.state.next_seq;
        if skip {
            let step = view
                .state
                .steps
                .iter()
                .enumerate()
                .rev()
                .find(|(i, s)| s.needs_compensation() && view.record.definition.steps[*i].compensation.is_some())
                .map(|(i, _)| i);
            if let Some(step) = step {
                self.store
                    .append_journal(id, seq, &JournalEntry::CompensationSkipped { step }, &fence)
                    .await
                    .map_err(|e| SagaError::from_store(e, id))?;
                seq += 1;
            }
        }
        let entry = JournalEntry::Status { status: SagaStatus::Compensating, error: None };
        self.store.append_journal(id, seq, &entry, &fence).await.map_err(|e| SagaError::from_store(e, id))?;
        tracing::info!(saga = %id, action, "stuck saga resolved by an operator");
        self.spawn(id.to_owned(), fence);
        self.view(id).await
    }

    /// Takes over in-flight sagas of nodes that stopped sending heartbeats and, with `own`
    /// (once, at start-up), this node's own from before a restart; runs each.
    pub async fn recover(self: &Arc<Self>, stale_before_ms: i64, own: bool) -> Result<usize, StoreError> {
        let claimed = self.store.claim_sagas(&self.node, stale_before_ms, own).await?;
        let resumed = claimed.len();
        for (id, fence) in claimed {
            // One already running here (a saga a node that thought this one dead had taken,
            // and lost again) adopts the new epoch at its next write (see `run`): it counts as
            // resumed all the same.
            self.spawn(id, fence);
        }
        Ok(resumed)
    }

    fn active(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<SagaStatus>>> {
        // The map holds plain senders; a panic elsewhere cannot leave it half-changed.
        self.active.lock()
    }

    /// Shutdown: every runner finishes the step in hand, writes its outcome and stops before its
    /// next move; the sagas stay owned by this node, which resumes them when it starts again
    /// (or another node does after the heartbeat timeout). A step still running after `grace`
    /// is abandoned like a crash would abandon it (its attempt runs again on resumption).
    pub async fn drain(&self, grace: Duration) {
        self.stopping.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        while !self.active().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.active().len();
        if left > 0 {
            tracing::warn!(sagas = left, "saga steps still running after the drain grace; abandoned");
        }
    }

    fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Sleeps `pause`, or less if the node starts draining.
    async fn pause(&self, pause: Duration) {
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }

    /// Starts a runner for `id` unless one is running here already (or the node drains).
    fn spawn(self: &Arc<Self>, id: String, fence: Fence) {
        let status = {
            let mut active = self.active();
            if active.contains_key(&id) || self.stopping() {
                return;
            }
            let (status, _) = watch::channel(SagaStatus::Running);
            active.insert(id.clone(), status.clone());
            status
        };
        let sagas = self.clone();
        tokio::spawn(async move {
            sagas.run(&id, fence, &status).await;
            sagas.active().remove(&id);
        });
    }

    /// Drives the saga until it settles or another node owns it. A store failure does not end
    /// the runner (nobody else would resume a saga this live node owns): it folds the journal
    /// again and carries on after a pause.
    async fn run(&self, id: &str, mut fence: Fence, status: &watch::Sender<SagaStatus>) {
        let mut retries = backoff::WORKFLOW.retries();
        while !self.stopping() {
            match self.drive(id, &fence, status).await {
                Ok(()) => return,
                Err(StoreError::Fenced(_)) => match self.store.saga(id).await {
                    // This node claimed it again meanwhile (a sweep skips sagas running here).
                    Ok(Some(row)) if row.owner == self.node && row.epoch > fence.epoch => {
                        fence = Fence { owner: row.owner, epoch: row.epoch };
                    }
                    Ok(_) => {
                        tracing::info!(saga = %id, "saga was taken over by another node; it runs it now");
                        return;
                    }
                    Err(error) => {
                        tracing::error!(saga = %id, %error, "reading the saga failed; retrying");
                        retries.wait().await;
                    }
                },
                Err(error) => {
                    tracing::error!(saga = %id, %error, failures = retries.failures() + 1, "saga runner failed; retrying");
                    retries.wait().await;
                }
            }
        }
    }

    async fn drive(&self, id: &str, fence: &Fence, status: &watch::Sender<SagaStatus>) -> Result<(), StoreError> {
        let record = self.store.saga(id).await?.ok_or_else(|| StoreError::Corrupt(format!("saga {id} vanished")))?;
        let definition = &record.definition;
        // Each attempt's span is a child of the span that started the saga (on whatever node).
        let trace = record.trace_parent.as_deref().map(TraceContext::parse).unwrap_or_default();
        let mut state = SagaState::fold(definition, &self.store.journal(id).await?);
        loop {
            status.send_replace(state.status);
            if self.stopping() {
                return Ok(());
            }
            match state.next(definition) {
                Next::Idle => return Ok(()),
                Next::SetStatus(new, error) => {
                    match new {
                        SagaStatus::Completed | SagaStatus::Compensated => {
                            tracing::info!(saga = %id, status = new.as_str(), "saga finished");
                        }
                        _ => tracing::warn!(saga = %id, status = new.as_str(), error = ?error, "saga status"),
                    }
                    self.write(id, fence, &mut state, JournalEntry::Status { status: new, error }).await?;
                    self.metrics.sagas.with_label_values(&[definition.name.as_str(), new.as_str()]).inc();
                }
                Next::Action { step, attempt } => {
                    self.write(id, fence, &mut state, JournalEntry::ActionAttempt { step, attempt }).await?;
                    let started_at_ms = state.steps[step].started_at_ms.unwrap_or_else(crate::store::now_ms);
                    let call = Call { kind: StepKind::Action, attempt, started_at_ms };
                    let span = telemetry::saga_step(&trace, id, &definition.steps[step].name, false, attempt);
                    let result = self.invoke(&record, fence, step, call).instrument(span.clone()).await;
                    if let Err(StepFailure::Refused(error) | StepFailure::Transient(error)) = &result {
                        telemetry::failed(&span, error);
                    }
                    let entry = match result {
                        Ok(output) => JournalEntry::ActionSucceeded { step, output },
                        Err(StepFailure::Refused(error)) => {
                            JournalEntry::ActionFailed { step, attempt, error, terminal: true }
                        }
                        Err(StepFailure::Transient(error)) => {
                            JournalEntry::ActionFailed { step, attempt, error, terminal: false }
                        }
                        Err(StepFailure::Interrupted) => return Ok(()),
                    };
                    let retry = matches!(entry, JournalEntry::ActionFailed { terminal: false, .. })
                        && attempt < definition.steps[step].max_attempts;
                    self.write(id, fence, &mut state, entry).await?;
                    if retry {
                        self.pause(Backoff::step(definition.steps[step].backoff_ms).delay(attempt)).await;
                    }
                }
                Next::Compensation { step, attempt } => {
                    self.write(id, fence, &mut state, JournalEntry::CompensationAttempt { step, attempt }).await?;
                    let call = Call { kind: StepKind::Compensation, attempt, started_at_ms: crate::store::now_ms() };
                    let span = telemetry::saga_step(&trace, id, &definition.steps[step].name, true, attempt);
                    let result = self.invoke(&record, fence, step, call).instrument(span.clone()).await;
                    if let Err(StepFailure::Refused(error) | StepFailure::Transient(error)) = &result {
                        telemetry::failed(&span, error);
                    }
                    match result {
                        Ok(_) => {
                            self.write(id, fence, &mut state, JournalEntry::CompensationSucceeded { step }).await?
                        }
                        Err(StepFailure::Interrupted) => return Ok(()),
                        Err(StepFailure::Refused(error) | StepFailure::Transient(error)) => {
                            self.write(
                                id,
                                fence,
                                &mut state,
                                JournalEntry::CompensationFailed { step, attempt, error },
                            )
                            .await?;
                            self.pause(Backoff::step(definition.steps[step].backoff_ms).delay(attempt)).await;
                        }
                    }
                }
            }
        }
    }

    async fn write(
        &self,
        id: &str,
        fence: &Fence,
        state: &mut SagaState,
        entry: JournalEntry,
    ) -> Result<(), StoreError> {
        let seq = state.next_seq;
        self.store.append_journal(id, seq, &entry, fence).await?;
        state.apply(&JournalRecord { seq, at_ms: crate::store::now_ms(), entry });
        Ok(())
    }

    /// One attempt of a step or compensation. Its writes carry `fence`: if this node loses the
    /// saga while the attempt runs (paused past its heartbeat timeout, say), they are refused,
    /// so only the new owner's attempt has effects.
    async fn invoke(&self, saga: &SagaRecord, fence: &Fence, step: usize, call: Call) -> Result<Vec<u8>, StepFailure> {
        let Call { kind, attempt, .. } = call;
        let definition = &saga.definition.steps[step];
        let invocation = match kind {
            StepKind::Action => &definition.action,
            StepKind::Compensation => {
                definition.compensation.as_ref().expect("only steps with a compensation are compensated")
            }
        };
        if builtin_steps::is_builtin(&invocation.function) {
            return self.builtin(saga, step, invocation, call).await;
        }
        let Some(function) = self.loaded(&invocation.function).await else {
            if self.stopping() {
                return Err(StepFailure::Interrupted);
            }
            return Err(StepFailure::Transient(format!("function `{}` is not deployed", invocation.function)));
        };
        let request = StepRequest {
            saga_id: saga.id.clone(),
            saga_name: saga.definition.name.clone(),
            step: definition.name.clone(),
            kind,
            idempotency_key: format!("{}/{}", saga.id, definition.name),
            attempt,
            input: saga.definition.input.clone(),
            payload: invocation.payload.clone(),
        };
        let timeout = definition.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms)));
        let fence = StepFence { saga_id: saga.id.clone(), fence: fence.clone() };
        let mut busy = BusyWait::default();
        let result = loop {
            match self.invoker.run_step(&function, &request, timeout, &fence).await {
                Err(error) if busy.again(&error).await => continue,
                result => break result,
            }
        };
        let kind_label = kind_label(kind);
        let outcome = match &result {
            Ok(Ok(_)) => "succeeded",
            Ok(Err(StepError::Fail(_))) => "refused",
            _ => "failed",
        };
        self.metrics.saga_steps.with_label_values(&[invocation.function.as_str(), kind_label, outcome]).inc();
        let failure = match result {
            Ok(Ok(output)) => return Ok(output),
            Ok(Err(StepError::Fail(message))) => StepFailure::Refused(message),
            Ok(Err(StepError::Retry(message))) => StepFailure::Transient(message),
            Err(error) => StepFailure::Transient(error.to_string()),
        };
        let (StepFailure::Refused(error) | StepFailure::Transient(error)) = &failure else { return Err(failure) };
        tracing::warn!(saga = %saga.id, step = %definition.name, kind = ?kind, attempt, %error, "saga step failed");
        Err(failure)
    }

    /// The active version of the step's function on this node. One the database has but this
    /// node has not loaded yet (a deploy still compiling here, or a node that has just taken the
    /// saga over and is still loading its functions) is waited for, up to [`LOAD_PATIENCE`]:
    /// this node's lag is no failed attempt of the step. None if it is not deployed at all (or
    /// the node drains meanwhile).
    async fn loaded(&self, name: &str) -> Option<Arc<crate::runtime::function::LoadedFunction>> {
        let mut changes = self.registry.watch_changes();
        let deadline = tokio::time::Instant::now() + LOAD_PATIENCE;
        let mut waited = false;
        loop {
            if let Some(function) = self.registry.active(name) {
                return Some(function);
            }
            if self.stopping() || tokio::time::Instant::now() >= deadline || self.registry.function(name).await.is_err()
            {
                return None;
            }
            if !waited {
                tracing::info!(function = name, "saga step waits for its function to be loaded on this node");
                waited = true;
            }
            // A load here bumps the registry's generation; the poll is a backstop.
            let poll = deadline.min(tokio::time::Instant::now() + Duration::from_millis(250));
            let _ = tokio::time::timeout_at(poll, changes.changed()).await;
        }
    }

    /// A built-in step (see `builtin_steps`): a timer, or an HTTP call made for the function
    /// that started the saga.
    async fn builtin(
        &self,
        saga: &SagaRecord,
        step: usize,
        invocation: &crate::store::workflows::Invocation,
        call: Call,
    ) -> Result<Vec<u8>, StepFailure> {
        let definition = &saga.definition.steps[step];
        let kind_label = kind_label(call.kind);
        let result = match invocation.function.as_str() {
            builtin_steps::SLEEP => {
                let timer = builtin_steps::Timer::parse(&invocation.payload).map_err(StepFailure::Refused)?;
                let wait = timer.wakes_at(call.started_at_ms) - crate::store::now_ms();
                if wait > 0 {
                    tracing::info!(saga = %saga.id, step = %definition.name, wait_ms = wait, "saga timer waiting");
                    self.pause(Duration::from_millis(wait as u64)).await;
                    if self.stopping() {
                        return Err(StepFailure::Interrupted);
                    }
                }
                Ok(Vec::new())
            }
            builtin_steps::HTTP => self.http_step(saga, step, invocation, call).await,
            other => Err(StepFailure::Refused(format!("`{other}` is no built-in step"))),
        };
        let outcome = match &result {
            Ok(_) => "succeeded",
            Err(StepFailure::Refused(_)) => "refused",
            Err(_) => "failed",
        };
        self.metrics.saga_steps.with_label_values(&[invocation.function.as_str(), kind_label, outcome]).inc();
        if let Err(StepFailure::Refused(error) | StepFailure::Transient(error)) = &result {
            tracing::warn!(saga = %saga.id, step = %definition.name, kind = ?call.kind, attempt = call.attempt, %error,
                "saga step failed");
        }
        result
    }

    async fn http_step(
        &self,
        saga: &SagaRecord,
        step: usize,
        invocation: &crate::store::workflows::Invocation,
        call: Call,
    ) -> Result<Vec<u8>, StepFailure> {
        let definition = &saga.definition.steps[step];
        let http = builtin_steps::HttpCall::parse(&invocation.payload).map_err(StepFailure::Refused)?;
        // The saga's namespace is the function that started it: its allow-list and config.
        let Some(starter) = self.registry.active(&saga.namespace) else {
            return Err(StepFailure::Transient(format!(
                "function `{}`, which started the saga, is not deployed: its outbound allow-list is unknown",
                saga.namespace
            )));
        };
        let idempotency_key = match call.kind {
            StepKind::Action => format!("{}/{}", saga.id, definition.name),
            StepKind::Compensation => format!("{}/{}/compensation", saga.id, definition.name),
        };
        let context = builtin_steps::Context {
            saga_id: &saga.id,
            saga_name: &saga.definition.name,
            input: &saga.definition.input,
            step: &definition.name,
            idempotency_key: &idempotency_key,
            config: &starter.config.entries,
        };
        let request = http.render(&context).map_err(StepFailure::Transient)?;
        let timeout = definition.timeout_ms.map_or_else(|| http.timeout(), |ms| Duration::from_millis(u64::from(ms)));
        let request_id = format!("{idempotency_key}#{}", call.attempt);
        let response = starter
            .outbound
            .send_host(&self.metrics, &request_id, &TraceContext::of(&tracing::Span::current()), timeout, request)
            .await
            .map_err(|e| StepFailure::Transient(format!("{} {}: {e}", http.method, http.url)))?;
        match http.verdict(response.status) {
            builtin_steps::Verdict::Succeeded => Ok(response.body.to_vec()),
            builtin_steps::Verdict::Retry(error) => Err(StepFailure::Transient(error)),
            builtin_steps::Verdict::Refused(error) => Err(StepFailure::Refused(error)),
        }
    }

    fn check_builtin(
        &self,
        namespace: &str,
        step: &str,
        invocation: &crate::store::workflows::Invocation,
        compensation: bool,
    ) -> Result<(), SagaError> {
        let invalid = |m: String| Err(SagaError::Invalid(format!("step `{step}`: {m}")));
        match invocation.function.as_str() {
            builtin_steps::SLEEP if compensation => {
                invalid(format!("a compensation cannot be a `{}`", builtin_steps::SLEEP))
            }
            builtin_steps::SLEEP => builtin_steps::Timer::parse(&invocation.payload).map(drop).or_else(invalid),
            builtin_steps::HTTP => {
                let call = match builtin_steps::HttpCall::parse(&invocation.payload) {
                    Ok(call) => call,
                    Err(e) => return invalid(e),
                };
                let allowed = match (self.registry.active(namespace), call.literal_origin()) {
                    (Some(starter), Some(url)) => starter.outbound.allows_url(&url),
                    _ => true,
                };
                if !allowed {
                    return invalid(format!(
                        "`{}` is not in the outbound allow-list of `{namespace}` (deploy it with --allow-outbound <origin>)",
                        call.url
                    ));
                }
                Ok(())
            }
            other => invalid(format!(
                "`{other}` is no built-in step (`{}` and `{}` are)",
                builtin_steps::SLEEP,
                builtin_steps::HTTP
            )),
        }
    }

    fn check(&self, namespace: &str, key: &str, definition: &SagaDefinition) -> Result<(), SagaError> {
        let invalid = |m: String| Err(SagaError::Invalid(m));
        if key.is_empty() || key.len() > MAX_NAME {
            return invalid(format!("the idempotency key must be 1-{MAX_NAME} bytes"));
        }
        if definition.name.is_empty() || definition.name.len() > MAX_NAME {
            return invalid(format!("the saga name must be 1-{MAX_NAME} bytes"));
        }
        if definition.steps.is_empty() || definition.steps.len() > MAX_STEPS {
            return invalid(format!("a saga needs 1-{MAX_STEPS} steps, got {}", definition.steps.len()));
        }
        let mut size = definition.input.len();
        for (i, step) in definition.steps.iter().enumerate() {
            if step.name.is_empty() || step.name.len() > MAX_NAME || step.name.contains('/') {
                return invalid(format!("step {i}: a step name must be 1-{MAX_NAME} bytes without `/`"));
            }
            if definition.steps[..i].iter().any(|s| s.name == step.name) {
                return invalid(format!("step name `{}` appears twice", step.name));
            }
            if step.max_attempts == 0 || step.max_attempts > MAX_ATTEMPTS {
                return invalid(format!("step `{}`: max-attempts must be 1-{MAX_ATTEMPTS}", step.name));
            }
            if step.timeout_ms.is_some_and(|t| t == 0 || t > MAX_STEP_TIMEOUT_MS) {
                return invalid(format!("step `{}`: timeout-ms must be 1-{MAX_STEP_TIMEOUT_MS}", step.name));
            }
            for (i, invocation) in std::iter::once(&step.action).chain(&step.compensation).enumerate() {
                size += invocation.payload.len();
                if builtin_steps::is_builtin(&invocation.function) {
                    self.check_builtin(namespace, &step.name, invocation, i == 1)?;
                    continue;
                }
                match self.registry.active(&invocation.function) {
                    None => {
                        return invalid(format!(
                            "step `{}`: function `{}` is not deployed",
                            step.name, invocation.function
                        ));
                    }
                    Some(f) if f.handlers.step.is_none() => {
                        return invalid(format!(
                            "step `{}`: function `{}` exports no `faas:platform/step-handler`",
                            step.name, invocation.function
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if definition.max_compensation_attempts == 0 || definition.max_compensation_attempts > MAX_ATTEMPTS {
            return invalid(format!("max-compensation-attempts must be 1-{MAX_ATTEMPTS}"));
        }
        if size > MAX_PAYLOAD_BYTES {
            return invalid(format!("input and payloads total {size} bytes; the limit is {MAX_PAYLOAD_BYTES}"));
        }
        Ok(())
    }
}

/// One attempt of a step's action or compensation; a timer counts from `started_at_ms`, when
/// the journal first recorded the step's attempt.
#[derive(Debug, Clone, Copy)]
struct Call {
    kind: StepKind,
    attempt: u32,
    started_at_ms: i64,
}

enum StepFailure {
    /// The step said no (`step-error::fail`).
    Refused(String),
    /// A `retry` answer, a trap, a timeout, an overloaded or missing function.
    Transient(String),
    /// The node is draining while a timer waits: nothing is recorded, the attempt stays open
    /// and the wait goes on (for what is left of it) wherever the saga resumes.
    Interrupted,
}

/// The `kind` label of `faas_saga_step_attempts_total`.
fn kind_label(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Action => "action",
        StepKind::Compensation => "compensation",
    }
}

/// Deterministic, so a second start with the same key finds the same saga.
pub fn saga_id(namespace: &str, idempotency_key: &str) -> String {
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("faas-saga:{namespace}").as_bytes());
    uuid::Uuid::new_v5(&namespace, idempotency_key.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saga_ids_depend_on_namespace_and_key() {
        assert_eq!(saga_id("orders", "o-1"), saga_id("orders", "o-1"));
        assert_ne!(saga_id("orders", "o-1"), saga_id("orders", "o-2"));
        assert_ne!(saga_id("orders", "o-1"), saga_id("other", "o-1"));
    }
}
