//! `/v1/functions/{name}/subscriptions`, parked-event replay, and reading streams.

use super::Admin;
use crate::capabilities::event_store::metadata_from_json;
use crate::error::ApiError;
use crate::store::events::{Direction, RecordedEvent};
use crate::subscriptions::ReplayError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn subscriptions(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let function =
        admin.registry.active(&name).ok_or_else(|| ApiError::not_found(format!("function `{name}` not found")))?;
    let statuses = admin.subscriptions.status(&function).await?;
    let parked = admin.stores.subscriptions.parked(&name).await?;
    Ok(Json(json!({ "function": name, "subscriptions": statuses, "parked": parked })))
}

pub async fn replay(
    State(admin): State<Arc<Admin>>,
    Path((name, id)): Path<(String, i64)>,
) -> Result<impl IntoResponse, ApiError> {
    let function =
        admin.registry.active(&name).ok_or_else(|| ApiError::not_found(format!("function `{name}` not found")))?;
    match admin.subscriptions.replay_parked(&function, id).await {
        Ok(()) => Ok(Json(json!({ "replayed": id }))),
        Err(ReplayError::NotFound) => Err(ApiError::not_found(format!("function `{name}` has no parked event {id}"))),
        Err(ReplayError::Store(e)) => Err(e.into()),
        Err(ReplayError::Invoke(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default = "default_max")]
    max: u32,
    #[serde(default)]
    backward: bool,
}

fn default_max() -> u32 {
    100
}

pub async fn read_stream(
    State(admin): State<Arc<Admin>>,
    Path((namespace, stream)): Path<(String, String)>,
    Query(params): Query<ReadParams>,
) -> Result<impl IntoResponse, ApiError> {
    let direction = if params.backward { Direction::Backward } else { Direction::Forward };
    let from = params.from.unwrap_or(if params.backward { u64::MAX } else { 0 });
    let max = params.max.min(crate::capabilities::MAX_READ_COUNT);
    let events = admin.stores.events.read_stream(&namespace, &stream, from, direction, max).await?;
    Ok(Json(
        json!({ "namespace": namespace, "stream": stream, "events": events.iter().map(event_json).collect::<Vec<_>>() }),
    ))
}

/// An event for JSON readers: data as JSON when it is JSON, else base64-free raw text or bytes.
pub fn event_json(event: &RecordedEvent) -> Value {
    let metadata = metadata_from_json(&event.metadata);
    let data = serde_json::from_slice::<Value>(&event.data).unwrap_or_else(|_| json!({ "bytes": event.data }));
    json!({
        "id": event.id,
        "stream": event.stream,
        "namespace": event.namespace,
        "version": event.version,
        "position": event.position,
        "event_type": event.event_type,
        "data": data,
        "metadata": {
            "correlation_id": metadata.correlation_id,
            "causation_id": metadata.causation_id,
            "custom": metadata.custom,
        },
        "recorded_at": crate::store::format_time(event.recorded_at_ms),
    })
}
