//! `faas:platform/event-store`: appends and reads, scoped to the caller's [`Access`](super::Access),
//! with limits checked before the store is touched. Errors are values, never traps.

use super::PlatformCtx;
use super::{AddressError, EventLimits, MAX_READ_COUNT};
use crate::bindings::event_store::{
    self as wit, AppendError, AppendOutcome, Direction, ExpectedVersion, Metadata, ReadError, RecordedEvent,
};
use crate::store::StoreError;
use crate::store::events::{self as store, Expected};
use crate::telemetry;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

/// How metadata is stored (as JSON text next to the event).
#[derive(Serialize, Deserialize, Default)]
struct StoredMetadata {
    correlation_id: Option<String>,
    causation_id: Option<String>,
    #[serde(default)]
    custom: Vec<(String, String)>,
}

pub fn metadata_to_json(metadata: Metadata) -> String {
    let stored = StoredMetadata {
        correlation_id: metadata.correlation_id,
        causation_id: metadata.causation_id,
        custom: metadata.custom,
    };
    serde_json::to_string(&stored).expect("metadata serializes")
}

pub fn metadata_from_json(json: &str) -> Metadata {
    let stored: StoredMetadata = serde_json::from_str(json).unwrap_or_default();
    Metadata { correlation_id: stored.correlation_id, causation_id: stored.causation_id, custom: stored.custom }
}

/// A stored event as the guest sees it (stream addressed relative to the caller).
pub fn to_wit(event: store::RecordedEvent, access: &super::Access) -> RecordedEvent {
    RecordedEvent {
        stream: access.address(&event.namespace, &event.stream),
        id: event.id,
        version: event.version,
        position: event.position,
        event_type: event.event_type,
        data: event.data,
        metadata: metadata_from_json(&event.metadata),
        recorded_at: event.recorded_at_ms.max(0) as u64,
    }
}

fn check_event(event: &wit::NewEvent, limits: EventLimits) -> Result<(), String> {
    if event.id.is_empty() || event.id.len() > 128 {
        return Err(format!("event id `{}` must be 1-128 characters (a UUID)", event.id));
    }
    if event.event_type.is_empty() || event.event_type.len() > 200 {
        return Err("event type must be 1-200 characters".into());
    }
    let metadata_len: usize = event.metadata.custom.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + event.metadata.correlation_id.as_ref().map_or(0, String::len)
        + event.metadata.causation_id.as_ref().map_or(0, String::len);
    let size = event.data.len() + metadata_len;
    if size > limits.max_event_bytes {
        return Err(format!("event {} is {size} bytes; the limit is {}", event.id, limits.max_event_bytes));
    }
    Ok(())
}

fn expected_from_wit(expected: ExpectedVersion) -> Expected {
    match expected {
        ExpectedVersion::Any => Expected::Any,
        ExpectedVersion::NoStream => Expected::NoStream,
        ExpectedVersion::StreamExists => Expected::StreamExists,
        ExpectedVersion::Exact(v) => Expected::Exact(v),
    }
}

fn expected_to_wit(expected: Expected) -> ExpectedVersion {
    match expected {
        Expected::Any => ExpectedVersion::Any,
        Expected::NoStream => ExpectedVersion::NoStream,
        Expected::StreamExists => ExpectedVersion::StreamExists,
        Expected::Exact(v) => ExpectedVersion::Exact(v),
    }
}

fn unavailable(error: impl std::fmt::Display) -> String {
    tracing::error!(%error, "event store failure");
    "the event store is unavailable; retry".to_owned()
}

impl wit::Host for PlatformCtx {
    async fn append(
        &mut self,
        stream: String,
        expected: ExpectedVersion,
        events: Vec<wit::NewEvent>,
    ) -> Result<AppendOutcome, AppendError> {
        let platform = &*self;
        let stream = platform.access.resolve_write(&stream).map_err(|e| match e {
            AddressError::Invalid(m) => AppendError::InvalidRequest(m),
            AddressError::Denied(m) => AppendError::AccessDenied(m),
        })?;
        if events.is_empty() {
            return Err(AppendError::InvalidRequest("an append needs at least one event".into()));
        }
        let limits = platform.caps.event_limits;
        if events.len() > limits.max_events_per_append {
            return Err(AppendError::InvalidRequest(format!(
                "{} events in one append; the limit is {}",
                events.len(),
                limits.max_events_per_append
            )));
        }
        events.iter().try_for_each(|e| check_event(e, limits)).map_err(AppendError::InvalidRequest)?;
        if let Some(repeated) = events.iter().enumerate().find(|(i, e)| events[..*i].iter().any(|f| f.id == e.id)) {
            return Err(AppendError::InvalidRequest(format!("event id {} appears twice in one append", repeated.1.id)));
        }
        let events: Vec<store::NewEvent> = events
            .into_iter()
            .map(|e| store::NewEvent {
                id: e.id,
                event_type: e.event_type,
                data: e.data,
                metadata: metadata_to_json(e.metadata),
            })
            .collect();
        let span = telemetry::append(&platform.trace, &platform.access.namespace, stream, events.len());
        let result = platform
            .caps
            .stores
            .events
            .append(&platform.access.namespace, stream, expected_from_wit(expected), &events, platform.fence.as_ref())
            .instrument(span.clone())
            .await;
        if let Err(error) = &result {
            telemetry::failed(&span, &error.to_string());
        }
        match result {
            Ok(appended) => {
                span.record("faas.position", appended.last_position);
                if !appended.duplicate {
                    platform.caps.notifier.appended(appended.last_position);
                }
                Ok(AppendOutcome {
                    first_version: appended.first_version,
                    last_version: appended.last_version,
                    first_position: appended.first_position,
                    last_position: appended.last_position,
                    duplicate: appended.duplicate,
                })
            }
            Err(store::AppendError::WrongExpectedVersion { expected, actual }) => {
                Err(AppendError::WrongExpectedVersion(wit::WrongExpectedVersion {
                    expected: expected_to_wit(expected),
                    actual,
                }))
            }
            Err(store::AppendError::IdempotencyConflict(m)) => Err(AppendError::IdempotencyConflict(m)),
            Err(store::AppendError::Store(StoreError::Fenced(saga))) => {
                Err(AppendError::Unavailable(super::superseded(&platform.access.namespace, &saga)))
            }
            // The append queue is full: the message says to retry.
            Err(store::AppendError::Store(StoreError::Unavailable(m))) => Err(AppendError::Unavailable(m)),
            Err(store::AppendError::Store(e)) => Err(AppendError::Unavailable(unavailable(e))),
        }
    }

    async fn read_stream(
        &mut self,
        stream: String,
        from_version: u64,
        direction: Direction,
        max_count: u32,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let platform = &*self;
        let (namespace, stream) = platform.access.resolve_read(&stream).map_err(read_error)?;
        let direction = match direction {
            Direction::Forward => store::Direction::Forward,
            Direction::Backward => store::Direction::Backward,
        };
        let max = max_count.min(MAX_READ_COUNT);
        let events = platform
            .caps
            .stores
            .events
            .read_stream(namespace, stream, from_version, direction, max)
            .await
            .map_err(|e| ReadError::Unavailable(unavailable(e)))?;
        Ok(events.into_iter().map(|e| to_wit(e, &platform.access)).collect())
    }

    async fn read_all(&mut self, from_position: u64, max_count: u32) -> Result<Vec<RecordedEvent>, ReadError> {
        let platform = &*self;
        let readable = platform.access.readable();
        let max = max_count.min(MAX_READ_COUNT);
        let events = platform
            .caps
            .stores
            .events
            .read_all(&readable, from_position, max)
            .await
            .map_err(|e| ReadError::Unavailable(unavailable(e)))?;
        Ok(events.into_iter().map(|e| to_wit(e, &platform.access)).collect())
    }
}

fn read_error(error: AddressError) -> ReadError {
    match error {
        AddressError::Invalid(m) => ReadError::InvalidRequest(m),
        AddressError::Denied(m) => ReadError::AccessDenied(m),
    }
}
