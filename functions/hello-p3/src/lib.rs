//! `hello-p3`: a WASIp3 HTTP function. Its export is `wasi:http/handler@0.3.0`, an *async* function:
//! the handler awaits (timers, the request body) without blocking its instance, so a deploy with
//! `--reuse N --reuse-concurrency M` serves up to M requests at once in one instance.
//!
//! Deployed at `/p3` and `/p3/...` (any first path segment works the same):
//!
//! | Request | Answer |
//! |---|---|
//! | `GET /p3[/{name}]` | `Hello, {name}!` (`world` without a name) |
//! | `POST /p3/echo` | the request body, streamed back as it arrives |
//! | `GET /p3/sleep?ms=N` | waits N ms (an async timer: the instance stays free for others), then `slept N ms` |
//! | `GET /p3/count` | `count N`: how many requests this instance has served (1 unless the deploy allows reuse) |
//! | `GET /p3/hold?mib=N` | allocates N MiB more and keeps it for the instance's life: `holding T MiB` |
//! | `GET /p3/fetch?authority=H:P&path=/p` | `GET http://H:P/p` through `wasi:http/client` (the deploy's outbound allow-list decides): its body, or `502 error: {code}` |
//! | `GET /p3/trap` | traps (a guest bug): the platform answers 500 and discards the instance |
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p hello-p3` in `functions/` (Rust has no
//! wasip3 target yet; the p2 target produces a component whose async exports wasmtime runs).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

wasip3::http::service::export!(HelloP3);

struct HelloP3;

/// Requests this instance has served.
static SERVED: AtomicU64 = AtomicU64::new(0);
/// Memory kept across requests by `/hold`.
static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

impl wasip3::exports::http::handler::Guest for HelloP3 {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
        let target = request.get_path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        // The first segment is the route it is deployed at (`/p3/...` in the README), whatever
        // its name.
        let rest: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
        match (request.get_method(), rest.as_slice()) {
            (Method::Post, ["echo"]) => Ok(echo(request)),
            (Method::Get, ["count"]) => Ok(text(200, format!("count {served}"))),
            (Method::Get, ["sleep"]) => {
                let ms: u64 = param(query, "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                Ok(text(200, format!("slept {ms} ms")))
            }
            (Method::Get, ["hold"]) => {
                let mib: usize = param(query, "mib").and_then(|v| v.parse().ok()).unwrap_or(1);
                let mut held = HELD.lock().unwrap();
                for _ in 0..mib {
                    // Touch every page so the memory is really committed.
                    held.push(vec![1u8; 1 << 20]);
                }
                Ok(text(200, format!("holding {} MiB", held.len())))
            }
            (Method::Get, ["fetch"]) => {
                let authority = param(query, "authority").unwrap_or_default();
                Ok(match fetch(authority, param(query, "path").unwrap_or("/")).await {
                    Ok(body) => text(200, body),
                    Err(code) => text(502, format!("error: {code:?}")),
                })
            }
            (Method::Get, ["trap"]) => panic!("hello-p3: /trap asked for a trap"),
            (Method::Get, name) => {
                let name = if name.is_empty() { "world".to_owned() } else { name.join("/") };
                Ok(text(200, format!("Hello, {name}!")))
            }
            _ => Ok(text(405, "GET, or POST /p3/echo\n".to_owned())),
        }
    }
}

/// The request body streamed back: each chunk is written out as soon as it is read, so a large
/// body never sits whole in the guest's memory.
fn echo(request: Request) -> Response {
    let (_, request_done) = wit_future::new(|| Ok(()));
    let (mut incoming, _trailers) = Request::consume_body(request, request_done);
    let (mut outgoing, contents) = wit_stream::new();
    let (_trailers_tx, trailers) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(contents), trailers);
    wasip3::spawn_local(async move {
        loop {
            let (status, chunk) = incoming.read(Vec::with_capacity(64 << 10)).await;
            if !chunk.is_empty() && !outgoing.write_all(chunk).await.is_empty() {
                break; // the client went away
            }
            if !matches!(status, StreamResult::Complete(_)) {
                break;
            }
        }
    });
    response
}

/// `GET http://{authority}{path}`: the response body as text.
async fn fetch(authority: &str, path: &str) -> Result<String, ErrorCode> {
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, no_trailers, None);
    let invalid = |what: &str| ErrorCode::InternalError(Some(format!("invalid {what}")));
    request.set_scheme(Some(&wasip3::http::types::Scheme::Http)).map_err(|()| invalid("scheme"))?;
    request.set_authority(Some(authority)).map_err(|()| invalid("authority"))?;
    request.set_path_with_query(Some(path)).map_err(|()| invalid("path"))?;
    let response = wasip3::http::client::send(request).await?;
    let (_, done) = wit_future::new(|| Ok(()));
    let (body, _trailers) = Response::consume_body(response, done);
    Ok(String::from_utf8_lossy(&body.collect().await).into_owned())
}

fn text(status: u16, body: String) -> Response {
    let headers = Fields::from_list(&[("content-type".to_owned(), b"text/plain; charset=utf-8".to_vec())])
        .expect("a valid header");
    let (mut tx, contents) = wit_stream::new();
    let (_trailers_tx, trailers) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(contents), trailers);
    response.set_status_code(status).expect("a valid status");
    wasip3::spawn_local(async move {
        tx.write_all(body.into_bytes()).await;
    });
    response
}

/// `key`'s value in a query string (no percent-decoding: the parameters here are numbers).
fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}
