//! `saga-load`: the load half of `bench/saga.sh`. Against a running `faas serve` with the order
//! functions deployed (payments, inventory, shipping at `/<name>/...`, orders at `/orders`):
//!
//! 1. latency: `POST /orders` one at a time (the orders function starts the 3-step saga and waits
//!    for it), p50/p99 end to end;
//! 2. throughput: `--concurrency` clients posting orders for `--seconds`, sagas/s;
//!
//! and, in the same run, the same two measurements for a baseline doing the same number of
//! invocations and event appends without a saga: three `POST /payments/accounts/<id>/deposit`
//! in a row (three fresh instances, three appends, no journal, no host-side orchestration).
//!
//! Usage: `saga-load DATA_URL [--orders 500] [--concurrency 16] [--seconds 10]`.

use anyhow::{Context as _, ensure};
use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    data_url: String,
    /// Sequential sagas for the latency run.
    #[arg(long, default_value_t = 500)]
    orders: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// One unit of work: a saga, or the baseline's three plain invocations.
#[derive(Clone, Copy, PartialEq)]
enum Work {
    Saga,
    Baseline,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

async fn once(http: &reqwest::Client, base: &str, work: Work) -> anyhow::Result<()> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    match work {
        Work::Saga => {
            let order = serde_json::json!({
                "order_id": format!("bench-{}-{n}", std::process::id()), "customer": format!("c{}", n % 50),
                "sku": format!("s{}", n % 20), "qty": 1, "amount": 1, "address": "1 Main St",
            });
            let response = http.post(format!("{base}/orders")).json(&order).send().await?;
            ensure!(response.status() == 201, "order {n}: {} {}", response.status(), response.text().await?);
        }
        Work::Baseline => {
            for step in 0..3 {
                let url = format!("{base}/payments/accounts/b{}/deposit?amount=1&id=bench-{n}-{step}", n % 50);
                let response = http.post(url).send().await?;
                ensure!(response.status() == 200, "baseline {n}: {}", response.status());
            }
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn latency(http: &reqwest::Client, base: &str, work: Work, count: usize) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        once(http, base, work).await?;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.99)))
}

async fn throughput(
    http: &reqwest::Client,
    base: &str,
    work: Work,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, base, done) = (http.clone(), base.to_owned(), done.clone());
        tasks.spawn(async move {
            while Instant::now() < until {
                once(&http, &base, work).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    let started = Instant::now();
    while let Some(result) = tasks.join_next().await {
        result.context("client task")??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let base = args.data_url.trim_end_matches('/');
    // Warm-up: compile caches, connections, first instances.
    latency(&http, base, Work::Saga, 20).await?;
    latency(&http, base, Work::Baseline, 20).await?;

    let (saga_p50, saga_p99) = latency(&http, base, Work::Saga, args.orders).await?;
    let (base_p50, base_p99) = latency(&http, base, Work::Baseline, args.orders).await?;
    println!("latency, one at a time ({} each):", args.orders);
    println!("  3-step saga          p50 {saga_p50:.2} ms  p99 {saga_p99:.2} ms");
    println!(
        "  3 plain invocations  p50 {base_p50:.2} ms  p99 {base_p99:.2} ms  (saga/plain p50 {:.2}x)",
        saga_p50 / base_p50
    );
    let sagas = throughput(&http, base, Work::Saga, args.concurrency, args.seconds).await?;
    let plain = throughput(&http, base, Work::Baseline, args.concurrency, args.seconds).await?;
    println!("throughput, {} clients for {} s:", args.concurrency, args.seconds);
    println!("  3-step sagas         {sagas:.0}/s");
    println!("  3 plain invocations  {plain:.0}/s  (saga/plain {:.2}x)", sagas / plain);
    Ok(())
}
