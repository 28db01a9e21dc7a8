//! Who may use the control plane: a caller presenting the admin token as `Authorization:
//! Bearer`, or a browser logged in to the dashboard, whose session cookie holds the token
//! (`HttpOnly`, so no script can read it; `SameSite=Strict`, so no other site's page can send
//! it). A cookie is sent by the browser on its own, so a state-changing call authenticated by it
//! must also carry the session's CSRF token (`X-CSRF-Token`), which only a page of this origin
//! can have read (from `/ui/session`).

use super::Admin;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use std::sync::Arc;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "faas_session";
/// The header a cookie-authenticated state-changing call carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session lasts a working day; logging in again is one paste.
const SESSION_SECONDS: u32 = 12 * 3600;

/// How a request proved it may use the control plane.
#[derive(Debug, PartialEq, Eq)]
pub enum Caller {
    /// No admin token is configured: everyone may.
    Open,
    Bearer,
    /// A dashboard session; `csrf_ok` when the request carried the session's CSRF token.
    Cookie {
        csrf_ok: bool,
    },
}

/// Checks a request's credentials against the configured token (None: none configured).
pub fn caller(expected: Option<&str>, headers: &HeaderMap) -> Option<Caller> {
    let Some(expected) = expected else { return Some(Caller::Open) };
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return constant_time_eq(token.as_bytes(), expected.as_bytes()).then_some(Caller::Bearer);
    }
    let token = session_token(headers)?;
    if !constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        return None;
    }
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    Some(Caller::Cookie { csrf_ok: constant_time_eq(presented.as_bytes(), csrf_token(expected).as_bytes()) })
}

pub async fn require_token(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    // Reads change nothing, and a cookie never reaches us from another site's page
    // (SameSite=Strict): only writes need the CSRF token as well.
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    match caller(admin.token.as_deref(), request.headers()) {
        Some(Caller::Open | Caller::Bearer) => next.run(request).await,
        Some(Caller::Cookie { csrf_ok }) if csrf_ok || safe => next.run(request).await,
        Some(Caller::Cookie { .. }) => csrf_refused().into_response(),
        None => ApiError::unauthorized().into_response(),
    }
}

pub fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "a call made with the dashboard's session cookie must carry the session's X-CSRF-Token (GET /ui/session)",
    )
}

/// The CSRF token of the session holding `admin_token`: derived, so nothing is stored, and
/// useless for anything else (it does not reveal the token).
pub fn csrf_token(admin_token: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(admin_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"faas dashboard csrf v1");
    hex::encode(mac.finalize().into_bytes())
}

/// The `Set-Cookie` value of a session holding `admin_token`. The token is base64url-encoded:
/// a cookie value cannot hold every character a token may.
pub fn session_cookie(admin_token: &str) -> String {
    let value = URL_SAFE_NO_PAD.encode(admin_token);
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}")
}

/// The `Set-Cookie` value that ends a session.
pub fn cleared_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The token held by the request's session cookie, if any.
fn session_token(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))?;
    String::from_utf8(URL_SAFE_NO_PAD.decode(value).ok()?).ok()
}

/// Compares without an early exit, so response timing does not reveal a prefix of the token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn cookie_of(token: &str) -> String {
        session_cookie(token).split(';').next().unwrap().to_owned()
    }

    #[test]
    fn a_session_cookie_holds_the_token_and_writes_need_its_csrf_token() {
        let token = "s3cr3t;=, token";
        let cookie = cookie_of(token);
        assert_eq!(caller(Some(token), &headers(&[("cookie", &cookie)])), Some(Caller::Cookie { csrf_ok: false }));
        let csrf = csrf_token(token);
        let with = headers(&[("cookie", &format!("theme=dark; {cookie}")), ("x-csrf-token", &csrf)]);
        assert_eq!(caller(Some(token), &with), Some(Caller::Cookie { csrf_ok: true }));
        // Another session's CSRF token, or another token's cookie, is no good.
        let other = headers(&[("cookie", &cookie), ("x-csrf-token", &csrf_token("other"))]);
        assert_eq!(caller(Some(token), &other), Some(Caller::Cookie { csrf_ok: false }));
        assert_eq!(caller(Some(token), &headers(&[("cookie", &cookie_of("other"))])), None);
        assert_eq!(caller(Some(token), &headers(&[("cookie", "faas_session=%%%")])), None);
    }

    #[test]
    fn bearer_tokens_and_open_servers() {
        assert_eq!(caller(Some("t"), &headers(&[("authorization", "Bearer t")])), Some(Caller::Bearer));
        assert_eq!(caller(Some("t"), &headers(&[("authorization", "Bearer x")])), None);
        // A wrong bearer is refused even beside a good cookie: one credential, checked.
        let both = headers(&[("authorization", "Bearer x"), ("cookie", &cookie_of("t"))]);
        assert_eq!(caller(Some("t"), &both), None);
        assert_eq!(caller(None, &HeaderMap::new()), Some(Caller::Open));
        assert_eq!(caller(Some("t"), &HeaderMap::new()), None);
    }
}
