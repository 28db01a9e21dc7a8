//! `echo`: a plain [`wstd`] component, written exactly as one would for
//! `wasmtime serve`, to show that such components run unchanged on faas.
//!
//! Responds `200` and streams the request body back chunk by chunk as it arrives
//! (it is never buffered whole), with headers:
//! - `x-echo-method`: the request method;
//! - `x-echo-uri`: the path and query as received;
//! - `x-echo-{name}` for every request header `{name}` starting with `x-`
//!   (request `x-foo: 1` → response `x-echo-x-foo: 1`).

use wstd::http::{Body, BodyExt, Error, HeaderName, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, body) = request.into_parts();
    let uri = parts.uri.path_and_query().map_or("/", |path_and_query| path_and_query.as_str());

    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("x-echo-method", parts.method.as_str())
        .header("x-echo-uri", uri);
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-") {
            let echoed = HeaderName::from_bytes(format!("x-echo-{name}").as_bytes())?;
            response = response.header(echoed, value);
        }
    }

    // A stream of the request body's data chunks: each is one read of the wasi
    // input stream (whatever has arrived, at most 64 KiB), and wstd writes each
    // chunk to the response body before reading the next, so the body streams
    // through and is never held whole. Trailers are not echoed (not every host
    // accepts response trailers).
    let chunks = body.into_boxed_body().map_err(std::io::Error::other).into_data_stream();
    Ok(response.body(Body::from_try_stream(chunks))?)
}
