//! `misbehave`: does something bad on request, for the host's failure tests.
//! Routed by the last path segment:
//!
//! | path | behaviour |
//! | --- | --- |
//! | `/misbehave/ok` | `200 ok` |
//! | `/misbehave/panic` | `panic!("deliberate panic for tests")` (a trap) |
//! | `/misbehave/loop` | spins forever without I/O |
//! | `/misbehave/oom` | allocates and touches 1 MiB chunks until allocation fails (then aborts) |
//! | `/misbehave/sleep?ms=N` | `std::thread::sleep` for N ms, then `200 slept N` |
//! | `/misbehave/print?tag=T` | prints `stdout line T` and `stderr line T`, then `200 printed T` |
//! | `/misbehave/sandbox` | `200` JSON `{"env_vars": n, "root_dir_readable": b, "preopens": b}` |
//! | `/misbehave/outbound` | `GET http://127.0.0.1:9/` through raw `wasi:http/outgoing-handler`: `200 allowed` if a response arrives, else `200 denied: {error:?}` (the host should answer `HttpRequestDenied`) |
//! | `/misbehave/count` | `200 count N`: N is how many requests this instance has served (1 unless the deploy allows reuse) |
//! | `/misbehave/hold?mib=N` | allocates N MiB more and keeps it for the instance's life: `200 holding T MiB` (traps past the memory limit) |
//! | anything else | `404 unknown misbehaviour` |

use std::alloc::Layout;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use faas_sdk::{IntoResponse, Request, RequestExt, Response, StatusCode, http_handler, json};

const MIB: usize = 1024 * 1024;

/// Requests this instance served: state that survives only while the host reuses the instance.
static SERVED: AtomicU64 = AtomicU64::new(0);
/// Memory kept across requests by `/misbehave/hold`.
static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[http_handler]
async fn handle(req: Request) -> Response {
    let action = req.uri().path().trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    match action {
        "ok" => "ok".into_response(),
        "count" => format!("count {}", SERVED.fetch_add(1, Ordering::SeqCst) + 1).into_response(),
        "hold" => match req.query_param("mib").map(|mib| mib.parse::<usize>()) {
            Some(Ok(mib)) => {
                let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                for _ in 0..mib {
                    let mut chunk: Vec<u8> = Vec::new();
                    if chunk.try_reserve_exact(MIB).is_err() {
                        eprintln!("misbehave: allocation failed holding {} MiB", held.len());
                        std::alloc::handle_alloc_error(Layout::new::<[u8; MIB]>());
                    }
                    chunk.resize(MIB, 0x5a);
                    held.push(std::hint::black_box(chunk));
                }
                format!("holding {} MiB", held.len()).into_response()
            }
            _ => (StatusCode::BAD_REQUEST, "expected ?mib=<mebibytes>").into_response(),
        },
        "panic" => panic!("deliberate panic for tests"),
        "loop" => spin(),
        "oom" => exhaust_memory(),
        "sleep" => match req.query_param("ms").map(|ms| ms.parse::<u64>()) {
            Some(Ok(ms)) => {
                std::thread::sleep(Duration::from_millis(ms));
                format!("slept {ms}").into_response()
            }
            _ => (StatusCode::BAD_REQUEST, "expected ?ms=<milliseconds>").into_response(),
        },
        "print" => {
            let tag = req.query_param("tag").unwrap_or_default();
            println!("stdout line {tag}");
            eprintln!("stderr line {tag}");
            format!("printed {tag}").into_response()
        }
        "sandbox" => json(
            StatusCode::OK,
            &serde_json::json!({
                "env_vars": std::env::vars_os().count(),
                "root_dir_readable": std::fs::read_dir("/").is_ok(),
                "preopens": std::fs::read_dir(".").is_ok(),
            }),
        ),
        "outbound" => match outbound_request() {
            Ok(status) => {
                println!("misbehave: outbound request answered {status}");
                "allowed".into_response()
            }
            Err(error) => format!("denied: {error}").into_response(),
        },
        _ => (StatusCode::NOT_FOUND, "unknown misbehaviour").into_response(),
    }
}

/// Sends `GET http://127.0.0.1:9/` with the raw `wasi:http/outgoing-handler` bindings and
/// waits for the response head: its status, or the error (`{:?}` of the wasi `error-code`).
fn outbound_request() -> Result<u16, String> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "could not set the method".to_owned())?;
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "could not set the scheme".to_owned())?;
    request.set_authority(Some("127.0.0.1:9")).map_err(|()| "could not set the authority".to_owned())?;
    request.set_path_with_query(Some("/")).map_err(|()| "could not set the path".to_owned())?;
    let response = outgoing_handler::handle(request, None).map_err(|code| format!("{code:?}"))?;
    response.subscribe().block();
    match response.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(code))) => Err(format!("{code:?}")),
        Some(Err(())) => Err("the response was already taken".to_owned()),
        None => Err("no response after it was ready".to_owned()),
    }
}

/// Spins forever with no I/O; `black_box` keeps the loop from being optimised away.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks, writing every byte and keeping them all alive, until an
/// allocation fails; then aborts the way Rust does on out-of-memory (a trap).
fn exhaust_memory() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk: Vec<u8> = Vec::new();
        if chunk.try_reserve_exact(MIB).is_err() {
            eprintln!("misbehave: allocation failed after {} MiB", chunks.len());
            std::alloc::handle_alloc_error(Layout::new::<[u8; MIB]>());
        }
        chunk.resize(MIB, 0xa5);
        chunks.push(std::hint::black_box(chunk));
    }
}
