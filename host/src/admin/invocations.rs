//! Async invocations on the control plane: `POST /v1/functions/{name}/invocations` queues one,
//! `GET /v1/invocations[/{id}]` shows them, `POST /v1/invocations/{id}/replay` queues a dead
//! or failed one again. The shape of one invocation is `triggers::queue::report`'s.

use super::Admin;
use super::extract::{Path, Query};
use super::paging;
use super::workflows::parse_status;
use crate::error::ApiError;
use crate::store::invocations::InvocationStatus;
use crate::store::workflows::{Cursor, ListQuery};
use crate::triggers::queue::{QueuedRequest, accepted, read_body, report};
use axum::Json;
use axum::extract::{Request, State};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

/// Headers of a control-plane request never passed on: the admin token above all.
const NOT_FORWARDED: &[&str] = &["authorization", "cookie"];

/// `?path=&method=`: where the function sees the request (default: `POST` to its first route).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueParams {
    path: Option<String>,
    method: Option<String>,
}

/// 202 with the invocation and its `Location`; 200 when the idempotency key names an
/// invocation queued before (with `"duplicate": true`).
pub async fn enqueue(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Query(params): Query<EnqueueParams>,
    request: Request,
) -> Result<Response, ApiError> {
    let function = admin
        .registry
        .active(&name)
        .ok_or_else(|| ApiError::not_found(format!("function `{name}` has no active version")))?;
    let (mut parts, body) = request.into_parts();
    let body = read_body(body).await?;
    let path = match params.path {
        Some(path) => path,
        None => function.routes.first().map_or_else(|| "/".to_owned(), |route| route.example_path()),
    };
    if let Some(method) = params.method {
        parts.method = method
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_request", format!("`{method}` is not an HTTP method")))?;
    } else {
        parts.method = http::Method::POST;
    }
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let queued = QueuedRequest::from_parts(&parts, path, body, &request_id, NOT_FORWARDED);
    let (record, created) = admin.queue.enqueue(&function, queued).await?;
    Ok(accepted(&record, created, &format!("/v1/invocations/{}", record.id)))
}

/// `?function=&status=&limit=&after=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    function: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// A page of invocations, newest first: `{"invocations": [...], "next": <cursor or null>}`.
pub async fn list(
    State(admin): State<Arc<Admin>>,
    Query(params): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all = InvocationStatus::ALL.map(InvocationStatus::as_str);
    let after = match params.after.as_deref() {
        Some(text) => Some(Cursor::decode(text).ok_or_else(|| paging::invalid_cursor(text))?),
        None => None,
    };
    let query = ListQuery {
        status: parse_status(params.status.as_deref(), InvocationStatus::parse, &all)?,
        namespace: params.function,
        idempotency_key: None,
        after,
        limit: paging::limit(params.limit)?,
    };
    let page = admin.queue.store().invocations(&query).await?;
    let invocations: Vec<serde_json::Value> = page.items.iter().map(report).collect();
    Ok(Json(serde_json::json!({ "invocations": invocations, "next": page.next.map(|c| c.encode()) })))
}

pub async fn get(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(report(&admin.queue.get(&id).await?)))
}

pub async fn replay(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let record = admin.queue.replay(&id).await?;
    Ok(accepted(&record, true, &format!("/v1/invocations/{}", record.id)))
}
