//! The control plane ([`router`]): the REST API under `/v1`, its OpenAPI document, Prometheus
//! `/metrics`, `/healthz`, and the dashboard's pages (`dashboard`). Everything but `/healthz` and
//! the pages needs the admin token when one is set (`auth`).

mod auth;
mod dashboard;
mod events;
mod extract;
mod functions;
mod graphql;
mod graphql_depth;
mod invocations;
mod kafka;
mod logs;
mod nodes;
mod paging;
mod peers;
mod schedules;
mod workflows;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::Stores;
use crate::triggers::subscriptions::Subscriptions;
use crate::workflows::Workflows;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use std::sync::Arc;

/// Multipart framing and the config part on top of the component itself.
const DEPLOY_OVERHEAD_BYTES: usize = 1 << 20;

/// What the control plane needs.
pub struct Admin {
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub token: Option<String>,
    pub subscriptions: Arc<Subscriptions>,
    pub stores: Stores,
    pub workflows: Arc<Workflows>,
    /// None without `--kafka-brokers`.
    pub kafka: Option<Arc<crate::triggers::kafka::Kafka>>,
    pub leases: Arc<crate::triggers::leases::Leases>,
    pub queue: Arc<crate::triggers::queue::AsyncQueue>,
    pub scheduler: Arc<crate::triggers::schedules::Scheduler>,
}

pub fn router(state: Arc<Admin>) -> Router {
    let deploy_limit = state.registry.max_component_bytes() + DEPLOY_OVERHEAD_BYTES;
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/functions", get(functions::list))
        .route("/v1/functions/{name}", get(functions::get).delete(functions::delete))
        .route("/v1/functions/{name}/versions", post(functions::deploy).layer(DefaultBodyLimit::max(deploy_limit)))
        .route("/v1/functions/{name}/versions/{version}/activate", post(functions::activate))
        .route("/v1/functions/{name}/config", get(functions::get_config).patch(functions::patch_config))
        .route("/v1/functions/{name}/subscriptions", get(events::subscriptions))
        .route("/v1/functions/{name}/subscriptions/reset", post(events::reset))
        .route("/v1/functions/{name}/invocations", post(invocations::enqueue))
        .route("/v1/functions/{name}/schedule", get(schedules::get))
        .route("/v1/functions/{name}/logs", get(logs::logs))
        .route("/v1/invocations", get(invocations::list))
        .route("/v1/invocations/{id}", get(invocations::get))
        .route("/v1/invocations/{id}/replay", post(invocations::replay))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/kafka", get(kafka::status))
        .route("/v1/functions/{name}/parked/{id}/replay", post(events::replay))
        .route("/v1/namespaces", get(events::namespaces))
        .route("/v1/namespaces/{namespace}/streams", get(events::streams))
        .route("/v1/namespaces/{namespace}/streams/{stream}", get(events::read_stream))
        .route("/v1/sagas", get(workflows::list_sagas))
        .route("/v1/sagas/{id}", get(workflows::get_saga))
        .route("/v1/sagas/{id}/resume", post(workflows::resume_saga))
        .route("/v1/sagas/{id}/skip", post(workflows::skip_saga))
        .route("/v1/transactions", get(workflows::list_transactions))
        .route("/v1/transactions/{id}", get(workflows::get_transaction))
        .route("/graphql", post(graphql::execute).with_state(graphql::schema(state.clone())))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such control-plane endpoint; see /v1/openapi.json") })
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
        .route("/healthz", get(healthz))
        // The dashboard's and GraphiQL's pages hold no data; they call the API above.
        .merge(dashboard::routes())
        // After every route: it applies to those registered before it.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /v1/openapi.json",
            )
        })
        .with_state(state)
}

/// Always 200 while the process serves HTTP; a Kafka outage shows in the detail (and in
/// `faas_kafka_connected`) without failing the probe, since functions still serve.
async fn healthz(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    let mut body = serde_json::json!({
        "status": "ok",
        "node": admin.leases.node(),
        "leases_owned": admin.leases.owned(),
    });
    if let Some(kafka) = &admin.kafka {
        body["kafka"] = kafka.status().await;
    }
    Json(body)
}

async fn metrics(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], admin.metrics.render())
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
