//! `config-echo`: reads its variables and secrets through `wasi:config/store`
//! (`faas_sdk::config`). A test function: it shows secrets, which a real one never should.
//!
//! | request | answer |
//! |---|---|
//! | `GET /config-echo` | every key and value, as a JSON object |
//! | `GET /config-echo/KEY` | the value of `KEY`, or `404` |
//! | `GET /config-echo/print/KEY` | prints `KEY=<value>` to stdout (the host redacts secrets there), answers `printed` |
//! | `GET /config-echo/slow/KEY?ms=N` | sleeps N ms, then answers the value of `KEY` (an invocation keeps the values it started with) |

use faas_sdk::{IntoResponse, Request, RequestExt, Response, StatusCode, config, http_handler, json};

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
            println!("{key}={}", config::get(key).unwrap_or_default());
            "printed".into_response()
        }
        ["slow", key] => {
            let ms = req.query_param("ms").and_then(|ms| ms.parse().ok()).unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            value(key)
        }
        [key] => value(key),
        _ => (StatusCode::NOT_FOUND, "no such path").into_response(),
    }
}

fn value(key: &str) -> Response {
    match config::get(key) {
        Some(value) => value.into_response(),
        None => (StatusCode::NOT_FOUND, format!("{key} is not set")).into_response(),
    }
}
