//! Traces over OTLP: a server exporting to an OTLP/HTTP receiver this test runs (the protobuf
//! decoded with opentelemetry-proto, as a collector would), and one order as one trace: the
//! caller's HTTP request (its `traceparent`), the order saga started by `orders`, each step as
//! a child of the saga's span with its invocation and appends below it, and the last step
//! (functions/notifier) calling a webhook and publishing to Kafka, both carrying the trace on,
//! to the batch `kafka-probe` handles on the other side of the broker.

use crate::sagas::{configure, shop};
use crate::support::kafka as k;
use crate::support::{FAAS, Options, Server, components, eventually};
use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use parking_lot::Mutex;
use prost::Message as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One span as the receiver got it; ids in hex.
#[derive(Debug, Clone)]
struct Seen {
    trace: String,
    id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: BTreeMap<String, String>,
    links: Vec<String>,
    failed: bool,
}

/// An OTLP/HTTP trace receiver on 127.0.0.1.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<Seen>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let seen = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf", "OTLP/HTTP protobuf");
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                    let mut seen = seen.lock();
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            seen.extend(scope.spans.into_iter().map(|span| {
                                Seen {
                                    trace: hex::encode(&span.trace_id),
                                    id: hex::encode(&span.span_id),
                                    parent: hex::encode(&span.parent_span_id),
                                    name: span.name,
                                    kind: span.kind,
                                    attributes: span
                                        .attributes
                                        .into_iter()
                                        .map(|kv| {
                                            (kv.key, kv.value.and_then(|v| v.value).map_or_else(String::new, text))
                                        })
                                        .collect(),
                                    links: span.links.iter().map(|l| hex::encode(&l.span_id)).collect(),
                                    // STATUS_CODE_ERROR
                                    failed: span.status.is_some_and(|s| s.code == 2),
                                }
                            }));
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, spans }
    }

    fn trace(&self, trace: &str) -> Vec<Seen> {
        self.spans.lock().iter().filter(|s| s.trace == trace).cloned().collect()
    }
}

fn text(value: AnyValue) -> String {
    match value {
        AnyValue::StringValue(s) => s,
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The one span named `name` in `spans`.
fn one<'a>(spans: &'a [Seen], name: &str) -> &'a Seen {
    let found: Vec<&Seen> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span expected in the trace, got {found:#?}\nall: {:#?}", names(spans));
    found[0]
}

fn names(spans: &[Seen]) -> Vec<(&str, &str, &str)> {
    spans.iter().map(|s| (s.name.as_str(), s.id.as_str(), s.parent.as_str())).collect()
}

/// A webhook receiver: the `traceparent` of every delivery.
async fn webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hooks/orders",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let record = record.clone();
            async move {
                let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("");
                record.lock().push(traceparent.to_owned());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_from_its_request_through_the_saga_to_kafka() {
    let broker = k::broker();
    let topic = k::topic("traced-orders");
    k::create_topic(&broker.bootstrap, &topic, 1).await;
    let collector = Collector::start().await;
    let (hook, deliveries) = webhook().await;
    let mut extra_args = k::serve_args(&broker.bootstrap);
    extra_args.extend(["--otlp-endpoint".to_owned(), collector.endpoint.clone()]);
    // Export every 200 ms instead of every 5 s.
    let env = vec![("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "200".to_owned())];
    let server = Server::start_with(Options { extra_args, env, ..Default::default() }).await;

    let c = components();
    shop(&server).await;
    let notifier = json!({
        "triggers": { "http": ["/notifier"] },
        "outbound": { "allow": [hook] },
        "grants": { "publish_topics": [topic] },
    });
    server.deploy_ok("notifier", c.bytes("notifier"), notifier).await;
    let url = format!("{hook}/hooks/orders");
    configure(&server, "notifier", json!({ "variables": { "WEBHOOK_URL": url, "NOTIFY_TOPIC": topic } })).await;
    configure(&server, "orders", json!({ "variables": { "NOTIFY_FUNCTION": "notifier" } })).await;
    let probe = json!({
        "triggers": {
            "http": ["/kafka-probe/..."],
            "kafka": { "topics": [topic], "group": format!("{topic}-group"), "from": "earliest" },
        },
    });
    server.deploy_ok("kafka-probe", c.bytes("kafka-probe"), probe).await;
    assert_eq!(server.post("/payments/accounts/alice/deposit?amount=1000").await.0, 200);
    assert_eq!(server.post("/inventory/items/book/restock?qty=5").await.0, 200);

    // The caller's trace: its id, and the id of the caller's own span.
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let caller = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let order = json!({ "order_id": "o-t1", "customer": "alice", "sku": "book", "qty": 1, "amount": 250, "address": "1 Main St" });
    let response = server
        .http
        .post(format!("{}/orders", server.data))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let saga_id = body["saga_id"].as_str().unwrap().to_owned();

    // Everything arrives: the last span to end is the consumer's batch, over Kafka.
    let spans = eventually("the trace reaches the Kafka consumer", Duration::from_secs(60), async || {
        let spans = collector.trace(&trace);
        if spans.iter().any(|s| s.name.ends_with(" process")) && spans.iter().any(|s| s.name == "invoke kafka-probe") {
            Ok(spans)
        } else {
            Err(format!("{:?}", names(&spans)))
        }
    })
    .await;

    // The request: a server span, child of the caller's.
    let request = one(&spans, "POST orders");
    assert_eq!(request.parent, caller, "the request continues the caller's trace");
    assert_eq!(request.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(request.attributes["http.response.status_code"], "201");
    assert_eq!(request.attributes["faas.function"], "orders");
    // The saga, started by that invocation; the saga's record names the trace.
    let saga = one(&spans, "saga order");
    assert_eq!(saga.parent, request.id);
    assert_eq!(saga.attributes["faas.saga.id"], saga_id);
    let (_, view) = server.get_json(&format!("/v1/sagas/{saga_id}")).await;
    assert_eq!(view["trace_id"], trace.as_str(), "{view}");
    // Each step a child of the saga's span, its invocation below it, and its append below that.
    for (step, function, stream) in [
        ("payment", "payments", "payments/account-alice"),
        ("inventory", "inventory", "inventory/item-book"),
        ("shipping", "shipping", "shipping/shipment-o-t1"),
    ] {
        let attempt = one(&spans, &format!("step {step}"));
        assert_eq!(attempt.parent, saga.id, "step {step} is a child of the saga");
        assert_eq!(attempt.attributes["faas.saga.attempt"], "1");
        let invocation = one(&spans, &format!("invoke {function}"));
        assert_eq!(invocation.parent, attempt.id, "{function} runs inside step {step}");
        let append = one(&spans, &format!("append {stream}"));
        assert_eq!(append.parent, invocation.id, "{function}'s append");
        assert!(append.attributes["faas.position"].parse::<u64>().unwrap() > 0);
    }
    // The last step: the notifier's webhook call and its Kafka record.
    let notify = one(&spans, "step notify");
    assert_eq!(notify.parent, saga.id);
    let notifier = one(&spans, "invoke notifier");
    assert_eq!(notifier.parent, notify.id);
    let call = one(&spans, "POST");
    assert_eq!((call.parent.as_str(), call.kind), (notifier.id.as_str(), 3), "a client span of the notifier");
    assert_eq!(call.attributes["http.response.status_code"], "200");
    assert_eq!(
        deliveries.lock().clone(),
        [format!("00-{trace}-{}-01", call.id)],
        "the webhook got the trace with the client span as its parent"
    );
    let publish = one(&spans, &format!("{topic} publish"));
    assert_eq!((publish.parent.as_str(), publish.kind), (notifier.id.as_str(), 4), "SPAN_KIND_PRODUCER");
    assert_eq!(publish.attributes["messaging.destination.name"], topic);
    // Across the broker: the consumer's batch continues the producer's span.
    let batch = one(&spans, &format!("{topic} process"));
    assert_eq!((batch.parent.as_str(), batch.kind), (publish.id.as_str(), 5), "SPAN_KIND_CONSUMER");
    assert_eq!(batch.attributes["messaging.batch.message_count"], "1");
    let consumer = one(&spans, "invoke kafka-probe");
    assert_eq!(consumer.parent, batch.id);
    assert!(spans.iter().all(|s| !s.failed), "nothing failed: {spans:#?}");
    assert!(spans.iter().all(|s| s.links.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_is_a_failed_span_and_an_untraced_server_adds_no_traceparent() {
    let collector = Collector::start().await;
    let (hook, deliveries) = webhook().await;
    let extra_args = vec!["--otlp-endpoint".to_owned(), format!("{}/", collector.endpoint)];
    let env = vec![("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "200".to_owned())];
    let server = Server::start_with(Options { extra_args, env, ..Default::default() }).await;
    let c = components();
    shop(&server).await;
    assert_eq!(server.post("/payments/accounts/bob/deposit?amount=1000").await.0, 200);

    // No caller trace: the request starts one. Out of stock: the inventory step is refused and
    // the payment compensated, each attempt its own span, the refused one failed.
    let order = json!({ "order_id": "o-t2", "customer": "bob", "sku": "none", "qty": 1, "amount": 10, "address": "x" });
    let (status, body) = server.post_json("/orders", &order).await;
    assert_eq!(status, 409, "{body}");
    let spans = eventually("the compensation's span", Duration::from_secs(30), async || {
        let spans = collector.spans.lock().clone();
        match spans.iter().find(|s| s.name == "compensate payment") {
            Some(found) => Ok((found.trace.clone(), spans)),
            None => Err(format!("{:?}", names(&spans))),
        }
    })
    .await;
    let spans = collector.trace(&spans.0);
    let request = one(&spans, "POST orders");
    assert!(request.parent.is_empty(), "a root span: the caller sent no trace");
    let saga = one(&spans, "saga order");
    let refused = one(&spans, "step inventory");
    assert!(refused.failed, "the refused step: {refused:?}");
    let compensation = one(&spans, "compensate payment");
    assert_eq!((refused.parent.as_str(), compensation.parent.as_str()), (saga.id.as_str(), saga.id.as_str()));
    assert_eq!(compensation.attributes["faas.saga.compensation"], "true");
    assert!(!compensation.failed);

    // A server without an endpoint passes nothing on: the webhook sees no traceparent.
    let plain = Server::start_with(Options::default()).await;
    let notifier = json!({ "triggers": { "http": ["/notifier"] }, "outbound": { "allow": [hook] } });
    plain.deploy_ok("notifier", c.bytes("notifier"), notifier).await;
    shop(&plain).await;
    configure(&plain, "notifier", json!({ "variables": { "WEBHOOK_URL": format!("{hook}/hooks/orders") } })).await;
    configure(&plain, "orders", json!({ "variables": { "NOTIFY_FUNCTION": "notifier" } })).await;
    assert_eq!(plain.post("/payments/accounts/carol/deposit?amount=100").await.0, 200);
    assert_eq!(plain.post("/inventory/items/pen/restock?qty=1").await.0, 200);
    let order =
        json!({ "order_id": "o-t3", "customer": "carol", "sku": "pen", "qty": 1, "amount": 10, "address": "x" });
    let (status, body) = plain.post_json("/orders", &order).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(deliveries.lock().clone(), [""], "one delivery, without a traceparent");
}

#[test]
fn an_endpoint_that_is_no_url_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for endpoint in ["ftp://collector:4318", "not a url"] {
        let output = std::process::Command::new(FAAS)
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--otlp-endpoint", endpoint])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--otlp-endpoint") && stderr.contains(endpoint), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_away_gets_one_warning_and_serving_goes_on() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let extra_args = vec!["--otlp-endpoint".to_owned(), format!("http://127.0.0.1:{port}")];
    let env = vec![("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned())];
    let server = Server::start_with(Options { extra_args, env, ..Default::default() }).await;
    server.deploy_ok("hello", components().bytes("hello"), crate::support::spec(&["/hello"], json!({}))).await;
    for _ in 0..20 {
        assert_eq!(server.call("/hello").await.0, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.wait_for_log("exporting spans failed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.logs().matches("exporting spans failed").count(), 1, "one warning, not one per batch");
}
