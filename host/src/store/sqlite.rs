//! [`SqliteStore`]: the embedded default. One file in the data dir, WAL mode, no setup.

use super::StoreError;
use super::events_sql::{impl_event_stores, impl_transactional_append};
use super::functions_sql::impl_function_store;
use super::workflows_sql::impl_workflow_store;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL loses nothing when the process dies; only an OS crash or power
            // loss can drop the last commits. FULL would fsync on every commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl_function_store!(SqliteStore, "", "");
impl_event_stores!(SqliteStore, sqlx::Sqlite);
impl_transactional_append!(SqliteStore, sqlx::Sqlite);
impl_workflow_store!(
    SqliteStore,
    // One writer at a time: the check and the insert cannot interleave with a takeover.
    "INSERT INTO saga_journal (saga_id, seq, entry, at_ms) SELECT $1, $2, $3, $4
     WHERE EXISTS (SELECT 1 FROM sagas WHERE id = $1 AND owner = $5 AND epoch = $6)"
);
