//! The data plane, the HTTP trigger: every request on the public listener is matched against
//! the route table and run by the function's active version. Unknown routes get a JSON 404.
//! Its reconcile has nothing to do (the registry swaps the route table itself); its drain is
//! axum's graceful shutdown: stop accepting, finish the requests in flight.

use super::Trigger;
use crate::error::ApiError;
use crate::function_logs::Finished;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::invoker::Invoker;
use crate::telemetry::{TRACEPARENT, TraceContext};
use crate::triggers::queue::{AsyncQueue, QueuedRequest, read_body};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

const REQUEST_ID: &str = "x-request-id";

/// What the data plane needs to serve a request.
pub struct DataPlane {
    pub registry: Arc<Registry>,
    pub invoker: Arc<Invoker>,
    pub metrics: Metrics,
    pub queue: Arc<AsyncQueue>,
}

/// The header that queues a request instead of running it now (`x-faas-invoke: async`).
const INVOKE: &str = "x-faas-invoke";

pub fn router(state: Arc<DataPlane>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// The data plane serving on its listener.
pub struct Http {
    stop: watch::Sender<bool>,
    server: tokio::sync::Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

impl Http {
    /// Starts serving `plane` on `listener`.
    pub fn serve(listener: TcpListener, plane: Arc<DataPlane>) -> Arc<Self> {
        let stop = watch::Sender::new(false);
        let mut stopped = stop.subscribe();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        // No Nagle: a response whose body the guest streams after its headers (every WASIp3
        // handler, and a p2 one that writes its body late) would otherwise wait for the client's
        // delayed ACK (~40 ms on Linux) before its body leaves.
        let listener = listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "setting TCP_NODELAY failed");
            }
        });
        let server = axum::serve(listener, router(plane)).with_graceful_shutdown(shutdown);
        let server = tokio::spawn(server.into_future());
        Arc::new(Self { stop, server: tokio::sync::Mutex::new(Some(server)) })
    }
}

#[async_trait::async_trait]
impl Trigger for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn reconcile(self: Arc<Self>) {}

    async fn drain(self: Arc<Self>) {
        self.stop.send_replace(true);
        if let Some(server) = self.server.lock().await.take() {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "data plane failed"),
                Err(error) => tracing::error!(%error, "data plane task failed"),
            }
        }
    }
}

async fn handle(State(plane): State<Arc<DataPlane>>, request: Request) -> Response {
    let request_id = request_id(&request);
    if let Some(id) = request.uri().path().strip_prefix(INVOCATION_STATUS) {
        let response = match plane.queue.get(id).await {
            Ok(record) => axum::Json(crate::triggers::queue::report(&record)).into_response(),
            Err(error) => ApiError::from(error).with_request_id(&request_id).into_response(),
        };
        return tag(response, &request_id);
    }
    let Some(function) = plane.registry.lookup(request.uri().path()) else {
        let message = format!("no function is routed at `{}`", request.uri().path());
        return tag(ApiError::not_found(message).with_request_id(&request_id).into_response(), &request_id);
    };
    if let Some(mode) = request.headers().get(INVOKE) {
        if mode != "async" {
            let message = format!("`{INVOKE}` takes `async` (queue the request and answer 202 at once)");
            return tag(
                ApiError::bad_request("invalid_request", message).with_request_id(&request_id).into_response(),
                &request_id,
            );
        }
        return tag(enqueue(&plane, &function, request, &request_id).await, &request_id);
    }
    let started = Instant::now();
    // The request's span, a child of the caller's trace context when it sent one.
    let span = if crate::telemetry::enabled() {
        let caller = request.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()).map(TraceContext::parse);
        crate::telemetry::http_request(
            request.method(),
            request.uri().path(),
            &function.name,
            &request_id,
            &caller.unwrap_or_default(),
        )
    } else {
        tracing::Span::none()
    };
    let response = match plane.invoker.serve_http(&function, request, &request_id).instrument(span.clone()).await {
        Ok(response) => response,
        Err(error) => ApiError::from(error).with_request_id(&request_id).into_response(),
    };
    crate::telemetry::http_response(&span, response.status());
    let metrics = &plane.metrics;
    let elapsed = started.elapsed();
    function.metrics.duration.observe(elapsed.as_secs_f64());
    metrics
        .invocations
        .with_label_values(&[&*function.name, &function.version_label, response.status().as_str()])
        .inc();
    crate::function_logs::FunctionLogs::global().invocation(Finished {
        function: &function.name,
        version: function.version,
        request_id: &request_id,
        trigger: "http",
        status: response.status().as_u16(),
        took: elapsed,
        error: None,
    });
    tag(response, &request_id)
}

/// Where the data plane shows a queued invocation to whoever holds its (unguessable) id.
const INVOCATION_STATUS: &str = "/_faas/invocations/";

/// Queues `request` for `function`: 202 with the invocation and its `Location`.
async fn enqueue(
    plane: &DataPlane,
    function: &crate::runtime::function::LoadedFunction,
    request: Request,
    request_id: &str,
) -> Response {
    let (parts, body) = request.into_parts();
    let queued = async {
        let body = read_body(body).await?;
        let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let queued = QueuedRequest::from_parts(&parts, path, body, request_id, &[]);
        plane.queue.enqueue(function, queued).await
    };
    match queued.await {
        Ok((record, created)) => {
            let location = format!("{INVOCATION_STATUS}{}", record.id);
            crate::triggers::queue::accepted(&record, created, &location)
        }
        Err(error) => ApiError::from(error).with_request_id(request_id).into_response(),
    }
}

/// The caller's `x-request-id` when it is a sane token, else a fresh one.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

fn tag(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
