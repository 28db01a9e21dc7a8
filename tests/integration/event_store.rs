//! The event store and kv imports (`faas:platform/event-store`, `faas:platform/kv`) end to end:
//! the `es-probe` component wraps them in JSON over HTTP and returns every platform error as a
//! value (`{"error": {"kind": "<variant>", ...}}`), so these tests assert exact outcomes, error
//! kinds, limits, idempotency and namespace isolation on both backends.

use crate::backend_tests;
use crate::support::{Backend, Options, Server, components, spec};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

backend_tests!(
    expected_versions,
    versions_and_positions,
    reading_streams,
    concurrent_appends,
    idempotent_appends,
    duplicate_ids_in_one_batch,
    append_limits,
    namespaces,
    kv_operations,
    kv_compare_and_swap,
    kv_non_ascii_prefix,
);

/// The largest event (data + metadata) the host accepts.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// "The end": reading backward from here starts at a stream's last event.
const END: u64 = u64::MAX;

// ---------------------------------------------------------------------------------------------
// The probe

/// One deployment of `es-probe`, reached under `/{name}/probe/...`.
struct Probe<'a> {
    server: &'a Server,
    name: String,
}

/// Deploys `es-probe` as function `name` on `/{name}/...`, granted reads of `read_namespaces`.
async fn deploy_probe<'a>(server: &'a Server, name: &str, read_namespaces: &[&str]) -> Probe<'a> {
    let mut spec = spec(&[&format!("/{name}/...")], json!({}));
    if !read_namespaces.is_empty() {
        spec["grants"] = json!({ "read_namespaces": read_namespaces });
    }
    server.deploy_ok(name, components().bytes("es-probe"), spec).await;
    Probe { server, name: name.to_owned() }
}

/// The error kind of a probe answer, or `None` if it succeeded.
fn kind(body: &Value) -> Option<&str> {
    body.get("error").map(|e| e["kind"].as_str().unwrap_or_else(|| panic!("error without kind: {body}")))
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

impl Probe<'_> {
    /// One probe call; asserts a 200 JSON answer (platform errors are 200 too).
    async fn call(&self, method: Method, action: &str, query: &[(&str, String)], body: Option<Vec<u8>>) -> Value {
        let url = format!("{}/{}/probe/{action}", self.server.data, self.name);
        let mut request = self.server.http.request(method, url).query(query);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("probe request");
        let status = response.status();
        let text = response.text().await.expect("probe answer");
        assert_eq!(status, 200, "{} {action} {query:?}: {text}", self.name);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("probe answer is not JSON ({e}): {text}"))
    }

    /// The whole answer of an append: `{"outcome": ...}` or `{"error": ...}`.
    async fn append(&self, stream: &str, expected: &str, events: Value) -> Value {
        let query = [("stream", stream.to_owned()), ("expected", expected.to_owned())];
        self.call(Method::POST, "append", &query, Some(events.to_string().into_bytes())).await
    }

    /// An append that must succeed; returns the outcome.
    async fn append_ok(&self, stream: &str, expected: &str, events: Value) -> Value {
        let body = self.append(stream, expected, events).await;
        assert_eq!(kind(&body), None, "append to {stream} ({expected}) failed: {body}");
        body["outcome"].clone()
    }

    /// An append that must fail; returns the error object.
    async fn append_err(&self, stream: &str, expected: &str, events: Value) -> Value {
        let body = self.append(stream, expected, events).await;
        assert!(kind(&body).is_some(), "append to {stream} ({expected}) should fail: {body}");
        body["error"].clone()
    }

    /// The whole answer of a stream read.
    async fn read(&self, stream: &str, from: u64, dir: &str, max: u32) -> Value {
        let query = [
            ("stream", stream.to_owned()),
            ("from", from.to_string()),
            ("dir", dir.to_owned()),
            ("max", max.to_string()),
        ];
        self.call(Method::GET, "stream", &query, None).await
    }

    /// A stream read that must succeed.
    async fn events(&self, stream: &str, from: u64, dir: &str, max: u32) -> Vec<Value> {
        let body = self.read(stream, from, dir, max).await;
        assert_eq!(kind(&body), None, "reading {stream} failed: {body}");
        body["events"].as_array().expect("events").clone()
    }

    /// A read-all that must succeed.
    async fn all(&self, from: u64, max: u32) -> Vec<Value> {
        let body = self.call(Method::GET, "all", &[("from", from.to_string()), ("max", max.to_string())], None).await;
        assert_eq!(kind(&body), None, "read-all failed: {body}");
        body["events"].as_array().expect("events").clone()
    }

    async fn kv_set(&self, key: &str, value: &str) -> Value {
        self.call(Method::POST, "kv/set", &[("key", key.to_owned())], Some(value.as_bytes().to_vec())).await
    }

    async fn kv_set_ok(&self, key: &str, value: &str) {
        let body = self.kv_set(key, value).await;
        assert_eq!(body, json!({"ok": true}), "kv set {key}");
    }

    async fn kv_get(&self, key: &str) -> Value {
        self.call(Method::GET, "kv/get", &[("key", key.to_owned())], None).await
    }

    /// The value of `key`, asserting the get succeeded.
    async fn kv_value(&self, key: &str) -> Option<String> {
        let body = self.kv_get(key).await;
        assert_eq!(kind(&body), None, "kv get {key}: {body}");
        body["value"].as_str().map(str::to_owned)
    }

    async fn kv_delete(&self, key: &str) -> bool {
        let body = self.call(Method::POST, "kv/delete", &[("key", key.to_owned())], None).await;
        body["existed"].as_bool().unwrap_or_else(|| panic!("kv delete {key}: {body}"))
    }

    /// `list` as `(key, value)` pairs, asserting it succeeded.
    async fn kv_list(&self, prefix: &str, after: Option<&str>, limit: u32) -> Vec<(String, String)> {
        let mut query = vec![("prefix", prefix.to_owned()), ("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let body = self.call(Method::GET, "kv/list", &query, None).await;
        assert_eq!(kind(&body), None, "kv list {query:?}: {body}");
        body["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| (e["key"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
            .collect()
    }

    async fn kv_cas(&self, key: &str, expected: Option<&str>, new: Option<&str>) -> bool {
        let body = json!({ "expected": expected, "new": new }).to_string().into_bytes();
        let answer = self.call(Method::POST, "kv/cas", &[("key", key.to_owned())], Some(body)).await;
        answer["swapped"].as_bool().unwrap_or_else(|| panic!("kv cas {key} {expected:?}→{new:?}: {answer}"))
    }
}

/// `[{"id": id}]` for each id.
fn ids(ids: &[&str]) -> Value {
    Value::Array(ids.iter().map(|id| json!({ "id": id })).collect())
}

/// A field of every event, as JSON values.
fn field(events: &[Value], name: &str) -> Vec<Value> {
    events.iter().map(|e| e[name].clone()).collect()
}

/// `outcome` as `(first_version, last_version, first_position, last_position, duplicate)`.
fn outcome(o: &Value) -> (u64, u64, u64, u64, bool) {
    let n = |k: &str| o[k].as_u64().unwrap_or_else(|| panic!("no {k} in {o}"));
    (n("first_version"), n("last_version"), n("first_position"), n("last_position"), o["duplicate"].as_bool().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Expected versions

async fn expected_versions(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    // no-stream on a new stream appends version 0 at position 1.
    assert_eq!(outcome(&p.append_ok("s1", "no-stream", ids(&["e1"])).await), (0, 0, 1, 1, false));
    // no-stream again: the stream is at version 0.
    let err = p.append_err("s1", "no-stream", ids(&["e2"])).await;
    assert_eq!(
        (err["kind"].clone(), err["expected"].clone(), err["actual"].clone()),
        (json!("wrong-expected-version"), json!("no-stream"), json!(0)),
        "{err}"
    );

    // exact(N): right, then stale, then ahead of the stream.
    assert_eq!(outcome(&p.append_ok("s1", "0", ids(&["e2"])).await), (1, 1, 2, 2, false));
    let err = p.append_err("s1", "0", ids(&["e3"])).await;
    assert_eq!(
        (err["kind"].clone(), err["expected"].clone(), err["actual"].clone()),
        (json!("wrong-expected-version"), json!(0), json!(1))
    );
    let err = p.append_err("s1", "5", ids(&["e3"])).await;
    assert_eq!(
        (err["kind"].clone(), err["expected"].clone(), err["actual"].clone()),
        (json!("wrong-expected-version"), json!(5), json!(1))
    );

    // stream-exists and exact(0) on a missing stream: actual is none.
    let err = p.append_err("missing", "stream-exists", ids(&["m1"])).await;
    assert_eq!(
        (err["kind"].clone(), err["expected"].clone(), err["actual"].clone()),
        (json!("wrong-expected-version"), json!("stream-exists"), Value::Null)
    );
    let err = p.append_err("missing", "0", ids(&["m1"])).await;
    assert_eq!((err["kind"].clone(), err["actual"].clone()), (json!("wrong-expected-version"), Value::Null));

    // stream-exists on an existing stream, any on existing and new streams.
    assert_eq!(outcome(&p.append_ok("s1", "stream-exists", ids(&["e3"])).await), (2, 2, 3, 3, false));
    assert_eq!(outcome(&p.append_ok("s1", "any", ids(&["e4", "e5"])).await), (3, 4, 4, 5, false));
    assert_eq!(outcome(&p.append_ok("s2", "any", ids(&["f1"])).await), (0, 0, 6, 6, false));
    assert_eq!(outcome(&p.append_ok("s2", "0", ids(&["f2"])).await), (1, 1, 7, 7, false));

    // The failed appends left nothing behind.
    let s1 = p.events("s1", 0, "forward", 100).await;
    assert_eq!(field(&s1, "id"), ids_json(&["e1", "e2", "e3", "e4", "e5"]));
    assert_eq!(field(&s1, "version"), json_nums(0..5));
    assert!(p.events("missing", 0, "forward", 100).await.is_empty());
    let all = p.all(0, 100).await;
    assert_eq!(field(&all, "position"), json_nums(1..8));
    assert_eq!(field(&all, "id"), ids_json(&["e1", "e2", "e3", "e4", "e5", "f1", "f2"]));
}

fn ids_json(ids: &[&str]) -> Vec<Value> {
    ids.iter().map(|id| json!(id)).collect()
}

fn json_nums(range: std::ops::Range<u64>) -> Vec<Value> {
    range.map(|n| json!(n)).collect()
}

// ---------------------------------------------------------------------------------------------
// Versions, positions, reads

async fn versions_and_positions(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    // Interleaved appends to three streams: (stream, events).
    let plan = [("a", 3u64), ("b", 2), ("a", 1), ("c", 4), ("b", 1), ("a", 2)];
    let mut next_position = 1;
    let mut next_version = std::collections::HashMap::new();
    for (stream, count) in plan {
        let o = p.append_ok(stream, "any", json!({ "count": count })).await;
        let version: &mut u64 = next_version.entry(stream).or_default();
        assert_eq!(
            outcome(&o),
            (*version, *version + count - 1, next_position, next_position + count - 1, false),
            "{stream}"
        );
        *version += count;
        next_position += count;
    }

    // Versions are gap-free per stream, and each event's position is the one handed out.
    for (stream, count) in [("a", 6u64), ("b", 3), ("c", 4)] {
        let events = p.events(stream, 0, "forward", 100).await;
        assert_eq!(field(&events, "version"), json_nums(0..count), "{stream}");
        assert!(events.iter().all(|e| e["stream"] == stream && e["type"] == "Counted"), "{events:?}");
        let positions: Vec<u64> = events.iter().map(|e| e["position"].as_u64().unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{stream}: {positions:?}");
    }

    // Positions are 1.. without gaps across streams, in append order.
    let all = p.all(0, 1000).await;
    assert_eq!(field(&all, "position"), json_nums(1..14));
    let streams: Vec<&str> = all.iter().map(|e| e["stream"].as_str().unwrap()).collect();
    assert_eq!(streams, ["a", "a", "a", "b", "b", "a", "c", "c", "c", "c", "b", "a", "a"]);
    let versions: Vec<u64> = all.iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [0, 1, 2, 0, 1, 3, 0, 1, 2, 3, 2, 4, 5]);

    // read-all is inclusive of `from` and honours max.
    assert_eq!(field(&p.all(5, 3).await, "position"), json_nums(5..8));
    assert_eq!(field(&p.all(13, 10).await, "position"), json_nums(13..14));
    assert!(p.all(14, 10).await.is_empty());
    assert!(p.all(1, 0).await.is_empty());
}

async fn reading_streams(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    let before = now_ms();
    let events = json!([
        {"id": "r0", "type": "Opened", "data": {"owner": "ann", "n": [1, 2]}, "correlation_id": "corr-1"},
        {"id": "r1", "type": "Deposited", "data": 42, "correlation_id": "corr-1", "causation_id": "r0",
         "custom": [["tenant", "t1"], ["trace", "x"]]},
        {"id": "r2", "type": "Noted", "data": "text"},
        {"id": "r3", "type": "Noted"},
        {"id": "r4", "type": "Closed", "data": {}},
    ]);
    assert_eq!(outcome(&p.append_ok("acct-1", "no-stream", events).await), (0, 4, 1, 5, false));
    let after = now_ms();

    // Forward from 0: everything, with content and metadata as appended.
    let forward = p.events("acct-1", 0, "forward", 100).await;
    assert_eq!(field(&forward, "version"), json_nums(0..5));
    assert_eq!(field(&forward, "position"), json_nums(1..6));
    let first = &forward[0];
    assert_eq!(first["id"], "r0");
    assert_eq!(first["stream"], "acct-1");
    assert_eq!(first["type"], "Opened");
    assert_eq!(first["data"], json!({"owner": "ann", "n": [1, 2]}));
    assert_eq!(first["correlation_id"], "corr-1");
    assert_eq!(first["causation_id"], Value::Null);
    let recorded_at = first["recorded_at"].as_u64().unwrap();
    assert!((before..=after).contains(&recorded_at), "recorded_at {recorded_at} not in {before}..={after}");
    let second = &forward[1];
    assert_eq!(
        (second["data"].clone(), second["causation_id"].clone(), second["custom"].clone()),
        (json!(42), json!("r0"), json!([["tenant", "t1"], ["trace", "x"]]))
    );
    assert_eq!(forward[2]["data"], "text");
    assert_eq!(forward[3]["data"], Value::Null);
    assert_eq!(field(&forward, "type"), ids_json(&["Opened", "Deposited", "Noted", "Noted", "Closed"]));

    // Forward from a version, with max.
    assert_eq!(field(&p.events("acct-1", 2, "forward", 2).await, "version"), json_nums(2..4));
    assert_eq!(field(&p.events("acct-1", 3, "forward", 100).await, "version"), json_nums(3..5));
    assert!(p.events("acct-1", 5, "forward", 100).await.is_empty());
    assert!(p.events("acct-1", END, "forward", 100).await.is_empty());
    assert!(p.events("acct-1", 0, "forward", 0).await.is_empty());

    // Backward from the end starts at the last event; from a version, includes it.
    let backward = p.events("acct-1", END, "backward", 100).await;
    assert_eq!(field(&backward, "version"), [json!(4), json!(3), json!(2), json!(1), json!(0)]);
    assert_eq!(field(&backward, "id"), ids_json(&["r4", "r3", "r2", "r1", "r0"]));
    assert_eq!(field(&p.events("acct-1", END, "backward", 1).await, "id"), ids_json(&["r4"]));
    assert_eq!(field(&p.events("acct-1", END, "backward", 2).await, "version"), [json!(4), json!(3)]);
    assert_eq!(field(&p.events("acct-1", 1, "backward", 100).await, "version"), [json!(1), json!(0)]);
    assert_eq!(field(&p.events("acct-1", 3, "backward", 2).await, "version"), [json!(3), json!(2)]);
    assert_eq!(field(&p.events("acct-1", 99, "backward", 100).await, "version"), field(&backward, "version"));

    // A missing stream reads as empty, in both directions; a malformed name is invalid-request.
    assert!(p.events("nope", 0, "forward", 10).await.is_empty());
    assert!(p.events("nope", END, "backward", 10).await.is_empty());
    for bad in ["bad name", "", "a/b/c"] {
        let body = p.read(bad, 0, "forward", 10).await;
        assert_eq!(kind(&body), Some("invalid-request"), "read {bad:?}: {body}");
    }
}

async fn concurrent_appends(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    // 24 concurrent appends of 5 events each over 4 streams.
    let appends = (0..24).map(|i| {
        let p = &p;
        async move { p.append_ok(&format!("c{}", i % 4), "any", json!({ "count": 5 })).await }
    });
    let outcomes: Vec<_> = futures::future::join_all(appends).await;
    let mut ranges: Vec<(u64, u64)> = outcomes
        .iter()
        .map(|o| {
            let (fv, lv, fp, lp, dup) = outcome(o);
            assert_eq!((lv - fv, lp - fp, dup), (4, 4, false), "{o}");
            (fp, lp)
        })
        .collect();
    ranges.sort_unstable();
    // The batches tile positions 1..=120 without gaps or overlaps.
    assert_eq!(ranges.first().unwrap().0, 1);
    assert!(ranges.windows(2).all(|w| w[1].0 == w[0].1 + 1), "{ranges:?}");
    assert_eq!(ranges.last().unwrap().1, 120);

    let all = p.all(0, 1000).await;
    assert_eq!(field(&all, "position"), json_nums(1..121));
    for stream in ["c0", "c1", "c2", "c3"] {
        let events = p.events(stream, 0, "forward", 1000).await;
        assert_eq!(field(&events, "version"), json_nums(0..30), "{stream}");
    }

    // Optimistic concurrency: of 8 racing appends expecting version 29 of c0, exactly one wins.
    let racers = (0..8).map(|i| {
        let p = &p;
        async move { p.append("c0", "29", ids(&[&format!("race-{i}")])).await }
    });
    let answers: Vec<Value> = futures::future::join_all(racers).await;
    let winners: Vec<_> = answers.iter().filter(|a| kind(a).is_none()).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(outcome(&winners[0]["outcome"]), (30, 30, 121, 121, false));
    for loser in answers.iter().filter(|a| kind(a).is_some()) {
        assert_eq!(
            (loser["error"]["kind"].clone(), loser["error"]["actual"].clone()),
            (json!("wrong-expected-version"), json!(30)),
            "{loser}"
        );
    }
    assert_eq!(p.events("c0", 0, "forward", 1000).await.len(), 31);
}

// ---------------------------------------------------------------------------------------------
// Idempotency

async fn idempotent_appends(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    let batch = json!([
        {"id": "i1", "type": "T", "data": {"n": 1}, "correlation_id": "c"},
        {"id": "i2", "type": "T", "data": {"n": 2}},
    ]);
    assert_eq!(outcome(&p.append_ok("s", "no-stream", batch.clone()).await), (0, 1, 1, 2, false));
    // Something else in between, so "original positions" differ from "next positions".
    assert_eq!(outcome(&p.append_ok("other", "any", json!({"count": 1})).await), (0, 0, 3, 3, false));

    // The same batch again (a retry, with the same expectation): the original versions and
    // positions, marked duplicate, whatever the expected version.
    assert_eq!(outcome(&p.append_ok("s", "no-stream", batch.clone()).await), (0, 1, 1, 2, true));
    assert_eq!(outcome(&p.append_ok("s", "any", batch.clone()).await), (0, 1, 1, 2, true));
    assert_eq!(outcome(&p.append_ok("s", "1", batch.clone()).await), (0, 1, 1, 2, true));
    // A fully recorded single event of that batch is a duplicate too.
    let second = json!([{"id": "i2", "type": "T", "data": {"n": 2}}]);
    assert_eq!(outcome(&p.append_ok("s", "any", second).await), (1, 1, 2, 2, true));

    // Same id, different content: data, type or metadata.
    for conflicting in [
        json!([{"id": "i1", "type": "T", "data": {"n": 9}, "correlation_id": "c"}]),
        json!([{"id": "i1", "type": "U", "data": {"n": 1}, "correlation_id": "c"}]),
        json!([{"id": "i1", "type": "T", "data": {"n": 1}, "correlation_id": "other"}]),
        json!([{"id": "i1", "type": "T", "data": {"n": 1}}]),
    ] {
        let err = p.append_err("s", "any", conflicting.clone()).await;
        assert_eq!(err["kind"], "idempotency-conflict", "{conflicting}: {err}");
        assert!(err["message"].as_str().unwrap().contains("i1"), "the message names the id: {err}");
    }
    // A batch only partly recorded: a new id after a recorded one, or before it.
    for partial in [
        json!([{"id": "i1", "type": "T", "data": {"n": 1}, "correlation_id": "c"}, {"id": "i3", "type": "T"}]),
        json!([{"id": "i0", "type": "T"}, {"id": "i1", "type": "T", "data": {"n": 1}, "correlation_id": "c"}]),
    ] {
        let err = p.append_err("s", "any", partial.clone()).await;
        assert_eq!(err["kind"], "idempotency-conflict", "{partial}: {err}");
    }

    // Nothing new was appended by any of that.
    let s = p.events("s", 0, "forward", 100).await;
    assert_eq!(field(&s, "id"), ids_json(&["i1", "i2"]));
    assert_eq!(field(&s, "data"), [json!({"n": 1}), json!({"n": 2})]);
    assert_eq!(field(&p.all(0, 100).await, "position"), json_nums(1..4));

    // Ids are per stream: the same id in another stream is a new event.
    assert_eq!(outcome(&p.append_ok("t", "no-stream", ids(&["i1"])).await), (0, 0, 4, 4, false));
    // And the next real append to `s` continues where it was.
    assert_eq!(outcome(&p.append_ok("s", "1", ids(&["i3"])).await), (2, 2, 5, 5, false));
}

async fn duplicate_ids_in_one_batch(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    // The same id twice in one new batch is a malformed request, not a store failure (which
    // would tell the caller to retry the very same batch forever).
    for batch in [ids(&["d1", "d1"]), ids(&["d1", "d2", "d1"])] {
        let err = p.append_err("s", "any", batch.clone()).await;
        let logged: Vec<String> = server.logs().lines().filter(|l| l.contains("failure")).map(str::to_owned).collect();
        assert!(
            err["kind"] == "invalid-request" || err["kind"] == "idempotency-conflict",
            "expected invalid-request (or idempotency-conflict) for {batch}, got {err}; host log: {logged:#?}"
        );
    }
    assert!(p.events("s", 0, "forward", 100).await.is_empty());
    assert!(p.all(0, 100).await.is_empty());
    // The rejected batches used up no positions.
    assert_eq!(outcome(&p.append_ok("s", "no-stream", ids(&["d1"])).await), (0, 0, 1, 1, false));
}

// ---------------------------------------------------------------------------------------------
// Limits and malformed requests

async fn append_limits(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    // data `null` is 4 bytes: padded to exactly 1 MiB is accepted, one byte more is not.
    let exact = json!([{"id": "big-ok", "data": null, "pad": MAX_EVENT_BYTES - 4}]);
    assert_eq!(outcome(&p.append_ok("big", "any", exact).await), (0, 0, 1, 1, false));
    let events = p.events("big", 0, "forward", 1).await;
    assert_eq!(events[0]["data_len"], MAX_EVENT_BYTES);
    let over = json!([{"id": "big-over", "data": null, "pad": MAX_EVENT_BYTES - 3}]);
    let err = p.append_err("big", "any", over).await;
    assert_eq!(err["kind"], "invalid-request", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains(&MAX_EVENT_BYTES.to_string()), "the message names the limit: {message}");
    // Metadata counts towards the size.
    let with_metadata = json!([{"id": "big-meta", "data": null, "pad": MAX_EVENT_BYTES - 5, "correlation_id": "xy"}]);
    let err = p.append_err("big", "any", with_metadata).await;
    assert_eq!(err["kind"], "invalid-request", "{err}");
    // One oversized event rejects the whole batch.
    let mixed = json!([{"id": "small"}, {"id": "huge", "pad": MAX_EVENT_BYTES}]);
    assert_eq!(p.append_err("big", "any", mixed).await["kind"], "invalid-request");

    // Events per append: 1001 rejected (naming the limit), 1000 accepted.
    let err = p.append_err("many", "any", json!({"count": 1001})).await;
    assert_eq!(err["kind"], "invalid-request", "{err}");
    assert!(err["message"].as_str().unwrap().contains("1000"), "the message names the limit: {err}");
    assert_eq!(outcome(&p.append_ok("many", "no-stream", json!({"count": 1000})).await), (0, 999, 2, 1001, false));
    assert_eq!(p.events("many", 0, "forward", 2000).await.len(), 1000);

    // An empty batch.
    let err = p.append_err("empty", "any", json!([])).await;
    assert_eq!(err["kind"], "invalid-request", "{err}");

    // Malformed stream names: appends and reads.
    let long = "x".repeat(201);
    for bad in ["bad name", "", long.as_str(), "ü", "a#b", "a/b/c"] {
        let err = p.append_err(bad, "any", ids(&["n1"])).await;
        assert_eq!(err["kind"], "invalid-request", "append to {bad:?}: {err}");
    }
    let longest = "x".repeat(200);
    assert_eq!(outcome(&p.append_ok(&longest, "any", ids(&["n1"])).await), (0, 0, 1002, 1002, false));
    assert_eq!(outcome(&p.append_ok("A-z_0.9:@", "any", ids(&["n2"])).await), (0, 0, 1003, 1003, false));

    // Malformed events: empty id, empty type, overlong id.
    let err = p.append_err("ev", "any", json!([{"id": ""}])).await;
    assert_eq!(err["kind"], "invalid-request", "{err}");
    let err = p.append_err("ev", "any", json!([{"id": "e", "type": ""}])).await;
    assert_eq!(err["kind"], "invalid-request", "{err}");
    let err = p.append_err("ev", "any", json!([{"id": "i".repeat(129)}])).await;
    assert_eq!(err["kind"], "invalid-request", "{err}");

    // Only the accepted appends are in the log: big-ok, 1000 events, the two names.
    let all = p.all(0, 2000).await;
    assert_eq!(all.len(), 1003);
    assert_eq!(field(&all, "position"), json_nums(1..1004));
    assert!(p.events("ev", 0, "forward", 10).await.is_empty());
    assert!(p.events("empty", 0, "forward", 10).await.is_empty());
}

/// `faas serve --max-event-size/--max-events-per-append` replace the defaults, and the refusals
/// name the configured values. (Checked before the store is touched, so one backend suffices.)
#[tokio::test(flavor = "multi_thread")]
async fn append_limits_are_configurable() {
    let extra_args = ["--max-event-size", "1KiB", "--max-events-per-append", "10"].map(String::from).to_vec();
    let server = Server::start_with(Options { extra_args, ..Default::default() }).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    assert_eq!(
        outcome(&p.append_ok("s", "any", json!([{"id": "fits", "data": null, "pad": 1020}])).await),
        (0, 0, 1, 1, false)
    );
    let err = p.append_err("s", "any", json!([{"id": "over", "data": null, "pad": 1021}])).await;
    assert_eq!(err["kind"], "invalid-request", "{err}");
    assert!(err["message"].as_str().unwrap().contains("1024"), "the message names the limit: {err}");

    let err = p.append_err("many", "any", json!({"count": 11})).await;
    assert!(err["message"].as_str().unwrap().contains("the limit is 10"), "{err}");
    assert_eq!(outcome(&p.append_ok("many", "no-stream", json!({"count": 10})).await), (0, 9, 2, 11, false));

    // A nonsensical value is refused at start, naming the flag.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faas"))
        .args(["serve", "--max-events-per-append", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-events-per-append"), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Namespaces

async fn namespaces(backend: Backend) {
    let server = Server::start(backend).await;
    let alpha = deploy_probe(&server, "alpha", &[]).await;
    let beta = deploy_probe(&server, "beta", &["alpha"]).await;
    let gamma = deploy_probe(&server, "gamma", &[]).await;

    assert_eq!(outcome(&alpha.append_ok("s", "no-stream", ids(&["a1", "a2"])).await), (0, 1, 1, 2, false));
    // The same stream name in each namespace is a different stream.
    assert_eq!(outcome(&beta.append_ok("s", "no-stream", ids(&["b1"])).await), (0, 0, 3, 3, false));
    assert_eq!(outcome(&gamma.append_ok("s", "no-stream", ids(&["g1"])).await), (0, 0, 4, 4, false));

    // beta may read alpha's streams, addressed (and reported) as `alpha/s`.
    let read = beta.events("alpha/s", 0, "forward", 10).await;
    assert_eq!(field(&read, "id"), ids_json(&["a1", "a2"]));
    assert_eq!(field(&read, "stream"), [json!("alpha/s"), json!("alpha/s")]);
    assert_eq!(field(&beta.events("alpha/s", END, "backward", 1).await, "id"), ids_json(&["a2"]));
    // Its own `s` is its own stream.
    let own = beta.events("s", 0, "forward", 10).await;
    assert_eq!((field(&own, "id"), field(&own, "stream")), (ids_json(&["b1"]), vec![json!("s")]));
    // alpha sees its own stream as `s`, also when naming its namespace.
    assert_eq!(field(&alpha.events("s", 0, "forward", 10).await, "stream"), [json!("s"), json!("s")]);
    let explicit = alpha.events("alpha/s", 0, "forward", 10).await;
    assert_eq!(field(&explicit, "id"), ids_json(&["a1", "a2"]));
    assert_eq!(field(&explicit, "stream"), [json!("s"), json!("s")]);

    // Reads are only a grant: beta may not write to alpha.
    for expected in ["any", "1", "stream-exists"] {
        let err = beta.append_err("alpha/s", expected, ids(&["b-in-a"])).await;
        assert_eq!(err["kind"], "access-denied", "{err}");
    }
    let err = beta.append_err("alpha/new", "no-stream", ids(&["b-in-a"])).await;
    assert_eq!(err["kind"], "access-denied", "{err}");
    assert_eq!(field(&alpha.events("s", 0, "forward", 10).await, "id"), ids_json(&["a1", "a2"]));
    assert!(alpha.events("new", 0, "forward", 10).await.is_empty());

    // Without a grant: denied, including for missing streams (no probing for existence).
    for (reader, stream) in [(&gamma, "alpha/s"), (&gamma, "beta/s"), (&gamma, "alpha/missing"), (&alpha, "beta/s")] {
        let body = reader.read(stream, 0, "forward", 10).await;
        assert_eq!(kind(&body), Some("access-denied"), "{} reading {stream}: {body}", reader.name);
    }
    let err = gamma.append_err("alpha/s", "any", ids(&["g-in-a"])).await;
    assert_eq!(err["kind"], "access-denied", "{err}");
    // A malformed namespace is invalid, not denied.
    let body = beta.read("Not_A_Namespace/s", 0, "forward", 10).await;
    assert_eq!(kind(&body), Some("invalid-request"), "{body}");

    // read-all covers exactly the readable namespaces.
    let all = gamma.all(0, 100).await;
    assert_eq!((field(&all, "id"), field(&all, "stream")), (ids_json(&["g1"]), vec![json!("s")]));
    let all = beta.all(0, 100).await;
    assert_eq!(field(&all, "id"), ids_json(&["a1", "a2", "b1"]));
    assert_eq!(field(&all, "stream"), [json!("alpha/s"), json!("alpha/s"), json!("s")]);
    assert_eq!(field(&all, "position"), json_nums(1..4));
    let all = alpha.all(0, 100).await;
    assert_eq!(field(&all, "id"), ids_json(&["a1", "a2"]));

    // kv is private to each namespace, grants or not.
    alpha.kv_set_ok("k", "from-alpha").await;
    assert_eq!(beta.kv_value("k").await, None);
    assert_eq!(gamma.kv_value("k").await, None);
    beta.kv_set_ok("k", "from-beta").await;
    assert_eq!(alpha.kv_value("k").await.as_deref(), Some("from-alpha"));
    assert_eq!(beta.kv_value("k").await.as_deref(), Some("from-beta"));
    assert_eq!(beta.kv_list("", None, 100).await, [("k".to_owned(), "from-beta".to_owned())]);
    assert!(gamma.kv_list("", None, 100).await.is_empty());
    assert!(!gamma.kv_delete("k").await);
    assert!(!gamma.kv_cas("k", Some("from-alpha"), None).await);
    assert!(beta.kv_delete("k").await);
    assert_eq!(alpha.kv_value("k").await.as_deref(), Some("from-alpha"));

    // Naming the own namespace explicitly writes to the own stream.
    assert_eq!(outcome(&alpha.append_ok("alpha/s", "1", ids(&["a3"])).await), (2, 2, 5, 5, false));
    assert_eq!(field(&beta.events("alpha/s", END, "backward", 1).await, "id"), ids_json(&["a3"]));

    // Grants belong to the deployed version: redeploying beta without one revokes its reads.
    let ungranted = spec(&["/beta/..."], json!({}));
    server.deploy_ok("beta", components().bytes("es-probe"), ungranted).await;
    let body = beta.read("alpha/s", 0, "forward", 10).await;
    assert_eq!(kind(&body), Some("access-denied"), "{body}");
    assert_eq!(field(&beta.all(0, 100).await, "id"), ids_json(&["b1"]));
}

// ---------------------------------------------------------------------------------------------
// kv

async fn kv_operations(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    // get / set / overwrite / delete.
    assert_eq!(p.kv_value("a").await, None);
    p.kv_set_ok("a", "1").await;
    assert_eq!(p.kv_value("a").await.as_deref(), Some("1"));
    p.kv_set_ok("a", "2").await;
    assert_eq!(p.kv_value("a").await.as_deref(), Some("2"));
    p.kv_set_ok("empty", "").await;
    assert_eq!(p.kv_value("empty").await.as_deref(), Some(""));
    assert!(p.kv_delete("a").await);
    assert!(!p.kv_delete("a").await);
    assert_eq!(p.kv_value("a").await, None);
    assert!(p.kv_delete("empty").await);

    // list: prefix, key order (not insertion order), start-after, limit.
    for key in ["item:03", "item:01", "items", "other:1", "item:10", "item:02", "item", "ite"] {
        p.kv_set_ok(key, &format!("v-{key}")).await;
    }
    let keys = |entries: Vec<(String, String)>| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    let listed = p.kv_list("item:", None, 100).await;
    assert_eq!(keys(listed.clone()), ["item:01", "item:02", "item:03", "item:10"]);
    assert!(listed.iter().all(|(k, v)| *v == format!("v-{k}")), "{listed:?}");
    assert_eq!(keys(p.kv_list("item:", None, 2).await), ["item:01", "item:02"]);
    assert_eq!(keys(p.kv_list("item:", Some("item:02"), 2).await), ["item:03", "item:10"]);
    assert_eq!(keys(p.kv_list("item:", Some("item:015"), 100).await), ["item:02", "item:03", "item:10"]);
    assert!(p.kv_list("item:", Some("item:10"), 100).await.is_empty());
    assert_eq!(keys(p.kv_list("item", None, 100).await), ["item", "item:01", "item:02", "item:03", "item:10", "items"]);
    assert_eq!(
        keys(p.kv_list("", None, 100).await),
        ["ite", "item", "item:01", "item:02", "item:03", "item:10", "items", "other:1"]
    );
    assert_eq!(keys(p.kv_list("", Some("item:10"), 2).await), ["items", "other:1"]);
    assert!(p.kv_list("zzz", None, 100).await.is_empty());
    assert!(p.kv_list("item:", None, 0).await.is_empty());

    // Keys: 1-512 bytes; values up to 1 MiB.
    let body = p.kv_get("").await;
    assert_eq!(kind(&body), Some("invalid-request"), "{body}");
    let body = p.kv_set("", "v").await;
    assert_eq!(kind(&body), Some("invalid-request"), "{body}");
    let body = p.kv_set(&"k".repeat(513), "v").await;
    assert_eq!(kind(&body), Some("invalid-request"), "{body}");
    p.kv_set_ok(&"k".repeat(512), "v").await;
    let big = " ".repeat(MAX_EVENT_BYTES);
    p.kv_set_ok("big", &big).await;
    let body = p.kv_set("too-big", &format!("{big} ")).await;
    assert_eq!(kind(&body), Some("invalid-request"), "{body}");
    assert_eq!(p.kv_value("too-big").await, None);
}

async fn kv_compare_and_swap(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    // absent → set.
    assert!(p.kv_cas("c", None, Some("v1")).await);
    assert_eq!(p.kv_value("c").await.as_deref(), Some("v1"));
    // "absent" no longer holds.
    assert!(!p.kv_cas("c", None, Some("v0")).await);
    assert_eq!(p.kv_value("c").await.as_deref(), Some("v1"));
    // match → swap.
    assert!(p.kv_cas("c", Some("v1"), Some("v2")).await);
    assert_eq!(p.kv_value("c").await.as_deref(), Some("v2"));
    // mismatch → false, unchanged.
    assert!(!p.kv_cas("c", Some("v1"), Some("v3")).await);
    assert_eq!(p.kv_value("c").await.as_deref(), Some("v2"));
    // delete by CAS: mismatch keeps it, match deletes it.
    assert!(!p.kv_cas("c", Some("v1"), None).await);
    assert_eq!(p.kv_value("c").await.as_deref(), Some("v2"));
    assert!(p.kv_cas("c", Some("v2"), None).await);
    assert_eq!(p.kv_value("c").await, None);
    // On an absent key, only "expected absent" matches.
    assert!(!p.kv_cas("c", Some("v2"), Some("v4")).await);
    assert!(!p.kv_cas("c", Some("v2"), None).await);
    assert_eq!(p.kv_value("c").await, None);
    // absent → absent holds exactly when the key is absent.
    assert!(p.kv_cas("c", None, None).await);
    p.kv_set_ok("c", "v5").await;
    assert!(!p.kv_cas("c", None, None).await);
    assert_eq!(p.kv_value("c").await.as_deref(), Some("v5"));
    // The empty value is a value, not absence.
    assert!(p.kv_cas("e", None, Some("")).await);
    assert!(!p.kv_cas("e", None, Some("x")).await);
    assert!(p.kv_cas("e", Some(""), Some("x")).await);
    assert_eq!(p.kv_value("e").await.as_deref(), Some("x"));
}

/// `list` with a prefix that is not ASCII must still match by prefix.
async fn kv_non_ascii_prefix(backend: Backend) {
    let server = Server::start(backend).await;
    let p = deploy_probe(&server, "alpha", &[]).await;

    for key in ["ü/1", "ü/2", "u/3", "üx"] {
        p.kv_set_ok(key, key).await;
    }
    assert_eq!(p.kv_value("ü/1").await.as_deref(), Some("ü/1"));
    let listed: Vec<String> = p.kv_list("ü/", None, 100).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed, ["ü/1", "ü/2"], "list with prefix `ü/`");
    let listed: Vec<String> = p.kv_list("ü", None, 100).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed, ["ü/1", "ü/2", "üx"], "list with prefix `ü`");
}
