//! Metrics, guest output in the logs, the OpenAPI document, JSON 404s.

use crate::support::{Backend, Server, components, error_of, spec};
use serde_json::{Value, json};

#[tokio::test]
async fn guest_stdout_and_stderr_are_logged_with_function_and_request_id() {
    let server = Server::start(Backend::Sqlite).await;
    server.deploy_ok("misbehave", components().bytes("misbehave"), spec(&["/misbehave/..."], json!({}))).await;
    let response = server
        .http
        .get(format!("{}/misbehave/print?tag=tag-42", server.data))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-abc-123");
    let logs = server.wait_for_log("stderr line tag-42").await;
    for (text, stream) in [("stdout line tag-42", "stdout"), ("stderr line tag-42", "stderr")] {
        let line = logs.lines().find(|l| l.contains(text)).unwrap_or_else(|| panic!("{text} not logged:\n{logs}"));
        for field in ["function=misbehave", "request_id=req-abc-123", &format!("stream=\"{stream}\"")] {
            assert!(line.contains(field), "{line} lacks {field}");
        }
    }
}

#[tokio::test]
async fn metrics_cover_invocations_duration_instances_and_instantiation() {
    let server = Server::start(Backend::Sqlite).await;
    server.deploy_ok("hello", components().bytes("hello"), spec(&["/hello/..."], json!({}))).await;
    for _ in 0..3 {
        assert_eq!(server.call("/hello").await.0, 200);
    }
    let metrics = server.admin_request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    for series in [
        r#"faas_invocations_total{function="hello",status="200",version="1"} 3"#,
        r#"faas_invocation_duration_seconds_count{function="hello"} 3"#,
        r#"faas_instantiation_duration_seconds_count{function="hello"} 3"#,
        r#"faas_active_instances{function="hello"} 0"#,
        r#"faas_deployments_total{function="hello",outcome="ok"} 1"#,
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    let health = server.http.get(format!("{}/healthz", server.admin)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn unknown_routes_are_json_404s_and_openapi_is_served() {
    let server = Server::start(Backend::Sqlite).await;
    let response = server.http.get(format!("{}/nothing/here", server.data)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    let (code, message) = error_of(&body);
    assert_eq!(code, "not_found");
    assert!(message.contains("/nothing/here"));

    let (status, doc) = server.get_json("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/functions",
        "/v1/functions/{name}",
        "/v1/functions/{name}/versions",
        "/v1/functions/{name}/versions/{version}/activate",
        "/v1/functions/{name}/subscriptions/reset",
        "/v1/nodes",
        "/v1/functions/{name}/invocations",
        "/v1/functions/{name}/schedule",
        "/v1/invocations",
        "/v1/invocations/{id}",
        "/v1/invocations/{id}/replay",
        "/v1/namespaces",
        "/v1/namespaces/{namespace}/streams",
        "/v1/functions/{name}/logs",
        "/ui/session",
        "/ui/login",
        "/ui/logout",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    let (status, body) = server.get_json("/v1/nope").await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body).0, "not_found");
}
