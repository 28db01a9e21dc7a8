//! [`Transactions`]: the two-phase-commit coordinator. Its log is the `transactions` row: created
//! `preparing` before any participant is asked, moved to `committing` or `aborting` (the
//! decision) before phase 2 starts, and to `committed` or `aborted` when every participant has
//! acknowledged. Recovery after a crash: a transaction still `preparing` never reached a decision,
//! so it aborts; one `committing` or `aborting` has its phase 2 repeated (participants' `commit`
//! and `abort` are idempotent per transaction id).

use crate::invoker::{Invoker, ParticipantCall};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::StoreError;
use crate::store::workflows::{Invocation, TxParticipant, TxRecord, TxStatus, WorkflowStore};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DEFAULT_PREPARE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_PARTICIPANTS: usize = 32;
const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// How long `commit-atomically` waits for phase 2 before returning the (already final) decision.
const PHASE_TWO_WAIT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Transactions {
    store: Arc<dyn WorkflowStore>,
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    metrics: Metrics,
    node: String,
    /// Transactions whose phase 2 runs in this process.
    finishing: Mutex<HashSet<String>>,
}

impl Transactions {
    pub fn new(
        store: Arc<dyn WorkflowStore>,
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        metrics: Metrics,
        node: String,
    ) -> Arc<Self> {
        Arc::new(Self { store, registry, invoker, metrics, node, finishing: Mutex::new(HashSet::new()) })
    }

    /// Runs a whole transaction; returns its record once the decision is durable and phase 2 has
    /// finished or had [`PHASE_TWO_WAIT`] to (it goes on in the background).
    pub async fn commit_atomically(
        self: &Arc<Self>,
        namespace: &str,
        calls: Vec<Invocation>,
        prepare_timeout: Duration,
    ) -> Result<TxRecord, TxError> {
        self.check(&calls)?;
        let now = crate::store::now_ms();
        let mut record = TxRecord {
            id: uuid::Uuid::new_v4().to_string(),
            namespace: namespace.to_owned(),
            participants: calls.into_iter().map(|call| TxParticipant { call, vote: None }).collect(),
            status: TxStatus::Preparing,
            reason: None,
            owner: self.node.clone(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.store.create_tx(&record).await?;
        tracing::info!(tx = %record.id, participants = record.participants.len(), "transaction preparing");

        let votes =
            futures::future::join_all(record.participants.iter().map(|p| self.prepare(&record.id, p, prepare_timeout)))
                .await;
        let mut reason = None;
        for (participant, vote) in record.participants.iter_mut().zip(votes) {
            if let Err(why) = &vote {
                reason.get_or_insert_with(|| format!("`{}`: {why}", participant.call.function));
            }
            participant.vote = Some(vote.err().unwrap_or_else(|| "commit".into()));
        }
        record.status = if reason.is_none() { TxStatus::Committing } else { TxStatus::Aborting };
        record.reason = reason;
        // The decision is durable before any participant hears it.
        self.store.update_tx(&record.id, record.status, record.reason.as_deref(), &record.participants).await?;
        tracing::info!(tx = %record.id, decision = record.status.as_str(), reason = ?record.reason, "transaction decided");

        let id = record.id.clone();
        if let Some(phase_two) = self.spawn_finish(record) {
            let _ = tokio::time::timeout(PHASE_TWO_WAIT, phase_two).await;
        }
        self.store.tx(&id).await?.ok_or_else(|| StoreError::Corrupt(format!("transaction {id} vanished")).into())
    }

    pub async fn get(&self, id: &str) -> Result<Option<TxRecord>, StoreError> {
        self.store.tx(id).await
    }

    pub async fn list(&self, status: Option<TxStatus>, limit: u32) -> Result<Vec<TxRecord>, StoreError> {
        self.store.txs(status, limit).await
    }

    /// Resolves in-doubt transactions of this node (after a restart) and of dead nodes.
    pub async fn recover(self: &Arc<Self>, stale_before_ms: i64) -> Result<usize, StoreError> {
        let mut resumed = 0;
        for mut record in self.store.claim_txs(&self.node, stale_before_ms).await? {
            if self.finishing.lock().expect("finishing lock").contains(&record.id) {
                continue;
            }
            if record.status == TxStatus::Preparing {
                // No decision was recorded, so nobody was told to commit: abort.
                record.status = TxStatus::Aborting;
                record.reason = Some("the coordinator stopped before deciding".into());
                self.store.update_tx(&record.id, record.status, record.reason.as_deref(), &record.participants).await?;
            }
            tracing::info!(tx = %record.id, decision = record.status.as_str(), "recovering in-doubt transaction");
            if self.spawn_finish(record).is_some() {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Votes `Ok` for commit, `Err(reason)` for abort (a no vote, a trap, a timeout, a missing
    /// function).
    async fn prepare(&self, tx_id: &str, participant: &TxParticipant, timeout: Duration) -> Result<(), String> {
        let call = &participant.call;
        let function = self.registry.active(&call.function).ok_or_else(|| "not deployed".to_owned())?;
        let prepare = ParticipantCall::Prepare { tx_id, payload: &call.payload };
        match self.invoker.participant(&function, prepare, Some(timeout)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(format!("voted abort: {reason}")),
            Err(error) => Err(format!("prepare failed: {error}")),
        }
    }

    /// Phase 2 in a task of its own, unless it already runs here.
    fn spawn_finish(self: &Arc<Self>, record: TxRecord) -> Option<tokio::task::JoinHandle<()>> {
        if !self.finishing.lock().expect("finishing lock").insert(record.id.clone()) {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            let id = record.id.clone();
            if let Err(error) = this.finish(record).await {
                tracing::error!(tx = %id, %error, "transaction phase 2 stopped; it will be resumed");
            }
            this.finishing.lock().expect("finishing lock").remove(&id);
        }))
    }

    /// Tells every participant the decision until each has acknowledged it, then records the end.
    async fn finish(&self, record: TxRecord) -> Result<(), StoreError> {
        let commit = record.status == TxStatus::Committing;
        futures::future::join_all(
            record.participants.iter().map(|p| self.deliver(&record.id, &p.call.function, commit)),
        )
        .await;
        let done = if commit { TxStatus::Committed } else { TxStatus::Aborted };
        self.store.update_tx(&record.id, done, record.reason.as_deref(), &record.participants).await?;
        self.metrics.transactions.with_label_values(&[done.as_str()]).inc();
        tracing::info!(tx = %record.id, status = done.as_str(), "transaction finished");
        Ok(())
    }

    async fn deliver(&self, tx_id: &str, function: &str, commit: bool) {
        let call = if commit { ParticipantCall::Commit { tx_id } } else { ParticipantCall::Abort { tx_id } };
        let mut delay = Duration::from_millis(100);
        loop {
            let error = match self.registry.active(function) {
                None => "not deployed".to_owned(),
                Some(f) => match self.invoker.participant(&f, call, None).await {
                    Ok(Ok(())) => return,
                    Ok(Err(message)) => message,
                    Err(error) => error.to_string(),
                },
            };
            tracing::warn!(tx = %tx_id, function, commit, %error, "participant did not acknowledge the decision; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    fn check(&self, calls: &[Invocation]) -> Result<(), TxError> {
        let invalid = |m: String| Err(TxError::Invalid(m));
        if calls.is_empty() || calls.len() > MAX_PARTICIPANTS {
            return invalid(format!("a transaction needs 1-{MAX_PARTICIPANTS} participants, got {}", calls.len()));
        }
        let size: usize = calls.iter().map(|c| c.payload.len()).sum();
        if size > MAX_PAYLOAD_BYTES {
            return invalid(format!("payloads total {size} bytes; the limit is {MAX_PAYLOAD_BYTES}"));
        }
        for (i, call) in calls.iter().enumerate() {
            if calls[..i].iter().any(|c| c.function == call.function) {
                return invalid(format!(
                    "function `{}` is listed twice; a function takes part once per transaction (its payload may carry several changes)",
                    call.function
                ));
            }
            match self.registry.active(&call.function) {
                None => return invalid(format!("function `{}` is not deployed", call.function)),
                Some(f) if f.handlers.participant.is_none() => {
                    return invalid(format!("function `{}` exports no `faas:platform/participant`", call.function));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
