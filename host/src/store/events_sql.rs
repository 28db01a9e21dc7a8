//! The SQL of the event store, key-value and subscription traits, written once for both
//! databases (the statements are the same text on SQLite and PostgreSQL). See `functions_sql.rs`
//! for why this is a macro.

/// Columns of `events` in the order [`row_to_event`](super::events_sql::row_to_event) expects.
pub(crate) const EVENT_COLUMNS: &str = "namespace, stream, CAST(version AS BIGINT), CAST(position AS BIGINT), event_id, event_type, data, metadata, CAST(recorded_at_ms AS BIGINT)";

pub(crate) type EventRow = (String, String, i64, i64, String, String, Vec<u8>, String, i64);

pub(crate) fn row_to_event(row: EventRow) -> super::events::RecordedEvent {
    let (namespace, stream, version, position, id, event_type, data, metadata, recorded_at_ms) = row;
    super::events::RecordedEvent {
        namespace,
        stream,
        version: version as u64,
        position: position as u64,
        id,
        event_type,
        data,
        metadata,
        recorded_at_ms,
    }
}

/// u64 positions and versions as SQL BIGINT; `u64::MAX` ("the end") clamps to `i64::MAX`.
pub(crate) fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Implements `EventStore`, `KvStore` and `SubscriptionStore` for `$store` (with a
/// `pool: sqlx::Pool<$db>` field and an inherent `append_events`: see [`impl_transactional_append`]
/// and `PostgresStore::append_events`). `$owns_saga` selects the saga row a [`StepFence`] names
/// (`$1` id, `$2` owner, `$3` epoch), locking it against a takeover where the database can.
///
/// [`StepFence`]: crate::store::workflows::StepFence
macro_rules! impl_event_stores {
    ($store:ty, $db:ty, $owns_saga:literal, $lease_held:literal) => {
        impl $store {
            /// Refuses, inside `tx`, the write of a step attempt whose saga changed hands. On
            /// SQLite, run it after the transaction's first write (which took the database's
            /// write lock, so no takeover commits between the check and the commit); on
            /// PostgreSQL anywhere in the transaction (the row lock holds a takeover off until
            /// commit, and a takeover that committed before is seen).
            async fn check_fence(
                tx: &mut sqlx::Transaction<'_, $db>,
                fence: &$crate::store::workflows::StepFence,
            ) -> Result<(), $crate::store::StoreError> {
                let owned: Option<(i32,)> = sqlx::query_as($owns_saga)
                    .bind(&fence.saga_id)
                    .bind(&fence.fence.owner)
                    .bind(fence.fence.epoch)
                    .fetch_optional(&mut **tx)
                    .await?;
                match owned {
                    Some(_) => Ok(()),
                    None => Err($crate::store::StoreError::Fenced(format!("saga {}", fence.saga_id))),
                }
            }

            /// Runs one write statement; with a fence, in a transaction that checks it.
            async fn execute_fenced<'q>(
                &self,
                query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
                fence: Option<&$crate::store::workflows::StepFence>,
            ) -> Result<<$db as sqlx::Database>::QueryResult, $crate::store::StoreError> {
                let Some(fence) = fence else {
                    return Ok(query.execute(&self.pool).await?);
                };
                let mut tx = self.pool.begin().await?;
                let done = query.execute(&mut *tx).await?;
                Self::check_fence(&mut tx, fence).await?;
                tx.commit().await?;
                Ok(done)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::events::EventStore for $store {
            async fn append(
                &self,
                namespace: &str,
                stream: &str,
                expected: $crate::store::events::Expected,
                events: &[$crate::store::events::NewEvent],
                fence: Option<&$crate::store::workflows::StepFence>,
            ) -> Result<$crate::store::events::Appended, $crate::store::events::AppendError> {
                self.append_events(namespace, stream, expected, events, fence).await
            }

            async fn read_stream(
                &self,
                namespace: &str,
                stream: &str,
                from_version: u64,
                direction: $crate::store::events::Direction,
                max: u32,
            ) -> Result<Vec<$crate::store::events::RecordedEvent>, $crate::store::StoreError> {
                use $crate::store::events_sql::{EVENT_COLUMNS, EventRow, row_to_event, to_sql};
                let condition = match direction {
                    $crate::store::events::Direction::Forward => "version >= $3 ORDER BY version ASC",
                    $crate::store::events::Direction::Backward => "version <= $3 ORDER BY version DESC",
                };
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND stream = $2 AND {condition} LIMIT $4");
                let rows: Vec<EventRow> = sqlx::query_as(&sql)
                    .bind(namespace)
                    .bind(stream)
                    .bind(to_sql(from_version))
                    .bind(i64::from(max))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(row_to_event).collect())
            }

            async fn read_all(
                &self,
                namespaces: &[&str],
                from_position: u64,
                max: u32,
            ) -> Result<Vec<$crate::store::events::RecordedEvent>, $crate::store::StoreError> {
                use $crate::store::events_sql::{EVENT_COLUMNS, EventRow, row_to_event, to_sql};
                if namespaces.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE position >= "));
                query.push_bind(to_sql(from_position)).push(" AND namespace IN (");
                let mut list = query.separated(", ");
                for namespace in namespaces {
                    list.push_bind(*namespace);
                }
                query.push(") ORDER BY position LIMIT ").push_bind(i64::from(max));
                let rows: Vec<EventRow> = query.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(row_to_event).collect())
            }

            async fn read_filtered(
                &self,
                namespace: &str,
                filter: &$crate::model::names::StreamFilter,
                after: u64,
                max: u32,
            ) -> Result<Vec<$crate::store::events::RecordedEvent>, $crate::store::StoreError> {
                use $crate::model::names::StreamFilter;
                use $crate::store::events_sql::{EVENT_COLUMNS, EventRow, row_to_event, to_sql};
                let (condition, pattern, len) = match filter {
                    StreamFilter::Stream(s) => ("stream = $3 AND $4 >= 0", s, 0),
                    StreamFilter::Prefix(p) => ("substr(stream, 1, $4) = $3", p, p.len() as i64),
                };
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND namespace = $2 AND {condition} ORDER BY position LIMIT $5"
                );
                let rows: Vec<EventRow> = sqlx::query_as(&sql)
                    .bind(to_sql(after))
                    .bind(namespace)
                    .bind(pattern)
                    .bind(len as i32)
                    .bind(i64::from(max))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(row_to_event).collect())
            }

            async fn event_at(&self, position: u64) -> Result<Option<$crate::store::events::RecordedEvent>, $crate::store::StoreError> {
                use $crate::store::events_sql::{EVENT_COLUMNS, EventRow, row_to_event, to_sql};
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE position = $1");
                let row: Option<EventRow> = sqlx::query_as(&sql).bind(to_sql(position)).fetch_optional(&self.pool).await?;
                Ok(row.map(row_to_event))
            }

            async fn head(&self) -> Result<u64, $crate::store::StoreError> {
                let (head,): (i64,) = sqlx::query_as("SELECT CAST(last_position AS BIGINT) FROM event_log_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(head as u64)
            }

            async fn namespaces(&self) -> Result<Vec<(String, u64)>, $crate::store::StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT namespace, CAST(COUNT(*) AS BIGINT) FROM streams GROUP BY namespace ORDER BY namespace",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(namespace, n)| (namespace, n as u64)).collect())
            }

            async fn streams(
                &self,
                namespace: &str,
                after: &str,
                limit: u32,
            ) -> Result<Vec<(String, u64)>, $crate::store::StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT stream, CAST(version AS BIGINT) FROM streams WHERE namespace = $1 AND stream > $2
                     ORDER BY stream LIMIT $3",
                )
                .bind(namespace)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(stream, version)| (stream, version as u64)).collect())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::events::KvStore for $store {
            async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
                let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT value FROM kv WHERE namespace = $1 AND key = $2")
                    .bind(namespace)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(v,)| v))
            }

            async fn kv_set(
                &self,
                namespace: &str,
                key: &str,
                value: &[u8],
                fence: Option<&$crate::store::workflows::StepFence>,
            ) -> Result<(), $crate::store::StoreError> {
                let query = sqlx::query(
                    "INSERT INTO kv (namespace, key, value, updated_at_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
                )
                .bind(namespace)
                .bind(key)
                .bind(value)
                .bind($crate::store::now_ms());
                self.execute_fenced(query, fence).await?;
                Ok(())
            }

            async fn kv_delete(
                &self,
                namespace: &str,
                key: &str,
                fence: Option<&$crate::store::workflows::StepFence>,
            ) -> Result<bool, $crate::store::StoreError> {
                let query = sqlx::query("DELETE FROM kv WHERE namespace = $1 AND key = $2").bind(namespace).bind(key);
                Ok(self.execute_fenced(query, fence).await?.rows_affected() > 0)
            }

            async fn kv_list(
                &self,
                namespace: &str,
                prefix: &str,
                start_after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<(String, Vec<u8>)>, $crate::store::StoreError> {
                // `key >= prefix` lets the primary key index do the range scan.
                let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
                    "SELECT key, value FROM kv WHERE namespace = $1 AND key >= $2 AND substr(key, 1, $3) = $2 AND key > $4
                     ORDER BY key LIMIT $5",
                )
                .bind(namespace)
                .bind(prefix)
                // substr counts characters, not bytes.
                .bind(prefix.chars().count() as i32)
                .bind(start_after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn kv_compare_and_swap(
                &self,
                namespace: &str,
                key: &str,
                expected: Option<&[u8]>,
                new: Option<&[u8]>,
                fence: Option<&$crate::store::workflows::StepFence>,
            ) -> Result<bool, $crate::store::StoreError> {
                let now = $crate::store::now_ms();
                // Each case is one conditional statement, so it is atomic without a transaction.
                let query = match (expected, new) {
                    (None, Some(new)) => sqlx::query(
                        "INSERT INTO kv (namespace, key, value, updated_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, key) DO NOTHING",
                    )
                    .bind(namespace)
                    .bind(key)
                    .bind(new)
                    .bind(now),
                    (Some(old), Some(new)) => sqlx::query(
                        "UPDATE kv SET value = $3, updated_at_ms = $4 WHERE namespace = $1 AND key = $2 AND value = $5",
                    )
                    .bind(namespace)
                    .bind(key)
                    .bind(new)
                    .bind(now)
                    .bind(old),
                    (Some(old), None) => sqlx::query("DELETE FROM kv WHERE namespace = $1 AND key = $2 AND value = $3")
                        .bind(namespace)
                        .bind(key)
                        .bind(old),
                    (None, None) => return Ok(self.kv_get(namespace, key).await?.is_none()),
                };
                Ok(self.execute_fenced(query, fence).await?.rows_affected() == 1)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::events::SubscriptionStore for $store {
            async fn checkpoint(&self, function: &str, subscription: &str) -> Result<Option<u64>, $crate::store::StoreError> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "SELECT CAST(position AS BIGINT) FROM subscription_checkpoints WHERE function = $1 AND subscription = $2",
                )
                .bind(function)
                .bind(subscription)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(p,)| p as u64))
            }

            async fn save_checkpoint(
                &self,
                function: &str,
                subscription: &str,
                position: u64,
                fence: &$crate::store::leases::LeaseFence,
            ) -> Result<(), $crate::store::StoreError> {
                let saved = sqlx::query(concat!(
                    "WITH held AS (", $lease_held, ")
                     INSERT INTO subscription_checkpoints (function, subscription, position, updated_at_ms)
                     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM held)
                     ON CONFLICT (function, subscription) DO UPDATE SET position = excluded.position,
                         updated_at_ms = excluded.updated_at_ms"
                ))
                .bind(function)
                .bind(subscription)
                .bind($crate::store::events_sql::to_sql(position))
                .bind($crate::store::now_ms())
                .bind(&fence.lease)
                .bind(&fence.owner)
                .bind(fence.epoch as i64)
                .execute(&self.pool)
                .await?;
                if saved.rows_affected() == 0 {
                    return Err($crate::store::StoreError::Fenced(format!("subscription lease `{}`", fence.lease)));
                }
                Ok(())
            }

            async fn reset(
                &self,
                reset: &$crate::store::events::SubscriptionReset<'_>,
            ) -> Result<$crate::store::events::ResetCounts, $crate::store::StoreError> {
                let now = $crate::store::now_ms();
                let mut tx = self.pool.begin().await?;
                // First, so it holds the lease row (PostgreSQL) or the write lock (SQLite) until
                // commit: the holder's checkpoint writes and a second reset wait, then see it.
                sqlx::query(
                    "INSERT INTO leases (name, owner, epoch, expires_at_ms, acquired_at_ms) VALUES ($1, '', 1, 0, 0)
                     ON CONFLICT (name) DO UPDATE SET owner = '', epoch = leases.epoch + 1, expires_at_ms = 0",
                )
                .bind(reset.lease)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO subscription_checkpoints (function, subscription, position, updated_at_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (function, subscription) DO UPDATE SET position = excluded.position, updated_at_ms = excluded.updated_at_ms",
                )
                .bind(reset.function)
                .bind(reset.subscription)
                .bind($crate::store::events_sql::to_sql(reset.position))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let mut counts = $crate::store::events::ResetCounts::default();
                if reset.clear_parked {
                    counts.cleared_parked = sqlx::query("DELETE FROM parked_events WHERE function = $1 AND subscription = $2")
                        .bind(reset.function)
                        .bind(reset.subscription)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                if reset.clear_kv {
                    counts.cleared_kv = sqlx::query("DELETE FROM kv WHERE namespace = $1")
                        .bind(reset.function)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(counts)
            }

            async fn park(
                &self,
                function: &str,
                subscription: &str,
                position: u64,
                error: &str,
                attempts: u32,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO parked_events (function, subscription, position, error, attempts, parked_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(function)
                .bind(subscription)
                .bind($crate::store::events_sql::to_sql(position))
                .bind(error)
                .bind(i64::from(attempts))
                .bind($crate::store::now_ms())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn parked(
                &self,
                function: &str,
                after: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::events::ParkedEvent>, $crate::store::StoreError> {
                let rows: Vec<(i64, String, i64, String, i64, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT CAST(id AS BIGINT), subscription, CAST(position AS BIGINT), error, CAST(attempts AS BIGINT),
                            CAST(parked_at_ms AS BIGINT), CAST(replayed_at_ms AS BIGINT)
                     FROM parked_events WHERE function = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(function)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, subscription, position, error, attempts, parked_at_ms, replayed_at_ms)| {
                        $crate::store::events::ParkedEvent {
                            id,
                            subscription,
                            position: position as u64,
                            error,
                            attempts: attempts as u32,
                            parked_at_ms,
                            replayed_at_ms,
                        }
                    })
                    .collect())
            }

            async fn mark_replayed(&self, function: &str, id: i64) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query("UPDATE parked_events SET replayed_at_ms = $3 WHERE function = $1 AND id = $2")
                    .bind(function)
                    .bind(id)
                    .bind($crate::store::now_ms())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use impl_event_stores;

/// An inherent `append_events` for `$store` as one transaction of several statements: the
/// embedded database, where a statement costs a function call, not a network round trip.
/// (PostgreSQL does the same steps in one call of the `faas_append` SQL function.)
macro_rules! impl_transactional_append {
    ($store:ty, $db:ty) => {
        impl $store {
            /// An append: through the group commit (`store::group_commit`), or, for a saga
            /// step's append (with a fence), in a transaction of its own that checks the fence.
            async fn append_events(
                &self,
                namespace: &str,
                stream: &str,
                expected: $crate::store::events::Expected,
                events: &[$crate::store::events::NewEvent],
                fence: Option<&$crate::store::workflows::StepFence>,
            ) -> Result<$crate::store::events::Appended, $crate::store::events::AppendError> {
                let Some(fence) = fence else {
                    let request = $crate::store::group_commit::AppendRequest {
                        namespace: namespace.to_owned(),
                        stream: stream.to_owned(),
                        expected,
                        events: events.to_vec(),
                    };
                    return self.group.append(request).await;
                };
                let mut tx = self.pool.begin().await?;
                let appended = Self::append_in(&mut tx, namespace, stream, expected, events, Some(fence)).await?;
                tx.commit().await?;
                Ok(appended)
            }

            /// One append inside `tx`, which may hold others before and after it (a group
            /// commit). A refused append (wrong expected version, idempotency conflict) has
            /// written nothing but the no-op that took the append lock, so `tx` goes on.
            pub(crate) async fn append_in(
                tx: &mut sqlx::Transaction<'_, $db>,
                namespace: &str,
                stream: &str,
                expected: $crate::store::events::Expected,
                events: &[$crate::store::events::NewEvent],
                fence: Option<&$crate::store::workflows::StepFence>,
            ) -> Result<$crate::store::events::Appended, $crate::store::events::AppendError> {
                use $crate::store::events::{AppendError, Appended};
                use $crate::store::events_sql::{EVENT_COLUMNS, EventRow, row_to_event, to_sql};
                // First statement, and a write: it takes the append lock (the row lock on
                // PostgreSQL, the database write lock on SQLite) until commit.
                let (head,): (i64,) = sqlx::query_as(
                    "UPDATE event_log_head SET last_position = last_position WHERE id = 1 RETURNING CAST(last_position AS BIGINT)",
                )
                .fetch_one(&mut **tx)
                .await?;
                if let Some(fence) = fence {
                    Self::check_fence(tx, fence).await?;
                }

                // Idempotency: the same ids already in this stream?
                let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE namespace = "
                ));
                query.push_bind(namespace).push(" AND stream = ").push_bind(stream).push(" AND event_id IN (");
                let mut ids = query.separated(", ");
                for event in events {
                    ids.push_bind(&event.id);
                }
                query.push(") ORDER BY version");
                let existing: Vec<EventRow> = query.build_query_as().fetch_all(&mut **tx).await?;
                if !existing.is_empty() {
                    let existing: Vec<_> = existing.into_iter().map(row_to_event).collect();
                    let same = existing.len() == events.len()
                        && existing.iter().zip(events).all(|(old, new)| {
                            old.id == new.id && old.event_type == new.event_type && old.data == new.data && old.metadata == new.metadata
                        })
                        && existing.windows(2).all(|w| w[1].version == w[0].version + 1);
                    if !same {
                        return Err(AppendError::IdempotencyConflict(format!(
                            "event id {} is already in stream `{stream}` with different content, or only part of this batch was appended before",
                            existing[0].id
                        )));
                    }
                    let (first, last) = (&existing[0], &existing[existing.len() - 1]);
                    return Ok(Appended {
                        first_version: first.version,
                        last_version: last.version,
                        first_position: first.position,
                        last_position: last.position,
                        duplicate: true,
                    });
                }

                let current: Option<(i64,)> =
                    sqlx::query_as("SELECT CAST(version AS BIGINT) FROM streams WHERE namespace = $1 AND stream = $2")
                        .bind(namespace)
                        .bind(stream)
                        .fetch_optional(&mut **tx)
                        .await?;
                let current = current.map(|(v,)| v as u64);
                if !expected.admits(current) {
                    return Err(AppendError::WrongExpectedVersion { expected, actual: current });
                }
                let first_version = current.map_or(0, |v| v + 1);
                let first_position = head as u64 + 1;
                let count = events.len() as u64;
                let now = $crate::store::now_ms();
                let mut insert = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO events (position, namespace, stream, version, event_id, event_type, data, metadata, recorded_at_ms) ",
                );
                insert.push_values(events.iter().enumerate(), |mut row, (i, event)| {
                    row.push_bind(to_sql(first_position + i as u64))
                        .push_bind(namespace)
                        .push_bind(stream)
                        .push_bind(to_sql(first_version + i as u64))
                        .push_bind(&event.id)
                        .push_bind(&event.event_type)
                        .push_bind(&event.data)
                        .push_bind(&event.metadata)
                        .push_bind(now);
                });
                insert.build().execute(&mut **tx).await?;
                let last_version = first_version + count - 1;
                let last_position = first_position + count - 1;
                sqlx::query(
                    "INSERT INTO streams (namespace, stream, version) VALUES ($1, $2, $3)
                     ON CONFLICT (namespace, stream) DO UPDATE SET version = excluded.version",
                )
                .bind(namespace)
                .bind(stream)
                .bind(to_sql(last_version))
                .execute(&mut **tx)
                .await?;
                sqlx::query("UPDATE event_log_head SET last_position = $1 WHERE id = 1")
                    .bind(to_sql(last_position))
                    .execute(&mut **tx)
                    .await?;
                Ok(Appended { first_version, last_version, first_position, last_position, duplicate: false })
            }
        }
    };
}

pub(crate) use impl_transactional_append;
