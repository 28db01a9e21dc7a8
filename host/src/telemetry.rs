//! Traces: the host's spans (one per invocation, per host call of consequence, per saga step and
//! per Kafka batch), exported over OTLP/HTTP when `--otlp-endpoint` (or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) is set; and the W3C trace context they carry in and out of
//! HTTP requests, Kafka records and stored sagas, so one order is one trace from its HTTP
//! request through the saga's steps to the records they publish.
//!
//! The spans are `tracing` spans, turned into OpenTelemetry spans by tracing-opentelemetry: one
//! instrumentation API in the host, and log events inside a span become its span events. Only
//! this module knows span names and attributes (the OpenTelemetry semantic conventions where
//! one exists, `faas.*` otherwise). Without an endpoint nothing is made: every constructor
//! returns [`Span::none`] and a [`TraceContext`] is empty, so an untraced host pays a relaxed
//! load per call site.
//!
//! A leaf like `metrics`: the modules that make spans depend on it, it depends on none of them.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Whether spans are exported (set once, at start-up, by [`Exporter::start`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The W3C header (and Kafka record header) that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Whether traces are exported: work done only for a span (reading headers) can be skipped.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why tracing could not start: the endpoint is not a URL the exporter takes.
#[derive(Debug, thiserror::Error)]
#[error("--otlp-endpoint: {0}")]
pub struct ExporterError(String);

/// The running OTLP export. [`Exporter::shutdown`] sends what is still buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting to `endpoint` (the collector's base URL, as in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: `/v1/traces` is appended unless it is there already).
    /// Returns the layer that turns `tracing` spans into OpenTelemetry spans.
    pub fn start<S>(endpoint: &str) -> Result<(Self, impl tracing_subscriber::Layer<S>), ExporterError>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
        let base = endpoint.trim_end_matches('/');
        let url = if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") };
        let parsed: http::Uri = url.parse().map_err(|e| ExporterError(format!("`{endpoint}`: {e}")))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(ExporterError(format!("`{endpoint}` is not an http:// or https:// URL")));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_timeout(Duration::from_secs(10))
            .with_http_client(export_client::ExportClient::new().map_err(|e| ExporterError(e.to_string()))?)
            .build()
            .map_err(|e| ExporterError(e.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("faas");
        }
        // Batched on a thread of the SDK's own (OTEL_BSP_* tune it); a process killed -9 loses
        // the spans of its last batch, as any batching exporter does.
        let provider =
            SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("faas"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false);
        ENABLED.store(true, Ordering::Relaxed);
        Ok((Self { provider }, layer))
    }

    /// Exports the spans still buffered (waits at most a few seconds for the collector).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(Duration::from_secs(5))).await;
        if let Ok(Err(error)) = flushed {
            eprintln!("exporting the last spans failed: {error}");
        }
    }
}

/// Where a span sits in its trace (trace id, span id, sampled flag), without the span: kept in
/// long-lived places (an instance's store, a saga's row) it holds nothing open. Empty when
/// tracing is off or nothing traced the work.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceContext(Option<SpanContext>);

impl TraceContext {
    /// The context of `span`, to make children of elsewhere or to pass on.
    pub fn of(span: &Span) -> Self {
        if !enabled() || span.is_none() {
            return Self::default();
        }
        let context = span.context();
        let span_context = context.span().span_context().clone();
        Self(span_context.is_valid().then_some(span_context))
    }

    /// A W3C `traceparent` value; empty if it is not a valid one.
    pub fn parse(traceparent: &str) -> Self {
        if !enabled() || !well_formed(traceparent) {
            return Self::default();
        }
        let context = TraceContextPropagator::new().extract(&One::new(traceparent));
        let span_context = context.span().span_context().clone();
        Self(span_context.is_valid().then_some(span_context))
    }

    /// The first valid `traceparent` among `headers` (case-insensitive names).
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        if !enabled() {
            return Self::default();
        }
        headers
            .into_iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(TRACEPARENT))
            .filter_map(|(_, value)| std::str::from_utf8(value).ok())
            .map(Self::parse)
            .find(Self::is_some)
            .unwrap_or_default()
    }

    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// As a W3C `traceparent` header value, to pass on.
    pub fn traceparent(&self) -> Option<String> {
        let span_context = self.0.as_ref()?;
        let mut carrier = One::default();
        let context = opentelemetry::Context::new().with_remote_span_context(span_context.clone());
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.value
    }

    /// Makes `span` (not yet entered) a child of this context; leaves it where it is if empty.
    fn adopt(&self, span: &Span) {
        if let Some(span_context) = &self.0 {
            let parent = opentelemetry::Context::new().with_remote_span_context(span_context.clone());
            let _ = span.set_parent(parent);
        }
    }

    /// Also links `span` to this context (a Kafka batch's other records).
    fn link(&self, span: &Span) {
        if let Some(span_context) = &self.0 {
            span.add_link(span_context.clone());
        }
    }
}

/// `version-traceid-spanid-flags` with exactly the W3C field lengths in lowercase hex (the
/// propagator takes a short id too, which another system could not read back the same); the
/// propagator checks the rest (version `ff`, all-zero ids).
fn well_formed(traceparent: &str) -> bool {
    let lengths = traceparent.split('-').map(str::len);
    let hex = traceparent.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex && lengths.eq([2, 32, 16, 2])
}

/// One header value as a propagator carrier.
#[derive(Default)]
struct One<'a> {
    read: &'a str,
    value: Option<String>,
}

impl<'a> One<'a> {
    fn new(read: &'a str) -> Self {
        Self { read, value: None }
    }
}

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.read)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for One<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.value = Some(value);
        }
    }
}

// --- The spans ---------------------------------------------------------------------------------

/// An HTTP request on the data plane that `function` serves: the server span, child of the
/// caller's `traceparent` if it sent one. The invocation runs inside it.
pub fn http_request(
    method: &http::Method,
    path: &str,
    function: &str,
    request_id: &str,
    caller: &TraceContext,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!("http.request",
        otel.name = %format_args!("{method} {function}"), otel.kind = "server", otel.status_code = tracing::field::Empty,
        http.request.method = %method, url.path = path, faas.function = function, faas.request_id = request_id,
        http.response.status_code = tracing::field::Empty);
    caller.adopt(&span);
    span
}

/// Records the response status on an [`http_request`] span (a 5xx marks it failed).
pub fn http_response(span: &Span, status: http::StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// One invocation of `function` other than an HTTP request (which is its [`http_request`]
/// span), a child of the span it runs in (a saga step's, a Kafka batch's).
pub fn invocation(function: &str, version: u32, invocation_id: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!("invoke", otel.name = %format_args!("invoke {function}"),
        otel.status_code = tracing::field::Empty, faas.function = function, faas.version = version,
        faas.invocation_id = invocation_id)
}

/// Marks a span failed, with the reason as its status description.
pub fn failed(span: &Span, reason: &str) {
    if !span.is_none() {
        span.set_status(opentelemetry::trace::Status::error(reason.to_owned()));
    }
}

/// An append to `stream` by the invocation at `parent`.
pub fn append(parent: &TraceContext, namespace: &str, stream: &str, events: usize) -> Span {
    if !parent.is_some() {
        return Span::none();
    }
    let span = tracing::info_span!("event_store.append", otel.name = %format_args!("append {namespace}/{stream}"),
        faas.namespace = namespace, faas.stream = stream, faas.events = events,
        faas.position = tracing::field::Empty);
    parent.adopt(&span);
    span
}

/// A Kafka record published by the invocation at `parent` (its `traceparent` header is this
/// span's context).
pub fn publish(parent: &TraceContext, topic: &str) -> Span {
    if !parent.is_some() {
        return Span::none();
    }
    let span = tracing::info_span!("kafka.publish", otel.name = %format_args!("{topic} publish"), otel.kind = "producer",
        messaging.system = "kafka", "messaging.operation.type" = "send", messaging.destination.name = topic,
        messaging.destination.partition.id = tracing::field::Empty, messaging.kafka.offset = tracing::field::Empty);
    parent.adopt(&span);
    span
}

/// A saga started by the invocation at `parent`: its steps and compensations become children of
/// this span's context, which is stored with the saga (they may run on another node, after a
/// restart, long after this span ended).
pub fn saga_start(parent: &TraceContext, name: &str, idempotency_key: &str) -> Span {
    if !parent.is_some() {
        return Span::none();
    }
    let span = tracing::info_span!("saga.start", otel.name = %format_args!("saga {name}"), faas.saga.name = name,
        faas.saga.idempotency_key = idempotency_key, faas.saga.id = tracing::field::Empty);
    parent.adopt(&span);
    span
}

/// One attempt of a saga's step (or of its compensation), a child of the saga's span.
pub fn saga_step(saga: &TraceContext, saga_id: &str, step: &str, compensation: bool, attempt: u32) -> Span {
    if !enabled() {
        return Span::none();
    }
    let verb = if compensation { "compensate" } else { "step" };
    let span = tracing::info_span!("saga.step", otel.name = %format_args!("{verb} {step}"), faas.saga.id = saga_id,
        faas.saga.step = step, faas.saga.compensation = compensation, faas.saga.attempt = attempt);
    saga.adopt(&span);
    span
}

/// One batch of records of a Kafka partition handed to a function: a child of the first
/// record's producer (when it sent a `traceparent`), linked to the others'.
pub fn kafka_batch(topic: &str, partition: i32, first_offset: i64, records: usize, producers: &[TraceContext]) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!("kafka.batch", otel.name = %format_args!("{topic} process"), otel.kind = "consumer",
        otel.status_code = tracing::field::Empty, messaging.system = "kafka", "messaging.operation.type" = "process",
        messaging.destination.name = topic, messaging.destination.partition.id = partition,
        messaging.kafka.offset = first_offset, messaging.batch.message_count = records);
    let mut producers = producers.iter().filter(|p| p.is_some());
    if let Some(first) = producers.next() {
        first.adopt(&span);
        producers.for_each(|other| other.link(&span));
    }
    span
}

/// The client span of an HTTP request the host or a guest sends out (its `traceparent` header
/// is this span's context).
pub fn outgoing_http(parent: &TraceContext, method: &http::Method, origin: &str) -> Span {
    if !parent.is_some() {
        return Span::none();
    }
    let span = tracing::info_span!("http.client", otel.name = %method, otel.kind = "client",
        otel.status_code = tracing::field::Empty, http.request.method = %method, server.address = origin,
        http.response.status_code = tracing::field::Empty);
    parent.adopt(&span);
    span
}

/// The OTLP exporter's HTTP client: the host's hyper with rustls (ring) and the Mozilla roots,
/// run on the server's tokio runtime (the SDK exports from a thread of its own, outside it).
mod export_client {
    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use opentelemetry_http::{HttpClient, HttpError, Request, Response};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

    #[derive(Clone)]
    pub struct ExportClient {
        client: Client<Connector, Full<Bytes>>,
        runtime: tokio::runtime::Handle,
    }

    impl std::fmt::Debug for ExportClient {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ExportClient")
        }
    }

    impl ExportClient {
        /// Must be called on the tokio runtime the exports are to run on.
        pub fn new() -> Result<Self, rustls::Error> {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let mut http = HttpConnector::new();
            // `https://` URIs pass through to the TLS layer around it.
            http.enforce_http(false);
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            let client = Client::builder(TokioExecutor::new()).build(connector);
            Ok(Self { client, runtime: tokio::runtime::Handle::current() })
        }
    }

    /// When the last failed export was reported (ms since the epoch): at most one warning a
    /// minute, however often the batches fail while the collector is away.
    static LAST_WARNING_MS: AtomicI64 = AtomicI64::new(0);

    fn warn_export_failed(endpoint: &http::Uri, why: &str) {
        let now = jiff::Timestamp::now().as_millisecond();
        let last = LAST_WARNING_MS.load(Ordering::Relaxed);
        if now - last >= 60_000
            && LAST_WARNING_MS.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(%endpoint, error = why, "exporting spans failed; they are dropped (warned at most once a minute)");
        }
    }

    #[async_trait::async_trait]
    impl HttpClient for ExportClient {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let endpoint = request.uri().clone();
            let answer = self.send(request).await;
            match &answer {
                Ok(response) if !response.status().is_success() => {
                    warn_export_failed(&endpoint, &format!("the collector answered {}", response.status()));
                }
                Ok(_) => {}
                Err(error) => warn_export_failed(&endpoint, &error.to_string()),
            }
            answer
        }
    }

    impl ExportClient {
        async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let client = self.client.clone();
            // The exporter's timeout bounds the whole call (it wraps this future).
            let send = async move {
                let response = client.request(request.map(Full::new)).await?;
                let (parts, body) = response.into_parts();
                // A collector answers with a small status message; a huge body is no answer.
                let body = http_body_util::Limited::new(body, 1 << 20).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            self.runtime.spawn(send).await?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Trace context is read only while tracing is on (as it is for every test here; no layer
    /// is installed, so nothing is exported).
    fn on() {
        ENABLED.store(true, Ordering::Relaxed);
    }

    #[test]
    fn a_traceparent_goes_on_as_it_came() {
        on();
        let context = TraceContext::parse(VALID);
        assert!(context.is_some());
        assert_eq!(context.traceparent().as_deref(), Some(VALID));
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(TraceContext::parse(unsampled).traceparent().as_deref(), Some(unsampled));
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        on();
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let context = TraceContext::parse(bad);
            assert!(!context.is_some(), "{bad:?} was taken");
            assert_eq!(context.traceparent(), None);
        }
    }

    #[test]
    fn the_first_valid_traceparent_header_counts_whatever_its_case() {
        on();
        let headers: [(&str, &[u8]); 4] =
            [("x-other", b"1"), ("traceparent", b"nonsense"), ("TraceParent", VALID.as_bytes()), ("traceparent", b"x")];
        assert_eq!(TraceContext::from_headers(headers).traceparent().as_deref(), Some(VALID));
        assert!(!TraceContext::from_headers([("x-other", VALID.as_bytes())]).is_some());
    }

    #[test]
    fn spans_without_an_exporter_have_no_context() {
        on();
        // No OpenTelemetry layer in this process: nothing to pass on.
        let span = tracing::info_span!("probe");
        assert!(!TraceContext::of(&span).is_some());
        assert!(!TraceContext::of(&Span::none()).is_some());
    }
}
