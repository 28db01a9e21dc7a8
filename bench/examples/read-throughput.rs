//! Event-store read throughput over one 100,000-event stream: `read_stream` forward and `read_all`,
//! page by page, against a raw sqlx `SELECT` of the same rows on the same database in the same run.
//!
//!   cargo run --release -p faas-bench --example read-throughput -- <database-url> [rounds]
//!
//! `sqlite:///tmp/x.db` or `postgres://user@host/db` (a scratch database: the store's tables are
//! created). Every run appends to a fresh namespace, so `read_all` sees exactly its own events.

use faas_host::store::Stores;
use faas_host::store::events::{Direction, Expected, NewEvent};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EVENTS: usize = 100_000;
const APPEND_BATCH: usize = 1000;
/// 1000 is a typical page; 10,000 is the most one guest read may ask for.
const PAGES: [u32; 2] = [1000, 10_000];

/// The store's row shape: the same columns, decoded into the same owned types.
type Row = (String, String, i64, i64, String, String, Vec<u8>, String, i64);
const COLUMNS: &str = "namespace, stream, version, position, event_id, event_type, data, metadata, recorded_at_ms";

/// A second pool on the same database (the store's own pool is private to the host crate),
/// configured as the store configures its own.
enum Raw {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

macro_rules! fetch {
    ($pool:expr, $sql:expr, $($bind:expr),+) => {
        sqlx::query_as::<_, Row>($sql)$(.bind($bind))+.fetch_all($pool).await.expect("raw select")
    };
}

impl Raw {
    async fn stream_page(&self, namespace: &str, stream: &str, from_version: i64, max: u32) -> Vec<Row> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE namespace = $1 AND stream = $2 AND version >= $3 ORDER BY version LIMIT $4"
        );
        match self {
            Raw::Pg(pool) => fetch!(pool, &sql, namespace, stream, from_version, i64::from(max)),
            Raw::Sqlite(pool) => fetch!(pool, &sql, namespace, stream, from_version, i64::from(max)),
        }
    }

    async fn all_page(&self, namespace: &str, from_position: i64, max: u32) -> Vec<Row> {
        let sql =
            format!("SELECT {COLUMNS} FROM events WHERE position >= $1 AND namespace = $2 ORDER BY position LIMIT $3");
        match self {
            Raw::Pg(pool) => fetch!(pool, &sql, from_position, namespace, i64::from(max)),
            Raw::Sqlite(pool) => fetch!(pool, &sql, from_position, namespace, i64::from(max)),
        }
    }
}

/// ~100 bytes of JSON, as in `append-latency`.
fn payload() -> Vec<u8> {
    br#"{"account":"acc-1","amount":1250,"currency":"EUR","note":"benchmark payload of a typical size"}"#.to_vec()
}

/// One full read of the 100k events: how many, how many payload bytes, how long.
struct Pass {
    events: usize,
    bytes: usize,
    elapsed: Duration,
}

#[derive(Clone, Copy)]
enum Read {
    Stream,
    All,
}

struct Target<'a> {
    stores: &'a Stores,
    raw: &'a Raw,
    namespace: &'a str,
    stream: &'a str,
    first_position: u64,
}

impl Target<'_> {
    /// Pages through the events with the store's API until a short page.
    async fn store_pass(&self, read: Read, page: u32) -> Pass {
        let events = &self.stores.events;
        let (mut n, mut bytes, started) = (0, 0, Instant::now());
        let (mut version, mut position) = (0u64, self.first_position);
        loop {
            let batch = match read {
                Read::Stream => {
                    events.read_stream(self.namespace, self.stream, version, Direction::Forward, page).await
                }
                Read::All => events.read_all(&[self.namespace], position, page).await,
            }
            .expect("store read");
            n += batch.len();
            bytes += batch.iter().map(|e| e.data.len()).sum::<usize>();
            let Some(last) = batch.last() else { break };
            (version, position) = (last.version + 1, last.position + 1);
            if batch.len() < page as usize {
                break;
            }
        }
        Pass { events: n, bytes, elapsed: started.elapsed() }
    }

    /// The same pages with a plain SELECT on the raw pool.
    async fn raw_pass(&self, read: Read, page: u32) -> Pass {
        let (mut n, mut bytes, started) = (0, 0, Instant::now());
        let (mut version, mut position) = (0i64, self.first_position as i64);
        loop {
            let batch = match read {
                Read::Stream => self.raw.stream_page(self.namespace, self.stream, version, page).await,
                Read::All => self.raw.all_page(self.namespace, position, page).await,
            };
            n += batch.len();
            bytes += batch.iter().map(|row| row.6.len()).sum::<usize>();
            let Some(last) = batch.last() else { break };
            (version, position) = (last.2 + 1, last.3 + 1);
            if batch.len() < page as usize {
                break;
            }
        }
        Pass { events: n, bytes, elapsed: started.elapsed() }
    }
}

/// The median pass by time, so one hiccup (a checkpoint, another process) does not decide.
fn median(mut passes: Vec<Pass>) -> Pass {
    passes.sort_by_key(|p| p.elapsed);
    passes.swap_remove(passes.len() / 2)
}

fn rate(p: &Pass) -> String {
    let secs = p.elapsed.as_secs_f64();
    format!("{:>7.0}k ev/s {:>5.1} MB/s ({:.3} s)", p.events as f64 / secs / 1e3, p.bytes as f64 / secs / 1e6, secs)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: read-throughput <database-url> [rounds]");
    let rounds: usize = args.next().map_or(5, |n| n.parse().expect("rounds"));
    let stores = faas_host::store::open(&url).await.expect("opening the store");
    let raw = if url.starts_with("postgres") {
        Raw::Pg(sqlx::PgPool::connect(&url).await.expect("raw pool"))
    } else {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        let options = url
            .parse::<SqliteConnectOptions>()
            .expect("sqlite url")
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        Raw::Sqlite(sqlx::SqlitePool::connect_with(options).await.expect("raw pool"))
    };

    let run = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    let namespace = format!("rt-{run:x}");
    let stream = "reads-1";
    let started = Instant::now();
    let mut first_position = None;
    for batch in 0..EVENTS / APPEND_BATCH {
        let events: Vec<NewEvent> = (0..APPEND_BATCH)
            .map(|i| NewEvent {
                id: format!("{run:x}-{batch}-{i}"),
                event_type: "Benchmarked".into(),
                data: payload(),
                metadata: "{}".into(),
            })
            .collect();
        let appended = stores.events.append(&namespace, stream, Expected::Any, &events, None).await.expect("append");
        first_position.get_or_insert(appended.first_position);
    }
    let fill = started.elapsed().as_secs_f64();
    println!(
        "filled {EVENTS} events ({} B payload each) in {fill:.2} s: {:.0} events/s in batches of {APPEND_BATCH}",
        payload().len(),
        EVENTS as f64 / fill
    );

    let target = Target {
        stores: &stores,
        raw: &raw,
        namespace: &namespace,
        stream,
        first_position: first_position.expect("appended"),
    };
    for (label, read) in [("read_stream", Read::Stream), ("read_all", Read::All)] {
        for page in PAGES {
            // One unmeasured pass each warms the page cache and the prepared-statement caches.
            target.store_pass(read, page).await;
            target.raw_pass(read, page).await;
            let (mut store, mut raw) = (Vec::new(), Vec::new());
            // Alternating, so drift on the machine hits both sides alike.
            for _ in 0..rounds {
                store.push(target.store_pass(read, page).await);
                raw.push(target.raw_pass(read, page).await);
            }
            let (store, raw) = (median(store), median(raw));
            assert_eq!((store.events, raw.events), (EVENTS, EVENTS), "every pass must see all events");
            println!(
                "{label:>11} page {page:>5}: store {} | raw SELECT {} | store/raw time {:.2}x (median of {rounds})",
                rate(&store),
                rate(&raw),
                store.elapsed.as_secs_f64() / raw.elapsed.as_secs_f64()
            );
        }
    }
}
