//! [`KafkaHealth`]: whether this node reaches the brokers, as `/healthz` and
//! `faas_kafka_connected` report it.
//!
//! Every client (the producer, each trigger's consumer) reports its own view from librdkafka's
//! statistics and errors; the node counts as connected while any client has a connection to a
//! broker it learned from metadata, and as disconnected only once no client has had one for
//! [`DISCONNECT_GRACE`] while some client was trying. The state does not follow single
//! connections: after a broker restart, one client reconnects before another, a connection is
//! dropped and redone while the broker finishes starting, and each client reports every
//! `statistics.interval.ms` on its own schedule. Following those made the reported state flip
//! for milliseconds at a time, dozens of times, and operators alert on it.

use crate::metrics::Metrics;
use parking_lot::Mutex;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long no client may reach a broker, while one is trying, before the node reports itself
/// disconnected: longer than a reconnect (librdkafka backs off at most
/// `reconnect.backoff.max.ms`, 1 s here) and than one statistics interval (2 s), so only an
/// outage shows, not a dropped connection that comes back.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(3);

/// A client's own view of its brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// A connection to a broker known from metadata is up.
    Up,
    /// No connection is up and the client is trying to get one (or librdkafka said all its
    /// brokers are down).
    Failing,
    /// No connection and none wanted: librdkafka (sparse connections) connects only on demand,
    /// so an idle producer whose connection the broker closed says nothing about reachability.
    Idle,
}

/// Names one client in [`KafkaHealth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(u64);

/// The node's connectivity, from its clients' views (kept apart from the clock for the tests).
#[derive(Debug, Default)]
struct Connectivity {
    views: HashMap<ClientId, View>,
    next_id: u64,
    /// When the last client stopped reaching a broker (while another was failing).
    failing_since: Option<Instant>,
    /// What the node reports.
    connected: bool,
}

impl Connectivity {
    fn register(&mut self) -> ClientId {
        self.next_id += 1;
        ClientId(self.next_id)
    }

    /// Applies a client's view; returns the reported state when it changed.
    fn update(&mut self, client: ClientId, view: Option<View>, now: Instant) -> Option<bool> {
        match view {
            Some(view) => self.views.insert(client, view),
            None => self.views.remove(&client),
        };
        self.evaluate(now)
    }

    fn evaluate(&mut self, now: Instant) -> Option<bool> {
        let connected = if self.views.values().any(|v| *v == View::Up) {
            self.failing_since = None;
            true
        } else if self.views.values().any(|v| *v == View::Failing) {
            let since = *self.failing_since.get_or_insert(now);
            self.connected && now.duration_since(since) < DISCONNECT_GRACE
        } else {
            // Nobody is trying: no news either way.
            self.connected
        };
        (connected != self.connected).then(|| {
            self.connected = connected;
            connected
        })
    }
}

/// Whether this node reaches the brokers, and the last error it saw.
pub struct KafkaHealth {
    metrics: Metrics,
    state: Mutex<Connectivity>,
    last_error: Mutex<Option<String>>,
    /// When an error was last logged: during an outage librdkafka reports one every few
    /// hundred milliseconds per client.
    last_logged: Mutex<Option<Instant>>,
}

impl KafkaHealth {
    pub fn new(metrics: Metrics) -> Self {
        metrics.kafka_connected.set(0);
        Self { metrics, state: Mutex::default(), last_error: Mutex::default(), last_logged: Mutex::default() }
    }

    /// A new client, reporting nothing until its first statistics.
    pub fn register(&self) -> ClientId {
        self.state.lock().register()
    }

    /// A closed client no longer counts.
    pub fn deregister(&self, client: ClientId) {
        self.apply(client, None);
    }

    pub fn connected(&self) -> bool {
        self.refresh();
        self.state.lock().connected
    }

    pub fn status(&self) -> serde_json::Value {
        let last_error = self.last_error.lock().clone();
        serde_json::json!({ "connected": self.connected(), "last_error": last_error })
    }

    /// Re-evaluates the grace period (a disconnect shows once it has lasted long enough).
    pub fn refresh(&self) {
        let changed = self.state.lock().evaluate(Instant::now());
        self.report(changed);
    }

    /// A client's statistics: its view of its broker connections.
    pub fn observe(&self, client: ClientId, stats: &Statistics) {
        let known = || stats.brokers.values().filter(|b| b.source == "learned" || b.source == "configured");
        let view = if known().any(|b| b.nodeid >= 0 && b.state == "UP") {
            View::Up
        } else if known().any(|b| b.state != "INIT") {
            View::Failing
        } else {
            View::Idle
        };
        self.apply(client, Some(view));
    }

    /// Records a client's error; true when it should be logged (none logged in the last 10 s).
    pub fn error(&self, client: ClientId, error: &KafkaError, reason: &str) -> bool {
        let text = format!("{error}: {reason}");
        let log = {
            let mut last = self.last_logged.lock();
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            // Until its next statistics say otherwise.
            self.apply(client, Some(View::Failing));
        }
        *self.last_error.lock() = Some(text);
        log
    }

    fn apply(&self, client: ClientId, view: Option<View>) {
        let changed = self.state.lock().update(client, view, Instant::now());
        self.report(changed);
    }

    fn report(&self, changed: Option<bool>) {
        match changed {
            Some(true) => tracing::info!("Kafka brokers reachable"),
            Some(false) => tracing::warn!("no Kafka broker reachable for {DISCONNECT_GRACE:?}; retrying"),
            None => return,
        }
        let connected = self.state.lock().connected;
        self.metrics.kafka_connected.set(i64::from(connected));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn connected_once_a_client_is_up_and_not_before() {
        let (mut c, t) = (Connectivity::default(), Instant::now());
        let (a, b) = (c.register(), c.register());
        assert_eq!(c.update(a, Some(View::Failing), t), None, "never connected yet");
        assert_eq!(c.update(b, Some(View::Up), at(t, 10)), Some(true));
        assert!(c.connected);
    }

    #[test]
    fn dips_shorter_than_the_grace_period_do_not_show() {
        let (mut c, t) = (Connectivity::default(), Instant::now());
        let (a, b) = (c.register(), c.register());
        c.update(a, Some(View::Up), t);
        // One client reconnects after another; a connection drops and comes back.
        assert_eq!(c.update(a, Some(View::Failing), at(t, 100)), None);
        assert_eq!(c.update(b, Some(View::Failing), at(t, 110)), None);
        assert_eq!(c.evaluate(at(t, 2900)), None);
        assert_eq!(c.update(b, Some(View::Up), at(t, 2950)), None);
        assert_eq!(c.update(a, Some(View::Failing), at(t, 5000)), None, "b is up");
        assert!(c.connected);
    }

    #[test]
    fn an_outage_shows_after_the_grace_period() {
        let (mut c, t) = (Connectivity::default(), Instant::now());
        let a = c.register();
        c.update(a, Some(View::Up), t);
        assert_eq!(c.update(a, Some(View::Failing), at(t, 1000)), None);
        assert_eq!(c.evaluate(at(t, 3999)), None);
        assert_eq!(c.evaluate(at(t, 4000)), Some(false));
        assert_eq!(c.update(a, Some(View::Up), at(t, 9000)), Some(true));
    }

    #[test]
    fn idle_and_closed_clients_say_nothing() {
        let (mut c, t) = (Connectivity::default(), Instant::now());
        let (a, b) = (c.register(), c.register());
        c.update(a, Some(View::Up), t);
        c.update(b, Some(View::Up), t);
        assert_eq!(c.update(a, Some(View::Idle), at(t, 1)), None);
        assert_eq!(c.update(b, None, at(t, 2)), None);
        assert_eq!(c.evaluate(at(t, 60_000)), None, "no client is failing");
        assert!(c.connected);
    }
}
