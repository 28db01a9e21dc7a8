//! `/v1/sagas` and `/v1/transactions`: status of sagas (steps, attempts, errors, timestamps, the
//! journal), operator resolution of stuck sagas, and the two-phase-commit log. The report types
//! are shared with GraphQL.

use super::Admin;
use super::extract::{Path, Query};
use super::paging;
use crate::capabilities::workflow_handle::SagaView;
use crate::error::ApiError;
use crate::store::format_time;
use crate::store::saga_state::StepStatus;
use crate::store::workflows::{Cursor, Invocation, ListQuery, SagaRecord, SagaStatus, TxRecord, TxStatus, payload};
use async_graphql::SimpleObject;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize, SimpleObject)]
pub struct SagaSummary {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub idempotency_key: String,
    pub status: SagaStatus,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The trace its steps' spans belong to (32 hex digits), when it was started traced.
    pub trace_id: Option<String>,
}

impl From<&SagaRecord> for SagaSummary {
    fn from(record: &SagaRecord) -> Self {
        Self {
            id: record.id.clone(),
            name: record.definition.name.clone(),
            namespace: record.namespace.clone(),
            idempotency_key: record.idempotency_key.clone(),
            status: record.status,
            error: record.error.clone(),
            created_at: format_time(record.created_at_ms),
            updated_at: format_time(record.updated_at_ms),
            // `version-traceid-spanid-flags`.
            trace_id: record.trace_parent.as_deref().and_then(|t| t.split('-').nth(1)).map(str::to_owned),
        }
    }
}

#[derive(Serialize, SimpleObject)]
pub struct InvocationReport {
    pub function: String,
    /// As text when it is UTF-8 (usually JSON), else `hex:…`.
    pub payload: String,
}

impl From<&Invocation> for InvocationReport {
    fn from(invocation: &Invocation) -> Self {
        Self { function: invocation.function.clone(), payload: payload::to_text(&invocation.payload) }
    }
}

#[derive(Serialize, SimpleObject)]
pub struct StepReport {
    pub name: String,
    pub status: StepStatus,
    pub action: InvocationReport,
    pub compensation: Option<InvocationReport>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub compensation_attempts: u32,
    pub last_error: Option<String>,
    pub output: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub compensated_at: Option<String>,
}

#[derive(Serialize, SimpleObject)]
pub struct JournalLine {
    pub seq: u64,
    pub at: String,
    #[graphql(skip)]
    pub entry: serde_json::Value,
    /// The entry as JSON.
    #[serde(skip)]
    #[graphql(name = "entry")]
    pub entry_json: String,
}

#[derive(Serialize, SimpleObject)]
pub struct SagaReport {
    #[serde(flatten)]
    #[graphql(flatten)]
    pub summary: SagaSummary,
    pub input: String,
    pub owner: String,
    pub steps: Vec<StepReport>,
    pub journal: Vec<JournalLine>,
}

impl From<SagaView> for SagaReport {
    fn from(view: SagaView) -> Self {
        let SagaView { record, state, journal } = view;
        let mut summary = SagaSummary::from(&record);
        summary.status = state.status;
        let steps = record
            .definition
            .steps
            .iter()
            .zip(&state.steps)
            .map(|(definition, step)| StepReport {
                name: definition.name.clone(),
                status: step.status(state.status),
                action: (&definition.action).into(),
                compensation: definition.compensation.as_ref().map(Into::into),
                attempts: step.attempts,
                max_attempts: definition.max_attempts,
                compensation_attempts: step.compensation_attempts,
                last_error: step.last_error.clone(),
                output: step.output.as_deref().map(payload::to_text),
                started_at: step.started_at_ms.map(format_time),
                finished_at: step.finished_at_ms.map(format_time),
                compensated_at: step.compensated_at_ms.map(format_time),
            })
            .collect();
        let journal = journal
            .into_iter()
            .map(|line| {
                let entry = serde_json::to_value(&line.entry).unwrap_or_default();
                JournalLine { seq: line.seq, at: format_time(line.at_ms), entry_json: entry.to_string(), entry }
            })
            .collect();
        Self { summary, input: payload::to_text(&record.definition.input), owner: record.owner, steps, journal }
    }
}

#[derive(Serialize, SimpleObject)]
pub struct ParticipantReport {
    pub function: String,
    pub payload: String,
    /// `commit`, or why it did not vote commit; none before it voted.
    pub vote: Option<String>,
}

#[derive(Serialize, SimpleObject)]
pub struct TxReport {
    pub id: String,
    pub namespace: String,
    pub idempotency_key: Option<String>,
    pub status: TxStatus,
    pub reason: Option<String>,
    pub owner: String,
    pub participants: Vec<ParticipantReport>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<TxRecord> for TxReport {
    fn from(record: TxRecord) -> Self {
        Self {
            id: record.id,
            namespace: record.namespace,
            idempotency_key: record.idempotency_key,
            status: record.status,
            reason: record.reason,
            owner: record.owner,
            participants: record
                .participants
                .iter()
                .map(|p| ParticipantReport {
                    function: p.call.function.clone(),
                    payload: payload::to_text(&p.call.payload),
                    vote: p.vote.clone(),
                })
                .collect(),
            created_at: format_time(record.created_at_ms),
            updated_at: format_time(record.updated_at_ms),
        }
    }
}

/// `?status=&namespace=&key=&limit=&after=`: filters (a key is looked up within its namespace)
/// and a page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    namespace: Option<String>,
    key: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

impl ListParams {
    fn query<S>(self, parse: fn(&str) -> Option<S>, all: &[&str]) -> Result<ListQuery<S>, ApiError> {
        if self.key.is_some() && self.namespace.is_none() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "an idempotency key is unique within its namespace: pass `namespace` (the calling function) with `key`",
            ));
        }
        let status = parse_status(self.status.as_deref(), parse, all)?;
        let after = match self.after.as_deref() {
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| paging::invalid_cursor(text))?),
            None => None,
        };
        Ok(ListQuery {
            status,
            namespace: self.namespace,
            idempotency_key: self.key,
            after,
            limit: paging::limit(self.limit)?,
        })
    }
}

pub(super) fn parse_status<T>(
    text: Option<&str>,
    parse: fn(&str) -> Option<T>,
    all: &[&str],
) -> Result<Option<T>, ApiError> {
    text.map(|s| {
        parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_status", format!("unknown status `{s}`; one of: {}", all.join(", ")))
        })
    })
    .transpose()
}

/// A page of sagas, newest first: `{"sagas": [...], "next": <cursor or null>}`.
pub async fn list_sagas(
    State(admin): State<Arc<Admin>>,
    Query(params): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all = SagaStatus::ALL.map(SagaStatus::as_str);
    let query = params.query(SagaStatus::parse, &all)?;
    let page = admin.workflows.sagas.list(&query).await?;
    let sagas: Vec<SagaSummary> = page.items.iter().map(SagaSummary::from).collect();
    Ok(Json(serde_json::json!({ "sagas": sagas, "next": page.next.map(|c| c.encode()) })))
}

pub async fn get_saga(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Result<Json<SagaReport>, ApiError> {
    Ok(Json(admin.workflows.sagas.view(&id).await?.into()))
}

pub async fn resume_saga(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<SagaReport>, ApiError> {
    Ok(Json(admin.workflows.sagas.resolve(&id, false).await?.into()))
}

pub async fn skip_saga(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Result<Json<SagaReport>, ApiError> {
    Ok(Json(admin.workflows.sagas.resolve(&id, true).await?.into()))
}

/// A page of transactions, newest first: `{"transactions": [...], "next": <cursor or null>}`.
pub async fn list_transactions(
    State(admin): State<Arc<Admin>>,
    Query(params): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all = TxStatus::ALL.map(TxStatus::as_str);
    let query = params.query(TxStatus::parse, &all)?;
    let page = admin.workflows.transactions.list(&query).await?;
    let next = page.next.map(|c| c.encode());
    let transactions: Vec<TxReport> = page.items.into_iter().map(TxReport::from).collect();
    Ok(Json(serde_json::json!({ "transactions": transactions, "next": next })))
}

pub async fn get_transaction(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<TxReport>, ApiError> {
    let record = admin.workflows.transactions.get(&id).await?;
    record.map(|r| Json(r.into())).ok_or_else(|| ApiError::not_found(format!("transaction `{id}` not found")))
}
