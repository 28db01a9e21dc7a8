//! `GET /v1/functions/{name}/logs`: the function's recent guest output, invocation records and
//! host warnings (`function_logs`), filtered; with `follow=true`, a server-sent event stream of
//! the same, then of every new record as it happens (`faas logs -f`).
//!
//! Each node keeps its own records. On a shared database the node asked gathers the others' too
//! (see `peers`): each for its own (`local=true`), merged in time order; every record names its
//! `node`. A node that does not answer is listed with its error under `nodes` (and as an
//! `unreachable` event when following).

use super::Admin;
use super::extract::{Path, Query};
use super::paging;
use super::peers::{self, Peer};
use crate::error::ApiError;
use crate::function_logs::{FunctionLogs, LogQuery, LogRecord};
use crate::model::sse::SseReader;
use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{BoxStream, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// `?since=10m&version=N&request_id=ID&limit=N&follow=true&local=true`.
#[derive(Deserialize, Serialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(default)]
    follow: bool,
    /// This node's records only (what nodes ask each other for).
    #[serde(default)]
    local: bool,
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
    let query = LogQuery { since_ms, version: params.version, request_id: params.request_id.clone(), after_seq: None };
    let logs = FunctionLogs::global();
    let node = admin.leases.node().to_owned();
    let peers = if params.local { Vec::new() } else { peers::peers(&admin).await };
    // Subscribed before the backlog is read, so nothing logged in between is missed (a record
    // in both is skipped by its sequence number).
    let live = params.follow.then(|| logs.follow());
    let recent = logs.recent(&name, &query, limit);
    let last_seq = recent.last().map_or(0, |r| r.seq);
    let mut records: Vec<Value> = recent.iter().map(|r| tagged(r, &node)).collect();
    let mut nodes = vec![json!({ "node": node, "ok": true })];
    let asked = LogParams { follow: false, local: true, ..params.clone() };
    let answers = futures::future::join_all(peers.iter().map(|peer| gather(&admin, peer, &name, &asked))).await;
    for (peer, answer) in peers.iter().zip(answers) {
        match answer {
            Ok(theirs) => {
                records.extend(theirs);
                nodes.push(json!({ "node": peer.id, "ok": true }));
            }
            Err(error) => nodes.push(json!({ "node": peer.id, "ok": false, "error": error })),
        }
    }
    if !peers.is_empty() {
        // Oldest first across nodes (each node's own are in order already: a stable sort).
        records.sort_by_key(|r| r["at_ms"].as_i64().unwrap_or_default());
        records.drain(..records.len().saturating_sub(limit));
    }
    let Some(live) = live else {
        return Ok(Json(json!({ "function": name, "node": node, "nodes": nodes, "logs": records })).into_response());
    };
    let backlog = futures::stream::iter(records).map(|record| Ok(log_event(&record)));
    let query = LogQuery { after_seq: Some(last_seq), ..query };
    let own = futures::stream::unfold((live, name.clone(), query, node), |(mut live, name, query, node)| async move {
        loop {
            match live.recv().await {
                Ok(record) if record.function == name && query.matches(&record) => {
                    let event = log_event(&tagged(&record, &node));
                    return Some((Ok(event), (live, name, query, node)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    let lagged = Event::default().event("lagged").data(json!({ "missed": missed }).to_string());
                    return Some((Ok(lagged), (live, name, query, node)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    // The others' new records: their own streams, from now on (their backlog is in ours).
    let from_now = LogParams { since: Some("0s".into()), limit: Some(1), follow: true, local: true, ..params };
    let mut streams: Vec<BoxStream<'static, Result<Event, Infallible>>> = vec![own.boxed()];
    streams
        .extend(peers.into_iter().map(|peer| follow_peer(admin.token.clone(), peer, name.clone(), from_now.clone())));
    let stream = backlog.chain(futures::stream::select_all(streams));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// `peer`'s own records of `function`; why not, as the error.
async fn gather(admin: &Admin, peer: &Peer, function: &str, params: &LogParams) -> Result<Vec<Value>, String> {
    let body = peers::get_json(admin, peer, &format!("/v1/functions/{function}/logs"), params).await?;
    Ok(body["logs"].as_array().cloned().unwrap_or_default())
}

/// `peer`'s live records as events; one `unreachable` event if its stream fails or ends.
fn follow_peer(
    token: Option<String>,
    peer: Peer,
    function: String,
    params: LogParams,
) -> BoxStream<'static, Result<Event, Infallible>> {
    let unreachable = |peer: &Peer, why: String| {
        Event::default().event("unreachable").data(json!({ "node": peer.id, "error": why }).to_string())
    };
    futures::stream::once(async move {
        let path = format!("/v1/functions/{function}/logs");
        let response = match peers::request(token.as_deref(), &peer, &path, &params).send().await {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                let why = format!("{} answered {}", peer.admin_url, response.status());
                return futures::stream::iter([Ok(unreachable(&peer, why))]).boxed();
            }
            Err(error) => {
                let why = format!("{}: {error}", peer.admin_url);
                return futures::stream::iter([Ok(unreachable(&peer, why))]).boxed();
            }
        };
        let events = futures::stream::unfold(
            (response.bytes_stream(), SseReader::default(), Vec::new(), Some(peer)),
            move |(mut body, mut reader, mut ready, mut peer)| async move {
                loop {
                    if let Some(event) = ready.pop() {
                        return Some((Ok(event), (body, reader, ready, peer)));
                    }
                    let current = peer.take()?;
                    match body.next().await {
                        Some(Ok(chunk)) => {
                            // Only records pass on; the peer's keep-alives and lag notes are its own.
                            let mut events: Vec<Event> = reader
                                .push(&chunk)
                                .into_iter()
                                .filter(|e| e.event.as_deref() == Some("log"))
                                .map(|e| Event::default().event("log").data(e.data))
                                .collect();
                            events.reverse();
                            ready = events;
                            peer = Some(current);
                        }
                        Some(Err(error)) => {
                            let why = format!("{}: the stream broke off: {error}", current.admin_url);
                            return Some((Ok(unreachable(&current, why)), (body, reader, ready, None)));
                        }
                        None => {
                            let why = format!("{} ended its stream", current.admin_url);
                            return Some((Ok(unreachable(&current, why)), (body, reader, ready, None)));
                        }
                    }
                }
            },
        );
        events.boxed()
    })
    .flatten()
    .boxed()
}

/// A record as the API shows it: with the node that kept it.
fn tagged(record: &LogRecord, node: &str) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    value["node"] = json!(node);
    value
}

fn log_event(record: &Value) -> Event {
    Event::default().event("log").data(record.to_string())
}
