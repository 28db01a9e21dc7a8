//! Requests: the [`Request`] alias, [`RequestExt`] helpers and [`percent_decode`].

use serde::de::DeserializeOwned;

use crate::body::{Body, BodyError};

/// An HTTP request as handlers receive it: [`http::Request`] with the complete [`Body`].
///
/// The URI is origin-form plus, when the host supplies them, scheme and
/// authority: `req.uri().path()` and `req.uri().query()` are what the client
/// asked for.
pub type Request = http::Request<Body>;

mod sealed {
    /// Keeps [`RequestExt`](super::RequestExt) implemented only by the SDK.
    pub trait Sealed {}
    impl Sealed for super::Request {}
}

/// Convenience methods on [`Request`]. Import it with `use faas_sdk::RequestExt;`.
///
/// ```
/// use faas_sdk::{Body, Request, RequestExt};
///
/// let req: Request = faas_sdk::http::Request::builder()
///     .uri("/greet?name=J%C3%BCrgen&polite")
///     .body(Body::from(r#"{"n": 3}"#))
///     .unwrap();
/// assert_eq!(req.query_param("name").as_deref(), Some("Jürgen"));
/// assert_eq!(req.query_param("polite").as_deref(), Some(""));
/// assert_eq!(req.query_param("missing"), None);
/// let value: serde_json::Value = req.json().unwrap();
/// assert_eq!(value["n"], 3);
/// ```
pub trait RequestExt: sealed::Sealed {
    /// The request body's bytes.
    fn bytes(&self) -> &[u8];

    /// The request body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// [`BodyError::NotUtf8`] if the body is not valid UTF-8.
    fn text(&self) -> Result<&str, BodyError>;

    /// Deserializes the request body from JSON.
    ///
    /// # Errors
    ///
    /// [`BodyError::InvalidJson`] if the body is not JSON or does not match `T`.
    fn json<T: DeserializeOwned>(&self) -> Result<T, BodyError>;

    /// The first value of query parameter `name`, form-decoded (`+` is a
    /// space, `%XX` escapes are decoded, invalid UTF-8 is replaced with
    /// U+FFFD). A parameter present without `=` gives `Some("")`.
    fn query_param(&self, name: &str) -> Option<String>;

    /// All query parameters in order, form-decoded like
    /// [`query_param`](RequestExt::query_param).
    fn query_pairs(&self) -> Vec<(String, String)>;
}

impl RequestExt for Request {
    fn bytes(&self) -> &[u8] {
        self.body().bytes()
    }

    fn text(&self) -> Result<&str, BodyError> {
        self.body().text()
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, BodyError> {
        self.body().json()
    }

    fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(self.uri().query()?).find(|(key, _)| key == name).map(|(_, value)| value)
    }

    fn query_pairs(&self) -> Vec<(String, String)> {
        self.uri().query().map_or_else(Vec::new, |q| query_pairs(q).collect())
    }
}

/// Splits a query string into form-decoded `(key, value)` pairs.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key, true), decode(value, true))
    })
}

/// Decodes `%XX` escapes in `input` (a path segment, say); `+` stays `+`.
///
/// Malformed escapes are kept as they are and invalid UTF-8 is replaced with
/// U+FFFD.
///
/// ```
/// assert_eq!(faas_sdk::percent_decode("J%C3%BCrgen%20K"), "Jürgen K");
/// assert_eq!(faas_sdk::percent_decode("100%+a"), "100%+a");
/// ```
pub fn percent_decode(input: &str) -> String {
    decode(input, false)
}

/// Percent-decodes `input`, turning `+` into a space if `plus_is_space`.
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
                    // Two hex digits make at most 0xff.
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
    use super::*;

    fn request(uri: &str) -> Request {
        http::Request::builder().uri(uri).body(Body::from("body")).expect("valid request")
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%+1"), "%+1");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(decode("a+b%2B", true), "a b+");
    }

    #[test]
    fn query() {
        let req = request("/hello/alice?greeting=Hi+there&x=1&x=2&flag&&e=");
        assert_eq!(req.query_param("greeting").as_deref(), Some("Hi there"));
        assert_eq!(req.query_param("x").as_deref(), Some("1"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("e").as_deref(), Some(""));
        assert_eq!(req.query_param("nope"), None);
        assert_eq!(req.query_pairs().len(), 5);
        assert_eq!(request("/no-query").query_param("x"), None);
        assert!(request("/no-query").query_pairs().is_empty());
    }

    #[test]
    fn body_helpers() {
        let req = request("/");
        assert_eq!(RequestExt::bytes(&req), b"body");
        assert_eq!(req.text().expect("utf-8"), "body");
        assert!(req.json::<serde_json::Value>().is_err());
    }
}
