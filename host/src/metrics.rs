//! [`Metrics`]: the Prometheus series the platform exports on the admin listener's `/metrics`.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every series, registered in one private registry (not the global default, so tests can run
/// several servers in one process). Shared: a clone is one reference count, not one per series
/// (the invoker clones it per request).
#[derive(Clone)]
pub struct Metrics(Arc<Series>);

impl std::ops::Deref for Metrics {
    type Target = Series;

    fn deref(&self) -> &Series {
        &self.0
    }
}

/// The series themselves.
pub struct Series {
    registry: Registry,
    /// `faas_invocations_total{function,version,status}`; status is the HTTP status returned.
    pub invocations: IntCounterVec,
    /// `faas_invocation_duration_seconds{function}`: from routing to response headers.
    pub duration: HistogramVec,
    /// `faas_active_instances{function}`: instances alive right now.
    pub active_instances: IntGaugeVec,
    /// `faas_instantiation_duration_seconds{function}`: creating the instance from its `InstancePre`.
    pub instantiation: HistogramVec,
    /// `faas_deployments_total{function,outcome}`.
    pub deployments: IntCounterVec,
    /// `faas_sagas_total{name,status}`: sagas entering compensating, completed, compensated, stuck.
    pub sagas: IntCounterVec,
    /// `faas_saga_step_attempts_total{function,kind,outcome}`: outcome succeeded, refused or failed.
    pub saga_steps: IntCounterVec,
    /// `faas_transactions_total{outcome}`: two-phase-commit decisions, committed or aborted.
    pub transactions: IntCounterVec,
    /// `faas_kafka_records_total{function,topic,outcome}`: outcome handled, failed (an attempt),
    /// dead_lettered, or dropped (the dead-letter topic refused even the record's metadata).
    pub kafka_records: IntCounterVec,
    /// `faas_kafka_batch_duration_seconds{function}`: handler time of batches that succeeded.
    pub kafka_batch_duration: HistogramVec,
    /// `faas_kafka_consumer_lag{function,topic,partition}`: records behind the partition's end,
    /// for the partitions this node owns.
    pub kafka_lag: IntGaugeVec,
    /// `faas_kafka_published_total{function,outcome}`: `kafka-out` publishes, ok or error.
    pub kafka_published: IntCounterVec,
    /// `faas_kafka_dead_letter_blocked{function}`: partitions waiting because their dead-letter
    /// topic refuses records (missing, invalid, not authorized): a configuration error.
    pub kafka_dead_letter_blocked: IntGaugeVec,
    /// `faas_kafka_connected`: 1 while a broker is reachable (0 only after a grace period).
    pub kafka_connected: IntGauge,
    /// `faas_outbound_requests_total{function,origin,outcome}`: guests' outgoing HTTP requests;
    /// outcome is the response status, or denied, limited, failed, timeout.
    pub outbound_requests: IntCounterVec,
    /// `faas_outbound_duration_seconds{function}`: from sending to the response's headers.
    pub outbound_duration: HistogramVec,
    /// `faas_leases_owned`: subscription and outbox leases this node holds.
    pub leases_owned: IntGauge,
    /// `faas_async_invocations_total{function,outcome}`: async attempts: succeeded, failed,
    /// retried, dead, busy.
    pub async_invocations: IntCounterVec,
    /// `faas_async_start_delay_seconds{function}`: from when an attempt was due (queued, or its
    /// retry time) to when it started.
    pub async_start_delay: HistogramVec,
    /// `faas_async_callbacks_total{function,outcome}`: result callbacks: delivered, retried, failed.
    pub async_callbacks: IntCounterVec,
    /// `faas_schedule_ticks_total{function,schedule,outcome}`: succeeded, failed, skipped.
    pub schedule_ticks: IntCounterVec,
    /// `faas_schedule_delay_seconds{function,schedule}`: from a tick's planned time to its start.
    pub schedule_delay: HistogramVec,
    /// `faas_schedule_duration_seconds{function,schedule}`: how long ticks ran.
    pub schedule_duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        Self(Arc::new(Series::new()))
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }

    /// The per-invocation series of one function, looked up once (a labelled lookup hashes and
    /// locks on every call).
    pub fn function(&self, name: &str) -> FunctionMetrics {
        FunctionMetrics {
            duration: self.duration.with_label_values(&[name]),
            active_instances: self.active_instances.with_label_values(&[name]),
            instantiation: self.instantiation.with_label_values(&[name]),
        }
    }
}

/// `faas_invocation_duration_seconds`, `faas_active_instances` and
/// `faas_instantiation_duration_seconds` of one function.
#[derive(Clone)]
pub struct FunctionMetrics {
    pub duration: Histogram,
    pub active_instances: IntGauge,
    pub instantiation: Histogram,
}

impl Series {
    fn new() -> Self {
        let registry = Registry::new();
        let invocations = IntCounterVec::new(
            Opts::new("faas_invocations_total", "Function invocations by outcome (HTTP status)."),
            &["function", "version", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("faas_invocation_duration_seconds", "Time from routing to response headers.").buckets(
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ],
            ),
            &["function"],
        )
        .expect("valid metric");
        let active_instances =
            IntGaugeVec::new(Opts::new("faas_active_instances", "Instances running right now."), &["function"])
                .expect("valid metric");
        let instantiation = HistogramVec::new(
            HistogramOpts::new("faas_instantiation_duration_seconds", "Time to instantiate a component.")
                .buckets(vec![0.000_005, 0.00001, 0.000_025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01]),
            &["function"],
        )
        .expect("valid metric");
        let deployments = IntCounterVec::new(
            Opts::new("faas_deployments_total", "Deploy attempts by outcome."),
            &["function", "outcome"],
        )
        .expect("valid metric");
        let sagas = IntCounterVec::new(
            Opts::new("faas_sagas_total", "Saga status changes: compensating, completed, compensated, stuck."),
            &["name", "status"],
        )
        .expect("valid metric");
        let saga_steps = IntCounterVec::new(
            Opts::new("faas_saga_step_attempts_total", "Saga step attempts by outcome: succeeded, refused, failed."),
            &["function", "kind", "outcome"],
        )
        .expect("valid metric");
        let transactions = IntCounterVec::new(
            Opts::new("faas_transactions_total", "Two-phase-commit decisions: committed or aborted."),
            &["outcome"],
        )
        .expect("valid metric");
        let kafka_records = IntCounterVec::new(
            Opts::new(
                "faas_kafka_records_total",
                "Kafka records by outcome: handled, failed (attempts), dead_lettered, dropped.",
            ),
            &["function", "topic", "outcome"],
        )
        .expect("valid metric");
        let kafka_batch_duration = HistogramVec::new(
            HistogramOpts::new("faas_kafka_batch_duration_seconds", "Handler time of Kafka batches that succeeded.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["function"],
        )
        .expect("valid metric");
        let kafka_lag = IntGaugeVec::new(
            Opts::new("faas_kafka_consumer_lag", "Records behind the end of each partition this node owns."),
            &["function", "topic", "partition"],
        )
        .expect("valid metric");
        let kafka_published = IntCounterVec::new(
            Opts::new("faas_kafka_published_total", "Records published by functions, by outcome."),
            &["function", "outcome"],
        )
        .expect("valid metric");
        let kafka_dead_letter_blocked = IntGaugeVec::new(
            Opts::new(
                "faas_kafka_dead_letter_blocked",
                "Partitions waiting for a dead-letter topic that refuses records (a configuration error).",
            ),
            &["function"],
        )
        .expect("valid metric");
        let kafka_connected =
            IntGauge::new("faas_kafka_connected", "1 while a Kafka broker is reachable.").expect("valid metric");
        let outbound_requests = IntCounterVec::new(
            Opts::new("faas_outbound_requests_total", "Outgoing HTTP requests of functions, by origin and outcome."),
            &["function", "origin", "outcome"],
        )
        .expect("valid metric");
        let outbound_duration = HistogramVec::new(
            HistogramOpts::new("faas_outbound_duration_seconds", "Outgoing HTTP requests: time to response headers.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["function"],
        )
        .expect("valid metric");
        let leases_owned = IntGauge::new("faas_leases_owned", "Subscription and outbox leases this node holds.")
            .expect("valid metric");
        let async_invocations = IntCounterVec::new(
            Opts::new(
                "faas_async_invocations_total",
                "Async invocation attempts by outcome: succeeded, failed, retried, dead, busy.",
            ),
            &["function", "outcome"],
        )
        .expect("valid metric");
        let delays = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];
        let async_start_delay = HistogramVec::new(
            HistogramOpts::new("faas_async_start_delay_seconds", "Async invocations: from due to started.")
                .buckets(delays.clone()),
            &["function"],
        )
        .expect("valid metric");
        let async_callbacks = IntCounterVec::new(
            Opts::new("faas_async_callbacks_total", "Async result callbacks by outcome: delivered, retried, failed."),
            &["function", "outcome"],
        )
        .expect("valid metric");
        let schedule_ticks = IntCounterVec::new(
            Opts::new("faas_schedule_ticks_total", "Schedule ticks by outcome: succeeded, failed, skipped."),
            &["function", "schedule", "outcome"],
        )
        .expect("valid metric");
        let schedule_delay = HistogramVec::new(
            HistogramOpts::new("faas_schedule_delay_seconds", "Schedule ticks: from planned time to start.")
                .buckets(delays),
            &["function", "schedule"],
        )
        .expect("valid metric");
        let schedule_duration = HistogramVec::new(
            HistogramOpts::new("faas_schedule_duration_seconds", "Schedule ticks: run time.")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0]),
            &["function", "schedule"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(invocations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(active_instances.clone()),
            Box::new(instantiation.clone()),
            Box::new(deployments.clone()),
            Box::new(sagas.clone()),
            Box::new(saga_steps.clone()),
            Box::new(transactions.clone()),
            Box::new(kafka_records.clone()),
            Box::new(kafka_batch_duration.clone()),
            Box::new(kafka_lag.clone()),
            Box::new(kafka_published.clone()),
            Box::new(kafka_dead_letter_blocked.clone()),
            Box::new(kafka_connected.clone()),
            Box::new(outbound_requests.clone()),
            Box::new(outbound_duration.clone()),
            Box::new(leases_owned.clone()),
            Box::new(async_invocations.clone()),
            Box::new(async_start_delay.clone()),
            Box::new(async_callbacks.clone()),
            Box::new(schedule_ticks.clone()),
            Box::new(schedule_delay.clone()),
            Box::new(schedule_duration.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self {
            registry,
            invocations,
            duration,
            active_instances,
            instantiation,
            deployments,
            sagas,
            saga_steps,
            transactions,
            kafka_records,
            kafka_batch_duration,
            kafka_lag,
            kafka_published,
            kafka_dead_letter_blocked,
            kafka_connected,
            outbound_requests,
            outbound_duration,
            leases_owned,
            async_invocations,
            async_start_delay,
            async_callbacks,
            schedule_ticks,
            schedule_delay,
            schedule_duration,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
