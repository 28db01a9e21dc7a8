//! `faas:platform/saga`: start sagas and read their state, scoped to the caller's namespace (its
//! idempotency keys and its sagas). The host runs them: see `workflows::sagas`.

use super::PlatformCtx;
use super::workflow_handle::{SagaError as EngineError, SagaView};
use crate::bindings::saga::{self as wit, SagaError, SagaState, StepState};
use crate::store::saga_state::StepStatus;
use crate::store::workflows::{Invocation, SagaDefinition, SagaStatus, StepDefinition};
use crate::telemetry::{self, TraceContext};
use std::time::Duration;
use tracing::Instrument as _;

const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_BACKOFF_MS: u32 = 100;
const DEFAULT_MAX_COMPENSATION_ATTEMPTS: u32 = 10;
/// The longest a guest may block in `run`.
const MAX_WAIT: Duration = Duration::from_secs(300);

fn definition_from_wit(definition: wit::SagaDefinition) -> SagaDefinition {
    let invocation = |i: wit::Invocation| Invocation { function: i.function, payload: i.payload };
    SagaDefinition {
        name: definition.name,
        input: definition.input,
        steps: definition
            .steps
            .into_iter()
            .map(|step| StepDefinition {
                name: step.name,
                action: invocation(step.action),
                compensation: step.compensation.map(invocation),
                max_attempts: step.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
                timeout_ms: step.timeout_ms,
                backoff_ms: step.backoff_ms.unwrap_or(DEFAULT_BACKOFF_MS),
            })
            .collect(),
        max_compensation_attempts: definition.max_compensation_attempts.unwrap_or(DEFAULT_MAX_COMPENSATION_ATTEMPTS),
    }
}

fn state_to_wit(view: SagaView) -> SagaState {
    let status = view.state.status;
    SagaState {
        id: view.record.id,
        name: view.record.definition.name.clone(),
        status: match status {
            SagaStatus::Running => wit::SagaStatus::Running,
            SagaStatus::Compensating => wit::SagaStatus::Compensating,
            SagaStatus::Completed => wit::SagaStatus::Completed,
            SagaStatus::Compensated => wit::SagaStatus::Compensated,
            SagaStatus::Stuck => wit::SagaStatus::Stuck,
        },
        error: view.state.error.clone(),
        steps: view
            .record
            .definition
            .steps
            .iter()
            .zip(view.state.steps)
            .map(|(definition, step)| StepState {
                name: definition.name.clone(),
                status: match step.status(status) {
                    StepStatus::Pending => wit::StepStatus::Pending,
                    StepStatus::Running => wit::StepStatus::Running,
                    StepStatus::Succeeded => wit::StepStatus::Succeeded,
                    StepStatus::Failed => wit::StepStatus::Failed,
                    StepStatus::Compensating => wit::StepStatus::Compensating,
                    StepStatus::Compensated => wit::StepStatus::Compensated,
                    StepStatus::Skipped => wit::StepStatus::Skipped,
                },
                attempts: step.attempts,
                compensation_attempts: step.compensation_attempts,
                last_error: step.last_error,
                output: step.output,
            })
            .collect(),
        created_at: view.record.created_at_ms.max(0) as u64,
        updated_at: view.journal.last().map_or(view.record.updated_at_ms, |r| r.at_ms).max(0) as u64,
    }
}

fn error_to_wit(error: EngineError) -> SagaError {
    match error {
        EngineError::Invalid(m) => SagaError::InvalidRequest(m),
        EngineError::Conflict(m) => SagaError::Conflict(m),
        EngineError::NotFound(id) => SagaError::NotFound(format!("saga `{id}` not found")),
        e @ EngineError::NotStuck { .. } => SagaError::InvalidRequest(e.to_string()),
        e @ EngineError::Unavailable => SagaError::Unavailable(e.to_string()),
        EngineError::Store(e) => {
            tracing::error!(error = %e, "saga store failure");
            SagaError::Unavailable("the saga store is unavailable; retry".into())
        }
    }
}

impl PlatformCtx {
    async fn start_saga(&mut self, definition: wit::SagaDefinition) -> Result<String, SagaError> {
        let platform = &*self;
        let key = definition.idempotency_key.clone();
        // The saga's steps run later (maybe elsewhere) as children of this span: its context is
        // stored with the saga.
        let span = telemetry::saga_start(&platform.trace, &definition.name, &key);
        let trace = TraceContext::of(&span);
        let started = platform
            .caps
            .workflows
            .start_saga(&platform.access.namespace, &key, definition_from_wit(definition), trace.traceparent())
            .instrument(span.clone())
            .await;
        match &started {
            Ok(record) => {
                span.record("faas.saga.id", record.id.as_str());
            }
            Err(error) => telemetry::failed(&span, &error.to_string()),
        }
        Ok(started.map_err(error_to_wit)?.id)
    }

    /// The saga's state, if the caller's namespace started it.
    async fn own_saga(&mut self, id: &str) -> Result<SagaView, SagaError> {
        let platform = &*self;
        match platform.caps.workflows.view_saga(id).await {
            Ok(view) if view.record.namespace == platform.access.namespace => Ok(view),
            Ok(_) | Err(EngineError::NotFound(_)) => Err(SagaError::NotFound(format!("saga `{id}` not found"))),
            Err(error) => Err(error_to_wit(error)),
        }
    }
}

impl wit::Host for PlatformCtx {
    async fn start(&mut self, definition: wit::SagaDefinition) -> Result<String, SagaError> {
        self.start_saga(definition).await
    }

    async fn run(&mut self, definition: wit::SagaDefinition, timeout_ms: u32) -> Result<SagaState, SagaError> {
        let id = self.start_saga(definition).await?;
        let wait = Duration::from_millis(u64::from(timeout_ms)).min(MAX_WAIT);
        self.caps.workflows.wait_saga(&id, wait).await.map_err(error_to_wit)?;
        self.own_saga(&id).await.map(state_to_wit)
    }

    async fn status(&mut self, id: String) -> Result<SagaState, SagaError> {
        self.own_saga(&id).await.map(state_to_wit)
    }
}
