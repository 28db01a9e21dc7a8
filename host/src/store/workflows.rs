//! Types and the store trait of sagas and two-phase-commit transactions, as the rest of the host
//! sees them. A saga is a row (definition, status, owner) plus an append-only journal; its state
//! is the fold of the journal (`workflows::saga_state`).

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
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
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
    pub participants: Vec<TxParticipant>,
    pub status: TxStatus,
    pub reason: Option<String>,
    pub owner: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Sagas, transactions and node liveness.
#[async_trait::async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Inserts the saga (status running, with a first `Status` journal entry) unless the
    /// namespace already has one with this key; returns the saga as stored and whether it is new.
    async fn create_saga(&self, saga: &SagaRecord) -> Result<(SagaRecord, bool), StoreError>;
    async fn saga(&self, id: &str) -> Result<Option<SagaRecord>, StoreError>;
    async fn journal(&self, saga_id: &str) -> Result<Vec<JournalRecord>, StoreError>;
    /// Appends entry `seq` (a duplicate `seq` fails: someone else wrote it); a `Status` entry
    /// also updates the saga's row, atomically.
    async fn append_journal(&self, saga_id: &str, seq: u64, entry: &JournalEntry) -> Result<(), StoreError>;
    /// Newest first, optionally only one status.
    async fn sagas(&self, status: Option<SagaStatus>, limit: u32) -> Result<Vec<SagaRecord>, StoreError>;
    /// Makes `node` the owner of every in-flight saga whose owner is `node` itself or has not
    /// sent a heartbeat since `stale_before_ms`; returns their ids.
    async fn claim_sagas(&self, node: &str, stale_before_ms: i64) -> Result<Vec<String>, StoreError>;
    async fn set_saga_owner(&self, saga_id: &str, node: &str) -> Result<(), StoreError>;

    async fn create_tx(&self, tx: &TxRecord) -> Result<(), StoreError>;
    async fn update_tx(
        &self,
        id: &str,
        status: TxStatus,
        reason: Option<&str>,
        participants: &[TxParticipant],
    ) -> Result<(), StoreError>;
    async fn tx(&self, id: &str) -> Result<Option<TxRecord>, StoreError>;
    async fn txs(&self, status: Option<TxStatus>, limit: u32) -> Result<Vec<TxRecord>, StoreError>;
    /// Like [`claim_sagas`](Self::claim_sagas), for unfinished transactions.
    async fn claim_txs(&self, node: &str, stale_before_ms: i64) -> Result<Vec<TxRecord>, StoreError>;

    async fn heartbeat(&self, node: &str) -> Result<(), StoreError>;
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
    fn journal_entries_serialize_with_their_kind() {
        let entry = JournalEntry::ActionFailed { step: 1, attempt: 2, error: "x".into(), terminal: true };
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains("\"kind\":\"action-failed\""), "{json}");
        assert_eq!(serde_json::from_str::<JournalEntry>(&json).unwrap(), entry);
    }
}
