//! WASIp3 HTTP functions (`functions/hello-p3`, an async `wasi:http/handler@0.3` export): they
//! deploy and answer, stream bodies both ways, reuse instances when the deploy allows it (one at a
//! time, or several requests at once with `max_concurrency`), and keep every guarantee of a WASIp2
//! function: a trap or a timeout discards the instance, the memory limit holds, outgoing HTTP
//! follows the allow-list, and two functions never share an instance.

use crate::support::{Server, components, error_of};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// `hello-p3` deployed as `name` at `/name/...`.
async fn deploy(server: &Server, name: &str, limits: Value, reuse: Value) -> Value {
    let mut spec = json!({ "triggers": { "http": [format!("/{name}/..."), format!("/{name}")] }, "limits": limits });
    if !reuse.is_null() {
        spec["reuse"] = reuse;
    }
    server.deploy_ok(name, components().bytes("hello_p3"), spec).await
}

#[tokio::test]
async fn a_p3_component_deploys_answers_and_streams_bodies() {
    let server = Server::start_untiered().await;
    let deployed = deploy(&server, "p3", json!({}), Value::Null).await;
    assert_eq!(deployed["version"], 1, "{deployed}");
    assert_eq!(server.call("/p3").await, (200, "Hello, world!".into()));
    assert_eq!(server.call("/p3/alice").await, (200, "Hello, alice!".into()));

    // 3 MiB up and back, in chunks the guest forwards as they arrive.
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let response = server.http.post(format!("{}/p3/echo", server.data)).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.unwrap();
    assert!(echoed == body, "echoed {} bytes, sent {}", echoed.len(), body.len());

    // Over the function's body limit: 413, as for any function.
    deploy(&server, "small", json!({"max_body_bytes": 1024}), Value::Null).await;
    let response =
        server.http.post(format!("{}/small/echo", server.data)).body(vec![b'x'; 64 << 10]).send().await.unwrap();
    assert_eq!(response.status(), 413);

    // Without reuse (the default), every request gets a fresh instance.
    for _ in 0..3 {
        assert_eq!(server.served_count("p3").await, 1);
    }
}

#[tokio::test]
async fn reuse_keeps_state_per_function_and_a_trap_or_timeout_discards_the_instance() {
    let server = Server::start_untiered().await;
    deploy(&server, "kept", json!({"timeout_ms": 1000}), json!({"max_uses": 1000})).await;
    deploy(&server, "other", json!({}), json!({"max_uses": 1000})).await;
    for expected in 1..=4 {
        assert_eq!(server.served_count("kept").await, expected);
    }
    assert_eq!(server.served_count("other").await, 1, "same component, other function: its own instance");
    assert_eq!(server.instantiations("kept").await, 1);

    let response = server.http.get(format!("{}/kept/trap", server.data)).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_of(&body).0, "function_trapped", "{body}");
    assert_eq!(server.served_count("kept").await, 1, "the request after a trap gets a fresh instance");

    let response = server.http.get(format!("{}/kept/sleep?ms=5000", server.data)).send().await.unwrap();
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_of(&body).0, "timeout", "{body}");
    // The timed-out instance stops taking requests; the next one starts from scratch.
    assert_eq!(server.served_count("kept").await, 1, "the request after a timeout gets a fresh instance");
}

/// With `max_concurrency` 8, eight slow requests share one instance at the same time: they end
/// together (not one after another) and the instance counts all of them.
#[tokio::test]
async fn concurrent_reuse_runs_several_requests_in_one_instance() {
    let server = Server::start_untiered().await;
    deploy(&server, "wide", json!({"max_concurrency": 8}), json!({"max_uses": 1000, "max_concurrency": 8})).await;
    assert_eq!(server.served_count("wide").await, 1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (server.http.clone(), format!("{}/wide/sleep?ms=600", server.data));
        tasks.push(tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), (200, "slept 600 ms".into()));
    }
    let elapsed = started.elapsed();
    // Serially this is 4.8 s; overlapped, a little over 0.6 s. The bound is loose on purpose.
    assert!(elapsed < Duration::from_millis(3000), "8 × 600 ms took {elapsed:?}: not run concurrently");
    let made = server.instantiations("wide").await;
    assert!(made < 8, "{made} instances for 9 requests: the instance was not shared");
    if made == 1 {
        assert_eq!(server.served_count("wide").await, 10, "one instance served all of them");
    }

    // One at a time (max_concurrency 1, the default): the same load queues on an instance or
    // spreads over more of them, never two requests in one instance at once. So with i
    // instances, 8 requests of 400 ms take at least ceil(8 / i) × 400 ms.
    deploy(&server, "narrow", json!({"max_concurrency": 8}), json!({"max_uses": 1000})).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (server.http.clone(), format!("{}/narrow/sleep?ms=400", server.data));
        tasks.push(tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let elapsed = started.elapsed();
    let instances = server.instantiations("narrow").await;
    assert!((1..=8).contains(&instances), "{instances}");
    let serial = Duration::from_millis(400) * 8u64.div_ceil(instances) as u32;
    assert!(elapsed >= serial, "8 × 400 ms in {instances} instances took only {elapsed:?}: some ran together");
}

#[tokio::test]
async fn the_memory_limit_holds_across_reused_requests() {
    let server = Server::start_untiered().await;
    deploy(&server, "m", json!({"memory_bytes": 32 << 20}), json!({"max_uses": 1000})).await;
    crate::reuse::assert_memory_limit_holds(&server, "m").await;
}

/// `wasi:http/client@0.3` goes through the same allow-list as p2's outgoing handler.
#[tokio::test]
async fn outgoing_requests_follow_the_allow_list() {
    let server = Server::start_untiered().await;
    deploy(&server, "target", json!({}), Value::Null).await;
    let authority = server.data.trim_start_matches("http://").to_owned();
    let fetch = format!("/p3/fetch?authority={authority}&path=/target/bob");

    deploy(&server, "p3", json!({}), Value::Null).await;
    let (status, body) = server.call(&fetch).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "denied by default: {body}");
    server.wait_for_log("outgoing request denied").await;

    let spec = json!({
        "triggers": { "http": ["/p3/...", "/p3"] },
        "outbound": { "allow": [format!("http://{authority}")] },
    });
    server.deploy_ok("p3", components().bytes("hello_p3"), spec).await;
    assert_eq!(server.call(&fetch).await, (200, "Hello, bob!".into()));
}

#[tokio::test]
async fn concurrency_needs_a_p3_handler_and_bad_values_are_refused() {
    let server = Server::start_untiered().await;
    for (wasm, reuse, needle) in [
        ("hello", json!({"max_uses": 10, "max_concurrency": 2}), "only a WASIp3 HTTP handler"),
        ("hello_p3", json!({"max_uses": 2, "max_concurrency": 4}), "reuse.max_concurrency"),
        ("hello_p3", json!({"max_uses": 2, "max_concurrency": 0}), "reuse.max_concurrency"),
    ] {
        let spec = json!({ "triggers": { "http": ["/x/..."] }, "reuse": reuse });
        let response = server.deploy("x", components().bytes(wasm), spec).await;
        assert_eq!(response.status(), 400, "{wasm} {reuse}");
        let body: Value = response.json().await.unwrap();
        let (code, message) = error_of(&body);
        assert_eq!(code, "invalid_spec", "{message}");
        assert!(message.contains(needle), "{message}");
    }
    assert_eq!(server.call("/x/count").await.0, 404, "nothing was deployed");

    // The CLI flag, which needs --reuse.
    let path = components().path("hello_p3");
    let args =
        ["deploy", "x", path.to_str().unwrap(), "--route", "/x/...", "--reuse", "50", "--reuse-concurrency", "5"];
    let out = server.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(deployed["reuse"]["max_concurrency"], 5, "{deployed}");
    assert_eq!((server.served_count("x").await, server.served_count("x").await), (1, 2));
    let out = server.cli(&["deploy", "x", path.to_str().unwrap(), "--reuse-concurrency", "5"]);
    assert!(!out.status.success(), "--reuse-concurrency without --reuse is refused");
}
