//! What a deploy must satisfy before anything is stored: real wasm, a component (not a core
//! module), a handler the platform knows, and only imports the platform provides.
//! Each failure is a [`ValidationError`] whose message tells the user what to do.

use crate::bindings::EventFunctionIndices;
use crate::bindings::message::MessageFunctionIndices;
use crate::bindings::participant::ParticipantFunctionIndices;
use crate::bindings::scheduled::ScheduledFunctionIndices;
use crate::bindings::step::StepFunctionIndices;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyIndices;
use wasmtime_wasi_http::p3::bindings::ServicePre;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version + layer of a core module (version 1, layer 0).
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
/// The export of a WASIp2 HTTP function. Any 0.2.x of `wasi:http` is accepted.
pub const HTTP_HANDLER_EXPORT: &str = "wasi:http/incoming-handler@0.2";
/// The export of a WASIp3 HTTP function (an async export; wasmtime 50 links `wasi:http@0.3.0`).
pub const HTTP_P3_HANDLER_EXPORT: &str = "wasi:http/handler@0.3";
/// The export of a function fed by event subscriptions.
pub const EVENT_HANDLER_EXPORT: &str = "faas:platform/event-handler@0.1";
/// The export of a saga step function.
pub const STEP_HANDLER_EXPORT: &str = "faas:platform/step-handler@0.1";
/// The export of a function with a Kafka trigger.
pub const MESSAGE_HANDLER_EXPORT: &str = "faas:platform/message-handler@0.1";
/// The export of a function with a schedule.
pub const SCHEDULED_HANDLER_EXPORT: &str = "faas:platform/scheduled-handler@0.1";
/// The export of a two-phase-commit participant.
pub const PARTICIPANT_EXPORT: &str = "faas:platform/participant@0.1";
/// Import packages the platform links, with the version prefix it accepts: all of WASI 0.2
/// (`wasi:cli`, clocks, random, io, filesystem and sockets, empty or denied by default, and
/// `wasi:http`), the same of WASI 0.3 (no `wasi:io`: p3 has streams built in), `wasi:config`
/// 0.2.0-rc.1 (what wasmtime-wasi-config links: variables and secrets) and its `0.2.0-draft…`
/// predecessors, and our own `faas:platform` 0.1.
const PROVIDED_PACKAGES: &[(&str, &str)] = &[
    ("wasi:cli", "0.2."),
    ("wasi:clocks", "0.2."),
    ("wasi:random", "0.2."),
    ("wasi:io", "0.2."),
    ("wasi:filesystem", "0.2."),
    ("wasi:sockets", "0.2."),
    ("wasi:http", "0.2."),
    ("wasi:cli", "0.3."),
    ("wasi:clocks", "0.3."),
    ("wasi:random", "0.3."),
    ("wasi:filesystem", "0.3."),
    ("wasi:sockets", "0.3."),
    ("wasi:http", "0.3."),
    ("wasi:config", "0.2.0-rc.1"),
    ("wasi:config", "0.2.0-draft"),
    ("faas:platform", "0.1."),
];

#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("the uploaded file is not WebAssembly (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    #[error(
        "the uploaded file is a core WebAssembly module, not a component; build a component with \
         `cargo build --target wasm32-wasip2` (or convert a module with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the component is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("the component is not valid: {0}")]
    Invalid(String),
    #[error(
        "the component exports no handler the platform knows: expected an export named \
         `wasi:http/incoming-handler@0.2.x`, `wasi:http/handler@0.3.x`, `faas:platform/event-handler@0.1.x`, \
         `faas:platform/message-handler@0.1.x`, `faas:platform/step-handler@0.1.x`, \
         `faas:platform/scheduled-handler@0.1.x` or `faas:platform/participant@0.1.x`{}", found_list(.0)
    )]
    NoHandler(Vec<String>),
    #[error("the component imports what the platform cannot provide: {}", .0.join(", "))]
    UnsatisfiedImports(Vec<String>),
    #[error(
        "reuse.max_concurrency is {0}, but only a WASIp3 HTTP handler (an export \
         `wasi:http/handler@0.3.x`) can run several invocations in one instance at once; drop \
         --reuse-concurrency or build the handler with WASIp3 (see functions/hello-p3)"
    )]
    ConcurrencyNeedsP3(u32),
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() { " (it exports nothing)".into() } else { format!(" (it exports: {})", found.join(", ")) }
}

/// Cheap checks on the raw bytes, before spending time compiling.
pub fn check_bytes(bytes: &[u8], max_size: usize) -> Result<(), ValidationError> {
    if bytes.len() > max_size {
        return Err(ValidationError::TooLarge { size: bytes.len(), limit: max_size });
    }
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(ValidationError::NotWasm);
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(ValidationError::CoreModule);
    }
    Ok(())
}

/// The component pre-instantiated, and the entry points it offers, each as the export indices
/// that find it in an instance (a fresh one or, with reuse, one that already served).
pub struct Handlers<T: 'static> {
    pub pre: InstancePre<T>,
    pub http: Option<HttpExport<T>>,
    pub events: Option<EventFunctionIndices>,
    pub messages: Option<MessageFunctionIndices>,
    pub step: Option<StepFunctionIndices>,
    pub participant: Option<ParticipantFunctionIndices>,
    pub scheduled: Option<ScheduledFunctionIndices>,
}

/// Which `wasi:http` handler a component exports.
pub enum HttpExport<T: 'static> {
    /// `wasi:http/incoming-handler@0.2`: a synchronous export, one request per instance at a time.
    P2(ProxyIndices),
    /// `wasi:http/handler@0.3`: an async export, served by wasmtime-wasi-http's `ProxyHandler`.
    P3(ServicePre<T>),
}

impl<T: 'static> Handlers<T> {
    /// Whether `reuse` fits the component: running invocations concurrently needs an async export.
    pub fn check_reuse(&self, reuse: &crate::model::reuse::ReuseSpec) -> Result<(), ValidationError> {
        if reuse.max_concurrency > 1 && !matches!(self.http, Some(HttpExport::P3(_))) {
            return Err(ValidationError::ConcurrencyNeedsP3(reuse.max_concurrency));
        }
        Ok(())
    }
}

/// Checks a compiled component's exports and imports against the linker and pre-instantiates it.
pub fn check_component<T: 'static>(linker: &Linker<T>, component: &Component) -> Result<Handlers<T>, ValidationError> {
    let engine = linker.engine();
    let ty = component.component_type();
    let unsatisfied: Vec<String> =
        ty.imports(engine).map(|(name, _)| name).filter(|name| !is_provided(name)).map(str::to_owned).collect();
    if !unsatisfied.is_empty() {
        return Err(ValidationError::UnsatisfiedImports(unsatisfied));
    }
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    let exports_http = exports.iter().any(|name| name.starts_with(HTTP_HANDLER_EXPORT));
    let exports_http_p3 = exports.iter().any(|name| name.starts_with(HTTP_P3_HANDLER_EXPORT));
    let exports_events = exports.iter().any(|name| name.starts_with(EVENT_HANDLER_EXPORT));
    let exports_messages = exports.iter().any(|name| name.starts_with(MESSAGE_HANDLER_EXPORT));
    let exports_step = exports.iter().any(|name| name.starts_with(STEP_HANDLER_EXPORT));
    let exports_participant = exports.iter().any(|name| name.starts_with(PARTICIPANT_EXPORT));
    let exports_scheduled = exports.iter().any(|name| name.starts_with(SCHEDULED_HANDLER_EXPORT));
    if !exports_http
        && !exports_http_p3
        && !exports_events
        && !exports_messages
        && !exports_step
        && !exports_participant
        && !exports_scheduled
    {
        return Err(ValidationError::NoHandler(exports));
    }
    // Names are right; the linker now checks every type, and the typed wrappers each handler's
    // signature.
    let pre =
        linker.instantiate_pre(component).map_err(|e| ValidationError::UnsatisfiedImports(vec![format!("{e:#}")]))?;
    let wrong_type = |e: wasmtime::Error| ValidationError::NoHandler(vec![format!("{e:#}")]);
    let http = if exports_http {
        Some(HttpExport::P2(ProxyIndices::new(&pre).map_err(wrong_type)?))
    } else if exports_http_p3 {
        Some(HttpExport::P3(ServicePre::new(pre.clone()).map_err(wrong_type)?))
    } else {
        None
    };
    let events = exports_events.then(|| EventFunctionIndices::new(&pre)).transpose().map_err(wrong_type)?;
    let messages = exports_messages.then(|| MessageFunctionIndices::new(&pre)).transpose().map_err(wrong_type)?;
    let step = exports_step.then(|| StepFunctionIndices::new(&pre)).transpose().map_err(wrong_type)?;
    let scheduled = exports_scheduled.then(|| ScheduledFunctionIndices::new(&pre)).transpose().map_err(wrong_type)?;
    let participant =
        exports_participant.then(|| ParticipantFunctionIndices::new(&pre)).transpose().map_err(wrong_type)?;
    Ok(Handlers { pre, http, events, messages, step, participant, scheduled })
}

/// `wasi:cli/environment@0.2.12` → is `wasi:cli` at 0.2.x one of ours?
fn is_provided(import: &str) -> bool {
    let Some((path, version)) = import.split_once('@') else {
        return false;
    };
    let package = path.split_once('/').map_or(path, |(package, _)| package);
    PROVIDED_PACKAGES.iter().any(|(p, v)| *p == package && version.starts_with(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_byte_checks() {
        assert!(matches!(check_bytes(b"hello world", 100), Err(ValidationError::NotWasm)));
        assert!(matches!(check_bytes(b"\0asm\x01\0\0\0", 100), Err(ValidationError::CoreModule)));
        assert!(matches!(check_bytes(b"\0asm\x0d\0\x01\0", 100), Ok(())));
        assert!(matches!(check_bytes(&[0; 101], 100), Err(ValidationError::TooLarge { .. })));
        let message = ValidationError::CoreModule.to_string();
        assert!(message.contains("wasm32-wasip2"), "{message}");
    }

    #[test]
    fn provided_imports() {
        assert!(is_provided("wasi:cli/environment@0.2.12"));
        assert!(is_provided("wasi:http/types@0.2.0"));
        assert!(is_provided("wasi:http/types@0.3.0"));
        assert!(!is_provided("wasi:io/streams@0.3.0"));
        assert!(!is_provided("wasi:http/types@0.4.0"));
        assert!(!is_provided("wasi:keyvalue/store@0.2.0"));
        assert!(is_provided("wasi:config/store@0.2.0-rc.1"));
        assert!(!is_provided("wasi:config/store@0.3.0"));
        assert!(!is_provided("acme:thing/api@1.0.0"));
        assert!(!is_provided("plain-name"));
        assert!(is_provided("faas:platform/event-store@0.1.0"));
        assert!(!is_provided("faas:platform/event-store@0.2.0"));
    }
}
