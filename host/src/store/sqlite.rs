//! [`SqliteStore`]: the embedded default. One file in the data dir, WAL mode, no setup.

use super::StoreError;
use super::events_sql::{impl_event_stores, impl_transactional_append};
use super::functions_sql::{impl_function_store, insert_config};
use super::group_commit::GroupCommit;
use super::invocations::impl_invocation_store;
use super::leases::impl_lease_store;
use super::schedules::impl_schedule_store;
use super::sqlite_batch::SqliteBatch;
use super::workflows_sql::impl_workflow_store;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
    /// Appends without a fence, committed in groups.
    group: GroupCommit,
    /// Held while the store is open: SQLite is single-node (see [`single_node`]).
    _lock: Option<std::fs::File>,
    /// The background checkpointer (see [`checkpoints`]), stopped with the store.
    checkpointer: Option<tokio::task::AbortHandle>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(task) = &self.checkpointer {
            task.abort();
        }
    }
}

/// How often the background checkpointer runs, and the WAL size (pages) at which a committing
/// connection checkpoints itself (SQLite's default is 1,000), should the background one fall behind.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
const AUTOCHECKPOINT_PAGES: &str = "10000";

/// Copies the WAL into the database file in the background. SQLite does it on the connection
/// that commits past `wal_autocheckpoint` pages, which here is the group commit's writer: every
/// few thousand appends one batch would also pay for a checkpoint (the writes and the fsync of
/// the database file) while every other append waits behind it. A PASSIVE checkpoint never
/// waits for or blocks a writer; whatever a reader still needs is simply left for the next one.
fn checkpoints(pool: SqlitePool) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::warn!(%error, "background WAL checkpoint failed; SQLite's own will do");
            }
        }
    })
    .abort_handle()
}

/// Takes the exclusive lock of `<database file>.lock`, or says which process holds it. Two nodes on
/// one SQLite file would each run the sweeps, triggers and outboxes as the only node (and
/// SQLite's locking is not fenced across hosts): several nodes need PostgreSQL.
fn single_node(database: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = std::path::PathBuf::from(format!("{}.lock", database.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Corrupt(format!("opening {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).ok();
            let _ = write!(file, "{}", std::process::id());
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.rewind().and_then(|()| file.read_to_string(&mut holder));
            Err(StoreError::InUse(format!(
                "{} is in use by another faas process (pid {}): SQLite serves one node; run several nodes on \
                 PostgreSQL (--database-url postgres://…), or give this one its own --data-dir",
                database.display(),
                holder.trim()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Corrupt(format!("locking {}: {e}", path.display()))),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database and applies pending migrations. Refuses a
    /// database another process has open (see [`single_node`]).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL loses nothing when the process dies; only an OS crash or power
            // loss can drop the last commits. FULL would fsync on every commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES);
        let in_memory = options.get_filename() == Path::new(":memory:");
        let lock = if in_memory { None } else { Some(single_node(options.get_filename())?) };
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let group = GroupCommit::start(SqliteBatch { pool: pool.clone() });
        let checkpointer = (!in_memory).then(|| checkpoints(pool.clone()));
        Ok(Self { pool, group, _lock: lock, checkpointer })
    }
}

impl SqliteStore {
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_function_store!(SqliteStore, "", "");
// One writer at a time: a fenced write's check cannot interleave with a takeover.
impl_event_stores!(
    SqliteStore,
    sqlx::Sqlite,
    "SELECT 1 FROM sagas WHERE id = $1 AND owner = $2 AND epoch = $3",
    // One statement: SQLite runs it under its write lock, nothing commits in between.
    "SELECT 1 FROM leases WHERE name = $5 AND owner = $6 AND epoch = $7"
);
impl_lease_store!(SqliteStore);
// One writer at a time: no claim can interleave with another.
impl_invocation_store!(SqliteStore, sqlx::sqlite::SqliteRow, "");
impl_schedule_store!(SqliteStore, "");
impl_transactional_append!(SqliteStore, sqlx::Sqlite);
impl_workflow_store!(
    SqliteStore,
    // One writer at a time: the check and the insert cannot interleave with a takeover.
    "INSERT INTO saga_journal (saga_id, seq, entry, at_ms) SELECT $1, $2, $3, $4
     WHERE EXISTS (SELECT 1 FROM sagas WHERE id = $1 AND owner = $5 AND epoch = $6)"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::{AppendError, EventStore, Expected, KvStore, NewEvent};
    use crate::store::workflows::{Fence, SagaDefinition, SagaRecord, SagaStatus, StepFence, WorkflowStore};

    fn saga(owner: &str, epoch: i64) -> SagaRecord {
        let definition =
            SagaDefinition { name: "order".into(), input: Vec::new(), steps: Vec::new(), max_compensation_attempts: 1 };
        SagaRecord {
            id: "s-1".into(),
            namespace: "orders".into(),
            idempotency_key: "o-1".into(),
            definition,
            status: SagaStatus::Running,
            error: None,
            owner: owner.into(),
            epoch,
            created_at_ms: 0,
            updated_at_ms: 0,
            trace_parent: None,
        }
    }

    fn event(id: &str) -> NewEvent {
        NewEvent { id: id.into(), event_type: "Deducted".into(), data: b"{}".to_vec(), metadata: "{}".into() }
    }

    /// Appends reach the database file without a writer ever passing the automatic checkpoint's
    /// 10,000 pages: the background checkpointer copies the WAL over (the file only grows when a
    /// checkpoint writes to it).
    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
        tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
        let before = std::fs::metadata(&path).unwrap().len();
        let big = NewEvent { data: vec![b'x'; 2000], ..event("e") };
        for i in 0..300 {
            let event = NewEvent { id: format!("e-{i}"), ..big.clone() };
            store.append("ns", &format!("s-{i}"), Expected::Any, &[event], None).await.unwrap();
        }
        let grown = async {
            while std::fs::metadata(&path).unwrap().len() < before + 300 * 2000 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(CHECKPOINT_EVERY * 20, grown).await.expect("the database file never took the appends");
    }

    /// A step attempt whose fence no longer owns its saga writes nothing: no event, no kv entry.
    #[tokio::test]
    async fn writes_of_a_superseded_step_attempt_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        // A new saga starts at epoch 0; node A ran it, node B took it over (epoch 1).
        store.create_saga(&saga("node-a", 0)).await.unwrap();
        let claimed = store.claim_sagas("node-b", crate::store::now_ms() + 1, false).await.unwrap();
        let fence = claimed.into_iter().find(|(id, _)| id == "s-1").map(|(_, f)| f).expect("node B claims the saga");
        assert_eq!(fence, Fence { owner: "node-b".into(), epoch: 1 });
        let current = StepFence { saga_id: "s-1".into(), fence };
        let stale = StepFence { saga_id: "s-1".into(), fence: Fence { owner: "node-a".into(), epoch: 0 } };

        let refused = store.append("payments", "account-1", Expected::Any, &[event("e1")], Some(&stale)).await;
        assert!(matches!(refused, Err(AppendError::Store(StoreError::Fenced(_)))), "{refused:?}");
        assert!(matches!(store.kv_set("payments", "k", b"v", Some(&stale)).await, Err(StoreError::Fenced(_))));
        let cas = store.kv_compare_and_swap("payments", "k", None, Some(b"v"), Some(&stale)).await;
        assert!(matches!(cas, Err(StoreError::Fenced(_))), "{cas:?}");
        assert_eq!(store.head().await.unwrap(), 0, "nothing was appended");
        assert_eq!(store.kv_get("payments", "k").await.unwrap(), None, "nothing was written");

        store.append("payments", "account-1", Expected::Any, &[event("e2")], Some(&current)).await.unwrap();
        store.kv_set("payments", "k", b"v", Some(&current)).await.unwrap();
        assert!(matches!(store.kv_delete("payments", "k", Some(&stale)).await, Err(StoreError::Fenced(_))));
        assert_eq!(store.kv_get("payments", "k").await.unwrap(), Some(b"v".to_vec()), "the refused delete left it");
        assert!(store.kv_delete("payments", "k", Some(&current)).await.unwrap());
        assert_eq!(store.head().await.unwrap(), 1);
    }
}
