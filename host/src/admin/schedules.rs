//! `GET /v1/functions/{name}/schedule`: a function's schedules, their next planned ticks and
//! their recent runs (planned time, outcome, attempts, node, duration, error).

use super::Admin;
use super::extract::Path;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use std::sync::Arc;

pub async fn get(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let function = admin
        .registry
        .active(&name)
        .ok_or_else(|| ApiError::not_found(format!("function `{name}` has no active version")))?;
    Ok(Json(admin.scheduler.report(&function).await?))
}
