//! What `faas logs` and the dashboard show: per function, the last lines its guests printed,
//! its invocation records (status, duration, request id) and the host's warnings about it
//! (traps, timeouts, refused outbound requests), in a bounded ring per function on this node,
//! with a live feed for `faas logs -f`.
//!
//! Guest lines and invocation records are handed in directly by the code that has them
//! (`runtime::guest_io`, the HTTP trigger), so `faas logs` shows them whatever the process log's
//! level. The host's warnings come through a `tracing` layer ([`CaptureLayer`]): every warning
//! that carries a `function` field is that function's too. (One global filter for all layers:
//! tracing-subscriber's per-layer filters lose events after an `enabled!` check that is not
//! followed by an event, which sqlx does for every query.)

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Records kept per function (older ones go first)...
const RECORDS_PER_FUNCTION: usize = 2000;
/// ...and bytes of text, so a function printing long lines cannot hold more than this.
const BYTES_PER_FUNCTION: usize = 1 << 20;
/// Live records a slow `-f` reader may fall behind by before it is told it missed some.
const LIVE_BACKLOG: usize = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    /// Increasing on this node: a follower resumes after the last one it saw.
    pub seq: u64,
    pub at_ms: i64,
    pub function: String,
    pub version: Option<u32>,
    pub request_id: Option<String>,
    /// `stdout`, `stderr`, `invocation` or `host` (a warning the host logged about the function).
    pub kind: &'static str,
    /// The line printed, or the host's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// Invocation records: the HTTP status (or what stands for it) and the duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    pub level: &'static str,
}

impl LogRecord {
    fn new(function: &str, version: Option<u32>, request_id: Option<&str>, kind: &'static str) -> Self {
        Self {
            seq: 0,
            at_ms: now_ms(),
            function: function.to_owned(),
            version,
            request_id: request_id.map(str::to_owned),
            kind,
            line: None,
            status: None,
            duration_ms: None,
            trigger: None,
            level: "info",
        }
    }

    fn size(&self) -> usize {
        self.line.as_ref().map_or(0, String::len) + self.function.len() + 128
    }
}

/// What to show: all filters optional.
#[derive(Debug, Default, Clone)]
pub struct LogQuery {
    pub since_ms: Option<i64>,
    pub version: Option<u32>,
    pub request_id: Option<String>,
    /// Only records after this one (a follower's resume point).
    pub after_seq: Option<u64>,
}

impl LogQuery {
    pub fn matches(&self, record: &LogRecord) -> bool {
        self.since_ms.is_none_or(|since| record.at_ms >= since)
            && self.version.is_none_or(|v| record.version == Some(v))
            && self.request_id.as_deref().is_none_or(|id| record.request_id.as_deref() == Some(id))
            && self.after_seq.is_none_or(|seq| record.seq > seq)
    }
}

#[derive(Default)]
struct Ring {
    records: VecDeque<Arc<LogRecord>>,
    bytes: usize,
}

pub struct FunctionLogs {
    rings: Mutex<HashMap<String, Ring>>,
    next_seq: AtomicU64,
    live: broadcast::Sender<Arc<LogRecord>>,
}

impl FunctionLogs {
    fn new() -> Self {
        Self { rings: Mutex::default(), next_seq: AtomicU64::new(1), live: broadcast::channel(LIVE_BACKLOG).0 }
    }

    /// The process's: the capture layer is installed once, with the process's logging.
    pub fn global() -> &'static FunctionLogs {
        static LOGS: OnceLock<FunctionLogs> = OnceLock::new();
        LOGS.get_or_init(Self::new)
    }

    fn push(&self, mut record: LogRecord) {
        record.seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let record = Arc::new(record);
        {
            let mut rings = self.rings.lock();
            let ring = rings.entry(record.function.clone()).or_default();
            ring.bytes += record.size();
            ring.records.push_back(record.clone());
            while ring.records.len() > RECORDS_PER_FUNCTION || ring.bytes > BYTES_PER_FUNCTION {
                let Some(old) = ring.records.pop_front() else { break };
                ring.bytes -= old.size();
            }
        }
        // Nobody following is the usual case: nothing to do then.
        let _ = self.live.send(record);
    }

    /// The kept records of `function` that match, oldest first, at most the last `limit`.
    pub fn recent(&self, function: &str, query: &LogQuery, limit: usize) -> Vec<Arc<LogRecord>> {
        let rings = self.rings.lock();
        let Some(ring) = rings.get(function) else { return Vec::new() };
        let matching: Vec<_> = ring.records.iter().filter(|r| query.matches(r)).cloned().collect();
        matching[matching.len().saturating_sub(limit)..].to_vec()
    }

    /// A line the guest printed (already redacted).
    pub fn guest_line(&self, function: &str, version: u32, request_id: &str, stderr: bool, line: &str) {
        self.push(LogRecord {
            line: Some(line.to_owned()),
            ..LogRecord::new(function, Some(version), Some(request_id), if stderr { "stderr" } else { "stdout" })
        });
    }

    /// A finished invocation (see [`Finished`]).
    pub fn invocation(&self, finished: Finished<'_>) {
        self.push(LogRecord {
            line: finished.error.map(str::to_owned),
            status: Some(finished.status),
            duration_ms: Some(finished.took.as_secs_f64() * 1e3),
            trigger: Some(finished.trigger.to_owned()),
            level: if finished.error.is_some() { "warn" } else { "debug" },
            ..LogRecord::new(finished.function, Some(finished.version), Some(finished.request_id), "invocation")
        });
    }

    /// Every record from now on (of every function: the follower filters).
    pub fn follow(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.live.subscribe()
    }

    /// Forgets a deleted function's records.
    pub fn forget(&self, function: &str) {
        self.rings.lock().remove(function);
    }
}

/// One finished invocation, as its invocation record says it.
pub struct Finished<'a> {
    pub function: &'a str,
    pub version: u32,
    pub request_id: &'a str,
    /// `http`, `events`, `kafka`, `step`, `schedule`, `participant`, `async`.
    pub trigger: &'a str,
    /// HTTP's status, or what stands for it: 200 done, 500 failed (`error` says why).
    pub status: u16,
    pub took: Duration,
    pub error: Option<&'a str>,
}

/// The `tracing` layer that adds the host's warnings about a function (events at warning level
/// or above with a `function` field) to [`FunctionLogs::global`].
pub struct CaptureLayer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // Guest output is handed in directly (see the module's doc).
        if *meta.level() > Level::WARN || meta.target() == "guest" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(function) = fields.function else { return };
        // The warning with what it carries (a trap's message, the refused origin).
        let line = [fields.message.unwrap_or_default()].into_iter().chain(fields.extra).collect::<Vec<_>>().join("; ");
        FunctionLogs::global().push(LogRecord {
            line: Some(line),
            level: level_name(*meta.level()),
            ..LogRecord::new(&function, fields.version, fields.request_id.as_deref(), "host")
        });
    }
}

/// Milliseconds since the Unix epoch (this module is a leaf: it keeps its own clock).
fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

#[derive(Default)]
struct Fields {
    function: Option<String>,
    version: Option<u32>,
    request_id: Option<String>,
    message: Option<String>,
    /// Other fields of a host warning, as `name=value`.
    extra: Vec<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "function" => self.function = Some(value.to_owned()),
            "request_id" => self.request_id = Some(value.to_owned()),
            "message" => self.message = Some(value.to_owned()),
            "version" => self.version = value.parse().ok(),
            name => self.extra.push(format!("{name}={value}")),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "version" => self.version = u32::try_from(value).ok(),
            name => self.extra.push(format!("{name}={value}")),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match u64::try_from(value) {
            Ok(value) => self.record_u64(field, value),
            Err(_) => self.extra.push(format!("{}={value}", field.name())),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.extra.push(format!("{}={value}", field.name()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(function: &str, line: &str) -> LogRecord {
        LogRecord { line: Some(line.into()), ..LogRecord::new(function, Some(1), Some("r"), "stdout") }
    }

    #[test]
    fn a_ring_keeps_the_newest_within_its_bounds() {
        let logs = FunctionLogs::new();
        for i in 0..RECORDS_PER_FUNCTION + 10 {
            logs.push(record("a", &format!("line {i}")));
        }
        logs.push(record("b", "other"));
        let kept = logs.recent("a", &LogQuery::default(), usize::MAX);
        assert_eq!(kept.len(), RECORDS_PER_FUNCTION);
        assert_eq!(kept.last().unwrap().line.as_deref(), Some(&*format!("line {}", RECORDS_PER_FUNCTION + 9)));
        assert!(kept.windows(2).all(|w| w[0].seq < w[1].seq));
        // Long lines: the byte bound holds first.
        let long = "x".repeat(100_000);
        for _ in 0..50 {
            logs.push(record("c", &long));
        }
        let kept = logs.recent("c", &LogQuery::default(), usize::MAX);
        assert!(kept.iter().map(|r| r.size()).sum::<usize>() <= BYTES_PER_FUNCTION, "{}", kept.len());
        assert_eq!(logs.recent("b", &LogQuery::default(), 10).len(), 1);
        logs.forget("b");
        assert!(logs.recent("b", &LogQuery::default(), 10).is_empty());
    }

    #[test]
    fn queries_filter_by_version_request_and_position() {
        let logs = FunctionLogs::new();
        for (version, id) in [(1, "x"), (2, "y"), (2, "x")] {
            let mut r = record("f", "l");
            r.version = Some(version);
            r.request_id = Some(id.into());
            logs.push(r);
        }
        let q = |query: LogQuery| logs.recent("f", &query, 10).iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(q(LogQuery { version: Some(2), ..Default::default() }), [2, 3]);
        assert_eq!(q(LogQuery { request_id: Some("x".into()), ..Default::default() }), [1, 3]);
        assert_eq!(q(LogQuery { after_seq: Some(2), ..Default::default() }), [3]);
        assert_eq!(logs.recent("f", &LogQuery::default(), 1).len(), 1, "the last `limit`");
    }
}
