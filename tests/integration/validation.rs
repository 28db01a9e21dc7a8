//! Deploy validation: every bad input is a 4xx that names the problem, and nothing is stored.

use crate::support::{Backend, Server, components, error_of, spec};
use serde_json::{Value, json};

async fn rejected(server: &Server, name: &str, bytes: Vec<u8>, spec: Value) -> (u16, String, String) {
    let response = server.deploy(name, bytes, spec).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error");
    let (code, message) = error_of(&body);
    (status, code, message)
}

async fn nothing_deployed(server: &Server) {
    let (_, list) = server.get_json("/v1/functions").await;
    assert_eq!(list["functions"], json!([]), "a rejected deploy must store nothing");
}

#[tokio::test]
async fn not_wasm() {
    let server = Server::start(Backend::Sqlite).await;
    let (status, code, message) =
        rejected(&server, "f", b"#!/bin/sh\necho hi\n".to_vec(), spec(&["/f"], json!({}))).await;
    assert_eq!((status, code.as_str()), (400, "not_wasm"));
    assert!(message.contains("not WebAssembly"), "{message}");
    nothing_deployed(&server).await;
}

#[tokio::test]
async fn core_module_instead_of_component() {
    let server = Server::start(Backend::Sqlite).await;
    let module = wat::parse_str(r#"(module (func (export "run")))"#).unwrap();
    let (status, code, message) = rejected(&server, "f", module, spec(&["/f"], json!({}))).await;
    assert_eq!((status, code.as_str()), (400, "not_a_component"));
    assert!(message.contains("cargo build --target wasm32-wasip2"), "{message}");
    nothing_deployed(&server).await;
}

#[tokio::test]
async fn component_without_a_known_handler() {
    let server = Server::start(Backend::Sqlite).await;
    let component = wat::parse_str(
        r#"(component
             (core module $m (func (export "run")))
             (core instance $i (instantiate $m))
             (func (export "run") (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    let (status, code, message) = rejected(&server, "f", component, spec(&["/f"], json!({}))).await;
    assert_eq!((status, code.as_str()), (400, "no_handler_export"));
    assert!(message.contains("wasi:http/incoming-handler@0.2"), "{message}");
    assert!(message.contains("run"), "names what it found: {message}");
    nothing_deployed(&server).await;
}

#[tokio::test]
async fn imports_the_platform_cannot_satisfy() {
    let server = Server::start(Backend::Sqlite).await;
    let component = wat::parse_str(
        r#"(component
             (import "acme:billing/ledger@1.0.0" (instance))
             (import "wasi:keyvalue/store@0.2.0-draft" (instance)))"#,
    )
    .unwrap();
    let (status, code, message) = rejected(&server, "f", component, spec(&["/f"], json!({}))).await;
    assert_eq!((status, code.as_str()), (400, "unsatisfied_imports"));
    assert!(message.contains("acme:billing/ledger@1.0.0"), "{message}");
    assert!(message.contains("wasi:keyvalue/store@0.2.0-draft"), "{message}");
    nothing_deployed(&server).await;
}

#[tokio::test]
async fn invalid_component_bytes() {
    let server = Server::start(Backend::Sqlite).await;
    let mut bytes = components().bytes("hello");
    bytes.truncate(bytes.len() / 2);
    let (status, code, _) = rejected(&server, "f", bytes, spec(&["/f"], json!({}))).await;
    assert_eq!((status, code.as_str()), (400, "invalid_component"));
    nothing_deployed(&server).await;
}

#[tokio::test]
async fn oversized_component_is_413() {
    let server = Server::start(Backend::Sqlite).await;
    // Over the default 50 MiB limit: a valid header followed by padding.
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.resize((50 << 20) + 1, 0);
    // The server stops reading the upload at the limit and closes the connection after its
    // answer: each upload gets a connection of its own, so the requests after them never pick
    // up one of those from the pool (they would find it cut off).
    let upload = async |bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("config", spec(&["/f"], json!({})).to_string())
            .part("component", reqwest::multipart::Part::bytes(bytes).file_name("f.wasm"));
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        client.post(format!("{}/v1/functions/f/versions", server.admin)).multipart(form).send().await
    };
    let response = upload(bytes).await.expect("upload");
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_of(&body).0, "component_too_large");
    // Far over the limit: the server reads no more than the limit (plus 1 MiB of framing),
    // answers a JSON 413 and closes; a client still sending by then may see the connection
    // closed under its upload instead of the answer (a loaded machine), never a deploy.
    match upload(vec![0; 60 << 20]).await {
        Ok(response) => assert_eq!(response.status(), 413),
        Err(error) => {
            let error = format!("{error:?}");
            assert!(error.contains("BrokenPipe") || error.contains("ConnectionReset"), "{error}");
        }
    }
    nothing_deployed(&server).await;
}

#[tokio::test]
async fn bad_names_routes_and_specs() {
    let server = Server::start(Backend::Sqlite).await;
    let hello = components().bytes("hello");
    let cases = [
        ("Bad_Name", spec(&["/f"], json!({})), "invalid_name", "invalid function name"),
        ("f", spec(&["no-slash"], json!({})), "invalid_spec", "must start with `/`"),
        ("f", spec(&["/a/.../b"], json!({})), "invalid_spec", "only allowed as the last segment"),
        ("f", spec(&["/f"], json!({"memory_bytes": 10})), "invalid_spec", "limits.memory_bytes"),
        ("f", json!({"triggers": {"http": ["/f"]}, "bogus": 1}), "invalid_spec", "unknown field `bogus`"),
    ];
    for (name, spec, expected_code, expected_message) in cases {
        let (status, code, message) = rejected(&server, name, hello.clone(), spec).await;
        assert_eq!((status, code.as_str()), (400, expected_code), "{message}");
        assert!(message.contains(expected_message), "{message}");
    }
    // Missing the component part.
    let form = reqwest::multipart::Form::new().text("config", "{}");
    let response =
        server.admin_request(reqwest::Method::POST, "/v1/functions/f/versions").multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 400);
    nothing_deployed(&server).await;
}

#[tokio::test]
async fn a_route_belongs_to_one_function() {
    let server = Server::start(Backend::Sqlite).await;
    let hello = components().bytes("hello");
    server.deploy_ok("one", hello.clone(), spec(&["/shared/..."], json!({}))).await;
    let (status, code, message) = rejected(&server, "two", hello.clone(), spec(&["/shared/..."], json!({}))).await;
    assert_eq!((status, code.as_str()), (409, "route_conflict"));
    assert!(message.contains("`one`"), "{message}");
    // A more specific wildcard is fine, and wins for its subtree.
    server.deploy_ok("two", components().bytes("wasi-raw"), spec(&["/shared/raw/..."], json!({}))).await;
    assert_eq!(server.call("/shared/raw/x").await, (200, "raw wasi ok".into()));
    assert_eq!(server.call("/shared/x").await.0, 200);
}

/// Every refusal axum itself produces (query string, path segment, JSON body, multipart,
/// method) comes in the one `{"error":{"code","message"}}` shape.
#[tokio::test]
async fn every_rejection_has_the_json_error_shape() {
    let server = Server::start(Backend::Sqlite).await;
    let send = |method: reqwest::Method, path: &str| server.admin_request(method, path);
    let cases = [
        (send(reqwest::Method::GET, "/v1/sagas?limit=lots"), 400, "invalid_query"),
        (send(reqwest::Method::GET, "/v1/transactions?unknown=1"), 400, "invalid_query"),
        (send(reqwest::Method::GET, "/v1/namespaces/a/streams/s?backward=maybe"), 400, "invalid_query"),
        (send(reqwest::Method::POST, "/v1/functions/f/parked/not-a-number/replay"), 400, "invalid_path"),
        (send(reqwest::Method::POST, "/graphql").body("{}"), 415, "invalid_json"),
        (
            send(reqwest::Method::POST, "/graphql").header("content-type", "application/json").body("{nope"),
            400,
            "invalid_json",
        ),
        (
            send(reqwest::Method::POST, "/graphql").header("content-type", "application/json").body("[1]"),
            422,
            "invalid_json",
        ),
        (send(reqwest::Method::POST, "/v1/functions/f/versions").body("raw"), 400, "invalid_multipart"),
        (send(reqwest::Method::PUT, "/v1/functions"), 405, "method_not_allowed"),
        (send(reqwest::Method::GET, "/v1/nothing-here"), 404, "not_found"),
        (send(reqwest::Method::GET, "/v1/functions?limit=0"), 400, "invalid_limit"),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({got}): {text}"));
        assert_eq!((got, error_of(&body).0.as_str()), (status, code), "{body}");
    }
}

/// `/v1/functions` pages by name and says when there is more.
#[tokio::test]
async fn function_lists_page_by_name() {
    let server = Server::start(Backend::Sqlite).await;
    for name in ["c", "a", "b"] {
        server.deploy_ok(name, components().bytes("hello"), spec(&[&format!("/{name}")], json!({}))).await;
    }
    let (_, first) = server.get_json("/v1/functions?limit=2").await;
    let names: Vec<&str> = first["functions"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(first["next"], "b");
    let (_, rest) = server.get_json("/v1/functions?limit=2&after=b").await;
    assert_eq!(rest["functions"][0]["name"], "c");
    assert_eq!(rest["next"], Value::Null);
}
