//! `config-echo`: reads its variables and secrets through `wasi:config/store`
//! (`faas_sdk::config`). A test function: it shows secrets, which a real one never should.
//!
//! | request | answer |
//! |---|---|
//! | `GET /config-echo` | every key and value, as a JSON object |
//! | `GET /config-echo/KEY` | the value of `KEY`, or `404` |
//! | `GET /config-echo/print/KEY[?pad=N&split=M]` | prints `KEY=<value>` to stdout (the host redacts secrets there), answers `printed`; after N bytes of padding and in two writes, the first ending M bytes into `KEY=<value>` (to test redaction where a long line is cut) |
//! | `GET /config-echo/draft/KEY` | the value of `KEY` read through `wasi:config/store@0.2.0-draft` (what wasmCloud's components import), or `404` |
//! | `GET /config-echo/draft-2024/KEY` | the same through `wasi:config/store@0.2.0-draft-2024-09-27` (Spin 3's) |
//! | `GET /config-echo/slow/KEY?ms=N` | sleeps N ms, then answers the value of `KEY` (an invocation keeps the values it started with) |

use faas_sdk::{IntoResponse, Request, RequestExt, Response, StatusCode, config, http_handler, json};
use std::io::Write as _;

#[http_handler]
fn handle(req: Request) -> impl IntoResponse {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && *s != "config-echo").collect();
    match segments.as_slice() {
        [] => {
            let all: serde_json::Map<String, serde_json::Value> =
                config::get_all().into_iter().map(|(k, v)| (k, v.into())).collect();
            json(StatusCode::OK, &all)
        }
        ["print", key] => {
            let line = format!("{key}={}", config::get(key).unwrap_or_default());
            let pad = req.query_param("pad").and_then(|n| n.parse().ok()).unwrap_or(0);
            let split = req.query_param("split").and_then(|n| n.parse().ok()).unwrap_or(line.len()).min(line.len());
            let mut out = std::io::stdout().lock();
            let first = format!("{}{}", "x".repeat(pad), &line[..split]);
            let written = out.write_all(first.as_bytes()).and_then(|()| out.flush());
            let written = written.and_then(|()| writeln!(out, "{}", &line[split..])).and_then(|()| out.flush());
            match written {
                Ok(()) => "printed".into_response(),
                Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
            }
        }
        ["slow", key] => {
            let ms = req.query_param("ms").and_then(|ms| ms.parse().ok()).unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            value(key)
        }
        ["draft", key] => found(key, drafts::get(key)),
        ["draft-2024", key] => found(key, drafts::get_2024(key)),
        [key] => value(key),
        _ => (StatusCode::NOT_FOUND, "no such path").into_response(),
    }
}

fn value(key: &str) -> Response {
    found(key, config::get(key))
}

fn found(key: &str, value: Option<String>) -> Response {
    match value {
        Some(value) => value.into_response(),
        None => (StatusCode::NOT_FOUND, format!("{key} is not set")).into_response(),
    }
}

/// The pre-release `wasi:config` interfaces, bound directly (the SDK binds `0.2.0-rc.1`).
mod drafts {
    mod wasmcloud {
        wit_bindgen::generate!({
            inline: "package wasi:config@0.2.0-draft;
                interface store {
                    variant error { upstream(string), io(string) }
                    get: func(key: string) -> result<option<string>, error>;
                    get-all: func() -> result<list<tuple<string, string>>, error>;
                }
                world imports { import store; }",
            world: "imports",
        });
        pub use wasi::config::store::get;
    }
    mod spin {
        wit_bindgen::generate!({
            inline: "package wasi:config@0.2.0-draft-2024-09-27;
                interface store {
                    variant error { upstream(string), io(string) }
                    get: func(key: string) -> result<option<string>, error>;
                    get-all: func() -> result<list<tuple<string, string>>, error>;
                }
                world imports { import store; }",
            world: "imports",
        });
        pub use wasi::config::store::get;
    }

    pub fn get(key: &str) -> Option<String> {
        wasmcloud::get(key).ok().flatten()
    }

    pub fn get_2024(key: &str) -> Option<String> {
        spin::get(key).ok().flatten()
    }
}
