//! `GET /v1/functions/{name}/logs`: the function's recent guest output, invocation records and
//! host warnings on this node (`function_logs`), filtered; with `follow=true`, a server-sent
//! event stream of the same, then of every new record as it happens (`faas logs -f`).

use super::Admin;
use super::extract::{Path, Query};
use super::paging;
use crate::error::ApiError;
use crate::function_logs::{FunctionLogs, LogQuery, LogRecord};
use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// `?since=10m&version=N&request_id=ID&limit=N&follow=true`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    since: Option<String>,
    version: Option<u32>,
    request_id: Option<String>,
    limit: Option<u32>,
    #[serde(default)]
    follow: bool,
}

pub async fn logs(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Query(params): Query<LogParams>,
) -> Result<Response, ApiError> {
    admin.registry.function(&name).await?;
    let limit = paging::limit(params.limit)? as usize;
    let since_ms = match params.since.as_deref() {
        None => None,
        Some(text) => {
            let ago = humantime::parse_duration(text).map_err(|e| {
                ApiError::bad_request("invalid_query", format!("since=`{text}`: {e} (a duration such as 90s, 10m, 2h)"))
            })?;
            Some(crate::store::now_ms() - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
        }
    };
    let query = LogQuery { since_ms, version: params.version, request_id: params.request_id, after_seq: None };
    let logs = FunctionLogs::global();
    // Subscribed before the backlog is read, so nothing logged in between is missed (a record
    // in both is skipped by its sequence number).
    let live = params.follow.then(|| logs.follow());
    let recent = logs.recent(&name, &query, limit);
    let node = admin.leases.node().to_owned();
    let Some(live) = live else {
        return Ok(Json(json!({ "function": name, "node": node, "logs": recent })).into_response());
    };
    let last_seq = recent.last().map_or(0, |r| r.seq);
    let backlog = futures::stream::iter(recent).map(|record| Ok(event(&record)));
    let query = LogQuery { after_seq: Some(last_seq), ..query };
    let live = futures::stream::unfold((live, name, query), |(mut live, name, query)| async move {
        loop {
            match live.recv().await {
                Ok(record) if record.function == name && query.matches(&record) => {
                    return Some((Ok(event(&record)), (live, name, query)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    let lagged = Event::default().event("lagged").data(json!({ "missed": missed }).to_string());
                    return Some((Ok(lagged), (live, name, query)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = backlog.chain(live).map(|event: Result<Event, std::convert::Infallible>| event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

fn event(record: &LogRecord) -> Event {
    Event::default().event("log").id(record.seq.to_string()).data(serde_json::to_string(record).unwrap_or_default())
}
