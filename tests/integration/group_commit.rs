//! The event store's group commit under many writers, through the real binary and functions/
//! es-probe, on both databases: 64 concurrent writers with mixed expected versions (a hot
//! stream raced with exact versions, own streams, idempotent retries) each get exactly the
//! outcome they would get if the appends had run one by one in position order, while a reader
//! paging `read-all` concurrently never skips a position; and kill -9 in the middle of a flood
//! of appends loses only appends whose callers got no success.

use crate::backend_tests;
use crate::support::{Backend, Database, Options, Server, components, spec};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

backend_tests!(concurrent_writers_get_their_sequential_outcomes, kill_9_loses_only_unacknowledged_appends);

const WRITERS: usize = 64;

async fn probe(server: &Server) {
    server
        .deploy_ok(
            "gc",
            components().bytes("es-probe"),
            spec(&["/gc/..."], json!({ "max_concurrency": 200, "max_queue": 1000 })),
        )
        .await;
}

async fn call(
    server: &Server,
    method: reqwest::Method,
    action: &str,
    query: &[(&str, String)],
    body: Option<String>,
) -> Result<Value, String> {
    let mut request = server.http.request(method, format!("{}/gc/probe/{action}", server.data)).query(query);
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

async fn append(server: &Server, stream: &str, expected: &str, id: &str) -> Result<Value, String> {
    let query = [("stream", stream.to_owned()), ("expected", expected.to_owned())];
    let body = json!([{ "id": id, "type": "T", "data": { "id": id } }]).to_string();
    call(server, reqwest::Method::POST, "append", &query, Some(body)).await
}

async fn read_all(server: &Server, from: u64) -> Vec<Value> {
    let query = [("from", from.to_string()), ("max", "500".to_owned())];
    let body = call(server, reqwest::Method::GET, "all", &query, None).await.expect("read-all");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// What one writer saw of one append.
#[derive(Debug, Clone)]
struct Seen {
    stream: String,
    expected: String,
    id: String,
    answer: Value,
}

async fn concurrent_writers_get_their_sequential_outcomes(backend: Backend) {
    let server = Server::start(backend).await;
    probe(&server).await;

    // A reader pages read-all while the writers run: positions must come one after another.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (server, stop) = (&server, stop.clone());
        async move {
            let mut next = 1u64;
            let mut pages = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for event in read_all(server, next).await {
                    let position = event["position"].as_u64().unwrap();
                    assert_eq!(position, next, "read-all skipped from {next} to {position}");
                    next += 1;
                }
                pages += 1;
            }
            (next - 1, pages)
        }
    };
    let until = Instant::now() + Duration::from_secs(4);
    let writers = (0..WRITERS).map(|w| {
        let server = &server;
        async move {
            let mut seen = Vec::new();
            let mut own_version: Option<u64> = None;
            let mut hot_guess: Option<u64> = None;
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let (stream, expected) = match n % 3 {
                    // The hot stream, with the version this writer last saw: often stale.
                    0 => ("hot".to_owned(), hot_guess.map_or_else(|| "no-stream".to_owned(), |v| v.to_string())),
                    // Its own stream, with the exact version: always right.
                    1 => (format!("own-{w}"), own_version.map_or_else(|| "no-stream".to_owned(), |v| v.to_string())),
                    _ => ("mixed".to_owned(), "any".to_owned()),
                };
                let id = format!("w{w}-{n}");
                let Ok(answer) = append(server, &stream, &expected, &id).await else { continue };
                if stream == "hot" {
                    hot_guess = match (&answer["outcome"], &answer["error"]["actual"]) {
                        (Value::Object(o), _) => o["last_version"].as_u64(),
                        (_, actual) => actual.as_u64(),
                    };
                } else if stream.starts_with("own-") {
                    assert!(
                        answer["outcome"].is_object(),
                        "an exact append to a stream only this writer writes failed: {answer}"
                    );
                    own_version = answer["outcome"]["last_version"].as_u64();
                }
                seen.push(Seen {
                    stream: stream.clone(),
                    expected: expected.clone(),
                    id: id.clone(),
                    answer: answer.clone(),
                });
                // Now and then the same append again, as a client retrying after a timeout: a
                // duplicate with the original positions (or, for a refused one, refused again).
                if n % 7 == 0 && answer["outcome"].is_object() {
                    let again = append(server, &stream, &expected, &id).await.expect("retry");
                    assert_eq!(again["outcome"]["duplicate"], true, "{again}");
                    assert_eq!(again["outcome"]["first_position"], answer["outcome"]["first_position"], "{again}");
                }
            }
            seen
        }
    });
    let writers = async {
        let seen = futures::future::join_all(writers).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        seen
    };
    let (seen, (read_up_to, pages)) = tokio::join!(writers, reader);
    let seen: Vec<Seen> = seen.into_iter().flatten().collect();
    println!("{} appends by {WRITERS} writers; the reader paged {pages} times up to {read_up_to}", seen.len());

    // Every acknowledged append is in the store at its position; positions 1..=head, once each.
    let mut all = Vec::new();
    loop {
        let page = read_all(&server, all.len() as u64 + 1).await;
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    let positions: Vec<u64> = all.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, (1..=all.len() as u64).collect::<Vec<_>>(), "positions are gap-free");
    let by_id: HashMap<&str, &Value> = all.iter().map(|e| (e["id"].as_str().unwrap(), e)).collect();
    let ok: Vec<&Seen> = seen.iter().filter(|s| s.answer["outcome"].is_object()).collect();
    for s in &ok {
        let stored = by_id.get(s.id.as_str()).unwrap_or_else(|| panic!("acknowledged {} is missing", s.id));
        assert_eq!(stored["position"], s.answer["outcome"]["first_position"], "{s:?}");
        assert_eq!(stored["version"], s.answer["outcome"]["first_version"], "{s:?}");
    }
    assert_eq!(ok.len(), all.len(), "every stored event was acknowledged once, and nothing else stored");

    // The hot stream, replayed one append at a time in position order: an exact or no-stream
    // append succeeds exactly when it names the stream's version at that moment.
    let mut hot: Vec<&&Seen> = ok.iter().filter(|s| s.stream == "hot").collect();
    hot.sort_by_key(|s| s.answer["outcome"]["first_position"].as_u64());
    for (version, s) in hot.iter().enumerate() {
        let expected = if version == 0 { "no-stream".to_owned() } else { (version - 1).to_string() };
        assert_eq!(s.expected, expected, "success number {version} on the hot stream: {s:?}");
        assert_eq!(s.answer["outcome"]["first_version"], version as u64);
    }
    let refused: Vec<&Seen> = seen.iter().filter(|s| s.answer["error"]["kind"] == "wrong-expected-version").collect();
    for s in &refused {
        assert_eq!(s.stream, "hot", "only the hot stream is raced: {s:?}");
        assert_ne!(s.answer["error"]["actual"].to_string(), s.expected, "refused although it named the version: {s:?}");
        assert!(!by_id.contains_key(s.id.as_str()), "a refused append was stored: {s:?}");
    }
    println!("hot stream: {} won, {} refused", hot.len(), refused.len());
    assert!(
        hot.len() >= 2 && !refused.is_empty(),
        "the race did not happen: {} won, {} refused",
        hot.len(),
        refused.len()
    );
    let versions: BTreeMap<&str, usize> = ok.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.stream.as_str()).or_default() += 1;
        m
    });
    assert_eq!(versions.len(), WRITERS + 2, "every writer's own stream, the hot and the mixed one");
}

async fn kill_9_loses_only_unacknowledged_appends(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { database_url: db.url.clone(), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut server = Server::start_with(options.clone()).await;
    probe(&server).await;
    let data = server.data.clone();
    let http = server.http.clone();
    // Each writer appends to its own stream with the exact version it expects, until the
    // server dies under it; it remembers what was acknowledged.
    let (acks, killed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let writers = (0..WRITERS).map(|w| {
        let (data, http, acks, killed) = (data.clone(), http.clone(), &acks, &killed);
        async move {
            let mut acked: Vec<(String, u64, u64)> = Vec::new();
            let mut version: Option<u64> = None;
            for n in 0.. {
                let id = format!("k{w}-{n}");
                let expected = version.map_or_else(|| "no-stream".to_owned(), |v| v.to_string());
                let query = [("stream", format!("kill-{w}")), ("expected", expected)];
                let body = json!([{ "id": id, "type": "T", "data": {} }]).to_string();
                let answer = http.post(format!("{data}/gc/probe/append")).query(&query).body(body).send().await;
                // Only the kill may end a writer: any failure before it is a bug.
                let answer = match answer {
                    Ok(answer) => answer.text().await,
                    Err(error) => Err(error),
                };
                let answer =
                    match answer.map(|text| serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))) {
                        Ok(answer) => answer,
                        Err(_) if killed.load(Ordering::SeqCst) => break,
                        Err(error) => panic!("writer {w}: append {n} failed before the kill: {error}"),
                    };
                let Some(outcome) = answer["outcome"].as_object() else {
                    if killed.load(Ordering::SeqCst) {
                        break;
                    }
                    panic!("an exact append to a stream only this writer writes failed: {answer}")
                };
                version = outcome["last_version"].as_u64();
                acked.push((id, outcome["first_position"].as_u64().unwrap(), version.unwrap()));
                acks.fetch_add(1, Ordering::SeqCst);
            }
            acked
        }
    });
    // Killed while every writer is busy: 1.5 s after the writes got going (a loaded machine
    // may take a while to answer the first ones).
    let killer = async {
        let started = Instant::now();
        while acks.load(Ordering::SeqCst) < WRITERS && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        killed.store(true, Ordering::SeqCst);
        server.kill();
    };
    let (acked, ()) = tokio::join!(futures::future::join_all(writers), killer);
    let acked: Vec<(String, u64, u64)> = acked.into_iter().flatten().collect();
    assert!(acked.len() > 100, "only {} appends before the kill", acked.len());
    let server = Server::start_with(options).await;

    let mut all = Vec::new();
    loop {
        let page = read_all(&server, all.len() as u64 + 1).await;
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    let positions: Vec<u64> = all.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, (1..=all.len() as u64).collect::<Vec<_>>(), "positions are gap-free after the crash");
    let by_id: HashMap<&str, &Value> = all.iter().map(|e| (e["id"].as_str().unwrap(), e)).collect();
    for (id, position, version) in &acked {
        let stored = by_id.get(id.as_str()).unwrap_or_else(|| panic!("acknowledged {id} was lost"));
        assert_eq!((stored["position"].as_u64(), stored["version"].as_u64()), (Some(*position), Some(*version)));
    }
    // Per stream, versions 0.. without holes; at most the one append in flight at the kill is
    // there without its caller having heard of it.
    let mut streams: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in &all {
        streams.entry(event["stream"].as_str().unwrap()).or_default().push(event["version"].as_u64().unwrap());
    }
    for (stream, versions) in &streams {
        assert_eq!(*versions, (0..versions.len() as u64).collect::<Vec<_>>(), "{stream}");
    }
    let unacknowledged = all.len() - acked.len();
    assert!(unacknowledged <= WRITERS, "{unacknowledged} stored appends nobody heard of");
    println!("{} acknowledged before the kill, all kept; {unacknowledged} committed unheard", acked.len());
}
