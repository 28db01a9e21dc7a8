//! Outgoing HTTP from a function, through standard `wasi:http/outgoing-handler` (so `wstd`'s or
//! `waki`'s clients work too; this is the blocking helper).
//!
//! The host lets a function reach only the origins it was deployed with
//! (`faas deploy … --allow-outbound https://api.example.com`); anything else fails with
//! [`Error::Denied`] before it touches the network. Redirects are not followed: a 3xx reaches
//! the caller as it is.
//!
//! ```no_run
//! use faas_sdk::outbound;
//!
//! fn notify(order: &str) -> Result<u16, outbound::Error> {
//!     let body = format!(r#"{{"order":"{order}"}}"#).into_bytes();
//!     let request = http::Request::post("https://hooks.example.com/orders")
//!         .header("content-type", "application/json")
//!         .body(body)
//!         .map_err(|e| outbound::Error::Invalid(e.to_string()))?;
//!     Ok(outbound::send(request)?.status().as_u16())
//! }
//! ```

use std::fmt;

/// Why an outgoing request produced no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The origin is not in the function's outbound allow-list, or its host resolves only to
    /// internal addresses.
    Denied(String),
    /// The request could not be built (a bad URL, method or header).
    Invalid(String),
    /// The host reported a failure: connection, TLS, timeout, body limit (`wasi:http`'s
    /// `error-code`, as text).
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(m) => write!(f, "outgoing request denied: {m}"),
            Self::Invalid(m) => write!(f, "invalid outgoing request: {m}"),
            Self::Failed(m) => write!(f, "outgoing request failed: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// `GET url`, the whole response body read into memory.
pub fn get(url: &str) -> Result<http::Response<Vec<u8>>, Error> {
    let request = http::Request::get(url).body(Vec::new()).map_err(|e| Error::Invalid(e.to_string()))?;
    send(request)
}

/// Sends `request` and reads the whole response. Blocks the instance until the response is in.
pub fn send(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
    imp::send(request)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Error;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme, http_error_code,
    };
    use wasip2::io::streams::StreamError;

    fn failed(code: &ErrorCode) -> Error {
        match code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => Error::Denied(format!("{code:?}")),
            other => Error::Failed(format!("{other:?}")),
        }
    }

    pub fn send(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        let (parts, body) = request.into_parts();
        let headers = Fields::new();
        for (name, value) in &parts.headers {
            headers
                .append(name.as_str(), value.as_bytes())
                .map_err(|e| Error::Invalid(format!("header {name}: {e:?}")))?;
        }
        let outgoing = OutgoingRequest::new(headers);
        let method = match parts.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        let invalid = |what: &str| Error::Invalid(format!("the host refused the request's {what}"));
        outgoing.set_method(&method).map_err(|()| invalid("method"))?;
        let scheme = match parts.uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            _ => return Err(Error::Invalid(format!("`{}` is not an absolute http(s) URL", parts.uri))),
        };
        outgoing.set_scheme(Some(&scheme)).map_err(|()| invalid("scheme"))?;
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        outgoing.set_authority(authority.as_deref()).map_err(|()| invalid("authority"))?;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        outgoing.set_path_with_query(Some(path)).map_err(|()| invalid("path"))?;

        let outgoing_body = outgoing.body().map_err(|()| invalid("body"))?;
        let future = outgoing_handler::handle(outgoing, None).map_err(|code| failed(&code))?;
        let sent = (|| {
            {
                let stream = outgoing_body.write().map_err(|()| invalid("body"))?;
                for chunk in body.chunks(4096) {
                    stream
                        .blocking_write_and_flush(chunk)
                        .map_err(|e| Error::Failed(format!("sending the body: {e:?}")))?;
                }
            }
            OutgoingBody::finish(outgoing_body, None).map_err(|code| failed(&code))
        })();
        if let Err(body_error) = sent {
            // The host closes the body when it refuses the request (an origin off the
            // allow-list): the request's own error says why, the closed stream does not.
            future.subscribe().block();
            return Err(match future.get() {
                Some(Ok(Err(code))) => failed(&code),
                _ => body_error,
            });
        }

        future.subscribe().block();
        let incoming = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(failed(&code)),
            Some(Err(())) | None => return Err(Error::Failed("the response was already taken".into())),
        };
        let mut response = http::Response::builder().status(incoming.status());
        for (name, value) in incoming.headers().entries() {
            response = response.header(name, value);
        }
        let body = incoming.consume().map_err(|()| Error::Failed("the response body was already taken".into()))?;
        let mut bytes = Vec::new();
        {
            let stream = body.stream().map_err(|()| Error::Failed("the response body was already taken".into()))?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(error)) => {
                        return Err(match http_error_code(&error) {
                            Some(code) => failed(&code),
                            // The host's message, without the backtrace it may carry.
                            None => {
                                Error::Failed(error.to_debug_string().lines().next().unwrap_or_default().to_owned())
                            }
                        });
                    }
                }
            }
        }
        let _trailers = IncomingBody::finish(body);
        response.body(bytes).map_err(|e| Error::Failed(format!("the response head: {e}")))
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Error;

    /// Natively (unit tests) there is no host to send through.
    pub fn send(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        Err(Error::Failed(format!("no outgoing HTTP outside the platform ({})", request.uri())))
    }
}
