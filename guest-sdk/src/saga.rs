//! Sagas: `faas:platform/saga` to start them, and the types of `#[step_handler]` functions that
//! run their steps.
//!
//! A saga is declared as data and run by the host, which journals every transition, retries
//! steps with backoff and, when a step fails for good, runs the compensations of the steps before
//! it in reverse order. It outlives the request that started it and survives host crashes.
//!
//! ```no_run
//! use faas_sdk::saga::{Saga, Step};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), faas_sdk::saga::SagaError> {
//! let order = serde_json::json!({ "order": "o-17", "amount": 250, "sku": "book", "qty": 1 });
//! let state = Saga::new("order", "o-17")
//!     .input_json(&order)
//!     .step(Step::json("payment", "payments", &serde_json::json!({"op": "deduct"}))
//!         .compensate_json("payments", &serde_json::json!({"op": "refund"})))
//!     .step(Step::json("inventory", "inventory", &serde_json::json!({"op": "reserve"}))
//!         .compensate_json("inventory", &serde_json::json!({"op": "release"})))
//!     .run(Duration::from_secs(10))?;
//! println!("saga {} is {:?}", state.id, state.status);
//! # Ok(())
//! # }
//! ```
//!
//! A step function receives a [`StepRequest`]. Delivery is at least once (after a timeout or a
//! host crash the same attempt comes again), so derive event ids from the request
//! ([`StepRequest::event_id`]): appending them again is a no-op, and each effect happens once.
//!
//! On native targets the saga functions return [`SagaError::Unavailable`]: there is no host.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::faas::platform::saga as wit;
use crate::bindings::step::exports::faas::platform::step_handler as step_wit;

pub use step_wit::StepKind;
pub use wit::{SagaState, SagaStatus, StepState, StepStatus};

/// As the host's API spells it: `running`, `compensating`, `completed`, `compensated`, `stuck`.
impl fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Stuck => "stuck",
        })
    }
}

/// As the host's API spells it: `pending`, `running`, `succeeded`, `failed`, ...
impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
            Self::Skipped => "skipped",
        })
    }
}

/// A saga to start: a name, an idempotency key, an input and steps.
#[derive(Clone, Debug)]
pub struct Saga {
    definition: wit::SagaDefinition,
}

impl Saga {
    /// `name` says what kind of saga this is (`order`); starting the same `idempotency_key`
    /// again from this function returns the saga it started the first time.
    pub fn new(name: &str, idempotency_key: &str) -> Self {
        Self {
            definition: wit::SagaDefinition {
                name: name.to_owned(),
                idempotency_key: idempotency_key.to_owned(),
                input: Vec::new(),
                steps: Vec::new(),
                max_compensation_attempts: None,
            },
        }
    }

    /// Bytes every step receives as [`StepRequest::input`].
    pub fn input(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.definition.input = input.into();
        self
    }

    /// `value` as JSON for [`StepRequest::input`].
    pub fn input_json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        self.input(serde_json::to_vec(value).unwrap_or_default())
    }

    /// Appends a step; steps run in the order added.
    pub fn step(mut self, step: Step) -> Self {
        self.definition.steps.push(step.0);
        self
    }

    /// Compensation attempts per step before the saga is `stuck` (default 10).
    pub fn max_compensation_attempts(mut self, attempts: u32) -> Self {
        self.definition.max_compensation_attempts = Some(attempts);
        self
    }

    /// Records the saga and returns its id at once; the host runs it.
    ///
    /// # Errors
    ///
    /// See [`SagaError`].
    pub fn start(self) -> Result<String, SagaError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(wit::start(&self.definition)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = self;
            Err(SagaError::native())
        }
    }

    /// Starts the saga and waits until it is completed, compensated or stuck, or `timeout`
    /// passes (it goes on regardless); returns its state then.
    ///
    /// # Errors
    ///
    /// See [`SagaError`].
    pub fn run(self, timeout: Duration) -> Result<SagaState, SagaError> {
        #[cfg(target_arch = "wasm32")]
        {
            let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            Ok(wit::run(&self.definition, ms)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (self, timeout);
            Err(SagaError::native())
        }
    }
}

/// One step: an action (a call of a function's `step-handler`) and, optionally, its
/// compensation.
#[derive(Clone, Debug)]
pub struct Step(wit::Step);

impl Step {
    /// A step named `name` (unique in the saga) whose action calls `function` with `payload`.
    pub fn new(name: &str, function: &str, payload: impl Into<Vec<u8>>) -> Self {
        Self(wit::Step {
            name: name.to_owned(),
            action: wit::Invocation { function: function.to_owned(), payload: payload.into() },
            compensation: None,
            max_attempts: None,
            timeout_ms: None,
            backoff_ms: None,
        })
    }

    /// Like [`new`](Self::new), with `payload` as JSON.
    pub fn json<T: Serialize + ?Sized>(name: &str, function: &str, payload: &T) -> Self {
        Self::new(name, function, serde_json::to_vec(payload).unwrap_or_default())
    }

    /// Undo by calling `function` with `payload`.
    pub fn compensate_with(mut self, function: &str, payload: impl Into<Vec<u8>>) -> Self {
        self.0.compensation = Some(wit::Invocation { function: function.to_owned(), payload: payload.into() });
        self
    }

    /// Like [`compensate_with`](Self::compensate_with), with `payload` as JSON.
    pub fn compensate_json<T: Serialize + ?Sized>(self, function: &str, payload: &T) -> Self {
        self.compensate_with(function, serde_json::to_vec(payload).unwrap_or_default())
    }

    /// Attempts of the action before the saga compensates (default 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.0.max_attempts = Some(attempts);
        self
    }

    /// Limit of one attempt (default: the function's timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout_ms = Some(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// Delay before the first retry, doubling with each (default 100 ms).
    pub fn backoff(mut self, delay: Duration) -> Self {
        self.0.backoff_ms = Some(u32::try_from(delay.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// A durable timer: the saga waits `delay` at this step, then goes on. The wait starts when
    /// the host first records the step and survives restarts (a resumed saga waits only for
    /// what is left), on whichever node runs the saga then. Nothing to compensate.
    pub fn after(name: &str, delay: Duration) -> Self {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        Self::json(name, SLEEP, &serde_json::json!({ "ms": ms }))
    }

    /// A durable timer until a point in time (see [`after`](Self::after)); a time already past
    /// goes on at once.
    pub fn sleep_until(name: &str, at: std::time::SystemTime) -> Self {
        let until_ms = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self::json(name, SLEEP, &serde_json::json!({ "until_ms": until_ms }))
    }

    /// A step that is one HTTP request, made by the host through the outbound allow-list of the
    /// function starting the saga, retried on 408, 429, 5xx, timeouts and connection failures,
    /// with the saga's idempotency key in an `idempotency-key` header. Its output is the
    /// response body.
    pub fn http(name: &str, call: HttpCall) -> Self {
        Self::json(name, HTTP, &call.payload())
    }

    /// Undo with an HTTP request (see [`http`](Self::http)); its `idempotency-key` is the step's
    /// with `/compensation` appended.
    pub fn compensate_http(self, call: HttpCall) -> Self {
        self.compensate_json(HTTP, &call.payload())
    }
}

/// The function name of the host's timer step.
const SLEEP: &str = "@sleep";
/// The function name of the host's HTTP step.
const HTTP: &str = "@http";

/// An HTTP request as a saga step ([`Step::http`]): described as data, sent by the host.
///
/// The URL, header values and body may contain placeholders the host fills in at each attempt:
/// `${config.NAME}` (a variable or secret of the function starting the saga: secrets stay out of
/// the saga's journal), `${saga.id}`, `${saga.name}`, `${saga.input}`, `${step.name}` and
/// `${idempotency_key}`.
///
/// ```
/// use faas_sdk::saga::{HttpCall, Step};
///
/// let charge = Step::http(
///     "charge",
///     HttpCall::post("https://api.payments.example/v1/charges")
///         .header("authorization", "Bearer ${config.PAYMENTS_KEY}")
///         .json(&serde_json::json!({ "amount": 250, "order": "${saga.id}" }))
///         .expect([200, 201]),
/// )
/// .compensate_http(HttpCall::post("https://api.payments.example/v1/refunds").body("{\"charge\": \"${saga.id}\"}"));
/// # let _ = charge;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    method: String,
    url: String,
    headers: std::collections::BTreeMap<String, String>,
    body: String,
    expect: Vec<u16>,
    timeout_ms: Option<u64>,
}

impl HttpCall {
    /// A request with `method` to `url`, no headers, an empty body.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: std::collections::BTreeMap::new(),
            body: String::new(),
            expect: Vec::new(),
            timeout_ms: None,
        }
    }

    /// A `GET` to `url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` to `url`.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// A `PUT` to `url`.
    pub fn put(url: &str) -> Self {
        Self::new("PUT", url)
    }

    /// A `DELETE` to `url`.
    pub fn delete(url: &str) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds (or replaces) a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.to_owned());
        self
    }

    /// The body, as text (placeholders allowed).
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The body as JSON, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        self.header("content-type", "application/json").body(serde_json::to_string(value).unwrap_or_default())
    }

    /// The statuses that count as success (default: any 2xx).
    pub fn expect(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.expect = statuses.into_iter().collect();
        self
    }

    /// Limit of one attempt (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The payload the host's `@http` step reads.
    fn payload(&self) -> serde_json::Value {
        let mut payload = serde_json::json!({
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": self.body,
            "expect": self.expect,
        });
        if let Some(ms) = self.timeout_ms {
            payload["timeout_ms"] = serde_json::json!(ms);
        }
        payload
    }
}

/// The state of a saga this function started.
///
/// # Errors
///
/// [`SagaError::NotFound`] for an unknown id or a saga of another function.
pub fn status(id: &str) -> Result<SagaState, SagaError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(wit::status(id)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = id;
        Err(SagaError::native())
    }
}

/// Why a saga could not be started or read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SagaError {
    /// A malformed definition, or a step function that is not deployed or exports no
    /// `step-handler`.
    InvalidRequest(String),
    /// The idempotency key already started a saga with a different definition.
    Conflict(String),
    /// No such saga (of this function).
    NotFound(String),
    /// The host's saga store failed; retry.
    Unavailable(String),
}

impl SagaError {
    #[cfg(not(target_arch = "wasm32"))]
    fn native() -> Self {
        Self::Unavailable("sagas run on the faas host, not in native tests".into())
    }
}

impl fmt::Display for SagaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(m) => write!(f, "invalid saga: {m}"),
            Self::Conflict(m) => write!(f, "saga conflict: {m}"),
            Self::NotFound(m) => write!(f, "{m}"),
            Self::Unavailable(m) => write!(f, "saga store unavailable: {m}"),
        }
    }
}

impl std::error::Error for SagaError {}

impl From<wit::SagaError> for SagaError {
    fn from(error: wit::SagaError) -> Self {
        match error {
            wit::SagaError::InvalidRequest(m) => Self::InvalidRequest(m),
            wit::SagaError::Conflict(m) => Self::Conflict(m),
            wit::SagaError::NotFound(m) => Self::NotFound(m),
            wit::SagaError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

/// One attempt of a step's action or compensation, as a `#[step_handler]` receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRequest {
    /// The saga's id.
    pub saga_id: String,
    /// What kind of saga it is (its definition's name).
    pub saga_name: String,
    /// The step's name in the saga.
    pub step: String,
    /// The action or its compensation.
    pub kind: StepKind,
    /// `<saga-id>/<step>`: the same for every attempt of the action and of the compensation.
    pub idempotency_key: String,
    /// 1 for the first attempt; a repeat after a crash keeps its number.
    pub attempt: u32,
    /// The saga's input.
    pub input: Vec<u8>,
    /// This invocation's payload.
    pub payload: Vec<u8>,
}

impl StepRequest {
    /// The payload as JSON; a malformed payload is a [`StepError::Fail`] (retrying will not fix it).
    ///
    /// # Errors
    ///
    /// [`StepError::Fail`] naming what serde_json said.
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_slice(&self.payload).map_err(|e| StepError::Fail(format!("malformed step payload: {e}")))
    }

    /// The saga's input as JSON, like [`payload_json`](Self::payload_json).
    ///
    /// # Errors
    ///
    /// [`StepError::Fail`] naming what serde_json said.
    pub fn input_json<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_slice(&self.input).map_err(|e| StepError::Fail(format!("malformed saga input: {e}")))
    }

    /// A UUID that is the same for every attempt of this step and `label` (say `deducted` for
    /// the action's event and `refunded` for the compensation's): use it as an event id, and a
    /// repeated attempt appends nothing.
    pub fn event_id(&self, label: &str) -> String {
        crate::event_store::deterministic_id(self.idempotency_key.as_bytes(), label.as_bytes())
    }
}

impl StepRequest {
    /// Whether the event [`event_id`](Self::event_id)`(label)` is in `stream`: did this step's
    /// action happen? (A compensation undoes only what happened.)
    ///
    /// # Errors
    ///
    /// A failed read, as [`StepError::Retry`] when the store is unavailable.
    pub fn was_applied(&self, stream: &str, label: &str) -> Result<bool, StepError> {
        let id = self.event_id(label);
        Ok(crate::event_store::read_stream_all(stream)?.iter().any(|e| e.id == id))
    }

    /// Appends one event of type `event_type` with id [`event_id`](Self::event_id)`(label)` to
    /// `stream`, once: if it is already there (a repeated attempt), nothing happens and this
    /// returns `Ok(false)`. Otherwise `decide` sees the stream's events and may refuse (say, a
    /// balance too low); the append then expects the version `decide` saw, and a concurrent
    /// writer makes it read and decide again.
    ///
    /// # Errors
    ///
    /// What `decide` returns, or a store failure.
    pub fn append_once<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        label: &str,
        event_type: &str,
        data: &T,
        decide: impl Fn(&[crate::event_store::RecordedEvent]) -> Result<(), StepError>,
    ) -> Result<bool, StepError> {
        use crate::event_store::{AppendError, ExpectedVersion, NewEvent};
        let id = self.event_id(label);
        let event = NewEvent::json(event_type, data)
            .map_err(|e| StepError::Fail(format!("event data does not serialize: {e}")))?
            .with_id(id.clone());
        loop {
            let history = crate::event_store::read_stream_all(stream)?;
            if history.iter().any(|e| e.id == id) {
                return Ok(false);
            }
            decide(&history)?;
            let expected = history.last().map_or(ExpectedVersion::NoStream, |e| ExpectedVersion::Exact(e.version));
            match crate::event_store::append(stream, expected, vec![event.clone()]) {
                Ok(outcome) => return Ok(!outcome.duplicate),
                Err(AppendError::WrongExpectedVersion { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Why a step attempt did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    /// Transient: the host tries again, with backoff.
    Retry(String),
    /// A business refusal (insufficient funds, out of stock): no retry, and the action must have
    /// had no effect. For a compensation it counts as a failed attempt.
    Fail(String),
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry(m) => write!(f, "retry: {m}"),
            Self::Fail(m) => write!(f, "failed: {m}"),
        }
    }
}

impl std::error::Error for StepError {}

/// Event-store and kv failures are worth retrying (a conflict resolves on re-reading, an
/// unavailable store comes back), except malformed requests.
impl From<crate::event_store::AppendError> for StepError {
    fn from(error: crate::event_store::AppendError) -> Self {
        if error.is_retryable() { Self::Retry(error.to_string()) } else { Self::Fail(error.to_string()) }
    }
}

impl From<crate::event_store::ReadError> for StepError {
    fn from(error: crate::event_store::ReadError) -> Self {
        match error {
            crate::event_store::ReadError::Unavailable(_) => Self::Retry(error.to_string()),
            _ => Self::Fail(error.to_string()),
        }
    }
}

impl From<crate::kv::KvError> for StepError {
    fn from(error: crate::kv::KvError) -> Self {
        match error {
            crate::kv::KvError::Unavailable(_) => Self::Retry(error.to_string()),
            _ => Self::Fail(error.to_string()),
        }
    }
}

/// What a `#[step_handler]` returns: `Result<T, StepError>` with `T: Into<Vec<u8>>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a step handler result: a `#[step_handler]` must return `Result<T, StepError>` \
               with `T: Into<Vec<u8>>`",
    label = "not `Result<T: Into<Vec<u8>>, StepError>`"
)]
pub trait StepResult {
    /// The result the host sees.
    fn into_step_result(self) -> Result<Vec<u8>, step_wit::StepError>;
}

impl<T: Into<Vec<u8>>> StepResult for Result<T, StepError> {
    fn into_step_result(self) -> Result<Vec<u8>, step_wit::StepError> {
        match self {
            Ok(output) => Ok(output.into()),
            Err(StepError::Retry(m)) => Err(step_wit::StepError::Retry(m)),
            Err(StepError::Fail(m)) => Err(step_wit::StepError::Fail(m)),
        }
    }
}

pub(crate) fn step_request(request: step_wit::StepRequest) -> StepRequest {
    StepRequest {
        saga_id: request.saga_id,
        saga_name: request.saga_name,
        step: request.step,
        kind: request.kind,
        idempotency_key: request.idempotency_key,
        attempt: request.attempt,
        input: request.input,
        payload: request.payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> StepRequest {
        StepRequest {
            saga_id: "s".into(),
            saga_name: "order".into(),
            step: "payment".into(),
            kind: StepKind::Action,
            idempotency_key: "s/payment".into(),
            attempt: 1,
            input: b"{\"n\":1}".to_vec(),
            payload: b"not json".to_vec(),
        }
    }

    /// The payloads the host's built-in steps parse (`host/src/workflows/builtin_steps.rs`).
    #[test]
    fn timer_and_http_steps_are_data_for_the_host() {
        let timer = Step::after("cool-off", Duration::from_secs(90));
        assert_eq!(timer.0.action.function, "@sleep");
        assert_eq!(timer.0.action.payload, br#"{"ms":90000}"#);
        let until = Step::sleep_until("at", std::time::UNIX_EPOCH + Duration::from_millis(5));
        assert_eq!(until.0.action.payload, br#"{"until_ms":5}"#);
        let step = Step::http(
            "charge",
            HttpCall::post("https://x.example/c").json(&serde_json::json!({"a": 1})).expect([201]),
        )
        .compensate_http(HttpCall::delete("https://x.example/c/${saga.id}").timeout(Duration::from_secs(2)));
        assert_eq!(step.0.action.function, "@http");
        let action: serde_json::Value = serde_json::from_slice(&step.0.action.payload).unwrap();
        assert_eq!(
            action,
            serde_json::json!({"method": "POST", "url": "https://x.example/c", "body": "{\"a\":1}", "expect": [201],
                "headers": {"content-type": "application/json"}})
        );
        let compensation = step.0.compensation.unwrap();
        let undo: serde_json::Value = serde_json::from_slice(&compensation.payload).unwrap();
        assert_eq!((undo["method"].as_str(), undo["timeout_ms"].as_u64()), (Some("DELETE"), Some(2000)));
    }

    #[test]
    fn event_ids_are_stable_per_step_and_label() {
        let r = request();
        assert_eq!(r.event_id("deducted"), r.event_id("deducted"));
        assert_ne!(r.event_id("deducted"), r.event_id("refunded"));
        let other = StepRequest { idempotency_key: "t/payment".into(), ..request() };
        assert_ne!(r.event_id("deducted"), other.event_id("deducted"));
    }

    #[test]
    fn malformed_payloads_fail_without_retry() {
        assert!(matches!(request().payload_json::<serde_json::Value>(), Err(StepError::Fail(_))));
        assert_eq!(request().input_json::<serde_json::Value>().unwrap()["n"], 1);
    }

    #[test]
    fn results_convert() {
        assert!(matches!(Ok::<_, StepError>(b"x".to_vec()).into_step_result(), Ok(out) if out == b"x"));
        assert!(matches!(
            Err::<Vec<u8>, _>(StepError::Fail("no".into())).into_step_result(),
            Err(step_wit::StepError::Fail(_))
        ));
        let kv: StepError = crate::kv::KvError::Unavailable("down".into()).into();
        assert!(matches!(kv, StepError::Retry(_)));
    }
}
