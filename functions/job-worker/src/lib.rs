//! `job-worker`: background jobs run as async invocations (`x-faas-invoke: async`, or
//! `faas invocations invoke job-worker`): the caller gets `202` and an invocation id at once, the
//! platform runs the job, retries it on a 5xx, and keeps the result.
//!
//! - `POST /jobs/{name}` with any body: does the job and records a `JobDone` event in stream
//!   `job-{name}`. The event id is derived from the `x-faas-invocation-id` header, which is the
//!   same on every attempt of one invocation, so a job retried after a crash is done once.
//!   Answers `200 {"job", "invocation", "attempt", "position", "started_us"}` (`started_us`: when
//!   the job started, by the wall clock, in microseconds since the Unix epoch: the benchmark's
//!   enqueue → start latency).
//!   - `?fail_until=N`: answers `503` on attempts before N (an upstream that is down a while).
//!   - `?work_ms=M`: works M milliseconds first.
//!   - `?status=S`: answers S without doing anything (a 4xx is not retried; a 5xx is).
//!   - `?trace=1`: also records a `Ran` event (a fresh id) in `runs-{name}` at every run, so
//!     a test can count how often the job actually ran.
//! - The `OUTAGE` variable set to `1` (`faas config set job-worker OUTAGE=1`): every job answers
//!   `503` (the upstream it needs is down); dead letters of that time can be replayed later.
//! - `GET /jobs/tick`: the target of a schedule with `--schedule-route /jobs/tick`: records a
//!   `Ticked` event per planned time (`x-faas-planned-at`), once per tick.
//! - A request without `x-faas-invocation-id` (a plain synchronous call) runs too, with a fresh
//!   id each time.

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent, deterministic_id};
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, http_handler, json};
use serde_json::json as j;

#[http_handler]
fn handle(req: Request) -> impl IntoResponse {
    let started_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = req.uri().path().to_owned();
    if path == "/jobs/tick" {
        let Some(planned) = header("x-faas-planned-at") else {
            return json(StatusCode::BAD_REQUEST, &j!({ "error": "called without x-faas-planned-at" }));
        };
        let schedule = header("x-faas-schedule").unwrap_or_default();
        let event = NewEvent::json("Ticked", &j!({ "schedule": schedule, "planned_at": planned }))
            .expect("JSON")
            .with_id(deterministic_id(schedule.as_bytes(), planned.as_bytes()));
        return match event_store::append("ticks", ExpectedVersion::Any, vec![event]) {
            Ok(outcome) => json(StatusCode::OK, &j!({ "position": outcome.last_position })),
            Err(error) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": error.to_string() })),
        };
    }
    let Some(job) = path.strip_prefix("/jobs/").filter(|j| !j.is_empty() && event_store::is_valid_stream_name(j)) else {
        return json(StatusCode::NOT_FOUND, &j!({ "error": "POST /jobs/{name}" }));
    };
    if let Some(status) = req.query_param("status").and_then(|s| s.parse::<u16>().ok()) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json(status, &j!({ "job": job, "answered": status.as_u16() }));
    }
    let invocation = header("x-faas-invocation-id").unwrap_or_else(event_store::new_id);
    let attempt: u32 = header("x-faas-attempt").and_then(|a| a.parse().ok()).unwrap_or(1);
    if faas_sdk::config::get("OUTAGE").as_deref() == Some("1") {
        return json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": "outage", "attempt": attempt }));
    }
    if req.query_param("trace").is_some() {
        let ran = NewEvent::json("Ran", &j!({ "invocation": invocation, "attempt": attempt })).expect("JSON");
        if let Err(error) = event_store::append(&format!("runs-{job}"), ExpectedVersion::Any, vec![ran]) {
            return json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": error.to_string() }));
        }
    }
    if let Some(fail_until) = req.query_param("fail_until").and_then(|n| n.parse::<u32>().ok())
        && attempt < fail_until
    {
        return json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": "upstream down", "attempt": attempt }));
    }
    if let Some(ms) = req.query_param("work_ms").and_then(|n| n.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    // The same content on every attempt (no attempt number): a retry's append is a duplicate,
    // not a conflict.
    let done = j!({ "job": job, "invocation": invocation, "bytes": req.body().len() });
    let event = NewEvent::json("JobDone", &done).expect("JSON").with_id(deterministic_id(b"job-worker", invocation.as_bytes()));
    match event_store::append(&format!("job-{job}"), ExpectedVersion::Any, vec![event]) {
        Ok(outcome) => json(
            StatusCode::OK,
            &j!({ "job": job, "invocation": invocation, "attempt": attempt, "position": outcome.last_position,
                  "started_us": started_us }),
        ),
        Err(error) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": error.to_string() })),
    }
}
