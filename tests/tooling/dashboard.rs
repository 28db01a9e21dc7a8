//! The dashboard (`/`) and GraphiQL (`GET /graphql`): its session (login with the admin token, an
//! `HttpOnly`/`SameSite=Strict` cookie, a CSRF token on every write) over plain HTTP, and the
//! pages themselves in a real browser: the system Chromium, headless, driven over the DevTools
//! protocol. The browser test logs in, finds a deployed function and rolls it back, opens a
//! saga's timeline, replays a parked event, deletes a function, runs a GraphiQL query, and checks
//! that no page asked any host but the admin listener for anything (and threw no error).
//!
//! With `FAAS_SCREENSHOTS=<dir>` it also saves a screenshot of each page there (the README's
//! come from `FAAS_SCREENSHOTS=docs/screenshots`).

use crate::support::{Options, Server, components, eventually, spec};
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::cdp::js_protocol::runtime::EventExceptionThrown;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "dashboard-test-token";

#[tokio::test]
async fn a_session_is_a_cookie_and_writes_need_its_csrf_token() {
    let server = Server::start_with(Options { token: Some(TOKEN.into()), ..Default::default() }).await;
    server.deploy_ok("hello", components().bytes("hello"), spec(&["/hello"], json!({}))).await;
    server.deploy_ok("hello", components().bytes("hello"), spec(&["/hello", "/hello/..."], json!({}))).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.admin);

    // The pages are public (they hold no data) and locked to this origin by their policy.
    let page = http.get(url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    let graphiql = http.get(url("/graphql")).send().await.unwrap();
    assert_eq!(graphiql.status(), 200);
    assert!(graphiql.text().await.unwrap().contains("/ui/graphiql/graphiql.min.js"));
    // Stored and sent gzip-compressed (the browser test shows a browser runs it).
    let bundle = http.get(url("/ui/graphiql/graphiql.min.js")).send().await.unwrap();
    assert_eq!(bundle.status(), 200);
    assert_eq!(bundle.headers()[reqwest::header::CONTENT_ENCODING], "gzip");
    assert!(bundle.bytes().await.unwrap().starts_with(&[0x1f, 0x8b]));

    // No session, a wrong token, a form post: refused with the one error shape.
    let refused = http.get(url("/ui/session")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "unauthorized");
    let wrong = http.post(url("/ui/login")).json(&json!({ "token": "nope" })).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let form = http.post(url("/ui/login")).form(&[("token", TOKEN)]).send().await.unwrap();
    assert!(form.status().is_client_error(), "{}", form.status());
    assert!(form.json::<Value>().await.unwrap()["error"]["code"].is_string());

    let login = http.post(url("/ui/login")).json(&json!({ "token": TOKEN })).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains(TOKEN), "the token is encoded in the cookie: {set_cookie}");
    let csrf = login.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let session: Value =
        http.get(url("/ui/session")).header(COOKIE, &cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(session["csrf"], csrf.as_str());

    // Reads with the cookie alone; a write needs the CSRF token too, and a wrong one is refused.
    let list = http.get(url("/v1/functions")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(list.status(), 200);
    let activate = url("/v1/functions/hello/versions/1/activate");
    let no_csrf = http.post(&activate).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    assert_eq!(no_csrf.json::<Value>().await.unwrap()["error"]["code"], "csrf_failed");
    let bad_csrf = http.post(&activate).header(COOKIE, &cookie).header("x-csrf-token", "0".repeat(64));
    assert_eq!(bad_csrf.send().await.unwrap().status(), 403);
    let (_, function) = server.get_json("/v1/functions/hello").await;
    assert_eq!(function["active_version"], 2, "a refused write changed nothing");
    let ok = http.post(&activate).header(COOKIE, &cookie).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let (_, function) = server.get_json("/v1/functions/hello").await;
    assert_eq!(function["active_version"], 1);

    // Logging out needs the CSRF token as well, and clears the cookie.
    assert_eq!(http.post(url("/ui/logout")).header(COOKIE, &cookie).send().await.unwrap().status(), 403);
    let out = http.post(url("/ui/logout")).header(COOKIE, &cookie).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn streams_are_listed_by_namespace() {
    let server = Server::start_with(Options { token: Some(TOKEN.into()), ..Default::default() }).await;
    server.deploy_ok("projector", components().bytes("projector"), projector_spec()).await;
    for stream in ["b-2", "a-1", "c-3", "a-1"] {
        append(&server, stream, "Noted").await;
    }
    let (status, body) = server.get_json("/v1/namespaces").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["namespaces"], json!([{ "namespace": "projector", "streams": 3 }]));
    let (_, page) = server.get_json("/v1/namespaces/projector/streams?limit=2").await;
    assert_eq!(page["streams"], json!([{ "stream": "a-1", "version": 1 }, { "stream": "b-2", "version": 0 }]));
    let (_, rest) =
        server.get_json(&format!("/v1/namespaces/projector/streams?after={}", page["next"].as_str().unwrap())).await;
    assert_eq!(rest["streams"], json!([{ "stream": "c-3", "version": 0 }]), "{page} {rest}");
    assert_eq!(rest["next"], Value::Null);
    let (status, body) = server.get_json("/v1/namespaces/Not%20A%20Name/streams").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, body) = server.get_json("/v1/namespaces/projector/streams?limit=0").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_limit")), "{body}");
}

fn projector_spec() -> Value {
    json!({
        "triggers": { "http": ["/projector/..."], "subscriptions": [{ "stream": "*", "max_attempts": 1, "batch_size": 10 }] },
        "limits": { "timeout_ms": 5000 },
    })
}

async fn append(server: &Server, stream: &str, event_type: &str) {
    let (status, body) = server.post(&format!("/projector/append?stream={stream}&type={event_type}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["position"].is_u64(), "{body}");
}

#[tokio::test]
async fn the_dashboard_works_in_a_real_browser_without_leaving_the_machine() {
    let server = Server::start_with(Options { token: Some(TOKEN.into()), ..Default::default() }).await;
    let c = components();
    server.deploy_ok("hello", c.bytes("hello"), spec(&["/hello"], json!({}))).await;
    server.deploy_ok("hello", c.bytes("hello"), spec(&["/hello", "/hello/..."], json!({}))).await;
    server.deploy_ok("echo", c.bytes("echo"), spec(&["/echo"], json!({}))).await;
    assert_eq!(server.call("/hello/browser").await.0, 200);
    // A saga (the order shop), and a parked event that replays fine once its cause is fixed.
    for name in ["payments", "inventory", "shipping"] {
        server.deploy_ok(name, c.bytes(name), spec(&[&format!("/{name}/...")], json!({}))).await;
    }
    server.deploy_ok("orders", c.bytes("orders"), spec(&["/orders", "/orders/..."], json!({}))).await;
    assert_eq!(server.post("/payments/accounts/alice/deposit?amount=1000").await.0, 200);
    assert_eq!(server.post("/inventory/items/book/restock?qty=1").await.0, 200);
    let order = json!({ "order_id": "o-1", "customer": "alice", "sku": "book", "qty": 2, "amount": 300, "address": "1 Main St" });
    let (status, body) = server.post_json("/orders", &order).await;
    assert_eq!(status, 409, "out of stock: the payment is refunded: {body}");
    let saga = body["saga_id"].as_str().unwrap().to_owned();
    server.deploy_ok("projector", c.bytes("projector"), projector_spec()).await;
    append(&server, "s-1", "Pending").await;
    let parked = eventually("the pending event is parked", Duration::from_secs(20), async || {
        let (_, body) = server.get_json("/v1/functions/projector/subscriptions").await;
        body["parked"][0]["id"].as_i64().ok_or(body)
    })
    .await;
    assert_eq!(server.post("/projector/heal").await.0, 200);

    let chrome = Chrome::launch().await;
    let page = chrome.page(&format!("{}/", server.admin)).await;
    page.wait_view("login").await;
    page.shot("login").await;
    page.type_into("#token", "wrong").await;
    page.click("#login").await;
    eventually("a wrong token is refused on the page", Duration::from_secs(10), async || {
        let text = page.eval("document.querySelector('#error')?.textContent ?? ''").await;
        if text.as_str().unwrap_or_default().is_empty() { Err(text) } else { Ok(()) }
    })
    .await;
    page.eval("document.querySelector('#token').value = ''").await;
    page.type_into("#token", TOKEN).await;
    page.click("#login").await;
    page.wait_view("functions").await;
    assert!(page.exists("tr[data-function=\"hello\"]").await, "the deployed function is listed");
    assert!(page.exists("tr[data-function=\"orders\"]").await);
    page.shot("functions").await;

    // Roll back: the page and the API agree on the active version.
    page.go("#/functions/hello").await;
    page.wait_view("function").await;
    assert_eq!(page.text("[data-active-version]").await, "2");
    page.shot("function").await;
    // Its logs: what this node kept, then followed live.
    assert!(page.exists("tr[data-log]").await, "the function's invocation records are shown");
    let rows = page.eval("document.querySelectorAll('tr[data-log]').length").await;
    page.click("#follow-logs").await;
    page.wait_until(
        "the follower is connected",
        "document.querySelector('#follow-logs').textContent === 'Stop following'",
    )
    .await;
    eventually("a new request shows up in the followed logs", Duration::from_secs(20), async || {
        assert_eq!(server.call("/hello/again").await.0, 200);
        let now = page.eval("document.querySelectorAll('tr[data-log]').length").await;
        if now.as_u64() > rows.as_u64() { Ok(()) } else { Err(format!("{now} rows, {rows} before")) }
    })
    .await;
    page.click("button[data-activate=\"1\"]").await;
    page.wait_until(
        "the page shows version 1 active",
        "document.querySelector('[data-active-version]')?.textContent === '1'",
    )
    .await;
    let (_, function) = server.get_json("/v1/functions/hello").await;
    assert_eq!(function["active_version"], 1, "rolled back through the dashboard");

    // Delete, confirmed by typing the name.
    page.go("#/functions/echo").await;
    page.wait_view("function").await;
    page.click("#delete").await;
    page.type_into("#confirm-name", "echo").await;
    page.click("#confirm-delete").await;
    page.wait_view("functions").await;
    assert_eq!(server.get_json("/v1/functions/echo").await.0, 404, "deleted through the dashboard");
    assert!(!page.exists("tr[data-function=\"echo\"]").await);

    // The saga: listed, and its timeline has a lane per step.
    page.go("#/sagas").await;
    page.wait_view("sagas").await;
    assert!(page.exists(&format!("tr[data-saga=\"{saga}\"]")).await);
    page.shot("sagas").await;
    page.go(&format!("#/sagas/{saga}")).await;
    page.wait_view("saga").await;
    assert_eq!(page.text("[data-saga-status]").await, "compensated");
    for step in ["payment", "inventory"] {
        assert!(page.exists(&format!("svg#timeline g[data-step=\"{step}\"]")).await, "a lane for {step}");
    }
    let bars = page.eval("document.querySelectorAll('svg#timeline rect').length").await;
    assert!(bars.as_u64() >= Some(2), "the timeline draws the steps' runs: {bars}");
    page.shot("saga").await;

    // The parked event: replayed from its button, it leaves the list and reaches the projection.
    page.go("#/subscriptions").await;
    page.wait_view("subscriptions").await;
    let button = format!("button[data-replay=\"{parked}\"]");
    assert!(page.exists(&button).await, "the parked event is listed");
    page.shot("subscriptions").await;
    page.click(&button).await;
    page.wait_until(
        "the replayed event leaves the list",
        &format!("!document.querySelector('tr[data-parked=\"{parked}\"]')"),
    )
    .await;
    let (_, seen) = server.get_json_data("/projector/seen").await;
    assert!(seen["seen"].as_array().unwrap().iter().any(|e| e[1] == "Pending"), "replayed into the projection: {seen}");

    // Every other page renders.
    for (hash, view) in [
        ("#/streams", "streams"),
        ("#/streams/projector", "streams"),
        ("#/streams/projector/s-1", "streams"),
        ("#/metrics", "metrics"),
        ("#/transactions", "transactions"),
        ("#/kafka", "kafka"),
        ("#/nodes", "nodes"),
        ("#/invocations", "invocations"),
    ] {
        page.go(hash).await;
        page.wait_view(view).await;
        if hash.ends_with("/s-1") {
            assert!(page.exists("tr[data-event]").await, "the stream's events are listed");
        }
        page.shot(&hash[2..].replace('/', "-")).await;
    }

    // GraphiQL, from the binary, with the dashboard's session.
    page.open(&format!("{}/graphql", server.admin)).await;
    page.wait_until("GraphiQL renders", "!!document.querySelector('.graphiql-container')").await;
    let answer = page
        .eval_async(
            "const {csrf} = await (await fetch('/ui/session')).json();
             const r = await fetch('/graphql', {method: 'POST', headers: {'content-type': 'application/json', 'x-csrf-token': csrf},
               body: JSON.stringify({query: '{ functions { name } }'})});
             return await r.json();",
        )
        .await;
    assert!(answer["data"]["functions"].as_array().is_some_and(|f| f.iter().any(|f| f["name"] == "hello")), "{answer}");
    page.shot("graphiql").await;

    let admin = server.admin.trim_end_matches('/').to_owned();
    let requests = chrome.requests();
    assert!(requests.len() > 20, "the listener saw the pages' requests: {requests:?}");
    let elsewhere: Vec<&String> =
        requests.iter().filter(|url| !url.starts_with(&format!("{admin}/")) && !url.starts_with("data:")).collect();
    assert!(elsewhere.is_empty(), "requests to other hosts: {elsewhere:?}");
    assert_eq!(chrome.exceptions(), Vec::<String>::new(), "uncaught exceptions on the pages");
}

/// The system Chromium, headless, with every request and uncaught exception of its pages recorded.
struct Chrome {
    browser: Browser,
    requests: Arc<Mutex<Vec<String>>>,
    exceptions: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

/// Where Chromium is: `FAAS_TEST_CHROMIUM`, else `chromium` on the PATH (scripts/test.sh
/// installs Debian's package when it is missing). Not found is a failure, never a skip.
fn chromium() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("FAAS_TEST_CHROMIUM") {
        return path.into();
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(path) = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
        {
            return path;
        }
    }
    panic!("no Chromium: install Debian's `chromium` package (scripts/test.sh does) or set FAAS_TEST_CHROMIUM");
}

impl Chrome {
    async fn launch() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(chromium())
            .no_sandbox() // root in CI; the pages are our own
            .user_data_dir(profile.path())
            .window_size(1280, 900)
            .viewport(None)
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .request_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let (browser, mut handler) = Browser::launch(config).await.expect("launching Chromium");
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        Self { browser, requests: Arc::default(), exceptions: Arc::default(), _profile: profile }
    }

    /// A new tab that records its requests and exceptions, at `url`.
    async fn page(&self, url: &str) -> Tab {
        let page = self.browser.new_page("about:blank").await.unwrap();
        let mut requests = page.event_listener::<EventRequestWillBeSent>().await.unwrap();
        let seen = self.requests.clone();
        tokio::spawn(async move {
            while let Some(event) = requests.next().await {
                seen.lock().unwrap().push(event.request.url.clone());
            }
        });
        let mut exceptions = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let thrown = self.exceptions.clone();
        tokio::spawn(async move {
            while let Some(event) = exceptions.next().await {
                let details = &event.exception_details;
                let text =
                    details.exception.as_ref().and_then(|e| e.description.clone()).unwrap_or(details.text.clone());
                thrown.lock().unwrap().push(text);
            }
        });
        let tab = Tab(page);
        tab.open(url).await;
        tab
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn exceptions(&self) -> Vec<String> {
        self.exceptions.lock().unwrap().clone()
    }
}

struct Tab(Page);

impl Tab {
    async fn open(&self, url: &str) {
        self.0.goto(url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    async fn eval(&self, expression: &str) -> Value {
        let result = self.0.evaluate(expression).await.unwrap_or_else(|e| panic!("evaluating {expression}: {e}"));
        result.into_value().unwrap_or(Value::Null)
    }

    /// Runs `body` as an async function's and returns what it returns.
    async fn eval_async(&self, body: &str) -> Value {
        self.eval(&format!("(async () => {{ {body} }})()")).await
    }

    async fn go(&self, hash: &str) {
        self.eval(&format!("location.hash = {}", json!(hash))).await;
    }

    async fn wait_until(&self, what: &str, condition: &str) {
        eventually(what, Duration::from_secs(20), async || {
            if self.eval(condition).await == Value::Bool(true) { Ok(()) } else { Err(self.state().await) }
        })
        .await
    }

    /// Until the view `name` has rendered its data.
    async fn wait_view(&self, name: &str) {
        let condition =
            format!("document.body.dataset.view === {} && document.body.dataset.loaded === 'true'", json!(name));
        self.wait_until(&format!("the {name} view loads"), &condition).await
    }

    /// What the page shows, for a failure message.
    async fn state(&self) -> String {
        let state = self
            .eval("JSON.stringify({hash: location.hash, view: document.body.dataset.view, loaded: document.body.dataset.loaded, error: document.querySelector('#error')?.textContent})")
            .await;
        state.as_str().unwrap_or_default().to_owned()
    }

    async fn exists(&self, selector: &str) -> bool {
        self.eval(&format!("!!document.querySelector({})", json!(selector))).await == Value::Bool(true)
    }

    async fn text(&self, selector: &str) -> String {
        let text = self.eval(&format!("document.querySelector({})?.textContent ?? null", json!(selector))).await;
        match text.as_str() {
            Some(text) => text.trim().to_owned(),
            None => panic!("no {selector}: {}", self.state().await),
        }
    }

    async fn click(&self, selector: &str) {
        let element = self.0.find_element(selector).await.unwrap_or_else(|e| panic!("no {selector}: {e}"));
        element.click().await.unwrap_or_else(|e| panic!("clicking {selector}: {e}"));
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let element = self.0.find_element(selector).await.unwrap_or_else(|e| panic!("no {selector}: {e}"));
        element.click().await.unwrap();
        element.type_str(text).await.unwrap_or_else(|e| panic!("typing into {selector}: {e}"));
    }

    async fn shot(&self, name: &str) {
        let Some(dir) = std::env::var_os("FAAS_SCREENSHOTS") else { return };
        std::fs::create_dir_all(&dir).unwrap();
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        self.0.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path).await.unwrap();
    }
}
