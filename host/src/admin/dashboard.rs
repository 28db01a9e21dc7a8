//! The web dashboard at `/` and GraphiQL at `GET /graphql`: static files embedded in the
//! binary (a few, so a table of `include_bytes!` rather than an embedding crate), which call the
//! REST API like any other client; and the browser session they log in with (see `auth`).
//!
//! Every page is sent with a Content-Security-Policy that lets it load and call nothing but this
//! origin: a self-hosted control plane often has no internet, and must not leak to it either.

use super::Admin;
use super::auth::{self, Caller};
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The dashboard's policy: scripts, styles and calls from this origin only, no framing.
const DASHBOARD_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// GraphiQL's: the same origin-only rule; its editor sets inline styles, and its fonts are data URLs.
const GRAPHIQL_CSP: &str = "default-src 'self'; img-src 'self' data:; font-src 'self' data:; \
    style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Stored gzip-compressed (the vendored GraphiQL bundle: 1 MB instead of 4).
    gzip: bool,
    csp: &'static str,
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr, $gzip:expr, $csp:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../assets/", $file)),
            gzip: $gzip,
            csp: $csp,
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("/", "dashboard/index.html", HTML, false, DASHBOARD_CSP),
    asset!("/ui/app.js", "dashboard/app.js", JS, false, DASHBOARD_CSP),
    asset!("/ui/app.css", "dashboard/app.css", CSS, false, DASHBOARD_CSP),
    asset!("/graphql", "graphiql/index.html", HTML, false, GRAPHIQL_CSP),
    asset!("/ui/graphiql/init.js", "graphiql/init.js", JS, false, GRAPHIQL_CSP),
    asset!("/ui/graphiql/page.css", "graphiql/page.css", CSS, false, GRAPHIQL_CSP),
    asset!("/ui/graphiql/graphiql.min.js", "graphiql/graphiql.min.js.gz", JS, true, GRAPHIQL_CSP),
    asset!("/ui/graphiql/graphiql.min.css", "graphiql/graphiql.min.css.gz", CSS, true, GRAPHIQL_CSP),
    asset!("/ui/graphiql/react.production.min.js", "graphiql/react.production.min.js.gz", JS, true, GRAPHIQL_CSP),
    asset!(
        "/ui/graphiql/react-dom.production.min.js",
        "graphiql/react-dom.production.min.js.gz",
        JS,
        true,
        GRAPHIQL_CSP
    ),
];

/// The pages, their files and the session endpoints; none behind the token check (the pages
/// hold no data, and the session endpoints check credentials themselves).
pub fn routes() -> Router<Arc<Admin>> {
    let mut router = Router::new()
        .route("/ui/session", get(session))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout));
    for asset in ASSETS {
        router = router.route(asset.path, get(move || async move { serve(asset) }));
    }
    router
}

fn serve(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if asset.gzip {
        // Every browser takes gzip; a client that cannot is not one that runs GraphiQL.
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(asset.csp));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Embedded in this binary: a new release is a new process, so revalidate, never cache long.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /ui/session`: the CSRF token of the browser's session, or 401 if it has none.
async fn session(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Result<Response, ApiError> {
    match (auth::caller(admin.token.as_deref(), &headers), admin.token.as_deref()) {
        (Some(Caller::Open), _) | (_, None) => Ok(Json(json!({ "csrf": "", "auth": "none" })).into_response()),
        (Some(Caller::Cookie { .. }), Some(token)) => {
            Ok(Json(json!({ "csrf": auth::csrf_token(token), "auth": "cookie" })).into_response())
        }
        (Some(Caller::Bearer), Some(token)) => {
            Ok(Json(json!({ "csrf": auth::csrf_token(token), "auth": "bearer" })).into_response())
        }
        (None, Some(_)) => Err(ApiError::unauthorized()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// `POST /ui/login` `{"token": "<admin token>"}`: starts a session (a JSON body only: a form
/// another site posts cannot log a browser in).
async fn login(State(admin): State<Arc<Admin>>, super::extract::Json(body): super::extract::Json<Login>) -> Response {
    let Some(expected) = admin.token.as_deref() else {
        return Json(json!({ "csrf": "", "auth": "none" })).into_response();
    };
    if !auth::constant_time_eq(body.token.as_bytes(), expected.as_bytes()) {
        tracing::warn!("dashboard login refused: wrong token");
        return ApiError::unauthorized().into_response();
    }
    tracing::info!("dashboard login");
    let cookie = HeaderValue::from_str(&auth::session_cookie(expected)).expect("a base64 cookie is a header value");
    ([(header::SET_COOKIE, cookie)], Json(json!({ "csrf": auth::csrf_token(expected), "auth": "cookie" })))
        .into_response()
}

/// `POST /ui/logout`: ends the session (with its CSRF token: another site cannot log you out).
async fn logout(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    match auth::caller(admin.token.as_deref(), &headers) {
        Some(Caller::Cookie { csrf_ok: false }) => auth::csrf_refused().into_response(),
        Some(_) => {
            let cookie = HeaderValue::from_str(&auth::cleared_cookie()).expect("a static cookie is a header value");
            (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
        }
        None => ApiError::unauthorized().into_response(),
    }
}
