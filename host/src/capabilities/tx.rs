//! `faas:platform/tx`: two-phase commit across participant functions, coordinated by the host
//! (`workflows::tx`).

use super::PlatformCtx;
use super::workflow_handle::{self as coordinator, DEFAULT_PREPARE_TIMEOUT, MAX_PREPARE_TIMEOUT, TxRequest};
use crate::bindings::tx::{self as wit, TxError, TxOptions, TxOutcome, TxResult};
use crate::store::workflows::{Invocation, TxStatus};
use std::time::Duration;

impl wit::Host for PlatformCtx {
    async fn commit_atomically(
        &mut self,
        participants: Vec<wit::ParticipantCall>,
        options: TxOptions,
    ) -> Result<TxResult, TxError> {
        let platform = &*self;
        let request = TxRequest {
            calls: participants.into_iter().map(|p| Invocation { function: p.function, payload: p.payload }).collect(),
            prepare_timeout: options
                .prepare_timeout_ms
                .map_or(DEFAULT_PREPARE_TIMEOUT, |ms| Duration::from_millis(u64::from(ms)))
                .min(MAX_PREPARE_TIMEOUT),
            idempotency_key: options.idempotency_key,
        };
        let record =
            platform.caps.workflows.commit_atomically(&platform.access.namespace, request).await.map_err(|error| {
                match error {
                    coordinator::TxError::Invalid(m) => TxError::InvalidRequest(m),
                    coordinator::TxError::Conflict(m) => TxError::Conflict(m),
                    e @ (coordinator::TxError::Undecided(_) | coordinator::TxError::Unavailable) => {
                        TxError::Unavailable(e.to_string())
                    }
                    coordinator::TxError::Store(e) => {
                        tracing::error!(error = %e, "transaction store failure");
                        TxError::Unavailable("the transaction log is unavailable; retry".into())
                    }
                }
            })?;
        // The decision is final once recorded, even if phase 2 is still being retried.
        let outcome = match record.status {
            TxStatus::Committing | TxStatus::Committed => TxOutcome::Committed,
            TxStatus::Preparing | TxStatus::Aborting | TxStatus::Aborted => {
                TxOutcome::Aborted(record.reason.unwrap_or_else(|| "aborted".into()))
            }
        };
        Ok(TxResult { id: record.id, outcome })
    }
}
