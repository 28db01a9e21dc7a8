//! The SQL of [`WorkflowStore`](super::workflows::WorkflowStore), written once for both
//! databases (see `functions_sql.rs` for why this is a macro).

use super::StoreError;
use super::workflows::{Cursor, ListQuery, SagaRecord, SagaStatus, TxParticipant, TxRecord, TxStatus};

pub(crate) const SAGA_COLUMNS: &str = "id, namespace, idempotency_key, definition, status, error, owner, CAST(epoch AS BIGINT), CAST(created_at_ms AS BIGINT), CAST(updated_at_ms AS BIGINT), trace_parent";
pub(crate) type SagaRow =
    (String, String, String, String, String, Option<String>, String, i64, i64, i64, Option<String>);

pub(crate) fn row_to_saga(row: SagaRow) -> Result<SagaRecord, StoreError> {
    let (
        id,
        namespace,
        idempotency_key,
        definition,
        status,
        error,
        owner,
        epoch,
        created_at_ms,
        updated_at_ms,
        trace_parent,
    ) = row;
    Ok(SagaRecord {
        definition: serde_json::from_str(&definition)
            .map_err(|e| StoreError::Corrupt(format!("definition of saga {id}: {e}")))?,
        status: SagaStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("saga {id} has status `{status}`")))?,
        id,
        namespace,
        idempotency_key,
        error,
        owner,
        epoch,
        created_at_ms,
        updated_at_ms,
        trace_parent,
    })
}

pub(crate) const TX_COLUMNS: &str = "id, namespace, idempotency_key, participants, status, reason, owner, CAST(epoch AS BIGINT), CAST(created_at_ms AS BIGINT), CAST(updated_at_ms AS BIGINT)";
pub(crate) type TxRow = (String, String, Option<String>, String, String, Option<String>, String, i64, i64, i64);

pub(crate) fn row_to_tx(row: TxRow) -> Result<TxRecord, StoreError> {
    let (id, namespace, idempotency_key, participants, status, reason, owner, epoch, created_at_ms, updated_at_ms) =
        row;
    let participants: Vec<TxParticipant> = serde_json::from_str(&participants)
        .map_err(|e| StoreError::Corrupt(format!("participants of transaction {id}: {e}")))?;
    Ok(TxRecord {
        status: TxStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("transaction {id} has status `{status}`")))?,
        id,
        namespace,
        idempotency_key,
        participants,
        reason,
        owner,
        epoch,
        created_at_ms,
        updated_at_ms,
    })
}

/// The filters and page bounds of a list, as bound parameters: status, namespace, key (empty:
/// any), the cursor's time and id (`i64::MAX`, "": from the newest), and `limit + 1` rows (the
/// extra one says whether there is a next page).
pub(crate) fn list_binds<S: Copy>(
    query: &ListQuery<S>,
    status: fn(S) -> &'static str,
) -> (&'static str, String, String, i64, String, i64) {
    let (after_ms, after_id) = match &query.after {
        Some(cursor) => (cursor.created_at_ms, cursor.id.clone()),
        None => (i64::MAX, String::new()),
    };
    (
        query.status.map_or("", status),
        query.namespace.clone().unwrap_or_default(),
        query.idempotency_key.clone().unwrap_or_default(),
        after_ms,
        after_id,
        i64::from(query.limit) + 1,
    )
}

/// `WHERE` of a list (see [`list_binds`]), newest first with the id as tie-breaker.
pub(crate) const LIST_WHERE: &str = "WHERE ($1 = '' OR status = $1) AND ($2 = '' OR namespace = $2)
       AND ($3 = '' OR idempotency_key = $3) AND (created_at_ms < $4 OR (created_at_ms = $4 AND id > $5))
     ORDER BY created_at_ms DESC, id LIMIT $6";

pub(crate) fn cursor_of_saga(saga: &SagaRecord) -> Cursor {
    Cursor { created_at_ms: saga.created_at_ms, id: saga.id.clone() }
}

pub(crate) fn cursor_of_tx(tx: &TxRecord) -> Cursor {
    Cursor { created_at_ms: tx.created_at_ms, id: tx.id.clone() }
}

/// Implements `WorkflowStore` for `$store` (with a `pool: sqlx::Pool<$db>` field).
/// `$fenced_insert` appends a journal entry (`$1`-`$4`) only while the saga's row still has
/// owner `$5` and epoch `$6`, atomically against a concurrent takeover (which differs: SQLite
/// runs one writer at a time; PostgreSQL needs the row locked).
macro_rules! impl_workflow_store {
    ($store:ty, $fenced_insert:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::workflows::WorkflowStore for $store {
            async fn create_saga(
                &self,
                saga: &$crate::store::workflows::SagaRecord,
            ) -> Result<($crate::store::workflows::SagaRecord, bool), $crate::store::StoreError> {
                use $crate::store::workflows::JournalEntry;
                use $crate::store::workflows_sql::{SAGA_COLUMNS, SagaRow, row_to_saga};
                let definition = serde_json::to_string(&saga.definition).expect("a definition serializes");
                let first = serde_json::to_string(&JournalEntry::Status { status: saga.status, error: None })
                    .expect("an entry serializes");
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO sagas (id, namespace, idempotency_key, name, definition, status, error, owner, created_at_ms, updated_at_ms, trace_parent)
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(&saga.id)
                .bind(&saga.namespace)
                .bind(&saga.idempotency_key)
                .bind(&saga.definition.name)
                .bind(&definition)
                .bind(saga.status.as_str())
                .bind(&saga.owner)
                .bind(saga.created_at_ms)
                .bind(&saga.trace_parent)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    sqlx::query("INSERT INTO saga_journal (saga_id, seq, entry, at_ms) VALUES ($1, 0, $2, $3)")
                        .bind(&saga.id)
                        .bind(&first)
                        .bind(saga.created_at_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                let row: SagaRow = sqlx::query_as(&format!(
                    "SELECT {SAGA_COLUMNS} FROM sagas WHERE namespace = $1 AND idempotency_key = $2"
                ))
                .bind(&saga.namespace)
                .bind(&saga.idempotency_key)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok((row_to_saga(row)?, inserted))
            }

            async fn saga(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::workflows::SagaRecord>, $crate::store::StoreError> {
                use $crate::store::workflows_sql::{SAGA_COLUMNS, SagaRow, row_to_saga};
                let row: Option<SagaRow> = sqlx::query_as(&format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(row_to_saga).transpose()
            }

            async fn journal(
                &self,
                saga_id: &str,
            ) -> Result<Vec<$crate::store::workflows::JournalRecord>, $crate::store::StoreError> {
                let rows: Vec<(i64, String, i64)> = sqlx::query_as(
                    "SELECT CAST(seq AS BIGINT), entry, CAST(at_ms AS BIGINT) FROM saga_journal WHERE saga_id = $1 ORDER BY seq",
                )
                .bind(saga_id)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(seq, entry, at_ms)| {
                        let entry = serde_json::from_str(&entry).map_err(|e| {
                            $crate::store::StoreError::Corrupt(format!("journal entry {seq} of saga {saga_id}: {e}"))
                        })?;
                        Ok($crate::store::workflows::JournalRecord { seq: seq as u64, at_ms, entry })
                    })
                    .collect()
            }

            async fn append_journal(
                &self,
                saga_id: &str,
                seq: u64,
                entry: &$crate::store::workflows::JournalEntry,
                fence: &$crate::store::workflows::Fence,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::workflows::JournalEntry;
                let now = $crate::store::now_ms();
                let text = serde_json::to_string(entry).expect("an entry serializes");
                let fenced = || $crate::store::StoreError::Fenced(format!("saga {saga_id}"));
                match entry {
                    JournalEntry::Status { status, error } => {
                        let mut tx = self.pool.begin().await?;
                        // The row update is the fence check, and it locks the row until commit.
                        let owned = sqlx::query(
                            "UPDATE sagas SET status = $2, error = $3, updated_at_ms = $4
                             WHERE id = $1 AND owner = $5 AND epoch = $6",
                        )
                        .bind(saga_id)
                        .bind(status.as_str())
                        .bind(error.as_deref())
                        .bind(now)
                        .bind(&fence.owner)
                        .bind(fence.epoch)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1;
                        if !owned {
                            return Err(fenced());
                        }
                        sqlx::query("INSERT INTO saga_journal (saga_id, seq, entry, at_ms) VALUES ($1, $2, $3, $4)")
                            .bind(saga_id)
                            .bind(seq as i64)
                            .bind(text)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                    }
                    _ => {
                        let inserted = sqlx::query($fenced_insert)
                            .bind(saga_id)
                            .bind(seq as i64)
                            .bind(text)
                            .bind(now)
                            .bind(&fence.owner)
                            .bind(fence.epoch)
                            .execute(&self.pool)
                            .await?
                            .rows_affected();
                        if inserted != 1 {
                            return Err(fenced());
                        }
                    }
                }
                Ok(())
            }

            async fn sagas(
                &self,
                query: &$crate::store::workflows::ListQuery<$crate::store::workflows::SagaStatus>,
            ) -> Result<
                $crate::store::workflows::Page<$crate::store::workflows::SagaRecord>,
                $crate::store::StoreError,
            > {
                use $crate::store::workflows::{Page, SagaStatus};
                use $crate::store::workflows_sql::{
                    LIST_WHERE, SAGA_COLUMNS, SagaRow, cursor_of_saga, list_binds, row_to_saga,
                };
                let (status, namespace, key, after_ms, after_id, limit) = list_binds(query, SagaStatus::as_str);
                let rows: Vec<SagaRow> = sqlx::query_as(&format!("SELECT {SAGA_COLUMNS} FROM sagas {LIST_WHERE}"))
                    .bind(status)
                    .bind(namespace)
                    .bind(key)
                    .bind(after_ms)
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                let sagas = rows.into_iter().map(row_to_saga).collect::<Result<Vec<_>, _>>()?;
                Ok(Page::of(sagas, query.limit, cursor_of_saga))
            }

            async fn claim_sagas(
                &self,
                node: &str,
                stale_before_ms: i64,
                own: bool,
            ) -> Result<Vec<(String, $crate::store::workflows::Fence)>, $crate::store::StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "UPDATE sagas SET owner = $1, epoch = epoch + 1
                     WHERE status IN ('running', 'compensating')
                       AND ((owner <> $1 AND owner NOT IN (SELECT id FROM nodes WHERE heartbeat_ms >= $2))
                            OR ($3 AND owner = $1))
                     RETURNING id, CAST(epoch AS BIGINT)",
                )
                .bind(node)
                .bind(stale_before_ms)
                .bind(own)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, epoch)| (id, $crate::store::workflows::Fence { owner: node.to_owned(), epoch }))
                    .collect())
            }

            async fn claim_stuck_saga(
                &self,
                saga_id: &str,
                node: &str,
            ) -> Result<Option<$crate::store::workflows::Fence>, $crate::store::StoreError> {
                let epoch: Option<(i64,)> = sqlx::query_as(
                    "UPDATE sagas SET owner = $2, epoch = epoch + 1 WHERE id = $1 AND status = 'stuck'
                     RETURNING CAST(epoch AS BIGINT)",
                )
                .bind(saga_id)
                .bind(node)
                .fetch_optional(&self.pool)
                .await?;
                Ok(epoch.map(|(epoch,)| $crate::store::workflows::Fence { owner: node.to_owned(), epoch }))
            }

            async fn create_tx(
                &self,
                tx: &$crate::store::workflows::TxRecord,
            ) -> Result<($crate::store::workflows::TxRecord, bool), $crate::store::StoreError> {
                use $crate::store::workflows_sql::{TX_COLUMNS, TxRow, row_to_tx};
                let inserted = sqlx::query(
                    "INSERT INTO transactions (id, namespace, idempotency_key, participants, status, reason, owner, epoch, created_at_ms, updated_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT DO NOTHING",
                )
                .bind(&tx.id)
                .bind(&tx.namespace)
                .bind(tx.idempotency_key.as_deref())
                .bind(serde_json::to_string(&tx.participants).expect("participants serialize"))
                .bind(tx.status.as_str())
                .bind(tx.reason.as_deref())
                .bind(&tx.owner)
                .bind(tx.epoch)
                .bind(tx.created_at_ms)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1;
                let row: TxRow = sqlx::query_as(&format!("SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"))
                    .bind(&tx.id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok((row_to_tx(row)?, inserted))
            }

            async fn transition_tx(
                &self,
                id: &str,
                from: $crate::store::workflows::TxStatus,
                to: $crate::store::workflows::TxStatus,
                reason: Option<&str>,
                participants: &[$crate::store::workflows::TxParticipant],
                fence: &$crate::store::workflows::Fence,
            ) -> Result<bool, $crate::store::StoreError> {
                let changed = sqlx::query(
                    "UPDATE transactions SET status = $3, reason = $4, participants = $5, updated_at_ms = $6
                     WHERE id = $1 AND status = $2 AND owner = $7 AND epoch = $8",
                )
                .bind(id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(reason)
                .bind(serde_json::to_string(participants).expect("participants serialize"))
                .bind($crate::store::now_ms())
                .bind(&fence.owner)
                .bind(fence.epoch)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(changed == 1)
            }

            async fn tx(&self, id: &str) -> Result<Option<$crate::store::workflows::TxRecord>, $crate::store::StoreError> {
                use $crate::store::workflows_sql::{TX_COLUMNS, TxRow, row_to_tx};
                let row: Option<TxRow> = sqlx::query_as(&format!("SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(row_to_tx).transpose()
            }

            async fn txs(
                &self,
                query: &$crate::store::workflows::ListQuery<$crate::store::workflows::TxStatus>,
            ) -> Result<
                $crate::store::workflows::Page<$crate::store::workflows::TxRecord>,
                $crate::store::StoreError,
            > {
                use $crate::store::workflows::{Page, TxStatus};
                use $crate::store::workflows_sql::{LIST_WHERE, TX_COLUMNS, TxRow, cursor_of_tx, list_binds, row_to_tx};
                let (status, namespace, key, after_ms, after_id, limit) = list_binds(query, TxStatus::as_str);
                let rows: Vec<TxRow> =
                    sqlx::query_as(&format!("SELECT {TX_COLUMNS} FROM transactions {LIST_WHERE}"))
                        .bind(status)
                        .bind(namespace)
                        .bind(key)
                        .bind(after_ms)
                        .bind(after_id)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                let txs = rows.into_iter().map(row_to_tx).collect::<Result<Vec<_>, _>>()?;
                Ok(Page::of(txs, query.limit, cursor_of_tx))
            }

            async fn claim_txs(
                &self,
                node: &str,
                stale_before_ms: i64,
                own: bool,
            ) -> Result<Vec<$crate::store::workflows::TxRecord>, $crate::store::StoreError> {
                use $crate::store::workflows_sql::{TX_COLUMNS, TxRow, row_to_tx};
                let rows: Vec<TxRow> = sqlx::query_as(&format!(
                    "UPDATE transactions SET owner = $1, epoch = epoch + 1
                     WHERE status IN ('preparing', 'committing', 'aborting')
                       AND ((owner <> $1 AND owner NOT IN (SELECT id FROM nodes WHERE heartbeat_ms >= $2))
                            OR ($3 AND owner = $1))
                     RETURNING {TX_COLUMNS}"
                ))
                .bind(node)
                .bind(stale_before_ms)
                .bind(own)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(row_to_tx).collect()
            }

            async fn heartbeat(&self, node: &str, admin_url: Option<&str>) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO nodes (id, heartbeat_ms, admin_url) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms, admin_url = excluded.admin_url",
                )
                .bind(node)
                .bind($crate::store::now_ms())
                .bind(admin_url)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_workflow_store;
