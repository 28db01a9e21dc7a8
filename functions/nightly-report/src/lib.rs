//! `nightly-report`: a scheduled job, the kind a cron line runs. Deploy it with a schedule:
//!
//! ```text
//! faas deploy nightly-report nightly_report.wasm --schedule '0 2 * * *' --schedule-tz Europe/Berlin
//! ```
//!
//! Each tick "generates the report" (here: works for the `work_ms` variable's milliseconds, a
//! stand-in for the real job) and records a `ReportGenerated` event in its `reports` stream.
//! The event's id comes from the tick (`ScheduledTick::event_id`), so a tick that runs twice
//! (its node died mid-run and another node ran it again) still records one report: the second
//! append is a duplicate. The event says when the tick was planned, when it ran, on which
//! attempt, so the history is in the event store: `faas` API
//! `GET /v1/namespaces/nightly-report/streams/reports`.

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent};
use faas_sdk::schedule::ScheduledTick;
use faas_sdk::scheduled_handler;

#[scheduled_handler]
fn generate(tick: ScheduledTick) -> Result<(), String> {
    let work_ms: u64 = faas_sdk::config::get("work_ms").and_then(|v| v.parse().ok()).unwrap_or(0);
    if work_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(work_ms));
    }
    let report = serde_json::json!({
        "schedule": tick.schedule,
        "planned_at": tick.planned_at,
        "fired_at": tick.fired_at,
        "attempt": tick.attempt,
    });
    let event = NewEvent::json("ReportGenerated", &report).map_err(|e| e.to_string())?.with_id(tick.event_id("report"));
    event_store::append("reports", ExpectedVersion::Any, vec![event]).map_err(|e| e.to_string())?;
    println!("report for the tick planned at {} (attempt {})", tick.planned_at, tick.attempt);
    Ok(())
}
