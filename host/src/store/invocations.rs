//! Async invocations as stored: a queued HTTP request, its attempts and its final response, and
//! the [`InvocationStore`] trait the queue (`triggers::queue`) and the API use. The SQL is written
//! once for both databases ([`impl_invocation_store`]); only the claim differs: PostgreSQL skips
//! rows another node's claim has locked (`FOR UPDATE SKIP LOCKED`), SQLite has one writer.
//!
//! A row's life: `queued` → (claimed) `running` → `succeeded` | `failed` | `dead`, or back to
//! `queued` for a retry. Every claim bumps `epoch`; the outcome of an attempt is written only by
//! the owner still holding that epoch while the row is `running` ([`InvocationFence`]), so once
//! a success is recorded nothing can write over it, and a paused node's late outcome is refused.

use super::StoreError;
use super::workflows::{ListQuery, Page};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvocationStatus {
    Queued,
    Running,
    /// The function answered 1xx-3xx.
    Succeeded,
    /// The function answered 4xx (or the request could not be given to it): not retried.
    Failed,
    /// Every attempt failed (5xx, trap, timeout), or it got too old: kept for replay.
    Dead,
}

impl InvocationStatus {
    pub const ALL: [Self; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Dead)
    }
}

/// A stored HTTP response (of the final attempt, or the last one so far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What `enqueue` stores.
#[derive(Debug, Clone)]
pub struct NewInvocation {
    pub id: String,
    pub function: String,
    pub idempotency_key: Option<String>,
    /// Of method, path and body: a second enqueue with the same key must match it.
    pub request_hash: String,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub callback: Option<String>,
    pub max_attempts: u32,
    /// How long a claim holds the row: the function's timeout and a margin.
    pub lease_ms: i64,
    pub expires_at_ms: i64,
    pub now_ms: i64,
}

/// One invocation row.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    pub id: String,
    pub function: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub callback: Option<String>,
    pub status: InvocationStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease_ms: i64,
    pub run_at_ms: i64,
    pub expires_at_ms: i64,
    pub owner: String,
    pub epoch: i64,
    pub response: Option<StoredResponse>,
    pub error: Option<String>,
    pub callback_state: Option<String>,
    pub callback_attempts: u32,
    pub callback_error: Option<String>,
    pub replays: u32,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl InvocationRecord {
    pub fn fence(&self) -> InvocationFence {
        InvocationFence { id: self.id.clone(), owner: self.owner.clone(), epoch: self.epoch }
    }
}

/// The claim an attempt runs under: its outcome is written only while `owner` still holds the
/// row at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationFence {
    pub id: String,
    pub owner: String,
    pub epoch: i64,
}

/// What an attempt ended in.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    /// Final: succeeded, failed or dead.
    Done { status: InvocationStatus, response: Option<StoredResponse>, error: Option<String> },
    /// Queued again for `run_at_ms`.
    Retry { run_at_ms: i64, response: Option<StoredResponse>, error: String },
    /// The function was too busy to take it: queued again without counting an attempt.
    Busy { run_at_ms: i64 },
}

#[async_trait::async_trait]
pub trait InvocationStore: Send + Sync + 'static {
    /// Stores a new invocation; with an idempotency key already used by the function, stores
    /// nothing and returns that invocation (and `false`).
    async fn enqueue(&self, new: &NewInvocation) -> Result<(InvocationRecord, bool), StoreError>;
    async fn invocation(&self, id: &str) -> Result<Option<InvocationRecord>, StoreError>;
    /// Newest first; `namespace` filters by function.
    async fn invocations(&self, query: &ListQuery<InvocationStatus>) -> Result<Page<InvocationRecord>, StoreError>;
    /// Claims up to `limit` due queued invocations for `node`, oldest due first.
    async fn claim(&self, node: &str, now_ms: i64, limit: u32) -> Result<Vec<InvocationRecord>, StoreError>;
    /// Writes an attempt's outcome; `false` (nothing written) if the fence no longer holds.
    async fn finish(&self, fence: &InvocationFence, now_ms: i64, outcome: &AttemptOutcome) -> Result<bool, StoreError>;
    /// Running invocations whose claim expired (their node died or froze): queued again, or
    /// dead when that was their last attempt or they are too old. Returns how many.
    async fn requeue_expired(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// At start: what an earlier process with this node id was running is queued again at once.
    async fn requeue_own(&self, node: &str, now_ms: i64) -> Result<u64, StoreError>;
    /// Claims up to `limit` results whose callback is due (pending, or sending and expired).
    async fn claim_callbacks(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, StoreError>;
    /// Records a callback delivery: `delivered`, or `pending` again at `retry_at_ms`, or
    /// `failed` for good.
    async fn callback_done(
        &self,
        id: &str,
        node: &str,
        state: &str,
        error: Option<&str>,
        retry_at_ms: i64,
    ) -> Result<(), StoreError>;
    /// Queues a dead or failed invocation again (attempts from zero, a new max age). `None` if
    /// there is none with this id or it is not dead or failed.
    async fn replay(&self, id: &str, now_ms: i64, max_age_ms: i64) -> Result<Option<InvocationRecord>, StoreError>;
    /// Deletes finished invocations (and delivered callbacks) that ended before `before_ms`.
    async fn purge(&self, before_ms: i64) -> Result<u64, StoreError>;
}

pub(crate) const INVOCATION_COLUMNS: &str = "id, function, idempotency_key, request_hash, request_id, method, path, \
    headers, body, callback, status, attempts, max_attempts, lease_ms, run_at_ms, expires_at_ms, owner, epoch, \
    response_status, response_headers, response_body, error, callback_state, callback_attempts, callback_error, \
    replays, created_at_ms, started_at_ms, finished_at_ms, updated_at_ms";

pub(crate) fn headers_to_text(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn headers_from_text(id: &str, text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("headers of invocation {id}: {e}")))
}

/// The SQL of [`InvocationStore`]. `$row` is the database's row type; `$skip_locked` what the
/// claim's inner SELECT ends with (`FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite).
macro_rules! impl_invocation_store {
    ($store:ty, $row:ty, $skip_locked:literal) => {
        impl $store {
            fn invocation_from_row(
                row: &$row,
            ) -> Result<$crate::store::invocations::InvocationRecord, $crate::store::StoreError> {
                use $crate::store::invocations::{InvocationStatus, StoredResponse, headers_from_text};
                use sqlx::Row as _;
                let id: String = row.try_get("id")?;
                let status: String = row.try_get("status")?;
                let status = InvocationStatus::parse(&status).ok_or_else(|| {
                    $crate::store::StoreError::Corrupt(format!("invocation {id} has status `{status}`"))
                })?;
                let headers: String = row.try_get("headers")?;
                let response_status: Option<i64> = row.try_get("response_status")?;
                let response = match response_status {
                    None => None,
                    Some(code) => {
                        let headers: Option<String> = row.try_get("response_headers")?;
                        Some(StoredResponse {
                            status: code as u16,
                            headers: headers_from_text(&id, headers.as_deref().unwrap_or("[]"))?,
                            body: row.try_get::<Option<Vec<u8>>, _>("response_body")?.unwrap_or_default(),
                        })
                    }
                };
                Ok($crate::store::invocations::InvocationRecord {
                    function: row.try_get("function")?,
                    idempotency_key: row.try_get("idempotency_key")?,
                    request_hash: row.try_get("request_hash")?,
                    request_id: row.try_get("request_id")?,
                    method: row.try_get("method")?,
                    path: row.try_get("path")?,
                    headers: headers_from_text(&id, &headers)?,
                    body: row.try_get("body")?,
                    callback: row.try_get("callback")?,
                    status,
                    attempts: row.try_get::<i64, _>("attempts")? as u32,
                    max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
                    lease_ms: row.try_get("lease_ms")?,
                    run_at_ms: row.try_get("run_at_ms")?,
                    expires_at_ms: row.try_get("expires_at_ms")?,
                    owner: row.try_get("owner")?,
                    epoch: row.try_get("epoch")?,
                    response,
                    error: row.try_get("error")?,
                    callback_state: row.try_get("callback_state")?,
                    callback_attempts: row.try_get::<i64, _>("callback_attempts")? as u32,
                    callback_error: row.try_get("callback_error")?,
                    replays: row.try_get::<i64, _>("replays")? as u32,
                    created_at_ms: row.try_get("created_at_ms")?,
                    started_at_ms: row.try_get("started_at_ms")?,
                    finished_at_ms: row.try_get("finished_at_ms")?,
                    updated_at_ms: row.try_get("updated_at_ms")?,
                    id,
                })
            }

            fn invocations_from_rows(
                rows: &[$row],
            ) -> Result<Vec<$crate::store::invocations::InvocationRecord>, $crate::store::StoreError> {
                rows.iter().map(Self::invocation_from_row).collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::invocations::InvocationStore for $store {
            async fn enqueue(
                &self,
                new: &$crate::store::invocations::NewInvocation,
            ) -> Result<($crate::store::invocations::InvocationRecord, bool), $crate::store::StoreError> {
                use $crate::store::invocations::{INVOCATION_COLUMNS, headers_to_text};
                // RETURNING: the row as inserted (a worker may claim it a moment later).
                let inserted = sqlx::query(&format!(
                    "INSERT INTO invocations (id, function, idempotency_key, request_hash, request_id, method, path,
                         headers, body, callback, status, max_attempts, lease_ms, run_at_ms, expires_at_ms,
                         created_at_ms, updated_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, $12, $13, $14, $13, $13)
                     ON CONFLICT (function, idempotency_key) DO NOTHING RETURNING {INVOCATION_COLUMNS}"
                ))
                .bind(&new.id)
                .bind(&new.function)
                .bind(&new.idempotency_key)
                .bind(&new.request_hash)
                .bind(&new.request_id)
                .bind(&new.method)
                .bind(&new.path)
                .bind(headers_to_text(&new.headers))
                .bind(&new.body)
                .bind(&new.callback)
                .bind(i64::from(new.max_attempts))
                .bind(new.lease_ms)
                .bind(new.now_ms)
                .bind(new.expires_at_ms)
                .fetch_optional(&self.pool)
                .await?;
                let created = inserted.is_some();
                let row = if let Some(row) = inserted {
                    row
                } else {
                    sqlx::query(&format!(
                        "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE function = $1 AND idempotency_key = $2"
                    ))
                    .bind(&new.function)
                    .bind(&new.idempotency_key)
                    .fetch_one(&self.pool)
                    .await?
                };
                Ok((Self::invocation_from_row(&row)?, created))
            }

            async fn invocation(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::invocations::InvocationRecord>, $crate::store::StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {} FROM invocations WHERE id = $1",
                    $crate::store::invocations::INVOCATION_COLUMNS
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::invocation_from_row).transpose()
            }

            async fn invocations(
                &self,
                query: &$crate::store::workflows::ListQuery<$crate::store::invocations::InvocationStatus>,
            ) -> Result<
                $crate::store::workflows::Page<$crate::store::invocations::InvocationRecord>,
                $crate::store::StoreError,
            > {
                let (status, function, _, after_ms, after_id, limit) = $crate::store::workflows_sql::list_binds(
                    query,
                    $crate::store::invocations::InvocationStatus::as_str,
                );
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM invocations
                     WHERE ($1 = '' OR status = $1) AND ($2 = '' OR function = $2)
                       AND (created_at_ms < $3 OR (created_at_ms = $3 AND id > $4))
                     ORDER BY created_at_ms DESC, id LIMIT $5",
                    $crate::store::invocations::INVOCATION_COLUMNS
                ))
                .bind(status)
                .bind(function)
                .bind(after_ms)
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let items = Self::invocations_from_rows(&rows)?;
                Ok($crate::store::workflows::Page::of(items, query.limit, |r| $crate::store::workflows::Cursor {
                    created_at_ms: r.created_at_ms,
                    id: r.id.clone(),
                }))
            }

            async fn claim(
                &self,
                node: &str,
                now_ms: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::invocations::InvocationRecord>, $crate::store::StoreError> {
                let rows = sqlx::query(&format!(
                    "UPDATE invocations SET status = 'running', owner = $1, epoch = epoch + 1,
                         attempts = attempts + 1, lease_until_ms = $2 + lease_ms, started_at_ms = $2,
                         updated_at_ms = $2
                     WHERE id IN (SELECT id FROM invocations WHERE status = 'queued' AND run_at_ms <= $2
                                  ORDER BY run_at_ms LIMIT $3 {})
                       AND status = 'queued'
                     RETURNING {}",
                    $skip_locked,
                    $crate::store::invocations::INVOCATION_COLUMNS
                ))
                .bind(node)
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Self::invocations_from_rows(&rows)
            }

            async fn finish(
                &self,
                fence: &$crate::store::invocations::InvocationFence,
                now_ms: i64,
                outcome: &$crate::store::invocations::AttemptOutcome,
            ) -> Result<bool, $crate::store::StoreError> {
                use $crate::store::invocations::{AttemptOutcome, headers_to_text};
                let fenced = "WHERE id = $1 AND owner = $2 AND epoch = $3 AND status = 'running'";
                let done = match outcome {
                    AttemptOutcome::Done { status, response, error } => {
                        sqlx::query(&format!(
                            "UPDATE invocations SET status = $4, error = $5, response_status = $6,
                                 response_headers = $7, response_body = $8, finished_at_ms = $9, updated_at_ms = $9,
                                 owner = '', lease_until_ms = 0,
                                 callback_state = CASE WHEN callback IS NULL THEN NULL ELSE 'pending' END,
                                 run_at_ms = $9
                             {fenced}"
                        ))
                        .bind(&fence.id)
                        .bind(&fence.owner)
                        .bind(fence.epoch)
                        .bind(status.as_str())
                        .bind(error)
                        .bind(response.as_ref().map(|r| i64::from(r.status)))
                        .bind(response.as_ref().map(|r| headers_to_text(&r.headers)))
                        .bind(response.as_ref().map(|r| r.body.as_slice()))
                        .bind(now_ms)
                        .execute(&self.pool)
                        .await?
                    }
                    AttemptOutcome::Retry { run_at_ms, response, error } => {
                        sqlx::query(&format!(
                            "UPDATE invocations SET status = 'queued', error = $4, response_status = $5,
                                 response_headers = $6, response_body = $7, run_at_ms = $8, updated_at_ms = $9,
                                 owner = '', lease_until_ms = 0
                             {fenced}"
                        ))
                        .bind(&fence.id)
                        .bind(&fence.owner)
                        .bind(fence.epoch)
                        .bind(error)
                        .bind(response.as_ref().map(|r| i64::from(r.status)))
                        .bind(response.as_ref().map(|r| headers_to_text(&r.headers)))
                        .bind(response.as_ref().map(|r| r.body.as_slice()))
                        .bind(run_at_ms)
                        .bind(now_ms)
                        .execute(&self.pool)
                        .await?
                    }
                    AttemptOutcome::Busy { run_at_ms } => {
                        sqlx::query(&format!(
                            "UPDATE invocations SET status = 'queued', attempts = attempts - 1, run_at_ms = $4,
                                 updated_at_ms = $5, owner = '', lease_until_ms = 0
                             {fenced}"
                        ))
                        .bind(&fence.id)
                        .bind(&fence.owner)
                        .bind(fence.epoch)
                        .bind(run_at_ms)
                        .bind(now_ms)
                        .execute(&self.pool)
                        .await?
                    }
                };
                Ok(done.rows_affected() == 1)
            }

            async fn requeue_expired(&self, now_ms: i64) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE invocations SET
                         status = CASE WHEN attempts >= max_attempts OR expires_at_ms <= $1 THEN 'dead' ELSE 'queued' END,
                         error = 'the node running attempt ' || CAST(attempts AS TEXT) || ' stopped answering',
                         finished_at_ms = CASE WHEN attempts >= max_attempts OR expires_at_ms <= $1 THEN $1 END,
                         callback_state = CASE WHEN (attempts >= max_attempts OR expires_at_ms <= $1)
                             AND callback IS NOT NULL THEN 'pending' END,
                         owner = '', lease_until_ms = 0, run_at_ms = $1, updated_at_ms = $1
                     WHERE status = 'running' AND lease_until_ms <= $1",
                )
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn requeue_own(&self, node: &str, now_ms: i64) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE invocations SET lease_until_ms = 0, updated_at_ms = $2
                     WHERE status = 'running' AND owner = $1",
                )
                .bind(node)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                // Its callbacks in flight are due again too (claim_callbacks takes expired ones).
                sqlx::query("UPDATE invocations SET lease_until_ms = 0 WHERE callback_state = 'sending' AND owner = $1")
                    .bind(node)
                    .execute(&self.pool)
                    .await?;
                self.requeue_expired(now_ms).await?;
                Ok(done.rows_affected())
            }

            async fn claim_callbacks(
                &self,
                node: &str,
                now_ms: i64,
                lease_ms: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::invocations::InvocationRecord>, $crate::store::StoreError> {
                let rows = sqlx::query(&format!(
                    "UPDATE invocations SET callback_state = 'sending', owner = $1, lease_until_ms = $2 + $3,
                         callback_attempts = callback_attempts + 1
                     WHERE id IN (SELECT id FROM invocations
                                  WHERE (callback_state = 'pending' AND run_at_ms <= $2)
                                     OR (callback_state = 'sending' AND lease_until_ms <= $2)
                                  ORDER BY run_at_ms LIMIT $4 {})
                       AND (callback_state = 'pending' OR (callback_state = 'sending' AND lease_until_ms <= $2))
                     RETURNING {}",
                    $skip_locked,
                    $crate::store::invocations::INVOCATION_COLUMNS
                ))
                .bind(node)
                .bind(now_ms)
                .bind(lease_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Self::invocations_from_rows(&rows)
            }

            async fn callback_done(
                &self,
                id: &str,
                node: &str,
                state: &str,
                error: Option<&str>,
                retry_at_ms: i64,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "UPDATE invocations SET callback_state = $3, callback_error = $4, run_at_ms = $5, owner = '',
                         lease_until_ms = 0
                     WHERE id = $1 AND owner = $2 AND callback_state = 'sending'",
                )
                .bind(id)
                .bind(node)
                .bind(state)
                .bind(error)
                .bind(retry_at_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn replay(
                &self,
                id: &str,
                now_ms: i64,
                max_age_ms: i64,
            ) -> Result<Option<$crate::store::invocations::InvocationRecord>, $crate::store::StoreError> {
                let row = sqlx::query(&format!(
                    "UPDATE invocations SET status = 'queued', attempts = 0, run_at_ms = $2, expires_at_ms = $2 + $3,
                         error = NULL, finished_at_ms = NULL, callback_state = NULL, callback_attempts = 0,
                         callback_error = NULL, replays = replays + 1, updated_at_ms = $2
                     WHERE id = $1 AND status IN ('dead', 'failed')
                     RETURNING {}",
                    $crate::store::invocations::INVOCATION_COLUMNS
                ))
                .bind(id)
                .bind(now_ms)
                .bind(max_age_ms)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::invocation_from_row).transpose()
            }

            async fn purge(&self, before_ms: i64) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM invocations WHERE status IN ('succeeded', 'failed', 'dead') AND finished_at_ms < $1
                       AND (callback_state IS NULL OR callback_state IN ('delivered', 'failed'))",
                )
                .bind(before_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}
pub(crate) use impl_invocation_store;
