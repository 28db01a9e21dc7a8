//! Two-phase commit end to end: the `ledger` component deployed twice (`bank-east`,
//! `bank-west`), transfers between them through `faas:platform/tx`, and coordinator crashes
//! between the phases.

use crate::backend_tests;
use crate::support::{Backend, Database, Options, Server, components, eventually, spec};
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    transfers_commit_on_both_or_neither,
    a_crash_after_the_decision_commits_on_recovery,
    a_crash_before_the_decision_aborts_on_recovery,
    an_idempotency_key_names_one_transaction,
    transaction_lists_page_with_a_cursor,
    a_transfer_right_after_a_restart_is_not_recovered,
    a_participant_asks_an_external_service_before_it_votes,
);

async fn banks(server: &Server) {
    for name in ["bank-east", "bank-west"] {
        server.deploy_ok(name, components().bytes("ledger"), spec(&[&format!("/{name}/...")], json!({}))).await;
    }
    assert_eq!(server.post("/bank-east/accounts/alice/deposit?amount=100").await.0, 200);
}

async fn account(server: &Server, bank: &str, id: &str) -> Value {
    let (status, body) = server.get_json_data(&format!("/{bank}/accounts/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn transfer(amount: i64) -> Value {
    json!({ "from": "alice", "to_function": "bank-west", "to": "bob", "amount": amount })
}

async fn transfers_commit_on_both_or_neither(backend: Backend) {
    let server = Server::start(backend).await;
    banks(&server).await;

    let (status, body) = server.post_json("/bank-east/transfer", &transfer(60)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "committed");
    assert_eq!(account(&server, "bank-east", "alice").await["balance"], 40);
    assert_eq!(account(&server, "bank-west", "bob").await["balance"], 60);
    let (_, tx) = server.get_json(&format!("/v1/transactions/{}", body["tx"].as_str().unwrap())).await;
    assert_eq!(tx["status"], "committed", "{tx}");
    assert_eq!(tx["participants"][0]["vote"], "commit");
    assert_eq!(tx["participants"][1]["vote"], "commit");

    // A participant votes no: both abort, nothing moves, nothing stays held.
    let (status, body) = server.post_json("/bank-east/transfer", &transfer(60)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("insufficient funds"), "{body}");
    let (alice, bob) = (account(&server, "bank-east", "alice").await, account(&server, "bank-west", "bob").await);
    assert_eq!((alice["balance"].as_i64(), bob["balance"].as_i64()), (Some(40), Some(60)));
    assert_eq!(
        (alice["holds"].clone(), bob["holds"].clone()),
        (json!({}), json!({})),
        "bob's prepared credit was aborted"
    );
    let (_, aborted) = server.get_json("/v1/transactions?status=aborted").await;
    let aborted = aborted["transactions"].clone();
    assert_eq!(aborted.as_array().unwrap().len(), 1);
    assert_eq!(aborted[0]["participants"][1]["vote"], "commit", "bob voted yes and was still aborted");

    // A prepare that outlives its timeout votes no: both abort, and the slow one's hold is
    // released by the abort.
    let mut slow = transfer(10);
    slow["prepare_delay_ms"] = json!(1500);
    slow["prepare_timeout_ms"] = json!(300);
    let (status, body) = server.post_json("/bank-east/transfer", &slow).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("within its 300 ms timeout"), "{body}");
    let alice = account(&server, "bank-east", "alice").await;
    assert_eq!((alice["balance"].as_i64(), alice["holds"].clone()), (Some(40), json!({})));

    // Participants must exist and export `participant`.
    let (status, body) = server
        .post_json("/bank-east/transfer", &json!({ "from": "alice", "to_function": "nobody", "to": "x", "amount": 1 }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`nobody` is not deployed"), "{body}");
    server.deploy_ok("hello", components().bytes("hello"), spec(&["/hello"], json!({}))).await;
    let (status, body) = server
        .post_json("/bank-east/transfer", &json!({ "from": "alice", "to_function": "hello", "to": "x", "amount": 1 }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("exports no `faas:platform/participant`"), "{body}");

    // GraphQL shows the log too.
    let query = json!({ "query": "{ transactions { transactions { status participants { function vote } } next } }" });
    let graphql: Value = server
        .admin_request(reqwest::Method::POST, "/graphql")
        .json(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(graphql["data"]["transactions"]["transactions"].as_array().unwrap().len(), 3, "{graphql}");
}

/// The same key in the same namespace is the same transaction: asked again, it answers the
/// recorded outcome and moves nothing twice; other participants under that key are refused;
/// the key finds the transaction in the log.
async fn an_idempotency_key_names_one_transaction(backend: Backend) {
    let server = Server::start(backend).await;
    banks(&server).await;
    let mut keyed = transfer(30);
    keyed["key"] = json!("transfer-1");
    let (status, first) = server.post_json("/bank-east/transfer", &keyed).await;
    assert_eq!((status, first["outcome"].as_str()), (200, Some("committed")), "{first}");
    let (status, again) = server.post_json("/bank-east/transfer", &keyed).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first, "the recorded outcome of the same transaction");
    assert_eq!(account(&server, "bank-east", "alice").await["balance"], 70, "debited once");
    assert_eq!(account(&server, "bank-west", "bob").await["balance"], 30, "credited once");

    // An aborted one answers aborted again, even once it could commit.
    let mut too_much = transfer(500);
    too_much["key"] = json!("transfer-2");
    let (status, refused) = server.post_json("/bank-east/transfer", &too_much).await;
    assert_eq!((status, refused["outcome"].as_str()), (409, Some("aborted")), "{refused}");
    assert_eq!(server.post("/bank-east/accounts/alice/deposit?amount=1000").await.0, 200);
    let (status, still) = server.post_json("/bank-east/transfer", &too_much).await;
    assert_eq!((status, &still), (409, &refused));

    // The same key sent four times at once: one transaction, four identical answers.
    let mut racing = transfer(7);
    racing["key"] = json!("transfer-3");
    racing["prepare_delay_ms"] = json!(200);
    let answers = futures::future::join_all((0..4).map(|_| server.post_json("/bank-east/transfer", &racing))).await;
    for (status, answer) in &answers {
        assert_eq!((*status, answer), (200, &answers[0].1), "{answers:?}");
    }
    assert_eq!(account(&server, "bank-west", "bob").await["balance"], 37, "credited once");
    assert_eq!(server.post("/bank-east/accounts/alice/deposit?amount=7").await.0, 200);

    // Same key, other participants: a conflict, nothing runs.
    let mut other = transfer(5);
    other["key"] = json!("transfer-1");
    let (status, conflict) = server.post_json("/bank-east/transfer", &other).await;
    assert_eq!(status, 409, "{conflict}");
    assert!(conflict["error"].as_str().unwrap().contains("other participants"), "{conflict}");
    assert_eq!(account(&server, "bank-east", "alice").await["balance"], 1070);

    // Keys are per namespace: bank-west may use the same key for its own transaction.
    let west = json!({ "from": "bob", "to_function": "bank-east", "to": "alice", "amount": 1, "key": "transfer-1" });
    let (status, body) = server.post_json("/bank-west/transfer", &west).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["tx"], first["tx"]);

    // The log finds it by key (with its namespace), and the id derives from namespace and key.
    let (status, found) = server.get_json("/v1/transactions?namespace=bank-east&key=transfer-1").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["transactions"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["transactions"][0]["id"], first["tx"]);
    assert_eq!(found["transactions"][0]["idempotency_key"], "transfer-1");
    let (status, bad) = server.get_json("/v1/transactions?key=transfer-1").await;
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("invalid_request")), "{bad}");
}

/// Lists page with a cursor and say when there is more: three transactions in pages of two.
async fn transaction_lists_page_with_a_cursor(backend: Backend) {
    let server = Server::start(backend).await;
    banks(&server).await;
    for _ in 0..3 {
        assert_eq!(server.post_json("/bank-east/transfer", &transfer(1)).await.0, 200);
    }
    let (_, first) = server.get_json("/v1/transactions?limit=2").await;
    assert_eq!(first["transactions"].as_array().unwrap().len(), 2, "{first}");
    let next = first["next"].as_str().expect("a next cursor: there is more");
    let (_, second) = server.get_json(&format!("/v1/transactions?limit=2&after={next}")).await;
    assert_eq!(second["transactions"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["next"], Value::Null, "the last page");
    let mut ids: Vec<&str> = first["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["transactions"].as_array().unwrap())
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each once");
    for (path, code) in [
        ("/v1/transactions?limit=0", "invalid_limit"),
        ("/v1/transactions?limit=1001", "invalid_limit"),
        ("/v1/transactions?after=nonsense", "invalid_cursor"),
        ("/v1/transactions?limit=abc", "invalid_query"),
        ("/v1/sagas?bogus=1", "invalid_query"),
    ] {
        let (status, body) = server.get_json(path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{path}: {body}");
    }
}

/// Sends a transfer that will be cut off by the kill; returns the transaction id from the log.
async fn start_then_kill(server: &mut Server, body: Value, moment: &str) -> String {
    let url = format!("{}/bank-east/transfer", server.data);
    tokio::spawn(async move {
        let _ = reqwest::Client::new().post(url).json(&body).send().await;
    });
    let logs = server.wait_for_log(moment).await;
    server.kill();
    let line = logs.lines().find(|l| l.contains(moment)).unwrap();
    let id = line.split("tx=").nth(1).unwrap().split_whitespace().next().unwrap();
    id.trim_matches('"').to_owned()
}

async fn wait_for_status(server: &Server, id: &str, status: &str) -> Value {
    eventually(&format!("transaction {id} is {status}"), Duration::from_secs(30), async || {
        let (_, tx) = server.get_json(&format!("/v1/transactions/{id}")).await;
        if tx["status"] == status { Ok(tx) } else { Err(tx) }
    })
    .await
}

async fn a_crash_after_the_decision_commits_on_recovery(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { database_url: db.url.clone(), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut server = Server::start_with(options.clone()).await;
    banks(&server).await;

    // Both prepared and the commit decision recorded; the participants' commits take 3 s, so
    // the kill lands between prepare and commit.
    let mut body = transfer(70);
    body["commit_delay_ms"] = json!(3000);
    let id = start_then_kill(&mut server, body, "transaction decided").await;
    let server = Server::start_with(options).await;
    let tx = wait_for_status(&server, &id, "committed").await;
    assert_eq!(tx["reason"], Value::Null);
    let (alice, bob) = (account(&server, "bank-east", "alice").await, account(&server, "bank-west", "bob").await);
    assert_eq!((alice["balance"].as_i64(), bob["balance"].as_i64()), (Some(30), Some(70)));
    assert_eq!((alice["holds"].clone(), bob["holds"].clone()), (json!({}), json!({})));
    assert_eq!(alice["applied"], json!([id]), "committed exactly once");
    assert!(server.logs().contains("recovering in-doubt transaction"), "{}", server.logs());
}

async fn a_crash_before_the_decision_aborts_on_recovery(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { database_url: db.url.clone(), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut server = Server::start_with(options.clone()).await;
    banks(&server).await;

    // Killed while the participants prepare (each takes 2 s): no decision was recorded.
    let mut body = transfer(70);
    body["prepare_delay_ms"] = json!(2000);
    let id = start_then_kill(&mut server, body, "transaction preparing").await;
    let server = Server::start_with(options).await;
    let tx = wait_for_status(&server, &id, "aborted").await;
    assert!(tx["reason"].as_str().unwrap().contains("before deciding"), "{tx}");
    let (alice, bob) = (account(&server, "bank-east", "alice").await, account(&server, "bank-west", "bob").await);
    assert_eq!((alice["balance"].as_i64(), bob["balance"].as_i64()), (Some(100), Some(0)));
    // Whatever prepare held before the crash was released by the recovery's aborts.
    assert_eq!((alice["holds"].clone(), bob["holds"].clone()), (json!({}), json!({})));
}

/// The start-up recovery runs before the node serves: a transfer sent the moment the restarted
/// node is ready commits, and no sweep touches it (before the fix, one started 28 ms after
/// `faas serving` was aborted by the start-up sweep under its live coordinator).
async fn a_transfer_right_after_a_restart_is_not_recovered(backend: Backend) {
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        database_url: db.url.clone(),
        data_dir: Some(dir.path().to_owned()),
        extra_args: vec!["--recovery-interval".into(), "50ms".into()],
        ..Default::default()
    };
    let mut server = Server::start_with(options.clone()).await;
    banks(&server).await;
    for round in 0..3 {
        server.kill();
        server = Server::start_with(options.clone()).await;
        let mut slow = transfer(10);
        slow["prepare_delay_ms"] = json!(300);
        let (status, body) = server.post_json("/bank-east/transfer", &slow).await;
        assert_eq!((status, body["outcome"].as_str()), (200, Some("committed")), "round {round}: {body}");
        let id = body["tx"].as_str().unwrap();
        let logs = server.logs();
        assert!(!logs.lines().any(|l| l.contains(id) && l.contains("recovering")), "{id} was recovered:\n{logs}");
    }
    assert_eq!(account(&server, "bank-west", "bob").await["balance"], 30);
}

/// A 2PC participant reaches the outside world under the same rules as any function: bank-east
/// (with `LIMITS_URL`) asks a limits service this test runs on 127.0.0.1 before it holds a
/// debit; a refusal votes no and the transfer aborts on both sides; without the origin allowed
/// the request never leaves, and the vote is no, saying so.
async fn a_participant_asks_an_external_service_before_it_votes(backend: Backend) {
    let server = Server::start(backend).await;
    banks(&server).await;
    let asked = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<Value>::new()));
    let seen = asked.clone();
    let app = axum::Router::new().route(
        "/limits",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let allowed = body["amount"].as_i64().is_some_and(|a| a <= 50);
                seen.lock().push(body);
                if allowed { axum::http::StatusCode::OK } else { axum::http::StatusCode::FORBIDDEN }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let with_limits =
        |allow: Vec<String>| json!({ "triggers": { "http": ["/bank-east/..."] }, "outbound": { "allow": allow } });
    server.deploy_ok("bank-east", components().bytes("ledger"), with_limits(vec![origin.clone()])).await;
    let response = server
        .admin_request(reqwest::Method::PATCH, "/v1/functions/bank-east/config")
        .json(&json!({ "variables": { "LIMITS_URL": format!("{origin}/limits") } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (status, body) = server.post_json("/bank-east/transfer", &transfer(30)).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("committed")), "{body}");
    let (status, body) = server.post_json("/bank-east/transfer", &transfer(60)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("refused the debit (403"), "{body}");
    assert_eq!(asked.lock().iter().map(|b| b["amount"].as_i64().unwrap()).collect::<Vec<_>>(), [30, 60]);
    let (alice, bob) = (account(&server, "bank-east", "alice").await, account(&server, "bank-west", "bob").await);
    assert_eq!(
        (alice["balance"].as_i64(), bob["balance"].as_i64()),
        (Some(70), Some(30)),
        "the refused one moved nothing"
    );

    // The same participant without the origin allowed: denied before it leaves, votes no.
    server.deploy_ok("bank-east", components().bytes("ledger"), with_limits(vec![])).await;
    let (status, body) = server.post_json("/bank-east/transfer", &transfer(10)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("denied"), "{body}");
    assert_eq!(asked.lock().len(), 2, "the denied request never reached the service");
    server.wait_for_log("outgoing request denied").await;
}
