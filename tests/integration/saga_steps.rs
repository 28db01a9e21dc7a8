//! Saga steps the host runs itself, with functions/trial-signup: an HTTP call (the welcome
//! mail), a durable timer (the trial) and a second HTTP call (the charge), against a billing
//! server this test runs, which fails twice before it accepts. The host is killed -9 while the
//! timer waits: the saga resumes, waits only for what was left, and charges once (every attempt
//! with the same idempotency key and the secret, which never reaches the journal or the log).
//! A refused charge (402) compensates the welcome.

use crate::backend_tests;
use crate::support::{Backend, Database, Options, Server, components, eventually};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

backend_tests!(a_trial_waits_through_a_crash_then_charges_once, a_refused_charge_undoes_the_welcome);

const BILLING_KEY: &str = "sk_test_4f1d9b0c7e";

type Calls = std::sync::Arc<parking_lot::Mutex<Vec<(String, axum::http::HeaderMap, Value, Instant)>>>;

/// Mail and billing in one: `/send` and `/cancel` answer 200; `/charge` answers 503 twice
/// per customer, then 201, except to `broke-*` customers (402).
struct Upstream {
    origin: String,
    calls: Calls,
}

impl Upstream {
    async fn start() -> Self {
        let calls: Calls = Default::default();
        let seen = calls.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let path = uri.path().to_owned();
                    let mut seen = seen.lock();
                    let customer = body["customer"].as_str().unwrap_or("").to_owned();
                    let earlier =
                        seen.iter().filter(|(p, _, b, _)| *p == path && b["customer"] == customer.as_str()).count();
                    seen.push((path.clone(), headers, body, Instant::now()));
                    let status = match path.as_str() {
                        "/charge" if customer.starts_with("broke-") => 402,
                        "/charge" if earlier < 2 => 503,
                        "/charge" => 201,
                        _ => 200,
                    };
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { origin, calls }
    }

    fn calls(&self, path: &str) -> Vec<(axum::http::HeaderMap, Value, Instant)> {
        self.calls.lock().iter().filter(|(p, ..)| p == path).map(|(_, h, b, at)| (h.clone(), b.clone(), *at)).collect()
    }
}

async fn deploy(server: &Server, upstream: &Upstream) {
    let spec =
        json!({ "triggers": { "http": ["/signup", "/signup/..."] }, "outbound": { "allow": [upstream.origin] } });
    let form = reqwest::multipart::Form::new()
        .text("config", spec.to_string())
        .text(
            "values",
            json!({
                "variables": { "MAIL_URL": upstream.origin, "BILLING_URL": upstream.origin },
                "secrets": { "BILLING_KEY": BILLING_KEY },
            })
            .to_string(),
        )
        .part("component", reqwest::multipart::Part::bytes(components().bytes("trial_signup")).file_name("f.wasm"));
    let response = server
        .admin_request(reqwest::Method::POST, "/v1/functions/trial-signup/versions")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{:?}", response.text().await);
}

async fn settled(server: &Server, id: &str, limit: Duration) -> Value {
    eventually(&format!("saga {id} settled"), limit, async || {
        let (_, saga) = server.get_json(&format!("/v1/sagas/{id}")).await;
        if ["completed", "compensated", "stuck"].contains(&saga["status"].as_str().unwrap_or("")) {
            Ok(saga)
        } else {
            Err(saga)
        }
    })
    .await
}

async fn a_trial_waits_through_a_crash_then_charges_once(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    // Short node timeouts: on PostgreSQL the saga moves to the other node once its owner's
    // heartbeat stops (the owner is not restarted there); on SQLite it restarts and resumes.
    let extra_args = ["--node-timeout", "2s", "--recovery-interval", "300ms"].map(str::to_owned).to_vec();
    let options = Options {
        database_url: db.url.clone(),
        data_dir: Some(dir.path().to_owned()),
        extra_args,
        ..Default::default()
    };
    let mut server = Server::start_with(options.clone()).await;
    let other = match backend {
        Backend::Postgres => Some(Server::start_with(Options { data_dir: None, ..options.clone() }).await),
        Backend::Sqlite => None,
    };
    let upstream = Upstream::start().await;
    // On PostgreSQL the deploy reaches the other node by LISTEN/NOTIFY and compiles there; on a
    // loaded machine that may take longer than the takeover. Its step then waits for the
    // function to load rather than failing an attempt (the three charge attempts below).
    deploy(&server, &upstream).await;

    // Long enough that the crash and restart (seconds on a loaded machine) end inside it:
    // a timer that started over then ends a whole trial after the kill, far from its end.
    let trial = Duration::from_secs(8);
    let started = Instant::now();
    let (status, body) = server
        .post_json("/signup", &json!({ "user": "u-1", "plan": "pro", "trial_ms": trial.as_millis() as u64 }))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["saga"].as_str().unwrap().to_owned();
    // The welcome went out; the saga waits in the timer step. Kill the host there.
    eventually("the saga waits in its trial", Duration::from_secs(10), async || {
        let (_, saga) = server.get_json(&format!("/v1/sagas/{id}")).await;
        let trial = &saga["steps"][1];
        if trial["status"] == "running" { Ok(()) } else { Err(saga) }
    })
    .await;
    assert_eq!(upstream.calls("/send").len(), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill();
    // Nothing can resume the saga before this: a timer counted from the resumption ends at
    // least a whole trial after it.
    let killed = started.elapsed();
    if other.is_none() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server = Server::start_with(options.clone()).await;
    }
    let server = other.as_ref().unwrap_or(&server);
    let saga = settled(server, &id, Duration::from_secs(30)).await;
    assert_eq!(saga["status"], "completed", "{saga}");

    // The charge came after the trial (counted from the step's start, not from the restart),
    // three attempts (503, 503, 201), each with the saga's idempotency key and the secret.
    let charges = upstream.calls("/charge");
    assert_eq!(charges.len(), 3, "{charges:?}");
    let first_charge = charges[0].2.duration_since(started);
    assert!(first_charge >= trial, "charged after {first_charge:?}, before the {trial:?} trial ended");
    assert!(
        first_charge < killed + trial,
        "the timer started over after the crash (killed at {killed:?}): charged after {first_charge:?}"
    );
    if let Some(other) = &other {
        let node = other.get_json("/healthz").await.1["node"].clone();
        assert_eq!(saga["owner"], node, "the other node took the waiting saga over: {saga}");
    }
    for (headers, body, _) in &charges {
        assert_eq!(headers["idempotency-key"], format!("{id}/charge").as_str());
        assert_eq!(headers["authorization"], format!("Bearer {BILLING_KEY}").as_str());
        assert_eq!((body["customer"].as_str(), body["saga"].as_str()), (Some("u-1"), Some(id.as_str())), "{body}");
    }
    let steps = saga["steps"].as_array().unwrap();
    assert_eq!(steps[2]["attempts"], 3, "{saga}");
    assert_eq!(upstream.calls("/send").len(), 1, "the welcome was sent once");
    assert!(!saga.to_string().contains(BILLING_KEY), "the secret is in the saga's journal");
    assert!(!server.logs().contains(BILLING_KEY), "the secret is in the server log");
    // The same user again: the same saga, nothing sent again.
    let (_, again) = server
        .post_json("/signup", &json!({ "user": "u-1", "plan": "pro", "trial_ms": trial.as_millis() as u64 }))
        .await;
    assert_eq!(again["saga"], id.as_str());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.calls("/charge").len(), 3);
}

async fn a_refused_charge_undoes_the_welcome(backend: Backend) {
    let server = Server::start(backend).await;
    let upstream = Upstream::start().await;
    deploy(&server, &upstream).await;
    let (status, body) = server.post_json("/signup", &json!({ "user": "broke-1", "trial_ms": 200 })).await;
    assert_eq!(status, 202, "{body}");
    let id = body["saga"].as_str().unwrap().to_owned();
    let saga = settled(&server, &id, Duration::from_secs(30)).await;
    assert_eq!(saga["status"], "compensated", "{saga}");
    assert!(saga["error"].as_str().unwrap().contains("402"), "{saga}");
    assert_eq!(upstream.calls("/charge").len(), 1, "a 402 is not retried");
    let cancels = upstream.calls("/cancel");
    assert_eq!(cancels.len(), 1, "the welcome was undone");
    assert_eq!(cancels[0].0["idempotency-key"], format!("{id}/welcome/compensation").as_str());
    let (status, shown) = server.get_json_data(&format!("/signup/{id}")).await;
    assert_eq!((status, shown["status"].as_str()), (200, Some("compensated")), "{shown}");
}
