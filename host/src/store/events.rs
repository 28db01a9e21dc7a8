//! Types and traits of the event store, the key-value read models and subscription bookkeeping,
//! as the rest of the host sees them (the WIT types are mapped to these in `capabilities`).

use super::StoreError;
use super::leases::LeaseFence;
use super::workflows::StepFence;
use crate::model::names::StreamFilter;
use serde::Serialize;

/// An event to append (already validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: String,
    pub event_type: String,
    pub data: Vec<u8>,
    /// JSON: `{"correlation_id","causation_id","custom":[[k,v],…]}`.
    pub metadata: String,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedEvent {
    pub namespace: String,
    pub stream: String,
    pub version: u64,
    pub position: u64,
    pub id: String,
    pub event_type: String,
    #[serde(skip)]
    pub data: Vec<u8>,
    #[serde(skip)]
    pub metadata: String,
    pub recorded_at_ms: i64,
}

/// The optimistic-concurrency condition of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

impl Expected {
    /// Whether a stream whose last version is `current` satisfies this.
    pub fn admits(self, current: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current.is_none(),
            Self::StreamExists => current.is_some(),
            Self::Exact(v) => current == Some(v),
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("wrong expected version: expected {expected:?}, the stream is at {actual:?}")]
    WrongExpectedVersion { expected: Expected, actual: Option<u64> },
    #[error("{0}")]
    IdempotencyConflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AppendError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A parked event: delivery gave up on it after its attempts.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedEvent {
    pub id: i64,
    pub subscription: String,
    pub position: u64,
    pub error: String,
    pub attempts: u32,
    pub parked_at_ms: i64,
    pub replayed_at_ms: Option<i64>,
}

/// Streams of events. Appends are serialized (see the migration), so global positions are
/// gap-free and become visible in order.
///
/// A write made by a saga step carries the step's [`StepFence`] and is refused
/// ([`StoreError::Fenced`]) once the saga moved on to another owner or epoch.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    async fn append(
        &self,
        namespace: &str,
        stream: &str,
        expected: Expected,
        events: &[NewEvent],
        fence: Option<&StepFence>,
    ) -> Result<Appended, AppendError>;
    async fn read_stream(
        &self,
        namespace: &str,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError>;
    /// Events of the given namespaces with `position >= from_position`, in order.
    async fn read_all(
        &self,
        namespaces: &[&str],
        from_position: u64,
        max: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError>;
    /// Events matching a subscription with `position > after`, in order.
    async fn read_filtered(
        &self,
        namespace: &str,
        filter: &StreamFilter,
        after: u64,
        max: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError>;
    async fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>, StoreError>;
    /// The last position handed out.
    async fn head(&self) -> Result<u64, StoreError>;
    /// Every namespace holding a stream, by name, with how many streams it holds.
    async fn namespaces(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Streams of `namespace` named after `after`, by name, at most `limit`, each with its
    /// current version.
    async fn streams(&self, namespace: &str, after: &str, limit: u32) -> Result<Vec<(String, u64)>, StoreError>;
}

/// Key-value entries per namespace. Writes take a step's fence as [`EventStore::append`] does.
#[async_trait::async_trait]
pub trait KvStore: Send + Sync + 'static {
    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn kv_set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        fence: Option<&StepFence>,
    ) -> Result<(), StoreError>;
    async fn kv_delete(&self, namespace: &str, key: &str, fence: Option<&StepFence>) -> Result<bool, StoreError>;
    async fn kv_list(
        &self,
        namespace: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    async fn kv_compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        fence: Option<&StepFence>,
    ) -> Result<bool, StoreError>;
}

/// What [`SubscriptionStore::reset`] does.
#[derive(Debug, Clone)]
pub struct SubscriptionReset<'a> {
    pub function: &'a str,
    pub subscription: &'a str,
    pub lease: &'a str,
    pub position: u64,
    pub clear_parked: bool,
    /// Deletes every kv entry of the function's namespace.
    pub clear_kv: bool,
}

/// What a reset deleted.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ResetCounts {
    pub cleared_parked: u64,
    pub cleared_kv: u64,
}

/// Durable checkpoints and parked events of subscriptions.
#[async_trait::async_trait]
pub trait SubscriptionStore: Send + Sync + 'static {
    async fn checkpoint(&self, function: &str, subscription: &str) -> Result<Option<u64>, StoreError>;
    /// Saves the checkpoint if `fence` still holds: [`StoreError::Fenced`] once the lease
    /// changed hands or was reset (the write and the check are one statement).
    async fn save_checkpoint(
        &self,
        function: &str,
        subscription: &str,
        position: u64,
        fence: &LeaseFence,
    ) -> Result<(), StoreError>;
    /// A projection rebuild, in one transaction: takes `reset.lease` from whoever holds it (its
    /// epoch bumped, so the holder's next checkpoint write is refused and it starts over from
    /// the new checkpoint once it holds the lease again), sets the checkpoint and, if asked,
    /// deletes the subscription's parked events and the function's kv entries (its read
    /// model). Two resets of one subscription wait for each other on the lease row.
    async fn reset(&self, reset: &SubscriptionReset<'_>) -> Result<ResetCounts, StoreError>;
    async fn park(
        &self,
        function: &str,
        subscription: &str,
        position: u64,
        error: &str,
        attempts: u32,
    ) -> Result<(), StoreError>;
    /// Up to `limit` parked events of `function` with an id above `after`, oldest first.
    async fn parked(&self, function: &str, after: i64, limit: u32) -> Result<Vec<ParkedEvent>, StoreError>;
    async fn mark_replayed(&self, function: &str, id: i64) -> Result<bool, StoreError>;
}
