//! [`Transactions`]: the two-phase-commit coordinator. Its log is the `transactions` row: created
//! `preparing` before any participant is asked, moved to `committing` or `aborting` (the
//! decision) before phase 2 starts, and to `committed` or `aborted` when every participant has
//! acknowledged.
//!
//! Every move is a compare-and-set on the current status and the owner's fence, so the decision
//! is written once. The live coordinator and a recovery that presumed its node dead may race to
//! decide; the loser reads the recorded decision and follows it (its participants hear that
//! decision, never its own). Recovery after a crash: a transaction still `preparing` never
//! reached a decision, so it aborts; one `committing` or `aborting` has its phase 2 repeated
//! (participants' `commit` and `abort` are idempotent per transaction id).

use crate::backoff;
use crate::capabilities::workflow_handle::{MAX_PREPARE_TIMEOUT, TxError, TxRequest};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::invoker::{Invoker, ParticipantCall};
use crate::store::StoreError;
use crate::store::workflows::{Fence, ListQuery, Page, TxParticipant, TxRecord, TxStatus, WorkflowStore};
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const MAX_PARTICIPANTS: usize = 32;
const MAX_PAYLOAD_BYTES: usize = 1 << 20;
const MAX_KEY_BYTES: usize = 200;
/// How long `commit-atomically` waits for phase 2 before returning the (already final) decision.
const PHASE_TWO_WAIT: Duration = Duration::from_secs(10);
/// How often a caller waiting on a transaction driven elsewhere looks at its row.
const POLL_EVERY: Duration = Duration::from_millis(50);

pub struct Transactions {
    store: Arc<dyn WorkflowStore>,
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    metrics: Metrics,
    node: String,
    /// Transactions this process is driving (deciding, or in phase 2). An id is taken before
    /// its row is created, so no sweep of this process ever treats live work as leftovers.
    live: Mutex<HashSet<String>>,
}

/// This process drives transaction `id` while the guard lives.
struct Live {
    transactions: Arc<Transactions>,
    id: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.transactions.live_ids().remove(&self.id);
    }
}

impl Transactions {
    pub fn new(
        store: Arc<dyn WorkflowStore>,
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        metrics: Metrics,
        node: String,
    ) -> Arc<Self> {
        Arc::new(Self { store, registry, invoker, metrics, node, live: Mutex::new(HashSet::new()) })
    }

    /// Runs a whole transaction; returns its record once the decision is durable and phase 2 has
    /// finished or had [`PHASE_TWO_WAIT`] to (it goes on in the background). A known key returns
    /// that transaction's outcome instead of running a new one.
    /// Shutdown: waits (up to `grace`) for the transactions this process is driving to reach
    /// their end. One still open after that is finished by recovery, here after a restart or
    /// by another node.
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while !self.live_ids().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.live_ids().len();
        if left > 0 {
            tracing::warn!(
                transactions = left,
                "transactions still open after the drain grace; recovery finishes them"
            );
        }
    }

    pub async fn commit_atomically(self: &Arc<Self>, namespace: &str, request: TxRequest) -> Result<TxRecord, TxError> {
        self.check(&request)?;
        // In a task of its own: a caller that gives up (its instance timed out, its client left)
        // must not cancel a transaction half-way, between its log and its participants.
        let coordinator = tokio::spawn(self.clone().coordinate(namespace.to_owned(), request));
        coordinator
            .await
            .map_err(|e| TxError::Store(StoreError::Corrupt(format!("transaction coordinator failed: {e}"))))?
    }

    async fn coordinate(self: Arc<Self>, namespace: String, request: TxRequest) -> Result<TxRecord, TxError> {
        let namespace = namespace.as_str();
        let id = match &request.idempotency_key {
            Some(key) => tx_id(namespace, key),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let now = crate::store::now_ms();
        let mut record = TxRecord {
            id: id.clone(),
            namespace: namespace.to_owned(),
            idempotency_key: request.idempotency_key.clone(),
            participants: request.calls.into_iter().map(|call| TxParticipant { call, vote: None }).collect(),
            status: TxStatus::Preparing,
            reason: None,
            owner: self.node.clone(),
            epoch: 0,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let Some(live) = self.take_live(&id) else {
            // The same key is being driven in this process right now.
            return self.outcome_of_existing(&record, request.prepare_timeout).await;
        };
        let (stored, created) = self.store.create_tx(&record).await?;
        if !created {
            drop(live);
            return self.outcome_of_existing(&record, request.prepare_timeout).await;
        }
        let fence = Fence { owner: stored.owner, epoch: stored.epoch };
        tracing::info!(tx = %id, participants = record.participants.len(), "transaction preparing");

        let timeout = request.prepare_timeout;
        let votes = futures::future::join_all(record.participants.iter().map(|p| self.prepare(&id, p, timeout))).await;
        let mut reason = None;
        for (participant, vote) in record.participants.iter_mut().zip(votes) {
            if let Err(why) = &vote {
                reason.get_or_insert_with(|| format!("`{}`: {why}", participant.call.function));
            }
            participant.vote = Some(vote.err().unwrap_or_else(|| "commit".into()));
        }
        let decision = if reason.is_none() { TxStatus::Committing } else { TxStatus::Aborting };
        // The decision is durable before any participant hears it, and written only if nobody
        // else decided first.
        let mut fence = fence;
        let mut retries = backoff::WORKFLOW.retries();
        let decided = loop {
            let won = self
                .store
                .transition_tx(&id, TxStatus::Preparing, decision, reason.as_deref(), &record.participants, &fence)
                .await;
            let won = match won {
                Ok(won) => won,
                // Participants hold what they prepared until they hear a decision: keep trying
                // to record one (nobody else will while this node is alive).
                Err(error) => {
                    tracing::error!(tx = %id, %error, "recording the decision failed; retrying");
                    retries.wait().await;
                    continue;
                }
            };
            match (won, self.adopt(&id, &fence, TxStatus::Preparing).await?) {
                (true, _) => break true,
                (false, Some(newer)) => fence = newer,
                (false, None) => break false,
            }
        };
        let phase_two = if decided {
            record.status = decision;
            record.reason = reason;
            tracing::info!(tx = %id, decision = decision.as_str(), reason = ?record.reason, "transaction decided");
            self.spawn_finish(record, fence, live)
        } else {
            let recorded = self.wait_for_decision(&id, MAX_PREPARE_TIMEOUT).await?;
            tracing::warn!(
                tx = %id, ours = decision.as_str(), recorded = recorded.status.as_str(), owner = %recorded.owner,
                "another node decided this transaction first (it presumed this node dead); following its decision"
            );
            self.spawn_follow(recorded, live)
        };
        let _ = tokio::time::timeout(PHASE_TWO_WAIT, phase_two).await;
        self.recorded(&id).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<TxRecord>, StoreError> {
        self.store.tx(id).await
    }

    pub async fn list(&self, query: &ListQuery<TxStatus>) -> Result<Page<TxRecord>, StoreError> {
        self.store.txs(query).await
    }

    /// Takes over unfinished transactions of nodes silent since `stale_before_ms` and, with
    /// `own` (once, at start-up), this node's own from before a restart; finishes each.
    pub async fn recover(self: &Arc<Self>, stale_before_ms: i64, own: bool) -> Result<usize, StoreError> {
        let mut resumed = 0;
        for mut record in self.store.claim_txs(&self.node, stale_before_ms, own).await? {
            let Some(live) = self.take_live(&record.id) else { continue };
            let fence = Fence { owner: record.owner.clone(), epoch: record.epoch };
            if record.status == TxStatus::Preparing {
                // No decision was recorded, so nobody was told to commit: abort.
                let reason = "the coordinator stopped before deciding";
                let aborted = self
                    .store
                    .transition_tx(
                        &record.id,
                        TxStatus::Preparing,
                        TxStatus::Aborting,
                        Some(reason),
                        &record.participants,
                        &fence,
                    )
                    .await?;
                if !aborted {
                    // Taken over again meanwhile: the new owner finishes it.
                    continue;
                }
                record.status = TxStatus::Aborting;
                record.reason = Some(reason.into());
            }
            tracing::info!(tx = %record.id, decision = record.status.as_str(), epoch = fence.epoch, "recovering in-doubt transaction");
            self.spawn_finish(record, fence, live);
            resumed += 1;
        }
        Ok(resumed)
    }

    /// A repeated key: the recorded transaction, once decided (and, if it can, finished).
    async fn outcome_of_existing(&self, asked: &TxRecord, prepare_timeout: Duration) -> Result<TxRecord, TxError> {
        // A concurrent call with the same key in this process may not have written the row yet.
        let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
        let stored = loop {
            match self.store.tx(&asked.id).await? {
                Some(stored) => break stored,
                None if tokio::time::Instant::now() < deadline => tokio::time::sleep(POLL_EVERY).await,
                None => return Err(TxError::Undecided(asked.id.clone())),
            }
        };
        let calls = |r: &TxRecord| r.participants.iter().map(|p| p.call.clone()).collect::<Vec<_>>();
        if stored.namespace != asked.namespace || calls(&stored) != calls(asked) {
            return Err(TxError::Conflict(format!(
                "idempotency key `{}` already names transaction {} with other participants",
                asked.idempotency_key.as_deref().unwrap_or_default(),
                stored.id
            )));
        }
        let decided = self.wait_for_decision(&stored.id, prepare_timeout + PHASE_TWO_WAIT).await?;
        if !decided.status.is_decided() {
            return Err(TxError::Undecided(decided.id));
        }
        let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
        let mut record = decided;
        while !record.status.is_final() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(POLL_EVERY).await;
            record = self.recorded(&record.id).await?;
        }
        Ok(record)
    }

    /// The record once it holds a decision, or as it is after `limit`.
    async fn wait_for_decision(&self, id: &str, limit: Duration) -> Result<TxRecord, TxError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let record = self.recorded(id).await?;
            if record.status.is_decided() || tokio::time::Instant::now() >= deadline {
                return Ok(record);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// After a lost compare-and-set: the newer fence of this node, if a sweep of its own claimed
    /// the transaction again (it skips transactions driven here, so the driver carries on under
    /// the new epoch), while it is still `status`. None: another node owns it, or it moved on.
    async fn adopt(&self, id: &str, fence: &Fence, status: TxStatus) -> Result<Option<Fence>, TxError> {
        let record = self.recorded(id).await?;
        let ours = record.owner == self.node && record.epoch > fence.epoch && record.status == status;
        Ok(ours.then_some(Fence { owner: record.owner, epoch: record.epoch }))
    }

    async fn recorded(&self, id: &str) -> Result<TxRecord, TxError> {
        self.store.tx(id).await?.ok_or_else(|| StoreError::Corrupt(format!("transaction {id} vanished")).into())
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

    fn live_ids(&self) -> MutexGuard<'_, HashSet<String>> {
        // The set holds plain ids; a panic elsewhere cannot leave it half-changed.
        self.live.lock()
    }

    /// Marks `id` as driven here; none if it already is.
    fn take_live(self: &Arc<Self>, id: &str) -> Option<Live> {
        self.live_ids().insert(id.to_owned()).then(|| Live { transactions: self.clone(), id: id.to_owned() })
    }

    /// Phase 2 as the owner, in a task of its own: tell every participant the decision until
    /// each acknowledged, then record the end (unless the transaction was taken over).
    fn spawn_finish(self: &Arc<Self>, record: TxRecord, mut fence: Fence, live: Live) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            this.deliver_all(&record).await;
            let done = if record.status == TxStatus::Committing { TxStatus::Committed } else { TxStatus::Aborted };
            let mut retries = backoff::WORKFLOW.retries();
            loop {
                let ended = this
                    .store
                    .transition_tx(
                        &record.id,
                        record.status,
                        done,
                        record.reason.as_deref(),
                        &record.participants,
                        &fence,
                    )
                    .await;
                match ended {
                    Ok(true) => {
                        this.metrics.transactions.with_label_values(&[done.as_str()]).inc();
                        tracing::info!(tx = %record.id, status = done.as_str(), "transaction finished");
                        break;
                    }
                    Ok(false) => match this.adopt(&record.id, &fence, record.status).await {
                        Ok(Some(newer)) => fence = newer,
                        Ok(None) => {
                            tracing::info!(tx = %record.id, "transaction was taken over by another node; it finishes it");
                            break;
                        }
                        Err(error) => {
                            tracing::error!(tx = %record.id, %error, "reading the transaction failed; retrying");
                            retries.wait().await;
                        }
                    },
                    Err(error) => {
                        tracing::error!(tx = %record.id, %error, "recording the end of phase 2 failed; retrying");
                        retries.wait().await;
                    }
                }
            }
            drop(live);
        })
    }

    /// Phase 2 as the loser of the decision: its participants hear the recorded decision too
    /// (a prepare of ours that landed after the owner's abort must not leave a hold behind).
    /// The owner records the end.
    fn spawn_follow(self: &Arc<Self>, recorded: TxRecord, live: Live) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if recorded.status.is_decided() {
                this.deliver_all(&recorded).await;
            }
            drop(live);
        })
    }

    async fn deliver_all(&self, record: &TxRecord) {
        let commit = matches!(record.status, TxStatus::Committing | TxStatus::Committed);
        futures::future::join_all(
            record.participants.iter().map(|p| self.deliver(&record.id, &p.call.function, commit)),
        )
        .await;
    }

    async fn deliver(&self, tx_id: &str, function: &str, commit: bool) {
        let call = if commit { ParticipantCall::Commit { tx_id } } else { ParticipantCall::Abort { tx_id } };
        let mut retries = backoff::WORKFLOW.retries();
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
            retries.wait().await;
        }
    }

    fn check(&self, request: &TxRequest) -> Result<(), TxError> {
        let invalid = |m: String| Err(TxError::Invalid(m));
        let calls = &request.calls;
        if let Some(key) = &request.idempotency_key
            && (key.is_empty() || key.len() > MAX_KEY_BYTES)
        {
            return invalid(format!("the idempotency key must be 1-{MAX_KEY_BYTES} bytes"));
        }
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

/// Deterministic, so a second call with the same key finds the same transaction.
pub fn tx_id(namespace: &str, idempotency_key: &str) -> String {
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("faas-tx:{namespace}").as_bytes());
    uuid::Uuid::new_v5(&namespace, idempotency_key.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_ids_depend_on_namespace_and_key() {
        assert_eq!(tx_id("bank", "t-1"), tx_id("bank", "t-1"));
        assert_ne!(tx_id("bank", "t-1"), tx_id("bank", "t-2"));
        assert_ne!(tx_id("bank", "t-1"), tx_id("other", "t-1"));
        assert_ne!(tx_id("bank", "t-1"), crate::workflows::sagas::saga_id("bank", "t-1"));
    }
}
