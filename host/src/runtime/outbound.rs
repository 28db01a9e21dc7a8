//! Outgoing HTTP of guests (`wasi:http/outgoing-handler`), through the function's allow-list.
//!
//! [`Outbound`] is one function version's outgoing side on this node: its [`AllowList`], a
//! pooled client (hyper's connection pool, so calling the same API per request does not pay a
//! TCP and TLS handshake each time), and a cap on requests in flight. [`OutboundHooks`] are the
//! per-invocation `wasi:http` hooks that send a guest's request through it:
//!
//! - an origin not on the list fails with `HttpRequestDenied` and a log line, before anything
//!   touches the network;
//! - names are resolved by [`GuardedResolver`], which drops loopback, private, link-local and
//!   metadata addresses (unless an allow entry names the address literally): the connector
//!   connects only to addresses the resolver returned, so the check applies to the address
//!   actually connected to and DNS rebinding cannot slip past it;
//! - redirects are not followed (the guest sees the 3xx);
//! - connect, first-byte and between-bytes timeouts (the function's, capped by what is left of
//!   the invocation's deadline), a response-body limit;
//! - TLS with rustls and the Mozilla roots compiled in (`webpki-roots`): the same on every
//!   machine, with no dependency on a CA bundle being installed in a minimal container.
//!
//! Every request is counted (`faas_outbound_requests_total{function,origin,outcome}`) and timed,
//! and carries the invocation's `x-request-id` so traces join up.

use crate::metrics::Metrics;
use crate::model::outbound::{AllowList, OutboundSpec, is_internal};
use crate::telemetry::{self, TraceContext};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::Instrument as _;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The `origin` label of requests to origins off the allow-list.
const NOT_ALLOWED: &str = "(not allowed)";

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;
type SendResult = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>;

/// One function version's outgoing HTTP on this node.
pub struct Outbound {
    function: Arc<str>,
    spec: OutboundSpec,
    allow: Arc<AllowList>,
    client: Client<Connector, WasiBody>,
    in_flight: Arc<Semaphore>,
}

impl Outbound {
    pub fn new(function: Arc<str>, spec: &OutboundSpec) -> Result<Self, rustls::Error> {
        let allow = Arc::new(AllowList::new(spec));
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow: allow.clone() });
        // `https://` URIs pass through to the TLS layer around it.
        http.enforce_http(false);
        http.set_connect_timeout(Some(spec.connect_timeout()));
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let in_flight = Arc::new(Semaphore::new(spec.max_concurrent as usize));
        Ok(Self { function, spec: spec.clone(), allow, client, in_flight })
    }
}

/// A response to a request the host made for a function ([`Outbound::send_host`]).
#[derive(Debug)]
pub struct HostResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Outbound {
    /// Sends a request the host makes on the function's behalf (a saga's HTTP step, the
    /// callback of an async invocation) through the same allow-list, resolver, limits and
    /// metrics as the guest's own requests, and reads the whole response within `timeout`.
    pub async fn send_host(
        &self,
        metrics: &Metrics,
        request_id: &str,
        trace: &TraceContext,
        timeout: Duration,
        request: http::Request<Bytes>,
    ) -> Result<HostResponse, HttpError> {
        let deadline = Instant::now() + timeout;
        let request =
            request.map(|body| http_body_util::Full::new(body).map_err(|never| match never {}).boxed_unsync());
        let (response, _) = send(self, metrics, request_id, trace, deadline, request, None).await?;
        let (parts, body) = response.into_parts();
        let body = match tokio::time::timeout_at(deadline, body.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(error)) => return Err(error),
            Err(_elapsed) => return Err(HttpError::ConnectionReadTimeout),
        };
        Ok(HostResponse { status: parts.status, headers: parts.headers, body })
    }

    /// Whether the allow-list lets the function reach `url` (checked again when it is sent).
    pub fn allows_url(&self, url: &http::Uri) -> bool {
        target(url).is_some_and(|(https, host, port)| self.allow.allows(https, &host, port))
    }
}

/// The `wasi:http` hooks of one invocation: its function's [`Outbound`], its request id and
/// deadline. Without an allow-list every request is refused, as before any grant.
pub struct OutboundHooks {
    outbound: Arc<Outbound>,
    metrics: Metrics,
    request_id: String,
    trace: TraceContext,
    deadline: Instant,
}

impl OutboundHooks {
    pub fn new(
        outbound: Arc<Outbound>,
        metrics: Metrics,
        request_id: &str,
        trace: &TraceContext,
        deadline: Instant,
    ) -> Self {
        Self { outbound, metrics, request_id: request_id.to_owned(), trace: trace.clone(), deadline }
    }

    /// A reused instance's next invocation.
    pub fn begin(&mut self, request_id: &str, trace: &TraceContext, deadline: Instant) {
        request_id.clone_into(&mut self.request_id);
        trace.clone_into(&mut self.trace);
        self.deadline = deadline;
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let (outbound, metrics, request_id, trace, deadline) =
            (self.outbound.clone(), self.metrics.clone(), self.request_id.clone(), self.trace.clone(), self.deadline);
        Box::new(async move { send(&outbound, &metrics, &request_id, &trace, deadline, request, options).await })
    }
}

/// `scheme://host:port` of a request, with the scheme's default port; IPv6 without brackets.
fn target(uri: &http::Uri) -> Option<(bool, String, u16)> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return None,
    };
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Some((https, host, port))
}

async fn send(
    outbound: &Outbound,
    metrics: &Metrics,
    request_id: &str,
    trace: &TraceContext,
    deadline: Instant,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    let function = &*outbound.function;
    let Some((https, host, port)) = target(request.uri()) else { return Err(HttpError::HttpRequestUriInvalid) };
    let origin = format!("{}://{host}:{port}", if https { "https" } else { "http" });
    let count = |outcome: &str| metrics.outbound_requests.with_label_values(&[function, &origin, outcome]).inc();
    if !outbound.allow.allows(https, &host, port) {
        tracing::warn!(function, origin = %origin, request_id, "outgoing request denied: origin not in the function's outbound allow-list");
        // Not labelled with the origin: a guest could mint any number of them.
        metrics.outbound_requests.with_label_values(&[function, NOT_ALLOWED, "denied"]).inc();
        return Err(HttpError::HttpRequestDenied);
    }
    // What the guest asked for, never more than the function's limits or the time left.
    let left = deadline.saturating_duration_since(Instant::now());
    let pick = |asked: Option<Duration>, limit: Duration| asked.map_or(limit, |a| a.min(limit)).min(left);
    let spec = &outbound.spec;
    let options = options.unwrap_or_default();
    let connect = pick(options.connect_timeout, spec.connect_timeout());
    let first_byte = pick(options.first_byte_timeout, spec.first_byte_timeout());
    let between_bytes = pick(options.between_bytes_timeout, spec.between_bytes_timeout());

    let permit = match tokio::time::timeout(connect, outbound.in_flight.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            tracing::warn!(function, origin = %origin, request_id, limit = spec.max_concurrent,
                "outgoing request refused: the function's outgoing requests in flight are at their limit");
            count("limited");
            return Err(HttpError::ConnectionLimitReached);
        }
    };
    if let Ok(value) = http::HeaderValue::from_str(request_id) {
        request.headers_mut().insert("x-request-id", value);
    }
    // The request's client span; its context goes out as `traceparent` unless the guest set
    // one itself (it may continue a trace of its own).
    let span = telemetry::outgoing_http(trace, request.method(), &origin);
    let headers = request.headers_mut();
    if !headers.contains_key(telemetry::TRACEPARENT)
        && let Some(Ok(value)) = TraceContext::of(&span).traceparent().map(|v| http::HeaderValue::from_str(&v))
    {
        headers.insert(telemetry::TRACEPARENT, value);
    }
    let started = std::time::Instant::now();
    // The first-byte clock runs from the send, and so includes opening a connection when none
    // is pooled (which `connect_timeout` bounds on its own): hyper's pooled client does not
    // tell the two apart per request.
    let response = tokio::time::timeout(first_byte, outbound.client.request(request)).instrument(span.clone()).await;
    metrics.outbound_duration.with_label_values(&[function]).observe(started.elapsed().as_secs_f64());
    match &response {
        Ok(Ok(response)) => telemetry::http_response(&span, response.status()),
        Ok(Err(error)) => telemetry::failed(&span, &error.to_string()),
        Err(_elapsed) => telemetry::failed(&span, "no response within the first-byte timeout"),
    }
    let response = match response {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let error = client_error(&error);
            if matches!(error, HttpError::DestinationIpProhibited) {
                tracing::warn!(function, origin = %origin, request_id,
                    "outgoing request denied: the host resolves only to internal addresses (allow one literally to reach it)");
                count("denied");
            } else {
                tracing::info!(function, origin = %origin, request_id, error = ?error, "outgoing request failed");
                count("failed");
            }
            return Err(error);
        }
        Err(_elapsed) => {
            count("timeout");
            return Err(HttpError::ConnectionReadTimeout);
        }
    };
    count(response.status().as_str());
    let limit = spec.max_response_bytes;
    let response = response.map(|incoming| {
        let body = GuardedBody {
            incoming,
            remaining: limit,
            limit,
            between_bytes,
            idle: Box::pin(tokio::time::sleep(between_bytes)),
            _permit: permit,
        };
        body.boxed_unsync()
    });
    // hyper's pool drives the connection in its own task: nothing more to await here.
    Ok((response, Box::new(async { Ok(()) })))
}

/// What a failed send means to the guest. A connect error from [`GuardedResolver`] is the
/// SSRF refusal; the rest keep hyper's meaning as far as it is known.
fn client_error(error: &hyper_util::client::legacy::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.downcast_ref::<InternalAddress>().is_some() {
            return HttpError::DestinationIpProhibited;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
                std::io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
                _ if io.to_string().contains("certificate") => HttpError::TlsCertificateError,
                _ => HttpError::DestinationUnavailable,
            };
        }
        source = cause.source();
    }
    if error.is_connect() { HttpError::DestinationUnavailable } else { HttpError::HttpProtocolError }
}

/// Resolves host names for the connector, dropping internal addresses unless an allow entry
/// names one literally.
#[derive(Clone)]
pub struct GuardedResolver {
    allow: Arc<AllowList>,
}

/// Every address a name resolved to was internal.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` resolves only to internal addresses")]
struct InternalAddress(String);

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        Box::pin(async move {
            // The port is the connector's business; 0 here.
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let reachable: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| !is_internal(address.ip()) || allow.names_address(address.ip()))
                .collect();
            if reachable.is_empty() {
                return Err(Box::new(InternalAddress(name.as_str().to_owned())) as Self::Error);
            }
            Ok(reachable.into_iter())
        })
    }
}

/// The response body as the guest reads it: at most `limit` bytes, no silence longer than
/// `between_bytes`, and the in-flight permit held until it is done.
struct GuardedBody {
    incoming: hyper::body::Incoming,
    remaining: u64,
    limit: u64,
    between_bytes: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(HttpError::from(error)))),
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > self.remaining {
                    self.remaining = 0;
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(self.limit)))));
                }
                self.remaining -= len;
                let next = Instant::now() + self.between_bytes;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_carry_default_ports() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert_eq!(target(&uri("https://API.example.com/x")), Some((true, "api.example.com".into(), 443)));
        assert_eq!(target(&uri("http://127.0.0.1:9000/")), Some((false, "127.0.0.1".into(), 9000)));
        assert_eq!(target(&uri("http://[::1]:8080/")), Some((false, "::1".into(), 8080)));
        assert_eq!(target(&uri("/relative")), None);
    }

    #[tokio::test]
    async fn names_of_internal_addresses_are_refused_unless_named_literally() {
        use tower_service::Service;
        let name = |n: &str| n.parse::<Name>().unwrap();
        let spec = |allow: &[&str]| OutboundSpec {
            allow: allow.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        };
        let mut guarded = GuardedResolver { allow: Arc::new(AllowList::new(&spec(&["http://localhost:9000"]))) };
        let refused = guarded.call(name("localhost")).await.unwrap_err();
        assert!(refused.downcast_ref::<InternalAddress>().is_some(), "{refused}");
        let mut literal = GuardedResolver {
            allow: Arc::new(AllowList::new(&spec(&["http://localhost:9000", "http://127.0.0.1:9000"]))),
        };
        let addresses: Vec<_> = literal.call(name("localhost")).await.unwrap().collect();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()) && !addresses.is_empty(), "{addresses:?}");
    }
}
