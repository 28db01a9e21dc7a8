//! `faas logs` and `GET /v1/functions/{name}/logs`: a function's guest output, invocation
//! records and the host's warnings about it (a trap), filtered by request id, version and age,
//! and followed live (`-f`, server-sent events); bad filters get the one error shape.

use crate::support::{Backend, Database, FAAS, Options, Server, components, eventually, spec};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

async fn call(server: &Server, path: &str, request_id: &str) -> u16 {
    let response =
        server.http.get(format!("{}{path}", server.data)).header("x-request-id", request_id).send().await.unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn logs_hold_guest_output_invocations_and_traps_per_function() {
    let server = Server::start_with(Options { token: Some("logs-token".into()), ..Default::default() }).await;
    server.deploy_ok("misbehave", components().bytes("misbehave"), spec(&["/misbehave/..."], json!({}))).await;
    server.deploy_ok("hello", components().bytes("hello"), spec(&["/hello/..."], json!({}))).await;
    assert_eq!(call(&server, "/misbehave/print?tag=t1", "req-1").await, 200);
    assert_eq!(call(&server, "/misbehave/panic", "req-2").await, 500);
    assert_eq!(call(&server, "/hello", "req-3").await, 200);

    let records = eventually("the records are kept", Duration::from_secs(10), async || {
        let (_, body) = server.get_json("/v1/functions/misbehave/logs").await;
        let logs = body["logs"].as_array().cloned().unwrap_or_default();
        if logs.iter().any(|r| r["request_id"] == "req-2" && r["kind"] == "invocation") { Ok(logs) } else { Err(body) }
    })
    .await;
    let of = |id: &str, kind: &str| records.iter().find(|r| r["request_id"] == id && r["kind"] == kind).cloned();
    assert_eq!(of("req-1", "stdout").unwrap()["line"], "stdout line t1");
    assert_eq!(of("req-1", "stderr").unwrap()["line"], "stderr line t1");
    let ok = of("req-1", "invocation").unwrap();
    assert_eq!(
        (ok["status"].as_u64(), ok["version"].as_u64(), ok["trigger"].as_str()),
        (Some(200), Some(1), Some("http"))
    );
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(of("req-2", "invocation").unwrap()["status"], 500);
    let trap = of("req-2", "host").expect("the trap is in the function's log");
    assert!(trap["line"].as_str().unwrap().contains("function trapped"), "{trap}");
    assert_eq!(trap["level"], "error");
    assert!(
        records.iter().any(|r| r["request_id"] == "req-2"
            && r["kind"] == "stderr"
            && r["line"].as_str().unwrap().contains("deliberate panic")),
        "the guest's panic message: {records:?}"
    );
    assert!(records.iter().all(|r| r["function"] == "misbehave"), "only this function's records: {records:?}");
    assert!(records.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()), "oldest first");

    // Filters.
    let (_, one) = server.get_json("/v1/functions/misbehave/logs?request_id=req-1").await;
    let kinds: Vec<&str> = one["logs"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["stdout", "stderr", "invocation"], "{one}");
    assert_eq!(server.get_json("/v1/functions/misbehave/logs?version=2").await.1["logs"], json!([]));
    let (_, last) = server.get_json("/v1/functions/misbehave/logs?limit=1").await;
    assert_eq!(last["logs"].as_array().unwrap().len(), 1);
    assert_eq!(
        server.get_json("/v1/functions/misbehave/logs?since=1h").await.1["logs"].as_array().unwrap().len(),
        records.len()
    );
    for (query, status, code) in [
        ("?since=yesterday", 400, "invalid_query"),
        ("?limit=0", 400, "invalid_limit"),
        ("?colour=red", 400, "invalid_query"),
    ] {
        let (got, body) = server.get_json(&format!("/v1/functions/misbehave/logs{query}")).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{query}: {body}");
    }
    let (status, body) = server.get_json("/v1/functions/nobody/logs").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");

    // The CLI prints one line per record.
    let out = server.cli(&["logs", "misbehave", "--request-id", "req-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.lines().count(), 3, "{printed}");
    assert!(printed.contains("v1 stdout     [req-1] stdout line t1"), "{printed}");
    assert!(printed.contains("[req-1] http 200 in "), "{printed}");
    let out = server.cli(&["logs", "misbehave", "--since", "soon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("since=`soon`"), "{}", String::from_utf8_lossy(&out.stderr));

    // A deleted function's records go with it.
    assert_eq!(
        server.admin_request(reqwest::Method::DELETE, "/v1/functions/misbehave").send().await.unwrap().status(),
        204
    );
    assert_eq!(server.get_json("/v1/functions/misbehave/logs").await.0, 404);
}

#[tokio::test]
async fn logs_follow_prints_new_records_as_they_happen() {
    let server = Server::start_with(Options { token: Some("logs-token".into()), ..Default::default() }).await;
    server.deploy_ok("misbehave", components().bytes("misbehave"), spec(&["/misbehave/..."], json!({}))).await;
    assert_eq!(call(&server, "/misbehave/print?tag=before", "req-a").await, 200);
    let (mut follower, received) = follow(&server, "logs-token");
    let next_line = |what: &str| -> Value {
        received.recv_timeout(Duration::from_secs(15)).unwrap_or_else(|_| panic!("no line for {what}"))
    };
    // The backlog first...
    assert_eq!(next_line("the backlog")["line"], "stdout line before");
    let mut seen = vec![next_line("the backlog"), next_line("the backlog")];
    assert_eq!(seen[1]["kind"], "invocation", "{seen:?}");
    // ...then what happens from now on, for this function only.
    assert_eq!(call(&server, "/misbehave/print?tag=after", "req-b").await, 200);
    seen.clear();
    while seen.len() < 3 {
        seen.push(next_line("a live record"));
    }
    assert!(seen.iter().all(|r| r["request_id"] == "req-b"), "{seen:?}");
    assert_eq!(seen[0]["line"], "stdout line after");
    assert_eq!(seen[2]["status"], 200);
    follower.kill().unwrap();
    follower.wait().unwrap();
}

/// `faas logs misbehave -f --json` against `server`: the process, and its lines as they come.
fn follow(server: &Server, token: &str) -> (std::process::Child, std::sync::mpsc::Receiver<Value>) {
    let mut follower = Command::new(FAAS)
        .args(["logs", "misbehave", "-f", "--json"])
        .env("FAAS_ADMIN_URL", &server.admin)
        .env("FAAS_ADMIN_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel::<Value>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(serde_json::from_str(&line).unwrap_or(Value::String(line))).is_err() {
                break;
            }
        }
    });
    (follower, received)
}

/// Two nodes on one PostgreSQL: either one shows the records of both, each naming its node, and
/// follows both; a node that stopped answering is named, not fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_database_each_node_shows_and_follows_the_logs_of_all() {
    let db = Database::create(Backend::Postgres).await;
    let options = Options { database_url: db.url.clone(), token: Some("shared-token".into()), ..Default::default() };
    let a = Server::start_with(options.clone()).await;
    let mut b = Server::start_with(options).await;
    let node = async |server: &Server| server.get_json("/healthz").await.1["node"].as_str().unwrap().to_owned();
    let (a_id, b_id) = (node(&a).await, node(&b).await);
    a.deploy_ok("misbehave", components().bytes("misbehave"), spec(&["/misbehave/..."], json!({}))).await;
    eventually("the other node serves the function", Duration::from_secs(30), async || {
        let status = call(&b, "/misbehave/print?tag=warm-up", "req-warm").await;
        if status == 200 { Ok(()) } else { Err(status) }
    })
    .await;
    assert_eq!(call(&a, "/misbehave/print?tag=on-a", "req-on-a").await, 200);
    assert_eq!(call(&b, "/misbehave/print?tag=on-b", "req-on-b").await, 200);

    let (_, body) = a.get_json("/v1/functions/misbehave/logs").await;
    let logs = body["logs"].as_array().unwrap();
    let line = |text: &str| logs.iter().find(|r| r["line"] == text).unwrap_or_else(|| panic!("no `{text}`: {body}"));
    assert_eq!(line("stdout line on-a")["node"], a_id.as_str());
    assert_eq!(line("stdout line on-b")["node"], b_id.as_str(), "the other node's record, through this one");
    let times: Vec<i64> = logs.iter().map(|r| r["at_ms"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first across nodes: {times:?}");
    let nodes: Vec<(&str, bool)> =
        body["nodes"].as_array().unwrap().iter().map(|n| (n["node"].as_str().unwrap(), n["ok"] == true)).collect();
    assert_eq!(nodes, [(a_id.as_str(), true), (b_id.as_str(), true)], "{body}");
    let (_, local) = a.get_json("/v1/functions/misbehave/logs?local=true").await;
    assert!(local["logs"].as_array().unwrap().iter().all(|r| r["node"] == a_id.as_str()), "{local}");
    // The CLI through the other node shows the same.
    let out = b.cli(&["logs", "misbehave", "--request-id", "req-on-a"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stdout line on-a"));

    // Following through A: what happens on B arrives too.
    let (mut follower, received) = follow(&a, "shared-token");
    assert_eq!(call(&b, "/misbehave/print?tag=live", "req-live").await, 200);
    let live = loop {
        let record = received.recv_timeout(Duration::from_secs(20)).expect("B's live record through A");
        if record["line"] == "stdout line live" {
            break record;
        }
    };
    assert_eq!(live["node"], b_id.as_str());
    follower.kill().unwrap();
    follower.wait().unwrap();

    // B is gone but its heartbeat is still recent: A says so and shows its own records.
    b.kill();
    let (status, body) = a.get_json("/v1/functions/misbehave/logs").await;
    assert_eq!(status, 200, "{body}");
    let missing = body["nodes"].as_array().unwrap().iter().find(|n| n["node"] == b_id.as_str()).cloned();
    assert_eq!(missing.as_ref().map(|n| n["ok"] == false), Some(true), "{body}");
    assert!(body["logs"].as_array().unwrap().iter().any(|r| r["line"] == "stdout line on-a"), "{body}");
}

/// Every trigger leaves an invocation record, not only the data plane: saga steps (a refused
/// one with its reason) and async invocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_and_async_invocations_have_invocation_records_too() {
    let server = Server::start_with(Options::default()).await;
    crate::sagas::shop(&server).await;
    server.deploy_ok("hello", components().bytes("hello"), spec(&["/hello/..."], json!({}))).await;
    assert_eq!(server.post("/payments/accounts/dora/deposit?amount=100").await.0, 200);
    // Nothing in stock: the payment succeeds, the reservation is refused, the payment refunded.
    let order =
        json!({ "order_id": "o-l1", "customer": "dora", "sku": "none", "qty": 1, "amount": 10, "address": "x" });
    let (status, body) = server.post_json("/orders", &order).await;
    assert_eq!(status, 409, "{body}");
    let saga = body["saga_id"].as_str().unwrap().to_owned();

    let records = |function: &'static str| {
        let server = &server;
        async move {
            let (_, body) = server.get_json(&format!("/v1/functions/{function}/logs")).await;
            let all = body["logs"].as_array().cloned().unwrap_or_default();
            all.into_iter().filter(|r| r["kind"] == "invocation").collect::<Vec<Value>>()
        }
    };
    let payments = records("payments").await;
    let triggers: Vec<(&str, &str, u64)> = payments
        .iter()
        .map(|r| (r["trigger"].as_str().unwrap(), r["request_id"].as_str().unwrap(), r["status"].as_u64().unwrap()))
        .filter(|(trigger, ..)| *trigger == "step")
        .collect();
    let (deduct, refund) = (format!("{saga}/payment#1"), format!("{saga}/payment/compensation#1"));
    assert_eq!(triggers, [("step", deduct.as_str(), 200), ("step", refund.as_str(), 200)], "{payments:?}");
    let inventory = records("inventory").await;
    let refused = inventory.iter().find(|r| r["trigger"] == "step").unwrap_or_else(|| panic!("{inventory:?}"));
    assert_eq!((refused["status"].as_u64(), refused["level"].as_str()), (Some(500), Some("warn")), "{refused}");
    assert!(refused["line"].as_str().unwrap().contains("stock"), "the refusal says why: {refused}");

    let response =
        server.http.post(format!("{}/hello", server.data)).header("x-faas-invoke", "async").send().await.unwrap();
    assert_eq!(response.status(), 202);
    let queued = eventually("the async invocation's record", Duration::from_secs(20), async || {
        let hello = records("hello").await;
        match hello.iter().find(|r| r["trigger"] == "async") {
            Some(found) => Ok(found.clone()),
            None => Err(format!("{hello:?}")),
        }
    })
    .await;
    assert_eq!(queued["status"], 200, "{queued}");
}
