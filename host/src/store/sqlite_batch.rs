//! The group commit's side on SQLite ([`SqliteBatch`]): a batch of appends in one transaction
//! and a handful of statements, whatever its size. SQLite statements cost no round trip but each
//! is a hop to sqlx's worker thread and a parse: six per append would cap a batch at a few
//! thousand appends per second. So the batch reads what its checks need at once (the streams'
//! versions, any rows with the batch's event ids), decides every append in order in memory, as
//! `append_in` would one by one (idempotency first, then the expected version, each against the
//! state the appends before it left), and writes all new rows, the streams and the head in a
//! few multi-row statements. The append lock is the transaction's first write, as before.

use super::StoreError;
use super::events::{AppendError, Appended};
use super::events_sql::to_sql;
use super::group_commit::{AppendRequest, AppendResult, BatchAppender};
use sqlx::sqlite::SqlitePool;
use std::collections::HashMap;

/// Rows per multi-row statement: 9 parameters each, well under SQLite's 32,766.
const ROWS_PER_INSERT: usize = 1000;
/// Keys per lookup statement.
const KEYS_PER_SELECT: usize = 300;

pub(crate) struct SqliteBatch {
    pub(crate) pool: SqlitePool,
}

/// An event already in the stream (stored, or earlier in this batch).
#[derive(Clone)]
struct Known {
    version: u64,
    position: u64,
    event_type: String,
    data: Vec<u8>,
    metadata: String,
}

type StreamKey = (String, String);
type IdKey = (String, String, String);

#[async_trait::async_trait]
impl BatchAppender for SqliteBatch {
    async fn append_batch(&self, batch: &[AppendRequest]) -> Result<Vec<AppendResult>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (head,): (i64,) = sqlx::query_as(
            "UPDATE event_log_head SET last_position = last_position WHERE id = 1 RETURNING CAST(last_position AS BIGINT)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut head = head as u64;
        let mut versions = stream_versions(&mut tx, batch).await?;
        let mut known = known_ids(&mut tx, batch).await?;
        let now = super::now_ms();
        let mut rows: Vec<(u64, &AppendRequest, usize, u64)> = Vec::new();
        let mut touched: HashMap<StreamKey, u64> = HashMap::new();
        let mut results = Vec::with_capacity(batch.len());
        for request in batch {
            let stream_key = (request.namespace.clone(), request.stream.clone());
            let id_key = |id: &str| (request.namespace.clone(), request.stream.clone(), id.to_owned());
            let existing: Vec<Known> =
                request.events.iter().filter_map(|e| known.get(&id_key(&e.id)).cloned()).collect();
            if !existing.is_empty() {
                let same = existing.len() == request.events.len()
                    && existing.iter().zip(&request.events).all(|(old, new)| {
                        old.event_type == new.event_type && old.data == new.data && old.metadata == new.metadata
                    })
                    && existing.windows(2).all(|w| w[1].version == w[0].version + 1);
                results.push(if same {
                    let (first, last) = (&existing[0], &existing[existing.len() - 1]);
                    Ok(Appended {
                        first_version: first.version,
                        last_version: last.version,
                        first_position: first.position,
                        last_position: last.position,
                        duplicate: true,
                    })
                } else {
                    let id = request.events.iter().find(|e| known.contains_key(&id_key(&e.id))).map(|e| e.id.clone());
                    Err(AppendError::IdempotencyConflict(format!(
                        "event id {} is already in stream `{}` with different content, or only part of this batch was appended before",
                        id.unwrap_or_default(),
                        request.stream
                    )))
                });
                continue;
            }
            let current = versions.get(&stream_key).copied().flatten();
            if !request.expected.admits(current) {
                results.push(Err(AppendError::WrongExpectedVersion { expected: request.expected, actual: current }));
                continue;
            }
            let first_version = current.map_or(0, |v| v + 1);
            let first_position = head + 1;
            for (i, event) in request.events.iter().enumerate() {
                let (version, position) = (first_version + i as u64, first_position + i as u64);
                rows.push((position, request, i, version));
                known.insert(
                    id_key(&event.id),
                    Known {
                        version,
                        position,
                        event_type: event.event_type.clone(),
                        data: event.data.clone(),
                        metadata: event.metadata.clone(),
                    },
                );
            }
            let count = request.events.len() as u64;
            let last_version = first_version + count - 1;
            head += count;
            versions.insert(stream_key.clone(), Some(last_version));
            touched.insert(stream_key, last_version);
            results.push(Ok(Appended {
                first_version,
                last_version,
                first_position,
                last_position: head,
                duplicate: false,
            }));
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO events (position, namespace, stream, version, event_id, event_type, data, metadata, recorded_at_ms) ",
            );
            insert.push_values(chunk, |mut row, (position, request, i, version)| {
                let event = &request.events[*i];
                row.push_bind(to_sql(*position))
                    .push_bind(&request.namespace)
                    .push_bind(&request.stream)
                    .push_bind(to_sql(*version))
                    .push_bind(&event.id)
                    .push_bind(&event.event_type)
                    .push_bind(&event.data)
                    .push_bind(&event.metadata)
                    .push_bind(now);
            });
            insert.build().execute(&mut *tx).await?;
        }
        let touched: Vec<(StreamKey, u64)> = touched.into_iter().collect();
        for chunk in touched.chunks(ROWS_PER_INSERT) {
            let mut upsert =
                sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO streams (namespace, stream, version) ");
            upsert.push_values(chunk, |mut row, ((namespace, stream), version)| {
                row.push_bind(namespace).push_bind(stream).push_bind(to_sql(*version));
            });
            upsert.push(" ON CONFLICT (namespace, stream) DO UPDATE SET version = excluded.version");
            upsert.build().execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE event_log_head SET last_position = $1 WHERE id = 1")
            .bind(to_sql(head))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(results)
    }
}

/// The current version of every stream the batch appends to (none: no stream yet).
async fn stream_versions(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    batch: &[AppendRequest],
) -> Result<HashMap<StreamKey, Option<u64>>, StoreError> {
    let mut keys: Vec<StreamKey> = batch.iter().map(|r| (r.namespace.clone(), r.stream.clone())).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut versions: HashMap<StreamKey, Option<u64>> = keys.iter().map(|k| (k.clone(), None)).collect();
    for chunk in keys.chunks(KEYS_PER_SELECT) {
        // A join with the keys, not `(namespace, stream) IN (VALUES …)`: SQLite plans that IN as
        // a scan of the whole table, the join as one index search per key.
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT s.namespace, s.stream, CAST(s.version AS BIGINT) FROM (VALUES ",
        );
        let mut list = query.separated(", ");
        for (namespace, stream) in chunk {
            list.push("(")
                .push_bind_unseparated(namespace)
                .push_unseparated(", ")
                .push_bind_unseparated(stream)
                .push_unseparated(")");
        }
        query.push(") AS k JOIN streams s ON s.namespace = k.column1 AND s.stream = k.column2");
        let rows: Vec<(String, String, i64)> = query.build_query_as().fetch_all(&mut **tx).await?;
        for (namespace, stream, version) in rows {
            versions.insert((namespace, stream), Some(version as u64));
        }
    }
    Ok(versions)
}

/// Rows that already carry one of the batch's event ids in the same stream.
async fn known_ids(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    batch: &[AppendRequest],
) -> Result<HashMap<IdKey, Known>, StoreError> {
    let keys: Vec<(&str, &str, &str)> = batch
        .iter()
        .flat_map(|r| r.events.iter().map(move |e| (r.namespace.as_str(), r.stream.as_str(), e.id.as_str())))
        .collect();
    let mut known = HashMap::new();
    for chunk in keys.chunks(KEYS_PER_SELECT) {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT e.namespace, e.stream, e.event_id, CAST(e.version AS BIGINT), CAST(e.position AS BIGINT), e.event_type,
                    e.data, e.metadata FROM (VALUES ",
        );
        let mut list = query.separated(", ");
        for (namespace, stream, id) in chunk {
            list.push("(")
                .push_bind_unseparated(*namespace)
                .push_unseparated(", ")
                .push_bind_unseparated(*stream)
                .push_unseparated(", ")
                .push_bind_unseparated(*id)
                .push_unseparated(")");
        }
        query.push(
            ") AS k JOIN events e ON e.namespace = k.column1 AND e.stream = k.column2 AND e.event_id = k.column3",
        );
        type Row = (String, String, String, i64, i64, String, Vec<u8>, String);
        let rows: Vec<Row> = query.build_query_as().fetch_all(&mut **tx).await?;
        for (namespace, stream, id, version, position, event_type, data, metadata) in rows {
            let entry = Known { version: version as u64, position: position as u64, event_type, data, metadata };
            known.insert((namespace, stream, id), entry);
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::{EventStore, Expected, NewEvent};

    fn request(stream: &str, expected: Expected, ids: &[&str], data: &[u8]) -> AppendRequest {
        let events = ids
            .iter()
            .map(|id| NewEvent { id: (*id).into(), event_type: "T".into(), data: data.to_vec(), metadata: "{}".into() })
            .collect();
        AppendRequest { namespace: "n".into(), stream: stream.into(), expected, events }
    }

    /// One batch decides each append as if they ran one by one in order, seeing the ones
    /// before it in the same batch.
    #[tokio::test]
    async fn a_batch_decides_like_appends_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        store.append("n", "b", Expected::Any, &request("b", Expected::Any, &["b0"], b"x").events, None).await.unwrap();
        let batch = SqliteBatch { pool: store.pool().clone() };
        let results = batch
            .append_batch(&[
                request("a", Expected::NoStream, &["a0", "a1"], b"1"),
                // The same ids again: a duplicate of the append just before, in this batch.
                request("a", Expected::Exact(7), &["a0", "a1"], b"1"),
                // Same id, other content: a conflict; a stale version: refused.
                request("a", Expected::Any, &["a1"], b"2"),
                request("b", Expected::Exact(3), &["b1"], b"x"),
                request("b", Expected::Exact(0), &["b1"], b"x"),
                request("a", Expected::Exact(1), &["a2"], b"1"),
                // A duplicate of what was stored before the batch.
                request("b", Expected::NoStream, &["b0"], b"x"),
            ])
            .await
            .unwrap();
        let ok = |r: &AppendResult| {
            r.as_ref().map(|a| (a.first_version, a.last_version, a.first_position, a.duplicate)).ok()
        };
        assert_eq!(ok(&results[0]), Some((0, 1, 2, false)));
        assert_eq!(ok(&results[1]), Some((0, 1, 2, true)));
        assert!(matches!(results[2], Err(AppendError::IdempotencyConflict(_))), "{:?}", results[2]);
        assert!(
            matches!(results[3], Err(AppendError::WrongExpectedVersion { actual: Some(0), .. })),
            "{:?}",
            results[3]
        );
        assert_eq!(ok(&results[4]), Some((1, 1, 4, false)));
        assert_eq!(ok(&results[5]), Some((2, 2, 5, false)));
        assert_eq!(ok(&results[6]), Some((0, 0, 1, true)));
        assert_eq!(store.head().await.unwrap(), 5);
        let a = store.read_stream("n", "a", 0, crate::store::events::Direction::Forward, 10).await.unwrap();
        assert_eq!(a.iter().map(|e| (e.version, e.position)).collect::<Vec<_>>(), [(0, 2), (1, 3), (2, 5)]);
    }
}
