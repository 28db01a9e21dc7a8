//! Async invocations end to end with functions/job-worker: queued through the data plane
//! (`x-faas-invoke: async`) and the API, retried on 5xx, dead-lettered and replayed, deduped by
//! idempotency key, results POSTed to a callback; and the queue under kill -9 (on PostgreSQL
//! with two nodes sharing it): every invocation ends succeeded, its effect (an event whose id
//! comes from the invocation id) recorded once, and nothing runs again after it succeeded.

use crate::backend_tests;
use crate::support::{Backend, Database, Options, Server, components, error_of, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

backend_tests!(
    failures_are_retried_then_dead_lettered_and_replayed,
    idempotency_keys_and_callbacks,
    bad_async_requests_get_clear_errors,
    the_queue_survives_kill_9_and_runs_each_invocation_once,
);

async fn deploy_worker(server: &Server, extra: Value) {
    let mut spec = json!({ "triggers": { "http": ["/jobs/..."] }, "limits": { "timeout_ms": 5000 } });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    server.deploy_ok("job-worker", components().bytes("job_worker"), spec).await;
}

/// Queues a request through the data plane; returns (status, body, Location).
async fn enqueue(server: &Server, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value, String) {
    let mut request =
        server.http.post(format!("{}{path}", server.data)).header("x-faas-invoke", "async").body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("enqueue");
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, response.json().await.unwrap_or(Value::Null), location)
}

async fn finished(server: &Server, id: &str) -> Value {
    eventually(&format!("invocation {id} finished"), Duration::from_secs(60), async || {
        let (_, body) = server.get_json(&format!("/v1/invocations/{id}")).await;
        if ["succeeded", "failed", "dead"].contains(&body["status"].as_str().unwrap_or("")) {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await
}

async fn events(server: &Server, stream: &str) -> Vec<Value> {
    let (status, body) = server.get_json(&format!("/v1/namespaces/job-worker/streams/{stream}?max=10000")).await;
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

async fn failures_are_retried_then_dead_lettered_and_replayed(backend: Backend) {
    let server = Server::start(backend).await;
    deploy_worker(&server, json!({})).await;

    // Down for one attempt, then up: succeeded on the second, the response of that one kept.
    let (status, queued, location) = enqueue(&server, "/jobs/resize?fail_until=2", "img-1", &[]).await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (queued["status"].as_str(), location.as_str()),
        (Some("queued"), format!("/_faas/invocations/{id}").as_str())
    );
    let done = finished(&server, &id).await;
    assert_eq!((done["status"].as_str(), done["attempts"].as_u64()), (Some("succeeded"), Some(2)), "{done}");
    assert_eq!(done["response"]["status"], 200, "{done}");
    let answer: Value = serde_json::from_str(done["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!((answer["invocation"].as_str(), answer["attempt"].as_u64()), (Some(id.as_str()), Some(2)));
    // The data plane shows it to whoever holds the id.
    let (status, shown) = server.get_json_data(&location).await;
    assert_eq!((status, shown["status"].as_str()), (200, Some("succeeded")), "{shown}");
    assert_eq!(events(&server, "job-resize").await.len(), 1, "the job was done once");

    // A 4xx is the request's fault: failed at once, not retried.
    let (_, queued, _) = enqueue(&server, "/jobs/resize?status=422", "", &[]).await;
    let failed = finished(&server, queued["id"].as_str().unwrap()).await;
    assert_eq!((failed["status"].as_str(), failed["attempts"].as_u64()), (Some("failed"), Some(1)), "{failed}");
    assert_eq!(failed["response"]["status"], 422);

    // An outage longer than the attempts: dead after 3 (the default), kept and listable.
    let response = server
        .admin_request(Method::PATCH, "/v1/functions/job-worker/config")
        .json(&json!({ "variables": { "OUTAGE": "1" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, queued, _) = enqueue(&server, "/jobs/mail", "hello", &[]).await;
    let dead_id = queued["id"].as_str().unwrap().to_owned();
    let dead = finished(&server, &dead_id).await;
    assert_eq!((dead["status"].as_str(), dead["attempts"].as_u64()), (Some("dead"), Some(3)), "{dead}");
    assert!(dead["error"].as_str().unwrap().contains("503"), "{dead}");
    let (_, letters) = server.get_json("/v1/invocations?status=dead&function=job-worker").await;
    let letters: Vec<&str> =
        letters["invocations"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(letters, [dead_id.as_str()]);
    let cli = server.cli(&["invocations", "list", "--status", "dead"]);
    assert!(String::from_utf8_lossy(&cli.stdout).contains(&dead_id), "{cli:?}");

    // The outage is over: replayed, it runs from attempt 1 again and succeeds.
    let response = server
        .admin_request(Method::PATCH, "/v1/functions/job-worker/config")
        .json(&json!({ "unset": ["OUTAGE"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cli = server.cli(&["invocations", "replay", &dead_id]);
    assert!(cli.status.success(), "{cli:?}");
    let replayed = finished(&server, &dead_id).await;
    assert_eq!(replayed["status"], "succeeded", "{replayed}");
    assert_eq!((replayed["attempts"].as_u64(), replayed["replays"].as_u64()), (Some(1), Some(1)), "{replayed}");
    assert_eq!(events(&server, "job-mail").await.len(), 1);
    // Only dead or failed ones are replayed.
    let response =
        server.admin_request(Method::POST, &format!("/v1/invocations/{dead_id}/replay")).send().await.unwrap();
    assert_eq!(response.status(), 409);
    let (code, _) = error_of(&response.json().await.unwrap());
    assert_eq!(code, "not_replayable");

    let metrics = server.metrics().await;
    assert!(metrics.contains(r#"faas_async_invocations_total{function="job-worker",outcome="dead"} 1"#), "{metrics}");
    assert!(metrics.contains("faas_async_start_delay_seconds_bucket"), "{metrics}");
}

/// A receiver of result callbacks: answers `first` to the first delivery of each invocation,
/// then 200.
struct Receiver {
    origin: String,
    got: std::sync::Arc<parking_lot::Mutex<Vec<(axum::http::HeaderMap, Value)>>>,
}

impl Receiver {
    async fn start(first: u16) -> Self {
        let got: std::sync::Arc<parking_lot::Mutex<Vec<(axum::http::HeaderMap, Value)>>> = Default::default();
        let seen = got.clone();
        let app = axum::Router::new().route(
            "/results",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock();
                    let again = seen.iter().any(|(h, _)| h.get("idempotency-key") == headers.get("idempotency-key"));
                    seen.push((headers, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    axum::http::StatusCode::from_u16(if again { 200 } else { first }).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { origin, got }
    }
}

async fn idempotency_keys_and_callbacks(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start(503).await;
    deploy_worker(&server, json!({ "outbound": { "allow": [receiver.origin] } })).await;

    // The same key again: the same invocation (200, duplicate), queued once.
    let key = [("idempotency-key", "order-77")];
    let (status, first, _) = enqueue(&server, "/jobs/invoice", "o-77", &key).await;
    assert_eq!(status, 202, "{first}");
    let (status, again, _) = enqueue(&server, "/jobs/invoice", "o-77", &key).await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "{again}");
    assert_eq!(again["id"], first["id"]);
    // Through the API too (the key is per function): same invocation.
    let response = server
        .admin_request(Method::POST, "/v1/functions/job-worker/invocations?path=/jobs/invoice")
        .header("idempotency-key", "order-77")
        .body("o-77")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let via_api: Value = response.json().await.unwrap();
    assert_eq!(via_api["id"], first["id"], "{via_api}");
    // The key with another request is a conflict, not a silent second job.
    let (status, conflict, _) = enqueue(&server, "/jobs/invoice", "o-78", &key).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(error_of(&conflict).0, "idempotency_conflict");
    finished(&server, first["id"].as_str().unwrap()).await;
    assert_eq!(events(&server, "job-invoice").await.len(), 1);

    // A callback gets the result (its first delivery refused: retried), at least once, with the
    // invocation id as its idempotency key.
    let url = format!("{}/results", receiver.origin);
    let (status, queued, _) = enqueue(&server, "/jobs/report", "q3", &[("x-faas-callback", url.as_str())]).await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_str().unwrap().to_owned();
    let done = eventually("the callback was delivered", Duration::from_secs(30), async || {
        let (_, body) = server.get_json(&format!("/v1/invocations/{id}")).await;
        if body["callback"]["state"] == "delivered" { Ok(body) } else { Err(body) }
    })
    .await;
    assert_eq!(done["callback"]["attempts"], 2, "{done}");
    let got = receiver.got.lock().clone();
    assert_eq!(got.len(), 2, "the refused delivery and its retry");
    for (headers, result) in &got {
        assert_eq!(headers["idempotency-key"], id.as_str());
        assert_eq!(headers["x-faas-invocation-status"], "succeeded");
        assert_eq!(
            (result["id"].as_str(), result["status"].as_str()),
            (Some(id.as_str()), Some("succeeded")),
            "{result}"
        );
        assert_eq!(result["response"]["status"], 200, "{result}");
    }

    // A callback the function may not reach is refused when queued, with the reason.
    let (status, refused, _) =
        enqueue(&server, "/jobs/report", "", &[("x-faas-callback", "http://127.0.0.1:9/results")]).await;
    assert_eq!(status, 400, "{refused}");
    let (code, message) = error_of(&refused);
    assert_eq!(code, "callback_not_allowed");
    assert!(message.contains("allow-list"), "{message}");
}

async fn bad_async_requests_get_clear_errors(backend: Backend) {
    let server = Server::start(backend).await;
    deploy_worker(&server, json!({ "limits": { "timeout_ms": 5000, "max_body_bytes": 1024 } })).await;
    server
        .deploy_ok(
            "nightly-report",
            components().bytes("nightly_report"),
            json!({ "triggers": { "schedules": [{ "cron": "@yearly" }] } }),
        )
        .await;

    let response =
        server.http.post(format!("{}/jobs/x", server.data)).header("x-faas-invoke", "later").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(error_of(&response.json().await.unwrap()).1.contains("x-faas-invoke"));
    let (status, body, _) = enqueue(&server, "/jobs/x", &"x".repeat(2048), &[]).await;
    assert_eq!((status, error_of(&body).0.as_str()), (413, "body_too_large"), "{body}");
    let (status, body, _) = enqueue(&server, "/jobs/x", "", &[("idempotency-key", &"k".repeat(300))]).await;
    assert_eq!((status, error_of(&body).0.as_str()), (400, "invalid_request"), "{body}");
    let (status, body, _) = enqueue(&server, "/jobs/x", "", &[("x-faas-callback", "not a url")]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = enqueue(&server, "/nowhere", "", &[]).await;
    assert_eq!(status, 404, "{body}");

    let post = |path: &str| server.admin_request(Method::POST, path).body("");
    let response = post("/v1/functions/ghost/invocations").send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = post("/v1/functions/nightly-report/invocations").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let (code, message) = error_of(&response.json().await.unwrap());
    assert_eq!(code, "not_http", "{message}");
    let response = post("/v1/functions/job-worker/invocations?method=NOT%20A%20METHOD").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let (status, body) = server.get_json("/v1/invocations/no-such-id").await;
    assert_eq!((status, error_of(&body).0.as_str()), (404, "not_found"));
    let (status, body) = server.get_json("/v1/invocations?status=lost").await;
    assert_eq!((status, error_of(&body).0.as_str()), (400, "invalid_status"), "{body}");
    let (status, body) = server.get_json_data("/_faas/invocations/no-such-id").await;
    assert_eq!((status, error_of(&body).0.as_str()), (404, "not_found"));
    // `/_faas/` is the platform's: no function may take routes there.
    let response = server
        .deploy("squatter", components().bytes("job_worker"), json!({ "triggers": { "http": ["/_faas/..."] } }))
        .await;
    assert_eq!(response.status(), 400);
    // Deploy-time limits of the retry policy.
    let response =
        server.deploy("job-worker", components().bytes("job_worker"), json!({ "async": { "max_attempts": 0 } })).await;
    assert_eq!(response.status(), 400);
    assert!(error_of(&response.json().await.unwrap()).1.contains("max_attempts"));
}

/// How many invocations the crash test queues (through the node it kills).
const BULK: usize = 1000;

/// Queues `count` jobs, 32 requests at a time; returns their ids.
async fn enqueue_many(server: &Server, count: usize) -> Vec<String> {
    use futures::StreamExt as _;
    futures::stream::iter(0..count)
        .map(|i| async move {
            let (status, queued, _) = enqueue(server, "/jobs/bulk?trace=1&work_ms=100", &format!("job-{i}"), &[]).await;
            assert_eq!(status, 202, "{queued}");
            queued["id"].as_str().unwrap().to_owned()
        })
        .buffer_unordered(32)
        .collect()
        .await
}

async fn the_queue_survives_kill_9_and_runs_each_invocation_once(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { database_url: db.url.clone(), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut victim = Server::start_with(options.clone()).await;
    // On PostgreSQL a second node shares the queue and keeps working while the first is down.
    let other = match backend {
        Backend::Postgres => Some(Server::start_with(Options { data_dir: None, ..options.clone() }).await),
        Backend::Sqlite => None,
    };
    deploy_worker(
        &victim,
        json!({ "async": { "max_attempts": 5 }, "limits": { "timeout_ms": 5000, "max_concurrency": 16, "max_queue": 1000 } }),
    )
    .await;
    if let Some(other) = &other {
        eventually("the second node has the worker", Duration::from_secs(30), async || {
            let (status, body) = other.call("/jobs/").await;
            if status == 404 && body.contains("POST /jobs") { Ok(()) } else { Err(format!("{status} {body}")) }
        })
        .await;
    }

    // Three rounds of queueing (faster than the worker runs them, so a backlog builds), with
    // kill -9 of the victim in the middle of the backlog after the first two; on PostgreSQL,
    // invocations are queued through the other node while the victim is down.
    let mut ids: Vec<String> = Vec::with_capacity(BULK + 100);
    for round in 0..3 {
        let count = if round == 2 { BULK - 2 * (BULK / 3) } else { BULK / 3 };
        ids.extend(enqueue_many(&victim, count).await);
        if round == 2 {
            break;
        }
        let running = eventually("attempts are running on the victim", Duration::from_secs(10), async || {
            let (_, running) = victim.get_json("/v1/invocations?status=running&limit=1000").await;
            let n = running["invocations"].as_array().map_or(0, Vec::len);
            if n >= 10 { Ok(n) } else { Err(n) }
        })
        .await;
        println!("kill -9 with {running} running");
        victim.kill();
        if let Some(other) = &other {
            ids.extend(enqueue_many(other, 50).await);
        }
        victim = Server::start_with(options.clone()).await;
    }

    // Every invocation ends succeeded, exactly one JobDone each (ids from the invocation id).
    let watcher = other.as_ref().unwrap_or(&victim);
    let statuses = eventually("every invocation finished", Duration::from_secs(180), async || {
        let mut statuses: HashMap<String, Value> = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/invocations?function=job-worker&limit=1000&after={a}"),
                None => "/v1/invocations?function=job-worker&limit=1000".to_owned(),
            };
            let (_, page) = watcher.get_json(&path).await;
            for invocation in page["invocations"].as_array().unwrap() {
                statuses.insert(invocation["id"].as_str().unwrap().to_owned(), invocation.clone());
            }
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        let open =
            statuses.values().filter(|s| !["succeeded", "dead"].contains(&s["status"].as_str().unwrap())).count();
        if statuses.len() == ids.len() && open == 0 {
            Ok(statuses)
        } else {
            Err(format!("{} known, {open} open", statuses.len()))
        }
    })
    .await;
    for id in &ids {
        let invocation = &statuses[id];
        assert_eq!(invocation["status"], "succeeded", "{invocation}");
    }
    let done = events(watcher, "job-bulk").await;
    let done_ids: Vec<&str> = done.iter().map(|e| e["data"]["invocation"].as_str().unwrap()).collect();
    let unique: HashSet<&str> = done_ids.iter().copied().collect();
    assert_eq!(done_ids.len(), ids.len(), "one JobDone per invocation");
    assert_eq!(unique, ids.iter().map(String::as_str).collect::<HashSet<_>>());

    // Runs: at most one per recorded attempt, and none after success (nothing runs again).
    let runs = events(watcher, "runs-bulk").await;
    let mut per: HashMap<&str, u64> = HashMap::new();
    for run in &runs {
        *per.entry(run["data"]["invocation"].as_str().unwrap()).or_default() += 1;
    }
    for id in &ids {
        let attempts = statuses[id]["attempts"].as_u64().unwrap();
        assert!(
            per.get(id.as_str()).copied().unwrap_or(0) <= attempts,
            "{id} ran more often than its {attempts} attempts"
        );
    }
    let retried = ids.iter().filter(|id| statuses[*id]["attempts"].as_u64().unwrap() > 1).count();
    println!("{} runs for {} invocations, {retried} needed another attempt after a kill", runs.len(), ids.len());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(events(watcher, "runs-bulk").await.len(), runs.len(), "something ran after every invocation succeeded");
}
