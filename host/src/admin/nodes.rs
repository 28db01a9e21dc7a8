//! `GET /v1/nodes`: the nodes sharing this database, how long since each one's heartbeat, and
//! which subscription and outbox leases each holds (and which are free).

use super::Admin;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::Arc;

pub async fn list(State(admin): State<Arc<Admin>>) -> Result<impl IntoResponse, ApiError> {
    let now = crate::store::now_ms();
    let timeout = admin.workflows.node_timeout().as_millis() as i64;
    let leases = admin.stores.leases.leases().await?;
    let held = |owner: &str| -> Vec<serde_json::Value> {
        leases
            .iter()
            .filter(|l| l.owner == owner && l.expires_at_ms > now)
            .map(|l| json!({ "name": l.name, "epoch": l.epoch, "expires_in_ms": l.expires_at_ms - now }))
            .collect()
    };
    let nodes: Vec<_> = admin
        .stores
        .leases
        .nodes()
        .await?
        .into_iter()
        .map(|n| {
            let age = now - n.heartbeat_ms;
            json!({
                "id": n.id,
                "this_node": n.id == admin.leases.node(),
                "alive": age <= timeout && !n.leaving,
                "leaving": n.leaving,
                "heartbeat_age_ms": age,
                "leases": held(&n.id),
            })
        })
        .collect();
    let free: Vec<_> =
        leases.iter().filter(|l| l.owner.is_empty() || l.expires_at_ms <= now).map(|l| &l.name).collect();
    Ok(Json(json!({ "nodes": nodes, "free_leases": free })))
}
