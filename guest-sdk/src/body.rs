//! [`Body`]: a complete HTTP body held in memory, and [`BodyError`].

use std::fmt;

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::response::{IntoResponse, Response, text_response};

/// A complete HTTP body, held in memory.
///
/// The SDK reads the whole request body before calling the handler, so
/// [`Request`](crate::Request) bodies are always complete: read them with
/// [`bytes`](Body::bytes), [`text`](Body::text) or [`json`](Body::json) (or the
/// same methods of [`RequestExt`](crate::RequestExt) directly on the request).
///
/// Response bodies are built from `&'static str`, `String`, `Vec<u8>`,
/// `&'static [u8]`, [`Bytes`] or `()` through `From`/`Into`.
///
/// ```
/// use faas_sdk::Body;
///
/// let body = Body::from("{\"n\": 1}");
/// assert_eq!(body.text().unwrap(), "{\"n\": 1}");
/// let value: serde_json::Value = body.json().unwrap();
/// assert_eq!(value["n"], 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    data: Bytes,
}

impl Body {
    /// An empty body.
    pub const fn empty() -> Self {
        Self { data: Bytes::new() }
    }

    /// The body's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Consumes the body, returning its bytes without copying.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// [`BodyError::NotUtf8`] if the body is not valid UTF-8.
    pub fn text(&self) -> Result<&str, BodyError> {
        std::str::from_utf8(&self.data).map_err(BodyError::NotUtf8)
    }

    /// Deserializes the body from JSON.
    ///
    /// # Errors
    ///
    /// [`BodyError::InvalidJson`] if the body is not JSON or does not match `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, BodyError> {
        serde_json::from_slice(&self.data).map_err(BodyError::InvalidJson)
    }

    /// Length of the body in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl From<Bytes> for Body {
    fn from(data: Bytes) -> Self {
        Self { data }
    }
}

impl From<Vec<u8>> for Body {
    fn from(data: Vec<u8>) -> Self {
        Self { data: data.into() }
    }
}

impl From<String> for Body {
    fn from(data: String) -> Self {
        Self { data: data.into() }
    }
}

impl From<&'static str> for Body {
    fn from(data: &'static str) -> Self {
        Self { data: Bytes::from_static(data.as_bytes()) }
    }
}

impl From<&'static [u8]> for Body {
    fn from(data: &'static [u8]) -> Self {
        Self { data: Bytes::from_static(data) }
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Self::empty()
    }
}

impl From<Body> for Bytes {
    fn from(body: Body) -> Self {
        body.data
    }
}

/// A body could not be read as text or JSON.
///
/// As an [`IntoResponse`] it becomes `400 Bad Request` with the message as a
/// plain-text body, so handlers can use `?` on [`Body::text`] and
/// [`Body::json`] when they return `Result<_, BodyError>`.
#[derive(Debug)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is not valid UTF-8.
    NotUtf8(std::str::Utf8Error),
    /// The body is not valid JSON, or does not have the expected shape.
    InvalidJson(serde_json::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8(err) => write!(f, "body is not valid UTF-8: {err}"),
            Self::InvalidJson(err) => write!(f, "body is not valid JSON: {err}"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotUtf8(err) => Some(err),
            Self::InvalidJson(err) => Some(err),
        }
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        text_response(StatusCode::BAD_REQUEST, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[test]
    fn conversions_and_accessors() {
        assert!(Body::empty().is_empty());
        assert_eq!(Body::from(()), Body::empty());
        assert_eq!(Body::from("abc").bytes(), b"abc");
        assert_eq!(Body::from(String::from("abc")).len(), 3);
        assert_eq!(Body::from(vec![1u8, 2]).into_bytes(), Bytes::from_static(&[1, 2]));
        assert_eq!(Bytes::from(Body::from(&b"xy"[..])), Bytes::from_static(b"xy"));
    }

    #[test]
    fn text_and_json() {
        assert_eq!(Body::from("héllo").text().expect("utf-8"), "héllo");
        let err = Body::from(vec![0xff, 0xfe]).text().expect_err("not utf-8");
        assert!(matches!(err, BodyError::NotUtf8(_)));
        assert!(err.to_string().starts_with("body is not valid UTF-8"));

        let point: Point = Body::from(r#"{"x": 1, "y": -2}"#).json().expect("json");
        assert_eq!(point, Point { x: 1, y: -2 });
        let err = Body::from(r#"{"x": 1}"#).json::<Point>().expect_err("missing y");
        assert!(err.to_string().starts_with("body is not valid JSON"));
    }

    #[test]
    fn body_error_is_a_bad_request() {
        let err = Body::from("nope").json::<Point>().expect_err("invalid");
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.body().text().expect("utf-8").starts_with("body is not valid JSON"));
    }
}
