//! [`HostState`]: what one instance owns (WASI context, HTTP context, resource table, memory
//! limits, the function's config) and the per-invocation [`PlatformCtx`] the `faas:platform` imports run on. The
//! capabilities never see this type: they implement their `Host` traits on `PlatformCtx`, and
//! the linker is handed [`HostState::platform`] to reach it (the `WasiHttpView` pattern).

use super::guest_io::{GuestLog, GuestStream, InvocationTags};
use super::outbound::OutboundHooks;
use crate::capabilities::PlatformCtx;
use crate::store::workflows::StepFence;
use std::sync::Arc;
use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Everything one instance owns. Dropped, with the instance, when the invocation ends.
pub struct HostState {
    platform: PlatformCtx,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    hooks: OutboundHooks,
    /// The function's variables and secrets as of the invocation's start.
    config: Arc<FunctionConfig>,
    /// The guest's stdout and stderr (shared with `wasi`), to retag when the instance is reused.
    output: [GuestLog; 2],
}

impl HostState {
    /// A sandbox with nothing granted: empty environment, no arguments, no preopened directories,
    /// no sockets; outgoing HTTP only to the function's allow-list (`hooks`); stdout and stderr
    /// go to the logs.
    pub(super) fn new(
        tags: Arc<InvocationTags>,
        memory_bytes: u64,
        platform: PlatformCtx,
        hooks: OutboundHooks,
        config: Arc<FunctionConfig>,
    ) -> Self {
        let output = [GuestLog::new(tags.clone(), GuestStream::Stdout), GuestLog::new(tags, GuestStream::Stderr)];
        let wasi = WasiCtx::builder().stdout(output[0].clone()).stderr(output[1].clone()).build();
        let limits = StoreLimitsBuilder::new().memory_size(memory_bytes as usize).build();
        let (http, table) = (WasiHttpCtx::new(), ResourceTable::new());
        Self { platform, wasi, http, table, limits, hooks, config, output }
    }

    /// Prepares a reused instance for its next invocation: the per-invocation parts (log tags,
    /// request id and deadline of outgoing calls, a saga step's fence) become the new one's.
    /// Everything else (memory, limits, config) belongs to the instance and stays.
    pub(super) fn begin(&mut self, tags: Arc<InvocationTags>, fence: Option<StepFence>, deadline: Instant) {
        self.hooks.begin(&tags.request_id, &tags.trace, deadline);
        self.platform.fence = fence;
        self.platform.trace = tags.trace.clone();
        for log in &self.output {
            log.retag(tags.clone());
        }
    }

    /// The caller's capabilities and access, for the `faas:platform` imports.
    pub fn platform(&mut self) -> &mut PlatformCtx {
        &mut self.platform
    }

    /// The function's variables and secrets, for `wasi:config/store`.
    pub fn config(&mut self) -> wasmtime_wasi_config::WasiConfig<'_> {
        wasmtime_wasi_config::WasiConfig::new(&self.config.values)
    }

    /// The same, for the pre-release `wasi:config` interfaces.
    pub fn config_entries(&self) -> &std::collections::BTreeMap<String, String> {
        &self.config.entries
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// One config version as the guest sees it: variables and secrets alike, in plaintext, in
/// memory only.
#[derive(Default)]
pub struct FunctionConfig {
    /// None before any variable or secret was set.
    pub version: Option<u32>,
    pub values: wasmtime_wasi_config::WasiConfigVariables,
    /// The same values, for the pre-release `wasi:config` interfaces wasmtime-wasi-config does
    /// not link (see `runtime::config_draft`); its map is private.
    pub entries: std::collections::BTreeMap<String, String>,
    /// The secrets' plaintexts (non-empty, longest first), to redact from guest output.
    pub secrets: Arc<[String]>,
}

impl FunctionConfig {
    pub fn new(version: Option<u32>, variables: Vec<(String, String)>, secrets: Vec<(String, String)>) -> Self {
        let mut redact: Vec<String> = secrets.iter().map(|(_, v)| v.clone()).filter(|v| !v.is_empty()).collect();
        redact.sort_by_key(|v| std::cmp::Reverse(v.len()));
        redact.dedup();
        let entries: std::collections::BTreeMap<String, String> = variables.into_iter().chain(secrets).collect();
        let values = entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Self { version, values, entries, secrets: redact.into() }
    }
}
