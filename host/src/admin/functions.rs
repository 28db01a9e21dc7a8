//! `/v1/functions`: deploy, list, get, activate (rollback), delete; a function's variables and
//! secrets (`/config`: secret values are never returned).

use super::Admin;
use super::extract::{Json as JsonBody, Path, Query};
use super::paging;
use crate::error::ApiError;
use crate::model::spec::DeploySpec;
use crate::model::variables::ConfigChange;
use crate::store::{FunctionRecord, format_time};
use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::sync::Arc;

/// `?limit=&after=<name>`: by name; `next` is the `after` of the next page.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    after: Option<String>,
}

pub async fn list(
    State(admin): State<Arc<Admin>>,
    Query(params): Query<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = paging::limit(params.limit)?;
    let mut functions = admin.registry.functions().await?;
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    let (page, next) = paging::slice(functions, params.after.as_ref(), limit, |f| f.name.clone());
    Ok(Json(json!({ "functions": page.iter().map(summary).collect::<Vec<_>>(), "next": next })))
}

pub async fn get(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let function = admin.registry.function(&name).await?;
    let mut view = summary(&function);
    view["versions"] = json!(function.versions);
    // What this node runs: a tiered deploy is on Winch until Cranelift's build is swapped in.
    view["compiler"] = json!(admin.registry.active(&name).map(|f| f.compiler.as_str()));
    Ok(Json(view))
}

pub async fn delete(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    admin.registry.delete(&name).await?;
    crate::function_logs::FunctionLogs::global().forget(&name);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn activate(
    State(admin): State<Arc<Admin>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let version: u32 = version
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_version", format!("`{version}` is not a version number")))?;
    let record = admin.registry.activate(&name, version).await?;
    Ok(Json(json!({ "function": name, "active_version": record.version, "sha256": record.sha256 })))
}

/// `GET /v1/functions/{name}/config`: the active version's variables (with values) and secrets
/// (names only).
pub async fn get_config(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(admin.registry.config(&name).await?))
}

/// `PATCH /v1/functions/{name}/config` with `{"variables":{..},"secrets":{..},"unset":[..]}`:
/// one new config version, live without a redeploy.
pub async fn patch_config(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<ConfigChange>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(admin.registry.set_config(&name, change).await?))
}

/// `multipart/form-data` with a `component` part (the wasm bytes), an optional `config` part
/// (JSON [`DeploySpec`]: triggers and limits) and an optional `values` part (JSON
/// `{"variables":{..},"secrets":{..}}`, applied on top of the active version's).
pub async fn deploy(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let mut multipart = multipart.map_err(|r| {
        ApiError::bad_request(
            "invalid_multipart",
            format!("{}: send multipart/form-data with a `component` part", r.body_text()),
        )
    })?;
    let mut spec = DeploySpec::default();
    let mut component = None;
    let mut change = ConfigChange::default();
    // A refusal waits until the whole upload is read: answering while the client still sends
    // the component would reset its connection, and it would see that instead of the reason.
    let mut refused: Option<ApiError> = None;
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("config") => {
                let text = field.text().await?;
                match serde_json::from_str(&text) {
                    Ok(parsed) => spec = parsed,
                    Err(e) => {
                        let message = format!("the `config` part is not a valid deploy spec: {e}");
                        refused.get_or_insert(ApiError::bad_request("invalid_spec", message));
                    }
                }
            }
            Some("component") => component = Some(field.bytes().await?),
            Some("values") => {
                let text = field.text().await?;
                match serde_json::from_str(&text) {
                    Ok(parsed) => change = parsed,
                    Err(e) => {
                        let message =
                            format!("the `values` part is not {{\"variables\":{{..}},\"secrets\":{{..}}}}: {e}");
                        refused.get_or_insert(ApiError::bad_request("invalid_config", message));
                    }
                }
            }
            other => {
                let message = format!("unexpected part {other:?}; expected `config`, `values` and `component`");
                refused.get_or_insert(ApiError::bad_request("invalid_multipart", message));
                field.bytes().await?;
            }
        }
    }
    if let Some(refused) = refused {
        return Err(refused);
    }
    let component =
        component.ok_or_else(|| ApiError::bad_request("invalid_multipart", "missing the `component` part"))?;
    let result = admin.registry.deploy(&name, spec, component.to_vec(), change).await;
    let outcome = if result.is_ok() { "ok" } else { "rejected" };
    admin.metrics.deployments.with_label_values(&[&name, outcome]).inc();
    let deployed = result?;
    let status = if deployed.unchanged { StatusCode::OK } else { StatusCode::CREATED };
    let v = &deployed.version;
    let body = json!({
        "function": name,
        "version": v.version,
        "sha256": v.sha256,
        "size_bytes": v.size_bytes,
        "routes": v.spec.triggers.http,
        "limits": v.spec.limits,
        "reuse": v.spec.reuse,
        "config_version": v.config_version,
        "unchanged": deployed.unchanged,
    });
    Ok((status, Json(body)))
}

/// A function as the API shows it: the active version's routes and limits up front.
fn summary(function: &FunctionRecord) -> Value {
    let active = function.active();
    json!({
        "name": function.name,
        "active_version": function.active_version,
        "latest_version": function.versions.last().map(|v| v.version),
        "routes": active.map(|v| &v.spec.triggers.http),
        "limits": active.map(|v| &v.spec.limits),
        "reuse": active.map(|v| &v.spec.reuse),
        "sha256": active.map(|v| &v.sha256),
        "size_bytes": active.map(|v| v.size_bytes),
        "config_version": active.and_then(|v| v.config_version),
        "created_at": format_time(function.created_at_ms),
        "updated_at": format_time(function.updated_at_ms),
    })
}
