//! [`PostgresStore`]: the multi-node backend. Several `faas serve` processes may share it.

use super::events::{AppendError, Appended, Expected, NewEvent};
use super::events_sql::{impl_event_stores, to_sql};
use super::functions_sql::{impl_function_store, insert_config};
use super::group_commit::{AppendRequest, AppendResult, BatchAppender, GroupCommit};
use super::invocations::impl_invocation_store;
use super::leases::impl_lease_store;
use super::schedules::impl_schedule_store;
use super::workflows::StepFence;
use super::workflows_sql::impl_workflow_store;
use super::{StoreError, now_ms};
use crate::backoff;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::time::Duration;

pub struct PostgresStore {
    pool: PgPool,
    /// Appends without a fence, committed in groups.
    group: GroupCommit,
}

impl PostgresStore {
    /// Connects and applies pending migrations (sqlx takes an advisory lock, so nodes starting
    /// together do not race).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // A node frozen (SIGSTOP, a long pause) inside a transaction would hold its row locks
        // for as long as it is frozen, and the node taking over its work would wait on them:
        // PostgreSQL ends such a session after a while, releasing them. None of our
        // transactions waits on anything but the database, so a healthy one is never idle
        // that long.
        let options = url.parse::<PgConnectOptions>()?.options([("idle_in_transaction_session_timeout", "5s")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let group = GroupCommit::start(PgBatch { pool: pool.clone() });
        Ok(Self { pool, group })
    }
}

impl PostgresStore {
    /// An append: through the group commit ([`GroupCommit`]), or, for a saga step's append
    /// (with a fence), one call of `faas_append` (migrations/postgres/0003) in a transaction
    /// that checks the fence first (its row lock then holds a takeover off, so the global append
    /// lock is never held while waiting for a takeover to commit). Both notify `faas_events`,
    /// which other nodes LISTEN on; the notification is delivered when the append commits.
    async fn append_events(
        &self,
        namespace: &str,
        stream: &str,
        expected: Expected,
        events: &[NewEvent],
        fence: Option<&StepFence>,
    ) -> Result<Appended, AppendError> {
        let Some(fence) = fence else {
            let request = AppendRequest {
                namespace: namespace.to_owned(),
                stream: stream.to_owned(),
                expected,
                events: events.to_vec(),
            };
            return self.group.append(request).await;
        };
        let mut tx = self.pool.begin().await?;
        Self::check_fence(&mut tx, fence).await?;
        let row = faas_append(namespace, stream, expected, events).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        outcome_of(row, stream, expected)
    }
}

/// One call of `faas_append` (migrations/postgres/0003).
fn faas_append<'q>(
    namespace: &'q str,
    stream: &'q str,
    expected: Expected,
    events: &'q [NewEvent],
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, AppendRow, sqlx::postgres::PgArguments> {
    let (kind, version) = expected_sql(expected);
    sqlx::query_as("SELECT * FROM faas_append($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(namespace)
        .bind(stream)
        .bind(kind)
        .bind(version)
        .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.data.as_slice()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.metadata.as_str()).collect::<Vec<_>>())
        .bind(now_ms())
}

/// `faas_append`'s encoding of an expected version: kind, and the version for `exact`.
fn expected_sql(expected: Expected) -> (i16, Option<i64>) {
    match expected {
        Expected::Any => (0, None),
        Expected::NoStream => (1, None),
        Expected::StreamExists => (2, None),
        Expected::Exact(v) => (3, Some(to_sql(v))),
    }
}

/// One outcome row of `faas_append` (or `faas_append_batch`) as the append's result.
fn outcome_of(row: AppendRow, stream: &str, expected: Expected) -> Result<Appended, AppendError> {
    let (outcome, first_version, last_version, first_position, last_position, actual, conflict_id) = row;
    let appended = |duplicate| -> Result<Appended, AppendError> {
        let missing = || StoreError::Corrupt(format!("faas_append returned `{outcome}` without positions"));
        Ok(Appended {
            first_version: first_version.ok_or_else(missing)? as u64,
            last_version: last_version.ok_or_else(missing)? as u64,
            first_position: first_position.ok_or_else(missing)? as u64,
            last_position: last_position.ok_or_else(missing)? as u64,
            duplicate,
        })
    };
    match outcome.as_str() {
        "appended" => appended(false),
        "duplicate" => appended(true),
        "wrong-expected-version" => {
            Err(AppendError::WrongExpectedVersion { expected, actual: actual.map(|v| v as u64) })
        }
        "idempotency-conflict" => Err(AppendError::IdempotencyConflict(format!(
            "event id {} is already in stream `{stream}` with different content, or only part of this batch was appended before",
            conflict_id.unwrap_or_default()
        ))),
        other => Err(StoreError::Corrupt(format!("faas_append returned an unknown outcome `{other}`")).into()),
    }
}

/// The group commit's side on PostgreSQL: the queued appends as one call of
/// `faas_append_batch` (migrations/postgres/0009), one statement and so one commit.
struct PgBatch {
    pool: PgPool,
}

#[async_trait::async_trait]
impl BatchAppender for PgBatch {
    async fn append_batch(&self, batch: &[AppendRequest]) -> Result<Vec<AppendResult>, StoreError> {
        // A lone append skips the batch function's loop: its latency stays `faas_append`'s.
        if let [one] = batch {
            let row = faas_append(&one.namespace, &one.stream, one.expected, &one.events).fetch_one(&self.pool).await?;
            return Ok(vec![outcome_of(row, &one.stream, one.expected)]);
        }
        let (kinds, versions): (Vec<i16>, Vec<Option<i64>>) = batch.iter().map(|r| expected_sql(r.expected)).unzip();
        let events = || batch.iter().flat_map(|r| r.events.iter());
        let rows: Vec<AppendRow> =
            sqlx::query_as("SELECT * FROM faas_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(batch.iter().map(|r| r.namespace.as_str()).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>())
                .bind(kinds)
                .bind(versions)
                .bind(batch.iter().map(|r| r.events.len() as i32).collect::<Vec<_>>())
                .bind(events().map(|e| e.id.as_str()).collect::<Vec<_>>())
                .bind(events().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
                .bind(events().map(|e| e.data.as_slice()).collect::<Vec<_>>())
                .bind(events().map(|e| e.metadata.as_str()).collect::<Vec<_>>())
                .bind(now_ms())
                .fetch_all(&self.pool)
                .await?;
        if rows.len() != batch.len() {
            return Err(StoreError::Corrupt(format!(
                "faas_append_batch answered {} of {} appends",
                rows.len(),
                batch.len()
            )));
        }
        Ok(rows.into_iter().zip(batch).map(|(row, r)| outcome_of(row, &r.stream, r.expected)).collect())
    }
}

/// What a [`listen`]er hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Listening (again): anything sent while it was not is lost, so look at the state afresh.
    Listening,
    /// One NOTIFY on the channel, with its payload.
    Notified(String),
}

/// Follows PostgreSQL `NOTIFY`s on `channel`, reconnecting with [`backoff::STORE`] for as long as
/// the receiver lives. Other nodes announce appends (`faas_events`) and function changes
/// (`faas_functions`) this way; the callers decide what a notice means.
pub fn listen(url: String, channel: &'static str) -> tokio::sync::mpsc::Receiver<Notice> {
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        let mut retries = backoff::STORE.retries();
        loop {
            let session = async {
                let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
                listener.listen(channel).await?;
                if sender.send(Notice::Listening).await.is_err() {
                    return Ok(());
                }
                loop {
                    let notification = listener.recv().await?;
                    if sender.send(Notice::Notified(notification.payload().to_owned())).await.is_err() {
                        return Ok(());
                    }
                }
            };
            let result: Result<(), sqlx::Error> = tokio::select! {
                result = session => result,
                () = sender.closed() => return,
            };
            match result {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(channel, %error, "LISTEN failed; other nodes' changes arrive when it reconnects");
                    retries.wait().await;
                }
            }
        }
    });
    receiver
}

type AppendRow = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<String>);

// Other nodes LISTEN on `faas_functions` and reload the function (see `Registry::sync`).
impl_function_store!(PostgresStore, "FOR UPDATE", "SELECT pg_notify('faas_functions', $1)");
// FOR SHARE: a takeover's UPDATE of the saga waits until the fenced write committed.
impl_event_stores!(
    PostgresStore,
    sqlx::Postgres,
    "SELECT 1 FROM sagas WHERE id = $1 AND owner = $2 AND epoch = $3 FOR SHARE",
    // Likewise a subscription lease's takeover or reset waits for a checkpoint write in flight.
    "SELECT 1 FROM leases WHERE name = $5 AND owner = $6 AND epoch = $7 FOR SHARE"
);
impl_lease_store!(PostgresStore);
impl_invocation_store!(PostgresStore, sqlx::postgres::PgRow, "FOR UPDATE SKIP LOCKED");
impl_schedule_store!(PostgresStore, "FOR UPDATE SKIP LOCKED");
impl_workflow_store!(
    PostgresStore,
    // FOR SHARE holds the row against a concurrent takeover's UPDATE until this commits (and
    // re-checks owner and epoch if a takeover committed first).
    "WITH owned AS (SELECT id FROM sagas WHERE id = $1 AND owner = $5 AND epoch = $6 FOR SHARE)
     INSERT INTO saga_journal (saga_id, seq, entry, at_ms) SELECT $1, $2, $3, $4 FROM owned"
);
