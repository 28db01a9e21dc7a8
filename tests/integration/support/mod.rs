//! Test support: starts the real `faas` binary on free ports, builds the example components from
//! `functions/` once per run, and provisions a fresh database per test (SQLite in a temp dir, or a
//! new database on the PostgreSQL server named by `FAAS_TEST_POSTGRES_URL`).

#![allow(dead_code)]

pub mod kafka;

use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const FAAS: &str = env!("CARGO_BIN_EXE_faas");

/// The binary the servers run: [`FAAS`], or `FAAS_TEST_BIN` (a copy of it, say, that a build
/// in a shared target dir cannot replace halfway through a run).
fn faas_binary() -> String {
    std::env::var("FAAS_TEST_BIN").unwrap_or_else(|_| FAAS.to_owned())
}

/// Which store a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body once per backend: `backend_tests!(name)` expects `async fn name(Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Components

/// Paths of the example components, built once per test run into `target/wasm`.
pub struct Components {
    dir: PathBuf,
}

impl Components {
    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(path.exists(), "{} was not built", path.display());
        path
    }

    pub fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("reading component")
    }
}

pub fn components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    BUILT.get_or_init(|| {
        // scripts/test.sh builds them first and says where.
        if let Ok(dir) = std::env::var("FAAS_TEST_COMPONENTS") {
            return Components { dir: PathBuf::from(dir) };
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_owned();
        let target = root.join("target").join("wasm");
        // A separate target dir: cargo's lock on the host's target dir is held by whoever
        // built this test binary.
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root.join("functions"))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .expect("running cargo to build functions/");
        assert!(status.success(), "building functions/ for wasm32-wasip2 failed");
        Components { dir: target.join("wasm32-wasip2").join("release") }
    })
}

// ---------------------------------------------------------------------------------------------
// Databases

/// A fresh database for one test.
pub struct Database {
    pub url: Option<String>,
}

impl Database {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self { url: None },
            Backend::Postgres => {
                let admin_url = std::env::var("FAAS_TEST_POSTGRES_URL").expect(
                    "FAAS_TEST_POSTGRES_URL is not set: the suite runs every store test on PostgreSQL too. \
                     Run ./scripts/test.sh, which starts PostgreSQL and sets it.",
                );
                let name = format!("faas_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .expect("connecting to PostgreSQL");
                sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("CREATE DATABASE");
                let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
                Self { url: Some(format!("{base}/{name}")) }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// First pause between two checks of [`eventually`]: short, as most states arrive within
/// milliseconds.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
/// Longest pause between two checks: each check is a request to a server that shares the
/// suite's two cores, so checking more often than this only slows down what is awaited.
const LONGEST_PAUSE: Duration = Duration::from_millis(250);

/// Checks until `check` returns `Ok`, and returns its value; panics if it has not within
/// `limit`. `what` says what is awaited ("transaction x is committed") and each `Err` what was
/// seen instead; the panic shows both, with the last `Err`.
///
/// The pause between checks starts at [`FIRST_PAUSE`] and doubles up to [`LONGEST_PAUSE`]. A
/// check that has begun always runs to its end, and there is one last check at `limit`, so a
/// state reached just in time counts. `limit` is a bound for a slow machine, not an expected
/// duration: a passing wait ends at the first check that sees the state.
///
/// ```ignore
/// let tx = eventually(&format!("{id} is committed"), Duration::from_secs(30), async || {
///     let (_, tx) = server.get_json(&format!("/v1/transactions/{id}")).await;
///     if tx["status"] == "committed" { Ok(tx) } else { Err(tx) }
/// })
/// .await;
/// ```
pub async fn eventually<T, E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let started = Instant::now();
    let (mut pause, mut checks) = (FIRST_PAUSE, 0);
    loop {
        checks += 1;
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            panic!("not within {limit:?} ({checks} checks): {what}\nlast seen: {last}");
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

// ---------------------------------------------------------------------------------------------
// The server

#[derive(Default, Clone)]
pub struct Options {
    pub database_url: Option<String>,
    pub token: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Environment variables of the server process.
    pub env: Vec<(String, String)>,
    /// Compile into `<data-dir>/cache` instead of the run's shared compile cache (for tests of
    /// the cache itself, and so one test always compiles cold).
    pub own_cache: bool,
}

/// One compile cache for every server of the test run: each component is compiled by Cranelift
/// once, not once per test (entries are written atomically, so servers may share it).
fn shared_cache() -> &'static Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE.get_or_init(|| tempfile::tempdir().expect("compile cache dir")).path()
}

/// A running `faas serve`. Killed when dropped.
pub struct Server {
    child: Child,
    pub data: String,
    pub admin: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub token: Option<String>,
    pub http: reqwest::Client,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// A SQLite server that compiles every deploy with Cranelift at once (no Winch phase): for
    /// tests that follow one instance across requests, which the tier-up swap (a new build, so
    /// new instances) would interrupt at a random request. The swap has its own tests.
    pub async fn start_untiered() -> Self {
        let extra_args = vec!["--tiered-compilation".into(), "false".into()];
        Self::start_with(Options { extra_args, ..Default::default() }).await
    }

    pub async fn start(backend: Backend) -> Self {
        let db = Database::create(backend).await;
        Self::start_with(Options { database_url: db.url, ..Default::default() }).await
    }

    pub async fn start_with(options: Options) -> Self {
        let (temp, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        let log = data_dir.join(format!("server-{}.log", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut command = Command::new(faas_binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(&options.extra_args)
            .env_remove("FAAS_ADMIN_TOKEN")
            .env_remove("FAAS_DATABASE_URL")
            .env_remove("FAAS_CACHE_DIR")
            .env_remove("FAAS_SECRET_KEY")
            .env("FAAS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(url) = &options.database_url {
            command.args(["--database-url", url]);
            // Nodes sharing a database share the master key (each data dir would otherwise
            // create its own key file, and the second node would refuse to start).
            command.env("FAAS_SECRET_KEY", "ZmFhcy1pbnRlZ3JhdGlvbi10ZXN0cy1zaGFyZWQta2U=");
        }
        if let Some(token) = &options.token {
            command.env("FAAS_ADMIN_TOKEN", token);
        }
        command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT").envs(options.env.iter().map(|(k, v)| (k, v)));
        if !options.own_cache {
            command.env("FAAS_CACHE_DIR", shared_cache());
        }
        let mut child = command.spawn().expect("starting faas");
        let stdout = child.stdout.take().expect("stdout");
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let ready = lines.find_map(|line| line.ok().filter(|l| l.starts_with("faas ready ")));
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            ready
        });
        let ready = tokio::time::timeout(Duration::from_secs(120), ready).await;
        let line = match ready {
            Ok(Ok(Some(line))) => line,
            _ => {
                let _ = child.kill();
                panic!("faas did not start:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {line}"))
                .to_owned()
        };
        Self {
            data: field("data="),
            admin: field("admin="),
            child,
            data_dir,
            log,
            token: options.token.clone(),
            http: reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("client"),
            _temp: temp,
        }
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server's log contains `needle` (logs are written asynchronously).
    pub async fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_within(needle, Duration::from_secs(5)).await
    }

    /// The same, for what the server writes only after some work (on a loaded machine, a node
    /// woken from SIGSTOP takes seconds to notice what happened meanwhile).
    pub async fn wait_for_log_within(&self, needle: &str, patience: Duration) -> String {
        eventually(&format!("the log contains {needle:?}"), patience, async || {
            let logs = self.logs();
            if logs.contains(needle) { Ok(logs) } else { Err(logs) }
        })
        .await
    }

    /// The admin API's Prometheus text.
    pub async fn metrics(&self) -> String {
        let response = self.admin_request(reqwest::Method::GET, "/metrics").send().await.expect("metrics request");
        response.text().await.expect("metrics body")
    }

    /// How many instances of `function` were created (`faas_instantiation_duration_seconds_count`).
    pub async fn instantiations(&self, function: &str) -> u64 {
        let metrics = self.metrics().await;
        let prefix = format!("faas_instantiation_duration_seconds_count{{function=\"{function}\"}} ");
        metrics.lines().find_map(|line| line.strip_prefix(&prefix)).map_or(0, |n| n.parse().expect("a count"))
    }

    /// `GET /{route}/count` of a function answering `count N` (misbehave, hello-p3): N, how many
    /// requests the instance that answered has served.
    pub async fn served_count(&self, route: &str) -> u64 {
        let (status, body) = self.call(&format!("/{route}/count")).await;
        assert_eq!(status, 200, "{body}");
        body.strip_prefix("count ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a count: {body}"))
    }

    /// Waits until one line of `/metrics` is exactly `series` (`name{labels} value`).
    pub async fn wait_for_metric(&self, series: &str) {
        eventually(&format!("/metrics has {series:?}"), Duration::from_secs(10), async || {
            let metrics = self.metrics().await;
            if metrics.lines().any(|line| line == series) { Ok(()) } else { Err(metrics) }
        })
        .await
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets and database connections but runs
    /// nothing, as a node stalled by the OS, a VM pause or a long GC would.
    pub fn pause(&self) {
        let status = Command::new("kill").arg("-STOP").arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "SIGSTOP failed");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        let status = Command::new("kill").arg("-CONT").arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "SIGCONT failed");
    }

    /// Stops with SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().expect("waiting for faas")
    }

    pub fn admin_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.admin));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn deploy(&self, name: &str, component: Vec<u8>, spec: Value) -> reqwest::Response {
        let form =
            Form::new().text("config", spec.to_string()).part("component", Part::bytes(component).file_name("f.wasm"));
        self.admin_request(reqwest::Method::POST, &format!("/v1/functions/{name}/versions"))
            .multipart(form)
            .send()
            .await
            .expect("deploy request")
    }

    /// Deploys and asserts success; returns the response body.
    pub async fn deploy_ok(&self, name: &str, component: Vec<u8>, spec: Value) -> Value {
        let response = self.deploy(name, component, spec).await;
        let status = response.status();
        let body: Value = response.json().await.expect("deploy answer is JSON");
        assert!(status.is_success(), "deploy of {name} failed: {status} {body}");
        body
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.admin_request(reqwest::Method::GET, path).send().await.expect("admin request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GET on the data plane: (status, body text).
    pub async fn call(&self, path: &str) -> (u16, String) {
        let response = self.http.get(format!("{}{path}", self.data)).send().await.expect("data-plane request");
        (response.status().as_u16(), response.text().await.expect("body"))
    }

    /// POST of a JSON body on the data plane: (status, body as JSON, or null).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response =
            self.http.post(format!("{}{path}", self.data)).json(body).send().await.expect("data-plane request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GET on the data plane, parsed as JSON: (status, body).
    pub async fn get_json_data(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.data)).send().await.expect("data-plane request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POST without a body on the data plane: (status, body as JSON, or null).
    pub async fn post(&self, path: &str) -> (u16, Value) {
        let response = self.http.post(format!("{}{path}", self.data)).send().await.expect("data-plane request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Runs the `faas` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(FAAS);
        command.args(args).env("FAAS_ADMIN_URL", &self.admin).env_remove("FAAS_ADMIN_TOKEN");
        if let Some(token) = &self.token {
            command.env("FAAS_ADMIN_TOKEN", token);
        }
        command.output().expect("running the faas CLI")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // A failing test's servers say what they logged (their data dirs go with the test).
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- the last lines of {} (a server of the failed test) ---\n{}", self.admin, tail.join("\n"));
        }
    }
}

/// A spec with HTTP routes and optional limits.
pub fn spec(routes: &[&str], limits: Value) -> Value {
    serde_json::json!({ "triggers": { "http": routes }, "limits": limits })
}

/// Parses a JSON error body and returns (code, message).
pub fn error_of(body: &Value) -> (String, String) {
    let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an API error: {body}")).to_owned();
    let message = body["error"]["message"].as_str().expect("error message").to_owned();
    (code, message)
}
