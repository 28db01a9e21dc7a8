//! The bridge between `wasi:http/incoming-handler` and handlers, used by the
//! code that `#[http_handler]` generates (through `__private`).
//!
//! One call of the export is one request: [`serve`] starts a `wstd` executor
//! (`wstd::runtime::block_on`, which drives wasi pollables), reads the whole
//! request body asynchronously, runs the handler's future to completion, sends
//! the response head and then writes the body.

use std::future::Future;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::uri::{Authority, PathAndQuery, Scheme as UriScheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method as HttpMethod, StatusCode, Uri};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam, Scheme,
};
use wstd::io::{AsyncInputStream, AsyncOutputStream};

use crate::body::Body;
use crate::request::Request;
use crate::response::{Response, text_response};

/// Size of one read from the request body stream.
const READ_CHUNK: usize = 64 * 1024;
/// Upper bound on what `content-length` may make us reserve up front.
const MAX_PREALLOCATION: u64 = 16 * 1024 * 1024;

/// Serves one request: reads it, runs `handler`, sends what it returns.
pub(crate) fn serve<F, Fut>(request: IncomingRequest, response_out: ResponseOutparam, handler: F)
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    wstd::runtime::block_on(async move {
        let response = match read_request(request).await {
            Ok(request) => handler(request).await,
            Err(message) => {
                eprintln!("faas-sdk: rejecting request: {message}");
                text_response(StatusCode::BAD_REQUEST, message)
            }
        };
        send_response(response, response_out).await;
    });
}

/// Converts the wasi request into a [`Request`], reading the whole body.
async fn read_request(incoming: IncomingRequest) -> Result<Request, String> {
    let method = match incoming.method() {
        Method::Get => HttpMethod::GET,
        Method::Head => HttpMethod::HEAD,
        Method::Post => HttpMethod::POST,
        Method::Put => HttpMethod::PUT,
        Method::Delete => HttpMethod::DELETE,
        Method::Connect => HttpMethod::CONNECT,
        Method::Options => HttpMethod::OPTIONS,
        Method::Trace => HttpMethod::TRACE,
        Method::Patch => HttpMethod::PATCH,
        Method::Other(other) => {
            HttpMethod::from_bytes(other.as_bytes()).map_err(|err| format!("invalid method {other:?}: {err}"))?
        }
    };
    let uri = request_uri(&incoming)?;

    let mut headers = HeaderMap::new();
    for (name, value) in incoming.headers().entries() {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|err| format!("invalid header name {name:?}: {err}"))?;
        let value = HeaderValue::from_bytes(&value).map_err(|err| format!("invalid value of header {name}: {err}"))?;
        headers.append(name, value);
    }

    let size_hint = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_PREALLOCATION);
    let body = incoming.consume().map_err(|()| "request body already consumed".to_owned())?;
    let bytes = read_body(&body, usize::try_from(size_hint).unwrap_or(0)).await?;
    // Trailers are not exposed; finishing releases the body.
    drop(IncomingBody::finish(body));

    let mut request = Request::new(Body::from(bytes));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The request URI: path and query, plus scheme and authority when both are known.
fn request_uri(incoming: &IncomingRequest) -> Result<Uri, String> {
    let path_and_query = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
    let path_and_query = PathAndQuery::try_from(path_and_query.as_str())
        .map_err(|err| format!("invalid path {path_and_query:?}: {err}"))?;
    let scheme = match incoming.scheme() {
        Some(Scheme::Http) => Some(UriScheme::HTTP),
        Some(Scheme::Https) => Some(UriScheme::HTTPS),
        Some(Scheme::Other(other)) => UriScheme::try_from(other.as_str()).ok(),
        None => None,
    };
    let authority = incoming.authority().and_then(|a| Authority::try_from(a.as_str()).ok());
    let builder = match (scheme, authority) {
        (Some(scheme), Some(authority)) => Uri::builder().scheme(scheme).authority(authority),
        _ => Uri::builder(),
    };
    builder.path_and_query(path_and_query).build().map_err(|err| format!("invalid request URI: {err}"))
}

/// Reads the whole body stream.
async fn read_body(body: &IncomingBody, capacity: usize) -> Result<Bytes, String> {
    let stream = body.stream().map_err(|()| "request body stream already taken".to_owned())?;
    let stream = AsyncInputStream::new(stream);
    let mut data = Vec::with_capacity(capacity);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(err) => return Err(format!("failed to read request body: {err}")),
        }
    }
    Ok(data.into())
}

/// Whether a response with this status may carry a `content-length`/body.
fn allows_body(status: StatusCode) -> bool {
    !(status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED)
}

/// Sends the response head, then writes the body and finishes it.
async fn send_response(response: Response, response_out: ResponseOutparam) {
    let (parts, body) = response.into_parts();
    let body = body.into_bytes();

    let fields = Fields::new();
    for (name, value) in &parts.headers {
        if let Err(err) = fields.append(name.as_str(), value.as_bytes()) {
            eprintln!("faas-sdk: dropping response header {name}: {err:?}");
        }
    }
    if allows_body(parts.status)
        && !parts.headers.contains_key(CONTENT_LENGTH)
        && let Err(err) = fields.append(CONTENT_LENGTH.as_str(), body.len().to_string().as_bytes())
    {
        eprintln!("faas-sdk: could not set content-length: {err:?}");
    }

    let outgoing = OutgoingResponse::new(fields);
    // `StatusCode` only holds valid codes, which wasi accepts.
    let _ = outgoing.set_status_code(parts.status.as_u16());
    let Ok(outgoing_body) = outgoing.body() else { unreachable!("the body of a new outgoing-response is taken once") };
    ResponseOutparam::set(response_out, Ok(outgoing));

    let Ok(stream) = outgoing_body.write() else { unreachable!("the stream of a new outgoing-body is taken once") };
    let stream = AsyncOutputStream::new(stream);
    let written = async {
        stream.write_all(&body).await?;
        stream.flush().await
    }
    .await;
    // The stream is a child of the body: drop it before finishing the body.
    drop(stream);
    match written {
        Ok(()) => {
            if let Err(err) = OutgoingBody::finish(outgoing_body, None) {
                eprintln!("faas-sdk: failed to finish response body: {err:?}");
            }
        }
        // Dropping the body unfinished tells the host the response is incomplete.
        Err(err) => eprintln!("faas-sdk: failed to write response body: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodiless_statuses() {
        assert!(allows_body(StatusCode::OK));
        assert!(allows_body(StatusCode::NOT_FOUND));
        assert!(!allows_body(StatusCode::NO_CONTENT));
        assert!(!allows_body(StatusCode::NOT_MODIFIED));
        assert!(!allows_body(StatusCode::CONTINUE));
    }
}
