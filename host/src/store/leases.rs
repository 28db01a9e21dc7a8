//! Leases: work that must have exactly one owner across the nodes sharing a database (a
//! subscription's delivery, an outbox's forwarding) is done only under a lease, a row naming the
//! owner node, an expiry the owner keeps pushing forward, and an epoch that every takeover
//! bumps. The owner's durable writes name the epoch they hold ([`LeaseFence`]) and are refused
//! once it moved on, so a node that was paused past its lease cannot undo its successor's work.

use super::StoreError;
use serde::Serialize;

/// What a write done under a lease names: refused unless `owner` still holds `lease` at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFence {
    pub lease: String,
    pub owner: String,
    pub epoch: u64,
}

/// One lease row, as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseRecord {
    pub name: String,
    /// Empty when free.
    pub owner: String,
    pub epoch: u64,
    pub expires_at_ms: i64,
    pub acquired_at_ms: i64,
}

/// A node that sent a heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    pub id: String,
    pub heartbeat_ms: i64,
    /// Stopping cleanly: it handed its leases back and takes no new ones.
    pub leaving: bool,
    /// Where its control plane answers (`--advertise-admin-url`), if it said.
    pub admin_url: Option<String>,
}

#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes `name` for `node` until `expires_at_ms` if no one holds it (no row yet, released,
    /// or expired by `now_ms`); returns the new epoch, or none when another node holds it.
    async fn acquire(&self, name: &str, node: &str, now_ms: i64, expires_at_ms: i64)
    -> Result<Option<u64>, StoreError>;
    /// Moves the expiry of every unexpired lease `node` holds to `expires_at_ms`, in one
    /// statement; returns each one's name and epoch (a lease missing here is lost).
    async fn renew(&self, node: &str, now_ms: i64, expires_at_ms: i64) -> Result<Vec<(String, u64)>, StoreError>;
    /// Hands a lease back (free at once for any node); nothing if it changed hands already.
    async fn release(&self, fence: &LeaseFence) -> Result<(), StoreError>;
    /// Hands back every lease `node` holds and marks it `leaving` or not: at a clean shutdown
    /// (leaving), and at start for what an earlier process with this node id held.
    async fn release_all(&self, node: &str, leaving: bool) -> Result<u64, StoreError>;
    /// Every lease, by name.
    async fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError>;
    /// Every node that ever sent a heartbeat, newest heartbeat first.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
}

/// The SQL of [`LeaseStore`], the same on both databases.
macro_rules! impl_lease_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::leases::LeaseStore for $store {
            async fn acquire(
                &self,
                name: &str,
                node: &str,
                now_ms: i64,
                expires_at_ms: i64,
            ) -> Result<Option<u64>, $crate::store::StoreError> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO leases (name, owner, epoch, expires_at_ms, acquired_at_ms) VALUES ($1, $2, 1, $4, $3)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, epoch = leases.epoch + 1,
                         expires_at_ms = excluded.expires_at_ms, acquired_at_ms = excluded.acquired_at_ms
                     WHERE leases.owner = '' OR leases.expires_at_ms <= $3
                     RETURNING CAST(epoch AS BIGINT)",
                )
                .bind(name)
                .bind(node)
                .bind(now_ms)
                .bind(expires_at_ms)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(epoch,)| epoch as u64))
            }

            async fn renew(
                &self,
                node: &str,
                now_ms: i64,
                expires_at_ms: i64,
            ) -> Result<Vec<(String, u64)>, $crate::store::StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "UPDATE leases SET expires_at_ms = $3 WHERE owner = $1 AND expires_at_ms > $2
                     RETURNING name, CAST(epoch AS BIGINT)",
                )
                .bind(node)
                .bind(now_ms)
                .bind(expires_at_ms)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(name, epoch)| (name, epoch as u64)).collect())
            }

            async fn release(
                &self,
                fence: &$crate::store::leases::LeaseFence,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "UPDATE leases SET owner = '', expires_at_ms = 0 WHERE name = $1 AND owner = $2 AND epoch = $3",
                )
                .bind(&fence.lease)
                .bind(&fence.owner)
                .bind(fence.epoch as i64)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn release_all(&self, node: &str, leaving: bool) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query("UPDATE leases SET owner = '', expires_at_ms = 0 WHERE owner = $1")
                    .bind(node)
                    .execute(&self.pool)
                    .await?;
                sqlx::query("UPDATE nodes SET leaving = $2 WHERE id = $1")
                    .bind(node)
                    .bind(i64::from(leaving))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn leases(&self) -> Result<Vec<$crate::store::leases::LeaseRecord>, $crate::store::StoreError> {
                let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT name, owner, CAST(epoch AS BIGINT), CAST(expires_at_ms AS BIGINT),
                            CAST(acquired_at_ms AS BIGINT) FROM leases ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, owner, epoch, expires_at_ms, acquired_at_ms)| $crate::store::leases::LeaseRecord {
                        name,
                        owner,
                        epoch: epoch as u64,
                        expires_at_ms,
                        acquired_at_ms,
                    })
                    .collect())
            }

            async fn nodes(&self) -> Result<Vec<$crate::store::leases::NodeRecord>, $crate::store::StoreError> {
                let rows: Vec<(String, i64, i64, Option<String>)> = sqlx::query_as(
                    "SELECT id, CAST(heartbeat_ms AS BIGINT), CAST(leaving AS BIGINT), admin_url FROM nodes
                     ORDER BY heartbeat_ms DESC, id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, heartbeat_ms, leaving, admin_url)| $crate::store::leases::NodeRecord {
                        id,
                        heartbeat_ms,
                        leaving: leaving != 0,
                        admin_url,
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use impl_lease_store;
