//! Event sourcing end to end: the bank-account example under concurrent load, and subscriptions
//! (ordering, retries, parking, restarts), on SQLite and PostgreSQL.

use crate::backend_tests;
use crate::support::{Backend, Database, Options, Server, components, eventually};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

backend_tests!(
    concurrent_clients_agree_with_projection_and_replay,
    failing_events_are_retried_parked_and_replayable,
    checkpoints_and_parked_events_survive_a_restart
);

fn bank_spec() -> Value {
    json!({
        "triggers": { "http": ["/accounts/..."], "subscriptions": [{ "stream": "account-*" }] },
        "limits": { "max_concurrency": 64, "max_queue": 1000 },
    })
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let response = server.http.post(format!("{}{path}", server.data)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = server.http.get(format!("{}{path}", server.data)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until every subscription of `function` has delivered everything (lag 0).
async fn caught_up(server: &Server, function: &str) -> Value {
    eventually(&format!("the subscriptions of {function} catch up"), Duration::from_secs(20), async || {
        let (_, status) = server.get_json(&format!("/v1/functions/{function}/subscriptions")).await;
        let subs = status["subscriptions"].as_array().cloned().unwrap_or_default();
        if !subs.is_empty() && subs.iter().all(|s| s["lag"] == 0 && s["checkpoint"].is_u64()) {
            Ok(status)
        } else {
            Err(format!("{status}\n{}", server.logs()))
        }
    })
    .await
}

async fn concurrent_clients_agree_with_projection_and_replay(backend: Backend) {
    const ACCOUNTS: usize = 8;
    const CLIENTS: usize = 64;
    const OPS_PER_CLIENT: usize = 12;
    let server = Server::start(backend).await;
    server.deploy_ok("bank", components().bytes("bank-account"), bank_spec()).await;
    for a in 0..ACCOUNTS {
        let (status, body) = post(&server, &format!("/accounts/acc{a}/open"), json!({"owner": format!("o{a}")})).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = post(&server, &format!("/accounts/acc{a}/deposit"), json!({"amount": 500})).await;
        assert_eq!(status, 200, "{body}");
    }
    // A reopen is refused, as a value, not a crash.
    assert_eq!(post(&server, "/accounts/acc0/open", json!({"owner": "x"})).await.0, 409);

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, data) = (server.http.clone(), server.data.clone());
            tokio::spawn(async move {
                // (account, signed amount) of every operation the server accepted.
                let mut accepted = Vec::new();
                let mut conflicts = 0;
                let mut seed = (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for _ in 0..OPS_PER_CLIENT {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let account = (seed % ACCOUNTS as u64) as usize;
                    let amount = (seed >> 8) % 120 + 1;
                    let (kind, sign) =
                        if (seed >> 40).is_multiple_of(2) { ("deposit", 1i64) } else { ("withdraw", -1) };
                    loop {
                        let url = format!("{data}/accounts/acc{account}/{kind}");
                        let response = http.post(&url).json(&json!({"amount": amount})).send().await.unwrap();
                        match response.status().as_u16() {
                            200 => {
                                accepted.push((account, sign * amount as i64));
                                break;
                            }
                            409 => conflicts += 1,
                            422 => break,
                            other => panic!("{url}: {other} {}", response.text().await.unwrap()),
                        }
                    }
                }
                (accepted, conflicts)
            })
        })
        .collect();
    let mut expected = [500i64; ACCOUNTS];
    let mut operations = [1usize; ACCOUNTS];
    let mut conflicts = 0;
    for client in clients {
        let (accepted, c) = client.await.unwrap();
        conflicts += c;
        for (account, delta) in accepted {
            expected[account] += delta;
            operations[account] += 1;
        }
    }
    assert!(conflicts > 0, "64 clients on 8 accounts should have raced at least once");

    caught_up(&server, "bank").await;
    let mut all_ids = HashSet::new();
    for a in 0..ACCOUNTS {
        let (_, projected) = get(&server, &format!("/accounts/acc{a}")).await;
        let (_, replayed) = get(&server, &format!("/accounts/acc{a}/replay")).await;
        assert_eq!(projected["balance"], expected[a], "projection of acc{a}");
        assert_eq!(replayed["balance"], expected[a], "replay of acc{a}");
        assert!(expected[a] >= 0, "no overdraft");
        // Every accepted operation is exactly one event: none lost, none duplicated.
        let (_, stream) = server.get_json(&format!("/v1/namespaces/bank/streams/account-acc{a}?max=10000")).await;
        let events = stream["events"].as_array().unwrap();
        assert_eq!(events.len(), operations[a] + 1, "events of acc{a} (open + operations)");
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["version"], i as u64, "gap-free versions");
            assert!(all_ids.insert(event["id"].as_str().unwrap().to_owned()), "duplicate event id");
        }
        let (_, transactions) = get(&server, &format!("/accounts/acc{a}/transactions")).await;
        assert_eq!(transactions.as_array().unwrap().len(), operations[a], "projected transactions of acc{a}");
        // Time travel: as of version 1 (open + first deposit), the balance was 500.
        let (_, past) = get(&server, &format!("/accounts/acc{a}/replay?as_of_version=1")).await;
        assert_eq!(past["balance"], 500);
    }
}

fn projector_spec(max_attempts: u32) -> Value {
    json!({
        "triggers": { "http": ["/projector/..."], "subscriptions": [{ "stream": "*", "max_attempts": max_attempts, "batch_size": 10 }] },
        "limits": { "timeout_ms": 5000 },
    })
}

async fn append(server: &Server, stream: &str, event_type: &str) -> u64 {
    let (status, body) = post(server, &format!("/projector/append?stream={stream}&type={event_type}"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    body["position"].as_u64().unwrap_or_else(|| panic!("append failed: {body}"))
}

async fn seen(server: &Server) -> (Vec<(u64, String)>, bool) {
    let (_, body) = get(server, "/projector/seen").await;
    let seen = body["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_u64().unwrap(), e[1].as_str().unwrap().to_owned()))
        .collect();
    (seen, body["out_of_order"].as_bool().unwrap())
}

async fn failing_events_are_retried_parked_and_replayable(backend: Backend) {
    let server = Server::start(backend).await;
    server.deploy_ok("projector", components().bytes("projector"), projector_spec(3)).await;
    let mut positions = Vec::new();
    for (i, kind) in ["Noted", "Noted", "Poison", "Noted", "Trap", "Noted"].iter().enumerate() {
        positions.push((append(&server, &format!("s-{}", i % 2), kind).await, *kind));
    }
    let status = caught_up(&server, "projector").await;
    let parked = status["parked"].as_array().unwrap();
    let parked_positions: Vec<u64> = parked.iter().map(|p| p["position"].as_u64().unwrap()).collect();
    assert_eq!(parked_positions, vec![positions[2].0, positions[4].0], "{status}");
    assert!(parked[0]["error"].as_str().unwrap().contains("poison event"), "{status}");
    assert!(parked[1]["error"].as_str().unwrap().contains("wasm trap"), "{status}");
    assert_eq!(parked[0]["attempts"], 3);

    // Everything else was delivered, in order, past the poison.
    let (seen_events, out_of_order) = seen(&server).await;
    let expected: Vec<(u64, String)> =
        positions.iter().filter(|(_, k)| *k == "Noted").map(|(p, k)| (*p, k.to_string())).collect();
    assert_eq!(seen_events, expected);
    assert!(!out_of_order);
    assert!(server.logs().contains("event parked after repeated handler failures"));

    // Replaying a parked event runs the handler again (still failing here: a clear 502).
    let id = parked[0]["id"].as_i64().unwrap();
    let response = server
        .admin_request(reqwest::Method::POST, &format!("/v1/functions/projector/parked/{id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("poison"), "{body}");
    let response = server
        .admin_request(reqwest::Method::POST, "/v1/functions/projector/parked/999999/replay")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

async fn checkpoints_and_parked_events_survive_a_restart(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { database_url: db.url.clone(), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut server = Server::start_with(options.clone()).await;
    server.deploy_ok("projector", components().bytes("projector"), projector_spec(2)).await;
    let mut expected = Vec::new();
    for kind in ["Noted", "Poison", "Noted"] {
        let position = append(&server, "s-1", kind).await;
        if kind == "Noted" {
            expected.push(position);
        }
    }
    let before = caught_up(&server, "projector").await;
    let (_, attempts_before) = get(&server, "/projector/seen").await;
    server.kill();

    let server = Server::start_with(options).await;
    let after = caught_up(&server, "projector").await;
    assert_eq!(after["subscriptions"][0]["checkpoint"], before["subscriptions"][0]["checkpoint"]);
    assert_eq!(after["parked"].as_array().unwrap().len(), 1, "{after}");
    // Nothing was delivered again after the restart: the handler ran no further attempts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, attempts_after) = get(&server, "/projector/seen").await;
    assert_eq!(attempts_after["attempts"], attempts_before["attempts"]);
    // New events flow on from the checkpoint.
    expected.push(append(&server, "s-2", "Noted").await);
    caught_up(&server, "projector").await;
    let (seen_events, out_of_order) = seen(&server).await;
    assert_eq!(seen_events.iter().map(|(p, _)| *p).collect::<Vec<_>>(), expected);
    assert!(!out_of_order);
}

/// PostgreSQL: an append transaction held open (a trigger sleeps in it) while other appends
/// come in. A subscriber must still see every event, in order, once it commits; and an append
/// that rolls back must not stall anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_subscribers_never_skip_a_slow_or_rolled_back_append() {
    let db = Database::create(Backend::Postgres).await;
    let url = db.url.clone().unwrap();
    let server = Server::start_with(Options { database_url: Some(url.clone()), ..Default::default() }).await;
    server.deploy_ok("projector", components().bytes("projector"), projector_spec(3)).await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::Executor::execute(
        &mut conn,
        r#"CREATE FUNCTION slow_or_fail() RETURNS trigger AS $$
           BEGIN
             IF NEW.event_type = 'Slow' THEN PERFORM pg_sleep(1.5); END IF;
             IF NEW.event_type = 'Rollback' THEN RAISE EXCEPTION 'forced rollback'; END IF;
             RETURN NEW;
           END $$ LANGUAGE plpgsql;
           CREATE TRIGGER slow_or_fail BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION slow_or_fail();"#,
    )
    .await
    .unwrap();

    let first = append(&server, "s-0", "Noted").await;
    let slow = {
        let (http, data) = (server.http.clone(), server.data.clone());
        tokio::spawn(async move {
            let url = format!("{data}/projector/append?stream=slow-1&type=Slow");
            let body: Value = http.post(url).send().await.unwrap().json().await.unwrap();
            body["position"].as_u64().expect("slow append committed")
        })
    };
    // The slow append holds its transaction open (the trigger sleeps in it) before the others start.
    eventually("the slow append sleeps in its transaction", Duration::from_secs(10), async || {
        let sleeping: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if sleeping == 1 { Ok(()) } else { Err(format!("{sleeping} sessions in pg_sleep")) }
    })
    .await;
    let fast: Vec<_> = (0..6)
        .map(|i| {
            let (http, data) = (server.http.clone(), server.data.clone());
            tokio::spawn(async move {
                let url = format!("{data}/projector/append?stream=fast-{i}&type=Noted");
                let body: Value = http.post(url).send().await.unwrap().json().await.unwrap();
                body["position"].as_u64().expect("fast append committed")
            })
        })
        .collect();
    // An append that rolls back reports an error and leaves no gap behind.
    let (_, failed) = post(&server, "/projector/append?stream=x-1&type=Rollback", json!({})).await;
    assert!(failed["error"].as_str().is_some(), "{failed}");

    let mut positions = vec![first, slow.await.unwrap()];
    for task in fast {
        positions.push(task.await.unwrap());
    }
    positions.push(append(&server, "s-9", "Noted").await);
    positions.sort_unstable();
    let expected: Vec<u64> = (first..first + positions.len() as u64).collect();
    assert_eq!(positions, expected, "positions are gap-free even with a rollback in between");

    caught_up(&server, "projector").await;
    let (seen_events, out_of_order) = seen(&server).await;
    assert_eq!(seen_events.iter().map(|(p, _)| *p).collect::<Vec<_>>(), expected);
    assert!(!out_of_order, "a position arrived after a later one");
    let types: HashMap<u64, String> = seen_events.into_iter().collect();
    assert!(types.values().any(|t| t == "Slow"));
}

/// A delivery the function was too busy to take is no failed attempt: with one instance, a queue of
/// one and a single attempt per event, HTTP traffic that keeps the function saturated delays the
/// subscription but parks nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_overloaded_function_delays_deliveries_but_parks_nothing() {
    let server = Server::start(Backend::Sqlite).await;
    let spec = json!({
        "triggers": { "http": ["/projector/..."], "subscriptions": [{ "stream": "*", "max_attempts": 1, "batch_size": 1 }] },
        "limits": { "timeout_ms": 5000, "max_concurrency": 1, "max_queue": 1 },
    });
    server.deploy_ok("projector", components().bytes("projector"), spec).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (url, stop) = (format!("{}/projector/seen", server.data), stop.clone());
        load.spawn(async move {
            let (client, mut refused) = (reqwest::Client::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(r) = client.get(&url).send().await {
                    refused += u32::from(r.status() == 503);
                }
            }
            refused
        });
    }
    let mut appended = 0;
    while appended < 20 {
        // The appends compete for the same instance; a 503 is retried.
        let (status, _) = post(&server, "/projector/append?stream=s-1&type=Noted", json!({})).await;
        appended += usize::from(status == 200);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let refused: u32 = load.join_all().await.into_iter().sum();
    assert!(refused > 0, "the function was never saturated, so this proved nothing");

    let status = caught_up(&server, "projector").await;
    assert_eq!(status["parked"], json!([]), "{status}");
    let (seen, out_of_order) = seen(&server).await;
    assert_eq!(seen.len(), 20);
    assert!(!out_of_order);
}
