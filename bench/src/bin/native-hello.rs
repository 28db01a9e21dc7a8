//! `native-hello`: the `hello` function (functions/hello) as a plain native axum server, the upper
//! bound the HTTP benchmark compares faas and `wasmtime serve` against.
//!
//! - `GET /hello` → `Hello, world!`
//! - `GET /hello/{name}` → `Hello, {name}!` (the name is percent-decoded)
//! - `?greeting=Hi` replaces `Hello`: `/hello/alice?greeting=Hi` → `Hi, alice!`
//!
//! Usage: `native-hello [--addr] 127.0.0.1:3000 [--close]`. Prints `native-hello ready http://ADDR` once
//! listening.

use anyhow::Context as _;
use axum::Router;
use axum::http::Uri;
use axum::routing::get;
use clap::Parser;
use std::io::Write as _;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "The hello function as a native axum server")]
struct Args {
    /// Address to listen on (also accepted as the first positional argument).
    #[arg(long = "addr", value_name = "ADDR")]
    addr_flag: Option<SocketAddr>,
    #[arg(value_name = "ADDR", conflicts_with = "addr_flag")]
    addr: Option<SocketAddr>,
    /// Answer every request with `Connection: close`, so each client request needs a new
    /// connection (the outbound benchmark's "no pooling" upstream).
    #[arg(long)]
    close: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let addr = args.addr_flag.or(args.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
    let mut app =
        Router::new().route("/hello", get(hello)).route("/hello/", get(hello)).route("/hello/{*name}", get(hello));
    if args.close {
        app = app.layer(axum::middleware::map_response(|mut response: axum::response::Response| async move {
            response
                .headers_mut()
                .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            response
        }));
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    println!("native-hello ready http://{}", listener.local_addr()?);
    std::io::stdout().flush().ok();
    axum::serve(listener, app).await.context("serving")
}

async fn hello(uri: Uri) -> String {
    let greeting = uri.query().and_then(|query| {
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key, true) == "greeting").then(|| decode(value, true))
        })
    });
    greet(uri.path(), greeting.as_deref())
}

/// As in functions/hello: the greeting for a request `path` and optional `greeting` parameter.
fn greet(path: &str, greeting: Option<&str>) -> String {
    let greeting = greeting.filter(|g| !g.is_empty()).unwrap_or("Hello");
    let mut segments = path.split('/').filter(|s| !s.is_empty()).peekable();
    if segments.peek() == Some(&"hello") {
        segments.next();
    }
    let name: Vec<String> = segments.map(|s| decode(s, false)).collect();
    let name = if name.is_empty() { "world".to_owned() } else { name.join("/") };
    format!("{greeting}, {name}!")
}

/// Percent-decodes `input` (turning `+` into a space if `plus_is_space`), like the guest SDK:
/// malformed escapes stay as they are, invalid UTF-8 becomes U+FFFD.
fn decode(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| char::from(*b).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|b| char::from(*b).to_digit(16));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::greet;

    #[test]
    fn greetings() {
        assert_eq!(greet("/hello", None), "Hello, world!");
        assert_eq!(greet("/hello/alice", Some("Hi")), "Hi, alice!");
        assert_eq!(greet("/hello/J%C3%BCrgen%20K", None), "Hello, Jürgen K!");
    }
}
