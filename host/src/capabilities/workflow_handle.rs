//! [`WorkflowHandle`]: how the `saga` and `tx` imports reach the workflow engines. The engines
//! sit above the runtime (they invoke functions), the imports below it, so the imports hold the
//! sending half of a channel and the engines serve the receiving half ([`WorkflowCalls`]): each
//! call carries a oneshot for its answer. Everything is constructed in dependency order, and a
//! call made while the engines are not running is answered `unavailable`, never a panic.
//!
//! The types here are the engines' interface: what a caller asks ([`TxRequest`]), what it is
//! told ([`SagaView`], [`SagaError`], [`TxError`]).

use crate::store::StoreError;
use crate::store::saga_state::SagaState;
use crate::store::workflows::{Invocation, JournalRecord, SagaDefinition, SagaRecord, SagaStatus, TxRecord};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Calls waiting for the engines; a guest blocks on its call, so this bounds nothing a busy
/// node would not already hold in instances.
const QUEUE: usize = 1024;

pub const DEFAULT_PREPARE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest prepare a caller may ask for.
pub const MAX_PREPARE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("saga `{0}` not found")]
    NotFound(String),
    #[error("saga `{id}` is {status}, not stuck: {action} applies only to stuck sagas")]
    NotStuck { id: String, status: &'static str, action: &'static str },
    /// The workflow engine is not running (yet, or any more).
    #[error("the saga engine is not running; retry")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SagaError {
    /// A store error of saga `id`: a fenced write means someone else got there first.
    pub fn from_store(error: StoreError, id: &str) -> Self {
        match error {
            StoreError::Fenced(_) => Self::Conflict(format!("saga `{id}` was resolved or taken over concurrently")),
            other => Self::Store(other),
        }
    }
}

/// A saga with its journal and folded state, for status APIs.
pub struct SagaView {
    pub record: SagaRecord,
    pub state: SagaState,
    pub journal: Vec<JournalRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("{0}")]
    Invalid(String),
    /// The idempotency key names a transaction with other participants.
    #[error("{0}")]
    Conflict(String),
    /// A transaction with this key is still being prepared elsewhere; ask again.
    #[error("transaction {0} is still being prepared; ask again with the same key")]
    Undecided(String),
    /// The workflow engine is not running (yet, or any more).
    #[error("the transaction coordinator is not running; retry")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `commit-atomically` asks for.
pub struct TxRequest {
    pub calls: Vec<Invocation>,
    pub prepare_timeout: Duration,
    /// Same key in the same namespace: same transaction (its recorded outcome).
    pub idempotency_key: Option<String>,
}

/// One call of the workflow engines, with where its answer goes.
pub enum WorkflowCall {
    StartSaga {
        namespace: String,
        idempotency_key: String,
        definition: SagaDefinition,
        /// The W3C `traceparent` of the span that started it.
        trace_parent: Option<String>,
        reply: oneshot::Sender<Result<SagaRecord, SagaError>>,
    },
    WaitSaga {
        id: String,
        timeout: Duration,
        reply: oneshot::Sender<Result<SagaStatus, SagaError>>,
    },
    ViewSaga {
        id: String,
        reply: oneshot::Sender<Result<SagaView, SagaError>>,
    },
    CommitAtomically {
        namespace: String,
        request: TxRequest,
        reply: oneshot::Sender<Result<TxRecord, TxError>>,
    },
}

/// The capabilities' end: cheap to clone, one per node.
#[derive(Clone)]
pub struct WorkflowHandle(mpsc::Sender<WorkflowCall>);

/// The engines' end (see `workflows::Workflows::serve`).
pub struct WorkflowCalls(pub mpsc::Receiver<WorkflowCall>);

/// A connected pair.
pub fn workflow_channel() -> (WorkflowHandle, WorkflowCalls) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    (WorkflowHandle(sender), WorkflowCalls(receiver))
}

impl WorkflowHandle {
    /// Sends the call `make` builds around a fresh reply channel, and waits for the answer;
    /// `down` if the engines are not there to answer.
    async fn ask<R, E>(
        &self,
        down: E,
        make: impl FnOnce(oneshot::Sender<Result<R, E>>) -> WorkflowCall,
    ) -> Result<R, E> {
        let (reply, answer) = oneshot::channel();
        if self.0.send(make(reply)).await.is_err() {
            return Err(down);
        }
        answer.await.unwrap_or(Err(down))
    }

    /// Starts a saga; `trace_parent` (a W3C `traceparent`) is the span its steps are children of.
    pub async fn start_saga(
        &self,
        namespace: &str,
        idempotency_key: &str,
        definition: SagaDefinition,
        trace_parent: Option<String>,
    ) -> Result<SagaRecord, SagaError> {
        let (namespace, idempotency_key) = (namespace.to_owned(), idempotency_key.to_owned());
        self.ask(SagaError::Unavailable, |reply| WorkflowCall::StartSaga {
            namespace,
            idempotency_key,
            definition,
            trace_parent,
            reply,
        })
        .await
    }

    /// Waits until saga `id` settles or `timeout` passes; its status then.
    pub async fn wait_saga(&self, id: &str, timeout: Duration) -> Result<SagaStatus, SagaError> {
        let id = id.to_owned();
        self.ask(SagaError::Unavailable, |reply| WorkflowCall::WaitSaga { id, timeout, reply }).await
    }

    pub async fn view_saga(&self, id: &str) -> Result<SagaView, SagaError> {
        let id = id.to_owned();
        self.ask(SagaError::Unavailable, |reply| WorkflowCall::ViewSaga { id, reply }).await
    }

    pub async fn commit_atomically(&self, namespace: &str, request: TxRequest) -> Result<TxRecord, TxError> {
        let namespace = namespace.to_owned();
        self.ask(TxError::Unavailable, |reply| WorkflowCall::CommitAtomically { namespace, request, reply }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_without_a_running_engine_are_unavailable() {
        let (handle, calls) = workflow_channel();
        drop(calls);
        assert!(matches!(handle.view_saga("s").await, Err(SagaError::Unavailable)));
        let (handle, mut calls) = workflow_channel();
        let dropping = tokio::spawn(async move { drop(calls.0.recv().await) });
        let request = TxRequest { calls: Vec::new(), prepare_timeout: DEFAULT_PREPARE_TIMEOUT, idempotency_key: None };
        assert!(matches!(handle.commit_atomically("ns", request).await, Err(TxError::Unavailable)));
        dropping.await.unwrap();
    }
}
