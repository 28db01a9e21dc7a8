//! Durable workflows: sagas ([`sagas`], state in [`saga_state`]) and two-phase commit ([`tx`]),
//! plus what lets several nodes share them: a node id, a heartbeat, and a sweep that takes over
//! the in-flight work of nodes whose heartbeat stopped (and, at start, this node's own).

pub mod saga_state;
pub mod sagas;
pub mod tx;

use crate::invoker::Invoker;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::workflows::WorkflowStore;
use sagas::Sagas;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tx::Transactions;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A node silent this long is presumed dead and its sagas and transactions are taken over.
const NODE_DEAD_AFTER: Duration = Duration::from_secs(10);
const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub struct Workflows {
    pub sagas: Arc<Sagas>,
    pub transactions: Arc<Transactions>,
    store: Arc<dyn WorkflowStore>,
    node: String,
}

impl Workflows {
    pub fn new(
        store: Arc<dyn WorkflowStore>,
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        metrics: Metrics,
        node: String,
    ) -> Self {
        Self {
            sagas: Sagas::new(store.clone(), registry.clone(), invoker.clone(), metrics.clone(), node.clone()),
            transactions: Transactions::new(store.clone(), registry, invoker, metrics, node.clone()),
            store,
            node,
        }
    }

    /// Sends heartbeats and sweeps for work to recover, at once and then periodically.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let (store, node) = (self.store.clone(), self.node.clone());
        let (sagas, transactions) = (self.sagas.clone(), self.transactions.clone());
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = heartbeat.tick() => {
                        if let Err(error) = store.heartbeat(&node).await {
                            tracing::error!(%error, "node heartbeat failed");
                        }
                    }
                    _ = sweep.tick() => {
                        let stale_before = crate::store::now_ms() - NODE_DEAD_AFTER.as_millis() as i64;
                        match sagas.recover(stale_before).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(sagas = n, "resumed in-flight sagas"),
                            Err(error) => tracing::error!(%error, "saga recovery sweep failed"),
                        }
                        match transactions.recover(stale_before).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(transactions = n, "resumed in-doubt transactions"),
                            Err(error) => tracing::error!(%error, "transaction recovery sweep failed"),
                        }
                    }
                }
            }
        })
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
