//! The SQL of [`WorkflowStore`](super::workflows::WorkflowStore), written once for both
//! databases (see `functions_sql.rs` for why this is a macro).

use super::StoreError;
use super::workflows::{SagaRecord, SagaStatus, TxParticipant, TxRecord, TxStatus};

pub(crate) const SAGA_COLUMNS: &str = "id, namespace, idempotency_key, definition, status, error, owner, CAST(created_at_ms AS BIGINT), CAST(updated_at_ms AS BIGINT)";
pub(crate) type SagaRow = (String, String, String, String, String, Option<String>, String, i64, i64);

pub(crate) fn row_to_saga(row: SagaRow) -> Result<SagaRecord, StoreError> {
    let (id, namespace, idempotency_key, definition, status, error, owner, created_at_ms, updated_at_ms) = row;
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
        created_at_ms,
        updated_at_ms,
    })
}

pub(crate) const TX_COLUMNS: &str =
    "id, namespace, participants, status, reason, owner, CAST(created_at_ms AS BIGINT), CAST(updated_at_ms AS BIGINT)";
pub(crate) type TxRow = (String, String, String, String, Option<String>, String, i64, i64);

pub(crate) fn row_to_tx(row: TxRow) -> Result<TxRecord, StoreError> {
    let (id, namespace, participants, status, reason, owner, created_at_ms, updated_at_ms) = row;
    let participants: Vec<TxParticipant> = serde_json::from_str(&participants)
        .map_err(|e| StoreError::Corrupt(format!("participants of transaction {id}: {e}")))?;
    Ok(TxRecord {
        status: TxStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("transaction {id} has status `{status}`")))?,
        id,
        namespace,
        participants,
        reason,
        owner,
        created_at_ms,
        updated_at_ms,
    })
}

/// Implements `WorkflowStore` for `$store` (with a `pool: sqlx::Pool<$db>` field).
macro_rules! impl_workflow_store {
    ($store:ty) => {
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
                    "INSERT INTO sagas (id, namespace, idempotency_key, name, definition, status, error, owner, created_at_ms, updated_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $8) ON CONFLICT DO NOTHING",
                )
                .bind(&saga.id)
                .bind(&saga.namespace)
                .bind(&saga.idempotency_key)
                .bind(&saga.definition.name)
                .bind(&definition)
                .bind(saga.status.as_str())
                .bind(&saga.owner)
                .bind(saga.created_at_ms)
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
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::workflows::JournalEntry;
                let now = $crate::store::now_ms();
                let text = serde_json::to_string(entry).expect("an entry serializes");
                let insert = sqlx::query("INSERT INTO saga_journal (saga_id, seq, entry, at_ms) VALUES ($1, $2, $3, $4)")
                    .bind(saga_id)
                    .bind(seq as i64)
                    .bind(text)
                    .bind(now);
                match entry {
                    JournalEntry::Status { status, error } => {
                        let mut tx = self.pool.begin().await?;
                        insert.execute(&mut *tx).await?;
                        sqlx::query("UPDATE sagas SET status = $2, error = $3, updated_at_ms = $4 WHERE id = $1")
                            .bind(saga_id)
                            .bind(status.as_str())
                            .bind(error.as_deref())
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                    }
                    _ => {
                        insert.execute(&self.pool).await?;
                    }
                }
                Ok(())
            }

            async fn sagas(
                &self,
                status: Option<$crate::store::workflows::SagaStatus>,
                limit: u32,
            ) -> Result<Vec<$crate::store::workflows::SagaRecord>, $crate::store::StoreError> {
                use $crate::store::workflows_sql::{SAGA_COLUMNS, SagaRow, row_to_saga};
                let rows: Vec<SagaRow> = sqlx::query_as(&format!(
                    "SELECT {SAGA_COLUMNS} FROM sagas WHERE ($1 = '' OR status = $1) ORDER BY created_at_ms DESC, id LIMIT $2"
                ))
                .bind(status.map_or("", |s| s.as_str()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(row_to_saga).collect()
            }

            async fn claim_sagas(&self, node: &str, stale_before_ms: i64) -> Result<Vec<String>, $crate::store::StoreError> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "UPDATE sagas SET owner = $1
                     WHERE status IN ('running', 'compensating')
                       AND (owner = $1 OR owner NOT IN (SELECT id FROM nodes WHERE heartbeat_ms >= $2))
                     RETURNING id",
                )
                .bind(node)
                .bind(stale_before_ms)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn set_saga_owner(&self, saga_id: &str, node: &str) -> Result<(), $crate::store::StoreError> {
                sqlx::query("UPDATE sagas SET owner = $2 WHERE id = $1").bind(saga_id).bind(node).execute(&self.pool).await?;
                Ok(())
            }

            async fn create_tx(&self, tx: &$crate::store::workflows::TxRecord) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO transactions (id, namespace, participants, status, reason, owner, created_at_ms, updated_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&tx.id)
                .bind(&tx.namespace)
                .bind(serde_json::to_string(&tx.participants).expect("participants serialize"))
                .bind(tx.status.as_str())
                .bind(tx.reason.as_deref())
                .bind(&tx.owner)
                .bind(tx.created_at_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn update_tx(
                &self,
                id: &str,
                status: $crate::store::workflows::TxStatus,
                reason: Option<&str>,
                participants: &[$crate::store::workflows::TxParticipant],
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query("UPDATE transactions SET status = $2, reason = $3, participants = $4, updated_at_ms = $5 WHERE id = $1")
                    .bind(id)
                    .bind(status.as_str())
                    .bind(reason)
                    .bind(serde_json::to_string(participants).expect("participants serialize"))
                    .bind($crate::store::now_ms())
                    .execute(&self.pool)
                    .await?;
                Ok(())
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
                status: Option<$crate::store::workflows::TxStatus>,
                limit: u32,
            ) -> Result<Vec<$crate::store::workflows::TxRecord>, $crate::store::StoreError> {
                use $crate::store::workflows_sql::{TX_COLUMNS, TxRow, row_to_tx};
                let rows: Vec<TxRow> = sqlx::query_as(&format!(
                    "SELECT {TX_COLUMNS} FROM transactions WHERE ($1 = '' OR status = $1) ORDER BY created_at_ms DESC, id LIMIT $2"
                ))
                .bind(status.map_or("", |s| s.as_str()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(row_to_tx).collect()
            }

            async fn claim_txs(
                &self,
                node: &str,
                stale_before_ms: i64,
            ) -> Result<Vec<$crate::store::workflows::TxRecord>, $crate::store::StoreError> {
                use $crate::store::workflows_sql::{TX_COLUMNS, TxRow, row_to_tx};
                let rows: Vec<TxRow> = sqlx::query_as(&format!(
                    "UPDATE transactions SET owner = $1
                     WHERE status IN ('preparing', 'committing', 'aborting')
                       AND (owner = $1 OR owner NOT IN (SELECT id FROM nodes WHERE heartbeat_ms >= $2))
                     RETURNING {TX_COLUMNS}"
                ))
                .bind(node)
                .bind(stale_before_ms)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(row_to_tx).collect()
            }

            async fn heartbeat(&self, node: &str) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO nodes (id, heartbeat_ms) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
                )
                .bind(node)
                .bind($crate::store::now_ms())
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_workflow_store;
