//! Responses: [`IntoResponse`], [`Json`] and [`json`].

use std::convert::Infallible;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;

use crate::body::Body;

/// An HTTP response as the SDK sends it: [`http::Response`] with a complete [`Body`].
pub type Response = http::Response<Body>;

/// `content-type` of text responses.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// `content-type` of byte responses.
const OCTET_STREAM: &str = "application/octet-stream";
/// `content-type` of JSON responses.
const APPLICATION_JSON: &str = "application/json";

/// Anything a handler can return.
///
/// | type | status | `content-type` | body |
/// | --- | --- | --- | --- |
/// | [`http::Response<B>`], `B: Into<Body>` | as set | as set | as set |
/// | `&'static str`, `String` | 200 | `text/plain; charset=utf-8` | the text |
/// | `Vec<u8>`, [`Bytes`] | 200 | `application/octet-stream` | the bytes |
/// | [`Body`] | 200 | none | the body |
/// | `()` | 200 | none | empty |
/// | [`StatusCode`] | that status | none | empty |
/// | `(StatusCode, T)` | that status | as for `T` | as for `T` |
/// | [`Json<T>`], `T: Serialize` | 200 | `application/json` | `T` as JSON |
/// | `Result<T, E>`, both `IntoResponse` | as for `T` or `E` | | |
/// | [`BodyError`](crate::BodyError) | 400 | `text/plain; charset=utf-8` | the message |
/// | `Box<dyn Error + Send + Sync>` | 500 | `text/plain; charset=utf-8` | the message |
///
/// ```
/// use faas_sdk::{IntoResponse, Json};
/// use faas_sdk::http::StatusCode;
///
/// let response = (StatusCode::CREATED, Json(vec![1, 2, 3])).into_response();
/// assert_eq!(response.status(), StatusCode::CREATED);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(response.body().text().unwrap(), "[1,2,3]");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a response: a handler must return a type implementing `faas_sdk::IntoResponse`",
    label = "not an `IntoResponse`",
    note = "return e.g. `String`, `&'static str`, `Vec<u8>`, `Json<T>`, `StatusCode`, `(StatusCode, T)`, \
            `http::Response<B>` or a `Result<T, E>` of those, or implement `IntoResponse` for your type"
)]
pub trait IntoResponse {
    /// Converts `self` into the response sent to the client.
    fn into_response(self) -> Response;
}

/// A response with `status`, a `content-type` header and `body`.
fn with_content_type(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A `text/plain; charset=utf-8` response.
pub(crate) fn text_response(status: StatusCode, text: impl Into<Body>) -> Response {
    with_content_type(status, TEXT_PLAIN, text.into())
}

/// Serializes `value` as a JSON response with the given status.
///
/// The response has `content-type: application/json`. If serialization fails
/// (for example a map with non-string keys), the response is a plain-text
/// `500 Internal Server Error` saying why.
///
/// ```
/// use faas_sdk::http::StatusCode;
///
/// let response = faas_sdk::json(StatusCode::NOT_FOUND, &serde_json::json!({"error": "no such user"}));
/// assert_eq!(response.status(), StatusCode::NOT_FOUND);
/// assert_eq!(response.body().text().unwrap(), r#"{"error":"no such user"}"#);
/// ```
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_content_type(status, APPLICATION_JSON, bytes.into()),
        Err(err) => {
            text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to serialize JSON response: {err}"))
        }
    }
}

/// A JSON response: `Json(value)` is `200 OK` with `value` serialized as JSON.
///
/// Pair it with a status for anything else: `(StatusCode::CREATED, Json(value))`.
/// To read a JSON request body, use [`RequestExt::json`](crate::RequestExt::json).
///
/// ```
/// use faas_sdk::{http_handler, IntoResponse, Json, Request};
///
/// #[derive(serde::Serialize)]
/// struct Greeting {
///     message: String,
/// }
///
/// #[http_handler]
/// fn handle(_req: Request) -> Json<Greeting> {
///     Json(Greeting { message: "hi".into() })
/// }
/// # fn main() {}
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        json(StatusCode::OK, &self.0)
    }
}

impl<B: Into<Body>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        self.map(Into::into)
    }
}

impl IntoResponse for Body {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        text_response(StatusCode::OK, self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        text_response(StatusCode::OK, self)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        with_content_type(StatusCode::OK, OCTET_STREAM, self.into())
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        with_content_type(StatusCode::OK, OCTET_STREAM, self.into())
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(Body::empty())
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self;
        response
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        let (status, inner) = self;
        let mut response = inner.into_response();
        *response.status_mut() = status;
        response
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

impl IntoResponse for Infallible {
    fn into_response(self) -> Response {
        match self {}
    }
}

impl IntoResponse for Box<dyn std::error::Error + Send + Sync> {
    fn into_response(self) -> Response {
        text_response(StatusCode::INTERNAL_SERVER_ERROR, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(response: &Response) -> Option<&str> {
        response.headers().get(CONTENT_TYPE).map(|v| v.to_str().expect("ascii"))
    }

    #[test]
    fn text() {
        let response = "hi".into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(content_type(&response), Some(TEXT_PLAIN));
        assert_eq!(response.body().bytes(), b"hi");

        let response = String::from("hello").into_response();
        assert_eq!(content_type(&response), Some(TEXT_PLAIN));
        assert_eq!(response.body().bytes(), b"hello");
    }

    #[test]
    fn bytes() {
        let response = vec![0u8, 1].into_response();
        assert_eq!(content_type(&response), Some(OCTET_STREAM));
        assert_eq!(response.body().bytes(), &[0, 1]);
        let response = Bytes::from_static(b"z").into_response();
        assert_eq!(content_type(&response), Some(OCTET_STREAM));
    }

    #[test]
    fn status_and_tuple() {
        let response = StatusCode::NO_CONTENT.into_response();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(response.body().is_empty());
        assert_eq!(content_type(&response), None);

        let response = (StatusCode::NOT_FOUND, "missing").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(content_type(&response), Some(TEXT_PLAIN));
        assert_eq!(response.body().text().expect("utf-8"), "missing");

        assert_eq!(().into_response().status(), StatusCode::OK);
        assert!(().into_response().body().is_empty());
    }

    #[test]
    fn http_response_passes_through() {
        let response = http::Response::builder()
            .status(StatusCode::ACCEPTED)
            .header("x-custom", "1")
            .body("body")
            .expect("valid response")
            .into_response();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["x-custom"], "1");
        assert_eq!(content_type(&response), None);
        assert_eq!(response.body().bytes(), b"body");
    }

    #[test]
    fn json_responses() {
        let response = Json(serde_json::json!({"a": [1, true]})).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(content_type(&response), Some(APPLICATION_JSON));
        assert_eq!(response.body().text().expect("utf-8"), r#"{"a":[1,true]}"#);

        let response = json(StatusCode::CREATED, &[1, 2]);
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.body().bytes(), b"[1,2]");

        // Maps with non-string keys cannot be serialized as JSON.
        let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let response = Json(bad).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.body().text().expect("utf-8").starts_with("failed to serialize JSON response"));
    }

    #[test]
    fn results() {
        let ok: Result<&'static str, StatusCode> = Ok("fine");
        assert_eq!(ok.into_response().body().bytes(), b"fine");
        let err: Result<&'static str, StatusCode> = Err(StatusCode::FORBIDDEN);
        assert_eq!(err.into_response().status(), StatusCode::FORBIDDEN);
        let boxed: Result<(), Box<dyn std::error::Error + Send + Sync>> = Err("boom".into());
        let response = boxed.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.body().bytes(), b"boom");
    }
}
