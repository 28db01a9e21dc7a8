//! Event-store append throughput from many concurrent writers (the group commit,
//! `host/src/store/group_commit.rs`), against the same single-row INSERTs run raw by as many
//! concurrent sqlx clients, in the same run, on the same database: events/s and per-append
//! latency p50/p99, for 1, 8, 64 and 256 writers, each to its own stream and all to one hot
//! stream.
//!
//!   cargo run --release -p faas-bench --example append-throughput -- <database-url> [seconds]
//!
//! `sqlite:///tmp/x.db` or `postgres://user@host/db` (a scratch database: tables are created).

use faas_host::store::events::{Expected, NewEvent};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

const RAW_TABLE: &str = "CREATE TABLE IF NOT EXISTS raw_events (
    position BIGINT PRIMARY KEY, namespace TEXT NOT NULL, stream TEXT NOT NULL, version BIGINT NOT NULL,
    event_id TEXT NOT NULL, event_type TEXT NOT NULL, data BYTEA NOT NULL, metadata TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL, UNIQUE (namespace, stream, version), UNIQUE (namespace, stream, event_id))";
const WRITERS: [usize; 4] = [1, 8, 64, 256];

fn payload() -> Vec<u8> {
    br#"{"account":"acc-1","amount":1250,"currency":"EUR","note":"benchmark payload of a typical size"}"#.to_vec()
}

#[derive(Clone)]
enum Raw {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

macro_rules! raw_insert {
    ($pool:expr, $p:expr) => {
        sqlx::query(
            "INSERT INTO raw_events (position, namespace, stream, version, event_id, event_type, data, metadata, recorded_at_ms)
             VALUES ($1, 'bench', $2, $1, $3, 'Benchmarked', $4, '{}', 0)",
        )
        .bind($p)
        .bind(format!("raw-{}", $p % 256))
        .bind(format!("id-{}", $p))
        .bind(payload())
        .execute($pool)
        .await
        .map(drop)
    };
}

impl Raw {
    async fn insert(&self, position: i64) -> Result<(), sqlx::Error> {
        match self {
            Raw::Pg(pool) => raw_insert!(pool, position),
            Raw::Sqlite(pool) => raw_insert!(pool, position),
        }
    }
}

/// Throughput and latency percentiles of `writers` tasks running `op` for `run`.
async fn measure<F, Fut>(writers: usize, run: Duration, op: F) -> (f64, f64, f64)
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let until = Instant::now() + run;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let op = op.clone();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut n = 0;
            while Instant::now() < until {
                let at = Instant::now();
                if op(w, n).await {
                    samples.push(at.elapsed());
                }
                n += 1;
            }
            samples
        });
    }
    let mut all = Vec::new();
    while let Some(samples) = tasks.join_next().await {
        all.extend(samples.expect("writer task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))].as_secs_f64() * 1e3;
    (all.len() as f64 / elapsed, at(0.5), at(0.99))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: append-throughput <database-url> [seconds]");
    let run = Duration::from_secs(args.next().map_or(5, |n| n.parse().expect("seconds")));
    let stores = faas_host::store::open(&url).await.expect("opening the store");
    let raw = if url.starts_with("postgres") {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(64).connect(&url).await.expect("raw pool");
        sqlx::query(RAW_TABLE).execute(&pool).await.expect("raw table");
        sqlx::query("TRUNCATE raw_events").execute(&pool).await.expect("truncate");
        Raw::Pg(pool)
    } else {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        let options = url
            .replace("faas", "raw")
            .parse::<SqliteConnectOptions>()
            .expect("sqlite url")
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool =
            sqlx::sqlite::SqlitePoolOptions::new().max_connections(8).connect_with(options).await.expect("raw pool");
        sqlx::query(&RAW_TABLE.replace("BYTEA", "BLOB")).execute(&pool).await.expect("raw table");
        sqlx::query("DELETE FROM raw_events").execute(&pool).await.expect("clear");
        Raw::Sqlite(pool)
    };
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let next_raw = Arc::new(AtomicI64::new(1));
    println!(
        "{:>8} {:>10} | {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9} | ratio",
        "writers", "streams", "appends/s", "p50 ms", "p99 ms", "raw INSERT/s", "p50 ms", "p99 ms"
    );
    // BENCH_WRITERS=64 BENCH_HOT=false: one row of the table (for quick A/B runs).
    let writer_counts: Vec<usize> = std::env::var("BENCH_WRITERS")
        .map(|v| v.split(',').map(|n| n.trim().parse().expect("BENCH_WRITERS: numbers")).collect())
        .unwrap_or_else(|_| WRITERS.to_vec());
    let hot_modes: Vec<bool> = match std::env::var("BENCH_HOT").as_deref() {
        Ok("true") => vec![true],
        Ok("false") => vec![false],
        _ => vec![false, true],
    };
    for &hot in &hot_modes {
        for &writers in &writer_counts {
            let events = stores.events.clone();
            let (rate, p50, p99) = measure(writers, run, move |w, n| {
                let events = events.clone();
                async move {
                    let stream = if hot { "hot".to_owned() } else { format!("w-{run_id}-{w}") };
                    let event = NewEvent {
                        id: format!("{run_id}-{hot}-{writers}-{w}-{n}"),
                        event_type: "Benchmarked".into(),
                        data: payload(),
                        metadata: "{}".into(),
                    };
                    events.append("bench", &stream, Expected::Any, &[event], None).await.is_ok()
                }
            })
            .await;
            let (raw, next) = (raw.clone(), next_raw.clone());
            let (raw_rate, raw_p50, raw_p99) = measure(writers, run, move |_, _| {
                let (raw, next) = (raw.clone(), next.clone());
                async move { raw.insert(next.fetch_add(1, Ordering::Relaxed)).await.is_ok() }
            })
            .await;
            println!(
                "{writers:>8} {:>10} | {rate:>12.0} {p50:>9.2} {p99:>9.2} | {raw_rate:>12.0} {raw_p50:>9.2} {raw_p99:>9.2} | {:.2}x",
                if hot { "one hot" } else { "own each" },
                rate / raw_rate
            );
        }
    }
}
