//! `deploy-latency`: how long from "deploy" to the first 200 on the new route, against a running
//! `faas serve`.
//!
//! Each sample POSTs a deploy (`/v1/functions/{name}/versions`, multipart `config` + `component`)
//! with a fresh name and route, then GETs the route until it answers 200; the sample is the time
//! from starting the POST to that 200. Two variants:
//!
//! - **cold**: the component gets a unique top-level custom section appended, so its sha256 is new
//!   and the server must compile it (Cranelift) before it can answer;
//! - **cached**: bytes the server has compiled before, under a new name: a compile-cache hit
//!   (deserialising the artifact from disk instead of compiling).
//!
//! On a tiered server (`faas serve --tiered-compilation`, the default) a cold deploy answers on
//! Winch's build while Cranelift compiles in the background. After each cold sample this waits
//! (untimed for the cold row) until `GET /v1/functions/{name}` reports `"compiler": "cranelift"`,
//! so the next sample does not compete with the last one's background compile, and reports that
//! time too (row `→ cranelift`: deploy start to the optimised build serving).
//!
//! Every function it deploys is deleted again afterwards.
//!
//! Usage: `deploy-latency ADMIN_URL DATA_URL [--wasm hello.wasm] [-n 20] [--token T]`.

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use reqwest::multipart::{Form, Part};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(about = "Measures deploy → first 200 against a running `faas serve`")]
struct Args {
    /// The control plane, e.g. http://127.0.0.1:8081.
    admin_url: String,
    /// The data plane, e.g. http://127.0.0.1:8080.
    data_url: String,
    /// The component to deploy (any wasi:http component answering 200 on any path).
    #[arg(long, default_value = "target/wasm/wasm32-wasip2/release/hello.wasm")]
    wasm: PathBuf,
    /// Samples per variant.
    #[arg(short = 'n', long, default_value_t = 20)]
    samples: usize,
    /// Bearer token for the control plane, if the server requires one.
    #[arg(long, env = "FAAS_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Give up on a sample after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

struct Bench {
    http: reqwest::Client,
    admin: String,
    data: String,
    token: Option<String>,
    timeout: Duration,
    /// Distinguishes this run's names and routes from earlier runs against the same server.
    run: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wasm = std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    ensure!(args.samples > 0, "-n must be at least 1");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let bench = Bench {
        // One pooled client, as a deploy pipeline would use: connection setup is not measured.
        http: reqwest::Client::builder().no_proxy().build()?,
        admin: args.admin_url.trim_end_matches('/').to_owned(),
        data: args.data_url.trim_end_matches('/').to_owned(),
        token: args.token,
        timeout: Duration::from_secs(args.timeout_secs),
        run: format!("{:x}", nanos % (1 << 40)),
    };

    // Warm the client's connections to both listeners (and check the server is there).
    bench.healthz().await?;
    let mut cold = Vec::with_capacity(args.samples);
    let mut cached = Vec::with_capacity(args.samples);
    let mut tiered = Vec::with_capacity(args.samples);
    // The bytes of the first cold sample are compiled and cached on the server by the time the
    // cached variant runs.
    let mut compiled_once = None;
    for i in 0..args.samples {
        let bytes = with_custom_section(&wasm, "faas-bench-nonce", format!("{}-{i}", bench.run).as_bytes());
        let name = format!("dl-{}-c{i}", bench.run);
        let started = Instant::now();
        cold.push(bench.sample(&name, &bytes).await?);
        if let Some(optimized) = bench.wait_for_cranelift(&name, started).await? {
            tiered.push(optimized);
        }
        bench.delete(&name).await?;
        compiled_once.get_or_insert(bytes);
    }
    let compiled = compiled_once.context("no cold sample")?;
    for i in 0..args.samples {
        let name = format!("dl-{}-h{i}", bench.run);
        cached.push(bench.sample(&name, &compiled).await?);
        bench.delete(&name).await?;
    }

    println!("deploy → first 200, {} samples each ({} bytes component)", args.samples, wasm.len());
    println!("{:<12} {:>10} {:>10} {:>10} {:>10}", "variant", "p50", "p99", "min", "max");
    for (label, samples) in [("cold", &mut cold), ("cached", &mut cached), ("→ cranelift", &mut tiered)] {
        if samples.is_empty() {
            continue;
        }
        samples.sort();
        println!(
            "{label:<12} {:>10} {:>10} {:>10} {:>10}",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 99.0)),
            ms(samples[0]),
            ms(samples[samples.len() - 1]),
        );
    }
    Ok(())
}

impl Bench {
    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn healthz(&self) -> anyhow::Result<()> {
        let status = self.http.get(format!("{}/healthz", self.admin)).send().await?.status();
        ensure!(status.is_success(), "{}/healthz answered {status}", self.admin);
        // Any answer will do (a 404 here); it opens the data plane connection.
        self.http.get(format!("{}/", self.data)).send().await?;
        Ok(())
    }

    /// One deploy → first 200 measurement of `bytes` as function `name` at route `/{name}`.
    async fn sample(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Duration> {
        let route = format!("/{name}");
        let config = serde_json::json!({ "triggers": { "http": [route] } });
        let form = Form::new().part("config", Part::text(config.to_string()).mime_str("application/json")?).part(
            "component",
            Part::bytes(bytes.to_vec()).file_name(format!("{name}.wasm")).mime_str("application/wasm")?,
        );
        let url = format!("{}/v1/functions/{name}/versions", self.admin);

        let started = Instant::now();
        let response = self.authed(self.http.post(&url).multipart(form)).send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("deploy of {name} answered {status}: {body}");
        }
        let data_url = format!("{}{route}", self.data);
        loop {
            let response = self.http.get(&data_url).send().await?;
            let status = response.status();
            // Read the body to the end: the function has answered once its body has arrived.
            response.bytes().await?;
            if status == reqwest::StatusCode::OK {
                return Ok(started.elapsed());
            }
            if started.elapsed() > self.timeout {
                bail!("{data_url} still answers {status} after {:?}", self.timeout);
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// When the server tiers: waits until `name` runs on Cranelift's build and returns the time
    /// since `started`. `None` if the server reports no `compiler` or compiled with Cranelift
    /// from the start.
    async fn wait_for_cranelift(&self, name: &str, started: Instant) -> anyhow::Result<Option<Duration>> {
        let url = format!("{}/v1/functions/{name}", self.admin);
        let mut first = true;
        loop {
            let body: serde_json::Value = self.authed(self.http.get(&url)).send().await?.json().await?;
            match body["compiler"].as_str() {
                Some("cranelift") if first => return Ok(None),
                Some("cranelift") => return Ok(Some(started.elapsed())),
                None => return Ok(None),
                Some(_) => {}
            }
            first = false;
            if started.elapsed() > self.timeout {
                bail!("{name} still runs on its baseline build after {:?}", self.timeout);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let url = format!("{}/v1/functions/{name}", self.admin);
        let status = self.authed(self.http.delete(&url)).send().await?.status();
        ensure!(status.is_success(), "deleting {name} answered {status}");
        Ok(())
    }
}

/// `wasm` (a core module or a component) with a custom section appended. A custom section (id 0)
/// may appear anywhere at the top level of either, and is ignored by validation and compilation,
/// so this changes the bytes (and their sha256) and nothing else.
fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(5 + name.len() + payload.len());
    leb128(&mut content, name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = Vec::with_capacity(wasm.len() + 6 + content.len());
    out.extend_from_slice(wasm);
    out.push(0);
    leb128(&mut out, content.len());
    out.extend_from_slice(&content);
    out
}

/// Unsigned LEB128, as wasm encodes sizes.
fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
