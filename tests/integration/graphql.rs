//! The GraphQL query side: functions, streams (paged), subscriptions and parked events, behind the
//! admin token.

use crate::support::{Options, Server, components};
use serde_json::{Value, json};
use std::time::Duration;

async fn query(server: &Server, query: &str) -> Value {
    let response =
        server.admin_request(reqwest::Method::POST, "/graphql").json(&json!({ "query": query })).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn graphql_covers_functions_streams_and_subscriptions() {
    let server = Server::start_with(Options { token: Some("tok".into()), ..Default::default() }).await;
    let spec = json!({
        "triggers": { "http": ["/projector/..."], "subscriptions": [{ "stream": "*", "max_attempts": 1 }] },
    });
    server.deploy_ok("projector", components().bytes("projector"), spec).await;
    for kind in ["Noted", "Poison", "Noted"] {
        let url = format!("{}/projector/append?stream=s-1&type={kind}", server.data);
        assert_eq!(server.http.post(url).send().await.unwrap().status(), 200);
    }

    // Without the token: 401, like the rest of the control plane. GraphiQL's page is open.
    let response = server
        .http
        .post(format!("{}/graphql", server.admin))
        .json(&json!({"query": "{ headPosition }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let page = server.http.get(format!("{}/graphql", server.admin)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().to_lowercase().contains("graphiql"));

    let mut data = Value::Null;
    for _ in 0..100 {
        data = query(&server, "{ functions { name activeVersion versions { version sha256 routes subscribedStreams } subscriptions { stream checkpoint head lag } parked { position error attempts } } }").await;
        if data["functions"][0]["subscriptions"][0]["lag"] == 0
            && data["functions"][0]["parked"].as_array().is_some_and(|p| !p.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let function = &data["functions"][0];
    assert_eq!(function["name"], "projector");
    assert_eq!(function["activeVersion"], 1);
    assert_eq!(function["versions"][0]["routes"], json!(["/projector/..."]));
    assert_eq!(function["versions"][0]["subscribedStreams"], json!(["*"]));
    assert_eq!(function["subscriptions"][0], json!({"stream": "*", "checkpoint": 3, "head": 3, "lag": 0}));
    assert_eq!(function["parked"][0]["position"], 2);
    assert!(function["parked"][0]["error"].as_str().unwrap().contains("poison"));

    // Paged stream reads with metadata.
    let first = query(&server, r#"{ stream(namespace: "projector", stream: "s-1", first: 2) { next events { version position eventType data metadata { correlationId custom { key value } } } } }"#).await;
    assert_eq!(first["stream"]["events"].as_array().unwrap().len(), 2);
    assert_eq!(first["stream"]["next"], 2);
    assert_eq!(first["stream"]["events"][1]["eventType"], "Poison");
    let rest = query(
        &server,
        r#"{ stream(namespace: "projector", stream: "s-1", fromVersion: 2, first: 2) { next events { version } } }"#,
    )
    .await;
    assert_eq!(rest["stream"]["events"], json!([{"version": 2}]));
    assert_eq!(rest["stream"]["next"], Value::Null);
    let all = query(
        &server,
        r#"{ events(namespaces: ["projector"], fromPosition: 1, first: 10) { events { position } } headPosition }"#,
    )
    .await;
    assert_eq!(all["events"]["events"].as_array().unwrap().len(), 3);
    assert_eq!(all["headPosition"], 3);
}
