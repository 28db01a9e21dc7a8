//! `subscription-lag`: the load half of `bench/subscription-lag.sh`. Against a running `faas serve`
//! with `functions/lag-probe` deployed (route `/lag-probe/...`, subscription `*`), it
//!
//! 1. sends `POST /lag-probe/append` open-loop at a fixed rate: request i is sent at start + i/rate
//!    whether or not earlier ones have answered, so a slow server cannot slow the offered load
//!    down (no coordinated omission);
//! 2. waits until the handler has recorded a lag for every append that succeeded (or until no new
//!    lag arrived for a while: events the subscription parked never get one);
//! 3. prints the append rate achieved, the failures by kind, the lag percentiles (the probe
//!    measures them in the guest, append → handler call) and, with `--admin-url`, parked events.
//!
//! A short warm-up run at the same rate goes first; its lags (lower positions, so first in the
//! probe's list) are left out.
//!
//! Usage: `subscription-lag DATA_URL [--admin-url URL] [--rate 1000] [--seconds 10] [--warmup-seconds 1]`.

use anyhow::{Context as _, ensure};
use clap::Parser;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(about = "Subscription lag of the lag-probe function under a fixed append rate")]
struct Args {
    /// The data plane, e.g. http://127.0.0.1:8080.
    data_url: String,
    /// The control plane, to count the events the subscription parked.
    #[arg(long)]
    admin_url: Option<String>,
    /// Appends per second offered.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Length of the measured run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Length of the unmeasured warm-up run.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u32,
    /// Stop waiting for the subscription once no new lag arrived for this many seconds.
    #[arg(long, default_value_t = 10)]
    stall_seconds: u64,
}

/// What an open-loop run did.
struct Run {
    sent: usize,
    ok: usize,
    /// Response time of each successful append, from its scheduled send time.
    latencies: Vec<Duration>,
    /// From the first scheduled send to the last answer.
    elapsed: Duration,
    /// How far behind schedule the generator itself got (it shares the CPUs with the server).
    max_send_delay: Duration,
    /// Failed appends by error.
    errors: BTreeMap<String, usize>,
}

async fn drive(http: &reqwest::Client, url: &str, rate: u32, seconds: u32) -> Run {
    let total = rate as usize * seconds as usize;
    let mut tasks = JoinSet::new();
    let mut max_send_delay = Duration::ZERO;
    let start = Instant::now();
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        tokio::time::sleep_until(at.into()).await;
        max_send_delay = max_send_delay.max(at.elapsed());
        let request = http.post(url);
        tasks.spawn(async move {
            // The body is read so the connection goes back to the pool.
            let outcome = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    response.bytes().await.map(drop).map_err(|e| e.to_string())
                }
                // Grouped by status and message: the body also carries a per-request id.
                Ok(response) => {
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    Err(format!("HTTP {status}: {}", body["error"]["message"].as_str().unwrap_or("(no message)")))
                }
                Err(error) => Err(error.to_string()),
            };
            (outcome, at.elapsed())
        });
    }
    let (mut ok, mut latencies, mut errors) = (0, Vec::with_capacity(total), BTreeMap::new());
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("request task") {
            (Ok(()), latency) => {
                ok += 1;
                latencies.push(latency);
            }
            (Err(error), _) => *errors.entry(error).or_default() += 1,
        }
    }
    Run { sent: total, ok, latencies, elapsed: start.elapsed(), max_send_delay, errors }
}

/// What the probe has recorded: every lag in position order, and the handler calls they came in.
struct Recorded {
    lags: Vec<u64>,
    batches: usize,
}

async fn recorded(http: &reqwest::Client, url: &str) -> anyhow::Result<Recorded> {
    let body: serde_json::Value = http.get(url).send().await?.error_for_status()?.json().await?;
    let (Some(lags), Some(batches)) = (body["lags"].as_array(), body["batches"].as_u64()) else {
        anyhow::bail!("unexpected answer {body}");
    };
    Ok(Recorded { lags: lags.iter().filter_map(serde_json::Value::as_u64).collect(), batches: batches as usize })
}

/// Waits until the probe has recorded `expected` lags, or none arrived for `stall`; returns the
/// record and when the last new lag was seen.
async fn catch_up(
    http: &reqwest::Client,
    url: &str,
    expected: usize,
    stall: Duration,
) -> anyhow::Result<(Recorded, Instant)> {
    let (mut seen, mut progress) = (0, Instant::now());
    loop {
        let now = recorded(http, url).await?;
        if now.lags.len() > seen {
            (seen, progress) = (now.lags.len(), Instant::now());
        }
        if now.lags.len() >= expected || progress.elapsed() > stall {
            return Ok((now, progress));
        }
        // Not faster: each poll is an invocation that lists every entry, competing with delivery.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Events the subscription gave up on, from the control plane.
async fn parked(http: &reqwest::Client, admin_url: &str) -> anyhow::Result<usize> {
    let url = format!("{}/v1/functions/lag-probe/subscriptions", admin_url.trim_end_matches('/'));
    let body: serde_json::Value = http.get(url).send().await?.error_for_status()?.json().await?;
    body["parked"].as_array().map(Vec::len).with_context(|| format!("unexpected answer {body}"))
}

fn percentile<T: Copy + Ord>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

// One thread: ~1,000 requests/s need little CPU, and the server gets the rest of the machine.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.rate > 0 && args.seconds > 0, "--rate and --seconds must be positive");
    let base = args.data_url.trim_end_matches('/');
    let (append_url, lags_url) = (format!("{base}/lag-probe/append"), format!("{base}/lag-probe/lags"));
    let http = reqwest::Client::new();
    let stall = Duration::from_secs(args.stall_seconds);

    let before = recorded(&http, &lags_url).await.context("GET /lag-probe/lags (is lag-probe deployed?)")?;
    ensure!(before.lags.is_empty(), "lag-probe already has {} lags: use a fresh database", before.lags.len());
    let mut warm = before;
    if args.warmup_seconds > 0 {
        let warmup = drive(&http, &append_url, args.rate, args.warmup_seconds).await;
        warm = catch_up(&http, &lags_url, warmup.ok, stall).await?.0;
        println!("warm-up: {} of {} appends ok, {} lags recorded", warmup.ok, warmup.sent, warm.lags.len());
    }

    let run = drive(&http, &append_url, args.rate, args.seconds).await;
    let appended_at = Instant::now();
    let (all, last_progress) = catch_up(&http, &lags_url, warm.lags.len() + run.ok, stall).await?;

    let mut lags = all.lags[warm.lags.len()..].to_vec();
    let batches = all.batches - warm.batches;
    let mut latencies = run.latencies.clone();
    println!(
        "offered {} appends/s for {} s: {} sent, {} ok, {} failed",
        args.rate,
        args.seconds,
        run.sent,
        run.ok,
        run.sent - run.ok
    );
    for (error, count) in &run.errors {
        println!("  {count} x {error}");
    }
    ensure!(!lags.is_empty() && !latencies.is_empty(), "no append succeeded");
    lags.sort_unstable();
    latencies.sort_unstable();
    let ms = |us: u64| us as f64 / 1e3;
    println!(
        "achieved {:.0} appends/s (ok / time from first send to last answer, {:.2} s); generator at most {:.1} ms behind schedule",
        run.ok as f64 / run.elapsed.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        run.max_send_delay.as_secs_f64() * 1e3
    );
    println!(
        "append response time (from scheduled send): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "subscription lag (append → handler, {} events in {batches} handler calls): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lags.len(),
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.9)),
        ms(percentile(&lags, 0.99)),
        ms(lags[lags.len() - 1])
    );
    if lags.len() < run.ok {
        println!(
            "{} appended events got no lag within {} s of the last one that did",
            run.ok - lags.len(),
            args.stall_seconds
        );
    }
    println!(
        "last lag recorded {:.2} s after the last append answered (polled every 250 ms)",
        last_progress.saturating_duration_since(appended_at).as_secs_f64()
    );
    if let Some(admin_url) = &args.admin_url {
        println!("parked events (whole run, warm-up included): {}", parked(&http, admin_url).await?);
    }
    Ok(())
}
