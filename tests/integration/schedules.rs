//! Cron schedules end to end with functions/nightly-report (a `scheduled-handler` whose ticks
//! each record one event, its id derived from the tick) and functions/job-worker (a schedule that
//! calls an HTTP route): one firing per tick (with two nodes on PostgreSQL, counted through the
//! event store over 10 s), the catch-up policies after a stop, and a tick whose node is killed
//! mid-run run again by another (or the restarted) node.

use crate::backend_tests;
use crate::support::{Backend, Database, Options, Server, components, error_of, eventually};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

backend_tests!(
    every_tick_fires_exactly_once,
    missed_ticks_follow_the_catch_up_policy,
    a_tick_killed_mid_run_runs_again,
    bad_schedules_are_refused,
);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn schedule_spec(cron: &str, catch_up: &str) -> Value {
    json!({ "triggers": { "schedules": [{ "cron": cron, "catch_up": catch_up }] }, "limits": { "timeout_ms": 4000 } })
}

/// The `ReportGenerated` events of a function (planned time → events), through the admin API.
async fn reports(server: &Server, function: &str) -> BTreeMap<i64, Vec<Value>> {
    let (status, body) = server.get_json(&format!("/v1/namespaces/{function}/streams/reports?max=10000")).await;
    let mut by_tick: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    if status == 404 {
        return by_tick;
    }
    assert_eq!(status, 200, "{body}");
    for event in body["events"].as_array().unwrap() {
        by_tick.entry(event["data"]["planned_at"].as_i64().unwrap()).or_default().push(event["data"].clone());
    }
    by_tick
}

async fn every_tick_fires_exactly_once(backend: Backend) {
    let db = Database::create(backend).await;
    let options = Options { database_url: db.url.clone(), ..Default::default() };
    let first = Server::start_with(options.clone()).await;
    // On PostgreSQL two nodes watch the same schedule; each tick must still fire once.
    let second = match backend {
        Backend::Postgres => Some(Server::start_with(options.clone()).await),
        Backend::Sqlite => None,
    };
    first.deploy_ok("nightly-report", components().bytes("nightly_report"), schedule_spec("* * * * * *", "last")).await;
    // An HTTP-only component on a schedule: GET on its route, with the tick in headers.
    let route = json!({ "triggers": { "http": ["/jobs/..."], "schedules": [{ "cron": "* * * * * *", "route": "/jobs/tick" }] } });
    first.deploy_ok("job-worker", components().bytes("job_worker"), route).await;
    let started = now_ms();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ended = now_ms();

    let by_tick = reports(&first, "nightly-report").await;
    // Every whole second of the window (but its edges) fired once: no gap, no duplicate.
    let expected: Vec<i64> = ((started / 1000 + 2)..(ended / 1000 - 1)).map(|s| s * 1000).collect();
    for tick in &expected {
        let events = by_tick.get(tick).map_or(0, Vec::len);
        assert_eq!(events, 1, "tick {tick} fired {events} times; all: {:?}", by_tick.keys().collect::<Vec<_>>());
    }
    assert!(by_tick.values().all(|e| e.len() == 1), "a tick fired twice: {by_tick:?}");
    assert!(by_tick.values().all(|e| e[0]["attempt"] == 1), "{by_tick:?}");
    let (_, report) = first.get_json("/v1/functions/nightly-report/schedule").await;
    let schedule = &report["schedules"][0];
    assert_eq!(schedule["next"].as_array().unwrap().len(), 5, "{report}");
    let runs = schedule["runs"].as_array().unwrap();
    assert!(runs.iter().take(5).all(|r| r["status"] == "succeeded" || r["status"] == "running"), "{report}");
    if let Some(second) = &second {
        // Both nodes see the same history (and ran ticks between them).
        let nodes: HashSet<&str> = runs.iter().filter_map(|r| r["node"].as_str()).collect();
        println!("ticks ran on {} node(s)", nodes.len());
        let (_, seen) = second.get_json("/v1/functions/nightly-report/schedule").await;
        assert_eq!(seen["schedules"][0]["runs"].as_array().unwrap().len(), runs.len());
    }

    let (status, ticks) = first.get_json("/v1/namespaces/job-worker/streams/ticks?max=10000").await;
    assert_eq!(status, 200, "{ticks}");
    let planned: Vec<&str> =
        ticks["events"].as_array().unwrap().iter().map(|e| e["data"]["planned_at"].as_str().unwrap()).collect();
    let unique: HashSet<&&str> = planned.iter().collect();
    assert!(planned.len() >= expected.len(), "the route was called {} times", planned.len());
    assert_eq!(unique.len(), planned.len(), "a route tick fired twice: {planned:?}");
    // The ticks' metrics are on the nodes that ran them.
    let mut metrics = first.metrics().await;
    if let Some(second) = &second {
        metrics += &second.metrics().await;
    }
    let ticks: Vec<&str> = metrics.lines().filter(|l| l.starts_with("faas_schedule_ticks_total")).collect();
    let succeeded = r#"faas_schedule_ticks_total{function="nightly-report",outcome="succeeded""#;
    assert!(ticks.iter().any(|l| l.starts_with(succeeded)), "{ticks:?}");
}

/// Milliseconds until the clock's position in a 5-second period is `at_ms`.
fn until_phase(at_ms: i64) -> Duration {
    let now = now_ms();
    Duration::from_millis(((at_ms - now % 5000) + 5000) as u64 % 5000)
}

async fn missed_ticks_follow_the_catch_up_policy(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { database_url: db.url.clone(), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut server = Server::start_with(options.clone()).await;
    let policies = ["none", "last", "all"];
    for policy in policies {
        let spec = schedule_spec("*/5 * * * * *", policy);
        server.deploy_ok(&format!("report-{policy}"), components().bytes("nightly_report"), spec).await;
    }
    // Each has fired at least once: the schedule has a history, and the gap is what follows.
    for policy in policies {
        eventually(&format!("report-{policy} fired"), Duration::from_secs(15), async || {
            let fired = reports(&server, &format!("report-{policy}")).await;
            if fired.is_empty() { Err("nothing yet") } else { Ok(()) }
        })
        .await;
    }
    // Stop right after a tick, stay down over two more, and come back 3 s after a tick: the
    // newest missed tick is then 3 s late, past the on-time window of `none`.
    tokio::time::sleep(until_phase(500)).await;
    server.terminate();
    let stopped = now_ms();
    tokio::time::sleep(Duration::from_secs(9)).await;
    tokio::time::sleep(until_phase(2600)).await;
    let restarted = now_ms();
    server = Server::start_with(options.clone()).await;
    let missed: Vec<i64> = ((stopped / 5000 + 1)..=(restarted / 5000)).map(|p| p * 5000).collect();
    assert!(missed.len() >= 2, "{missed:?}");
    let newest = *missed.last().unwrap();
    // Wait for the next on-time tick, after which the catch-up is long done.
    let next = (now_ms() / 5000 + 1) * 5000;
    for policy in policies {
        eventually(&format!("report-{policy} fired again on time"), Duration::from_secs(20), async || {
            let fired = reports(&server, &format!("report-{policy}")).await;
            if fired.contains_key(&next) { Ok(()) } else { Err(format!("{:?}", fired.keys().collect::<Vec<_>>())) }
        })
        .await;
    }
    let ran = |fired: &BTreeMap<i64, Vec<Value>>| -> Vec<i64> {
        missed.iter().copied().filter(|t| fired.contains_key(t)).collect()
    };
    let none = reports(&server, "report-none").await;
    assert_eq!(ran(&none), Vec::<i64>::new(), "none runs no missed tick");
    let last = reports(&server, "report-last").await;
    assert_eq!(ran(&last), vec![newest], "last runs the newest missed tick once");
    let all = reports(&server, "report-all").await;
    assert_eq!(ran(&all), missed, "all runs every missed tick");
    for fired in [&none, &last, &all] {
        assert!(fired.values().all(|e| e.len() == 1), "a tick fired twice: {fired:?}");
    }
    // The history says what was skipped.
    let (_, report) = server.get_json("/v1/functions/report-none/schedule").await;
    let runs = report["schedules"][0]["runs"].as_array().unwrap();
    assert!(
        runs.iter().any(|r| r["status"] == "skipped" && r["error"].as_str().unwrap().contains("skipped")),
        "{report}"
    );
}

async fn a_tick_killed_mid_run_runs_again(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { database_url: db.url.clone(), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    // On PostgreSQL the other node takes the tick over once its lease ends (timeout 4 s + 5 s);
    // on SQLite the node restarts and runs it again at once.
    let mut nodes = vec![Server::start_with(options.clone()).await];
    if backend == Backend::Postgres {
        nodes.push(Server::start_with(Options { data_dir: None, ..options.clone() }).await);
    }
    let spec = json!({
        "triggers": { "schedules": [{ "cron": "*/30 * * * * *" }] },
        "limits": { "timeout_ms": 4000 },
    });
    nodes[0].deploy_ok("nightly-report", components().bytes("nightly_report"), spec).await;
    let response = nodes[0]
        .admin_request(reqwest::Method::PATCH, "/v1/functions/nightly-report/config")
        .json(&json!({ "variables": { "work_ms": "2500" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Wait for a tick to be running, on whichever node claimed it, and kill that node.
    let (planned, owner) = eventually("a tick is running", Duration::from_secs(40), async || {
        let (_, report) = nodes[0].get_json("/v1/functions/nightly-report/schedule").await;
        let runs = report["schedules"][0]["runs"].as_array().cloned().unwrap_or_default();
        match runs.iter().find(|r| r["status"] == "running") {
            Some(run) => Ok((run["planned_at"].as_str().unwrap().to_owned(), run["node"].as_str().unwrap().to_owned())),
            None => Err(report),
        }
    })
    .await;
    let mut victim = None;
    for (i, node) in nodes.iter().enumerate() {
        if node.get_json("/healthz").await.1["node"] == owner.as_str() {
            victim = Some(i);
        }
    }
    let victim = victim.expect("the tick runs on one of the nodes");
    nodes[victim].kill();
    let watcher = if nodes.len() == 2 {
        1 - victim
    } else {
        nodes[0] = Server::start_with(options.clone()).await;
        0
    };
    let watcher = &nodes[watcher];
    let run = eventually("the tick ran again and succeeded", Duration::from_secs(40), async || {
        let (_, report) = watcher.get_json("/v1/functions/nightly-report/schedule").await;
        let runs = report["schedules"][0]["runs"].as_array().cloned().unwrap_or_default();
        match runs.into_iter().find(|r| r["planned_at"] == planned.as_str()) {
            Some(run) if run["status"] == "succeeded" => Ok(run),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(run["attempts"], 2, "{run}");
    let fired = reports(watcher, "nightly-report").await;
    assert!(fired.values().all(|e| e.len() == 1), "{fired:?}");
    let retried: Vec<&Value> = fired.values().flatten().filter(|e| e["attempt"] == 2).collect();
    assert_eq!(retried.len(), 1, "the killed tick recorded its report once, on its second run: {fired:?}");
}

async fn bad_schedules_are_refused(backend: Backend) {
    let server = Server::start(backend).await;
    let deploy = async |spec: Value| {
        let response = server.deploy("nightly-report", components().bytes("nightly_report"), spec).await;
        let status = response.status().as_u16();
        (status, error_of(&response.json().await.unwrap()).1)
    };
    let (status, message) = deploy(schedule_spec("61 * * * *", "last")).await;
    assert_eq!(status, 400);
    assert!(message.contains("61 * * * *"), "{message}");
    let (status, message) =
        deploy(json!({ "triggers": { "schedules": [{ "cron": "@daily", "tz": "Mars/Olympus" }] } })).await;
    assert_eq!(status, 400);
    assert!(message.contains("unknown time zone"), "{message}");
    let (status, message) =
        deploy(json!({ "triggers": { "schedules": [{ "cron": "@daily", "catch_up": "some" }] } })).await;
    assert_eq!(status, 400);
    assert!(message.contains("catch_up") || message.contains("some"), "{message}");
    let (status, message) =
        deploy(json!({ "triggers": { "schedules": [{ "cron": "@daily" }, { "cron": "@daily" }] } })).await;
    assert_eq!(status, 400);
    assert!(message.contains("twice"), "{message}");
    // A component without the export, and a route for one without an HTTP handler.
    let response = server
        .deploy(
            "job-worker",
            components().bytes("job_worker"),
            json!({ "triggers": { "schedules": [{ "cron": "@daily" }] } }),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(error_of(&response.json().await.unwrap()).1.contains("scheduled-handler"));
    let (status, message) =
        deploy(json!({ "triggers": { "schedules": [{ "cron": "@daily", "route": "/tick" }] } })).await;
    assert_eq!(status, 400);
    assert!(message.contains("incoming-handler"), "{message}");
    // The CLI flags build the same spec; a bad one is refused before anything is sent.
    let path = components().path("nightly_report");
    let out = server.cli(&[
        "deploy",
        "nightly-report",
        path.to_str().unwrap(),
        "--schedule",
        "@hourly",
        "--schedule-catch-up",
        "maybe",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown catch-up"), "{out:?}");
    let out = server.cli(&[
        "deploy",
        "nightly-report",
        path.to_str().unwrap(),
        "--schedule",
        "*/5 * * * *",
        "--schedule-tz",
        "Europe/Berlin",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = server.cli(&["schedule", "nightly-report"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schedules"][0]["tz"], "Europe/Berlin", "{report}");
    let (status, body) = server.get_json("/v1/functions/ghost/schedule").await;
    assert_eq!((status, error_of(&body).0.as_str()), (404, "not_found"));
}
