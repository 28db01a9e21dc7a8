//! `/v1/sagas` and `/v1/transactions`: status of sagas (steps, attempts, errors, timestamps, the
//! journal), operator resolution of stuck sagas, and the two-phase-commit log. The report types
//! are shared with GraphQL.

use super::Admin;
use crate::error::ApiError;
use crate::store::format_time;
use crate::store::workflows::{Invocation, SagaRecord, SagaStatus, TxRecord, TxStatus, payload};
use crate::workflows::saga_state::StepStatus;
use crate::workflows::sagas::SagaView;
use async_graphql::SimpleObject;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    limit: Option<u32>,
}

impl ListParams {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
    }
}

fn parse_status<T>(text: Option<&str>, parse: fn(&str) -> Option<T>, all: &[&str]) -> Result<Option<T>, ApiError> {
    text.map(|s| {
        parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_status", format!("unknown status `{s}`; one of: {}", all.join(", ")))
        })
    })
    .transpose()
}

pub async fn list_sagas(
    State(admin): State<Arc<Admin>>,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<SagaSummary>>, ApiError> {
    let all = SagaStatus::ALL.map(SagaStatus::as_str);
    let status = parse_status(params.status.as_deref(), SagaStatus::parse, &all)?;
    let sagas = admin.workflows.sagas.list(status, params.limit()).await?;
    Ok(Json(sagas.iter().map(SagaSummary::from).collect()))
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

pub async fn list_transactions(
    State(admin): State<Arc<Admin>>,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<TxReport>>, ApiError> {
    let all = TxStatus::ALL.map(TxStatus::as_str);
    let status = parse_status(params.status.as_deref(), TxStatus::parse, &all)?;
    let records = admin.workflows.transactions.list(status, params.limit()).await?;
    Ok(Json(records.into_iter().map(TxReport::from).collect()))
}

pub async fn get_transaction(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<TxReport>, ApiError> {
    let record = admin.workflows.transactions.get(&id).await?;
    record.map(|r| Json(r.into())).ok_or_else(|| ApiError::not_found(format!("transaction `{id}` not found")))
}
