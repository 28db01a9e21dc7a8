//! What `faas logs` and the dashboard show: per function, the last lines its guests printed,
//! its invocation records (status, duration, request id) and the host's warnings about it
//! (traps, timeouts), in a bounded ring per function on this node, with a live feed for
//! `faas logs -f`.
//!
//! Fed by a `tracing` layer ([`CaptureLayer`]) rather than by calls at each place that logs:
//! guest output and the host's warnings are `tracing` events already (tagged with `function`,
//! `version`, `request_id`), so whatever the log shows, the ring holds, redacted the same way.
//! Invocation records are `debug` events of target [`INVOCATION_TARGET`], which the ring takes
//! and the log prints only when asked (`FAAS_LOG=faas::invocation=debug`).

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// The target of one event per finished invocation.
pub const INVOCATION_TARGET: &str = "faas::invocation";
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

    /// Every record from now on (of every function: the follower filters).
    pub fn follow(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.live.subscribe()
    }

    /// Forgets a deleted function's records.
    pub fn forget(&self, function: &str) {
        self.rings.lock().remove(function);
    }
}

/// The `tracing` layer that fills [`FunctionLogs::global`]: events carrying a `function` field,
/// of the guest (its output), of [`INVOCATION_TARGET`], or at warning level and above.
pub struct CaptureLayer;

impl CaptureLayer {
    /// Which events the layer wants (its own filter, independent of what the log prints).
    pub fn targets() -> tracing_subscriber::filter::Targets {
        tracing_subscriber::filter::Targets::new()
            .with_default(Level::WARN)
            .with_target("guest", Level::INFO)
            .with_target(INVOCATION_TARGET, Level::DEBUG)
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(function) = fields.function else { return };
        let meta = event.metadata();
        let kind = match meta.target() {
            "guest" if fields.stream.as_deref() == Some("stderr") => "stderr",
            "guest" => "stdout",
            INVOCATION_TARGET => "invocation",
            _ => "host",
        };
        let line = match kind {
            "invocation" => None,
            // The host's warning with what it carries (a trap's message, a timeout).
            "host" => Some(
                [fields.message.unwrap_or_default()].into_iter().chain(fields.extra).collect::<Vec<_>>().join("; "),
            ),
            _ => fields.message,
        };
        FunctionLogs::global().push(LogRecord {
            seq: 0,
            at_ms: crate::store::now_ms(),
            function,
            version: fields.version,
            request_id: fields.request_id,
            kind,
            line,
            status: fields.status,
            duration_ms: fields.duration_ms,
            trigger: fields.trigger,
            level: level_name(*meta.level()),
        });
    }
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
    stream: Option<String>,
    message: Option<String>,
    status: Option<u16>,
    duration_ms: Option<f64>,
    trigger: Option<String>,
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
            "stream" => self.stream = Some(value.to_owned()),
            "message" => self.message = Some(value.to_owned()),
            "trigger" => self.trigger = Some(value.to_owned()),
            "version" => self.version = value.parse().ok(),
            name => self.extra.push(format!("{name}={value}")),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "version" => self.version = u32::try_from(value).ok(),
            "status" => self.status = u16::try_from(value).ok(),
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
        match field.name() {
            "duration_ms" => self.duration_ms = Some(value),
            name => self.extra.push(format!("{name}={value}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(function: &str, line: &str) -> LogRecord {
        LogRecord {
            seq: 0,
            at_ms: 0,
            function: function.into(),
            version: Some(1),
            request_id: Some("r".into()),
            kind: "stdout",
            line: Some(line.into()),
            status: None,
            duration_ms: None,
            trigger: None,
            level: "info",
        }
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
