//! [`P3Http`]: how a WASIp3 HTTP function (`wasi:http/handler@0.3`, an async export) runs. Its
//! instances are driven by wasmtime-wasi-http's [`ProxyHandler`] (the code `wasmtime serve`
//! runs): each instance lives in a worker task that runs the store's event loop
//! (`Store::run_concurrent`) and takes requests from a shared queue while its guest awaits, so one
//! instance may serve several requests at once. This module says how many (the deploy's
//! `reuse`), builds the stores (through the invoker's [`NewStore`], with the function's limits and
//! sandbox), retags an instance for each request it takes, bounds each request by the
//! function's timeout, and keeps the instance metrics.
//!
//! With `reuse.max_uses = 1` (the default) each request gets a fresh instance, as WASIp2
//! functions do. With `max_concurrency > 1` requests share an instance at the same time: guest
//! log lines are tagged with the request that started last.

use super::guest_io::InvocationTags;
use super::state::HostState;
use crate::metrics::FunctionMetrics;
use crate::model::reuse::ReuseSpec;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::component::TaskGroupId;
use wasmtime::{Store, StoreContextMut, format_err};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ProxyHandler, Request, Response, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// Makes the store of a new instance (memory limit, epoch deadline, sandbox), or `None` once the
/// function version it belongs to is gone.
pub type NewStore = Arc<dyn Fn() -> Option<Store<HostState>> + Send + Sync>;

/// One function version's WASIp3 HTTP instances.
pub struct P3Http {
    handler: ProxyHandler<Instances>,
}

/// What a request brings to the instance that takes it.
pub struct RequestTags {
    pub tags: Arc<InvocationTags>,
    pub deadline: tokio::time::Instant,
}

impl P3Http {
    pub fn new(
        name: Arc<str>,
        pre: ServicePre<HostState>,
        new_store: NewStore,
        reuse: ReuseSpec,
        timeout: Duration,
        metrics: FunctionMetrics,
    ) -> Self {
        Self { handler: ProxyHandler::new(Instances { name, pre, new_store, reuse, timeout, metrics }) }
    }

    /// Runs `request` in an instance that takes it (a new one when none can). Returns once the
    /// guest has produced its response; the body streams while the instance's worker runs on.
    /// Errors are wasmtime-wasi-http's: `ExpirationError` (the deadline passed),
    /// `TrapOrPanicError`, `InstantiationError`, or the guest's own `ErrorCode`.
    pub async fn handle(&self, tags: RequestTags, request: Request) -> wasmtime::Result<Response> {
        self.handler.handle(tags, request).await
    }
}

struct Instances {
    name: Arc<str>,
    pre: ServicePre<HostState>,
    new_store: NewStore,
    reuse: ReuseSpec,
    timeout: Duration,
    metrics: FunctionMetrics,
}

impl HandlerState for Instances {
    type StoreData = HostState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiration, Worker>> {
        let mut store =
            (self.new_store)().ok_or_else(|| format_err!("function `{}` is no longer deployed here", self.name))?;
        let started = std::time::Instant::now();
        let service = tokio::time::timeout(self.timeout, self.pre.instantiate_async(&mut store))
            .await
            .map_err(|_| format_err!("instantiating took longer than the function's timeout"))??;
        self.metrics.instantiation.observe(started.elapsed().as_secs_f64());
        self.metrics.active_instances.inc();
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: <HostState as WasiHttpView>::http,
            expiration: Expiration {
                idle: self.reuse.idle_timeout(),
                busy: self.timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX)),
            },
            state: Worker { name: self.name.clone(), reuse: self.reuse, metrics: self.metrics.clone() },
        })
    }
}

/// When an instance's worker gives up: idle past the deploy's idle timeout, or busy past the
/// function's timeout since its latest request started (the second line of defence behind each
/// request's own deadline, which only fires while the event loop runs).
struct Expiration {
    idle: Duration,
    busy: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, status: WorkerStatus, start: std::time::Instant) -> Poll<()> {
        let this = self.get_mut();
        let limit = match status {
            WorkerStatus::Idle => this.idle,
            WorkerStatus::Requests | WorkerStatus::PostReturn => this.busy,
        };
        let Some(deadline) = start.checked_add(limit) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}

/// One instance's worker: how many requests it takes, and what it does with each.
struct Worker {
    name: Arc<str>,
    reuse: ReuseSpec,
    metrics: FunctionMetrics,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = RequestTags;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.max_uses as usize {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.max_concurrency as usize {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        request: RequestTags,
        _task_group: TaskGroupId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        store.data_mut().begin(request.tags, None, request.deadline);
        Box::pin(tokio::time::sleep_until(request.deadline))
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        self.metrics.active_instances.dec();
        if let Err(error) = result {
            let message = format!("{error:#}");
            let first = message.lines().next().unwrap_or("unknown error");
            tracing::error!(function = %self.name, error = first, "WASIp3 instance failed; discarded");
        }
        drop(store);
    }
}
