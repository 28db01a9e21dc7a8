//! Schedule ticks as stored: one row per (function, schedule, planned time). The row is the
//! claim: the node whose insert created it runs the tick, so a tick fires once however many
//! nodes watch the schedule. A node that dies mid-run leaves the row `running` past its lease;
//! another node claims it (epoch + 1) and runs the tick again. Outcomes are fenced by the epoch.

use super::StoreError;
use serde::Serialize;

/// One tick row.
#[derive(Debug, Clone, Serialize)]
pub struct TickRecord {
    pub function: String,
    pub schedule: String,
    pub planned_ms: i64,
    /// running, succeeded, failed, skipped (missed, and not run by the catch-up policy).
    pub status: String,
    pub owner: String,
    pub epoch: i64,
    pub attempts: u32,
    pub lease_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
}

/// The most attempts of one tick (each one a node dying mid-run) before it is given up.
pub const MAX_TICK_ATTEMPTS: i64 = 3;

#[async_trait::async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// The newest planned time recorded for the schedule.
    async fn last_tick(&self, function: &str, schedule: &str) -> Result<Option<i64>, StoreError>;
    /// Claims the tick for `node` (status `running`), or records it `skipped`; `false` if a row
    /// exists already (another node has it).
    async fn insert_tick(&self, tick: &TickRecord, now_ms: i64) -> Result<bool, StoreError>;
    /// Claims up to `limit` ticks left `running` past their lease (their node died or froze).
    /// Ticks already tried [`MAX_TICK_ATTEMPTS`] times are marked failed instead.
    async fn reclaim_ticks(&self, node: &str, now_ms: i64, limit: u32) -> Result<Vec<TickRecord>, StoreError>;
    /// Writes a tick's outcome if `node` still holds it at `epoch`.
    async fn finish_tick(
        &self,
        tick: &TickRecord,
        status: &str,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// At start: ticks an earlier process with this node id was running are due for reclaim.
    async fn release_own_ticks(&self, node: &str) -> Result<u64, StoreError>;
    /// The newest `limit` ticks of a function, newest first.
    async fn ticks(&self, function: &str, limit: u32) -> Result<Vec<TickRecord>, StoreError>;
    /// Deletes finished ticks planned before `before_ms`, except each schedule's newest.
    async fn purge_ticks(&self, before_ms: i64) -> Result<u64, StoreError>;
}

pub(crate) const TICK_COLUMNS: &str = "function, schedule, CAST(planned_ms AS BIGINT), status, owner, \
    CAST(epoch AS BIGINT), CAST(attempts AS BIGINT), CAST(lease_ms AS BIGINT), started_at_ms, finished_at_ms, error";
pub(crate) type TickRow =
    (String, String, i64, String, String, i64, i64, i64, Option<i64>, Option<i64>, Option<String>);

pub(crate) fn row_to_tick(row: TickRow) -> TickRecord {
    let (
        function,
        schedule,
        planned_ms,
        status,
        owner,
        epoch,
        attempts,
        lease_ms,
        started_at_ms,
        finished_at_ms,
        error,
    ) = row;
    TickRecord {
        function,
        schedule,
        planned_ms,
        status,
        owner,
        epoch,
        attempts: attempts as u32,
        lease_ms,
        started_at_ms,
        finished_at_ms,
        error,
    }
}

/// The SQL of [`ScheduleStore`]; `$skip_locked` as in `impl_invocation_store`.
macro_rules! impl_schedule_store {
    ($store:ty, $skip_locked:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::schedules::ScheduleStore for $store {
            async fn last_tick(&self, function: &str, schedule: &str) -> Result<Option<i64>, $crate::store::StoreError> {
                let row: (Option<i64>,) = sqlx::query_as(
                    "SELECT CAST(MAX(planned_ms) AS BIGINT) FROM schedule_ticks WHERE function = $1 AND schedule = $2",
                )
                .bind(function)
                .bind(schedule)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.0)
            }

            async fn insert_tick(
                &self,
                tick: &$crate::store::schedules::TickRecord,
                now_ms: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                let running = tick.status == "running";
                let done = sqlx::query(
                    "INSERT INTO schedule_ticks (function, schedule, planned_ms, status, owner, epoch, attempts, lease_ms,
                         lease_until_ms, started_at_ms, finished_at_ms, error)
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
                )
                .bind(&tick.function)
                .bind(&tick.schedule)
                .bind(tick.planned_ms)
                .bind(&tick.status)
                .bind(&tick.owner)
                .bind(i64::from(running))
                .bind(tick.lease_ms)
                .bind(if running { now_ms + tick.lease_ms } else { 0 })
                .bind(running.then_some(now_ms))
                .bind((!running).then_some(now_ms))
                .bind(&tick.error)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn reclaim_ticks(
                &self,
                node: &str,
                now_ms: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::schedules::TickRecord>, $crate::store::StoreError> {
                use $crate::store::schedules::{MAX_TICK_ATTEMPTS, TICK_COLUMNS, TickRow, row_to_tick};
                sqlx::query(
                    "UPDATE schedule_ticks SET status = 'failed', finished_at_ms = $1, owner = '',
                         error = 'abandoned: the node running it stopped answering, ' || CAST(attempts AS TEXT) || ' times'
                     WHERE status = 'running' AND lease_until_ms <= $1 AND attempts >= $2",
                )
                .bind(now_ms)
                .bind(MAX_TICK_ATTEMPTS)
                .execute(&self.pool)
                .await?;
                let rows: Vec<TickRow> = sqlx::query_as(&format!(
                    "UPDATE schedule_ticks SET owner = $1, epoch = epoch + 1, attempts = attempts + 1,
                         lease_until_ms = $2 + lease_ms, started_at_ms = $2
                     WHERE (function, schedule, planned_ms) IN (
                         SELECT function, schedule, planned_ms FROM schedule_ticks
                         WHERE status = 'running' AND lease_until_ms <= $2 ORDER BY planned_ms LIMIT $3 {})
                       AND status = 'running' AND lease_until_ms <= $2
                     RETURNING {TICK_COLUMNS}",
                    $skip_locked
                ))
                .bind(node)
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(row_to_tick).collect())
            }

            async fn finish_tick(
                &self,
                tick: &$crate::store::schedules::TickRecord,
                status: &str,
                error: Option<&str>,
                now_ms: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE schedule_ticks SET status = $6, error = $7, finished_at_ms = $8, lease_until_ms = 0
                     WHERE function = $1 AND schedule = $2 AND planned_ms = $3 AND owner = $4 AND epoch = $5
                       AND status = 'running'",
                )
                .bind(&tick.function)
                .bind(&tick.schedule)
                .bind(tick.planned_ms)
                .bind(&tick.owner)
                .bind(tick.epoch)
                .bind(status)
                .bind(error)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_own_ticks(&self, node: &str) -> Result<u64, $crate::store::StoreError> {
                let done =
                    sqlx::query("UPDATE schedule_ticks SET lease_until_ms = 0 WHERE owner = $1 AND status = 'running'")
                        .bind(node)
                        .execute(&self.pool)
                        .await?;
                Ok(done.rows_affected())
            }

            async fn ticks(
                &self,
                function: &str,
                limit: u32,
            ) -> Result<Vec<$crate::store::schedules::TickRecord>, $crate::store::StoreError> {
                use $crate::store::schedules::{TICK_COLUMNS, TickRow, row_to_tick};
                let rows: Vec<TickRow> = sqlx::query_as(&format!(
                    "SELECT {TICK_COLUMNS} FROM schedule_ticks WHERE function = $1 ORDER BY planned_ms DESC LIMIT $2"
                ))
                .bind(function)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(row_to_tick).collect())
            }

            async fn purge_ticks(&self, before_ms: i64) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM schedule_ticks WHERE planned_ms < $1 AND status <> 'running'
                       AND planned_ms < (SELECT MAX(t.planned_ms) FROM schedule_ticks t
                                         WHERE t.function = schedule_ticks.function AND t.schedule = schedule_ticks.schedule)",
                )
                .bind(before_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}
pub(crate) use impl_schedule_store;
