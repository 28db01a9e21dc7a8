//! Event sourcing on the platform's event store (`faas:platform/event-store`).
//!
//! Streams are append-only sequences of events, addressed by name: `name` for a stream of the
//! function's own namespace (its name, by default), or `namespace/name` for a stream of another
//! namespace the deploy granted read access to. Writes only ever go to the own namespace.
//!
//! - A stream name is 1-200 ASCII letters, digits and `-_.:@` ([`is_valid_stream_name`]).
//! - Versions count the events of one stream from 0, without gaps.
//! - Positions count every event of the store from 1, in the order they were committed; a
//!   reader of [`read_all`] never skips one.
//! - Errors are values ([`AppendError`], [`ReadError`]), never traps.
//! - On native targets (unit tests) the functions work on an in-memory store of the current
//!   thread instead of the platform's; see [`crate::testing`].
//!
//! ```no_run
//! use faas_sdk::event_store::{self, AppendError, ExpectedVersion, NewEvent};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Deposited {
//!     amount: u64,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Decide from the stream, then append with optimistic concurrency.
//! let history = event_store::read_stream_all("account-42")?;
//! let expected = match history.last() {
//!     Some(last) => ExpectedVersion::Exact(last.version),
//!     None => ExpectedVersion::NoStream,
//! };
//! let event = NewEvent::json("Deposited", &Deposited { amount: 500 })?;
//! match event_store::append("account-42", expected, vec![event]) {
//!     Ok(outcome) => println!("appended at version {}", outcome.last_version),
//!     Err(AppendError::WrongExpectedVersion { actual, .. }) => println!("lost a race; now at {actual:?}"),
//!     Err(other) => return Err(other.into()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Idempotent appends: appending events whose ids are already in the stream (with the same
//! content) appends nothing and returns the original versions and positions with
//! [`AppendOutcome::duplicate`] set. Give retried operations a stable id with
//! [`deterministic_id`] (or [`NewEvent::with_id`]); [`NewEvent::json`] and [`NewEvent::new`]
//! pick a fresh random one ([`new_id`]).

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::faas::platform::event_store as wit;

/// The longest stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 200;

/// Reading [`Backward`](Direction::Backward) from this version starts at the stream's last event.
pub const END: u64 = u64::MAX;

/// How many events [`read_stream_all`] asks for per call (the host may return fewer).
const PAGE_SIZE: u32 = 1000;

/// Correlation and causation ids, plus free-form `(key, value)` fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// Ties together every event of one business transaction (a saga, a request).
    pub correlation_id: Option<String>,
    /// The id of the event or command that directly caused this one.
    pub causation_id: Option<String>,
    /// Anything else, in order.
    pub custom: Vec<(String, String)>,
}

/// An event to append with [`append`].
///
/// Build one with [`NewEvent::json`] (or [`NewEvent::new`] for raw bytes) and refine it with the
/// `with_*` methods:
///
/// ```
/// use faas_sdk::event_store::{NewEvent, deterministic_id};
///
/// let event = NewEvent::json("Deposited", &serde_json::json!({"amount": 500}))
///     .unwrap()
///     .with_id(deterministic_id(b"bank-account", b"op-17"))
///     .with_correlation_id("order-9");
/// assert_eq!(event.event_type, "Deposited");
/// assert_eq!(event.data, br#"{"amount":500}"#);
/// assert_eq!(event.metadata.correlation_id.as_deref(), Some("order-9"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NewEvent {
    /// The event's id, a UUID: appending the same ids to the same stream again is a no-op
    /// (see [`AppendOutcome::duplicate`]); the same id with other content is
    /// [`AppendError::IdempotencyConflict`]. The host accepts 1-128 characters.
    pub id: String,
    /// What happened, e.g. `Deposited`.
    pub event_type: String,
    /// The payload, usually JSON.
    pub data: Vec<u8>,
    /// Correlation, causation and custom fields.
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event with raw `data`, a fresh random id ([`new_id`]) and empty metadata.
    pub fn new(event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self { id: new_id(), event_type: event_type.into(), data: data.into(), metadata: Metadata::default() }
    }

    /// An event whose data is `data` serialized as JSON, with a fresh random id ([`new_id`]).
    ///
    /// # Errors
    ///
    /// If `data` cannot be serialized as JSON (say, a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(event_type: impl Into<String>, data: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::new(event_type, serde_json::to_vec(data)?))
    }

    /// Replaces the id, e.g. with a [`deterministic_id`] so that a retry is idempotent.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.metadata.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, causation_id: impl Into<String>) -> Self {
        self.metadata.causation_id = Some(causation_id.into());
        self
    }

    /// Adds a custom metadata field.
    #[must_use]
    pub fn with_custom(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.custom.push((key.into(), value.into()));
        self
    }

    /// Marks this event as caused by `cause`: the causation id becomes `cause.id` and the
    /// correlation id `cause`'s correlation id, or `cause.id` when it has none.
    ///
    /// ```
    /// use faas_sdk::event_store::{NewEvent, RecordedEvent};
    ///
    /// let cause = RecordedEvent { id: "e1".into(), ..RecordedEvent::default() };
    /// let event = NewEvent::new("Shipped", Vec::new()).caused_by(&cause);
    /// assert_eq!(event.metadata.causation_id.as_deref(), Some("e1"));
    /// assert_eq!(event.metadata.correlation_id.as_deref(), Some("e1"));
    /// ```
    #[must_use]
    pub fn caused_by(mut self, cause: &RecordedEvent) -> Self {
        self.metadata.causation_id = Some(cause.id.clone());
        self.metadata.correlation_id = Some(cause.metadata.correlation_id.clone().unwrap_or_else(|| cause.id.clone()));
        self
    }
}

/// An event as stored, returned by the reads and delivered to [`macro@crate::event_handler`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecordedEvent {
    /// The id it was appended with.
    pub id: String,
    /// The stream as this function addresses it: `name` in its own namespace,
    /// `namespace/name` in another one.
    pub stream: String,
    /// 0-based and gap-free within the stream.
    pub version: u64,
    /// 1-based and strictly increasing across all streams.
    pub position: u64,
    /// What happened, e.g. `Deposited`.
    pub event_type: String,
    /// The payload, usually JSON.
    pub data: Vec<u8>,
    /// Correlation, causation and custom fields.
    pub metadata: Metadata,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub recorded_at: u64,
}

impl RecordedEvent {
    /// Deserializes the event's data from JSON.
    ///
    /// ```
    /// use faas_sdk::event_store::RecordedEvent;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Deposited {
    ///     amount: u64,
    /// }
    ///
    /// let event = RecordedEvent { data: br#"{"amount": 5}"#.to_vec(), ..RecordedEvent::default() };
    /// assert_eq!(event.json::<Deposited>().unwrap().amount, 5);
    /// ```
    ///
    /// # Errors
    ///
    /// If the data is not JSON or does not have the shape of `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }

    /// The stream's name without its namespace: `b` for both `b` and `a/b`.
    pub fn stream_name(&self) -> &str {
        self.stream.split_once('/').map_or(self.stream.as_str(), |(_, name)| name)
    }

    /// The stream's namespace when it is not the function's own: `Some("a")` for `a/b`, `None`
    /// for `b`.
    pub fn stream_namespace(&self) -> Option<&str> {
        self.stream.split_once('/').map(|(namespace, _)| namespace)
    }
}

/// What the caller believes about the stream before appending (optimistic concurrency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation that a stream whose last event has version `last` (`None`: no events) is
    /// still as it was: `Exact(last)` or `NoStream`.
    ///
    /// ```
    /// use faas_sdk::event_store::ExpectedVersion;
    ///
    /// assert_eq!(ExpectedVersion::after(Some(3)), ExpectedVersion::Exact(3));
    /// assert_eq!(ExpectedVersion::after(None), ExpectedVersion::NoStream);
    /// ```
    pub fn after(last: Option<u64>) -> Self {
        last.map_or(Self::NoStream, Self::Exact)
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("an existing stream"),
            Self::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// Which way [`read_stream`] goes from its starting version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Increasing versions.
    Forward,
    /// Decreasing versions; start at [`END`] for the newest events.
    Backward,
}

/// What an [`append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppendOutcome {
    /// Version of the first appended event.
    pub first_version: u64,
    /// Version of the last appended event: the stream's version afterwards (unless
    /// [`duplicate`](Self::duplicate)).
    pub last_version: u64,
    /// Global position of the first appended event.
    pub first_position: u64,
    /// Global position of the last appended event.
    pub last_position: u64,
    /// Every event was already in the stream (same ids and content): nothing was appended, and
    /// the versions and positions are those of the original append.
    pub duplicate: bool,
}

/// Why an [`append`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    /// Another writer got there first: re-read the stream, decide again, retry.
    WrongExpectedVersion {
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's current version; `None` if the stream does not exist.
        actual: Option<u64>,
    },
    /// An event id already in the stream with different content, or a batch only partly
    /// recorded before.
    IdempotencyConflict(String),
    /// A malformed stream name or event, an empty batch, or a limit exceeded (event size,
    /// events per append).
    InvalidRequest(String),
    /// The stream is outside what this function may write (another namespace).
    AccessDenied(String),
    /// The store failed; the append may be retried with the same event ids.
    Unavailable(String),
}

impl AppendError {
    /// Whether trying again may succeed: after re-reading and deciding again for
    /// [`WrongExpectedVersion`](Self::WrongExpectedVersion), as is for
    /// [`Unavailable`](Self::Unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::WrongExpectedVersion { .. } | Self::Unavailable(_))
    }
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongExpectedVersion { expected, actual: Some(actual) } => {
                write!(f, "wrong expected version: expected {expected}, the stream is at version {actual}")
            }
            Self::WrongExpectedVersion { expected, actual: None } => {
                write!(f, "wrong expected version: expected {expected}, the stream does not exist")
            }
            Self::IdempotencyConflict(message) => write!(f, "idempotency conflict: {message}"),
            Self::InvalidRequest(message) => write!(f, "invalid append: {message}"),
            Self::AccessDenied(message) => write!(f, "append denied: {message}"),
            Self::Unavailable(message) => write!(f, "event store unavailable: {message}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// Why a read failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// A malformed stream name.
    InvalidRequest(String),
    /// The stream is in a namespace this function may not read.
    AccessDenied(String),
    /// The store failed; the read may be retried.
    Unavailable(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(message) => write!(f, "invalid read: {message}"),
            Self::AccessDenied(message) => write!(f, "read denied: {message}"),
            Self::Unavailable(message) => write!(f, "event store unavailable: {message}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Appends `events` to `stream` (of the function's own namespace) atomically, if the stream is
/// at the `expected` version.
///
/// # Errors
///
/// See [`AppendError`]; none of them traps.
pub fn append(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendOutcome, AppendError> {
    #[cfg(target_arch = "wasm32")]
    {
        let events: Vec<wit::NewEvent> = events.into_iter().map(Into::into).collect();
        wit::append(stream, expected.into(), &events).map(Into::into).map_err(Into::into)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::append(stream, expected, events)
    }
}

/// Up to `max_count` events of `stream` starting at `from_version` (inclusive), in `direction`.
///
/// Read backward from [`END`] for the newest events. The host caps `max_count` (at 10,000
/// today), so a short result does not by itself mean the end of the stream; an empty one does.
/// A stream that does not exist reads as empty.
///
/// # Errors
///
/// See [`ReadError`].
pub fn read_stream(
    stream: &str,
    from_version: u64,
    direction: Direction,
    max_count: u32,
) -> Result<Vec<RecordedEvent>, ReadError> {
    #[cfg(target_arch = "wasm32")]
    {
        let events = wit::read_stream(stream, from_version, direction.into(), max_count)?;
        Ok(events.into_iter().map(Into::into).collect())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::read_stream(stream, from_version, direction, max_count)
    }
}

/// Up to `max_count` events of every namespace this function may read, in global order,
/// starting at `from_position` (inclusive; positions start at 1).
///
/// # Errors
///
/// See [`ReadError`].
pub fn read_all(from_position: u64, max_count: u32) -> Result<Vec<RecordedEvent>, ReadError> {
    #[cfg(target_arch = "wasm32")]
    {
        let events = wit::read_all(from_position, max_count)?;
        Ok(events.into_iter().map(Into::into).collect())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::read_all(from_position, max_count)
    }
}

/// Every event of `stream`, oldest first: pages forward through [`read_stream`] until a read
/// comes back empty. Empty if the stream does not exist.
///
/// # Errors
///
/// The first [`ReadError`] of any page.
pub fn read_stream_all(stream: &str) -> Result<Vec<RecordedEvent>, ReadError> {
    read_pages(|from| read_stream(stream, from, Direction::Forward, PAGE_SIZE))
}

/// The newest event of `stream`, or `None` if the stream does not exist.
///
/// # Errors
///
/// See [`ReadError`].
pub fn last_event(stream: &str) -> Result<Option<RecordedEvent>, ReadError> {
    Ok(read_stream(stream, END, Direction::Backward, 1)?.into_iter().next())
}

/// Collects forward pages: `read(from_version)` until a page is empty or stops advancing.
fn read_pages<E>(mut read: impl FnMut(u64) -> Result<Vec<RecordedEvent>, E>) -> Result<Vec<RecordedEvent>, E> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut from = 0;
    loop {
        let page = read(from)?;
        // Only events at or after `from` are new; anything else would be a host bug, and
        // ignoring it guarantees termination.
        let before = events.len();
        events.extend(page.into_iter().filter(|event| event.version >= from));
        match events.last() {
            Some(last) if events.len() > before && last.version < u64::MAX => from = last.version + 1,
            _ => return Ok(events),
        }
    }
}

/// Whether `name` is a valid stream name (without namespace): 1-200 ASCII letters, digits and
/// `-_.:@`.
///
/// ```
/// use faas_sdk::event_store::is_valid_stream_name;
///
/// assert!(is_valid_stream_name("account-42"));
/// assert!(is_valid_stream_name("order:2024@eu.west_1"));
/// assert!(!is_valid_stream_name(""));
/// assert!(!is_valid_stream_name("no spaces"));
/// assert!(!is_valid_stream_name("other/stream")); // a namespace is not part of the name
/// ```
pub fn is_valid_stream_name(name: &str) -> bool {
    (1..=MAX_STREAM_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

/// A fresh random (version 4) UUID in its hyphenated lower-case form, the default event id.
///
/// The randomness comes from `wasi:random/random`. On native targets (unit tests) it comes from
/// std's randomly keyed hasher, which is unique enough for tests but not meant for production.
pub fn new_id() -> String {
    uuid::Builder::from_random_bytes(random_bytes()).into_uuid().hyphenated().to_string()
}

/// 16 random bytes from `wasi:random/random`.
#[cfg(target_arch = "wasm32")]
fn random_bytes() -> [u8; 16] {
    let high = wasip2::random::random::get_random_u64();
    let low = wasip2::random::random::get_random_u64();
    (u128::from(high) << 64 | u128::from(low)).to_be_bytes()
}

/// 16 bytes from std's randomly keyed SipHash over a process-wide counter (tests only).
#[cfg(not(target_arch = "wasm32"))]
fn random_bytes() -> [u8; 16] {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static STATE: OnceLock<std::hash::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = STATE.get_or_init(std::hash::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let high = state.hash_one((n, 0u8));
    let low = state.hash_one((n, 1u8));
    (u128::from(high) << 64 | u128::from(low)).to_be_bytes()
}

/// A name-based (version 5, SHA-1) UUID: the same `(namespace, name)` always gives the same id,
/// different ones (practically) never collide. Use it for event ids that must survive retries,
/// e.g. derived from a client's operation id, an idempotency key, or a Kafka record's
/// `(group, topic, partition, offset)`.
///
/// Exactly: `uuid5(uuid5(NIL, namespace), name)`, where `uuid5(ns, bytes)` is RFC 9562's
/// version-5 UUID (SHA-1 of the 16 namespace bytes followed by `bytes`) and `NIL` the all-zero
/// UUID; the result is hyphenated lower-case hex. Any UUID library reproduces it, e.g. for
/// UTF-8 inputs Python's `uuid.uuid5(uuid.uuid5(uuid.UUID(int=0), namespace), name)`. Hashing
/// the namespace first keeps `("ab", "c")` and `("a", "bc")` apart.
///
/// ```
/// use faas_sdk::event_store::deterministic_id;
///
/// let id = deterministic_id(b"bank-account", b"op-17");
/// assert_eq!(id, deterministic_id(b"bank-account", b"op-17"));
/// assert_ne!(id, deterministic_id(b"bank-account", b"op-18"));
/// assert_eq!(&id[14..15], "5"); // version 5
/// ```
pub fn deterministic_id(namespace: &[u8], name: &[u8]) -> String {
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::nil(), namespace);
    uuid::Uuid::new_v5(&namespace, name).hyphenated().to_string()
}

// Conversions between the SDK's types and the generated bindings.

impl From<Metadata> for wit::Metadata {
    fn from(metadata: Metadata) -> Self {
        Self { correlation_id: metadata.correlation_id, causation_id: metadata.causation_id, custom: metadata.custom }
    }
}

impl From<wit::Metadata> for Metadata {
    fn from(metadata: wit::Metadata) -> Self {
        Self { correlation_id: metadata.correlation_id, causation_id: metadata.causation_id, custom: metadata.custom }
    }
}

impl From<NewEvent> for wit::NewEvent {
    fn from(event: NewEvent) -> Self {
        Self { id: event.id, event_type: event.event_type, data: event.data, metadata: event.metadata.into() }
    }
}

impl From<wit::RecordedEvent> for RecordedEvent {
    fn from(event: wit::RecordedEvent) -> Self {
        Self {
            id: event.id,
            stream: event.stream,
            version: event.version,
            position: event.position,
            event_type: event.event_type,
            data: event.data,
            metadata: event.metadata.into(),
            recorded_at: event.recorded_at,
        }
    }
}

impl From<ExpectedVersion> for wit::ExpectedVersion {
    fn from(expected: ExpectedVersion) -> Self {
        match expected {
            ExpectedVersion::Any => Self::Any,
            ExpectedVersion::NoStream => Self::NoStream,
            ExpectedVersion::StreamExists => Self::StreamExists,
            ExpectedVersion::Exact(version) => Self::Exact(version),
        }
    }
}

impl From<wit::ExpectedVersion> for ExpectedVersion {
    fn from(expected: wit::ExpectedVersion) -> Self {
        match expected {
            wit::ExpectedVersion::Any => Self::Any,
            wit::ExpectedVersion::NoStream => Self::NoStream,
            wit::ExpectedVersion::StreamExists => Self::StreamExists,
            wit::ExpectedVersion::Exact(version) => Self::Exact(version),
        }
    }
}

impl From<Direction> for wit::Direction {
    fn from(direction: Direction) -> Self {
        match direction {
            Direction::Forward => Self::Forward,
            Direction::Backward => Self::Backward,
        }
    }
}

impl From<wit::AppendOutcome> for AppendOutcome {
    fn from(outcome: wit::AppendOutcome) -> Self {
        Self {
            first_version: outcome.first_version,
            last_version: outcome.last_version,
            first_position: outcome.first_position,
            last_position: outcome.last_position,
            duplicate: outcome.duplicate,
        }
    }
}

impl From<wit::AppendError> for AppendError {
    fn from(error: wit::AppendError) -> Self {
        match error {
            wit::AppendError::WrongExpectedVersion(wrong) => {
                Self::WrongExpectedVersion { expected: wrong.expected.into(), actual: wrong.actual }
            }
            wit::AppendError::IdempotencyConflict(message) => Self::IdempotencyConflict(message),
            wit::AppendError::InvalidRequest(message) => Self::InvalidRequest(message),
            wit::AppendError::AccessDenied(message) => Self::AccessDenied(message),
            wit::AppendError::Unavailable(message) => Self::Unavailable(message),
        }
    }
}

impl From<wit::ReadError> for ReadError {
    fn from(error: wit::ReadError) -> Self {
        match error {
            wit::ReadError::InvalidRequest(message) => Self::InvalidRequest(message),
            wit::ReadError::AccessDenied(message) => Self::AccessDenied(message),
            wit::ReadError::Unavailable(message) => Self::Unavailable(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: u64) -> RecordedEvent {
        RecordedEvent { version, position: version + 1, stream: "s".into(), ..RecordedEvent::default() }
    }

    #[test]
    fn new_event_builders() {
        let event = NewEvent::json("Opened", &serde_json::json!({"owner": "ann"}))
            .expect("serializes")
            .with_id("id-1")
            .with_correlation_id("c")
            .with_causation_id("k")
            .with_custom("tenant", "t1");
        assert_eq!(event.id, "id-1");
        assert_eq!(event.event_type, "Opened");
        assert_eq!(event.data, br#"{"owner":"ann"}"#);
        assert_eq!(
            event.metadata,
            Metadata {
                correlation_id: Some("c".into()),
                causation_id: Some("k".into()),
                custom: vec![("tenant".into(), "t1".into())],
            }
        );
        let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(NewEvent::json("Bad", &bad).is_err());
    }

    #[test]
    fn caused_by_keeps_the_correlation() {
        let mut cause = RecordedEvent { id: "e2".into(), ..RecordedEvent::default() };
        cause.metadata.correlation_id = Some("saga-1".into());
        let event = NewEvent::new("Next", b"{}".to_vec()).caused_by(&cause);
        assert_eq!(event.metadata.causation_id.as_deref(), Some("e2"));
        assert_eq!(event.metadata.correlation_id.as_deref(), Some("saga-1"));
    }

    #[test]
    fn fresh_ids_are_v4_uuids() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a, parsed.hyphenated().to_string());
        assert_ne!(NewEvent::new("x", Vec::new()).id, NewEvent::new("x", Vec::new()).id);
    }

    #[test]
    fn deterministic_ids() {
        // Known answers, computed independently with Python: uuid5(uuid5(NIL, ns), name).
        assert_eq!(deterministic_id(b"bank-account", b"op-1"), "c2c885e7-e9fa-5ac2-a86e-67b2df444270");
        assert_eq!(deterministic_id(b"", b""), "db0be55f-cb6f-5027-a3c5-ad11c4f8ba7e");
        let id = deterministic_id(b"bank-account", b"op-1");
        assert_eq!(id, deterministic_id(b"bank-account", b"op-1"));
        assert_ne!(id, deterministic_id(b"bank-account", b"op-2"));
        assert_ne!(id, deterministic_id(b"bank-accounts", b"op-1"));
        assert_ne!(deterministic_id(b"ab", b"c"), deterministic_id(b"a", b"bc"));
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 5);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn uuid5_matches_rfc_example() {
        // RFC 9562's (and Python's) well-known vector: uuid5(NAMESPACE_DNS, "python.org").
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"python.org");
        assert_eq!(id.to_string(), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
    }

    #[test]
    fn stream_names() {
        assert!(is_valid_stream_name("a"));
        assert!(is_valid_stream_name(&"x".repeat(200)));
        assert!(!is_valid_stream_name(&"x".repeat(201)));
        assert!(is_valid_stream_name("A-z_0.9:@"));
        for bad in ["", "a b", "a/b", "ü", "a\n", "a#b"] {
            assert!(!is_valid_stream_name(bad), "{bad:?}");
        }
        let own = RecordedEvent { stream: "account-1".into(), ..RecordedEvent::default() };
        assert_eq!(own.stream_name(), "account-1");
        assert_eq!(own.stream_namespace(), None);
        let other = RecordedEvent { stream: "bank/account-1".into(), ..RecordedEvent::default() };
        assert_eq!(other.stream_name(), "account-1");
        assert_eq!(other.stream_namespace(), Some("bank"));
    }

    #[test]
    fn recorded_event_json() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Deposited {
            amount: u64,
        }
        let event = RecordedEvent { data: br#"{"amount":7}"#.to_vec(), ..RecordedEvent::default() };
        assert_eq!(event.json::<Deposited>().expect("json"), Deposited { amount: 7 });
        assert!(RecordedEvent::default().json::<Deposited>().is_err());
    }

    #[test]
    fn paging_reads_until_an_empty_page() {
        // A stream of 7 events served 3 at a time.
        let mut calls = Vec::new();
        let events = read_pages(|from| {
            calls.push(from);
            Ok::<_, ReadError>((from..7).take(3).map(event).collect())
        })
        .expect("reads");
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
        assert_eq!(calls, [0, 3, 6, 7]);

        // An empty stream takes one call.
        let mut count = 0;
        let events = read_pages(|_| {
            count += 1;
            Ok::<_, ReadError>(Vec::new())
        })
        .expect("reads");
        assert!(events.is_empty());
        assert_eq!(count, 1);
    }

    #[test]
    fn paging_stops_on_errors_and_on_no_progress() {
        let err =
            read_pages(|from| if from == 0 { Ok(vec![event(0)]) } else { Err(ReadError::Unavailable("down".into())) })
                .expect_err("fails");
        assert_eq!(err, ReadError::Unavailable("down".into()));

        // A misbehaving host that keeps returning old events cannot make it loop.
        let events = read_pages(|_| Ok::<_, ReadError>(vec![event(0)])).expect("reads");
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn errors_display() {
        let err = AppendError::WrongExpectedVersion { expected: ExpectedVersion::Exact(3), actual: Some(5) };
        assert_eq!(err.to_string(), "wrong expected version: expected version 3, the stream is at version 5");
        assert!(err.is_retryable());
        let err = AppendError::WrongExpectedVersion { expected: ExpectedVersion::StreamExists, actual: None };
        assert_eq!(err.to_string(), "wrong expected version: expected an existing stream, the stream does not exist");
        assert!(!AppendError::IdempotencyConflict("x".into()).is_retryable());
        assert!(AppendError::Unavailable("x".into()).is_retryable());
        let boxed: Box<dyn std::error::Error> = Box::new(ReadError::AccessDenied("no".into()));
        assert_eq!(boxed.to_string(), "read denied: no");
    }

    #[test]
    fn wit_conversions_round_trip() {
        for expected in
            [ExpectedVersion::Any, ExpectedVersion::NoStream, ExpectedVersion::StreamExists, ExpectedVersion::Exact(9)]
        {
            assert_eq!(ExpectedVersion::from(wit::ExpectedVersion::from(expected)), expected);
        }
        let wit_error = wit::AppendError::WrongExpectedVersion(wit::WrongExpectedVersion {
            expected: wit::ExpectedVersion::NoStream,
            actual: Some(0),
        });
        assert_eq!(
            AppendError::from(wit_error),
            AppendError::WrongExpectedVersion { expected: ExpectedVersion::NoStream, actual: Some(0) }
        );
        let metadata =
            Metadata { correlation_id: Some("c".into()), causation_id: None, custom: vec![("k".into(), "v".into())] };
        assert_eq!(Metadata::from(wit::Metadata::from(metadata.clone())), metadata);
    }
}
