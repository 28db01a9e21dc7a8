//! `faas:platform/tx`: two-phase commit across participant functions, coordinated by the host
//! (`workflows::tx`).

use crate::bindings::tx::{self as wit, TxError, TxOptions, TxOutcome, TxResult};
use crate::invoker::HostState;
use crate::store::workflows::{Invocation, TxStatus};
use crate::workflows::tx::{self as coordinator, DEFAULT_PREPARE_TIMEOUT, MAX_PREPARE_TIMEOUT, TxRequest};
use std::time::Duration;

impl wit::Host for HostState {
    async fn commit_atomically(
        &mut self,
        participants: Vec<wit::ParticipantCall>,
        options: TxOptions,
    ) -> Result<TxResult, TxError> {
        let platform = self.platform();
        let request = TxRequest {
            calls: participants.into_iter().map(|p| Invocation { function: p.function, payload: p.payload }).collect(),
            prepare_timeout: options
                .prepare_timeout_ms
                .map_or(DEFAULT_PREPARE_TIMEOUT, |ms| Duration::from_millis(u64::from(ms)))
                .min(MAX_PREPARE_TIMEOUT),
            idempotency_key: options.idempotency_key,
        };
        let record = platform
            .caps
            .workflows()
            .transactions
            .commit_atomically(&platform.access.namespace, request)
            .await
            .map_err(|error| match error {
                coordinator::TxError::Invalid(m) => TxError::InvalidRequest(m),
                coordinator::TxError::Conflict(m) => TxError::Conflict(m),
                e @ coordinator::TxError::Undecided(_) => TxError::Unavailable(e.to_string()),
                coordinator::TxError::Store(e) => {
                    tracing::error!(error = %e, "transaction store failure");
                    TxError::Unavailable("the transaction log is unavailable; retry".into())
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
