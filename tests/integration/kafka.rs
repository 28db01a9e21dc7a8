//! Kafka triggers and publishing against a real Apache Kafka 4.4 broker (started by
//! `support::kafka`): every record handled in per-partition order with correct commits, poison
//! records dead-lettered (also when too large for the dead-letter topic, or when that topic
//! refuses records), kill -9 of the host and of the broker (with a steady `/healthz` after it),
//! failover between two hosts on one PostgreSQL, redeploys keeping positions, publishing with
//! grants.

use crate::support::kafka::{self as k, Broker};
use crate::support::{Backend, Database, Options, Server, components, error_of, eventually};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// The consumer group of a test's trigger: its own, since the tests share one broker and run
/// in parallel (a shared group would rebalance across tests).
fn group(topic: &str) -> String {
    format!("{topic}-group")
}

fn trigger_spec(topic: &str, extra: Value) -> Value {
    let mut kafka = json!({ "topics": [topic], "group": group(topic) });
    if let (Some(kafka), Some(extra)) = (kafka.as_object_mut(), extra.as_object()) {
        kafka.extend(extra.clone());
    }
    json!({ "triggers": { "http": ["/order-events/..."], "kafka": kafka } })
}

async fn kafka_server(bootstrap: &str, backend: Backend) -> Server {
    let db = Database::create(backend).await;
    Server::start_with(Options { database_url: db.url, extra_args: k::serve_args(bootstrap), ..Default::default() })
        .await
}

/// Every event `order-events` recorded, in global order.
pub(crate) async fn recorded(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut from = 1;
    loop {
        let (status, body) = server.get_json_data(&format!("/order-events/events?from={from}&max=1000")).await;
        assert_eq!(status, 200, "{body}");
        let page = body["events"].as_array().cloned().unwrap_or_default();
        let Some(last) = page.last() else { return all };
        from = last["position"].as_u64().expect("position") + 1;
        all.extend(page);
    }
}

/// Waits until `order-events` has recorded `count` events (fails after `limit`).
async fn wait_for_events(server: &Server, count: usize, limit: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let events = recorded(server).await;
        if events.len() >= count {
            return events;
        }
        assert!(
            started.elapsed() < limit,
            "only {} of {count} events after {limit:?}; logs:\n{}",
            events.len(),
            tail(&server.logs())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn tail(logs: &str) -> String {
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Each record became exactly one event; per partition, events were recorded in offset order.
pub(crate) fn assert_exactly_once_in_order(events: &[Value], expected: usize) {
    assert_eq!(events.len(), expected, "one event per record, no duplicates");
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), expected, "event ids are unique");
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for event in events {
        let source = event["kafka"].as_str().expect("kafka source");
        let (partition, offset) = source.rsplit_once('/').expect("topic/partition/offset");
        let offset: i64 = offset.parse().expect("offset");
        let previous = last.insert(partition.to_owned(), offset).unwrap_or(-1);
        assert!(offset > previous, "partition {partition}: offset {offset} recorded after {previous}");
    }
}

/// Waits until the group's committed offsets equal the partitions' end offsets.
async fn assert_committed_to_end(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    let end = k::end_offsets(bootstrap, topic, partitions).await;
    let started = Instant::now();
    loop {
        let committed = k::committed(bootstrap, group, topic, partitions).await;
        if committed == end {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "committed {committed:?}, end {end:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn metric(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn metrics(server: &Server) -> String {
    server.admin_request(reqwest::Method::GET, "/metrics").send().await.expect("metrics").text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_across_four_partitions_in_order_and_committed() {
    let broker = k::broker();
    let topic = k::topic("orders");
    k::create_topic(&broker.bootstrap, &topic, 4).await;
    let server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    server.deploy_ok("order-events", components().bytes("order-events"), trigger_spec(&topic, json!({}))).await;
    k::produce(&broker.bootstrap, &topic, (0..10_000).map(k::order).collect()).await;

    let events = wait_for_events(&server, 10_000, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly_once_in_order(&recorded(&server).await, 10_000);
    let partitions: HashSet<&str> =
        events.iter().map(|e| e["kafka"].as_str().unwrap().rsplit_once('/').unwrap().0).collect();
    assert_eq!(partitions.len(), 4, "records came from all four partitions");
    assert_committed_to_end(&broker.bootstrap, &group(&topic), &topic, 4).await;

    let text = metrics(&server).await;
    let handled =
        format!("faas_kafka_records_total{{function=\"order-events\",outcome=\"handled\",topic=\"{topic}\"}}");
    assert!(metric(&text, &handled) >= 10_000, "{text}");
    assert!(text.contains("faas_kafka_batch_duration_seconds_count{function=\"order-events\"}"), "{text}");
    let (_, health) = server.get_json("/healthz").await;
    assert_eq!(health["kafka"]["connected"], true, "{health}");
    assert_eq!(health["kafka"]["triggers"][0]["assigned"].as_array().map(Vec::len), Some(4), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_goes_to_the_dead_letter_topic_while_the_rest_flow() {
    let broker = k::broker();
    let topic = k::topic("poison");
    k::create_topic(&broker.bootstrap, &topic, 2).await;
    k::create_topic(&broker.bootstrap, &format!("{topic}.dlq"), 1).await;
    let server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    let spec = trigger_spec(&topic, json!({ "max_retries": 2, "batch_size": 10 }));
    server.deploy_ok("order-events", components().bytes("order-events"), spec).await;

    let mut records: Vec<(String, Vec<u8>)> = (0..30).map(k::order).collect();
    records.insert(15, ("o-15".into(), b"this is not an order".to_vec()));
    k::produce(&broker.bootstrap, &topic, records).await;

    assert_exactly_once_in_order(&wait_for_events(&server, 30, Duration::from_secs(60)).await, 30);
    let dead = k::read_all(&broker.bootstrap, &format!("{topic}.dlq"), 1).await;
    assert_eq!(dead.len(), 1, "one record dead-lettered");
    let record = &dead[0];
    assert_eq!(record.value.as_deref(), Some(&b"this is not an order"[..]));
    assert_eq!(record.key.as_deref(), Some(&b"o-15"[..]));
    assert_eq!(record.header("faas-original-topic"), Some(topic.as_str()));
    assert!(record.header("faas-original-partition").is_some_and(|p| p.parse::<i32>().is_ok()));
    assert!(record.header("faas-original-offset").is_some_and(|o| o.parse::<i64>().is_ok()));
    assert_eq!(record.header("faas-attempts"), Some("3"), "1 attempt + 2 retries");
    assert!(record.header("faas-error").is_some_and(|e| e.contains("malformed JSON")), "{record:?}");
    assert_committed_to_end(&broker.bootstrap, &group(&topic), &topic, 2).await;
    let text = metrics(&server).await;
    let dead_lettered =
        format!("faas_kafka_records_total{{function=\"order-events\",outcome=\"dead_lettered\",topic=\"{topic}\"}}");
    assert_eq!(metric(&text, &dead_lettered), 1, "{text}");
    server.wait_for_log("sent to the dead-letter topic").await;
}

/// The broker's default per-topic limit (`max.message.bytes`): the largest record batch a topic
/// created without settings takes.
const DEFAULT_TOPIC_LIMIT: usize = 1_048_588;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_too_large_to_dead_letter_whole_goes_without_its_value() {
    let broker = k::broker();
    let topic = k::topic("huge");
    k::create_topic(&broker.bootstrap, &topic, 1).await;
    k::create_topic(&broker.bootstrap, &format!("{topic}.dlq"), 1).await;
    let server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    let spec = trigger_spec(&topic, json!({ "max_retries": 1 }));
    server.deploy_ok("order-events", components().bytes("order-events"), spec).await;

    // Just under the topic's limit (a record batch's framing takes under 100 bytes): the topic
    // takes it, but with the dead-letter headers on top it is over the dead-letter topic's
    // limit, the same default one.
    let size = DEFAULT_TOPIC_LIMIT - 128;
    let mut records: Vec<(String, Vec<u8>)> = (0..10).map(k::order).collect();
    records.insert(5, ("huge".into(), vec![b'x'; size]));
    k::produce(&broker.bootstrap, &topic, records).await;

    // The records behind it on its (only) partition are handled.
    assert_exactly_once_in_order(&wait_for_events(&server, 10, Duration::from_secs(60)).await, 10);
    let dead = k::read_all(&broker.bootstrap, &format!("{topic}.dlq"), 1).await;
    assert_eq!(dead.len(), 1, "one record dead-lettered");
    let record = &dead[0];
    assert!(record.value.as_deref().unwrap_or_default().is_empty(), "value omitted");
    assert_eq!(record.key.as_deref(), Some(&b"huge"[..]));
    assert_eq!(record.header("faas-value-omitted"), Some("true"));
    assert_eq!(record.header("faas-original-size"), Some(size.to_string().as_str()));
    assert_eq!(record.header("faas-original-topic"), Some(topic.as_str()));
    assert_eq!(record.header("faas-original-offset"), Some("5"));
    assert_eq!(record.header("faas-attempts"), Some("2"), "1 attempt + 1 retry");
    assert!(record.header("faas-error").is_some_and(|e| e.contains("malformed JSON")), "{:?}", record.headers);
    assert_committed_to_end(&broker.bootstrap, &group(&topic), &topic, 1).await;
    let text = metrics(&server).await;
    let dead_lettered =
        format!("faas_kafka_records_total{{function=\"order-events\",outcome=\"dead_lettered\",topic=\"{topic}\"}}");
    assert_eq!(metric(&text, &dead_lettered), 1, "{text}");
    server.wait_for_log("the dead-letter topic refused the record; sending less of it").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_shrinks_to_what_its_topic_takes_and_is_dropped_only_when_nothing_fits() {
    let broker = k::broker();
    let (shrunk, dropped) = (k::topic("shrunk"), k::topic("dropped"));
    for topic in [&shrunk, &dropped] {
        k::create_topic(&broker.bootstrap, topic, 1).await;
    }
    // Room for the `faas-*` headers (about 400 bytes) but not for a 2,000-byte key; and room
    // for nothing at all.
    k::create_topic_with(&broker.bootstrap, &format!("{shrunk}.dlq"), 1, &[("max.message.bytes", "1000")]).await;
    k::create_topic_with(&broker.bootstrap, &format!("{dropped}.dlq"), 1, &[("max.message.bytes", "100")]).await;
    let server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    let kafka = json!({ "topics": [shrunk, dropped], "group": group(&shrunk), "max_retries": 0 });
    let spec = json!({ "triggers": { "http": ["/order-events/..."], "kafka": kafka } });
    server.deploy_ok("order-events", components().bytes("order-events"), spec).await;
    let poison = |key: String| (key, b"not an order".to_vec());
    k::produce(&broker.bootstrap, &shrunk, vec![k::order(0), poison("k".repeat(2000)), k::order(2)]).await;
    k::produce(&broker.bootstrap, &dropped, vec![k::order(3), poison("o-4".into()), k::order(5)]).await;

    assert_exactly_once_in_order(&wait_for_events(&server, 4, Duration::from_secs(60)).await, 4);
    let dead = k::read_all(&broker.bootstrap, &format!("{shrunk}.dlq"), 1).await;
    assert_eq!(dead.len(), 1);
    let record = &dead[0];
    assert_eq!(record.key, None, "key omitted");
    assert!(record.value.as_deref().unwrap_or_default().is_empty(), "value omitted");
    for header in ["faas-value-omitted", "faas-key-omitted", "faas-headers-omitted"] {
        assert_eq!(record.header(header), Some("true"), "{header}: {:?}", record.headers);
    }
    assert_eq!(record.header("faas-original-size"), Some("12"));
    assert_eq!(record.header("faas-original-offset"), Some("1"));
    for topic in [&shrunk, &dropped] {
        assert_committed_to_end(&broker.bootstrap, &group(&shrunk), topic, 1).await;
    }
    assert_eq!(k::end_offsets(&broker.bootstrap, &format!("{dropped}.dlq"), 1).await, vec![0], "nothing fit");
    let text = metrics(&server).await;
    let count = |topic: &str, outcome: &str| {
        metric(
            &text,
            &format!("faas_kafka_records_total{{function=\"order-events\",outcome=\"{outcome}\",topic=\"{topic}\"}}"),
        )
    };
    assert_eq!((count(&shrunk, "dead_lettered"), count(&shrunk, "dropped")), (1, 0), "{text}");
    assert_eq!((count(&dropped, "dead_lettered"), count(&dropped, "dropped")), (0, 1), "{text}");
    let logs = server.wait_for_log("Kafka record dropped: the dead-letter topic refused even its metadata").await;
    assert!(logs.contains(&format!("topic=\"{dropped}\" partition=0 offset=1")), "{}", tail(&logs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_that_refuses_records_holds_the_partition_visibly_until_fixed() {
    // Its own broker: no topic is created on first use, and ACLs are enforced.
    let broker = Broker::start_with(None, None, k::STRICT);
    let (missing, denied) = (k::topic("nodlq"), k::topic("denied"));
    for topic in [&missing, &denied] {
        k::create_topic(&broker.bootstrap, topic, 1).await;
    }
    let denied_dlq = format!("{denied}.dlq");
    k::create_topic(&broker.bootstrap, &denied_dlq, 1).await;
    k::deny_writes(&broker.bootstrap, &denied_dlq, true).await;
    let server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    let kafka = json!({ "topics": [missing, denied], "group": group(&missing), "max_retries": 0 });
    let spec = json!({ "triggers": { "http": ["/order-events/..."], "kafka": kafka } });
    server.deploy_ok("order-events", components().bytes("order-events"), spec).await;
    let poison = |key: &str| (key.to_owned(), b"not an order".to_vec());
    k::produce(&broker.bootstrap, &missing, vec![k::order(0), poison("p-1"), k::order(2)]).await;
    k::produce(&broker.bootstrap, &denied, vec![k::order(3), poison("p-4"), k::order(5)]).await;

    // Each partition waits at its poison record, and says why: a configuration error.
    let blocked =
        |health: &Value| health["kafka"]["triggers"][0]["dead_letter_blocked"].as_array().cloned().unwrap_or_default();
    let started = Instant::now();
    let entries = loop {
        let (_, health) = server.get_json("/healthz").await;
        let entries = blocked(&health);
        if entries.len() == 2 {
            break entries;
        }
        // An unknown topic is reported once librdkafka stops waiting for it to appear (30 s).
        assert!(started.elapsed() < Duration::from_secs(90), "not blocked: {health}\n{}", tail(&server.logs()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let entry = |topic: &str| entries.iter().find(|e| e["topic"] == topic).cloned().expect("entry");
    let (m, d) = (entry(&missing), entry(&denied));
    assert_eq!(
        (m["dead_letter_topic"].as_str(), m["offset"].as_u64()),
        (Some(format!("{missing}.dlq").as_str()), Some(1)),
        "{m}"
    );
    assert!(m["error"].as_str().is_some_and(|e| e.contains("nknown topic")), "{m}");
    assert_eq!((d["dead_letter_topic"].as_str(), d["offset"].as_u64()), (Some(denied_dlq.as_str()), Some(1)), "{d}");
    assert!(d["error"].as_str().is_some_and(|e| e.contains("uthorization")), "{d}");
    assert_eq!(recorded(&server).await.len(), 2, "the records behind the poison ones wait");
    assert_eq!(metric(&metrics(&server).await, "faas_kafka_dead_letter_blocked{function=\"order-events\"}"), 2);
    server.wait_for_log("the dead-letter topic refuses records").await;

    // Fixed: the records are dead-lettered and the partitions move on.
    k::create_topic(&broker.bootstrap, &format!("{missing}.dlq"), 1).await;
    k::deny_writes(&broker.bootstrap, &denied_dlq, false).await;
    assert_exactly_once_in_order(&wait_for_events(&server, 4, Duration::from_secs(60)).await, 4);
    for dlq in [format!("{missing}.dlq"), denied_dlq] {
        let dead = k::read_all(&broker.bootstrap, &dlq, 1).await;
        assert_eq!(dead.len(), 1, "{dlq}");
        assert_eq!(dead[0].value.as_deref(), Some(&b"not an order"[..]));
    }
    let (_, health) = server.get_json("/healthz").await;
    assert_eq!(blocked(&health).len(), 0, "{health}");
    assert_eq!(metric(&metrics(&server).await, "faas_kafka_dead_letter_blocked{function=\"order-events\"}"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_applies_each_record_once() {
    let broker = k::broker();
    let topic = k::topic("crash");
    k::create_topic(&broker.bootstrap, &topic, 4).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        data_dir: Some(dir.path().to_owned()),
        extra_args: k::serve_args(&broker.bootstrap),
        ..Default::default()
    };
    let mut server = Server::start_with(options.clone()).await;
    let spec = trigger_spec(&topic, json!({ "batch_size": 20 }));
    server.deploy_ok("order-events", components().bytes("order-events"), spec).await;
    k::produce(&broker.bootstrap, &topic, (0..4000).map(k::order).collect()).await;
    let seen = wait_for_events(&server, 300, Duration::from_secs(60)).await.len();
    server.kill();
    assert!(seen < 4000, "the kill must land mid-stream (saw {seen})");

    let server = Server::start_with(options).await;
    let events = wait_for_events(&server, 4000, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_exactly_once_in_order(&recorded(&server).await, 4000);
    assert!(events.len() == 4000);
    assert_committed_to_end(&broker.bootstrap, &group(&topic), &topic, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_takes_over_the_partitions_of_a_killed_one() {
    let broker = k::broker();
    let topic = k::topic("failover");
    k::create_topic(&broker.bootstrap, &topic, 4).await;
    let db = Database::create(Backend::Postgres).await;
    let options = Options { database_url: db.url, extra_args: k::serve_args(&broker.bootstrap), ..Default::default() };
    let mut a = Server::start_with(options.clone()).await;
    let b = Server::start_with(options).await;
    a.deploy_ok("order-events", components().bytes("order-events"), trigger_spec(&topic, json!({ "batch_size": 10 })))
        .await;
    // Deployed once, on A; B learns of it from PostgreSQL. Wait until the group split the partitions.
    let assigned = |health: &Value| health["kafka"]["triggers"][0]["assigned"].as_array().map_or(0, Vec::len);
    let started = Instant::now();
    loop {
        let (_, ha) = a.get_json("/healthz").await;
        let (_, hb) = b.get_json("/healthz").await;
        if assigned(&ha) + assigned(&hb) == 4 && assigned(&ha) > 0 && assigned(&hb) > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the partitions were never split: {ha} {hb}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A steady stream, so records keep arriving while A dies and B takes over.
    let producer = {
        let (bootstrap, topic) = (broker.bootstrap.clone(), topic.clone());
        tokio::spawn(async move {
            for chunk in 0..30 {
                k::produce(&bootstrap, &topic, (chunk * 200..(chunk + 1) * 200).map(k::order).collect()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    wait_for_events(&b, 500, Duration::from_secs(60)).await;
    // Either node reports the trigger as both run it: every partition once, with its lag, and
    // the records each node handled (their sum is what was recorded).
    let (a_id, b_id) = (a.get_json("/healthz").await.1["node"].clone(), b.get_json("/healthz").await.1["node"].clone());
    let cluster = eventually("both nodes' partitions and counts", Duration::from_secs(30), async || {
        let (status, body) = b.get_json("/v1/kafka").await;
        let handled: i64 = body["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| n["triggers"][0]["records"][&topic]["handled"].as_i64().unwrap_or(0))
            .sum();
        if status == 200 && handled >= 500 { Ok(body) } else { Err(format!("{status} {body}")) }
    })
    .await;
    let nodes = cluster["nodes"].as_array().unwrap();
    assert_eq!((&nodes[0]["node"], &nodes[1]["node"]), (&b_id, &a_id), "the node asked first: {cluster}");
    let mut partitions: Vec<i64> = nodes
        .iter()
        .flat_map(|n| n["triggers"][0]["assigned"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            assert!(p["lag"].is_i64(), "a lag for each assigned partition: {cluster}");
            p["partition"].as_i64().unwrap()
        })
        .collect();
    partitions.sort_unstable();
    assert_eq!(partitions, [0, 1, 2, 3], "each partition on exactly one node: {cluster}");
    let (_, local) = b.get_json("/v1/kafka?local=true").await;
    assert_eq!(local["nodes"].as_array().map(Vec::len), Some(1), "{local}");
    a.kill();
    let killed = Instant::now();
    loop {
        let (_, hb) = b.get_json("/healthz").await;
        if assigned(&hb) == 4 {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "B never took all partitions: {hb}\n{}", tail(&b.logs()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();
    eprintln!("failover: B owned all 4 partitions {:.1} s after kill -9 of A", takeover.as_secs_f64());
    assert!(takeover < Duration::from_secs(6 + 8), "takeover took {takeover:?} (session timeout 6 s)");
    producer.await.expect("producer");

    let events = wait_for_events(&b, 6000, Duration::from_secs(120)).await;
    assert!(events.len() >= 6000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_exactly_once_in_order(&recorded(&b).await, 6000);
    assert_committed_to_end(&broker.bootstrap, &group(&topic), &topic, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_resumes_by_itself_after_the_broker_is_killed_and_restarted() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = k::data_dir(root.path());
    let mut broker = Broker::start(None, Some(&data));
    let (port, bootstrap) = (broker.port, broker.bootstrap.clone());
    let topic = k::topic("restart");
    k::create_topic(&bootstrap, &topic, 2).await;
    let server = kafka_server(&bootstrap, Backend::Sqlite).await;
    server.deploy_ok("order-events", components().bytes("order-events"), trigger_spec(&topic, json!({}))).await;
    k::produce(&bootstrap, &topic, (0..500).map(k::order).collect()).await;
    wait_for_events(&server, 500, Duration::from_secs(60)).await;
    // The node's producer publishes once, then idles through the outage.
    let out = format!("{topic}-out");
    let spec = json!({ "triggers": { "http": ["/orders/publish"] }, "grants": { "publish_topics": [out] } });
    server.deploy_ok("order-publisher", components().bytes("order-publisher"), spec).await;
    let order = json!({ "order_id": "o-out", "customer": "c-1", "amount_cents": 1 });
    let (status, body) = server.post_json(&format!("/orders/publish?topic={out}"), &order).await;
    assert_eq!(status, 202, "{body}");

    broker.kill();
    let killed = Instant::now();
    let health = || async {
        let (_, health) = server.get_json("/healthz").await;
        health["kafka"]["connected"].as_bool()
    };
    // The HTTP side keeps serving while the broker is away, and the outage shows in /healthz.
    let started = Instant::now();
    while health().await != Some(false) {
        assert!(started.elapsed() < Duration::from_secs(30), "/healthz never showed the broker down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(recorded(&server).await.len(), 500);
    // An outage longer than the session timeout (6 s): the consumer's session expires, so the
    // group must be joined again once the broker is back.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(killed.elapsed())).await;

    let broker = Broker::start(Some(port), Some(&data));
    let back = Instant::now();
    // /healthz every 10 ms for the 30 s after the broker is back: once connected again it
    // stays so (clients reconnecting one after another, connections redone while the broker
    // finishes starting, must not show).
    let sampler = {
        let (http, url) = (server.http.clone(), format!("{}/healthz", server.admin));
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while back.elapsed() < Duration::from_secs(30) {
                let health = match http.get(&url).send().await {
                    Ok(response) => response.json::<Value>().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                samples.push((back.elapsed(), health["kafka"]["connected"].as_bool()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            samples
        })
    };
    k::produce(&bootstrap, &topic, (500..1000).map(k::order).collect()).await;
    let acknowledged = back.elapsed();
    while recorded(&server).await.len() <= 500 {
        assert!(back.elapsed() < Duration::from_secs(120), "no record handled after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_handled = back.elapsed();
    wait_for_events(&server, 1000, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly_once_in_order(&recorded(&server).await, 1000);
    server.wait_for_log("Kafka brokers reachable").await;
    let samples = sampler.await.expect("sampler");
    let first_up = samples.iter().position(|(_, c)| *c == Some(true)).expect("connected again within 30 s");
    let dips: Vec<_> = samples[first_up..].iter().filter(|(_, c)| *c != Some(true)).collect();
    eprintln!(
        "broker restart after a {:.1} s outage: /healthz connected {:.1} s, new records acknowledged {:.1} s and \
         the first one handled {:.1} s after the broker was back; {} of {} samples after reconnecting not connected",
        back.duration_since(killed).as_secs_f64(),
        samples[first_up].0.as_secs_f64(),
        acknowledged.as_secs_f64(),
        first_handled.as_secs_f64(),
        dips.len(),
        samples.len() - first_up
    );
    assert!(dips.is_empty(), "/healthz flapped after reconnecting: {dips:?}");

    // SIGTERM while the broker is away still ends the process: the drain gives up on the
    // final commit after a grace period instead of waiting for the broker forever.
    let mut broker = broker;
    broker.kill();
    let mut server = server;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate()).await.expect("join");
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(30), "shutdown took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_rollback_and_delete_keep_the_group_position() {
    let broker = k::broker();
    let topic = k::topic("lifecycle");
    k::create_topic(&broker.bootstrap, &topic, 2).await;
    let server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    let handled =
        format!("faas_kafka_records_total{{function=\"order-events\",outcome=\"handled\",topic=\"{topic}\"}}");
    let bytes = components().bytes("order-events");
    server.deploy_ok("order-events", bytes.clone(), trigger_spec(&topic, json!({}))).await;
    k::produce(&broker.bootstrap, &topic, (0..100).map(k::order).collect()).await;
    wait_for_events(&server, 100, Duration::from_secs(60)).await;

    // A new trigger configuration restarts the consumer: it drains, commits and resumes there.
    server.deploy_ok("order-events", bytes.clone(), trigger_spec(&topic, json!({ "batch_size": 7 }))).await;
    k::produce(&broker.bootstrap, &topic, (100..200).map(k::order).collect()).await;
    wait_for_events(&server, 200, Duration::from_secs(60)).await;
    // Rollback to version 1: again a different trigger.
    let (status, body) = async {
        let response = server
            .admin_request(reqwest::Method::POST, "/v1/functions/order-events/versions/1/activate")
            .send()
            .await
            .expect("activate");
        (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
    }
    .await;
    assert_eq!(status, 200, "{body}");
    k::produce(&broker.bootstrap, &topic, (200..300).map(k::order).collect()).await;
    wait_for_events(&server, 300, Duration::from_secs(60)).await;
    assert_committed_to_end(&broker.bootstrap, &group(&topic), &topic, 2).await;

    // Deleted: nothing consumes. Deployed again: it resumes at the committed offsets, so only
    // the new records are handled (events are kept: the namespace's streams outlive the function).
    let response = server.admin_request(reqwest::Method::DELETE, "/v1/functions/order-events").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204);
    k::produce(&broker.bootstrap, &topic, (300..350).map(k::order).collect()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metric(&metrics(&server).await, &handled), 300, "no consumer while deleted");
    server.deploy_ok("order-events", bytes, trigger_spec(&topic, json!({}))).await;
    let events = wait_for_events(&server, 350, Duration::from_secs(60)).await;
    assert_exactly_once_in_order(&events, 350);
    assert_committed_to_end(&broker.bootstrap, &group(&topic), &topic, 2).await;
    assert_eq!(metric(&metrics(&server).await, &handled), 350, "each record handled once: positions were kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_leaves_the_group() {
    let broker = k::broker();
    let topic = k::topic("drain");
    k::create_topic(&broker.bootstrap, &topic, 2).await;
    let mut server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    server.deploy_ok("order-events", components().bytes("order-events"), trigger_spec(&topic, json!({}))).await;
    k::produce(&broker.bootstrap, &topic, (0..200).map(k::order).collect()).await;
    wait_for_events(&server, 200, Duration::from_secs(60)).await;
    let status = server.terminate();
    assert!(status.success(), "faas exits cleanly on SIGTERM: {status}");
    let logs = server.logs();
    assert!(logs.contains("Kafka trigger stopped"), "{}", tail(&logs));
    // It left the group (rather than being timed out of it), and committed at the drain.
    assert_eq!(k::group_members(&broker.bootstrap, &group(&topic)).await, 0);
    assert_eq!(
        k::committed(&broker.bootstrap, &group(&topic), &topic, 2).await,
        k::end_offsets(&broker.bootstrap, &topic, 2).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_that_cannot_consume_are_clear_400s() {
    // No brokers configured.
    let server = Server::start(Backend::Sqlite).await;
    let response =
        server.deploy("order-events", components().bytes("order-events"), trigger_spec("t", json!({}))).await;
    assert_eq!(response.status().as_u16(), 400);
    let (_, message) = error_of(&response.json().await.expect("json"));
    assert!(message.contains("--kafka-brokers"), "{message}");

    let broker = k::broker();
    let server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    // A component without the message-handler export.
    let spec = json!({ "triggers": { "kafka": { "topics": ["t"] } } });
    let response = server.deploy("hello", components().bytes("hello"), spec).await;
    assert_eq!(response.status().as_u16(), 400);
    let (_, message) = error_of(&response.json().await.expect("json"));
    assert!(message.contains("message-handler"), "{message}");
    // A malformed topic.
    let response =
        server.deploy("order-events", components().bytes("order-events"), trigger_spec("a b", json!({}))).await;
    assert_eq!(response.status().as_u16(), 400);
    // Dead-letter topics the broker would refuse: an internal one (INVALID_TOPIC_EXCEPTION),
    // and a default `<topic>.dlq` over Kafka's 249 characters.
    for (topic, dlq, expected) in
        [("t", Some("__consumer_offsets"), "internal topics"), (&*"t".repeat(249), None, "dead-letter topic of")]
    {
        let extra = dlq.map_or(json!({}), |dlq| json!({ "dlq": dlq }));
        let response =
            server.deploy("order-events", components().bytes("order-events"), trigger_spec(topic, extra)).await;
        assert_eq!(response.status().as_u16(), 400);
        let (_, message) = error_of(&response.json().await.expect("json"));
        assert!(message.contains(expected), "{message}");
    }
    // Two functions in one group.
    let spec = trigger_spec("t", json!({ "group": k::topic("shared") }));
    server.deploy_ok("order-events", components().bytes("order-events"), spec.clone()).await;
    let mut other = spec;
    other["triggers"]["http"] = json!([]);
    let response = server.deploy("order-events-2", components().bytes("order-events"), other).await;
    assert_eq!(response.status().as_u16(), 400);
    let (_, message) = error_of(&response.json().await.expect("json"));
    assert!(message.contains("already used by function `order-events`"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_needs_a_grant_and_returns_after_the_broker_acknowledged() {
    let broker = k::broker();
    let topic = k::topic("published");
    k::create_topic(&broker.bootstrap, &topic, 3).await;
    let server = kafka_server(&broker.bootstrap, Backend::Sqlite).await;
    let spec =
        json!({ "triggers": { "http": ["/orders/publish"] }, "grants": { "publish_topics": [format!("{topic}*")] } });
    server.deploy_ok("order-publisher", components().bytes("order-publisher"), spec).await;
    let order = json!({ "order_id": "o-42", "customer": "c-1", "amount_cents": 1250 });
    let (status, body) = server.post_json(&format!("/orders/publish?topic={topic}"), &order).await;
    assert_eq!(status, 202, "{body}");
    assert!(body["partition"].as_u64().is_some() && body["offset"].as_u64().is_some(), "{body}");
    let records = k::read_all(&broker.bootstrap, &topic, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.as_deref(), Some(&b"o-42"[..]));
    let value: Value = serde_json::from_slice(records[0].value.as_deref().unwrap_or_default()).expect("json");
    assert_eq!(value, order);

    // Not granted: refused before anything is sent.
    let (status, body) = server.post_json("/orders/publish?topic=payments", &order).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("--grant-publish payments")), "{body}");
    let (status, _) = server.post_json("/orders/publish", &json!({ "nope": 1 })).await;
    assert_eq!(status, 400);
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "faas_kafka_published_total{function=\"order-publisher\",outcome=\"ok\"}"), 1, "{text}");

    // Without brokers, publishing is an error value, not a trap.
    let plain = Server::start(Backend::Sqlite).await;
    let spec = json!({ "triggers": { "http": ["/orders/publish"] }, "grants": { "publish_topics": ["*"] } });
    plain.deploy_ok("order-publisher", components().bytes("order-publisher"), spec).await;
    let (status, body) = plain.post_json("/orders/publish", &order).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("--kafka-brokers")), "{body}");
}

/// Reads `topic` and returns, per record key, the `faas-version` headers in arrival order.
fn versions_by_key(records: &[k::Consumed]) -> BTreeMap<String, Vec<u64>> {
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in records {
        let key = String::from_utf8(record.key.clone().unwrap_or_default()).expect("utf-8 key");
        let version = record.header("faas-version").and_then(|v| v.parse().ok()).expect("faas-version header");
        by_key.entry(key).or_default().push(version);
    }
    by_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_forwards_stream_events_in_order_and_resumes_after_a_crash() {
    let broker = k::broker();
    let topic = k::topic("accounts");
    k::create_topic(&broker.bootstrap, &topic, 3).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        data_dir: Some(dir.path().to_owned()),
        extra_args: k::serve_args(&broker.bootstrap),
        ..Default::default()
    };
    let mut server = Server::start_with(options.clone()).await;
    let spec = json!({
        "triggers": { "http": ["/accounts/..."] },
        "outbox": [{ "stream": "account-*", "topic": topic }],
    });
    server.deploy_ok("bank", components().bytes("bank-account"), spec).await;
    let deposit = async |server: &Server, account: usize| {
        let (status, body) =
            server.post_json(&format!("/accounts/a{account}/deposit"), &json!({ "amount": 100 })).await;
        assert_eq!(status, 200, "{body}");
    };
    for account in 0..3 {
        let (status, body) = server.post_json(&format!("/accounts/a{account}/open"), &json!({ "owner": "ann" })).await;
        assert_eq!(status, 201, "{body}");
    }
    for _round in 0..4 {
        for account in 0..3 {
            deposit(&server, account).await;
        }
    }
    let records = k::read_all(&broker.bootstrap, &topic, 15).await;
    assert_eq!(records.len(), 15, "every event forwarded");
    let first = &records[0];
    assert!(first.header("faas-event-id").is_some() && first.header("faas-position").is_some(), "{first:?}");
    for (key, versions) in versions_by_key(&records) {
        assert!(key.starts_with("account-a"), "records are keyed by stream: {key}");
        assert_eq!(versions, vec![0, 1, 2, 3, 4], "{key}: in order, once");
    }

    // Killed and restarted: forwarding resumes from its checkpoint; nothing is skipped.
    server.kill();
    let server = Server::start_with(options).await;
    for account in 0..3 {
        deposit(&server, account).await;
    }
    let records = k::read_all(&broker.bootstrap, &topic, 18).await;
    assert!(records.len() >= 18, "{} records", records.len());
    for (key, versions) in versions_by_key(&records) {
        // At least once: a redelivery may repeat the tail, but in order and without gaps.
        let mut firsts: Vec<u64> = Vec::new();
        for v in versions {
            if !firsts.contains(&v) {
                firsts.push(v);
            }
        }
        assert_eq!(firsts, vec![0, 1, 2, 3, 4, 5], "{key}");
    }

    // An outbox needs brokers.
    let plain = Server::start(Backend::Sqlite).await;
    let spec =
        json!({ "triggers": { "http": ["/accounts/..."] }, "outbox": [{ "stream": "account-*", "topic": "t" }] });
    let response = plain.deploy("bank", components().bytes("bank-account"), spec).await;
    assert_eq!(response.status().as_u16(), 400);
}
