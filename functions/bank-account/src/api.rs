//! The HTTP API: commands decide from the event stream, queries read the kv projection (or
//! replay the stream). Every error body is `{"error": "..."}`, sometimes with more fields.

use faas_sdk::event_store::{self, AppendError, AppendOutcome, ExpectedVersion, ReadError, RecordedEvent};
use faas_sdk::http::header::{ALLOW, HeaderValue};
use faas_sdk::http::{Method, StatusCode};
use faas_sdk::kv::{self, KvError};
use faas_sdk::{Request, RequestExt, Response, json, percent_decode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::{Account, AccountEvent, Amount, Command, Rejection, decide, is_valid_id, replay_as_of, stream_of};
use crate::projection::{account_key, tx_prefix};

/// The namespace of [`event_store::deterministic_id`] for operation ids.
pub const OPERATION_NAMESPACE: &[u8] = b"bank-account";

/// The longest `owner` and `operation_id`.
const MAX_TEXT_LEN: usize = 200;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /accounts/{id}/open`.
    Open(String),
    /// `POST /accounts/{id}/deposit`.
    Deposit(String),
    /// `POST /accounts/{id}/withdraw`.
    Withdraw(String),
    /// `GET /accounts/{id}`.
    Get(String),
    /// `GET /accounts/{id}/transactions`.
    Transactions(String),
    /// `GET /accounts/{id}/replay`.
    Replay(String),
    /// A known path with another method; the value is the `allow` header.
    MethodNotAllowed(&'static str),
    /// `/accounts/{id}...` with an id that is not 1-64 of `[A-Za-z0-9-_.:@]`.
    InvalidId,
    /// Anything else.
    NotFound,
}

/// Routes `method` and `path`. The id is percent-decoded.
pub fn route(method: &Method, path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (id, action) = match segments.as_slice() {
        ["accounts", id] => (*id, None),
        ["accounts", id, action] => (*id, Some(*action)),
        _ => return Route::NotFound,
    };
    let (allowed, make): (&Method, fn(String) -> Route) = match action {
        None => (&Method::GET, Route::Get),
        Some("open") => (&Method::POST, Route::Open),
        Some("deposit") => (&Method::POST, Route::Deposit),
        Some("withdraw") => (&Method::POST, Route::Withdraw),
        Some("transactions") => (&Method::GET, Route::Transactions),
        Some("replay") => (&Method::GET, Route::Replay),
        Some(_) => return Route::NotFound,
    };
    let id = percent_decode(id);
    if !is_valid_id(&id) {
        Route::InvalidId
    } else if method != allowed {
        Route::MethodNotAllowed(if *allowed == Method::GET { "GET" } else { "POST" })
    } else {
        make(id)
    }
}

/// Serves one request.
pub fn handle(req: &Request) -> Response {
    match route(req.method(), req.uri().path()) {
        Route::Open(id) => open(&id, req),
        Route::Deposit(id) => transact(&id, req, Kind::Deposit),
        Route::Withdraw(id) => transact(&id, req, Kind::Withdraw),
        Route::Get(id) => get_account(&id),
        Route::Transactions(id) => transactions(&id),
        Route::Replay(id) => replay(&id, req),
        Route::MethodNotAllowed(allow) => {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
            response
        }
        Route::InvalidId => {
            error(StatusCode::BAD_REQUEST, "invalid account id: use 1-64 ASCII letters, digits and -_.:@")
        }
        Route::NotFound => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: &str) -> Response {
    json(status, &json!({ "error": message }))
}

/// The event id of an operation: derived from the client's `operation_id` (so a retry is
/// idempotent), or fresh.
pub fn event_id(operation_id: Option<&str>) -> String {
    operation_id
        .map_or_else(event_store::new_id, |op| event_store::deterministic_id(OPERATION_NAMESPACE, op.as_bytes()))
}

/// Whether an optional `operation_id` is acceptable: absent, or 1-200 bytes.
fn valid_operation_id(operation_id: Option<&str>) -> bool {
    operation_id.is_none_or(|op| !op.is_empty() && op.len() <= MAX_TEXT_LEN)
}

/// The 400 for an unacceptable `operation_id`.
fn invalid_operation_id() -> Response {
    error(StatusCode::BAD_REQUEST, "operation_id must be 1-200 bytes")
}

fn read_error(err: &ReadError) -> Response {
    let status = match err {
        ReadError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &err.to_string())
}

fn kv_error(err: &KvError) -> Response {
    let status = match err {
        KvError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &err.to_string())
}

/// Append errors other than the ones a command handles itself.
fn append_error(err: &AppendError) -> Response {
    match err {
        AppendError::WrongExpectedVersion { actual, .. } => {
            json(StatusCode::CONFLICT, &json!({ "error": "conflict", "actual": actual }))
        }
        AppendError::IdempotencyConflict(message) => {
            json(StatusCode::CONFLICT, &json!({ "error": "idempotency conflict", "message": message }))
        }
        AppendError::InvalidRequest(_) => error(StatusCode::BAD_REQUEST, &err.to_string()),
        AppendError::Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

#[derive(Deserialize)]
struct OpenBody {
    owner: String,
    #[serde(default)]
    operation_id: Option<String>,
}

/// `POST /accounts/{id}/open` `{"owner", "operation_id"?}`: appends `AccountOpened` with
/// `no-stream`. 201 `{"id","version","position","duplicate"}`; 409 if the account exists.
fn open(id: &str, req: &Request) -> Response {
    let body: OpenBody = match req.json() {
        Ok(body) => body,
        Err(err) => return error(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let owner = body.owner.trim();
    if owner.is_empty() || owner.len() > MAX_TEXT_LEN {
        return error(StatusCode::BAD_REQUEST, "owner must be 1-200 bytes");
    }
    if !valid_operation_id(body.operation_id.as_deref()) {
        return invalid_operation_id();
    }
    // Decide as if the account did not exist, and let the store hold us to that assumption:
    // `no-stream` fails if the stream has any event. No read needed.
    let event = match decide(&Account::new(id), &Command::Open { owner: owner.to_owned() }) {
        Ok(event) => event,
        Err(rejection) => return rejected(&rejection),
    };
    let new_event = event.to_new_event(event_id(body.operation_id.as_deref()));
    match event_store::append(&stream_of(id), ExpectedVersion::NoStream, vec![new_event]) {
        Ok(outcome) => json(
            StatusCode::CREATED,
            &json!({
                "id": id,
                "version": outcome.last_version,
                "position": outcome.last_position,
                "duplicate": outcome.duplicate,
            }),
        ),
        Err(AppendError::WrongExpectedVersion { actual, .. }) => {
            json(StatusCode::CONFLICT, &json!({ "error": "account already exists", "actual": actual }))
        }
        Err(err) => append_error(&err),
    }
}

/// Deposit or withdrawal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `POST /accounts/{id}/deposit`.
    Deposit,
    /// `POST /accounts/{id}/withdraw`.
    Withdraw,
}

impl Kind {
    fn command(self, amount: u64) -> Command {
        match self {
            Self::Deposit => Command::Deposit { amount },
            Self::Withdraw => Command::Withdraw { amount },
        }
    }

    fn event(self, amount: u64) -> AccountEvent {
        match self {
            Self::Deposit => AccountEvent::Deposited(Amount { amount }),
            Self::Withdraw => AccountEvent::Withdrawn(Amount { amount }),
        }
    }
}

#[derive(Deserialize)]
struct AmountBody {
    amount: Value,
    #[serde(default)]
    operation_id: Option<String>,
}

/// `POST /accounts/{id}/deposit|withdraw` `{"amount", "operation_id"?}`.
fn transact(id: &str, req: &Request, kind: Kind) -> Response {
    let body: AmountBody = match req.json() {
        Ok(body) => body,
        Err(err) => return error(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let Some(amount) = body.amount.as_u64().filter(|amount| *amount > 0) else {
        return error(StatusCode::BAD_REQUEST, "amount must be a positive integer (cents)");
    };
    if !valid_operation_id(body.operation_id.as_deref()) {
        return invalid_operation_id();
    }
    let history = match event_store::read_stream_all(&stream_of(id)) {
        Ok(history) => history,
        Err(err) => return read_error(&err),
    };
    transact_on(id, &history, kind, amount, body.operation_id.as_deref())
}

/// Decides on `history` (the stream as read) and appends the one resulting event with
/// `exact(last version)`.
///
/// - 404 `{"error":"account not found"}` if the stream is empty;
/// - 422 `{"error":"insufficient funds","balance"}` for a withdrawal beyond the balance;
/// - 409 `{"error":"conflict","actual"}` if the stream moved on since it was read;
/// - 409 `{"error":"idempotency conflict","message"}` if `operation_id` was used for another
///   operation on this account;
/// - 200 `{"id","balance","version","position","duplicate"}` otherwise. With an
///   `operation_id` already in the stream, nothing is appended: `duplicate` is true and the
///   rest describes the original operation.
pub fn transact_on(
    id: &str,
    history: &[RecordedEvent],
    kind: Kind,
    amount: u64,
    operation_id: Option<&str>,
) -> Response {
    let account = Account::replay(id, history);
    if !account.exists() {
        return error(StatusCode::NOT_FOUND, "account not found");
    }
    let event_id = event_id(operation_id);
    if operation_id.is_some()
        && let Some(original) = history.iter().find(|event| event.id == event_id)
    {
        // A retry of an operation already recorded: answer as the original did, even if the
        // decision would now be different (e.g. the funds are gone).
        return if kind.event(amount).matches(original) {
            outcome_response(id, history, original.version, original.position, true)
        } else {
            idempotency_conflict()
        };
    }
    let event = match decide(&account, &kind.command(amount)) {
        Ok(event) => event,
        Err(rejection) => return rejected(&rejection),
    };
    let expected = ExpectedVersion::after(account.version);
    match event_store::append(&stream_of(id), expected, vec![event.to_new_event(event_id)]) {
        Ok(AppendOutcome { duplicate: false, last_version, last_position, .. }) => {
            let mut after = account;
            after.apply(&RecordedEvent {
                version: last_version,
                position: last_position,
                event_type: event.event_type().to_owned(),
                data: event.data(),
                ..RecordedEvent::default()
            });
            ok_response(id, after.balance, last_version, last_position, false)
        }
        // The same operation was appended concurrently (between our read and our append).
        Ok(AppendOutcome { duplicate: true, last_version, last_position, .. }) => {
            match event_store::read_stream_all(&stream_of(id)) {
                Ok(history) => outcome_response(id, &history, last_version, last_position, true),
                Err(err) => read_error(&err),
            }
        }
        Err(AppendError::IdempotencyConflict(_)) => idempotency_conflict(),
        Err(err) => append_error(&err),
    }
}

fn idempotency_conflict() -> Response {
    json(
        StatusCode::CONFLICT,
        &json!({
            "error": "idempotency conflict",
            "message": "operation_id was already used for a different operation on this account",
        }),
    )
}

fn rejected(rejection: &Rejection) -> Response {
    match rejection {
        Rejection::InsufficientFunds { balance } => {
            json(StatusCode::UNPROCESSABLE_ENTITY, &json!({ "error": "insufficient funds", "balance": balance }))
        }
        Rejection::Overflow => error(StatusCode::UNPROCESSABLE_ENTITY, "the balance cannot hold that much"),
        Rejection::NotFound => error(StatusCode::NOT_FOUND, "account not found"),
        Rejection::InvalidAmount => error(StatusCode::BAD_REQUEST, "amount must be a positive integer (cents)"),
        Rejection::AlreadyExists => error(StatusCode::CONFLICT, "account already exists"),
    }
}

/// The 200 answer for the event at `version`, with the balance right after it.
fn outcome_response(id: &str, history: &[RecordedEvent], version: u64, position: u64, duplicate: bool) -> Response {
    let at = Account::replay(id, history.iter().take_while(|event| event.version <= version));
    ok_response(id, at.balance, version, position, duplicate)
}

fn ok_response(id: &str, balance: u64, version: u64, position: u64, duplicate: bool) -> Response {
    json(
        StatusCode::OK,
        &json!({ "id": id, "balance": balance, "version": version, "position": position, "duplicate": duplicate }),
    )
}

/// `GET /accounts/{id}`: the projected record, 404 if there is none (yet).
fn get_account(id: &str) -> Response {
    match kv::get_json::<Account>(&account_key(id)) {
        Ok(Some(account)) => json(StatusCode::OK, &account),
        Ok(None) => error(StatusCode::NOT_FOUND, "account not found (or not projected yet)"),
        Err(err) => kv_error(&err),
    }
}

/// `GET /accounts/{id}/transactions`: the projected transactions in stream order, a JSON
/// array; 404 if the account is not projected (yet).
fn transactions(id: &str) -> Response {
    match kv::get(&account_key(id)) {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, "account not found (or not projected yet)"),
        Err(err) => return kv_error(&err),
    }
    let entries = match kv::list_all(&tx_prefix(id)) {
        Ok(entries) => entries,
        Err(err) => return kv_error(&err),
    };
    let transactions: Result<Vec<Value>, KvError> =
        entries.iter().map(|(key, value)| kv::from_json::<Value>(key, value)).collect();
    match transactions {
        Ok(transactions) => json(StatusCode::OK, &transactions),
        Err(err) => kv_error(&err),
    }
}

/// Parses an optional non-negative integer query parameter; the error is the message.
fn u64_param(req: &Request, name: &str) -> Result<Option<u64>, String> {
    match req.query_param(name) {
        None => Ok(None),
        Some(value) => value.parse::<u64>().map(Some).map_err(|_| format!("{name} must be a non-negative integer")),
    }
}

/// `GET /accounts/{id}/replay[?as_of_version=N][&as_of=MS]`: the account rebuilt from its
/// stream now, optionally only from the events up to version N and/or recorded up to MS
/// milliseconds since the epoch. 200 `{"id","owner","balance","version","events"}`; 404 if no
/// event qualifies.
fn replay(id: &str, req: &Request) -> Response {
    let (as_of_version, as_of) = match (u64_param(req, "as_of_version"), u64_param(req, "as_of")) {
        (Ok(as_of_version), Ok(as_of)) => (as_of_version, as_of),
        (Err(message), _) | (_, Err(message)) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let history = match event_store::read_stream_all(&stream_of(id)) {
        Ok(history) => history,
        Err(err) => return read_error(&err),
    };
    if history.is_empty() {
        return error(StatusCode::NOT_FOUND, "account not found");
    }
    let (account, events) = replay_as_of(id, &history, as_of_version, as_of);
    if events == 0 {
        return error(StatusCode::NOT_FOUND, "the account did not exist yet at that point");
    }
    json(
        StatusCode::OK,
        &json!({
            "id": id,
            "owner": account.owner,
            "balance": account.balance,
            "version": account.version,
            "events": events,
        }),
    )
}

#[cfg(test)]
mod tests {
    use faas_sdk::event_store::NewEvent;
    use faas_sdk::{Body, testing};

    use super::*;

    fn request(method: Method, uri: &str, body: Value) -> Request {
        let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
        faas_sdk::http::Request::builder().method(method).uri(uri).body(body).expect("a request")
    }

    /// Sends a request; returns the status and the JSON body.
    fn send(method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        let response = handle(&request(method, uri, body));
        let status = response.status();
        let body = response.body().json().unwrap_or(Value::Null);
        (status, body)
    }

    fn post(uri: &str, body: Value) -> (StatusCode, Value) {
        send(Method::POST, uri, body)
    }

    fn get(uri: &str) -> (StatusCode, Value) {
        send(Method::GET, uri, Value::Null)
    }

    /// Runs the projection over everything appended so far, as the subscription would.
    fn project_all() {
        let events = event_store::read_all(1, 10_000).expect("reads");
        crate::projection::project(&events).expect("projects");
    }

    #[test]
    fn routes() {
        let get = |path: &str| route(&Method::GET, path);
        let post = |path: &str| route(&Method::POST, path);
        assert_eq!(post("/accounts/42/open"), Route::Open("42".into()));
        assert_eq!(post("/accounts/42/deposit"), Route::Deposit("42".into()));
        assert_eq!(post("/accounts/42/withdraw/"), Route::Withdraw("42".into()));
        assert_eq!(get("/accounts/42"), Route::Get("42".into()));
        assert_eq!(get("/accounts/a%40b"), Route::Get("a@b".into()));
        assert_eq!(get("/accounts/42/transactions"), Route::Transactions("42".into()));
        assert_eq!(get("/accounts/42/replay"), Route::Replay("42".into()));
        assert_eq!(get("/accounts/42/open"), Route::MethodNotAllowed("POST"));
        assert_eq!(post("/accounts/42"), Route::MethodNotAllowed("GET"));
        assert_eq!(route(&Method::DELETE, "/accounts/42/replay"), Route::MethodNotAllowed("GET"));
        assert_eq!(get("/accounts/a%20b"), Route::InvalidId);
        assert_eq!(get("/accounts/a%2Fb/replay"), Route::InvalidId);
        assert_eq!(get("/accounts"), Route::NotFound);
        assert_eq!(get("/accounts/42/close"), Route::NotFound);
        assert_eq!(get("/accounts/42/replay/x"), Route::NotFound);
        assert_eq!(get("/other/42"), Route::NotFound);
    }

    #[test]
    fn routing_responses() {
        testing::reset();
        let response = handle(&request(Method::GET, "/accounts/1/deposit", Value::Null));
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "POST");
        assert_eq!(get("/accounts/bad%20id").0, StatusCode::BAD_REQUEST);
        assert_eq!(get("/nope"), (StatusCode::NOT_FOUND, json!({"error": "not found"})));
    }

    #[test]
    fn open_an_account() {
        testing::reset();
        let (status, body) = post("/accounts/42/open", json!({"owner": "Ann"}));
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body, json!({"id": "42", "version": 0, "position": 1, "duplicate": false}));
        let (status, body) = post("/accounts/42/open", json!({"owner": "Bob"}));
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body, json!({"error": "account already exists", "actual": 0}));

        assert_eq!(post("/accounts/43/open", json!({"owner": "  "})).0, StatusCode::BAD_REQUEST);
        assert_eq!(post("/accounts/43/open", json!({"name": "x"})).0, StatusCode::BAD_REQUEST);
        assert_eq!(post("/accounts/43/open", Value::Null).0, StatusCode::BAD_REQUEST);
        assert_eq!(post("/accounts/43/open", json!({"owner": "x", "operation_id": ""})).0, StatusCode::BAD_REQUEST);

        // With an operation id, a retried open is a duplicate, not a conflict.
        let first = post("/accounts/44/open", json!({"owner": "Cy", "operation_id": "open-44"}));
        let retry = post("/accounts/44/open", json!({"owner": "Cy", "operation_id": "open-44"}));
        assert_eq!(first.0, StatusCode::CREATED);
        assert_eq!(retry, (StatusCode::CREATED, json!({"id": "44", "version": 0, "position": 2, "duplicate": true})));
    }

    #[test]
    fn deposits_and_withdrawals() {
        testing::reset();
        post("/accounts/7/open", json!({"owner": "Ann"}));
        let (status, body) = post("/accounts/7/deposit", json!({"amount": 1000}));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"id": "7", "balance": 1000, "version": 1, "position": 2, "duplicate": false}));
        let (status, body) = post("/accounts/7/withdraw", json!({"amount": 300}));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"id": "7", "balance": 700, "version": 2, "position": 3, "duplicate": false}));

        let (status, body) = post("/accounts/7/withdraw", json!({"amount": 701}));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body, json!({"error": "insufficient funds", "balance": 700}));
        assert_eq!(
            post("/accounts/8/deposit", json!({"amount": 1})),
            (StatusCode::NOT_FOUND, json!({"error": "account not found"}))
        );
        for amount in [json!(0), json!(-5), json!(1.5), json!("10"), Value::Null] {
            let (status, body) = post("/accounts/7/deposit", json!({ "amount": amount }));
            assert_eq!(status, StatusCode::BAD_REQUEST, "{amount}");
            assert_eq!(body, json!({"error": "amount must be a positive integer (cents)"}));
        }
        assert_eq!(post("/accounts/7/deposit", json!({})).0, StatusCode::BAD_REQUEST);
        assert_eq!(post("/accounts/7/deposit", json!({"amount": u64::MAX})).0, StatusCode::UNPROCESSABLE_ENTITY);
        // Nothing but the three successful commands was appended.
        assert_eq!(event_store::read_stream_all("account-7").expect("reads").len(), 3);
    }

    #[test]
    fn operations_are_idempotent() {
        testing::reset();
        post("/accounts/7/open", json!({"owner": "Ann"}));
        post("/accounts/7/deposit", json!({"amount": 100}));
        let withdraw = json!({"amount": 100, "operation_id": "w-1"});
        let (status, first) = post("/accounts/7/withdraw", withdraw.clone());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(first, json!({"id": "7", "balance": 0, "version": 2, "position": 3, "duplicate": false}));
        // The retry finds the operation in the stream, although the funds are gone now.
        let (status, retry) = post("/accounts/7/withdraw", withdraw.clone());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(retry, json!({"id": "7", "balance": 0, "version": 2, "position": 3, "duplicate": true}));
        post("/accounts/7/deposit", json!({"amount": 5}));
        let (_, later) = post("/accounts/7/withdraw", withdraw);
        assert_eq!(later["duplicate"], true);
        assert_eq!((later["version"].clone(), later["balance"].clone()), (json!(2), json!(0)));
        let stream = event_store::read_stream_all("account-7").expect("reads");
        assert_eq!(stream.len(), 4);
        assert_eq!(stream[2].id, event_store::deterministic_id(b"bank-account", b"w-1"));

        // Reusing the id for something else is refused.
        let (status, body) = post("/accounts/7/deposit", json!({"amount": 100, "operation_id": "w-1"}));
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"], "idempotency conflict");
    }

    #[test]
    fn a_stale_decision_is_a_conflict() {
        testing::reset();
        post("/accounts/7/open", json!({"owner": "Ann"}));
        let stale = event_store::read_stream_all("account-7").expect("reads");
        post("/accounts/7/deposit", json!({"amount": 100}));
        // A writer that read before the deposit loses the race.
        let response = transact_on("7", &stale, Kind::Deposit, 1, None);
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.body().json::<Value>().expect("json"), json!({"error": "conflict", "actual": 1}));

        // ... unless it was the same operation, appended by a concurrent retry.
        post("/accounts/7/deposit", json!({"amount": 5, "operation_id": "d-5"}));
        let response = transact_on("7", &stale, Kind::Deposit, 5, Some("d-5"));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.body().json::<Value>().expect("json"),
            json!({"id": "7", "balance": 105, "version": 2, "position": 3, "duplicate": true})
        );
    }

    #[test]
    fn queries_read_the_projection() {
        testing::reset();
        testing::set_clock(Some(1_000));
        post("/accounts/7/open", json!({"owner": "Ann"}));
        post("/accounts/7/deposit", json!({"amount": 1000}));
        assert_eq!(get("/accounts/7").0, StatusCode::NOT_FOUND, "not projected yet");
        assert_eq!(get("/accounts/7/transactions").0, StatusCode::NOT_FOUND);
        project_all();
        testing::set_clock(Some(2_000));
        post("/accounts/7/withdraw", json!({"amount": 250}));
        project_all();

        let (status, body) = get("/accounts/7");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({
                "id": "7", "owner": "Ann", "balance": 750, "version": 2, "position": 3,
                "transactions": 2, "updated_at": 2000,
            })
        );
        let (status, body) = get("/accounts/7/transactions");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!([
                {"type": "Deposited", "amount": 1000, "version": 1, "position": 2, "recorded_at": 1000},
                {"type": "Withdrawn", "amount": 250, "version": 2, "position": 3, "recorded_at": 2000},
            ])
        );
        assert_eq!(get("/accounts/8").0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn replay_and_time_travel() {
        testing::reset();
        testing::set_clock(Some(1_000));
        post("/accounts/7/open", json!({"owner": "Ann"}));
        post("/accounts/7/deposit", json!({"amount": 1000}));
        testing::set_clock(Some(2_000));
        post("/accounts/7/withdraw", json!({"amount": 250}));

        let now = json!({"id": "7", "owner": "Ann", "balance": 750, "version": 2, "events": 3});
        assert_eq!(get("/accounts/7/replay"), (StatusCode::OK, now));
        let (_, v1) = get("/accounts/7/replay?as_of_version=1");
        assert_eq!(
            (v1["balance"].clone(), v1["version"].clone(), v1["events"].clone()),
            (json!(1000), json!(1), json!(2))
        );
        let (_, t) = get("/accounts/7/replay?as_of=1999");
        assert_eq!((t["balance"].clone(), t["version"].clone()), (json!(1000), json!(1)));
        let (_, t) = get("/accounts/7/replay?as_of=2000");
        assert_eq!(t["balance"], 750);
        let (_, v0) = get("/accounts/7/replay?as_of_version=0");
        assert_eq!((v0["balance"].clone(), v0["events"].clone()), (json!(0), json!(1)));
        assert_eq!(get("/accounts/7/replay?as_of=999").0, StatusCode::NOT_FOUND);
        assert_eq!(get("/accounts/7/replay?as_of_version=-1").0, StatusCode::BAD_REQUEST);
        assert_eq!(get("/accounts/7/replay?as_of=soon").0, StatusCode::BAD_REQUEST);
        assert_eq!(get("/accounts/8/replay").0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn unknown_events_do_not_break_the_command_side() {
        testing::reset();
        post("/accounts/7/open", json!({"owner": "Ann"}));
        event_store::append("account-7", ExpectedVersion::Any, vec![NewEvent::new("Audited", b"{}".to_vec())])
            .expect("appends");
        let (status, body) = post("/accounts/7/deposit", json!({"amount": 1}));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["version"], 2);
    }
}
