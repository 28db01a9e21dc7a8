//! Tiered compilation: a new deploy answers after a Winch compile and serves on Winch's code,
//! while Cranelift compiles in the background; its build is then swapped in without disturbing
//! requests in flight, and never over a version that replaced the one it was compiled for.

use crate::support::{Options, Server, components, error_of, eventually, spec};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A server with its own (empty) compile cache, so every deploy here compiles cold, that waits
/// `delay` before each background Cranelift compile (to observe the Winch phase).
async fn start(delay: &str) -> Server {
    let extra_args = vec!["--tier-up-delay".into(), delay.into()];
    Server::start_with(Options { own_cache: true, extra_args, ..Default::default() }).await
}

async fn compiler(server: &Server, name: &str) -> (Value, Value) {
    let (status, function) = server.get_json(&format!("/v1/functions/{name}")).await;
    assert_eq!(status, 200, "{function}");
    (function["compiler"].clone(), function["active_version"].clone())
}

#[tokio::test]
async fn a_new_deploy_serves_on_winch_then_cranelift_is_swapped_in_under_load() {
    let server = Arc::new(start("4s").await);
    let limits = json!({"timeout_ms": 1500, "memory_bytes": 32 << 20});
    server.deploy_ok("m", components().bytes("misbehave"), spec(&["/m/..."], limits)).await;
    assert_eq!(compiler(&server, "m").await, (json!("winch"), json!(1)));

    // Winch's code behaves as Cranelift's: answers, traps, and is interrupted at its deadline.
    assert_eq!(server.call("/m/ok").await, (200, "ok".into()));
    let (status, body) = server.call("/m/panic").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, error_of(&body).0.as_str()), (500, "function_trapped"));
    let (status, _) = server.call("/m/loop").await;
    assert_eq!(status, 504, "a spinning Winch guest must be stopped at its timeout");
    let (status, body) = server.call("/m/oom").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(compiler(&server, "m").await.0, json!("winch"), "still in the Winch phase");

    // Traffic across the swap: every request answers, including ones in flight during it.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (server, stop) = (server.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                let path = if worker == 0 { "/m/sleep?ms=300" } else { "/m/ok" };
                let (status, body) = server.call(path).await;
                assert_eq!(status, 200, "{path}: {body}");
                served += 1;
            }
            served
        }));
    }
    eventually("the Cranelift build is swapped in", Duration::from_secs(30), async || {
        match compiler(&server, "m").await {
            (c, _) if c == json!("cranelift") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        assert!(task.await.unwrap() > 0);
    }
    assert!(server.logs().contains("Cranelift build swapped in"));
    // Same version, now optimised; still behaves.
    assert_eq!(compiler(&server, "m").await, (json!("cranelift"), json!(1)));
    assert_eq!(server.call("/m/ok").await, (200, "ok".into()));
    assert_eq!(server.call("/m/loop").await.0, 504);
}

#[tokio::test]
async fn a_late_cranelift_build_never_replaces_a_newer_choice() {
    let server = start("2s").await;
    let hello = components().bytes("hello");
    server.deploy_ok("h", hello.clone(), spec(&["/h/..."], json!({}))).await;
    server.deploy_ok("h", hello, spec(&["/h/..."], json!({"timeout_ms": 20_000}))).await;
    assert_eq!(compiler(&server, "h").await, (json!("winch"), json!(2)));
    // Roll back to version 1 while both background compiles wait: it loads Cranelift's build.
    let response = server.admin_request(reqwest::Method::POST, "/v1/functions/h/versions/1/activate").send().await;
    assert_eq!(response.unwrap().status(), 200);
    assert_eq!(compiler(&server, "h").await, (json!("cranelift"), json!(1)));
    // Both tier-ups finish (cached artifacts prove it) without touching the active version.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(compiler(&server, "h").await, (json!("cranelift"), json!(1)));
    assert_eq!(server.call("/h/x").await, (200, "Hello, h/x!".into()));
    assert!(!server.logs().contains("Cranelift build swapped in"), "{}", server.logs());
}

#[tokio::test]
async fn without_tiering_a_deploy_compiles_with_cranelift() {
    let extra_args = vec!["--tiered-compilation".into(), "false".into()];
    let server = Server::start_with(Options { own_cache: true, extra_args, ..Default::default() }).await;
    server.deploy_ok("h", components().bytes("hello"), spec(&["/h/..."], json!({}))).await;
    assert_eq!(compiler(&server, "h").await, (json!("cranelift"), json!(1)));
    assert_eq!(server.call("/h/y").await, (200, "Hello, h/y!".into()));
}

/// The swap replaces the build, not the version's limits: a request still running on the Winch
/// build holds its concurrency slot across the swap, so a second one is refused.
#[tokio::test]
async fn the_concurrency_limit_holds_across_the_swap() {
    let server = start("500ms").await;
    let limits = json!({"max_concurrency": 1, "max_queue": 0, "timeout_ms": 30_000});
    server.deploy_ok("m", components().bytes("misbehave"), spec(&["/m/..."], limits)).await;
    assert_eq!(compiler(&server, "m").await.0, "winch");
    // Held well past the swap, which waits 500 ms and then compiles (seconds on a loaded machine).
    let (http, url) = (server.http.clone(), format!("{}/m/sleep?ms=10000", server.data));
    let running = tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() });
    server.wait_for_metric(r#"faas_active_instances{function="m"} 1"#).await;
    eventually("the Cranelift build is swapped in", Duration::from_secs(20), async || {
        let (compiler, _) = compiler(&server, "m").await;
        if compiler == "cranelift" { Ok(()) } else { Err(compiler) }
    })
    .await;
    let response = server.http.get(format!("{}/m/ok", server.data)).send().await.unwrap();
    assert_eq!(response.status(), 503, "the running request's slot was forgotten by the swap");
    assert_eq!(running.await.unwrap(), 200);
    assert_eq!(server.call("/m/ok").await, (200, "ok".into()));
}
