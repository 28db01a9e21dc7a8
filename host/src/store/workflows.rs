//! Types and the store trait of sagas and two-phase-commit transactions, as the rest of the host
//! sees them. A saga is a row (definition, status, owner) plus an append-only journal; its state
//! is the fold of the journal (`store::saga_state`).

use super::StoreError;
use serde::{Deserialize, Serialize};

/// One call of a function's `step-handler` (saga) or `participant` (2PC) export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub function: String,
    #[serde(with = "payload")]
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDefinition {
    pub name: String,
    pub action: Invocation,
    pub compensation: Option<Invocation>,
    pub max_attempts: u32,
    pub timeout_ms: Option<u32>,
    pub backoff_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaDefinition {
    pub name: String,
    #[serde(with = "payload")]
    pub input: Vec<u8>,
    pub steps: Vec<StepDefinition>,
    pub max_compensation_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "kebab-case")]
pub enum SagaStatus {
    Running,
    Compensating,
    Completed,
    Compensated,
    Stuck,
}

impl SagaStatus {
    pub const ALL: [Self; 5] = [Self::Running, Self::Compensating, Self::Completed, Self::Compensated, Self::Stuck];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Stuck => "stuck",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Completed or compensated: nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated)
    }

    /// Running or compensating: a node is (or should be) working on it.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Running | Self::Compensating)
    }
}

/// A saga's row.
#[derive(Debug, Clone)]
pub struct SagaRecord {
    pub id: String,
    pub namespace: String,
    pub idempotency_key: String,
    pub definition: SagaDefinition,
    pub status: SagaStatus,
    pub error: Option<String>,
    pub owner: String,
    /// Bumped by every change of owner (see [`Fence`]).
    pub epoch: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The W3C `traceparent` of the span that started the saga: its steps' spans are its
    /// children, on whichever node runs them. None when it was started untraced.
    pub trace_parent: Option<String>,
}

/// The right to write a saga's or a transaction's record: its owner and the epoch that owner
/// holds. Every takeover bumps the epoch, and every write of the owner names the epoch it
/// holds, so a node paused past its heartbeat timeout wakes up with an old epoch and its writes
/// are refused ([`StoreError::Fenced`]) instead of overwriting its successor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub owner: String,
    pub epoch: i64,
}

/// The saga a step invocation runs for, and the fence its runner held when it started the
/// attempt. The step's writes (appends, key-value changes) land only while that fence still
/// owns the saga, checked in the same database transaction as the write: a node paused in the
/// middle of a step wakes up to find its late effects refused, so the attempt that the new
/// owner re-ran is the only one that counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFence {
    pub saga_id: String,
    pub fence: Fence,
}

/// What a list of sagas or transactions asks for: filters, a page size, and where the previous
/// page ended. Lists are newest first.
#[derive(Debug, Clone, Default)]
pub struct ListQuery<S> {
    pub status: Option<S>,
    pub namespace: Option<String>,
    pub idempotency_key: Option<String>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// The position of the last row of a page: `(created_at_ms, id)`, newest first. Opaque to
/// clients (`<ms>.<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at_ms: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at_ms, self.id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (ms, id) = text.split_once('.')?;
        Some(Self { created_at_ms: ms.parse().ok()?, id: id.to_owned() })
    }
}

/// One page of a list and the cursor of the next one (none: this was the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// From `limit + 1` rows fetched: the extra row only says there is more.
    pub fn of(mut rows: Vec<T>, limit: u32, cursor: impl Fn(&T) -> Cursor) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(cursor) } else { None };
        Self { items: rows, next }
    }
}

/// One transition of a saga. Steps are indexes into the definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JournalEntry {
    /// Written before the action is invoked.
    ActionAttempt {
        step: usize,
        attempt: u32,
    },
    ActionSucceeded {
        step: usize,
        #[serde(with = "payload")]
        output: Vec<u8>,
    },
    /// `terminal`: the step refused (no retry, no effect), or this was its last attempt.
    ActionFailed {
        step: usize,
        attempt: u32,
        error: String,
        terminal: bool,
    },
    CompensationAttempt {
        step: usize,
        attempt: u32,
    },
    CompensationSucceeded {
        step: usize,
    },
    CompensationFailed {
        step: usize,
        attempt: u32,
        error: String,
    },
    /// An operator gave up on this compensation.
    CompensationSkipped {
        step: usize,
    },
    /// The saga's status changed (also written to its row, in the same transaction).
    Status {
        status: SagaStatus,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub seq: u64,
    pub at_ms: i64,
    pub entry: JournalEntry,
}

/// A two-phase-commit participant as the coordinator logs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxParticipant {
    #[serde(flatten)]
    pub call: Invocation,
    /// `commit`, or why it voted abort / failed to prepare; none before it voted.
    pub vote: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "kebab-case")]
pub enum TxStatus {
    Preparing,
    Committing,
    Aborting,
    Committed,
    Aborted,
}

impl TxStatus {
    /// Committing or aborting and later: the decision is recorded and will not change.
    pub fn is_decided(self) -> bool {
        self != Self::Preparing
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Committed | Self::Aborted)
    }

    pub const ALL: [Self; 5] = [Self::Preparing, Self::Committing, Self::Aborting, Self::Committed, Self::Aborted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Committing => "committing",
            Self::Aborting => "aborting",
            Self::Committed => "committed",
            Self::Aborted => "aborted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone)]
pub struct TxRecord {
    pub id: String,
    pub namespace: String,
    /// The caller's key, if it gave one: the same key in a namespace is the same transaction.
    pub idempotency_key: Option<String>,
    pub participants: Vec<TxParticipant>,
    pub status: TxStatus,
    pub reason: Option<String>,
    pub owner: String,
    /// Bumped by every change of owner (see [`Fence`]).
    pub epoch: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Sagas, transactions and node liveness. Every write of an owner's is fenced (see [`Fence`]),
/// and every status change is a compare-and-set on the expected current status: a decision is
/// written once.
#[async_trait::async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Inserts the saga (status running, with a first `Status` journal entry) unless the
    /// namespace already has one with this key; returns the saga as stored and whether it is new.
    async fn create_saga(&self, saga: &SagaRecord) -> Result<(SagaRecord, bool), StoreError>;
    async fn saga(&self, id: &str) -> Result<Option<SagaRecord>, StoreError>;
    async fn journal(&self, saga_id: &str) -> Result<Vec<JournalRecord>, StoreError>;
    /// Appends entry `seq` if `fence` still owns the saga ([`StoreError::Fenced`] if not; a
    /// duplicate `seq` fails too). A `Status` entry also updates the saga's row, atomically.
    async fn append_journal(
        &self,
        saga_id: &str,
        seq: u64,
        entry: &JournalEntry,
        fence: &Fence,
    ) -> Result<(), StoreError>;
    async fn sagas(&self, query: &ListQuery<SagaStatus>) -> Result<Page<SagaRecord>, StoreError>;
    /// Makes `node` the owner (bumping the epoch) of every in-flight saga whose owner has not
    /// sent a heartbeat since `stale_before_ms`, and, with `own`, of those `node` owned before
    /// (at start-up, before this process runs any); returns their ids and fences.
    async fn claim_sagas(
        &self,
        node: &str,
        stale_before_ms: i64,
        own: bool,
    ) -> Result<Vec<(String, Fence)>, StoreError>;
    /// Makes `node` the owner of a saga that is stuck (an operator resolves it there); none if
    /// it is not stuck.
    async fn claim_stuck_saga(&self, saga_id: &str, node: &str) -> Result<Option<Fence>, StoreError>;

    /// Inserts the transaction unless one with its id exists; returns it as stored and whether
    /// it is new.
    async fn create_tx(&self, tx: &TxRecord) -> Result<(TxRecord, bool), StoreError>;
    /// Moves a transaction from `from` to `to` if it is still `from` and `fence` still owns it;
    /// false if not (someone else decided or took it over: read it again and follow that).
    async fn transition_tx(
        &self,
        id: &str,
        from: TxStatus,
        to: TxStatus,
        reason: Option<&str>,
        participants: &[TxParticipant],
        fence: &Fence,
    ) -> Result<bool, StoreError>;
    async fn tx(&self, id: &str) -> Result<Option<TxRecord>, StoreError>;
    async fn txs(&self, query: &ListQuery<TxStatus>) -> Result<Page<TxRecord>, StoreError>;
    /// Like [`claim_sagas`](Self::claim_sagas), for unfinished transactions; returns them as
    /// claimed (new owner and epoch).
    async fn claim_txs(&self, node: &str, stale_before_ms: i64, own: bool) -> Result<Vec<TxRecord>, StoreError>;

    /// Records that `node` is alive, and where its control plane answers (if it says).
    async fn heartbeat(&self, node: &str, admin_url: Option<&str>) -> Result<(), StoreError>;
}

/// Payload bytes in the stored JSON: UTF-8 text when they are (they usually are JSON), else hex
/// prefixed with `hex:`.
pub mod payload {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn to_text(bytes: &[u8]) -> String {
        match std::str::from_utf8(bytes) {
            Ok(text) if !text.starts_with("hex:") => text.to_owned(),
            _ => format!("hex:{}", hex::encode(bytes)),
        }
    }

    pub fn from_text(text: &str) -> Result<Vec<u8>, hex::FromHexError> {
        match text.strip_prefix("hex:") {
            Some(encoded) => hex::decode(encoded),
            None => Ok(text.as_bytes().to_vec()),
        }
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_text(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        from_text(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_as_text_or_hex() {
        for bytes in [b"{\"a\":1}".to_vec(), vec![0xff, 0x00], b"hex:looks-encoded".to_vec(), Vec::new()] {
            let text = payload::to_text(&bytes);
            assert_eq!(payload::from_text(&text).unwrap(), bytes, "{text}");
        }
        assert_eq!(payload::to_text(b"{}"), "{}");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor { created_at_ms: 1_764_000_000_123, id: "a.b-c".into() };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "nonsense", "x.id", "12"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_page_says_whether_there_is_more() {
        let cursor = |n: &i64| Cursor { created_at_ms: *n, id: n.to_string() };
        let page = Page::of(vec![5, 4, 3], 2, cursor);
        assert_eq!((page.items, page.next), (vec![5, 4], Some(cursor(&4))));
        let last = Page::of(vec![2, 1], 2, cursor);
        assert_eq!((last.items, last.next), (vec![2, 1], None));
    }

    #[test]
    fn journal_entries_serialize_with_their_kind() {
        let entry = JournalEntry::ActionFailed { step: 1, attempt: 2, error: "x".into(), terminal: true };
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains("\"kind\":\"action-failed\""), "{json}");
        assert_eq!(serde_json::from_str::<JournalEntry>(&json).unwrap(), entry);
    }
}
