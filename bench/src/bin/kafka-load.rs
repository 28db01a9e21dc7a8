//! `kafka-load`: the load half of `bench/kafka.sh`, against a running broker and `faas serve`
//! (two for `failover`), with `kafka-probe` deployable from `--probe`.
//!
//! - `throughput`: N records on a new 4-partition topic; a raw rdkafka consumer loop (one
//!   consumer, fresh group, subscribe until N received) and the faas trigger with a no-op
//!   handler (deploy until N handled, from `faas_kafka_records_total`) read them, raw before and
//!   after faas. Prints records/s and the ratio.
//! - `latency`: records produced at a fixed rate (linger 0) to a topic consumed by
//!   `kafka-probe` and, in the same run, by a raw consumer; end to end (producer timestamp to
//!   handler / to receipt) p50, p99, max.
//! - `failover`: two nodes in one group (`--admin`/`--data` for A and `--admin-b`/`--data-b`);
//!   records at 500/s; kill -9 of A (`--pid-a`); seconds until B handles its first record from
//!   a partition A owned, and until B owns all partitions.

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, Subcommand};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    /// Node A's control plane and data plane.
    #[arg(long)]
    admin: String,
    #[arg(long)]
    data: String,
    /// The kafka-probe component.
    #[arg(long)]
    probe: std::path::PathBuf,
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Throughput {
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        /// The trigger's batch size.
        #[arg(long, default_value_t = 100)]
        batch: u32,
    },
    Latency {
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    Failover {
        #[arg(long)]
        admin_b: String,
        #[arg(long)]
        data_b: String,
        #[arg(long)]
        pid_a: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    let probe = std::fs::read(&args.probe).with_context(|| format!("reading {}", args.probe.display()))?;
    match args.command {
        Mode::Throughput { records, batch } => {
            throughput(&args.bootstrap, &http, &args.admin, &probe, records, batch).await
        }
        Mode::Latency { rate, seconds } => latency(&args, &http, &probe, rate, seconds).await,
        Mode::Failover { ref admin_b, ref data_b, pid_a } => {
            failover(&args, &http, &probe, admin_b, data_b, pid_a).await
        }
    }
}

fn suffix() -> String {
    format!("{:x}", SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn create_topic(bootstrap: &str, name: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    for result in
        admin.create_topics([&NewTopic::new(name, 4, TopicReplication::Fixed(1))], &AdminOptions::new()).await?
    {
        result.map_err(|(topic, e)| anyhow::anyhow!("creating {topic}: {e}"))?;
    }
    Ok(())
}

fn producer(bootstrap: &str, linger_ms: u32) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms.to_string())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?)
}

async fn deploy(
    http: &reqwest::Client,
    admin: &str,
    name: &str,
    probe: &[u8],
    topic: &str,
    batch: u32,
) -> anyhow::Result<()> {
    let kafka = json!({ "topics": [topic], "group": format!("bench-{topic}"), "batch_size": batch });
    let spec = json!({ "triggers": { "http": [format!("/{name}/...")], "kafka": kafka } });
    let form = reqwest::multipart::Form::new()
        .text("config", spec.to_string())
        .part("component", reqwest::multipart::Part::bytes(probe.to_vec()).file_name("probe.wasm"));
    let response = http.post(format!("{admin}/v1/functions/{name}/versions")).multipart(form).send().await?;
    ensure!(response.status().is_success(), "deploy: {} {}", response.status(), response.text().await?);
    Ok(())
}

async fn handled(http: &reqwest::Client, admin: &str, topic: &str) -> anyhow::Result<u64> {
    let text = http.get(format!("{admin}/metrics")).send().await?.text().await?;
    let needle = format!("outcome=\"handled\",topic=\"{topic}\"}}");
    Ok(text
        .lines()
        .filter(|l| l.starts_with("faas_kafka_records_total") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

async fn assigned(http: &reqwest::Client, admin: &str) -> anyhow::Result<Vec<i64>> {
    let health: Value = http.get(format!("{admin}/healthz")).send().await?.json().await?;
    Ok(health["kafka"]["triggers"][0]["assigned"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["partition"].as_i64()).collect())
        .unwrap_or_default())
}

/// Subscribes in a fresh group and counts records until `n` arrived; returns the time from the
/// first record to the last (the group join before it is not throughput).
async fn raw_consume(bootstrap: &str, topic: &str, n: usize) -> anyhow::Result<Duration> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("raw-{}", suffix()))
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut count = 0;
    let mut started = Instant::now();
    while count < n {
        let message =
            tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await.context("raw consumer stalled")??;
        std::hint::black_box(message.payload());
        if count == 0 {
            started = Instant::now();
        }
        count += 1;
    }
    Ok(started.elapsed())
}

async fn throughput(
    bootstrap: &str,
    http: &reqwest::Client,
    admin: &str,
    probe: &[u8],
    n: usize,
    batch: u32,
) -> anyhow::Result<()> {
    let topic = format!("noop-{}", suffix());
    create_topic(bootstrap, &topic).await?;
    let producer = producer(bootstrap, 20)?;
    let value = vec![b'x'; 100];
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("k{i}");
        loop {
            // send_result enqueues at once (async `send` would enqueue only when awaited).
            match producer.send_result(FutureRecord::to(&topic).key(&key).payload(&value)) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((e, _)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => bail!("produce: {e}"),
            }
        }
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    eprintln!("produced {n} records in {:.1} s", started.elapsed().as_secs_f64());

    let raw1 = raw_consume(bootstrap, &topic, n).await?;
    let deployed = Instant::now();
    deploy(http, admin, "kafka-probe", probe, &topic, batch).await?;
    // From the first handled batch to the last: like the raw loop, without the group join.
    let mut started = None;
    loop {
        let done = handled(http, admin, &topic).await?;
        if done > 0 && started.is_none() {
            started = Some((Instant::now(), done));
        }
        if done >= n as u64 {
            break;
        }
        if deployed.elapsed() > Duration::from_secs(600) {
            bail!("faas handled only {} of {n} in 600 s", handled(http, admin, &topic).await?);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first_seen, first_count) = started.unwrap_or((deployed, 0));
    // The records handled before the first observation are not in the timed window.
    let faas_records = n as u64 - first_count;
    let faas = first_seen.elapsed();
    let raw2 = raw_consume(bootstrap, &topic, n).await?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let raw = (rate(raw1) + rate(raw2)) / 2.0;
    let faas_rate = faas_records as f64 / faas.as_secs_f64();
    println!("throughput, {n} records of 100 B, 4 partitions, first record to last (group join excluded):");
    println!(
        "  raw rdkafka consumer loop   {raw:>10.0} records/s  (runs before/after: {:.0}, {:.0})",
        rate(raw1),
        rate(raw2)
    );
    println!(
        "  faas trigger, no-op handler {faas_rate:>10.0} records/s  ({faas_records} records in {:.2} s; batches of up to {batch})",
        faas.as_secs_f64()
    );
    println!("  ratio faas / raw            {:>10.2}x", faas_rate / raw);
    Ok(())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency(args: &Args, http: &reqwest::Client, probe: &[u8], rate: u64, seconds: u64) -> anyhow::Result<()> {
    let topic = format!("lat-{}", suffix());
    create_topic(&args.bootstrap, &topic).await?;
    deploy(http, &args.admin, "kafka-probe", probe, &topic, 100).await?;
    let started = Instant::now();
    while assigned(http, &args.admin).await?.len() < 4 {
        ensure!(started.elapsed() < Duration::from_secs(60), "the trigger never got its partitions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The baseline: a raw consumer on the same topic, in its own group, in the same run.
    let total = (rate * seconds) as usize;
    let expected = total + (rate * 2) as usize;
    let raw = {
        let bootstrap = args.bootstrap.clone();
        let topic = topic.clone();
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", format!("raw-lat-{}", suffix()))
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        consumer.subscribe(&[&topic])?;
        while consumer.assignment()?.count() < 4 {
            let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        }
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(expected);
            while latencies.len() < expected {
                match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
                    Ok(Ok(message)) => {
                        let ts = message.timestamp().to_millis().unwrap_or(0);
                        latencies.push((ts, now_ms() - ts));
                    }
                    _ => break,
                }
            }
            latencies
        })
    };
    // Two seconds of warm-up at the same rate (connections, metadata, JIT of the broker),
    // then the measured part: only records produced after `measured_from` count.
    let producer = producer(&args.bootstrap, 0)?;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let warmup = (rate * 2) as usize;
    let mut next = tokio::time::Instant::now();
    let mut pending = Vec::with_capacity(total + warmup);
    let mut measured_from = i64::MAX;
    for i in 0..warmup + total {
        tokio::time::sleep_until(next).await;
        next += interval;
        if i == warmup {
            measured_from = now_ms();
        }
        let (producer, topic) = (producer.clone(), topic.clone());
        pending.push(tokio::spawn(async move {
            let key = format!("k{i}");
            producer.send(FutureRecord::to(&topic).key(&key).payload("x"), Duration::from_secs(30)).await.map(|_| ())
        }));
    }
    for p in pending {
        p.await?.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    let raw = raw.await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let body: Value = http.get(format!("{}/kafka-probe/latencies", args.data)).send().await?.json().await?;
    let pairs: Vec<(i64, i64)> = body["latencies_ms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_i64()?, p[1].as_i64()?)))
        .collect();
    let measured = |pairs: &[(i64, i64)]| {
        let mut l: Vec<i64> = pairs.iter().filter(|(ts, _)| *ts >= measured_from).map(|(_, l)| *l).collect();
        l.sort_unstable();
        l
    };
    let (faas, raw) = (measured(&pairs), measured(&raw));
    println!(
        "latency, produce -> handler, {rate} records/s for {seconds} s after 2 s of warm-up, 4 partitions (ms; producer timestamps):"
    );
    for (name, l) in [("raw rdkafka consumer", &raw), ("faas trigger (kafka-probe)", &faas)] {
        println!(
            "  {name:<27} n={:<6} p50 {:>4}  p99 {:>4}  max {:>4}",
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99),
            l.last().copied().unwrap_or(-1)
        );
    }
    ensure!(pairs.len() == expected, "faas handled {} of {expected} records", pairs.len());
    Ok(())
}

async fn failover(
    args: &Args,
    http: &reqwest::Client,
    probe: &[u8],
    admin_b: &str,
    data_b: &str,
    pid_a: u32,
) -> anyhow::Result<()> {
    let topic = format!("fo-{}", suffix());
    create_topic(&args.bootstrap, &topic).await?;
    deploy(http, &args.admin, "kafka-probe", probe, &topic, 100).await?;
    deploy(http, admin_b, "kafka-probe", probe, &topic, 100).await?;
    let started = Instant::now();
    let owned_by_a = loop {
        let (a, b) = (assigned(http, &args.admin).await?, assigned(http, admin_b).await?);
        if !a.is_empty() && !b.is_empty() && a.len() + b.len() == 4 {
            break a;
        }
        ensure!(started.elapsed() < Duration::from_secs(60), "the group never split the partitions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let producer = producer(&args.bootstrap, 0)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (stop, topic) = (stop.clone(), topic.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("k{i}");
                let _ = producer.send(FutureRecord::to(&topic).key(&key).payload("x"), Duration::from_secs(30)).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_ms = now_ms();
    let killed = Instant::now();
    std::process::Command::new("kill").args(["-9", &pid_a.to_string()]).status()?;
    let owned: HashSet<i64> = owned_by_a.into_iter().collect();
    let mut all_owned = None;
    let first_record = loop {
        if all_owned.is_none() && assigned(http, admin_b).await?.len() == 4 {
            all_owned = Some(killed.elapsed());
        }
        let body: Value = http.get(format!("{data_b}/kafka-probe/latencies")).send().await?.json().await?;
        let first = body["batches"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| owned.contains(&b[0].as_i64().unwrap_or(-1)))
            .filter_map(|b| b[2].as_i64())
            .filter(|at| *at >= killed_ms)
            .min();
        if let Some(at) = first {
            break Duration::from_millis((at - killed_ms) as u64);
        }
        ensure!(killed.elapsed() < Duration::from_secs(120), "B never handled a record of A's partitions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.await;
    println!("failover (session timeout as configured on the nodes), A owned partitions {owned:?}:");
    println!("  kill -9 A -> B handles its first record from A's partitions: {:.1} s", first_record.as_secs_f64());
    if let Some(t) = all_owned {
        println!("  kill -9 A -> B owns all 4 partitions:                         {:.1} s", t.as_secs_f64());
    }
    Ok(())
}
