//! Host side of the `faas:platform` imports. One module per WIT interface, each implementing its
//! `Host` trait on [`PlatformCtx`] (the per-invocation view, not the runtime's store data); this
//! module holds what they share: the stores, the caller's [`Access`], the [`EventNotifier`] that
//! wakes subscriptions after an append, and the [`WorkflowHandle`] to the saga and 2PC engines.

pub mod event_store;
pub mod kafka_out;
pub mod kv;
pub mod saga;
pub mod tx;
pub mod workflow_handle;

use crate::bindings;
use crate::store::Stores;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};
use workflow_handle::WorkflowHandle;

/// Events returned by one read.
pub const MAX_READ_COUNT: u32 = 10_000;
pub const MAX_KV_KEY: usize = 512;
pub const MAX_KV_VALUE: usize = 1 << 20;

/// Shared by every invocation: the stores, the append notifier, the limits, the workflow
/// engines' handle and the Kafka producer.
pub struct Capabilities {
    pub stores: Stores,
    pub notifier: EventNotifier,
    pub event_limits: EventLimits,
    /// Where `saga` and `tx` calls go (the engines serve the other end).
    pub workflows: WorkflowHandle,
    /// The producer behind `kafka-out`; none without `--kafka-brokers`.
    pub kafka: Option<Arc<crate::kafka::Publisher>>,
    pub metrics: crate::metrics::Metrics,
}

impl Capabilities {
    pub fn new(stores: Stores, notifier: EventNotifier, event_limits: EventLimits, workflows: WorkflowHandle) -> Self {
        Self { stores, notifier, event_limits, workflows, kafka: None, metrics: crate::metrics::Metrics::default() }
    }

    /// With Kafka publishing (and its metrics).
    pub fn with_kafka(
        mut self,
        publisher: Option<Arc<crate::kafka::Publisher>>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        self.kafka = publisher;
        self.metrics = metrics;
        self
    }
}

/// What one append may carry (`faas serve --max-event-size`, `--max-events-per-append`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Bytes of data + metadata per event.
    pub max_event_bytes: usize,
    pub max_events_per_append: usize,
}

impl Default for EventLimits {
    /// 1 MiB per event, as in EventStoreDB's default; 1,000 events per append: enough for any
    /// aggregate's decision, small enough for one transaction.
    fn default() -> Self {
        Self { max_event_bytes: 1 << 20, max_events_per_append: 1000 }
    }
}

/// What one function may touch: its own namespace (read and write) and namespaces granted to it
/// for reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub namespace: String,
    pub read_namespaces: Vec<String>,
    /// What `kafka-out` may publish to (names, or prefixes ending in `*`).
    pub publish_topics: crate::model::spec::Grants,
}

/// Per-invocation view of the platform imports.
pub struct PlatformCtx {
    pub caps: Arc<Capabilities>,
    pub access: Arc<Access>,
    /// Set for a saga step: its writes count only while its saga attempt is still current.
    pub fence: Option<crate::store::workflows::StepFence>,
    /// The invocation's place in its trace, the parent of the spans of its calls.
    pub trace: crate::telemetry::TraceContext,
}

/// What a guest is told when its step attempt was superseded (see `StepFence`).
pub(crate) fn superseded(function: &str, saga: &str) -> String {
    tracing::warn!(function, saga, "a superseded step attempt tried to write; refused");
    format!(
        "{saga} moved to another node while this step attempt ran; the new owner runs the step again, \
         so this attempt's writes are refused"
    )
}

/// Announces the newest global position after each append, so subscriptions in this process wake
/// at once instead of polling.
#[derive(Clone)]
pub struct EventNotifier(tokio::sync::watch::Sender<u64>);

impl EventNotifier {
    pub fn new() -> Self {
        Self(tokio::sync::watch::Sender::new(0))
    }

    pub fn appended(&self, last_position: u64) {
        self.0.send_if_modified(|head| {
            let newer = last_position > *head;
            if newer {
                *head = last_position;
            }
            newer
        });
    }

    /// Wakes every subscription without a new head: after a LISTEN reconnect, when appends
    /// may have been missed.
    pub fn wake_all(&self) {
        self.0.send_modify(|_| {});
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

impl Default for EventNotifier {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds every `faas:platform` import to `linker`. `platform` finds the invocation's
/// [`PlatformCtx`] in the store's data, whatever the runtime keeps around it.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    platform: fn(&mut T) -> &mut PlatformCtx,
) -> anyhow::Result<()> {
    bindings::event_store::add_to_linker::<T, HasSelf<PlatformCtx>>(linker, platform)?;
    bindings::kv::add_to_linker::<T, HasSelf<PlatformCtx>>(linker, platform)?;
    bindings::saga::add_to_linker::<T, HasSelf<PlatformCtx>>(linker, platform)?;
    bindings::tx::add_to_linker::<T, HasSelf<PlatformCtx>>(linker, platform)?;
    bindings::kafka_out::add_to_linker::<T, HasSelf<PlatformCtx>>(linker, platform)?;
    Ok(())
}

/// Why a stream address is refused.
pub enum AddressError {
    Invalid(String),
    Denied(String),
}

impl Access {
    /// `name` → own namespace; `namespace/name` → that namespace, if readable.
    pub fn resolve_read<'a>(&'a self, address: &'a str) -> Result<(&'a str, &'a str), AddressError> {
        let (namespace, stream) = split_address(address, &self.namespace)?;
        if namespace == self.namespace || self.read_namespaces.iter().any(|n| n == namespace) {
            Ok((namespace, stream))
        } else {
            Err(AddressError::Denied(format!(
                "function namespace `{}` may not read namespace `{namespace}`; grant it at deploy time",
                self.namespace
            )))
        }
    }

    /// Only the own namespace is writable.
    pub fn resolve_write<'a>(&'a self, address: &'a str) -> Result<&'a str, AddressError> {
        let (namespace, stream) = split_address(address, &self.namespace)?;
        if namespace == self.namespace {
            Ok(stream)
        } else {
            Err(AddressError::Denied(format!(
                "function namespace `{}` may not write to namespace `{namespace}`",
                self.namespace
            )))
        }
    }

    /// How the caller addresses a stream of `namespace`.
    pub fn address(&self, namespace: &str, stream: &str) -> String {
        if namespace == self.namespace { stream.to_owned() } else { format!("{namespace}/{stream}") }
    }

    /// Every namespace this function may read, its own first.
    pub fn readable(&self) -> Vec<&str> {
        std::iter::once(self.namespace.as_str()).chain(self.read_namespaces.iter().map(String::as_str)).collect()
    }
}

fn split_address<'a>(address: &'a str, own: &'a str) -> Result<(&'a str, &'a str), AddressError> {
    let (namespace, stream) = match address.split_once('/') {
        Some((namespace, stream)) => (namespace, stream),
        None => (own, address),
    };
    crate::model::names::validate_address(namespace, stream).map_err(AddressError::Invalid)?;
    Ok((namespace, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access { namespace: "bank".into(), read_namespaces: vec!["audit".into()], publish_topics: Default::default() }
    }

    #[test]
    fn addresses_resolve_within_grants() {
        let a = access();
        assert!(matches!(a.resolve_read("account-1"), Ok(("bank", "account-1"))));
        assert!(matches!(a.resolve_read("audit/log"), Ok(("audit", "log"))));
        assert!(matches!(a.resolve_read("other/log"), Err(AddressError::Denied(_))));
        assert!(matches!(a.resolve_write("audit/log"), Err(AddressError::Denied(_))));
        assert!(matches!(a.resolve_write("bank/x"), Ok("x")));
        assert!(matches!(a.resolve_read("bad name"), Err(AddressError::Invalid(_))));
        assert!(matches!(a.resolve_read(""), Err(AddressError::Invalid(_))));
        assert_eq!(a.address("audit", "log"), "audit/log");
        assert_eq!(a.address("bank", "x"), "x");
    }
}
