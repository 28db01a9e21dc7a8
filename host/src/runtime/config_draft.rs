//! `wasi:config` as it was before `0.2.0-rc.1`, the version wasmtime-wasi-config links: the
//! `0.2.0-draft` interfaces that wasmCloud's components import (`store`, and the older
//! `runtime`) and Spin 3's `0.2.0-draft-2024-09-27`. Same two functions, same shapes (the
//! component model matches types by structure, not by name), over the same values, so a
//! component built for those platforms reads its config here unchanged.

use super::state::HostState;
use wasmtime::component::{ComponentType, Linker, Lower};

/// The instance names linked here (and accepted by [`super::validate`]).
pub const INTERFACES: &[&str] =
    &["wasi:config/store@0.2.0-draft", "wasi:config/store@0.2.0-draft-2024-09-27", "wasi:config/runtime@0.2.0-draft"];

/// The interfaces' error variant (`error` in `store`, `config-error` in `runtime`). Never
/// returned: the values are in memory, nothing upstream can fail.
#[derive(ComponentType, Lower)]
#[component(variant)]
#[allow(dead_code)]
enum DraftError {
    #[component(name = "upstream")]
    Upstream(String),
    #[component(name = "io")]
    Io(String),
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    for name in INTERFACES {
        let mut instance = linker.instance(name)?;
        instance.func_wrap("get", |store, (key,): (String,)| {
            let value = store.data().config_entries().get(&key).cloned();
            Ok((Ok::<_, DraftError>(value),))
        })?;
        instance.func_wrap("get-all", |store, (): ()| {
            let all: Vec<(String, String)> =
                store.data().config_entries().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok((Ok::<_, DraftError>(all),))
        })?;
    }
    Ok(())
}
