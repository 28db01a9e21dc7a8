//! [`PostgresStore`]: the multi-node backend. Several `faas serve` processes may share it.

use super::StoreError;
use super::events_sql::impl_event_stores;
use super::functions_sql::impl_function_store;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and applies pending migrations (sqlx takes an advisory lock, so nodes starting
    /// together do not race).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl_function_store!(PostgresStore, "FOR UPDATE");
// Other nodes LISTEN on `faas_events`; the notification is delivered when the append commits.
impl_event_stores!(PostgresStore, sqlx::Postgres, "SELECT pg_notify('faas_events', $1)");
