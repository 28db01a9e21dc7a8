//! The bridge between `faas:platform/event-handler` and `#[event_handler]` functions, used by
//! the code the macro generates (through `__private`), and [`EventHandlerResult`].

use std::fmt;
use std::future::Future;

use crate::bindings::faas::platform::event_store as wit;
use crate::event_store::RecordedEvent;

/// What an [`macro@crate::event_handler`] returns: `Ok(())` when the batch is handled,
/// `Err(e)` to have the host retry it (with backoff; events that keep failing are parked).
///
/// Implemented for `Result<(), E>` with any `E: Display`: `String`, `&str`,
/// `Box<dyn Error>`, the SDK's error types, `anyhow::Error`, ...
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event handler result: an `#[event_handler]` must return `Result<(), E>` \
               with `E: Display`",
    label = "not `Result<(), E: Display>`",
    note = "return `Ok(())` when the batch is handled and `Err(reason)` to have the host retry it"
)]
pub trait EventHandlerResult {
    /// The result the host sees: the error is passed as its text.
    fn into_handler_result(self) -> Result<(), String>;
}

impl<E: fmt::Display> EventHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), String> {
        self.map_err(|err| err.to_string())
    }
}

/// Converts the events from the generated bindings into the SDK's type.
pub(crate) fn recorded_events(events: Vec<wit::RecordedEvent>) -> Vec<RecordedEvent> {
    events.into_iter().map(Into::into).collect()
}

/// Runs an async handler's future to completion on a fresh `wstd` executor.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    wstd::runtime::block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_convert() {
        assert_eq!(Ok::<(), String>(()).into_handler_result(), Ok(()));
        assert_eq!(Err::<(), _>("retry me").into_handler_result(), Err("retry me".to_owned()));
        let boxed: Result<(), Box<dyn std::error::Error>> = Err("boxed".into());
        assert_eq!(boxed.into_handler_result(), Err("boxed".to_owned()));
        let kv: Result<(), crate::kv::KvError> = Err(crate::kv::KvError::Unavailable("down".into()));
        assert_eq!(kv.into_handler_result(), Err("kv store unavailable: down".to_owned()));
    }

    #[test]
    fn events_convert() {
        let event = wit::RecordedEvent {
            id: "e".into(),
            stream: "ns/s".into(),
            version: 1,
            position: 9,
            event_type: "T".into(),
            data: b"{}".to_vec(),
            metadata: wit::Metadata { correlation_id: None, causation_id: Some("c".into()), custom: Vec::new() },
            recorded_at: 5,
        };
        let converted = recorded_events(vec![event]);
        assert_eq!(converted.len(), 1);
        let e = &converted[0];
        assert_eq!((e.id.as_str(), e.stream.as_str(), e.version, e.position), ("e", "ns/s", 1, 9));
        assert_eq!((e.event_type.as_str(), e.data.as_slice(), e.recorded_at), ("T", &b"{}"[..], 5));
        assert_eq!(e.metadata.causation_id.as_deref(), Some("c"));
    }
}
