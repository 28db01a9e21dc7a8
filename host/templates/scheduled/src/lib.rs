//! `{{name}}`: a scheduled job that keeps a history of its runs.
//!
//! Deployed with `--schedule '*/10 * * * * *'` (every 10 seconds, so you see it work at once;
//! a real job takes a crontab line such as `--schedule '0 2 * * *' --schedule-tz Europe/Berlin`),
//! the host calls the `#[scheduled_handler]` once per tick, on one node of the cluster. Each run
//! does the job and records a `JobRan` event in stream `runs`.
//!
//! A tick can run twice: if its node dies mid-run, another node runs it again. The event's id is
//! derived from the tick (`ScheduledTick::event_id`), so the second run records nothing new. Make
//! the job's own effects idempotent the same way.
//!
//! `GET /{{name}}/runs?max=20` lists the latest runs, newest first.

use faas_sdk::event_store::{self, Direction, END, ExpectedVersion, NewEvent};
use faas_sdk::schedule::ScheduledTick;
use faas_sdk::{Request, RequestExt, Response, StatusCode, http_handler, json, scheduled_handler};
use serde_json::json as j;

/// The stream holding one event per run.
const RUNS: &str = "runs";

/// The job itself; returns a summary for the run's record. Replace with the real work: send a
/// digest, expire stale sessions, reconcile with another system...
fn work(tick: &ScheduledTick) -> Result<String, String> {
    Ok(format!(
        "tick planned at {} ran {} ms late",
        tick.planned_at,
        tick.lateness_ms()
    ))
}

/// One tick. An `Err` is recorded as the tick's outcome (`faas schedule {{name}}` shows it) and
/// is not retried: the next tick comes on schedule.
#[scheduled_handler]
fn run(tick: ScheduledTick) -> Result<(), String> {
    let summary = work(&tick)?;
    let record = j!({
        "schedule": tick.schedule,
        "planned_at": tick.planned_at,
        "fired_at": tick.fired_at,
        "attempt": tick.attempt,
        "summary": summary,
    });
    let event = NewEvent::new("JobRan", record.to_string()).with_id(tick.event_id("run"));
    event_store::append(RUNS, ExpectedVersion::Any, vec![event]).map_err(|e| e.to_string())?;
    // stdout goes to the host's log, tagged with the function and version.
    println!("{summary} (attempt {})", tick.attempt);
    Ok(())
}

/// `GET /<route>/runs?max=N`: `{"runs":[...]}`, each `{"schedule","planned_at","fired_at",
/// "attempt","summary"}`.
#[http_handler]
fn serve(req: Request) -> Response {
    if req.method() != "GET" || route(&req) != ["runs"] {
        return json(
            StatusCode::NOT_FOUND,
            &j!({ "error": "try GET /<route>/runs?max=20" }),
        );
    }
    let max = req
        .query_param("max")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 1000);
    // Backward from the end: the newest runs first.
    match event_store::read_stream(RUNS, END, Direction::Backward, max) {
        Ok(events) => {
            let runs: Vec<serde_json::Value> =
                events.iter().filter_map(|e| e.json().ok()).collect();
            json(StatusCode::OK, &j!({ "runs": runs }))
        }
        Err(err) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &j!({ "error": err.to_string() }),
        ),
    }
}

/// The path below the route prefix, as segments: `/{{name}}/runs` → `["runs"]`.
/// (The host passes the whole path; matching below its first segment keeps the code
/// independent of the prefix it is deployed under.)
fn route(req: &Request) -> Vec<&str> {
    req.uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1)
        .collect()
}
