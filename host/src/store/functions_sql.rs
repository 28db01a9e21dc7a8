//! The SQL of [`FunctionStore`](super::FunctionStore), written once for both databases: the
//! statements are the same text on SQLite and PostgreSQL except for row locking, so one macro
//! implements the trait for each store type.

/// Implements `FunctionStore` for `$store` (which has a `pool: sqlx::Pool<$db>` field).
/// `$notify` runs in every changing transaction with the function's name as `$1` (PostgreSQL's
/// `pg_notify`, so other nodes reload it at commit), or is empty.
/// `$lock` is appended to the read that picks the next version number: `FOR UPDATE` on
/// PostgreSQL, where several nodes may deploy at once; empty on SQLite, where the transaction's
/// first statement is a write and so already holds the database's write lock.
macro_rules! impl_function_store {
    ($store:ty, $lock:literal, $notify:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::FunctionStore for $store {
            async fn insert_version(
                &self,
                name: &str,
                new: $crate::store::NewVersion<'_>,
            ) -> Result<$crate::store::VersionRecord, $crate::store::StoreError> {
                let now = $crate::store::now_ms();
                let spec = serde_json::to_string(new.spec).expect("a spec always serializes");
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO functions (name, active_version, latest_version, created_at_ms, updated_at_ms)
                     VALUES ($1, NULL, 0, $2, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let (latest,): (i64,) =
                    sqlx::query_as(concat!("SELECT CAST(latest_version AS BIGINT) FROM functions WHERE name = $1 ", $lock))
                        .bind(name)
                        .fetch_one(&mut *tx)
                        .await?;
                let version = latest + 1;
                sqlx::query(
                    "INSERT INTO function_versions
                       (function_name, version, sha256, size_bytes, spec, component, created_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(name)
                .bind(version as i32)
                .bind(new.sha256)
                .bind(new.component.len() as i64)
                .bind(&spec)
                .bind(new.component)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE functions SET latest_version = $2, active_version = $2, updated_at_ms = $3 WHERE name = $1",
                )
                .bind(name)
                .bind(version as i32)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if !$notify.is_empty() {
                    sqlx::query($notify).bind(name).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok($crate::store::VersionRecord {
                    version: version as u32,
                    sha256: new.sha256.to_owned(),
                    size_bytes: new.component.len() as u64,
                    spec: new.spec.clone(),
                    created_at_ms: now,
                })
            }

            async fn activate(&self, name: &str, version: u32) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                let exists: Option<(i64,)> =
                    sqlx::query_as("SELECT CAST(version AS BIGINT) FROM function_versions WHERE function_name = $1 AND version = $2")
                        .bind(name)
                        .bind(version as i32)
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_none() {
                    let function: Option<(String,)> = sqlx::query_as("SELECT name FROM functions WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(match function {
                        None => $crate::store::StoreError::FunctionNotFound(name.to_owned()),
                        Some(_) => $crate::store::StoreError::VersionNotFound { function: name.to_owned(), version },
                    });
                }
                sqlx::query("UPDATE functions SET active_version = $2, updated_at_ms = $3 WHERE name = $1")
                    .bind(name)
                    .bind(version as i32)
                    .bind($crate::store::now_ms())
                    .execute(&mut *tx)
                    .await?;
                if !$notify.is_empty() {
                    sqlx::query($notify).bind(name).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn delete(&self, name: &str) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM function_versions WHERE function_name = $1").bind(name).execute(&mut *tx).await?;
                let deleted = sqlx::query("DELETE FROM functions WHERE name = $1").bind(name).execute(&mut *tx).await?;
                if !$notify.is_empty() {
                    sqlx::query($notify).bind(name).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn function(&self, name: &str) -> Result<Option<$crate::store::FunctionRecord>, $crate::store::StoreError> {
                Ok(self.load(Some(name)).await?.pop())
            }

            async fn functions(&self) -> Result<Vec<$crate::store::FunctionRecord>, $crate::store::StoreError> {
                self.load(None).await
            }

            async fn component(&self, name: &str, version: u32) -> Result<Vec<u8>, $crate::store::StoreError> {
                let row: Option<(Vec<u8>,)> =
                    sqlx::query_as("SELECT component FROM function_versions WHERE function_name = $1 AND version = $2")
                        .bind(name)
                        .bind(version as i32)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(|(bytes,)| bytes)
                    .ok_or_else(|| $crate::store::StoreError::VersionNotFound { function: name.to_owned(), version })
            }
        }

        impl $store {
            /// One function (by name) or all, with their versions, in one read transaction.
            async fn load(&self, name: Option<&str>) -> Result<Vec<$crate::store::FunctionRecord>, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                let functions: Vec<(String, Option<i64>, i64, i64)> = sqlx::query_as(
                    "SELECT name, CAST(active_version AS BIGINT), created_at_ms, updated_at_ms FROM functions
                     WHERE $1 IS NULL OR name = $1 ORDER BY name",
                )
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
                let rows: Vec<(String, i64, String, i64, String, i64)> = sqlx::query_as(
                    "SELECT function_name, CAST(version AS BIGINT), sha256, size_bytes, spec, created_at_ms
                     FROM function_versions WHERE $1 IS NULL OR function_name = $1 ORDER BY function_name, version",
                )
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                let mut versions = Vec::with_capacity(rows.len());
                for (function, version, sha256, size_bytes, spec, created_at_ms) in rows {
                    let record = $crate::store::VersionRecord {
                        version: version as u32,
                        sha256,
                        size_bytes: size_bytes as u64,
                        spec: $crate::store::parse_spec(&spec)?,
                        created_at_ms,
                    };
                    versions.push((function, record));
                }
                let functions = functions.into_iter().map(|(n, active, c, u)| (n, active.map(|v| v as u32), c, u)).collect();
                Ok($crate::store::assemble(functions, versions))
            }
        }
    };
}

pub(crate) use impl_function_store;
