//! Outgoing HTTP through per-function allow-lists, against an upstream server this test runs on
//! 127.0.0.1: denied by default (the upstream sees nothing), allowed by a literal entry, a
//! different port refused, wildcards, redirects not followed, the first-byte timeout, the
//! response-body limit, a name resolving to loopback refused, metrics and the request id.

use crate::backend_tests;
use crate::support::{Backend, Server, components, error_of};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

backend_tests!(an_allow_list_decides_what_a_function_may_reach);

/// A local upstream: counts its hits and remembers the last `x-request-id` it saw.
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
    request_ids: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let request_ids = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (h, ids) = (hits.clone(), request_ids.clone());
        let app = Router::new()
            .route("/ok", get(|| async { "upstream ok" }))
            .route(
                "/redirect",
                get(|| async { (StatusCode::FOUND, [("location", "http://example.invalid/elsewhere")]) }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "late"
                }),
            )
            .route("/huge", get(|| async { vec![b'x'; 2 << 20].into_response() }))
            .layer(axum::middleware::from_fn(
                move |headers: HeaderMap, request: axum::extract::Request, next: axum::middleware::Next| {
                    let (h, ids) = (h.clone(), ids.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
                            ids.lock().push(id.to_owned());
                        }
                        next.run(request).await
                    }
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, hits, request_ids }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn probe_spec(outbound: Value) -> Value {
    json!({ "triggers": { "http": ["/uptime-probe"] }, "outbound": outbound })
}

async fn probe(server: &Server, url: &str) -> (u16, Value) {
    server.get_json_data(&format!("/uptime-probe?url={}", urlencode(url))).await
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn an_allow_list_decides_what_a_function_may_reach(backend: Backend) {
    let server = Server::start(backend).await;
    let upstream = Upstream::start().await;
    let other = Upstream::start().await;
    let ok = format!("http://127.0.0.1:{}/ok", upstream.port);
    let wasm = || components().bytes("uptime_probe");

    // Nothing allowed by default: the guest hears `HttpRequestDenied`, the upstream nothing.
    server.deploy_ok("uptime-probe", wasm(), probe_spec(json!({}))).await;
    let (status, body) = probe(&server, &ok).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("HttpRequestDenied"), "{body}");
    assert_eq!(upstream.hits(), 0, "a denied request reached the network");
    let logs = server.wait_for_log("outgoing request denied").await;
    assert!(logs.contains(&format!("http://127.0.0.1:{}", upstream.port)), "the log names the origin:\n{logs}");

    // A literal entry: allowed, with the invocation's request id forwarded.
    let literal = format!("http://127.0.0.1:{}", upstream.port);
    let tls = format!("https://127.0.0.1:{}", upstream.port);
    let spec =
        probe_spec(json!({ "allow": [literal, tls], "first_byte_timeout_ms": 1000, "max_response_bytes": 1 << 20 }));
    server.deploy_ok("uptime-probe", wasm(), spec).await;
    let response = server
        .http
        .get(format!("{}/uptime-probe?url={}", server.data, urlencode(&ok)))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["status"].as_u64(), body["body"].as_str()), (Some(200), Some("upstream ok")), "{body}");
    assert_eq!(upstream.hits(), 1);
    assert_eq!(upstream.request_ids.lock().last().map(String::as_str), Some("trace-me-42"));

    // `https://` is TLS, always: against this plain-HTTP upstream the handshake fails and the
    // guest gets an error, never a response over an unencrypted connection.
    let (status, body) = probe(&server, &format!("{tls}/ok")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(upstream.hits(), 1, "no HTTP request got through on the https origin");

    // The same host on another port is another origin.
    let (status, body) = probe(&server, &format!("http://127.0.0.1:{}/ok", other.port)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(other.hits(), 0);

    // A redirect reaches the guest as it is (to an origin it may not call anyway).
    let (status, body) = probe(&server, &format!("{literal}/redirect")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["status"].as_u64(), body["location"].as_str()),
        (Some(302), Some("http://example.invalid/elsewhere"))
    );

    // An upstream slower than the first-byte timeout; a body over the limit.
    let (status, body) = probe(&server, &format!("{literal}/slow")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Timeout"), "{body}");
    let (status, body) = probe(&server, &format!("{literal}/huge")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"].as_str().unwrap().contains("body size exceeds limit: 1048576"), "{body}");

    // A name that resolves to loopback is refused unless the address is allowed literally;
    // so is a wildcard's match. `*.` matches subdomains only.
    let named = format!("http://localhost:{}", upstream.port);
    let spec = probe_spec(json!({ "allow": [named, "http://*.example.invalid"], "first_byte_timeout_ms": 2000 }));
    server.deploy_ok("uptime-probe", wasm(), spec).await;
    let before = upstream.hits();
    let (status, body) = probe(&server, &format!("{named}/ok")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("DestinationIpProhibited"), "{body}");
    assert_eq!(upstream.hits(), before, "the guard connected to an internal address");
    server.wait_for_log("resolves only to internal addresses").await;
    let (status, body) = probe(&server, "http://example.invalid/").await;
    assert_eq!(status, 403, "the wildcard does not cover the domain itself: {body}");
    let (status, body) = probe(&server, "http://api.example.invalid/").await;
    assert_eq!(status, 502, "a subdomain passes the allow-list (and then fails to resolve): {body}");
    assert!(!body["error"].as_str().unwrap().contains("denied"), "{body}");

    let metrics = server.metrics().await;
    let series = |origin: &str, outcome: &str| {
        format!(r#"faas_outbound_requests_total{{function="uptime-probe",origin="{origin}",outcome="{outcome}"}}"#)
    };
    // Denied origins share one label value (a guest must not be able to mint series).
    for (origin, outcome) in [
        (literal.as_str(), "200"),
        (literal.as_str(), "302"),
        ("(not allowed)", "denied"),
        (literal.as_str(), "timeout"),
    ] {
        assert!(metrics.contains(&series(origin, outcome)), "no {outcome} series for {origin}:\n{metrics}");
    }
    assert!(metrics.contains("faas_outbound_duration_seconds_count{function=\"uptime-probe\"}"), "{metrics}");
    assert!(!metrics.contains(&format!("127.0.0.1:{}\"", other.port)), "a denied origin became a label:\n{metrics}");
}

/// Bad allow-list entries and limits are refused at deploy time with the one error shape.
#[tokio::test]
async fn bad_outbound_settings_are_refused_at_deploy() {
    let server = Server::start(Backend::Sqlite).await;
    for (outbound, needle) in [
        (json!({ "allow": ["api.example.com"] }), "must start with `http://` or `https://`"),
        (json!({ "allow": ["https://api.example.com/v1"] }), "no path"),
        (json!({ "allow": ["https://api.example.com:99999"] }), "port"),
        (json!({ "max_concurrent": 0 }), "outbound.max_concurrent"),
        (json!({ "first_byte_timeout_ms": 0 }), "outbound.first_byte_timeout_ms"),
        (json!({ "allowed": [] }), "unknown field `allowed`"),
    ] {
        let response =
            server.deploy("uptime-probe", components().bytes("uptime_probe"), probe_spec(outbound.clone())).await;
        assert_eq!(response.status(), 400, "{outbound}");
        let body: Value = response.json().await.unwrap();
        let (code, message) = error_of(&body);
        assert_eq!(code, "invalid_spec", "{body}");
        assert!(message.contains(needle), "{outbound}: {message}");
    }
}
