//! Native targets only: an in-memory event store and kv store, one per thread, behind
//! [`event_store`](crate::event_store) and [`kv`](crate::kv), so that functions can unit-test
//! their use of the platform with plain `cargo test`. See [`crate::testing`].
//!
//! It models what the host documents (and checks the same limits), for the function's own
//! namespace only: versions from 0 and positions from 1; an append checks idempotency first
//! (the same ids and content: a duplicate; the same ids with other content: a conflict), then
//! the expected version; reads cap their count at 10,000 and kv lists at 1,000; keys are 1-512
//! bytes without NUL, values and events at most 1 MiB. Streams of other namespaces
//! (`namespace/name`) are denied.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::event_store::{
    AppendError, AppendOutcome, Direction, ExpectedVersion, NewEvent, ReadError, RecordedEvent, is_valid_stream_name,
};
use crate::kv::KvError;

const MAX_EVENT_BYTES: usize = 1 << 20;
const MAX_EVENTS_PER_APPEND: usize = 1000;
const MAX_READ_COUNT: u32 = 10_000;
const MAX_LIST: u32 = 1000;
const MAX_KV_KEY: usize = 512;
const MAX_KV_VALUE: usize = 1 << 20;
const MAX_EVENT_ID: usize = 128;
const MAX_EVENT_TYPE: usize = 200;

/// One thread's stores.
#[derive(Default)]
struct State {
    /// Every event in global order: position `n` is `log[n - 1]`.
    log: Vec<RecordedEvent>,
    /// Each stream's events, as indexes into `log`, by version.
    streams: BTreeMap<String, Vec<usize>>,
    kv: BTreeMap<String, Vec<u8>>,
    /// `recorded_at` of new events; the system clock when `None`.
    clock: Option<u64>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

pub(crate) fn reset() {
    with_state(|state| *state = State::default());
}

pub(crate) fn set_clock(now_ms: Option<u64>) {
    with_state(|state| state.clock = now_ms);
}

fn now_ms(state: &State) -> u64 {
    state.clock.unwrap_or_else(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// The stream name of an address in the own namespace, or why it is not one.
fn own_stream(address: &str) -> Result<&str, (bool, String)> {
    if address.contains('/') {
        return Err((true, format!("`{address}`: the native test store has no other namespaces")));
    }
    if !is_valid_stream_name(address) {
        return Err((false, format!("invalid stream name `{address}`: use 1-200 ASCII letters, digits and `-_.:@`")));
    }
    Ok(address)
}

fn check_event(event: &NewEvent) -> Result<(), String> {
    if event.id.is_empty() || event.id.len() > MAX_EVENT_ID {
        return Err(format!("event id `{}` must be 1-{MAX_EVENT_ID} characters (a UUID)", event.id));
    }
    if event.event_type.is_empty() || event.event_type.len() > MAX_EVENT_TYPE {
        return Err(format!("event type must be 1-{MAX_EVENT_TYPE} characters"));
    }
    let metadata = &event.metadata;
    let size = event.data.len()
        + metadata.custom.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + metadata.correlation_id.as_ref().map_or(0, String::len)
        + metadata.causation_id.as_ref().map_or(0, String::len);
    if size > MAX_EVENT_BYTES {
        return Err(format!("event {} is {size} bytes; the limit is {MAX_EVENT_BYTES}", event.id));
    }
    Ok(())
}

fn admits(expected: ExpectedVersion, current: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::StreamExists => current.is_some(),
        ExpectedVersion::Exact(version) => current == Some(version),
    }
}

pub(crate) fn append(
    address: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendOutcome, AppendError> {
    let stream = own_stream(address).map_err(|(denied, message)| {
        if denied { AppendError::AccessDenied(message) } else { AppendError::InvalidRequest(message) }
    })?;
    if events.is_empty() {
        return Err(AppendError::InvalidRequest("an append needs at least one event".into()));
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(AppendError::InvalidRequest(format!(
            "{} events in one append; the limit is {MAX_EVENTS_PER_APPEND}",
            events.len()
        )));
    }
    events.iter().try_for_each(check_event).map_err(AppendError::InvalidRequest)?;

    with_state(|state| {
        let indexes = state.streams.get(stream).cloned().unwrap_or_default();
        let existing: Vec<&RecordedEvent> =
            indexes.iter().map(|&i| &state.log[i]).filter(|old| events.iter().any(|new| new.id == old.id)).collect();
        if let (Some(first), Some(last)) = (existing.first(), existing.last()) {
            let same = existing.len() == events.len()
                && existing.iter().zip(&events).all(|(old, new)| {
                    old.id == new.id
                        && old.event_type == new.event_type
                        && old.data == new.data
                        && old.metadata == new.metadata
                })
                && existing.windows(2).all(|w| w[1].version == w[0].version + 1);
            if !same {
                return Err(AppendError::IdempotencyConflict(format!(
                    "event id {} is already in stream `{stream}` with different content, or only part of this batch \
                     was appended before",
                    first.id
                )));
            }
            return Ok(AppendOutcome {
                first_version: first.version,
                last_version: last.version,
                first_position: first.position,
                last_position: last.position,
                duplicate: true,
            });
        }

        let current = indexes.len().checked_sub(1).map(|v| v as u64);
        if !admits(expected, current) {
            return Err(AppendError::WrongExpectedVersion { expected, actual: current });
        }
        let recorded_at = now_ms(state);
        let first_version = indexes.len() as u64;
        let first_position = state.log.len() as u64 + 1;
        let count = events.len() as u64;
        for (i, event) in events.into_iter().enumerate() {
            let index = state.log.len();
            state.log.push(RecordedEvent {
                id: event.id,
                stream: stream.to_owned(),
                version: first_version + i as u64,
                position: first_position + i as u64,
                event_type: event.event_type,
                data: event.data,
                metadata: event.metadata,
                recorded_at,
            });
            state.streams.entry(stream.to_owned()).or_default().push(index);
        }
        Ok(AppendOutcome {
            first_version,
            last_version: first_version + count - 1,
            first_position,
            last_position: first_position + count - 1,
            duplicate: false,
        })
    })
}

pub(crate) fn read_stream(
    address: &str,
    from_version: u64,
    direction: Direction,
    max_count: u32,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let stream = own_stream(address).map_err(|(denied, message)| {
        if denied { ReadError::AccessDenied(message) } else { ReadError::InvalidRequest(message) }
    })?;
    let max = max_count.min(MAX_READ_COUNT) as usize;
    with_state(|state| {
        let Some(indexes) = state.streams.get(stream) else { return Ok(Vec::new()) };
        let events: Vec<RecordedEvent> = match direction {
            Direction::Forward => {
                let from = usize::try_from(from_version).unwrap_or(usize::MAX);
                indexes.iter().skip(from).take(max).map(|&i| state.log[i].clone()).collect()
            }
            Direction::Backward => {
                let end = usize::try_from(from_version.saturating_add(1)).unwrap_or(usize::MAX).min(indexes.len());
                indexes[..end].iter().rev().take(max).map(|&i| state.log[i].clone()).collect()
            }
        };
        Ok(events)
    })
}

pub(crate) fn read_all(from_position: u64, max_count: u32) -> Result<Vec<RecordedEvent>, ReadError> {
    let max = max_count.min(MAX_READ_COUNT) as usize;
    let skip = usize::try_from(from_position.saturating_sub(1)).unwrap_or(usize::MAX);
    Ok(with_state(|state| state.log.iter().skip(skip).take(max).cloned().collect()))
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KV_KEY || key.contains('\0') {
        return Err(KvError::InvalidRequest(format!("keys are 1-{MAX_KV_KEY} bytes without NUL")));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_KV_VALUE {
        return Err(KvError::InvalidRequest(format!("value is {} bytes; the limit is {MAX_KV_VALUE}", value.len())));
    }
    Ok(())
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    check_key(key)?;
    Ok(with_state(|state| state.kv.get(key).cloned()))
}

pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
    check_key(key)?;
    check_value(value)?;
    with_state(|state| state.kv.insert(key.to_owned(), value.to_vec()));
    Ok(())
}

pub(crate) fn kv_delete(key: &str) -> Result<bool, KvError> {
    check_key(key)?;
    Ok(with_state(|state| state.kv.remove(key).is_some()))
}

pub(crate) fn kv_list(prefix: &str, start_after: Option<&str>, limit: u32) -> Result<Vec<(String, Vec<u8>)>, KvError> {
    let limit = limit.min(MAX_LIST) as usize;
    Ok(with_state(|state| {
        state
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(key, _)| start_after.is_none_or(|after| key.as_str() > after))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }))
}

pub(crate) fn kv_compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, KvError> {
    check_key(key)?;
    if let Some(new) = new {
        check_value(new)?;
    }
    Ok(with_state(|state| {
        if state.kv.get(key).map(Vec::as_slice) != expected {
            return false;
        }
        match new {
            Some(new) => state.kv.insert(key.to_owned(), new.to_vec()),
            None => state.kv.remove(key),
        };
        true
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_store;
    use crate::{kv, testing};

    fn event(id: &str, data: &str) -> NewEvent {
        NewEvent::new("T", data.as_bytes().to_vec()).with_id(id)
    }

    #[test]
    fn appends_and_reads() {
        testing::reset();
        testing::set_clock(Some(1_000));
        let outcome = event_store::append("s-1", ExpectedVersion::NoStream, vec![event("a", "1"), event("b", "2")])
            .expect("appends");
        assert_eq!(
            outcome,
            AppendOutcome { first_version: 0, last_version: 1, first_position: 1, last_position: 2, duplicate: false }
        );
        let outcome = event_store::append("s-2", ExpectedVersion::Any, vec![event("c", "3")]).expect("appends");
        assert_eq!((outcome.first_version, outcome.first_position), (0, 3));
        testing::set_clock(Some(2_000));
        event_store::append("s-1", ExpectedVersion::Exact(1), vec![event("d", "4")]).expect("appends");

        let all = event_store::read_stream_all("s-1").expect("reads");
        assert_eq!(all.iter().map(|e| (e.version, e.position)).collect::<Vec<_>>(), [(0, 1), (1, 2), (2, 4)]);
        assert_eq!(all[0].stream, "s-1");
        assert_eq!((all[0].recorded_at, all[2].recorded_at), (1_000, 2_000));

        let back = event_store::read_stream("s-1", event_store::END, Direction::Backward, 2).expect("reads");
        assert_eq!(back.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 1]);
        let back = event_store::read_stream("s-1", 0, Direction::Backward, 5).expect("reads");
        assert_eq!(back.iter().map(|e| e.version).collect::<Vec<_>>(), [0]);
        let forward = event_store::read_stream("s-1", 1, Direction::Forward, 1).expect("reads");
        assert_eq!(forward.iter().map(|e| e.version).collect::<Vec<_>>(), [1]);
        assert!(event_store::read_stream("nope", 0, Direction::Forward, 10).expect("reads").is_empty());
        assert_eq!(event_store::last_event("s-1").expect("reads").map(|e| e.id), Some("d".to_owned()));
        assert_eq!(event_store::last_event("nope").expect("reads"), None);

        let global = event_store::read_all(2, 2).expect("reads");
        assert_eq!(global.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(event_store::read_all(0, 100).expect("reads").len(), 4);
    }

    #[test]
    fn expected_versions_and_idempotency() {
        testing::reset();
        event_store::append("s", ExpectedVersion::NoStream, vec![event("a", "1")]).expect("appends");
        let err = event_store::append("s", ExpectedVersion::NoStream, vec![event("b", "2")]).expect_err("exists");
        assert_eq!(err, AppendError::WrongExpectedVersion { expected: ExpectedVersion::NoStream, actual: Some(0) });
        let err = event_store::append("t", ExpectedVersion::StreamExists, vec![event("b", "2")]).expect_err("absent");
        assert_eq!(err, AppendError::WrongExpectedVersion { expected: ExpectedVersion::StreamExists, actual: None });
        let err = event_store::append("s", ExpectedVersion::Exact(3), vec![event("b", "2")]).expect_err("stale");
        assert_eq!(err, AppendError::WrongExpectedVersion { expected: ExpectedVersion::Exact(3), actual: Some(0) });

        // The same id and content again is a duplicate, whatever the expected version says.
        let outcome = event_store::append("s", ExpectedVersion::NoStream, vec![event("a", "1")]).expect("duplicate");
        assert!(outcome.duplicate);
        assert_eq!((outcome.last_version, outcome.last_position), (0, 1));
        // Other content, or other metadata, under the same id is a conflict.
        let err = event_store::append("s", ExpectedVersion::Any, vec![event("a", "2")]).expect_err("conflict");
        assert!(matches!(err, AppendError::IdempotencyConflict(_)), "{err:?}");
        let err = event_store::append("s", ExpectedVersion::Any, vec![event("a", "1").with_correlation_id("x")])
            .expect_err("conflict");
        assert!(matches!(err, AppendError::IdempotencyConflict(_)), "{err:?}");
        // A batch that is only partly recorded is a conflict too.
        let err = event_store::append("s", ExpectedVersion::Any, vec![event("a", "1"), event("z", "9")])
            .expect_err("partial");
        assert!(matches!(err, AppendError::IdempotencyConflict(_)), "{err:?}");
        // Ids are per stream.
        event_store::append("u", ExpectedVersion::NoStream, vec![event("a", "1")]).expect("another stream");
    }

    #[test]
    fn invalid_requests() {
        testing::reset();
        let invalid =
            |result: Result<AppendOutcome, AppendError>| matches!(result, Err(AppendError::InvalidRequest(_)));
        assert!(invalid(event_store::append("bad name", ExpectedVersion::Any, vec![event("a", "1")])));
        assert!(invalid(event_store::append("s", ExpectedVersion::Any, Vec::new())));
        assert!(invalid(event_store::append("s", ExpectedVersion::Any, vec![event("", "1")])));
        assert!(invalid(event_store::append("s", ExpectedVersion::Any, vec![event(&"x".repeat(129), "1")])));
        let mut no_type = event("a", "1");
        no_type.event_type.clear();
        assert!(invalid(event_store::append("s", ExpectedVersion::Any, vec![no_type])));
        let big = NewEvent { data: vec![0; MAX_EVENT_BYTES + 1], ..event("a", "") };
        assert!(invalid(event_store::append("s", ExpectedVersion::Any, vec![big])));
        let many: Vec<NewEvent> = (0..1001).map(|i| event(&format!("e{i}"), "")).collect();
        assert!(invalid(event_store::append("s", ExpectedVersion::Any, many)));
        assert!(matches!(
            event_store::append("other/s", ExpectedVersion::Any, vec![event("a", "1")]),
            Err(AppendError::AccessDenied(_))
        ));
        assert!(matches!(
            event_store::read_stream("other/s", 0, Direction::Forward, 1),
            Err(ReadError::AccessDenied(_))
        ));
        assert!(matches!(event_store::read_stream("", 0, Direction::Forward, 1), Err(ReadError::InvalidRequest(_))));
        assert!(event_store::read_all(1, 10).expect("reads").is_empty());
    }

    #[test]
    fn key_value() {
        testing::reset();
        assert_eq!(kv::get("a").expect("gets"), None);
        kv::set("a", b"1").expect("sets");
        assert_eq!(kv::get("a").expect("gets"), Some(b"1".to_vec()));
        assert!(kv::delete("a").expect("deletes"));
        assert!(!kv::delete("a").expect("deletes"));

        for key in ["p/1", "p/2", "p/3", "q/1", "p"] {
            kv::set(key, key.as_bytes()).expect("sets");
        }
        let keys = |entries: Vec<(String, Vec<u8>)>| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(kv::list("p/", None, 10).expect("lists")), ["p/1", "p/2", "p/3"]);
        assert_eq!(keys(kv::list("p/", Some("p/1"), 1).expect("lists")), ["p/2"]);
        assert_eq!(keys(kv::list("", None, 10).expect("lists")), ["p", "p/1", "p/2", "p/3", "q/1"]);
        assert_eq!(keys(kv::list_all("p").expect("lists")), ["p", "p/1", "p/2", "p/3"]);

        assert!(kv::compare_and_swap("c", None, Some(b"x")).expect("swaps"));
        assert!(!kv::compare_and_swap("c", None, Some(b"y")).expect("does not swap"));
        assert!(kv::compare_and_swap("c", Some(b"x"), Some(b"y")).expect("swaps"));
        assert!(kv::compare_and_swap("c", Some(b"y"), None).expect("deletes"));
        assert_eq!(kv::get("c").expect("gets"), None);

        kv::set_json("j", &serde_json::json!({"n": 1})).expect("sets");
        let value: Option<serde_json::Value> = kv::get_json("j").expect("gets");
        assert_eq!(value.expect("set")["n"], 1);
        assert!(matches!(kv::get_json::<u64>("j"), Err(KvError::Json { .. })));

        assert!(matches!(kv::set("", b""), Err(KvError::InvalidRequest(_))));
        assert!(matches!(kv::set("a\0b", b""), Err(KvError::InvalidRequest(_))));
        assert!(matches!(kv::get(&"k".repeat(513)), Err(KvError::InvalidRequest(_))));
        assert!(matches!(kv::set("big", &vec![0; MAX_KV_VALUE + 1]), Err(KvError::InvalidRequest(_))));
    }
}
