//! A probe of the event store and kv for the host's integration tests: a thin JSON-over-HTTP
//! wrapper of the `faas:platform` imports. It routes on the path after the first `/probe/`, so
//! the same component can be deployed several times under different prefixes
//! (`/alpha/probe/append`, `/beta/probe/append`, ...).
//!
//! Every platform error is answered `200` with
//! `{"error": {"kind": "<variant in kebab-case>", "message": "...", "actual": <wrong-expected-version only>}}`
//! so tests can assert exact error kinds; a malformed probe request is `400` with kind `probe`.
//!
//! - `POST probe/append?stream=S&expected=any|no-stream|stream-exists|N`, body
//!   `[{"id","type","data","pad","correlation_id","causation_id","custom"}]` or `{"count": N}`
//!   → `{"outcome": {first_version,last_version,first_position,last_position,duplicate}}`.
//!   `pad` appends that many spaces to the serialized `data` (still valid JSON).
//! - `GET probe/stream?stream=S&from=N&dir=forward|backward&max=M` and `GET probe/all?from=N&max=M`
//!   → `{"events": [{id, stream, version, position, type, data, data_len, correlation_id,
//!   causation_id, custom, recorded_at}]}`.
//! - `POST probe/kv/set?key=K` (body: the value), `GET probe/kv/get?key=K`,
//!   `POST probe/kv/delete?key=K`, `GET probe/kv/list?prefix=P&after=A&limit=L`,
//!   `POST probe/kv/cas?key=K` body `{"expected": string|null, "new": string|null}`.

use faas_sdk::event_store::{
    self, AppendError, AppendOutcome, Direction, ExpectedVersion, NewEvent, ReadError, RecordedEvent,
};
use faas_sdk::http::Method;
use faas_sdk::kv::{self, KvError};
use faas_sdk::{Request, RequestExt, Response, StatusCode, http_handler, json};
use serde::Deserialize;
use serde_json::{Value, json as j};

#[http_handler]
fn handle(req: Request) -> Response {
    let path = req.uri().path();
    let Some((_, action)) = path.split_once("/probe/") else {
        return bad(StatusCode::NOT_FOUND, format!("no /probe/ in {path}"));
    };
    match (req.method().clone(), action) {
        (Method::POST, "append") => append(&req),
        (Method::GET, "stream") => read_stream(&req),
        (Method::GET, "all") => read_all(&req),
        (Method::POST, "kv/set") => kv_set(&req),
        (Method::GET, "kv/get") => kv_get(&req),
        (Method::POST, "kv/delete") => kv_delete(&req),
        (Method::GET, "kv/list") => kv_list(&req),
        (Method::POST, "kv/cas") => kv_cas(&req),
        (method, action) => bad(StatusCode::NOT_FOUND, format!("no probe action {method} {action}")),
    }
}

/// A malformed probe request (not a platform error).
fn bad(status: StatusCode, message: String) -> Response {
    json(status, &j!({ "error": { "kind": "probe", "message": message } }))
}

fn ok(value: Value) -> Response {
    json(StatusCode::OK, &value)
}

fn platform_error(kind: &str, message: &str) -> Response {
    ok(j!({ "error": { "kind": kind, "message": message } }))
}

/// A numeric query parameter, or `default` when absent.
fn number<T: std::str::FromStr>(req: &Request, name: &str, default: T) -> Result<T, Response> {
    match req.query_param(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| bad(StatusCode::BAD_REQUEST, format!("query parameter {name}={text} is not a number"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Event store

#[derive(Deserialize)]
#[serde(untagged)]
enum AppendBody {
    Events(Vec<ProbeEvent>),
    Count { count: usize },
}

#[derive(Deserialize)]
struct ProbeEvent {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    pad: usize,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    #[serde(default)]
    custom: Vec<(String, String)>,
}

impl ProbeEvent {
    fn into_new_event(self) -> NewEvent {
        let mut data = serde_json::to_vec(&self.data).unwrap_or_default();
        data.resize(data.len() + self.pad, b' ');
        let mut event = NewEvent::new(self.event_type.unwrap_or_else(|| "Probed".into()), data);
        if let Some(id) = self.id {
            event = event.with_id(id);
        }
        event.metadata.correlation_id = self.correlation_id;
        event.metadata.causation_id = self.causation_id;
        event.metadata.custom = self.custom;
        event
    }
}

fn parse_expected(text: &str) -> Option<ExpectedVersion> {
    match text {
        "any" => Some(ExpectedVersion::Any),
        "no-stream" => Some(ExpectedVersion::NoStream),
        "stream-exists" => Some(ExpectedVersion::StreamExists),
        n => n.parse().ok().map(ExpectedVersion::Exact),
    }
}

fn expected_json(expected: ExpectedVersion) -> Value {
    match expected {
        ExpectedVersion::Any => j!("any"),
        ExpectedVersion::NoStream => j!("no-stream"),
        ExpectedVersion::StreamExists => j!("stream-exists"),
        ExpectedVersion::Exact(version) => j!(version),
    }
}

fn append(req: &Request) -> Response {
    let stream = req.query_param("stream").unwrap_or_default();
    let expected_text = req.query_param("expected").unwrap_or_else(|| "any".into());
    let Some(expected) = parse_expected(&expected_text) else {
        return bad(StatusCode::BAD_REQUEST, format!("expected={expected_text} is not any|no-stream|stream-exists|N"));
    };
    let body: AppendBody = match req.json() {
        Ok(body) => body,
        Err(error) => return bad(StatusCode::BAD_REQUEST, format!("append body: {error}")),
    };
    let events: Vec<NewEvent> = match body {
        AppendBody::Count { count } => {
            (0..count).map(|i| NewEvent::new("Counted", j!({ "i": i }).to_string().into_bytes())).collect()
        }
        AppendBody::Events(events) => events.into_iter().map(ProbeEvent::into_new_event).collect(),
    };
    match event_store::append(&stream, expected, events) {
        Ok(outcome) => ok(j!({ "outcome": outcome_json(&outcome) })),
        Err(error) => append_error(&error),
    }
}

fn outcome_json(outcome: &AppendOutcome) -> Value {
    j!({
        "first_version": outcome.first_version,
        "last_version": outcome.last_version,
        "first_position": outcome.first_position,
        "last_position": outcome.last_position,
        "duplicate": outcome.duplicate,
    })
}

fn append_error(error: &AppendError) -> Response {
    match error {
        AppendError::WrongExpectedVersion { expected, actual } => ok(j!({
            "error": {
                "kind": "wrong-expected-version",
                "message": error.to_string(),
                "expected": expected_json(*expected),
                "actual": actual,
            }
        })),
        AppendError::IdempotencyConflict(message) => platform_error("idempotency-conflict", message),
        AppendError::InvalidRequest(message) => platform_error("invalid-request", message),
        AppendError::AccessDenied(message) => platform_error("access-denied", message),
        AppendError::Unavailable(message) => platform_error("unavailable", message),
        other => platform_error("unknown", &other.to_string()),
    }
}

fn read_error(error: &ReadError) -> Response {
    match error {
        ReadError::InvalidRequest(message) => platform_error("invalid-request", message),
        ReadError::AccessDenied(message) => platform_error("access-denied", message),
        ReadError::Unavailable(message) => platform_error("unavailable", message),
        other => platform_error("unknown", &other.to_string()),
    }
}

fn event_json(event: &RecordedEvent) -> Value {
    let data = serde_json::from_slice::<Value>(&event.data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&event.data).into_owned()));
    j!({
        "id": event.id,
        "stream": event.stream,
        "version": event.version,
        "position": event.position,
        "type": event.event_type,
        "data": data,
        "data_len": event.data.len(),
        "correlation_id": event.metadata.correlation_id,
        "causation_id": event.metadata.causation_id,
        "custom": event.metadata.custom,
        "recorded_at": event.recorded_at,
    })
}

fn events_response(result: Result<Vec<RecordedEvent>, ReadError>) -> Response {
    match result {
        Ok(events) => ok(j!({ "events": events.iter().map(event_json).collect::<Vec<_>>() })),
        Err(error) => read_error(&error),
    }
}

fn read_stream(req: &Request) -> Response {
    let stream = req.query_param("stream").unwrap_or_default();
    let direction = match req.query_param("dir").as_deref() {
        None | Some("forward") => Direction::Forward,
        Some("backward") => Direction::Backward,
        Some(other) => return bad(StatusCode::BAD_REQUEST, format!("dir={other} is not forward|backward")),
    };
    let (from, max) = match (number(req, "from", 0u64), number(req, "max", 100u32)) {
        (Ok(from), Ok(max)) => (from, max),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    events_response(event_store::read_stream(&stream, from, direction, max))
}

fn read_all(req: &Request) -> Response {
    let (from, max) = match (number(req, "from", 0u64), number(req, "max", 100u32)) {
        (Ok(from), Ok(max)) => (from, max),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    events_response(event_store::read_all(from, max))
}

// ---------------------------------------------------------------------------------------------
// kv

fn kv_error(error: &KvError) -> Response {
    match error {
        KvError::InvalidRequest(message) => platform_error("invalid-request", message),
        KvError::Unavailable(message) => platform_error("unavailable", message),
        other => platform_error("unknown", &other.to_string()),
    }
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

fn key(req: &Request) -> String {
    req.query_param("key").unwrap_or_default()
}

fn kv_set(req: &Request) -> Response {
    match kv::set(&key(req), req.bytes()) {
        Ok(()) => ok(j!({ "ok": true })),
        Err(error) => kv_error(&error),
    }
}

fn kv_get(req: &Request) -> Response {
    match kv::get(&key(req)) {
        Ok(value) => ok(j!({ "value": value.as_deref().map(text) })),
        Err(error) => kv_error(&error),
    }
}

fn kv_delete(req: &Request) -> Response {
    match kv::delete(&key(req)) {
        Ok(existed) => ok(j!({ "existed": existed })),
        Err(error) => kv_error(&error),
    }
}

fn kv_list(req: &Request) -> Response {
    let prefix = req.query_param("prefix").unwrap_or_default();
    let after = req.query_param("after");
    let limit = match number(req, "limit", 100u32) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    match kv::list(&prefix, after.as_deref(), limit) {
        Ok(entries) => {
            let entries: Vec<Value> = entries.iter().map(|(k, v)| j!({ "key": k, "value": text(v) })).collect();
            ok(j!({ "entries": entries }))
        }
        Err(error) => kv_error(&error),
    }
}

#[derive(Deserialize)]
struct Cas {
    expected: Option<String>,
    new: Option<String>,
}

fn kv_cas(req: &Request) -> Response {
    let cas: Cas = match req.json() {
        Ok(cas) => cas,
        Err(error) => return bad(StatusCode::BAD_REQUEST, format!("cas body: {error}")),
    };
    match kv::compare_and_swap(
        &key(req),
        cas.expected.as_deref().map(str::as_bytes),
        cas.new.as_deref().map(str::as_bytes),
    ) {
        Ok(swapped) => ok(j!({ "swapped": swapped })),
        Err(error) => kv_error(&error),
    }
}
