//! The SQL of [`FunctionStore`](super::FunctionStore), written once for both databases: the
//! statements are the same text on SQLite and PostgreSQL except for row locking, so one macro
//! implements the trait for each store type.

/// Implements `FunctionStore` for `$store` (which has a `pool: sqlx::Pool<$db>` field).
/// `$notify` runs in every changing transaction with the function's name as `$1` (PostgreSQL's
/// `pg_notify`, so other nodes reload it at commit), or is empty.
/// `$lock` is appended to the read that picks the next version number: `FOR UPDATE` on
/// PostgreSQL, where several nodes may deploy at once; empty on SQLite, where the transaction's
/// first statement is a write and so already holds the database's write lock.
/// Inserts config version `latest_config + 1` of function `$name` in transaction `$tx` and
/// bumps `latest_config`; evaluates to the new number. The function row must exist and be
/// written (locked) already in `$tx`.
macro_rules! insert_config {
    ($tx:ident, $name:expr, $config:expr, $now:expr) => {{
        let text = serde_json::to_string($config).expect("a config always serializes");
        let (latest,): (i64,) = sqlx::query_as(
            "UPDATE functions SET latest_config = latest_config + 1 WHERE name = $1 RETURNING CAST(latest_config AS BIGINT)",
        )
        .bind($name)
        .fetch_one(&mut *$tx)
        .await?;
        sqlx::query("INSERT INTO function_configs (function_name, version, config, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind($name)
            .bind(latest as i32)
            .bind(&text)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        latest as u32
    }};
}

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
                let config_version = match new.config {
                    Some(config) => Some(insert_config!(tx, name, config, now)),
                    None => {
                        let row: Option<(Option<i64>,)> = sqlx::query_as(
                            "SELECT CAST(v.config_version AS BIGINT) FROM function_versions v
                             JOIN functions f ON f.name = v.function_name AND f.active_version = v.version
                             WHERE f.name = $1",
                        )
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                        row.and_then(|(v,)| v).map(|v| v as u32)
                    }
                };
                sqlx::query(
                    "INSERT INTO function_versions
                       (function_name, version, sha256, size_bytes, spec, component, created_at_ms, config_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(name)
                .bind(version as i32)
                .bind(new.sha256)
                .bind(new.component.len() as i64)
                .bind(&spec)
                .bind(new.component)
                .bind(now)
                .bind(config_version.map(|v| v as i32))
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
                    config_version,
                    created_at_ms: now,
                })
            }

            async fn activate(&self, name: &str, version: u32) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                // Written first, so SQLite takes its write lock before any read: a transaction that
                // reads and then writes fails at once ("database is locked", no busy wait) when
                // another connection committed in between.
                let updated = sqlx::query(
                    "UPDATE functions SET active_version = $2, updated_at_ms = $3 WHERE name = $1
                     AND EXISTS (SELECT 1 FROM function_versions WHERE function_name = $1 AND version = $2)",
                )
                .bind(name)
                .bind(version as i32)
                .bind($crate::store::now_ms())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    let function: Option<(String,)> = sqlx::query_as("SELECT name FROM functions WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(match function {
                        None => $crate::store::StoreError::FunctionNotFound(name.to_owned()),
                        Some(_) => $crate::store::StoreError::VersionNotFound { function: name.to_owned(), version },
                    });
                }
                if !$notify.is_empty() {
                    sqlx::query($notify).bind(name).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn delete(&self, name: &str) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM function_versions WHERE function_name = $1").bind(name).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM function_configs WHERE function_name = $1").bind(name).execute(&mut *tx).await?;
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

            async fn set_config(
                &self,
                name: &str,
                based_on: Option<u32>,
                config: &$crate::model::variables::StoredConfig,
            ) -> Result<u32, $crate::store::StoreError> {
                let now = $crate::store::now_ms();
                let mut tx = self.pool.begin().await?;
                // Written first, so SQLite takes its write lock before the read below.
                sqlx::query("UPDATE functions SET updated_at_ms = $2 WHERE name = $1")
                    .bind(name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let row: Option<(Option<i64>,)> =
                    sqlx::query_as(concat!("SELECT CAST(active_version AS BIGINT) FROM functions WHERE name = $1 ", $lock))
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((Some(active),)) = row else {
                    return Err($crate::store::StoreError::FunctionNotFound(name.to_owned()));
                };
                // Compare and set: `config` was computed from `based_on`; if another change (on
                // another node) landed since, applying it would lose that change.
                let (current,): (Option<i64>,) = sqlx::query_as(
                    "SELECT CAST(config_version AS BIGINT) FROM function_versions WHERE function_name = $1 AND version = $2",
                )
                .bind(name)
                .bind(active as i32)
                .fetch_one(&mut *tx)
                .await?;
                if current.map(|v| v as u32) != based_on {
                    return Err($crate::store::StoreError::Moved(format!(
                        "the config of `{name}` changed while this change was being made"
                    )));
                }
                let version = insert_config!(tx, name, config, now);
                sqlx::query("UPDATE function_versions SET config_version = $3 WHERE function_name = $1 AND version = $2")
                    .bind(name)
                    .bind(active as i32)
                    .bind(version as i32)
                    .execute(&mut *tx)
                    .await?;
                if !$notify.is_empty() {
                    sqlx::query($notify).bind(name).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(version)
            }

            async fn config(
                &self,
                name: &str,
                version: u32,
            ) -> Result<$crate::model::variables::StoredConfig, $crate::store::StoreError> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT config FROM function_configs WHERE function_name = $1 AND version = $2")
                        .bind(name)
                        .bind(version as i32)
                        .fetch_optional(&self.pool)
                        .await?;
                let (text,) = row.ok_or_else(|| {
                    $crate::store::StoreError::Corrupt(format!("function `{name}` has no config version {version}"))
                })?;
                $crate::store::parse_config(&text)
            }

            async fn reseal_configs(
                &self,
                reseal: &$crate::store::Reseal<'_>,
                token: &str,
            ) -> Result<usize, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                // Written first: SQLite's write lock, and on PostgreSQL a lock on the check row
                // that a second rotation waits for.
                sqlx::query(
                    "INSERT INTO secret_key_check (id, sealed) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed",
                )
                .bind(token)
                .execute(&mut *tx)
                .await?;
                let rows: Vec<(String, i64, String)> =
                    sqlx::query_as("SELECT function_name, CAST(version AS BIGINT), config FROM function_configs")
                        .fetch_all(&mut *tx)
                        .await?;
                for (function, version, text) in &rows {
                    let config = $crate::store::parse_config(text)?;
                    let config = reseal(function, config).map_err($crate::store::StoreError::Corrupt)?;
                    let text = serde_json::to_string(&config).expect("a config always serializes");
                    sqlx::query("UPDATE function_configs SET config = $3 WHERE function_name = $1 AND version = $2")
                        .bind(function)
                        .bind(*version as i32)
                        .bind(&text)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(rows.len())
            }

            async fn secret_key_check(&self, token: &str) -> Result<String, $crate::store::StoreError> {
                sqlx::query("INSERT INTO secret_key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
                    .bind(token)
                    .execute(&self.pool)
                    .await?;
                let (stored,): (String,) =
                    sqlx::query_as("SELECT sealed FROM secret_key_check WHERE id = 1").fetch_one(&self.pool).await?;
                Ok(stored)
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
                let rows: Vec<(String, i64, String, i64, String, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT function_name, CAST(version AS BIGINT), sha256, size_bytes, spec, created_at_ms,
                            CAST(config_version AS BIGINT)
                     FROM function_versions WHERE $1 IS NULL OR function_name = $1 ORDER BY function_name, version",
                )
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                let mut versions = Vec::with_capacity(rows.len());
                for (function, version, sha256, size_bytes, spec, created_at_ms, config_version) in rows {
                    let record = $crate::store::VersionRecord {
                        version: version as u32,
                        sha256,
                        size_bytes: size_bytes as u64,
                        spec: $crate::store::parse_spec(&spec)?,
                        config_version: config_version.map(|v| v as u32),
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
pub(crate) use insert_config;
