//! Deploy → invoke → redeploy → rollback → delete, persistence across restarts, and the CLI.

use crate::backend_tests;
use crate::support::{Backend, Database, Options, Server, components, error_of, eventually, spec};
use serde_json::json;
use std::time::Duration;

backend_tests!(deploy_redeploy_rollback_delete, deployments_survive_a_restart, cli_drives_the_control_plane);

async fn deploy_redeploy_rollback_delete(backend: Backend) {
    let server = Server::start(backend).await;
    let c = components();
    let routes = ["/hello", "/hello/..."];

    let v1 = server.deploy_ok("greeter", c.bytes("hello"), spec(&routes, json!({}))).await;
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["unchanged"], false);
    assert_eq!(server.call("/hello").await, (200, "Hello, world!".into()));
    assert_eq!(server.call("/hello/alice?greeting=Hi").await, (200, "Hi, alice!".into()));

    // Deploying the same bytes and spec again creates no version.
    let again = server.deploy_ok("greeter", c.bytes("hello"), spec(&routes, json!({}))).await;
    assert_eq!((again["version"].clone(), again["unchanged"].clone()), (json!(1), json!(true)));

    // A new version replaces the old one on the same routes.
    let v2 = server.deploy_ok("greeter", c.bytes("wasi-raw"), spec(&routes, json!({"timeout_ms": 5000}))).await;
    assert_eq!(v2["version"], 2);
    assert_eq!(server.call("/hello/alice").await, (200, "raw wasi ok".into()));

    let (status, function) = server.get_json("/v1/functions/greeter").await;
    assert_eq!(status, 200);
    assert_eq!(function["active_version"], 2);
    assert_eq!(function["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(function["routes"], json!(routes));
    assert_eq!(function["limits"]["timeout_ms"], 5000);
    assert_eq!(function["limits"]["memory_bytes"], 64 << 20);
    assert_eq!(function["sha256"], v2["sha256"]);
    assert_eq!(function["size_bytes"].as_u64(), Some(c.bytes("wasi-raw").len() as u64));
    assert_eq!(function["versions"][0]["sha256"], v1["sha256"]);

    // Rollback to version 1 restores its code and its limits.
    let response =
        server.admin_request(reqwest::Method::POST, "/v1/functions/greeter/versions/1/activate").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.call("/hello/bob").await, (200, "Hello, bob!".into()));
    let (_, function) = server.get_json("/v1/functions/greeter").await;
    assert_eq!(function["active_version"], 1);
    assert_eq!(function["limits"]["timeout_ms"], 30_000);

    // Activating a version that does not exist is a 404 and changes nothing.
    let response =
        server.admin_request(reqwest::Method::POST, "/v1/functions/greeter/versions/9/activate").send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(server.call("/hello/bob").await.0, 200);

    let (_, list) = server.get_json("/v1/functions").await;
    assert_eq!(list["functions"][0]["name"], "greeter");
    assert_eq!(list["functions"][0]["active_version"], 1);

    let response = server.admin_request(reqwest::Method::DELETE, "/v1/functions/greeter").send().await.unwrap();
    assert_eq!(response.status(), 204);
    let (status, body) = server.call("/hello/bob").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.get_json("/v1/functions/greeter").await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body).0, "not_found");
    let (_, list) = server.get_json("/v1/functions").await;
    assert_eq!(list["functions"], json!([]));
    let response = server.admin_request(reqwest::Method::DELETE, "/v1/functions/greeter").send().await.unwrap();
    assert_eq!(response.status(), 404);
}

async fn deployments_survive_a_restart(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    // Its own compile cache: this test compiles cold and checks what the cache holds.
    let options = Options {
        database_url: db.url.clone(),
        data_dir: Some(dir.path().to_owned()),
        own_cache: true,
        ..Default::default()
    };
    let c = components();

    let mut server = Server::start_with(options.clone()).await;
    server.deploy_ok("greeter", c.bytes("hello"), spec(&["/hello/..."], json!({}))).await;
    server.deploy_ok("greeter", c.bytes("wasi-raw"), spec(&["/hello/..."], json!({}))).await;
    server.deploy_ok("echo", c.bytes("echo"), spec(&["/echo"], json!({"max_concurrency": 7}))).await;
    server.admin_request(reqwest::Method::POST, "/v1/functions/greeter/versions/1/activate").send().await.unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache")).unwrap().collect();
    assert!(cached.len() >= 2, "compiled artifacts are cached on disk");
    // kill -9: nothing is flushed on the way out.
    server.kill();

    let server = Server::start_with(options).await;
    assert_eq!(server.call("/hello/carol").await, (200, "Hello, carol!".into()));
    let (_, function) = server.get_json("/v1/functions/greeter").await;
    assert_eq!(function["active_version"], 1);
    assert_eq!(function["versions"].as_array().map(Vec::len), Some(2));
    let (_, echo) = server.get_json("/v1/functions/echo").await;
    assert_eq!(echo["limits"]["max_concurrency"], 7);
    assert!(!server.logs().contains("function not loaded"), "{}", server.logs());
    // The next deploy continues the version sequence.
    let v3 = server.deploy_ok("greeter", c.bytes("echo"), spec(&["/hello/..."], json!({}))).await;
    assert_eq!(v3["version"], 3);
}

async fn cli_drives_the_control_plane(backend: Backend) {
    let server = Server::start(backend).await;
    let c = components();
    let hello = c.path("hello");
    let hello = hello.to_str().unwrap();

    let out = server.cli(&[
        "deploy",
        "greeter",
        hello,
        "--route",
        "/hello",
        "--route",
        "/hello/...",
        "--memory",
        "32MiB",
        "--timeout",
        "10s",
        "--max-concurrency",
        "5",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("deploy prints JSON");
    assert_eq!(deployed["version"], 1);
    assert_eq!(deployed["limits"]["memory_bytes"], 32 << 20);
    assert_eq!(deployed["limits"]["timeout_ms"], 10_000);
    assert_eq!(deployed["limits"]["max_concurrency"], 5);
    assert_eq!(server.call("/hello/dave").await, (200, "Hello, dave!".into()));

    let raw = c.path("wasi-raw");
    let out = server.cli(&["deploy", "greeter", raw.to_str().unwrap(), "--route", "/hello/..."]);
    assert!(out.status.success());

    let out = server.cli(&["list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.lines().any(|l| l.starts_with("greeter") && l.contains(" 2 ") && l.contains("/hello/...")),
        "{table}"
    );

    let out = server.cli(&["get", "greeter"]);
    let function: serde_json::Value = serde_json::from_slice(&out.stdout).expect("get prints JSON");
    assert_eq!(function["versions"].as_array().map(Vec::len), Some(2));

    let out = server.cli(&["rollback", "greeter", "1"]);
    assert!(out.status.success());
    assert_eq!(server.call("/hello").await, (200, "Hello, world!".into()));

    // Errors: nonzero exit and the server's message.
    let out = server.cli(&["rollback", "greeter", "7"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("function `greeter` has no version 7"), "{stderr}");
    let out = server.cli(&["deploy", "Bad_Name", hello, "--route", "/x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid function name"));
    let out = server.cli(&["deploy", "x", "/nonexistent.wasm"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.wasm"));

    let out = server.cli(&["delete", "greeter"]);
    assert!(out.status.success());
    let out = server.cli(&["get", "greeter"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("function `greeter` not found"));
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_version_they_started_on() {
    let server = Server::start(Backend::Sqlite).await;
    let c = components();
    server.deploy_ok("app", c.bytes("misbehave"), spec(&["/app/..."], json!({}))).await;
    let slow = {
        // Long enough to outlast the deploy below (it compiles a component: seconds when the
        // machine is loaded).
        let (http, url) = (server.http.clone(), format!("{}/app/sleep?ms=6000", server.data));
        tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    // The slow request runs on version 1 before version 2 is deployed.
    server.wait_for_metric(r#"faas_active_instances{function="app"} 1"#).await;
    let v2 = server.deploy_ok("app", c.bytes("wasi-raw"), spec(&["/app/..."], json!({}))).await;
    assert_eq!(v2["version"], 2);
    // New requests run version 2 at once; the request already running finishes on version 1.
    assert_eq!(server.call("/app/sleep?ms=1").await, (200, "raw wasi ok".into()));
    assert!(!slow.is_finished(), "the deploy waited for the in-flight request");
    assert_eq!(slow.await.unwrap(), (200, "slept 6000".into()));
}

/// Two nodes on one PostgreSQL database: a deploy, a rollback and a delete made through one
/// node's API take effect on the other within moments (LISTEN/NOTIFY), without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn deploys_reach_every_node() {
    let db = crate::support::Database::create(Backend::Postgres).await;
    let node = || Options { database_url: db.url.clone(), ..Default::default() };
    let (a, b) = (Server::start_with(node()).await, Server::start_with(node()).await);
    let c = components();

    async fn until(b: &Server, path: &str, expected: (u16, &str)) {
        let what = format!("node B answers {path} with {expected:?}");
        eventually(&what, std::time::Duration::from_secs(10), async || {
            let (status, body) = b.call(path).await;
            // An empty expected body means exactly empty (the echo component answers a GET so).
            let matches = if expected.1.is_empty() { body.is_empty() } else { body.contains(expected.1) };
            if status == expected.0 && (matches || expected.0 == 404) {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await
    }

    assert_eq!(b.call("/hello/x").await.0, 404);
    a.deploy_ok("greeter", c.bytes("hello"), spec(&["/hello/..."], json!({}))).await;
    until(&b, "/hello/bob", (200, "Hello, bob!")).await;
    a.deploy_ok("greeter", c.bytes("echo"), spec(&["/hello/..."], json!({}))).await;
    // Version 2 is the echo component: an empty body, where hello would greet.
    until(&b, "/hello/echoed", (200, "")).await;
    // Rollback on A: B serves version 1 again.
    let rolled =
        a.admin_request(reqwest::Method::POST, "/v1/functions/greeter/versions/1/activate").send().await.unwrap();
    assert_eq!(rolled.status(), 200);
    until(&b, "/hello/carol", (200, "Hello, carol!")).await;
    // Delete on A: gone on B.
    let deleted = a.admin_request(reqwest::Method::DELETE, "/v1/functions/greeter").send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    until(&b, "/hello/dave", (404, "")).await;
    assert!(b.logs().contains("changed on another node"), "{}", b.logs());
}

/// `server::run` serves on listeners it is handed and returns when its shutdown future
/// resolves, so a test (or an embedder) can run the whole platform in-process: deploy, call,
/// stop, all without a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_in_process_on_listeners_it_is_handed() {
    use clap::Parser;
    use faas_host::server::{Listeners, run};
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: faas_host::config::ServeConfig,
    }
    let dir = tempfile::tempdir().unwrap();
    let config = Cli::parse_from(["faas", "--data-dir", dir.path().to_str().unwrap()]).serve;
    let data = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (data_url, admin_url) =
        (format!("http://{}", data.local_addr().unwrap()), format!("http://{}", admin.local_addr().unwrap()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(config, Listeners { data, admin }, async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let deployed = eventually("the in-process server takes a deploy", Duration::from_secs(60), async || {
        let form = reqwest::multipart::Form::new()
            .text("config", spec(&["/hello"], json!({})).to_string())
            .part("component", reqwest::multipart::Part::bytes(components().bytes("hello")).file_name("f.wasm"));
        match http.post(format!("{admin_url}/v1/functions/hello/versions")).multipart(form).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("{} {}", response.status(), response.text().await.unwrap_or_default())),
            Err(error) => Err(error.to_string()),
        }
    });
    deployed.await;
    let response = http.get(format!("{data_url}/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.text().await.unwrap().is_empty());

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), server).await.expect("run returns after shutdown");
    result.unwrap().expect("run ends cleanly");
    assert!(http.get(format!("{data_url}/hello")).send().await.is_err(), "the data plane stopped listening");
}

/// SQLite serves one node: a second `faas serve` on the same database file refuses to start,
/// naming the process that has it and pointing at PostgreSQL; the first keeps serving.
#[tokio::test]
async fn a_second_node_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start_with(Options { data_dir: Some(dir.path().to_owned()), ..Default::default() }).await;
    let out = std::process::Command::new(crate::support::FAAS)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("FAAS_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second node started on the same SQLite file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another faas process") && stderr.contains("PostgreSQL"), "{stderr}");
    let (status, _) = first.get_json("/healthz").await;
    assert_eq!(status, 200, "the first node stopped serving");
}
