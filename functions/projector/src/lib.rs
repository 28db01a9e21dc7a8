//! A subscription probe for the host's tests.
//!
//! - Event handler: records each delivered event as `seen/{position:020}` = event type, and flags
//!   `out-of-order` if a new event's position is not above the last one it recorded (redeliveries
//!   of already-seen positions are skipped, as at-least-once delivery allows). An event of type
//!   `Poison` makes it return an error; `Trap` makes it panic; `Pending` fails until
//!   `POST /<route>/heal` (a dependency that came back: its parked events replay fine then).
//!   It counts the events handed to it (`delivered`, redeliveries included), so tests can tell
//!   one delivery per event from several.
//! - `POST /<route>/append?stream=S&type=T` appends one event to its own namespace (any route
//!   prefix: several copies can be deployed under other names).
//! - `GET /<route>/seen` returns `{"seen":[[position,type],…],"out_of_order":bool,"attempts":N,"delivered":N}`.

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent, RecordedEvent};
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, event_handler, http_handler, json, kv};
use serde_json::json as j;

#[event_handler]
fn handle(events: Vec<RecordedEvent>) -> Result<(), String> {
    let attempts = kv::get_json::<u64>("attempts").map_err(|e| e.to_string())?.unwrap_or(0);
    kv::set_json("attempts", &(attempts + 1)).map_err(|e| e.to_string())?;
    let healed = kv::get("healed").map_err(|e| e.to_string())?.is_some();
    let fails = |e: &RecordedEvent| {
        matches!(e.event_type.as_str(), "Poison" | "Trap") || (e.event_type == "Pending" && !healed)
    };
    if events.iter().any(fails) {
        // Counted once it gets through; a poison batch is retried one event at a time.
    } else {
        let delivered = kv::get_json::<u64>("delivered").map_err(|e| e.to_string())?.unwrap_or(0);
        kv::set_json("delivered", &(delivered + events.len() as u64)).map_err(|e| e.to_string())?;
    }
    let mut last = kv::get_json::<u64>("last").map_err(|e| e.to_string())?.unwrap_or(0);
    for event in &events {
        match event.event_type.as_str() {
            "Poison" => return Err(format!("poison event at position {}", event.position)),
            "Trap" => panic!("trap event at position {}", event.position),
            "Pending" if !healed => {
                return Err(format!("pending event at position {}: not healed yet", event.position));
            }
            _ => {}
        }
        if event.position <= last {
            let key = format!("seen/{:020}", event.position);
            if kv::get(&key).map_err(|e| e.to_string())?.is_none() {
                kv::set("out-of-order", b"1").map_err(|e| e.to_string())?;
            }
            continue;
        }
        kv::set(&format!("seen/{:020}", event.position), event.event_type.as_bytes()).map_err(|e| e.to_string())?;
        last = event.position;
        kv::set_json("last", &last).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    match req.uri().path().rsplit('/').next().unwrap_or_default() {
        "append" => {
            let stream = req.query_param("stream").unwrap_or_else(|| "s-1".into());
            let event_type = req.query_param("type").unwrap_or_else(|| "Noted".into());
            let event = NewEvent::new(&event_type, b"{}".to_vec());
            match event_store::append(&stream, ExpectedVersion::Any, vec![event]) {
                Ok(outcome) => json(StatusCode::OK, &j!({ "position": outcome.last_position })),
                Err(error) => json(StatusCode::OK, &j!({ "error": error.to_string() })),
            }
        }
        "heal" => match kv::set("healed", b"1") {
            Ok(()) => json(StatusCode::OK, &j!({ "healed": true })),
            Err(error) => json(StatusCode::INTERNAL_SERVER_ERROR, &j!({ "error": error.to_string() })),
        },
        "seen" => {
            let entries = match kv::list_all("seen/") {
                Ok(entries) => entries,
                Err(error) => return json(StatusCode::INTERNAL_SERVER_ERROR, &j!({ "error": error.to_string() })),
            };
            let seen: Vec<_> = entries
                .iter()
                .map(|(k, v)| {
                    let position: u64 = k.trim_start_matches("seen/").parse().unwrap_or(0);
                    j!([position, String::from_utf8_lossy(v)])
                })
                .collect();
            let out_of_order = matches!(kv::get("out-of-order"), Ok(Some(_)));
            let attempts = kv::get_json::<u64>("attempts").ok().flatten().unwrap_or(0);
            let delivered = kv::get_json::<u64>("delivered").ok().flatten().unwrap_or(0);
            json(
                StatusCode::OK,
                &j!({ "seen": seen, "out_of_order": out_of_order, "attempts": attempts, "delivered": delivered }),
            )
        }
        _ => json(StatusCode::NOT_FOUND, &j!({ "error": "not found" })),
    }
}
