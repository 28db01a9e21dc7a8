//! [`Scheduler`]: cron schedules. Every node watches every active function's schedules and
//! wakes at the next planned tick; a tick runs on the node whose insert of its row
//! (`store::schedules`) succeeded, so it fires once across all nodes. The row is the tick's
//! claim: `running` with a lease (the function's timeout and a margin). A node that dies mid-run
//! leaves it `running`; once the lease is over, any node claims it again (epoch + 1) and runs the
//! tick again. A node restarting with the same id frees its own at once.
//!
//! Missed ticks: after a time without any node (or with all of them busy past a tick), the ticks
//! since the schedule's newest recorded one are due at once. The schedule's `catch_up` decides:
//! `none` runs only a tick that is still on time ([`ON_TIME`]), `last` the newest one, `all`
//! every one (at most [`MAX_CATCH_UP`]). The newest skipped tick is recorded `skipped`, so the
//! history shows the gap.

use super::Trigger;
use crate::bindings::scheduled::ScheduledTick;
use crate::metrics::Metrics;
use crate::model::schedule::{CatchUp, MAX_CATCH_UP, Schedule, ScheduleSpec};
use crate::registry::Registry;
use crate::runtime::function::LoadedFunction;
use crate::runtime::invoker::{BusyWait, InvokeError, Invoker, record_invocation};
use crate::store::schedules::{ScheduleStore, TickRecord};
use crate::store::{StoreError, format_time, now_ms};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::Instrument as _;

/// A tick this late is still on time for `catch_up: none`.
pub const ON_TIME: Duration = Duration::from_secs(2);
/// Added to the function's timeout for a tick's lease.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The longest the scheduler sleeps: it also looks for abandoned ticks this often.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How long a tick waits for a busy function before it counts as failed.
const BUSY_PATIENCE: Duration = Duration::from_secs(10);

pub struct Scheduler {
    store: Arc<dyn ScheduleStore>,
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    metrics: Metrics,
    node: String,
    /// The newest tick known per (function, schedule key): saves a query until the next is due.
    cursors: Mutex<HashMap<(String, String), i64>>,
    /// Ticks running on this node.
    running: tokio::sync::Semaphore,
    wake: Notify,
    stopping: watch::Sender<bool>,
}

/// The most ticks running at once on one node.
const MAX_RUNNING: u32 = 1024;

impl Scheduler {
    pub fn new(
        store: Arc<dyn ScheduleStore>,
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        metrics: Metrics,
        node: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            registry,
            invoker,
            metrics,
            node,
            cursors: Mutex::new(HashMap::new()),
            running: tokio::sync::Semaphore::new(MAX_RUNNING as usize),
            wake: Notify::new(),
            stopping: watch::Sender::new(false),
        })
    }

    /// Frees the ticks an earlier process with this node id was running (they run again at
    /// once), then starts the loop.
    pub async fn start(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let released = self.store.release_own_ticks(&self.node).await?;
        if released > 0 {
            tracing::info!(ticks = released, "schedule ticks this node was running will run again");
        }
        Ok(tokio::spawn(self.clone().run()))
    }

    pub fn store(&self) -> &Arc<dyn ScheduleStore> {
        &self.store
    }

    fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    async fn run(self: Arc<Self>) {
        let mut last_purge = None::<tokio::time::Instant>;
        while !self.stopping() {
            let now = now_ms();
            let mut wake_at = now + MAX_SLEEP.as_millis() as i64;
            for function in self.registry.all_active() {
                for spec in &function.spec.triggers.schedules {
                    // Validated at deploy; a parse cannot fail here unless the crate changed.
                    let Ok(schedule) = spec.parse() else { continue };
                    match self.due(&function, spec, &schedule, now).await {
                        Ok(Some(next)) => wake_at = wake_at.min(next),
                        Ok(None) => {}
                        Err(error) => tracing::error!(function = %function.name, schedule = %schedule.key, %error,
                            "schedule pass failed; retrying"),
                    }
                }
            }
            self.reclaim(now).await;
            if last_purge.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                last_purge = Some(tokio::time::Instant::now());
                if let Err(error) = self.store.purge_ticks(now - 24 * 3600 * 1000).await {
                    tracing::error!(%error, "purging old schedule ticks failed");
                }
            }
            let sleep = Duration::from_millis((wake_at - now_ms()).clamp(5, MAX_SLEEP.as_millis() as i64) as u64);
            let mut stopping = self.stopping.subscribe();
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
                _ = stopping.wait_for(|stop| *stop) => {}
            }
        }
    }

    /// Fires what is due of one schedule; returns when its next tick is.
    async fn due(
        self: &Arc<Self>,
        function: &Arc<LoadedFunction>,
        spec: &ScheduleSpec,
        schedule: &Schedule,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let key = (function.name.to_string(), schedule.key.clone());
        let cached = self.cursors.lock().get(&key).copied();
        let cursor = match cached {
            Some(cursor) => cursor,
            // First sight on this node: the recorded history, or (a new schedule) from now on.
            None => self.store.last_tick(&key.0, &key.1).await?.unwrap_or(now),
        };
        self.cursors.lock().insert(key.clone(), cursor);
        match schedule.next_after(cursor) {
            Some(next) if next > now => return Ok(Some(next)),
            None => return Ok(None),
            Some(_) => {}
        }
        // Due here: another node may have fired it already.
        let cursor = self.store.last_tick(&key.0, &key.1).await?.unwrap_or(cursor).max(cursor);
        let (due, dropped) = schedule.due(cursor, now, MAX_CATCH_UP);
        let Some(&newest) = due.last() else {
            self.cursors.lock().insert(key, cursor);
            return Ok(schedule.next_after(cursor));
        };
        let on_time = now - newest <= ON_TIME.as_millis() as i64;
        let run: Vec<i64> = match spec.catch_up {
            CatchUp::None if on_time => vec![newest],
            CatchUp::None => vec![],
            CatchUp::Last => vec![newest],
            CatchUp::All => due.clone(),
        };
        let skipped = due.len() - run.len() + dropped;
        let lease_ms = (function.spec.limits.timeout() + LEASE_MARGIN).as_millis() as i64;
        if skipped > 0 {
            // The newest skipped tick, for the record (and, when nothing runs, as the cursor).
            let latest_skipped = due.iter().rev().find(|t| !run.contains(t)).copied().unwrap_or(newest);
            let reason = format!("{skipped} missed tick(s) skipped (catch-up {:?})", spec.catch_up).to_lowercase();
            let tick = TickRecord {
                error: Some(reason.clone()),
                ..self.tick_row(function, schedule, latest_skipped, "skipped", lease_ms)
            };
            if self.store.insert_tick(&tick, now).await? {
                tracing::warn!(function = %function.name, schedule = %schedule.key, skipped,
                    newest = %format_time(latest_skipped), "{reason}");
            }
            self.metrics
                .schedule_ticks
                .with_label_values(&[&*function.name, &schedule.key, "skipped"])
                .inc_by(skipped as u64);
        }
        for planned in run {
            let tick = self.tick_row(function, schedule, planned, "running", lease_ms);
            if self.store.insert_tick(&tick, now).await? {
                self.spawn(function.clone(), spec.clone(), TickRecord { attempts: 1, ..tick });
            }
        }
        self.cursors.lock().insert(key, newest);
        Ok(schedule.next_after(newest))
    }

    fn tick_row(
        &self,
        function: &LoadedFunction,
        schedule: &Schedule,
        planned_ms: i64,
        status: &str,
        lease_ms: i64,
    ) -> TickRecord {
        TickRecord {
            function: function.name.to_string(),
            schedule: schedule.key.clone(),
            planned_ms,
            status: status.to_owned(),
            owner: self.node.clone(),
            epoch: 1,
            attempts: 0,
            lease_ms,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
        }
    }

    /// Claims and runs ticks left running by a node that stopped answering.
    async fn reclaim(self: &Arc<Self>, now: i64) {
        let claimed = match self.store.reclaim_ticks(&self.node, now, 16).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(%error, "looking for abandoned schedule ticks failed");
                return;
            }
        };
        for tick in claimed {
            let Some(function) = self.registry.active(&tick.function) else { continue };
            let Some(spec) = function.spec.triggers.schedules.iter().find(|s| s.key() == tick.schedule).cloned() else {
                // The schedule was removed by a deploy meanwhile: record that instead of running.
                let _ = self.store.finish_tick(&tick, "failed", Some("the schedule was removed"), now_ms()).await;
                continue;
            };
            tracing::warn!(function = %tick.function, schedule = %tick.schedule, planned = %format_time(tick.planned_ms),
                attempt = tick.attempts, "running a schedule tick again: the node running it stopped answering");
            self.spawn(function, spec, tick);
        }
    }

    fn spawn(self: &Arc<Self>, function: Arc<LoadedFunction>, spec: ScheduleSpec, tick: TickRecord) {
        let Ok(permit) = self.running.try_acquire() else {
            tracing::error!(function = %function.name, "too many schedule ticks running; this one's lease will expire and it runs again");
            return;
        };
        permit.forget();
        let scheduler = self.clone();
        tokio::spawn(async move {
            scheduler.execute(&function, &spec, tick).await;
            scheduler.running.add_permits(1);
        });
    }

    async fn execute(&self, function: &Arc<LoadedFunction>, spec: &ScheduleSpec, tick: TickRecord) {
        let started = now_ms();
        let labels = [&*function.name, tick.schedule.as_str()];
        self.metrics
            .schedule_delay
            .with_label_values(&labels)
            .observe((started - tick.planned_ms).max(0) as f64 / 1000.0);
        let result = self.call(function, spec, &tick, started).await;
        let elapsed = (now_ms() - started).max(0) as f64 / 1000.0;
        self.metrics.schedule_duration.with_label_values(&labels).observe(elapsed);
        let (status, error) = match &result {
            Ok(()) => ("succeeded", None),
            Err(error) => ("failed", Some(error.as_str())),
        };
        self.metrics.schedule_ticks.with_label_values(&[labels[0], labels[1], status]).inc();
        match error {
            None => tracing::info!(function = %function.name, schedule = %tick.schedule,
                planned = %format_time(tick.planned_ms), attempt = tick.attempts, "schedule tick ran"),
            Some(error) => tracing::warn!(function = %function.name, schedule = %tick.schedule,
                planned = %format_time(tick.planned_ms), attempt = tick.attempts, error, "schedule tick failed"),
        }
        match self.store.finish_tick(&tick, status, error, now_ms()).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(function = %function.name, schedule = %tick.schedule,
                "schedule tick outcome not recorded: another node took it over meanwhile"),
            Err(error) => tracing::error!(function = %function.name, %error, "recording a schedule tick failed"),
        }
    }

    /// One run of a tick: the `scheduled-handler` export, or `GET` on the schedule's route.
    async fn call(
        &self,
        function: &Arc<LoadedFunction>,
        spec: &ScheduleSpec,
        tick: &TickRecord,
        started: i64,
    ) -> Result<(), String> {
        let id = format!("{}@{}#{}", tick.schedule, tick.planned_ms, tick.attempts);
        let mut busy = BusyWait::default();
        let deadline = tokio::time::Instant::now() + BUSY_PATIENCE;
        loop {
            let result = match &spec.route {
                None => {
                    let wit = ScheduledTick {
                        schedule: tick.schedule.clone(),
                        planned_at: tick.planned_ms as u64,
                        fired_at: started as u64,
                        attempt: tick.attempts,
                    };
                    self.invoker
                        .handle_tick(function, &wit, &id)
                        .await
                        .map(|r| r.map_err(|e| format!("the handler failed: {e}")))
                }
                Some(route) => self.call_route(function, route, tick).await,
            };
            match result {
                Ok(outcome) => return outcome,
                Err(error) if tokio::time::Instant::now() < deadline && busy.again(&error).await => continue,
                Err(error) => return Err(error.to_string()),
            }
        }
    }

    async fn call_route(
        &self,
        function: &Arc<LoadedFunction>,
        route: &str,
        tick: &TickRecord,
    ) -> Result<Result<(), String>, InvokeError> {
        let request = http::Request::get(route)
            // `wasi:http` wants an authority.
            .header(http::header::HOST, "localhost")
            .header("x-faas-schedule", &tick.schedule)
            .header("x-faas-planned-at", format_time(tick.planned_ms))
            .header("x-faas-attempt", tick.attempts.to_string())
            .body(axum::body::Body::empty())
            .map_err(|e| InvokeError::BadRequest(e.to_string()))?;
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let span = crate::telemetry::invocation(&function.name, function.version, &request_id);
        let started = std::time::Instant::now();
        let response = match self.invoker.serve_http(function, request, &request_id).instrument(span).await {
            Ok(response) => response,
            // Too busy to take it: it never ran, and the tick offers it again.
            Err(error @ (InvokeError::Overloaded | InvokeError::QueueTimeout)) => return Err(error),
            Err(error) => {
                record_invocation(function, &request_id, "schedule", started, 500, Some(&error.to_string()));
                return Err(error);
            }
        };
        let status = response.status();
        // Read to the end: the instance runs until its body is done.
        let _ = response.into_body().collect().await;
        let answer = if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("GET {route} answered {status}"))
        };
        record_invocation(
            function,
            &request_id,
            "schedule",
            started,
            status.as_u16(),
            answer.as_ref().err().map(String::as_str),
        );
        Ok(answer)
    }

    /// For `GET /v1/functions/{name}/schedule`: the schedules, their next ticks and history.
    pub async fn report(&self, function: &LoadedFunction) -> Result<serde_json::Value, StoreError> {
        let history = self.store.ticks(&function.name, 500).await?;
        let now = now_ms();
        let schedules: Vec<serde_json::Value> = function
            .spec
            .triggers
            .schedules
            .iter()
            .map(|spec| {
                let key = spec.key();
                let next = spec.parse().map(|s| s.upcoming(now, 5)).unwrap_or_default();
                let runs: Vec<serde_json::Value> = history
                    .iter()
                    .filter(|t| t.schedule == key)
                    .take(20)
                    .map(|t| {
                        serde_json::json!({
                            "planned_at": format_time(t.planned_ms),
                            "status": t.status,
                            "attempts": t.attempts,
                            "node": t.owner,
                            "started_at": t.started_at_ms.map(format_time),
                            "finished_at": t.finished_at_ms.map(format_time),
                            "duration_ms": match (t.status.as_str(), t.started_at_ms, t.finished_at_ms) {
                                ("skipped", _, _) => None,
                                (_, Some(s), Some(f)) => Some(f - s),
                                _ => None,
                            },
                            "error": t.error,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "schedule": key,
                    "cron": spec.cron,
                    "tz": spec.tz.as_deref().unwrap_or("UTC"),
                    "route": spec.route,
                    "catch_up": spec.catch_up,
                    "next": next.into_iter().map(format_time).collect::<Vec<_>>(),
                    "runs": runs,
                })
            })
            .collect();
        Ok(serde_json::json!({ "function": &*function.name, "schedules": schedules }))
    }
}

#[async_trait::async_trait]
impl Trigger for Scheduler {
    fn name(&self) -> &'static str {
        "schedules"
    }

    /// A deploy may add or change schedules: look again now.
    async fn reconcile(self: Arc<Self>) {
        self.wake.notify_one();
    }

    /// Stops firing; ticks in hand finish (each bounded by its function's timeout).
    async fn drain(self: Arc<Self>) {
        self.stopping.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.running.acquire_many(MAX_RUNNING)).await;
    }
}
