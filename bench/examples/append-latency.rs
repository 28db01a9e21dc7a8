//! Event-store append latency against a raw sqlx INSERT of the same rows, in the same run, on the
//! same database: p50/p99 for single events and 100-event batches, and the ratio.
//!
//!   cargo run --release -p faas-bench --example append-latency -- <database-url> [iterations]
//!
//! `sqlite:///tmp/x.db` or `postgres://user@host/db` (a scratch database: tables are created).

use faas_host::store::events::{Expected, NewEvent};
use std::time::{Duration, Instant};

const RAW_TABLE: &str = "CREATE TABLE IF NOT EXISTS raw_events (
    position BIGINT PRIMARY KEY, namespace TEXT NOT NULL, stream TEXT NOT NULL, version BIGINT NOT NULL,
    event_id TEXT NOT NULL, event_type TEXT NOT NULL, data BYTEA NOT NULL, metadata TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL, UNIQUE (namespace, stream, version), UNIQUE (namespace, stream, event_id))";

enum Raw {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

macro_rules! raw_insert {
    ($pool:expr, $db:ty, $rows:expr, $next:expr) => {{
        let mut q = sqlx::QueryBuilder::<$db>::new(
            "INSERT INTO raw_events (position, namespace, stream, version, event_id, event_type, data, metadata, recorded_at_ms) ",
        );
        q.push_values(0..$rows, |mut b, i| {
            let p = $next + i as i64;
            b.push_bind(p)
                .push_bind("bench")
                .push_bind(format!("raw-{}", p % 100))
                .push_bind(p)
                .push_bind(format!("id-{p}"))
                .push_bind("Benchmarked")
                .push_bind(payload())
                .push_bind("{}")
                .push_bind(0i64);
        });
        q.build().execute($pool).await.expect("raw insert");
    }};
}

fn payload() -> Vec<u8> {
    br#"{"account":"acc-1","amount":1250,"currency":"EUR","note":"benchmark payload of a typical size"}"#.to_vec()
}

impl Raw {
    async fn insert(&self, rows: usize, next: i64) {
        match self {
            Raw::Pg(pool) => raw_insert!(pool, sqlx::Postgres, rows, next),
            Raw::Sqlite(pool) => raw_insert!(pool, sqlx::Sqlite, rows, next),
        }
    }
}

fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: append-latency <database-url> [iterations]");
    let iterations: usize = args.next().map_or(2000, |n| n.parse().expect("iterations"));
    let stores = faas_host::store::open(&url).await.expect("opening the store");
    let raw = if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&url).await.expect("raw pool");
        sqlx::query(RAW_TABLE).execute(&pool).await.expect("raw table");
        sqlx::query("TRUNCATE raw_events").execute(&pool).await.expect("truncate");
        Raw::Pg(pool)
    } else {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        let options = url
            .parse::<SqliteConnectOptions>()
            .expect("sqlite url")
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("raw pool");
        sqlx::query(&RAW_TABLE.replace("BYTEA", "BLOB")).execute(&pool).await.expect("raw table");
        sqlx::query("DELETE FROM raw_events").execute(&pool).await.expect("clear");
        Raw::Sqlite(pool)
    };
    let run = uuid_like(std::process::id());
    let mut next_raw = 1i64;
    for (label, batch, rounds) in [("single event", 1usize, iterations), ("100-event batch", 100, iterations / 5)] {
        let (mut append, mut insert) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let events: Vec<NewEvent> = (0..batch)
                .map(|i| NewEvent {
                    id: format!("{run}-{batch}-{round}-{i}"),
                    event_type: "Benchmarked".into(),
                    data: payload(),
                    metadata: "{}".into(),
                })
                .collect();
            let stream = format!("bench-{batch}-{}", round % 100);
            let started = Instant::now();
            stores.events.append("bench", &stream, Expected::Any, &events, None).await.expect("append");
            append.push(started.elapsed());
            let started = Instant::now();
            raw.insert(batch, next_raw).await;
            insert.push(started.elapsed());
            next_raw += batch as i64;
        }
        let ((ap50, ap99), (rp50, rp99)) = (stats(append), stats(insert));
        println!(
            "{label:>16}: append p50 {ap50:.3} ms p99 {ap99:.3} ms | raw INSERT p50 {rp50:.3} ms p99 {rp99:.3} ms | p50 ratio {:.2}x ({rounds} rounds)",
            ap50 / rp50
        );
    }
}

fn uuid_like(seed: u32) -> String {
    format!(
        "{seed:08x}-{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    )
}
