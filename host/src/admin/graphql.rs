//! The GraphQL query side (`POST /graphql`; the GraphiQL page on GET is `dashboard`'s):
//! functions and their versions, streams (paged events with metadata), subscriptions
//! (checkpoint, lag, parked events), sagas (steps, attempts, errors, journal) and two-phase-commit
//! transactions. Read-only; the same token as the REST API.

use super::Admin;
use super::extract::Json;
use super::graphql_depth;
use super::paging::MAX_LIMIT;
use super::workflows::{SagaReport, SagaSummary, TxReport};
use crate::capabilities::event_store::metadata_from_json;
use crate::capabilities::workflow_handle::SagaError;
use crate::store::events::{Direction, ParkedEvent, RecordedEvent};
use crate::store::workflows::{Cursor, ListQuery, SagaStatus, TxStatus};
use crate::store::{FunctionRecord, VersionRecord, format_time};
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, InputValueError, InputValueResult, Object, Result, Scalar, ScalarType,
    Schema, ServerError, SimpleObject, Value,
};
use axum::extract::State;
use axum::response::IntoResponse;
use std::sync::Arc;

pub type FaasSchema = Schema<Query, EmptyMutation, EmptySubscription>;

const MAX_PAGE: u32 = 1000;

/// Depth is bounded by [`graphql_depth`] before execution (data and introspection apart).
pub fn schema(admin: Arc<Admin>) -> FaasSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription).data(admin).finish()
}

pub async fn execute(
    State(schema): State<FaasSchema>,
    Json(request): Json<async_graphql::Request>,
) -> impl IntoResponse {
    // A query that does not parse is left to the executor, which reports the syntax error.
    if let Ok(document) = async_graphql::parser::parse_query(&request.query)
        && let Err(message) = graphql_depth::check(&document)
    {
        return axum::Json(async_graphql::Response::from_errors(vec![ServerError::new(message, None)]));
    }
    axum::Json(schema.execute(request).await)
}

/// A 64-bit unsigned integer (a position, a version, a size). GraphQL's `Int` is 32-bit, so it
/// is sent as a decimal string; input takes a string or a number, and `"end"` for the last one
/// (a position or version past every other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct U64(pub u64);

#[Scalar(name = "U64")]
impl ScalarType for U64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => {
                n.as_u64().map(U64).ok_or_else(|| InputValueError::custom("not a non-negative integer"))
            }
            Value::String(text) if text == "end" => Ok(U64(u64::MAX)),
            Value::String(text) => {
                text.parse().map(U64).map_err(|_| InputValueError::custom(format!("`{text}` is not a U64 or \"end\"")))
            }
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// Namespaces and streams are checked as everywhere else (`capabilities::validate_address`).
fn check_address(namespace: &str, stream: &str) -> Result<()> {
    crate::model::names::validate_address(namespace, stream).map_err(async_graphql::Error::new)
}

fn list_query<S>(
    status: Option<S>,
    namespace: Option<String>,
    key: Option<String>,
    first: u32,
    after: Option<String>,
) -> Result<ListQuery<S>> {
    if key.is_some() && namespace.is_none() {
        return Err("an idempotency key is unique within its namespace: pass `namespace` with `key`".into());
    }
    let after = match after {
        Some(text) => Some(Cursor::decode(&text).ok_or_else(|| format!("`{text}` is not a cursor of this list"))?),
        None => None,
    };
    Ok(ListQuery { status, namespace, idempotency_key: key, after, limit: first.clamp(1, MAX_LIMIT) })
}

fn admin<'a>(ctx: &Context<'a>) -> &'a Arc<Admin> {
    ctx.data_unchecked::<Arc<Admin>>()
}

pub struct Query;

#[Object]
impl Query {
    /// Every deployed function.
    async fn functions(&self, ctx: &Context<'_>) -> Result<Vec<Function>> {
        Ok(admin(ctx).registry.functions().await?.into_iter().map(Function).collect())
    }

    async fn function(&self, ctx: &Context<'_>, name: String) -> Result<Option<Function>> {
        Ok(admin(ctx).stores.functions.function(&name).await?.map(Function))
    }

    /// A page of one stream's events, from `fromVersion` (inclusive; default: the start, or the
    /// end when backward; `"end"` names the last version).
    async fn stream(
        &self,
        ctx: &Context<'_>,
        namespace: String,
        stream: String,
        from_version: Option<U64>,
        #[graphql(default = 100)] first: u32,
        #[graphql(default = false)] backward: bool,
    ) -> Result<EventPage> {
        check_address(&namespace, &stream)?;
        let direction = if backward { Direction::Backward } else { Direction::Forward };
        let from = from_version.map_or(if backward { u64::MAX } else { 0 }, |v| v.0);
        let first = first.min(MAX_PAGE);
        let events = admin(ctx).stores.events.read_stream(&namespace, &stream, from, direction, first + 1).await?;
        let next = if backward { |e: &Event| e.0.version.checked_sub(1) } else { |e: &Event| Some(e.0.version + 1) };
        Ok(EventPage::new(events, first, next))
    }

    /// A page of the global log of the given namespaces, from `fromPosition` (inclusive, default 1).
    async fn events(
        &self,
        ctx: &Context<'_>,
        namespaces: Vec<String>,
        from_position: Option<U64>,
        #[graphql(default = 100)] first: u32,
    ) -> Result<EventPage> {
        for namespace in &namespaces {
            crate::model::names::validate_name(namespace).map_err(async_graphql::Error::new)?;
        }
        let names: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        let first = first.min(MAX_PAGE);
        let from = from_position.map_or(1, |p| p.0);
        let events = admin(ctx).stores.events.read_all(&names, from, first + 1).await?;
        Ok(EventPage::new(events, first, |e: &Event| Some(e.0.position + 1)))
    }

    /// The last global position handed out.
    async fn head_position(&self, ctx: &Context<'_>) -> Result<U64> {
        Ok(U64(admin(ctx).stores.events.head().await?))
    }

    /// One saga: its steps (attempts, errors, timestamps) and journal.
    async fn saga(&self, ctx: &Context<'_>, id: String) -> Result<Option<SagaReport>> {
        match admin(ctx).workflows.sagas.view(&id).await {
            Ok(view) => Ok(Some(view.into())),
            Err(SagaError::NotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// A page of sagas, newest first, optionally of one status, namespace, or idempotency key
    /// (with its namespace); pass `next` as `after` for the next page.
    async fn sagas(
        &self,
        ctx: &Context<'_>,
        status: Option<SagaStatus>,
        namespace: Option<String>,
        key: Option<String>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
    ) -> Result<SagaPage> {
        let query = list_query(status, namespace, key, first, after)?;
        let page = admin(ctx).workflows.sagas.list(&query).await?;
        Ok(SagaPage { sagas: page.items.iter().map(SagaSummary::from).collect(), next: page.next.map(|c| c.encode()) })
    }

    /// One two-phase-commit transaction from the coordinator's log.
    async fn transaction(&self, ctx: &Context<'_>, id: String) -> Result<Option<TxReport>> {
        Ok(admin(ctx).workflows.transactions.get(&id).await?.map(TxReport::from))
    }

    /// A page of transactions, newest first (filters and paging as for `sagas`).
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        status: Option<TxStatus>,
        namespace: Option<String>,
        key: Option<String>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
    ) -> Result<TxPage> {
        let query = list_query(status, namespace, key, first, after)?;
        let page = admin(ctx).workflows.transactions.list(&query).await?;
        let next = page.next.map(|c| c.encode());
        Ok(TxPage { transactions: page.items.into_iter().map(TxReport::from).collect(), next })
    }
}

#[derive(SimpleObject)]
pub struct SagaPage {
    sagas: Vec<SagaSummary>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

#[derive(SimpleObject)]
pub struct TxPage {
    transactions: Vec<TxReport>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

/// Events and the cursor of the next page (`null` at the end).
#[derive(SimpleObject)]
pub struct EventPage {
    events: Vec<Event>,
    /// Pass as `fromVersion` (stream) or `fromPosition` (events) for the next page.
    next: Option<U64>,
}

impl EventPage {
    fn new(events: Vec<RecordedEvent>, first: u32, next: impl Fn(&Event) -> Option<u64>) -> Self {
        let mut events: Vec<Event> = events.into_iter().map(Event).collect();
        let more = events.len() > first as usize;
        events.truncate(first as usize);
        let next = if more { events.last().and_then(next).map(U64) } else { None };
        Self { events, next }
    }
}

pub struct Function(FunctionRecord);

#[Object]
impl Function {
    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn active_version(&self) -> Option<u32> {
        self.0.active_version
    }

    async fn versions(&self) -> Vec<Version> {
        self.0.versions.iter().cloned().map(Version).collect()
    }

    async fn created_at(&self) -> String {
        format_time(self.0.created_at_ms)
    }

    async fn updated_at(&self) -> String {
        format_time(self.0.updated_at_ms)
    }

    /// Checkpoint, head and lag of each subscription of the active version.
    async fn subscriptions(&self, ctx: &Context<'_>) -> Result<Vec<Subscription>> {
        let Some(function) = admin(ctx).registry.active(&self.0.name) else { return Ok(Vec::new()) };
        let statuses = admin(ctx).subscriptions.status(&function).await?;
        Ok(statuses
            .into_iter()
            .map(|s| Subscription {
                stream: s.stream,
                checkpoint: s.checkpoint.map(U64),
                head: U64(s.head),
                lag: U64(s.lag),
            })
            .collect())
    }

    /// Events its subscriptions gave up on, oldest first: `first` of them after id `after`.
    async fn parked(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        #[graphql(default = 0)] after: i64,
    ) -> Result<Vec<Parked>> {
        let first = first.clamp(1, MAX_LIMIT);
        Ok(admin(ctx).stores.subscriptions.parked(&self.0.name, after, first).await?.into_iter().map(Parked).collect())
    }
}

pub struct Version(VersionRecord);

#[Object]
impl Version {
    async fn version(&self) -> u32 {
        self.0.version
    }

    async fn sha256(&self) -> &str {
        &self.0.sha256
    }

    async fn size_bytes(&self) -> U64 {
        U64(self.0.size_bytes)
    }

    async fn routes(&self) -> &[String] {
        &self.0.spec.triggers.http
    }

    async fn subscribed_streams(&self) -> Vec<&str> {
        self.0.spec.triggers.subscriptions.iter().map(|s| s.stream.as_str()).collect()
    }

    async fn memory_bytes(&self) -> U64 {
        U64(self.0.spec.limits.memory_bytes)
    }

    async fn timeout_ms(&self) -> U64 {
        U64(self.0.spec.limits.timeout_ms)
    }

    async fn max_concurrency(&self) -> u32 {
        self.0.spec.limits.max_concurrency
    }

    async fn created_at(&self) -> String {
        format_time(self.0.created_at_ms)
    }
}

#[derive(SimpleObject)]
pub struct Subscription {
    stream: String,
    checkpoint: Option<U64>,
    head: U64,
    lag: U64,
}

pub struct Parked(ParkedEvent);

#[Object]
impl Parked {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn subscription(&self) -> &str {
        &self.0.subscription
    }

    async fn position(&self) -> U64 {
        U64(self.0.position)
    }

    async fn error(&self) -> &str {
        &self.0.error
    }

    async fn attempts(&self) -> u32 {
        self.0.attempts
    }

    async fn parked_at(&self) -> String {
        format_time(self.0.parked_at_ms)
    }

    async fn replayed_at(&self) -> Option<String> {
        self.0.replayed_at_ms.map(format_time)
    }
}

pub struct Event(RecordedEvent);

#[derive(SimpleObject)]
pub struct Metadata {
    correlation_id: Option<String>,
    causation_id: Option<String>,
    custom: Vec<Field>,
}

#[derive(SimpleObject)]
pub struct Field {
    key: String,
    value: String,
}

#[Object]
impl Event {
    async fn id(&self) -> &str {
        &self.0.id
    }

    async fn namespace(&self) -> &str {
        &self.0.namespace
    }

    async fn stream(&self) -> &str {
        &self.0.stream
    }

    async fn version(&self) -> U64 {
        U64(self.0.version)
    }

    async fn position(&self) -> U64 {
        U64(self.0.position)
    }

    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// The payload as text (usually JSON); lossy if it is not UTF-8.
    async fn data(&self) -> String {
        String::from_utf8_lossy(&self.0.data).into_owned()
    }

    async fn metadata(&self) -> Metadata {
        let m = metadata_from_json(&self.0.metadata);
        Metadata {
            correlation_id: m.correlation_id,
            causation_id: m.causation_id,
            custom: m.custom.into_iter().map(|(key, value)| Field { key, value }).collect(),
        }
    }

    async fn recorded_at(&self) -> String {
        format_time(self.0.recorded_at_ms)
    }
}
