//! [`LoadedFunction`]: one function's active version as the runtime runs it: its spec, its
//! pre-instantiated exports, what it may touch, its concurrency limiter and routes, and its
//! [`FunctionConfig`](super::state::FunctionConfig) (variables and secrets, opened). The
//! registry builds these; the invoker and the triggers consume them.

use super::concurrency::ConcurrencyLimiter;
use super::http_p3::P3Http;
use super::instance_pool::InstancePool;
use super::outbound::Outbound;
use super::state::{FunctionConfig, HostState};
use super::validate::Handlers;
use crate::capabilities::Access;
use crate::model::routes::RoutePattern;
use crate::model::spec::DeploySpec;
use std::sync::{Arc, OnceLock};

/// One function's active version, ready to instantiate.
pub struct LoadedFunction {
    pub name: Arc<str>,
    pub version: u32,
    /// `version` as text, for metrics labels without allocating per request.
    pub version_label: String,
    pub sha256: String,
    pub spec: DeploySpec,
    pub handlers: Handlers<HostState>,
    /// The namespaces its capabilities may touch.
    pub access: Arc<Access>,
    /// Shared with the build it replaces when a tiered deploy's Cranelift build is swapped in:
    /// the version's limit holds across the swap.
    pub limiter: Arc<ConcurrencyLimiter>,
    /// Its outgoing HTTP: allow-list, pooled connections, in-flight cap.
    pub outbound: Arc<Outbound>,
    pub routes: Vec<RoutePattern>,
    /// What `wasi:config/store` returns to it. Replaced (with the whole `LoadedFunction`) on
    /// every config change, so an invocation keeps the values it started with.
    pub config: Arc<FunctionConfig>,
    /// Its idle instances, when `spec.reuse` allows reuse (always empty otherwise).
    pub instances: Arc<InstancePool>,
    /// Which compiler built the code it runs.
    pub compiler: Compiler,
    /// Its per-invocation metric series, looked up once.
    pub metrics: crate::metrics::FunctionMetrics,
    /// The instances of a WASIp3 HTTP handler, made on its first request (never for WASIp2).
    pub http_p3: OnceLock<P3Http>,
}

/// Which of wasmtime's compilers built a function's code: a tiered deploy runs on the baseline
/// build until the optimised one replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiler {
    /// Winch: compiled fast, runs slower.
    Baseline,
    /// Cranelift.
    Optimized,
}

impl Compiler {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "winch",
            Self::Optimized => "cranelift",
        }
    }
}
