//! `/v1/functions/{name}/subscriptions`, their reset (a projection rebuild), parked-event
//! replay, and reading streams.

use super::Admin;
use super::extract::{Path, Query};
use super::paging;
use crate::capabilities::event_store::metadata_from_json;
use crate::error::ApiError;
use crate::store::events::{Direction, RecordedEvent};
use crate::triggers::subscriptions::{ReplayError, ResetRequest, ResetTo};
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// `?limit=&after=` page the parked events (by id); `next` is the `after` of the next page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkedParams {
    limit: Option<u32>,
    after: Option<i64>,
}

pub async fn subscriptions(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Query(params): Query<ParkedParams>,
) -> Result<impl IntoResponse, ApiError> {
    let function =
        admin.registry.active(&name).ok_or_else(|| ApiError::not_found(format!("function `{name}` not found")))?;
    let limit = paging::limit(params.limit)?;
    let statuses = admin.subscriptions.status(&function).await?;
    let mut parked = admin.stores.subscriptions.parked(&name, params.after.unwrap_or(0), limit + 1).await?;
    let more = parked.len() > limit as usize;
    parked.truncate(limit as usize);
    let next = if more { parked.last().map(|p| p.id) } else { None };
    Ok(Json(json!({ "function": name, "subscriptions": statuses, "parked": parked, "next": next })))
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

/// The body of `POST /v1/functions/{name}/subscriptions/reset`: exactly one of `to_position`
/// and `to_start`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// Which subscription (its stream pattern); may be left out when there is only one.
    subscription: Option<String>,
    to_position: Option<u64>,
    #[serde(default)]
    to_start: bool,
    #[serde(default)]
    clear_parked: bool,
    #[serde(default)]
    clear_kv: bool,
}

pub async fn reset(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    super::extract::Json(body): super::extract::Json<ResetBody>,
) -> Result<impl IntoResponse, ApiError> {
    let function =
        admin.registry.active(&name).ok_or_else(|| ApiError::not_found(format!("function `{name}` not found")))?;
    let to = match (body.to_position, body.to_start) {
        (Some(position), false) => ResetTo::Position(position),
        (None, true) => ResetTo::Start,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_reset",
                "give exactly one of `to_position` (the checkpoint: delivery goes on after it) and `to_start: true`",
            ));
        }
    };
    let request =
        ResetRequest { subscription: body.subscription, to, clear_parked: body.clear_parked, clear_kv: body.clear_kv };
    Ok(Json(admin.subscriptions.reset(&function, &request).await?))
}

/// `?from=<version>|end&max=&backward=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    #[serde(default)]
    from: Option<String>,
    max: Option<u32>,
    #[serde(default)]
    backward: bool,
}

pub async fn read_stream(
    State(admin): State<Arc<Admin>>,
    Path((namespace, stream)): Path<(String, String)>,
    Query(params): Query<ReadParams>,
) -> Result<impl IntoResponse, ApiError> {
    crate::model::names::validate_address(&namespace, &stream)
        .map_err(|m| ApiError::bad_request("invalid_request", m))?;
    let direction = if params.backward { Direction::Backward } else { Direction::Forward };
    // A version, `start`, or `end` (the last one; backward reads start there by default).
    let from = match params.from.as_deref() {
        None if params.backward => u64::MAX,
        None | Some("start") => 0,
        Some("end") => u64::MAX,
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request("invalid_query", format!("from=`{text}`: use a version number, `start` or `end`"))
        })?,
    };
    let max = match params.max {
        None => 100,
        Some(n @ 1..=crate::capabilities::MAX_READ_COUNT) => n,
        Some(n) => {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("max {n} is not within 1-{}", crate::capabilities::MAX_READ_COUNT),
            ));
        }
    };
    let mut events = admin.stores.events.read_stream(&namespace, &stream, from, direction, max + 1).await?;
    let more = events.len() > max as usize;
    events.truncate(max as usize);
    // Where the next page starts (pass it as `from`); null when this page reached the end.
    let next = if more {
        events.last().and_then(|e| if params.backward { e.version.checked_sub(1) } else { Some(e.version + 1) })
    } else {
        None
    };
    Ok(Json(json!({
        "namespace": namespace,
        "stream": stream,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "next": next,
    })))
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

/// `GET /v1/namespaces`: every namespace holding a stream, with its number of streams.
pub async fn namespaces(State(admin): State<Arc<Admin>>) -> Result<impl IntoResponse, ApiError> {
    let namespaces: Vec<Value> = admin
        .stores
        .events
        .namespaces()
        .await?
        .into_iter()
        .map(|(namespace, streams)| json!({ "namespace": namespace, "streams": streams }))
        .collect();
    Ok(Json(json!({ "namespaces": namespaces })))
}

/// `?limit=&after=<stream name>` page the streams of a namespace (by name).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsParams {
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /v1/namespaces/{namespace}/streams`: its streams by name, each with its version.
pub async fn streams(
    State(admin): State<Arc<Admin>>,
    Path(namespace): Path<String>,
    Query(params): Query<StreamsParams>,
) -> Result<impl IntoResponse, ApiError> {
    crate::model::names::validate_namespace(&namespace).map_err(|m| ApiError::bad_request("invalid_request", m))?;
    let limit = paging::limit(params.limit)?;
    let after = params.after.unwrap_or_default();
    let mut streams = admin.stores.events.streams(&namespace, &after, limit + 1).await?;
    let more = streams.len() > limit as usize;
    streams.truncate(limit as usize);
    let next = if more { streams.last().map(|(stream, _)| stream.clone()) } else { None };
    let streams: Vec<Value> =
        streams.into_iter().map(|(stream, version)| json!({ "stream": stream, "version": version })).collect();
    Ok(Json(json!({ "namespace": namespace, "streams": streams, "next": next })))
}
