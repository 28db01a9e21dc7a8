//! The GraphQL query side: functions, streams (paged), subscriptions and parked events, behind the
//! admin token.

use crate::support::{Options, Server, components, eventually};
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

    let data = eventually("the subscription catches up and parks the poison event", Duration::from_secs(5), async || {
        let data = query(&server, "{ functions { name activeVersion versions { version sha256 routes subscribedStreams } subscriptions { stream checkpoint head lag } parked { position error attempts } } }").await;
        let function = &data["functions"][0];
        // U64 values are strings in GraphQL.
        if function["subscriptions"][0]["lag"] == "0" && function["parked"].as_array().is_some_and(|p| !p.is_empty()) {
            Ok(data)
        } else {
            Err(data)
        }
    })
    .await;
    let function = &data["functions"][0];
    assert_eq!(function["name"], "projector");
    assert_eq!(function["activeVersion"], 1);
    assert_eq!(function["versions"][0]["routes"], json!(["/projector/..."]));
    assert_eq!(function["versions"][0]["subscribedStreams"], json!(["*"]));
    assert_eq!(function["subscriptions"][0], json!({"stream": "*", "checkpoint": "3", "head": "3", "lag": "0"}));
    assert_eq!(function["parked"][0]["position"], "2", "U64 values are strings");
    assert!(function["parked"][0]["error"].as_str().unwrap().contains("poison"));

    // Paged stream reads with metadata.
    let first = query(&server, r#"{ stream(namespace: "projector", stream: "s-1", first: 2) { next events { version position eventType data metadata { correlationId custom { key value } } } } }"#).await;
    assert_eq!(first["stream"]["events"].as_array().unwrap().len(), 2);
    assert_eq!(first["stream"]["next"], "2");
    assert_eq!(first["stream"]["events"][1]["eventType"], "Poison");
    let rest = query(
        &server,
        r#"{ stream(namespace: "projector", stream: "s-1", fromVersion: 2, first: 2) { next events { version } } }"#,
    )
    .await;
    assert_eq!(rest["stream"]["events"], json!([{"version": "2"}]));
    assert_eq!(rest["stream"]["next"], Value::Null);
    let all = query(
        &server,
        r#"{ events(namespaces: ["projector"], fromPosition: 1, first: 10) { events { position } } headPosition }"#,
    )
    .await;
    assert_eq!(all["events"]["events"].as_array().unwrap().len(), 3);
    assert_eq!(all["headPosition"], "3");

    // "end" names the last version; a backward read starts there by default.
    let last = query(
        &server,
        r#"{ stream(namespace: "projector", stream: "s-1", fromVersion: "end", backward: true, first: 1) { events { version } } }"#,
    )
    .await;
    assert_eq!(last["stream"]["events"], json!([{"version": "2"}]), "versions count from 0");

    // Stream and namespace names are checked as in the function API and REST.
    for (namespace, stream) in [("projector", "bad name"), ("Bad_NS", "s-1")] {
        let body: Value = server
            .admin_request(reqwest::Method::POST, "/graphql")
            .json(&json!({ "query": format!(r#"{{ stream(namespace: "{namespace}", stream: "{stream}") {{ next }} }}"#) }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("invalid"), "{namespace}/{stream}: {body}");
    }
    let (status, body) = server.get_json("/v1/namespaces/projector/streams/bad%20name").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, body) = server.get_json("/v1/namespaces/projector/streams/s-1?max=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["next"], 2, "REST pages say where the next page starts");
    let (_, body) = server.get_json("/v1/namespaces/projector/streams/s-1?from=end&backward=true&max=1").await;
    assert_eq!(body["events"][0]["version"], 2, "{body}");
}

/// graphql-js 16's `getIntrospectionQuery()`, as GraphiQL, Apollo and codegen tools send it
/// (`ofType` nested 9 deep).
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
}"#;

#[tokio::test]
async fn schema_driven_clients_can_introspect_and_positions_are_not_32_bit_ints() {
    let server = Server::start_with(Options::default()).await;
    let data = query(&server, INTROSPECTION).await;
    let types = data["__schema"]["types"].as_array().unwrap();
    let u64_type = types.iter().find(|t| t["name"] == "U64").expect("a U64 scalar");
    assert_eq!(u64_type["kind"], "SCALAR");
    let event = types.iter().find(|t| t["name"] == "Event").unwrap();
    for field in ["position", "version"] {
        let f = event["fields"].as_array().unwrap().iter().find(|f| f["name"] == field).unwrap();
        assert_eq!(f["type"]["ofType"]["name"], "U64", "{field} is not an Int: {f}");
    }

    // Data queries still have a depth limit.
    let deep = "{ functions { versions { version } subscriptions { stream } parked { position } } }";
    query(&server, deep).await;
    let body: Value = server
        .admin_request(reqwest::Method::POST, "/graphql")
        .json(&json!({ "query": "{ a { b { c { d { e { f { g { h { i } } } } } } } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("too deep"), "{body}");

    // A body that is not JSON gets the API's error shape.
    let response = server
        .admin_request(reqwest::Method::POST, "/graphql")
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");
}
