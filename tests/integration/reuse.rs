//! Opt-in instance reuse (`reuse.max_uses > 1`): an instance keeps its memory between the
//! invocations of its own function, never another's; a trap, a timeout or the memory limit end
//! it, and the next invocation starts fresh; `max_uses` and the idle timeout bound its life.

use crate::support::{Server, components, error_of, eventually, spec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// `misbehave` deployed as `name` at `/name/...` with these limits and reuse settings.
async fn deploy_misbehave(server: &Server, name: &str, limits: Value, reuse: Value) {
    let mut spec = spec(&[&format!("/{name}/...")], limits);
    if !reuse.is_null() {
        spec["reuse"] = reuse;
    }
    server.deploy_ok(name, components().bytes("misbehave"), spec).await;
}

#[tokio::test]
async fn a_reused_instance_keeps_state_for_its_own_function_only() {
    let server = Server::start_untiered().await;
    deploy_misbehave(&server, "kept", json!({}), json!({"max_uses": 1000})).await;
    deploy_misbehave(&server, "neighbour", json!({}), json!({"max_uses": 1000})).await;
    deploy_misbehave(&server, "fresh", json!({}), Value::Null).await;

    for expected in 1..=5 {
        assert_eq!(server.served_count("kept").await, expected);
    }
    // Same component, other function: its own instance, its own memory.
    assert_eq!(server.served_count("neighbour").await, 1);
    assert_eq!(server.served_count("kept").await, 6);
    // Without reuse (the default) every request sees a fresh instance.
    for _ in 0..3 {
        assert_eq!(server.served_count("fresh").await, 1);
    }
    assert_eq!(server.instantiations("kept").await, 1);
    assert_eq!(server.instantiations("neighbour").await, 1);
    assert_eq!(server.instantiations("fresh").await, 3);

    // A new version is a new pool: nothing of the old instances' memory carries over.
    deploy_misbehave(&server, "kept", json!({"timeout_ms": 20_000}), json!({"max_uses": 1000})).await;
    assert_eq!(server.served_count("kept").await, 1);
}

#[tokio::test]
async fn a_trap_discards_the_instance() {
    let server = Server::start_untiered().await;
    deploy_misbehave(&server, "m", json!({}), json!({"max_uses": 1000})).await;
    assert_eq!((server.served_count("m").await, server.served_count("m").await), (1, 2));
    let response = server.http.get(format!("{}/m/panic", server.data)).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_of(&body).0, "function_trapped");
    assert_eq!(server.served_count("m").await, 1, "the request after a trap must get a fresh instance");
    assert_eq!(server.served_count("m").await, 2);
}

#[tokio::test]
async fn a_timeout_discards_the_instance() {
    let server = Server::start_untiered().await;
    deploy_misbehave(&server, "m", json!({"timeout_ms": 1000}), json!({"max_uses": 1000})).await;
    assert_eq!((server.served_count("m").await, server.served_count("m").await), (1, 2));
    for path in ["/m/loop", "/m/sleep?ms=3000"] {
        let response = server.http.get(format!("{}{path}", server.data)).send().await.unwrap();
        assert_eq!(response.status(), 504, "{path}");
        assert_eq!(server.served_count("m").await, 1, "the request after a timeout ({path}) must get a fresh instance");
    }
}

#[tokio::test]
async fn the_memory_limit_holds_across_reused_requests() {
    let server = Server::start_untiered().await;
    deploy_misbehave(&server, "m", json!({"memory_bytes": 32 << 20}), json!({"max_uses": 1000})).await;
    assert_memory_limit_holds(&server, "m").await;
}

/// `route` is a function deployed with a 32 MiB limit and reuse whose `/hold?mib=8` keeps 8 MiB
/// more each time (misbehave, hello-p3): what one request keeps counts against the next one's
/// limit (the instance's memory is one), the request that crosses it traps, and a fresh instance
/// starts with nothing held.
pub(crate) async fn assert_memory_limit_holds(server: &Server, route: &str) {
    let hold = format!("/{route}/hold?mib=8");
    let mut held = Vec::new();
    let failed = loop {
        let (status, body) = server.call(&hold).await;
        if status != 200 {
            break (status, body);
        }
        held.push(body);
        assert!(held.len() <= 4, "held {held:?} within a 32 MiB limit");
    };
    assert!(held.len() >= 2, "{held:?}");
    assert_eq!(held, ["holding 8 MiB", "holding 16 MiB", "holding 24 MiB"][..held.len()].to_vec());
    let body: Value = serde_json::from_str(&failed.1).unwrap();
    assert_eq!((failed.0, error_of(&body).0.as_str()), (500, "function_trapped"), "{body}");
    assert_eq!(server.call(&hold).await, (200, "holding 8 MiB".into()));
}

#[tokio::test]
async fn max_uses_and_the_idle_timeout_end_an_instance() {
    let server = Server::start_untiered().await;
    deploy_misbehave(&server, "three", json!({}), json!({"max_uses": 3})).await;
    let mut counts = Vec::new();
    for _ in 0..7 {
        counts.push(server.served_count("three").await);
    }
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1]);

    deploy_misbehave(&server, "idle", json!({}), json!({"max_uses": 1000, "idle_timeout_ms": 300})).await;
    assert_eq!((server.served_count("idle").await, server.served_count("idle").await), (1, 2));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(server.served_count("idle").await, 1, "an instance idle past its timeout is dropped");
}

/// Concurrent requests each get an instance of their own (never one in use); every instance
/// counts 1, 2, 3, … so the answers are a union of such runs, one run per instantiation.
#[tokio::test]
async fn concurrent_requests_never_share_an_instance() {
    let server = Server::start_untiered().await;
    deploy_misbehave(&server, "m", json!({"max_concurrency": 4, "max_queue": 200}), json!({"max_uses": 1000})).await;
    let mut tasks = Vec::new();
    for _ in 0..120 {
        let (http, url) = (server.http.clone(), format!("{}/m/count", server.data));
        tasks.push(tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let body = response.text().await.unwrap();
            body.strip_prefix("count ").unwrap().parse::<u64>().unwrap()
        }));
    }
    let mut histogram: BTreeMap<u64, u64> = BTreeMap::new();
    for task in tasks {
        *histogram.entry(task.await.unwrap()).or_default() += 1;
    }
    let runs = histogram[&1];
    assert!((1..=4).contains(&runs), "at most max_concurrency instances: {histogram:?}");
    // n instances: each answered 1..k_i, so "count j" appears no more often than "count j-1".
    let mut previous = u64::MAX;
    for (j, n) in &histogram {
        assert!(*n <= previous, "count {j} seen {n} times, more than count {}: {histogram:?}", j - 1);
        previous = *n;
    }
    assert_eq!(histogram.values().sum::<u64>(), 120);
    assert_eq!(server.instantiations("m").await, runs);
}

/// The event path reuses too: a projector's HTTP calls and its subscription's batches share
/// the function's instances.
#[tokio::test]
async fn event_handlers_reuse_instances_too() {
    let server = Server::start_untiered().await;
    let spec = json!({
        "triggers": { "http": ["/projector/..."], "subscriptions": [{ "stream": "*", "batch_size": 10 }] },
        "reuse": { "max_uses": 1000 },
    });
    server.deploy_ok("projector", components().bytes("projector"), spec).await;
    for i in 0..10 {
        let (status, body) = server.post_json(&format!("/projector/append?stream=s-{i}&type=Noted"), &json!({})).await;
        assert_eq!(status, 200, "{body}");
        // One batch per event: wait until the handler saw it.
        eventually("the event is delivered", Duration::from_secs(10), async || {
            let (_, seen) = server.call("/projector/seen").await;
            let seen: Value = serde_json::from_str(&seen).unwrap();
            if seen["delivered"].as_u64() == Some(i + 1) { Ok(()) } else { Err(seen) }
        })
        .await;
    }
    // 10 appends, at least 10 `seen` calls and 10 batches ran in at most a few instances (an
    // HTTP call and a batch can overlap); without reuse it would be 30 or more.
    let made = server.instantiations("projector").await;
    assert!((1..=3).contains(&made), "{made} instantiations");
}

#[tokio::test]
async fn bad_reuse_settings_are_rejected_with_the_field_named() {
    let server = Server::start_untiered().await;
    for (reuse, needle) in [
        (json!({"max_uses": 0}), "reuse.max_uses"),
        (json!({"max_uses": 10, "idle_timeout_ms": 0}), "reuse.idle_timeout_ms"),
        (json!({"uses": 10}), "uses"),
    ] {
        let mut spec = spec(&["/m/..."], json!({}));
        spec["reuse"] = reuse.clone();
        let response = server.deploy("m", components().bytes("misbehave"), spec).await;
        assert_eq!(response.status(), 400, "{reuse}");
        let body: Value = response.json().await.unwrap();
        let (code, message) = error_of(&body);
        assert_eq!(code, "invalid_spec", "{message}");
        assert!(message.contains(needle), "{message}");
    }
    let (status, _) = server.call("/m/count").await;
    assert_eq!(status, 404, "nothing was deployed");
}

#[tokio::test]
async fn the_cli_sets_reuse() {
    let server = Server::start_untiered().await;
    let path = components().path("misbehave");
    let args = ["deploy", "m", path.to_str().unwrap(), "--route", "/m/...", "--reuse", "50", "--reuse-idle", "10s"];
    let out = server.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        deployed["reuse"],
        json!({"max_uses": 50, "idle_timeout_ms": 10_000, "max_concurrency": 1}),
        "{deployed}"
    );
    assert_eq!((server.served_count("m").await, server.served_count("m").await), (1, 2));
    let out = server.cli(&["deploy", "m", path.to_str().unwrap(), "--reuse-idle", "10s"]);
    assert!(!out.status.success(), "--reuse-idle without --reuse is refused");
}

/// A client that hangs up does not cancel the function: the run finishes and hands its instance
/// back (the next request reuses it: still one instantiation) and nothing stays counted as active.
#[tokio::test]
async fn a_client_hanging_up_does_not_cancel_the_invocation() {
    let server = Server::start_untiered().await;
    deploy_misbehave(&server, "m", json!({}), json!({"max_uses": 1000})).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let gave_up = impatient.get(format!("{}/m/sleep?ms=500", server.data)).send().await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()), "the client was to give up first");
    server.wait_for_metric("faas_active_instances{function=\"m\"} 0").await;
    assert_eq!(server.served_count("m").await, 1);
    assert_eq!(server.instantiations("m").await, 1, "the abandoned run finished and handed its instance back");
    let logs = server.logs();
    assert!(!logs.contains("timed out") && !logs.contains("trapped"), "{logs}");
}
