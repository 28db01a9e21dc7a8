//! Token-protected control plane, refusal to expose it without a token, and the guest sandbox.

use crate::support::{Backend, FAAS, Options, Server, components, error_of, spec};
use serde_json::{Value, json};

#[tokio::test]
async fn the_admin_token_is_enforced() {
    let token = "s3cret-token";
    let server = Server::start_with(Options { token: Some(token.into()), ..Default::default() }).await;
    let hello = components().bytes("hello");

    for path in ["/v1/functions", "/metrics", "/v1/openapi.json", "/v1/functions/x", "/v1/sagas", "/v1/transactions"] {
        let url = format!("{}{path}", server.admin);
        let response = server.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} without a token");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_of(&body).0, "unauthorized");
        let response = server.http.get(&url).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} with a wrong token");
    }
    // Deploying without the token stores nothing.
    let form = reqwest::multipart::Form::new().part("component", reqwest::multipart::Part::bytes(hello.clone()));
    // A one-off client: the server refuses before reading the upload and closes that connection,
    // which must not be handed back to the shared pool.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/functions/f/versions", server.admin))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Health checks stay open.
    assert_eq!(server.http.get(format!("{}/healthz", server.admin)).send().await.unwrap().status(), 200);

    // With the token everything works, through the API and the CLI.
    server.deploy_ok("hello", hello, spec(&["/hello"], json!({}))).await;
    let out = server.cli(&["list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(FAAS)
        .args(["list"])
        .env("FAAS_ADMIN_URL", &server.admin)
        .env("FAAS_ADMIN_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Authorization"));
}

#[tokio::test]
async fn refuses_a_public_admin_listener_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(FAAS)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("FAAS_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FAAS_ADMIN_TOKEN"), "{stderr}");
}

#[tokio::test]
async fn guests_get_no_environment_files_or_network() {
    // The host's own environment must not leak into guests.
    let server = Server::start(Backend::Sqlite).await;
    server.deploy_ok("misbehave", components().bytes("misbehave"), spec(&["/misbehave/..."], json!({}))).await;
    let (status, body) = server.call("/misbehave/sandbox").await;
    assert_eq!(status, 200, "{body}");
    let sandbox: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sandbox["env_vars"], 0, "{body}");
    assert_eq!(sandbox["root_dir_readable"], false, "{body}");
    assert_eq!(sandbox["preopens"], false, "{body}");
    let (status, body) = server.call("/misbehave/outbound").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("denied: ") && body.contains("HttpRequestDenied"), "outgoing HTTP must be denied: {body}");
}
