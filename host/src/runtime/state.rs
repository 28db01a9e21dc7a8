//! [`HostState`]: what one instance owns (WASI context, HTTP context, resource table, memory
//! limits) and the per-invocation [`PlatformCtx`] the `faas:platform` imports run on. The
//! capabilities never see this type: they implement their `Host` traits on `PlatformCtx`, and
//! the linker is handed [`HostState::platform`] to reach it (the `WasiHttpView` pattern).

use super::guest_io::{GuestLog, GuestStream, InvocationTags};
use super::outbound::OutboundHooks;
use crate::capabilities::PlatformCtx;
use std::sync::Arc;
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
    ) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestLog::new(tags.clone(), GuestStream::Stdout))
            .stderr(GuestLog::new(tags, GuestStream::Stderr))
            .build();
        let limits = StoreLimitsBuilder::new().memory_size(memory_bytes as usize).build();
        Self { platform, wasi, http: WasiHttpCtx::new(), table: ResourceTable::new(), limits, hooks }
    }

    /// The caller's capabilities and access, for the `faas:platform` imports.
    pub fn platform(&mut self) -> &mut PlatformCtx {
        &mut self.platform
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
