//! Variables and secrets through `wasi:config/store` (functions/config-echo): set at deploy
//! (`--var`, `--secret` from a value, a file and an environment variable), read by the guest,
//! changed without a redeploy, restored by a rollback, kept by an invocation in flight; secret
//! values never in the API, the CLI, the server log (guest output is redacted), the SQLite file
//! or the PostgreSQL tables; bad keys and values refused with 400s; a wrong master key refused
//! at start-up; concurrent changes through two nodes all kept.

use crate::backend_tests;
use crate::support::{Backend, Database, FAAS, Options, Server, components, error_of, eventually};
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    variables_and_secrets_reach_the_guest_and_nothing_else,
    bad_keys_and_values_are_refused,
    an_invocation_keeps_the_values_it_started_with,
    config_changes_reach_other_nodes,
);

const SECRET_FILE_VALUE: &str = "s3cr3t-from-a-file-7f2c9e";
const SECRET_ENV_VALUE: &str = "s3cr3t-from-the-env-41ab0d";
const SECRET_LATER: &str = "s3cr3t-set-later-99e1c3";

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn cli_ok(server: &Server, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut command = std::process::Command::new(FAAS);
    command.args(args).env("FAAS_ADMIN_URL", &server.admin).env_remove("FAAS_ADMIN_TOKEN");
    for (k, v) in envs {
        command.env(k, v);
    }
    let out = command.output().expect("running the faas CLI");
    assert!(out.status.success(), "faas {args:?} failed: {}", text(&out));
    text(&out)
}

async fn patch(server: &Server, body: Value) -> (u16, Value) {
    let response = server
        .admin_request(reqwest::Method::PATCH, "/v1/functions/config-echo/config")
        .json(&body)
        .send()
        .await
        .expect("PATCH config");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every table of the database as text.
async fn dump_postgres(url: &str) -> String {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.expect("connecting");
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_all(&mut conn)
            .await
            .expect("tables");
    assert!(tables.iter().any(|(t,)| t == "function_configs"), "{tables:?}");
    let mut dump = String::new();
    for (table,) in tables {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM \"{table}\" t"))
            .fetch_all(&mut conn)
            .await
            .expect("dump table");
        for (row,) in rows {
            dump.push_str(&row);
            dump.push('\n');
        }
    }
    dump
}

/// Every file of the SQLite database (main file, WAL, shared memory) as bytes.
fn sqlite_bytes(data_dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("faas.db")) {
            bytes.extend(std::fs::read(&path).expect("db file"));
        }
    }
    assert!(!bytes.is_empty(), "no SQLite files in {}", data_dir.display());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn variables_and_secrets_reach_the_guest_and_nothing_else(backend: Backend) {
    let db = Database::create(backend).await;
    let server = Server::start_with(Options { database_url: db.url.clone(), ..Default::default() }).await;
    let key_file = server.data_dir.join("secret.key");
    #[cfg(unix)]
    if backend == Backend::Sqlite {
        // On PostgreSQL the suite gives every node one FAAS_SECRET_KEY instead.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).expect("key file created").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let secret_file = server.data_dir.join("token.txt");
    std::fs::write(&secret_file, format!("{SECRET_FILE_VALUE}\n")).unwrap();
    let wasm = components().path("config-echo");
    let token_arg = format!("TOKEN=@{}", secret_file.display());
    let deployed = cli_ok(
        &server,
        &[
            "deploy",
            "config-echo",
            wasm.to_str().unwrap(),
            "--route",
            "/config-echo",
            "--route",
            "/config-echo/...",
            "--var",
            "GREETING=hi",
            "--var",
            "MODE=a=b",
            "--secret",
            &token_arg,
            "--secret",
            "API_KEY=env:CFG_TEST_API_KEY",
        ],
        &[("CFG_TEST_API_KEY", SECRET_ENV_VALUE)],
    );
    assert!(!deployed.contains(SECRET_FILE_VALUE) && !deployed.contains(SECRET_ENV_VALUE), "{deployed}");

    // The guest reads variables and secrets alike.
    assert_eq!(server.call("/config-echo/GREETING").await, (200, "hi".into()));
    assert_eq!(server.call("/config-echo/MODE").await, (200, "a=b".into()));
    assert_eq!(server.call("/config-echo/TOKEN").await, (200, SECRET_FILE_VALUE.into()));
    assert_eq!(server.call("/config-echo/API_KEY").await, (200, SECRET_ENV_VALUE.into()));
    assert_eq!(server.call("/config-echo/NOPE").await.0, 404);
    let (status, all) = server.get_json_data("/config-echo").await;
    assert_eq!(status, 200);
    assert_eq!(all, json!({"API_KEY": SECRET_ENV_VALUE, "GREETING": "hi", "MODE": "a=b", "TOKEN": SECRET_FILE_VALUE}));
    // Components built for wasmCloud (`wasi:config/store@0.2.0-draft`) and Spin 3
    // (`…@0.2.0-draft-2024-09-27`) read the same values.
    assert_eq!(server.call("/config-echo/draft/GREETING").await, (200, "hi".into()));
    assert_eq!(server.call("/config-echo/draft-2024/TOKEN").await, (200, SECRET_FILE_VALUE.into()));
    assert_eq!(server.call("/config-echo/draft/NOPE").await.0, 404);

    // The API and the CLI show variables and secret names, never a secret's value.
    let (status, config) = server.get_json("/v1/functions/config-echo/config").await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["variables"], json!({"GREETING": "hi", "MODE": "a=b"}));
    assert_eq!(config["secrets"], json!(["API_KEY", "TOKEN"]));
    assert_eq!(config["config_version"], 1);
    let (_, function) = server.get_json("/v1/functions/config-echo").await;
    let shown = format!(
        "{config}{function}{}{}",
        cli_ok(&server, &["get", "config-echo"], &[]),
        cli_ok(&server, &["config", "get", "config-echo"], &[])
    );
    for secret in [SECRET_FILE_VALUE, SECRET_ENV_VALUE] {
        assert!(!shown.contains(secret), "a secret value was shown: {shown}");
    }

    // A guest that prints a secret has it redacted in the log.
    assert_eq!(server.call("/config-echo/print/TOKEN").await, (200, "printed".into()));
    assert_eq!(server.call("/config-echo/print/GREETING").await, (200, "printed".into()));
    server.wait_for_log("GREETING=hi").await;
    server.wait_for_log("TOKEN=[redacted]").await;
    // A long line is logged in 8 KiB pieces, and the guest writes this one in two parts, the
    // first ending inside the secret: no piece boundary may cut a secret in two unredacted halves.
    let pad = 8192 - "TOKEN=".len() - 4;
    let split = "TOKEN=".len() + 10;
    let path = format!("/config-echo/print/TOKEN?pad={pad}&split={split}");
    assert_eq!(server.call(&path).await, (200, "printed".into()));
    server.wait_for_log(&format!("{}TOKEN=", "x".repeat(64))).await;
    server.wait_for_log("[redacted]").await;

    // Changed without a redeploy: each change a new config version of the same function version.
    let out = cli_ok(
        &server,
        &["config", "set", "config-echo", "GREETING=hello", "--secret", &format!("LATER={SECRET_LATER}")],
        &[],
    );
    assert!(!out.contains(SECRET_LATER), "{out}");
    assert_eq!(server.call("/config-echo/GREETING").await, (200, "hello".into()));
    assert_eq!(server.call("/config-echo/LATER").await, (200, SECRET_LATER.into()));
    cli_ok(&server, &["config", "unset", "config-echo", "MODE"], &[]);
    assert_eq!(server.call("/config-echo/MODE").await.0, 404);
    let (_, config) = server.get_json("/v1/functions/config-echo/config").await;
    assert_eq!((config["active_version"].clone(), config["config_version"].clone()), (json!(1), json!(3)));
    // A secret set as a variable stops being a secret (and is shown): the caller's choice.
    let (status, body) = patch(&server, json!({"secrets": {"GREETING": "now-secret"}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["variables"], json!({}));
    assert_eq!(body["secrets"], json!(["API_KEY", "GREETING", "LATER", "TOKEN"]));
    assert_eq!(server.call("/config-echo/GREETING").await, (200, "now-secret".into()));

    // A new version with its own config; a rollback restores the config each version last ran with.
    let wasm = components().bytes("config-echo");
    let form = reqwest::multipart::Form::new()
        .text("config", json!({"triggers": {"http": ["/config-echo", "/config-echo/..."]}}).to_string())
        .text("values", json!({"variables": {"GREETING": "two"}}).to_string())
        .part("component", reqwest::multipart::Part::bytes(wasm).file_name("f.wasm"));
    let response = server
        .admin_request(reqwest::Method::POST, "/v1/functions/config-echo/versions")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201, "{:?}", response.text().await);
    assert_eq!(server.call("/config-echo/GREETING").await, (200, "two".into()));
    assert_eq!(
        server.call("/config-echo/TOKEN").await,
        (200, SECRET_FILE_VALUE.into()),
        "kept from the version before"
    );
    cli_ok(&server, &["rollback", "config-echo", "1"], &[]);
    assert_eq!(server.call("/config-echo/GREETING").await, (200, "now-secret".into()));
    cli_ok(&server, &["rollback", "config-echo", "2"], &[]);
    assert_eq!(server.call("/config-echo/GREETING").await, (200, "two".into()));
    let (_, function) = server.get_json("/v1/functions/config-echo").await;
    assert_eq!(function["versions"][0]["config_version"], 4);
    assert_eq!(function["versions"][1]["config_version"], 5);

    // No plaintext at rest or in the log.
    let secrets = [SECRET_FILE_VALUE, SECRET_ENV_VALUE, SECRET_LATER, "now-secret"];
    let logs = server.logs();
    match backend {
        Backend::Sqlite => {
            let bytes = sqlite_bytes(&server.data_dir);
            assert!(contains(&bytes, "GREETING"), "the dump sees the config at all");
            for secret in secrets {
                assert!(!contains(&bytes, secret), "{secret} is in the SQLite file");
            }
        }
        Backend::Postgres => {
            let dump = dump_postgres(db.url.as_deref().unwrap()).await;
            assert!(dump.contains("TOKEN"), "the dump sees the config at all: {dump}");
            for secret in secrets {
                assert!(!dump.contains(secret), "{secret} is in PostgreSQL");
            }
        }
    }
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} is in the server log:\n{logs}");
    }
    // Nor any part of one: every secret here starts with `s3cr3t`, and the long line's first
    // piece (8 KiB) would end 4 or more bytes into TOKEN's value if it were cut at its size.
    assert!(!logs.contains("s3cr3t"), "a piece of a secret is in the server log:\n{logs}");
    assert!(!logs.contains(&format!("TOKEN={}", &SECRET_FILE_VALUE[..4])), "a piece of a secret is in the server log");
    if backend == Backend::Sqlite {
        assert!(!std::fs::read_to_string(&key_file).unwrap().is_empty());
    }
}

async fn bad_keys_and_values_are_refused(backend: Backend) {
    let server = Server::start(backend).await;
    let (status, body) = patch(&server, json!({"variables": {"A": "1"}})).await;
    assert_eq!((status, error_of(&body).0.as_str()), (404, "not_found"));
    server
        .deploy_ok(
            "config-echo",
            components().bytes("config-echo"),
            json!({"triggers": {"http": ["/config-echo/..."]}}),
        )
        .await;
    let big = "x".repeat((64 << 10) + 1);
    let nearly = "x".repeat(64 << 10);
    let many: serde_json::Map<String, Value> = (0..17).map(|i| (format!("K{i}"), json!(nearly))).collect();
    let cases = [
        (json!({"variables": {"1A": "x"}}), "[A-Za-z_]"),
        (json!({"variables": {"A-B": "x"}}), "[A-Za-z_]"),
        (json!({"secrets": {"": "x"}}), "[A-Za-z_]"),
        (json!({"variables": {"BIG": big}}), "65536"),
        (json!({"variables": many}), "1048576"),
        (json!({"unset": ["MISSING"]}), "not set"),
        (json!({"variables": {"A": "1"}, "secrets": {"A": "2"}}), "both"),
        (json!({}), "nothing to change"),
    ];
    for (change, needle) in cases {
        let (status, body) = patch(&server, change.clone()).await;
        assert_eq!(status, 400, "{change}: {body}");
        let (code, message) = error_of(&body);
        assert_eq!(code, "invalid_config", "{body}");
        assert!(message.contains(needle), "{change}: {message}");
    }
    // A deploy's values pass the same rules; nothing is stored for a refused one.
    let form = reqwest::multipart::Form::new()
        .text("config", json!({"triggers": {"http": ["/config-echo/..."]}}).to_string())
        .text("values", json!({"variables": {"bad key": "x"}}).to_string())
        .part("component", reqwest::multipart::Part::bytes(components().bytes("config-echo")).file_name("f.wasm"));
    let response = server
        .admin_request(reqwest::Method::POST, "/v1/functions/config-echo/versions")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(error_of(&response.json().await.unwrap()).0, "invalid_config");
    let (_, function) = server.get_json("/v1/functions/config-echo").await;
    assert_eq!(function["latest_version"], 1);
    let out = server.cli(&["config", "set", "config-echo", "no-equals-sign"]);
    assert!(!out.status.success());
    let (_, config) = server.get_json("/v1/functions/config-echo/config").await;
    assert_eq!(config["config_version"], Value::Null, "no refused change was stored: {config}");
}

async fn an_invocation_keeps_the_values_it_started_with(backend: Backend) {
    let server = Server::start(backend).await;
    server
        .deploy_ok(
            "config-echo",
            components().bytes("config-echo"),
            json!({"triggers": {"http": ["/config-echo/..."]}}),
        )
        .await;
    let (status, body) = patch(&server, json!({"variables": {"K": "old"}})).await;
    assert_eq!(status, 200, "{body}");
    let slow = {
        let (http, url) = (server.http.clone(), format!("{}/config-echo/slow/K?ms=1500", server.data));
        tokio::spawn(async move { http.get(url).send().await.unwrap().text().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = patch(&server, json!({"variables": {"K": "new"}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.call("/config-echo/K").await, (200, "new".into()));
    assert_eq!(slow.await.unwrap(), "old");
}

async fn config_changes_reach_other_nodes(backend: Backend) {
    if backend == Backend::Sqlite {
        return a_wrong_key_file_is_refused().await; // one node per SQLite file
    }
    let db = Database::create(backend).await;
    let key = "A".repeat(43) + "=";
    let options = Options {
        database_url: db.url.clone(),
        extra_args: vec!["--secret-key".into(), key.clone()],
        ..Default::default()
    };
    let a = Server::start_with(options.clone()).await;
    let b = Server::start_with(options).await;
    a.deploy_ok("config-echo", components().bytes("config-echo"), json!({"triggers": {"http": ["/config-echo/..."]}}))
        .await;
    let (status, body) = patch(&a, json!({"secrets": {"S": "shared"}})).await;
    assert_eq!(status, 200, "{body}");
    eventually("node b sees the secret", Duration::from_secs(10), async || {
        let seen = b.call("/config-echo/S").await;
        if seen == (200, "shared".to_owned()) { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;
    // Changes to different keys made at once through both nodes: none lost, one config version
    // each (a change computed from a config another node replaced meanwhile is redone).
    let (_, before) = a.get_json("/v1/functions/config-echo/config").await;
    let changes = (0..24).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        async move { patch(node, json!({"variables": {format!("K{i}"): i.to_string()}})).await }
    });
    for (status, body) in futures::future::join_all(changes).await {
        assert_eq!(status, 200, "{body}");
    }
    for node in [&a, &b] {
        let (_, config) = node.get_json("/v1/functions/config-echo/config").await;
        let variables = config["variables"].as_object().unwrap();
        let missing: Vec<_> =
            (0..24).filter(|i| variables.get(&format!("K{i}")) != Some(&json!(i.to_string()))).collect();
        assert!(missing.is_empty(), "changes lost: K{missing:?} in {config}");
        assert_eq!(config["config_version"].as_u64(), before["config_version"].as_u64().map(|v| v + 24), "{config}");
    }

    // A node with another key refuses to start, saying why.
    let dir = tempfile::tempdir().unwrap();
    let other = "E".repeat(43) + "=";
    let out = std::process::Command::new(FAAS)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--database-url", db.url.as_deref().unwrap(), "--secret-key", &other])
        .env_remove("FAAS_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("not the key this database's secrets were sealed with"), "{}", text(&out));

    // Rotation (nodes stopped): every config version resealed; the new key opens them, the old not.
    drop((a, b));
    let out = std::process::Command::new(FAAS)
        .args(["rotate-secret-key", "--database-url", db.url.as_deref().unwrap(), "--secret-key", &key])
        .args(["--new-secret-key", &other])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resealed 25 config versions"), "{}", text(&out)); // 1 + the 24 above
    let options =
        Options { database_url: db.url.clone(), extra_args: vec!["--secret-key".into(), other], ..Default::default() };
    let c = Server::start_with(options).await;
    assert_eq!(c.call("/config-echo/S").await, (200, "shared".into()));
}

/// SQLite: the key file replaced after secrets were sealed → no start.
async fn a_wrong_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut server = Server::start_with(options).await;
    server
        .deploy_ok(
            "config-echo",
            components().bytes("config-echo"),
            json!({"triggers": {"http": ["/config-echo/..."]}}),
        )
        .await;
    assert_eq!(patch(&server, json!({"secrets": {"S": "x"}})).await.0, 200);
    server.terminate();
    // Rotation with the key file: a new key in the file, the secrets resealed under it.
    let old_key = std::fs::read_to_string(dir.path().join("secret.key")).unwrap();
    let out = std::process::Command::new(FAAS)
        .args(["rotate-secret-key", "--data-dir"])
        .arg(dir.path())
        .env_remove("FAAS_SECRET_KEY")
        .env_remove("FAAS_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(std::fs::read_to_string(dir.path().join("secret.key")).unwrap(), old_key);
    let mut server = Server::start_with(Options { data_dir: Some(dir.path().to_owned()), ..Default::default() }).await;
    assert_eq!(server.call("/config-echo/S").await, (200, "x".into()));
    server.terminate();
    std::fs::write(dir.path().join("secret.key"), "ab".repeat(32)).unwrap();
    let out = std::process::Command::new(FAAS)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("FAAS_SECRET_KEY")
        .env_remove("FAAS_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("not the key this database's secrets were sealed with"), "{}", text(&out));
}
