//! `hello`: the smallest useful faas function.
//!
//! - `GET /hello` → `Hello, world!`
//! - `GET /hello/{name}` → `Hello, {name}!` (the name is percent-decoded)
//! - `?greeting=Hi` replaces `Hello`: `/hello/alice?greeting=Hi` → `Hi, alice!`
//!
//! Responses are `text/plain; charset=utf-8`. If the host strips the route prefix
//! (so the path is `/` or `/{name}`), the same rules apply.

use faas_sdk::{IntoResponse, Request, RequestExt, http_handler, percent_decode};

#[http_handler]
fn handle(req: Request) -> impl IntoResponse {
    greet(req.uri().path(), req.query_param("greeting").as_deref())
}

/// The greeting for a request `path` and optional `greeting` query parameter.
fn greet(path: &str, greeting: Option<&str>) -> String {
    let greeting = greeting.filter(|g| !g.is_empty()).unwrap_or("Hello");
    let mut segments = path.split('/').filter(|s| !s.is_empty()).peekable();
    if segments.peek() == Some(&"hello") {
        segments.next();
    }
    let name: Vec<String> = segments.map(percent_decode).collect();
    let name = if name.is_empty() { "world".to_owned() } else { name.join("/") };
    format!("{greeting}, {name}!")
}

#[cfg(test)]
mod tests {
    use super::greet;

    #[test]
    fn greetings() {
        assert_eq!(greet("/hello", None), "Hello, world!");
        assert_eq!(greet("/hello/", None), "Hello, world!");
        assert_eq!(greet("/hello/alice", None), "Hello, alice!");
        assert_eq!(greet("/hello/alice", Some("Hi")), "Hi, alice!");
        assert_eq!(greet("/hello", Some("")), "Hello, world!");
        assert_eq!(greet("/hello/J%C3%BCrgen%20K", None), "Hello, Jürgen K!");
        assert_eq!(greet("/", Some("Hey")), "Hey, world!");
        assert_eq!(greet("/bob", None), "Hello, bob!");
    }
}
