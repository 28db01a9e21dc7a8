//! Persistence: the [`FunctionStore`] trait and its two implementations, [`sqlite::SqliteStore`]
//! (the embedded default) and [`postgres::PostgresStore`] (for several nodes). SQL lives here and
//! nowhere else.

pub mod events;
pub(crate) mod events_sql;
mod functions_sql;
pub mod group_commit;
pub mod invocations;
pub mod leases;
pub mod postgres;
pub mod saga_state;
pub mod schedules;
pub mod sqlite;
mod sqlite_batch;
pub mod workflows;
pub(crate) mod workflows_sql;

use crate::model::spec::DeploySpec;
use crate::model::variables::StoredConfig;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("function `{0}` not found")]
    FunctionNotFound(String),
    #[error("function `{function}` has no version {version}")]
    VersionNotFound { function: String, version: u32 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A write of a saga or transaction by a node that no longer owns it (another node took
    /// it over while this one was paused or cut off).
    #[error("{0} is owned by another node now")]
    Fenced(String),
    /// A compare-and-set lost: what the write was based on changed meanwhile (the caller
    /// recomputes from the new state and tries again).
    #[error("{0}")]
    Moved(String),
    /// The store cannot take the request now (its append queue is full): retry shortly.
    #[error("{0}")]
    Unavailable(String),
    /// The embedded database is open in another process.
    #[error("{0}")]
    InUse(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// One immutable version of a function, without its bytes.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    pub version: u32,
    pub sha256: String,
    pub size_bytes: u64,
    pub spec: DeploySpec,
    /// The config version (variables and secrets) it runs with; none before any was set.
    pub config_version: Option<u32>,
    #[serde(rename = "created_at", serialize_with = "rfc3339")]
    pub created_at_ms: i64,
}

/// A function with all its versions, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionRecord {
    pub name: String,
    pub active_version: Option<u32>,
    pub versions: Vec<VersionRecord>,
    #[serde(rename = "created_at", serialize_with = "rfc3339")]
    pub created_at_ms: i64,
    #[serde(rename = "updated_at", serialize_with = "rfc3339")]
    pub updated_at_ms: i64,
}

impl FunctionRecord {
    pub fn active(&self) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| Some(v.version) == self.active_version)
    }
}

/// What a deploy stores.
pub struct NewVersion<'a> {
    pub sha256: &'a str,
    pub spec: &'a DeploySpec,
    pub component: &'a [u8],
    /// A new config version to run with; none keeps the active version's.
    pub config: Option<&'a StoredConfig>,
}

/// Functions and their versions. Every method is one transaction.
#[async_trait::async_trait]
pub trait FunctionStore: Send + Sync + 'static {
    /// Stores a new version (numbered one past the highest this function ever had) and makes it
    /// the active one, atomically.
    async fn insert_version(&self, name: &str, new: NewVersion<'_>) -> Result<VersionRecord, StoreError>;
    /// Makes an existing version the active one.
    async fn activate(&self, name: &str, version: u32) -> Result<(), StoreError>;
    /// Deletes a function and all its versions; `false` if there was none.
    async fn delete(&self, name: &str) -> Result<bool, StoreError>;
    async fn function(&self, name: &str) -> Result<Option<FunctionRecord>, StoreError>;
    async fn functions(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    async fn component(&self, name: &str, version: u32) -> Result<Vec<u8>, StoreError>;
    /// Stores a new config version and makes the active function version run with it,
    /// atomically; returns its number. `based_on` is the config version `config` was derived
    /// from: if the active version runs with another one by now, nothing is written
    /// ([`StoreError::Moved`]).
    async fn set_config(&self, name: &str, based_on: Option<u32>, config: &StoredConfig) -> Result<u32, StoreError>;
    /// One stored config version.
    async fn config(&self, name: &str, version: u32) -> Result<StoredConfig, StoreError>;
    /// The database's secret-key check token: `token` if there was none yet, else the stored one.
    async fn secret_key_check(&self, token: &str) -> Result<String, StoreError>;
    /// Rewrites every stored config version with `reseal` (its secrets sealed again under a new
    /// key) and stores the new key's check `token`, in one transaction; returns how many
    /// config versions were rewritten. An `Err` from `reseal` rolls everything back.
    async fn reseal_configs(&self, reseal: &Reseal<'_>, token: &str) -> Result<usize, StoreError>;
}

/// What [`FunctionStore::reseal_configs`] applies to each (function, config).
pub type Reseal<'a> = dyn Fn(&str, StoredConfig) -> Result<StoredConfig, String> + Send + Sync + 'a;

/// Every store trait, backed by one database.
#[derive(Clone)]
pub struct Stores {
    pub functions: Arc<dyn FunctionStore>,
    pub events: Arc<dyn events::EventStore>,
    pub kv: Arc<dyn events::KvStore>,
    pub subscriptions: Arc<dyn events::SubscriptionStore>,
    pub workflows: Arc<dyn workflows::WorkflowStore>,
    pub leases: Arc<dyn leases::LeaseStore>,
    pub invocations: Arc<dyn invocations::InvocationStore>,
    pub schedules: Arc<dyn schedules::ScheduleStore>,
    /// Set on PostgreSQL, where other nodes' appends are announced with NOTIFY.
    pub postgres_url: Option<String>,
}

impl Stores {
    fn from<S>(store: Arc<S>, postgres_url: Option<String>) -> Self
    where
        S: FunctionStore
            + events::EventStore
            + events::KvStore
            + events::SubscriptionStore
            + workflows::WorkflowStore
            + leases::LeaseStore
            + invocations::InvocationStore
            + schedules::ScheduleStore,
    {
        Self {
            functions: store.clone(),
            events: store.clone(),
            kv: store.clone(),
            subscriptions: store.clone(),
            workflows: store.clone(),
            leases: store.clone(),
            invocations: store.clone(),
            schedules: store,
            postgres_url,
        }
    }
}

/// Opens the store a database URL names: `postgres://…` or `sqlite://…`, applying migrations.
pub async fn open(database_url: &str) -> Result<Stores, StoreError> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        let store = postgres::PostgresStore::connect(database_url).await?;
        Ok(Stores::from(Arc::new(store), Some(database_url.to_owned())))
    } else {
        Ok(Stores::from(Arc::new(sqlite::SqliteStore::open(database_url).await?), None))
    }
}

/// The default database: SQLite in the data dir.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("faas.db").display())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn parse_config(text: &str) -> Result<StoredConfig, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored config: {e}")))
}

pub(crate) fn parse_spec(text: &str) -> Result<DeploySpec, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored deploy spec: {e}")))
}

/// Groups version rows (ordered by function, version) under their function rows.
pub(crate) fn assemble(
    functions: Vec<(String, Option<u32>, i64, i64)>,
    versions: Vec<(String, VersionRecord)>,
) -> Vec<FunctionRecord> {
    let mut records: Vec<FunctionRecord> = functions
        .into_iter()
        .map(|(name, active_version, created_at_ms, updated_at_ms)| FunctionRecord {
            name,
            active_version,
            versions: Vec::new(),
            created_at_ms,
            updated_at_ms,
        })
        .collect();
    for (name, version) in versions {
        if let Some(record) = records.iter_mut().find(|r| r.name == name) {
            record.versions.push(version);
        }
    }
    records
}

/// Milliseconds since the epoch as RFC 3339, as the API shows times.
pub fn format_time(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

fn rfc3339<S: serde::Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_time(*ms))
}
