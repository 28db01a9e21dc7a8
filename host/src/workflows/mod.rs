//! Durable workflows: sagas ([`sagas`], their state folded in `store::saga_state`, with the
//! [`builtin_steps`] timers and HTTP calls) and two-phase commit ([`tx`]),
//! plus what lets several nodes share them: a node id, a heartbeat, and a sweep that takes over
//! the in-flight work of nodes whose heartbeat stopped (and, at start, this node's own).
//! A takeover bumps the row's epoch and every later write names it (`store::workflows::Fence`),
//! so a node that was paused past its timeout cannot write over its successor.

pub mod builtin_steps;
pub mod sagas;
pub mod tx;

use crate::capabilities::workflow_handle::{WorkflowCall, WorkflowCalls};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::invoker::Invoker;
use crate::store::StoreError;
use crate::store::workflows::WorkflowStore;
use sagas::Sagas;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tx::Transactions;

/// How nodes tell each other they are alive, and how soon work of a silent node is taken over.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// A node silent this long is presumed dead, and its sagas and transactions are taken over.
    pub node_timeout: Duration,
    /// How often each node looks for work of dead nodes.
    pub sweep_every: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self { node_timeout: Duration::from_secs(10), sweep_every: Duration::from_secs(5) }
    }
}

impl Liveness {
    /// Five heartbeats per timeout: a node is declared dead only after missing several.
    fn heartbeat_every(&self) -> Duration {
        (self.node_timeout / 5).max(Duration::from_millis(10))
    }
}

pub struct Workflows {
    pub sagas: Arc<Sagas>,
    pub transactions: Arc<Transactions>,
    store: Arc<dyn WorkflowStore>,
    node: String,
    /// Where this node's control plane answers, as heartbeats tell the other nodes.
    admin_url: Option<String>,
    liveness: Liveness,
}

impl Workflows {
    pub fn new(
        store: Arc<dyn WorkflowStore>,
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        metrics: Metrics,
        node: String,
        liveness: Liveness,
    ) -> Self {
        Self {
            sagas: Sagas::new(store.clone(), registry.clone(), invoker.clone(), metrics.clone(), node.clone()),
            transactions: Transactions::new(store.clone(), registry, invoker, metrics, node.clone()),
            store,
            node,
            admin_url: None,
            liveness,
        }
    }

    /// Heartbeats also say where this node's control plane answers.
    pub fn advertising(mut self, admin_url: Option<String>) -> Self {
        self.admin_url = admin_url;
        self
    }

    /// Announces this node, resumes what it owned before a restart (before it starts any new
    /// work, so nothing it runs itself is mistaken for leftovers), then answers the guests'
    /// `calls`, sends heartbeats and sweeps for the work of dead nodes in the background.
    pub async fn start(&self, calls: WorkflowCalls) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
        self.store.heartbeat(&self.node, self.admin_url.as_deref()).await?;
        sweep(&self.sagas, &self.transactions, self.stale_before(), true).await;
        let server = self.serve(calls);
        let heartbeat = {
            let (store, node, every) = (self.store.clone(), self.node.clone(), self.liveness.heartbeat_every());
            let admin_url = self.admin_url.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                loop {
                    ticks.tick().await;
                    if let Err(error) = store.heartbeat(&node, admin_url.as_deref()).await {
                        tracing::error!(%error, "node heartbeat failed");
                    }
                }
            })
        };
        let sweeper = {
            let (sagas, transactions) = (self.sagas.clone(), self.transactions.clone());
            let liveness = self.liveness;
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(liveness.sweep_every);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let stale_before = crate::store::now_ms() - liveness.node_timeout.as_millis() as i64;
                    sweep(&sagas, &transactions, stale_before, false).await;
                }
            })
        };
        Ok(vec![server, heartbeat, sweeper])
    }

    /// Answers the capabilities' calls (see `WorkflowHandle`), each in a task of its own (a
    /// guest waiting on one saga must not hold up another's start).
    fn serve(&self, mut calls: WorkflowCalls) -> tokio::task::JoinHandle<()> {
        let (sagas, transactions) = (self.sagas.clone(), self.transactions.clone());
        tokio::spawn(async move {
            while let Some(call) = calls.0.recv().await {
                let (sagas, transactions) = (sagas.clone(), transactions.clone());
                // A caller that went away (its instance timed out) drops its reply: nothing to do.
                tokio::spawn(async move {
                    match call {
                        WorkflowCall::StartSaga { namespace, idempotency_key, definition, trace_parent, reply } => {
                            let started = sagas.start(&namespace, &idempotency_key, definition, trace_parent).await;
                            let _ = reply.send(started);
                        }
                        WorkflowCall::WaitSaga { id, timeout, reply } => {
                            let _ = reply.send(sagas.wait(&id, timeout).await);
                        }
                        WorkflowCall::ViewSaga { id, reply } => {
                            let _ = reply.send(sagas.view(&id).await);
                        }
                        WorkflowCall::CommitAtomically { namespace, request, reply } => {
                            let _ = reply.send(transactions.commit_atomically(&namespace, request).await);
                        }
                    }
                });
            }
        })
    }

    /// Shutdown, after the triggers drained (no new guest calls): saga runners finish the step
    /// in hand, coordinators their transaction, within `grace`.
    pub async fn drain(&self, grace: Duration) {
        tokio::join!(self.sagas.drain(grace), self.transactions.drain(grace));
    }

    /// How long a node may be silent before it counts as dead.
    pub fn node_timeout(&self) -> Duration {
        self.liveness.node_timeout
    }

    fn stale_before(&self) -> i64 {
        crate::store::now_ms() - self.liveness.node_timeout.as_millis() as i64
    }
}

/// Takes over the in-flight sagas and transactions of nodes silent since `stale_before` (and,
/// with `own`, this node's from before a restart).
async fn sweep(sagas: &Arc<Sagas>, transactions: &Arc<Transactions>, stale_before: i64, own: bool) {
    match sagas.recover(stale_before, own).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sagas = n, own, "resumed in-flight sagas"),
        Err(error) => tracing::error!(%error, "saga recovery sweep failed"),
    }
    match transactions.recover(stale_before, own).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(transactions = n, own, "resumed in-doubt transactions"),
        Err(error) => tracing::error!(%error, "transaction recovery sweep failed"),
    }
}

/// This node's id, kept in the data dir so that a restarted process owns (and at once resumes)
/// what it was running; a new data dir is a new node.
pub fn node_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}
