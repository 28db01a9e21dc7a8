//! Saga steps the host runs itself, without a function: a durable timer (`@sleep`) and an HTTP
//! call described as data (`@http`). A step names them as its action's (or compensation's)
//! function, with a JSON payload; the SDK's `Step::after`, `Step::sleep_until` and `Step::http`
//! write both. Reserved names keep `faas:platform/saga@0.1.0` as it is, so components built
//! against it keep linking, while older hosts refuse the names as undeployed functions.
//!
//! - `@sleep` `{"ms": N}` or `{"until_ms": T}`: the step succeeds once the time has come. The
//!   wait starts when the journal first records the step's attempt, so a restart (or another
//!   node taking the saga over) waits only for what is left, never from the start again.
//! - `@http` `{"method", "url", "headers": {..}, "body", "expect": [codes], "timeout_ms"}`: one
//!   request through the outbound allow-list of the function that started the saga, with its
//!   variables and secrets substituted into the URL, headers and body (`${config.NAME}`), and
//!   `${saga.id}`, `${saga.name}`, `${saga.input}`, `${step.name}`, `${idempotency_key}`. The
//!   saga's `idempotency-key` (`<saga-id>/<step>`, `…/compensation` for the compensation) goes
//!   with every attempt, so an API that dedupes by it (Stripe's style) applies a retried call
//!   once. A status in `expect` (default: any 2xx) succeeds, with the response body as the
//!   step's output; 408, 429, a 5xx, a timeout or a connection failure are retried; any other
//!   status fails the step at once (the compensations run). The journal keeps the template, never
//!   a substituted secret.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const SLEEP: &str = "@sleep";
pub const HTTP: &str = "@http";

/// The longest timer: a year.
const MAX_SLEEP_MS: u64 = 366 * 24 * 3600 * 1000;
const DEFAULT_HTTP_TIMEOUT_MS: u64 = 10_000;
const MAX_HTTP_TIMEOUT_MS: u64 = 5 * 60 * 1000;
const PLACEHOLDERS: &[&str] = &["saga.id", "saga.name", "saga.input", "step.name", "idempotency_key"];

/// Whether `function` names a built-in step rather than a deployed function.
pub fn is_builtin(function: &str) -> bool {
    function.starts_with('@')
}

/// A `@sleep` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

impl Timer {
    pub fn parse(payload: &[u8]) -> Result<Self, String> {
        let timer: Self = serde_json::from_slice(payload)
            .map_err(|e| format!("a `{SLEEP}` payload is {{\"ms\": N}} or {{\"until_ms\": T}}: {e}"))?;
        match (timer.ms, timer.until_ms) {
            (Some(ms), None) if ms <= MAX_SLEEP_MS => Ok(timer),
            (None, Some(_)) => Ok(timer),
            (Some(_), None) => Err(format!("a `{SLEEP}` lasts at most {MAX_SLEEP_MS} ms")),
            _ => Err(format!("a `{SLEEP}` payload has one of `ms` and `until_ms`")),
        }
    }

    /// When the timer fires, for a wait that started at `started_ms`.
    pub fn wakes_at(&self, started_ms: i64) -> i64 {
        match (self.ms, self.until_ms) {
            (Some(ms), _) => started_ms.saturating_add(ms as i64),
            (_, Some(until)) => until as i64,
            _ => started_ms,
        }
    }
}

/// A `@http` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    /// Statuses that count as success; empty: any 2xx.
    #[serde(default)]
    pub expect: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

fn default_method() -> String {
    "POST".into()
}

/// What a template may refer to.
pub struct Context<'a> {
    pub saga_id: &'a str,
    pub saga_name: &'a str,
    pub input: &'a [u8],
    pub step: &'a str,
    pub idempotency_key: &'a str,
    pub config: &'a BTreeMap<String, String>,
}

/// How an HTTP step's answer counts.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    /// Worth another attempt.
    Retry(String),
    /// The call was refused: no retry.
    Refused(String),
}

impl HttpCall {
    /// Parses and checks a payload: a method, an http(s) URL, known placeholders, sane limits.
    pub fn parse(payload: &[u8]) -> Result<Self, String> {
        let call: Self = serde_json::from_slice(payload).map_err(|e| format!("an `{HTTP}` payload: {e}"))?;
        http::Method::from_bytes(call.method.as_bytes())
            .map_err(|_| format!("`{}` is not an HTTP method", call.method))?;
        if !(is_http_url(&call.url) || call.url.starts_with("${")) {
            return Err(format!("the URL `{}` must start with http://, https:// or a `${{config.…}}`", call.url));
        }
        for name in call.headers.keys() {
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("`{name}` is not a header name"))?;
        }
        if call.expect.iter().any(|s| !(100..=599).contains(s)) {
            return Err("`expect` lists HTTP statuses (100-599)".into());
        }
        if call.timeout_ms.is_some_and(|t| t == 0 || t > MAX_HTTP_TIMEOUT_MS) {
            return Err(format!("`timeout_ms` is 1-{MAX_HTTP_TIMEOUT_MS}"));
        }
        for text in std::iter::once(&call.url).chain(call.headers.values()).chain([&call.body]) {
            for name in placeholders(text)? {
                if !PLACEHOLDERS.contains(&name) && !name.starts_with("config.") {
                    return Err(format!(
                        "unknown placeholder `${{{name}}}`: use ${{config.NAME}}, {}",
                        PLACEHOLDERS.iter().map(|p| format!("${{{p}}}")).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        Ok(call)
    }

    /// The URL before substitution, for the allow-list check at start (config values are
    /// substituted later; a URL whose origin comes from config is checked when it is sent).
    pub fn literal_origin(&self) -> Option<http::Uri> {
        (!self.url.contains("${")).then(|| self.url.parse().ok()).flatten()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS))
    }

    /// The request with every placeholder filled in.
    pub fn render(&self, context: &Context<'_>) -> Result<http::Request<bytes::Bytes>, String> {
        let url = substitute(&self.url, context)?;
        if !is_http_url(&url) {
            return Err(format!("the URL `{url}` (from `{}`) must start with http:// or https://", self.url));
        }
        let mut request = http::Request::builder().method(self.method.as_str()).uri(url.as_str());
        for (name, value) in &self.headers {
            request = request.header(name, substitute(value, context)?);
        }
        request = request.header("idempotency-key", context.idempotency_key).header("x-faas-saga-id", context.saga_id);
        request
            .body(bytes::Bytes::from(substitute(&self.body, context)?))
            .map_err(|e| format!("the HTTP step's request is invalid: {e}"))
    }

    pub fn verdict(&self, status: http::StatusCode) -> Verdict {
        let expected =
            if self.expect.is_empty() { status.is_success() } else { self.expect.contains(&status.as_u16()) };
        if expected {
            Verdict::Succeeded
        } else if status.is_server_error()
            || status == http::StatusCode::REQUEST_TIMEOUT
            || status == http::StatusCode::TOO_MANY_REQUESTS
        {
            Verdict::Retry(format!("{} {} answered {status}", self.method, self.url))
        } else {
            Verdict::Refused(format!("{} {} answered {status}", self.method, self.url))
        }
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// The names inside `${…}` in `text`.
fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("an unclosed `${{` in `{text}`"))?;
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    Ok(names)
}

fn substitute(text: &str, context: &Context<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("an unclosed `${{` in `{text}`"))?;
        let name = &after[..end];
        match name {
            "saga.id" => out.push_str(context.saga_id),
            "saga.name" => out.push_str(context.saga_name),
            "saga.input" => out.push_str(&String::from_utf8_lossy(context.input)),
            "step.name" => out.push_str(context.step),
            "idempotency_key" => out.push_str(context.idempotency_key),
            _ => match name.strip_prefix("config.").and_then(|key| context.config.get(key)) {
                Some(value) => out.push_str(value),
                None => {
                    return Err(format!(
                        "`${{{name}}}` has no value: set it with `faas config set <function> {}=…`",
                        name.trim_start_matches("config.")
                    ));
                }
            },
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_count_from_the_first_attempt() {
        let timer = Timer::parse(br#"{"ms": 1500}"#).unwrap();
        assert_eq!(timer.wakes_at(10_000), 11_500);
        let until = Timer::parse(br#"{"until_ms": 99}"#).unwrap();
        assert_eq!(until.wakes_at(10_000), 99);
        assert!(Timer::parse(br#"{"ms": 1, "until_ms": 2}"#).is_err());
        assert!(Timer::parse(br#"{"seconds": 1}"#).is_err());
    }

    #[test]
    fn http_calls_substitute_placeholders_and_classify_answers() {
        let payload =
            br#"{"url": "http://127.0.0.1:9/charge/${saga.id}", "headers": {"authorization": "Bearer ${config.KEY}"},
            "body": "{\"order\": ${saga.input}}", "expect": [200, 201]}"#;
        let call = HttpCall::parse(payload).unwrap();
        let config = BTreeMap::from([("KEY".to_owned(), "s3cret".to_owned())]);
        let context = Context {
            saga_id: "s-1",
            saga_name: "order",
            input: br#"{"id":7}"#,
            step: "charge",
            idempotency_key: "s-1/charge",
            config: &config,
        };
        let request = call.render(&context).unwrap();
        assert_eq!(request.uri(), "http://127.0.0.1:9/charge/s-1");
        assert_eq!(request.headers()["authorization"], "Bearer s3cret");
        assert_eq!(request.headers()["idempotency-key"], "s-1/charge");
        assert_eq!(request.body().as_ref(), br#"{"order": {"id":7}}"#);
        assert_eq!(call.verdict(http::StatusCode::CREATED), Verdict::Succeeded);
        assert!(matches!(call.verdict(http::StatusCode::NO_CONTENT), Verdict::Refused(_)));
        assert!(matches!(call.verdict(http::StatusCode::BAD_GATEWAY), Verdict::Retry(_)));
        assert!(matches!(call.verdict(http::StatusCode::TOO_MANY_REQUESTS), Verdict::Retry(_)));
        let missing = Context { config: &BTreeMap::new(), ..context };
        assert!(call.render(&missing).unwrap_err().contains("faas config set"));
    }

    #[test]
    fn bad_http_calls_are_refused_at_start() {
        assert!(HttpCall::parse(br#"{"url": "ftp://x"}"#).unwrap_err().contains("http://"));
        assert!(HttpCall::parse(br#"{"url": "http://x/${nope}"}"#).unwrap_err().contains("unknown placeholder"));
        assert!(HttpCall::parse(br#"{"url": "http://x", "method": "NO PE"}"#).is_err());
        assert!(HttpCall::parse(br#"{"url": "http://x", "expect": [700]}"#).is_err());
        assert!(HttpCall::parse(br#"{"url": "http://x", "bogus": 1}"#).is_err());
        assert_eq!(HttpCall::parse(br#"{"url": "https://api.example.com/x"}"#).unwrap().method, "POST");
    }
}
