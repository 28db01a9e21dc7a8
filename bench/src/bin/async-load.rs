//! `async-load`: the load half of `bench/async.sh`. Against a running `faas serve` with
//! functions/job-worker deployed at `/jobs/...`:
//!
//! 1. enqueue → start latency, one at a time: `POST /jobs/bench` with `x-faas-invoke: async`
//!    (answered 202 once the invocation is stored), then wait for it; the job reports when it
//!    started by the wall clock (`started_us`), so the latency is from just before the enqueue
//!    request to the start of the function, p50/p99; next to it, the same job called
//!    synchronously: request → start of the function, and the whole round trip;
//! 2. throughput: `--jobs` invocations queued by `--concurrency` clients, timed from the first
//!    enqueue until the last one succeeded (invocations/s), against the same number of
//!    synchronous calls at the same concurrency.
//!
//! Usage: `async-load DATA_URL ADMIN_URL [--samples 300] [--jobs 5000] [--concurrency 32]`.

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    data_url: String,
    admin_url: String,
    /// Sequential invocations for the latency run.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Invocations queued for the throughput run.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Queues one job; returns its invocation id.
async fn enqueue(http: &reqwest::Client, data: &str) -> anyhow::Result<String> {
    let response = http.post(format!("{data}/jobs/bench")).header("x-faas-invoke", "async").body("x").send().await?;
    ensure!(response.status() == 202, "enqueue: {} {}", response.status(), response.text().await?);
    let body: serde_json::Value = response.json().await?;
    Ok(body["id"].as_str().context("no id")?.to_owned())
}

/// Waits for an invocation to succeed; returns the job's `started_us`.
async fn started_us(http: &reqwest::Client, data: &str, id: &str) -> anyhow::Result<u64> {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let body: serde_json::Value = http.get(format!("{data}/_faas/invocations/{id}")).send().await?.json().await?;
        match body["status"].as_str() {
            Some("succeeded") => {
                let answer: serde_json::Value =
                    serde_json::from_str(body["response"]["body"].as_str().context("no body")?)?;
                return answer["started_us"].as_u64().context("no started_us");
            }
            Some("failed" | "dead") => bail!("invocation {id}: {body}"),
            _ if Instant::now() > give_up => bail!("invocation {id} did not finish: {body}"),
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// One synchronous call; returns (request → function start, round trip) in ms.
async fn call(http: &reqwest::Client, data: &str) -> anyhow::Result<(f64, f64)> {
    let sent = now_us();
    let started = Instant::now();
    let response = http.post(format!("{data}/jobs/bench")).body("x").send().await?;
    ensure!(response.status() == 200, "call: {}", response.status());
    let body: serde_json::Value = response.json().await?;
    let round_trip = started.elapsed().as_secs_f64() * 1e3;
    let start = body["started_us"].as_u64().context("no started_us")?.saturating_sub(sent) as f64 / 1e3;
    Ok((start, round_trip))
}

async fn latencies(
    http: &reqwest::Client,
    data: &str,
    samples: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (mut queued, mut sync_start, mut sync_trip) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let sent = now_us();
        let id = enqueue(http, data).await?;
        queued.push(started_us(http, data, &id).await?.saturating_sub(sent) as f64 / 1e3);
        let (start, trip) = call(http, data).await?;
        sync_start.push(start);
        sync_trip.push(trip);
    }
    for v in [&mut queued, &mut sync_start, &mut sync_trip] {
        v.sort_by(f64::total_cmp);
    }
    Ok((queued, sync_start, sync_trip))
}

/// `count` operations by `clients` concurrent clients.
async fn run_many<F, Fut>(count: usize, clients: usize, op: F) -> anyhow::Result<Vec<String>>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<String>> + Send,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (next, op) = (next.clone(), op.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                out.push(op().await?);
            }
            anyhow::Ok(out)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(result) = tasks.join_next().await {
        all.extend(result.context("client task")??);
    }
    Ok(all)
}

/// How many of the function's invocations have succeeded (the admin API's list, paged).
async fn succeeded(http: &reqwest::Client, admin: &str) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{admin}/v1/invocations?function=job-worker&status=succeeded&limit=1000");
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let page: serde_json::Value = http.get(url).send().await?.json().await?;
        count += page["invocations"].as_array().map_or(0, Vec::len);
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(count),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let data = args.data_url.trim_end_matches('/').to_owned();
    let admin = args.admin_url.trim_end_matches('/').to_owned();
    latencies(&http, &data, 20).await?; // warm-up

    let (queued, sync_start, sync_trip) = latencies(&http, &data, args.samples).await?;
    println!("latency, one at a time ({} each):", args.samples);
    println!(
        "  async: enqueue -> function start   p50 {:.2} ms  p99 {:.2} ms",
        percentile(&queued, 0.5),
        percentile(&queued, 0.99)
    );
    println!(
        "  sync:  request -> function start   p50 {:.2} ms  p99 {:.2} ms  (round trip p50 {:.2} ms, p99 {:.2} ms)",
        percentile(&sync_start, 0.5),
        percentile(&sync_start, 0.99),
        percentile(&sync_trip, 0.5),
        percentile(&sync_trip, 0.99)
    );

    let before = succeeded(&http, &admin).await?;
    let started = Instant::now();
    let (h, d) = (http.clone(), data.clone());
    run_many(args.jobs, args.concurrency, move || {
        let (h, d) = (h.clone(), d.clone());
        async move { enqueue(&h, &d).await }
    })
    .await?;
    let enqueued = started.elapsed().as_secs_f64();
    loop {
        let done = succeeded(&http, &admin).await? - before;
        if done >= args.jobs {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(600), "only {done} of {} succeeded", args.jobs);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let async_rate = args.jobs as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (h, d) = (http.clone(), data.clone());
    run_many(args.jobs, args.concurrency, move || {
        let (h, d) = (h.clone(), d.clone());
        async move { call(&h, &d).await.map(|_| String::new()) }
    })
    .await?;
    let sync_rate = args.jobs as f64 / started.elapsed().as_secs_f64();
    println!("throughput, {} jobs, {} clients:", args.jobs, args.concurrency);
    println!("  async: {async_rate:.0} invocations/s queued and run ({:.0}/s queued)", args.jobs as f64 / enqueued);
    println!("  sync:  {sync_rate:.0} calls/s  (async/sync {:.2}x)", async_rate / sync_rate);
    Ok(())
}
