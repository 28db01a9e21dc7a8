//! Key-value storage for read models (CQRS projections): `faas:platform/kv`.
//!
//! Private to the function's namespace: two functions never see each other's keys. Keys are
//! strings (the host accepts 1-512 bytes without NUL), values bytes (up to 1 MiB); [`get_json`]
//! and [`set_json`] store JSON. [`list`] returns entries in key order, so zero-padded numbers
//! in keys (`tx/42/00000000000000000007`) sort numerically. [`compare_and_swap`] makes
//! read-modify-write safe against concurrent writers.
//!
//! On native targets (unit tests) the functions work on an in-memory store of the current
//! thread instead of the platform's; see [`crate::testing`].
//!
//! ```no_run
//! use faas_sdk::kv;
//!
//! # fn main() -> Result<(), kv::KvError> {
//! kv::set_json("counter/visits", &1u64)?;
//! let visits: Option<u64> = kv::get_json("counter/visits")?;
//! assert_eq!(visits, Some(1));
//! for (key, value) in kv::list_all("counter/")? {
//!     println!("{key} = {}", String::from_utf8_lossy(&value));
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::faas::platform::kv as wit;

/// How many entries [`list_all`] asks for per call (the host may return fewer).
const PAGE_SIZE: u32 = 1000;

/// Why a key-value operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvError {
    /// A malformed key or an oversized value.
    InvalidRequest(String),
    /// The store failed; the operation may be retried.
    Unavailable(String),
    /// [`get_json`] found a value that is not JSON of the expected shape, or [`set_json`] could
    /// not serialize its value.
    Json {
        /// The key read or written.
        key: String,
        /// What serde_json said.
        message: String,
    },
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(message) => write!(f, "invalid kv request: {message}"),
            Self::Unavailable(message) => write!(f, "kv store unavailable: {message}"),
            Self::Json { key, message } => write!(f, "value of kv key `{key}` is not the expected JSON: {message}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<wit::KvError> for KvError {
    fn from(error: wit::KvError) -> Self {
        match error {
            wit::KvError::InvalidRequest(message) => Self::InvalidRequest(message),
            wit::KvError::Unavailable(message) => Self::Unavailable(message),
        }
    }
}

/// The value of `key`, or `None` if it is not set.
///
/// # Errors
///
/// See [`KvError`].
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(wit::get(key)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::kv_get(key)
    }
}

/// Sets `key` to `value`.
///
/// # Errors
///
/// See [`KvError`].
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(wit::set(key, value)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::kv_set(key, value)
    }
}

/// Deletes `key`; returns whether it existed.
///
/// # Errors
///
/// See [`KvError`].
pub fn delete(key: &str) -> Result<bool, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(wit::delete(key)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::kv_delete(key)
    }
}

/// Up to `limit` entries whose key starts with `prefix`, in key order, after the key
/// `start_after` when given. The host caps `limit` (at 1,000 today): page on with the last
/// key returned until a page comes back empty, or use [`list_all`].
///
/// # Errors
///
/// See [`KvError`].
pub fn list(prefix: &str, start_after: Option<&str>, limit: u32) -> Result<Vec<(String, Vec<u8>)>, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(wit::list(prefix, start_after, limit)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::kv_list(prefix, start_after, limit)
    }
}

/// Every entry whose key starts with `prefix`, in key order: pages through [`list`].
///
/// # Errors
///
/// The first [`KvError`] of any page.
pub fn list_all(prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
    list_pages(|after| list(prefix, after, PAGE_SIZE))
}

/// Collects pages of `list(start_after)` until one is empty or stops advancing.
fn list_pages<E>(
    mut list: impl FnMut(Option<&str>) -> Result<Vec<(String, Vec<u8>)>, E>,
) -> Result<Vec<(String, Vec<u8>)>, E> {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    loop {
        let after = entries.last().map(|(key, _)| key.as_str());
        let page = list(after)?;
        let before = entries.len();
        // Only keys after the last one are new; dropping anything else guarantees termination.
        let after = after.map(str::to_owned);
        entries.extend(page.into_iter().filter(|(key, _)| after.as_deref().is_none_or(|after| key.as_str() > after)));
        if entries.len() == before {
            return Ok(entries);
        }
    }
}

/// Sets `key` to `new` (deletes it when `None`) only if its current value is `expected`
/// (`None`: the key is absent). Returns whether the swap happened.
///
/// ```no_run
/// use faas_sdk::kv;
///
/// # fn main() -> Result<(), kv::KvError> {
/// // Claim a key exactly once.
/// if kv::compare_and_swap("lock/job-7", None, Some(b"worker-1"))? {
///     println!("ours");
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// See [`KvError`].
pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(wit::compare_and_swap(key, expected, new)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::kv_compare_and_swap(key, expected, new)
    }
}

/// The value of `key` deserialized from JSON, or `None` if it is not set.
///
/// # Errors
///
/// [`KvError::Json`] if the value is not JSON of the shape of `T`; otherwise see [`KvError`].
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, KvError> {
    get(key)?.map(|value| from_json(key, &value)).transpose()
}

/// Sets `key` to `value` serialized as JSON.
///
/// # Errors
///
/// [`KvError::Json`] if `value` cannot be serialized; otherwise see [`KvError`].
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), KvError> {
    set(key, &to_json(key, value)?)
}

/// Deserializes the JSON `value` stored under `key`.
///
/// # Errors
///
/// [`KvError::Json`] naming `key` if `value` is not JSON of the shape of `T`.
pub fn from_json<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, KvError> {
    serde_json::from_slice(value).map_err(|err| KvError::Json { key: key.to_owned(), message: err.to_string() })
}

/// Serializes `value` as JSON to store under `key`.
///
/// # Errors
///
/// [`KvError::Json`] naming `key` if `value` cannot be serialized.
pub fn to_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, KvError> {
    serde_json::to_vec(value).map_err(|err| KvError::Json { key: key.to_owned(), message: err.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> (String, Vec<u8>) {
        (key.to_owned(), key.as_bytes().to_vec())
    }

    #[test]
    fn pages_until_empty() {
        let keys = ["a/1", "a/2", "a/3", "a/4", "a/5"];
        let mut calls: Vec<Option<String>> = Vec::new();
        let entries = list_pages(|after| {
            calls.push(after.map(str::to_owned));
            let page: Vec<_> =
                keys.iter().filter(|k| after.is_none_or(|a| **k > a)).take(2).map(|k| entry(k)).collect();
            Ok::<_, KvError>(page)
        })
        .expect("lists");
        assert_eq!(entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), keys);
        assert_eq!(calls, [None, Some("a/2".into()), Some("a/4".into()), Some("a/5".into())]);
    }

    #[test]
    fn paging_survives_a_host_that_repeats_itself() {
        let entries = list_pages(|_| Ok::<_, KvError>(vec![entry("k")])).expect("lists");
        assert_eq!(entries, [entry("k")]);
        let err = list_pages(|after| match after {
            None => Ok(vec![entry("k")]),
            Some(_) => Err(KvError::Unavailable("down".into())),
        })
        .expect_err("fails");
        assert_eq!(err.to_string(), "kv store unavailable: down");
    }

    #[test]
    fn json_helpers() {
        assert_eq!(to_json("k", &serde_json::json!({"a": 1})).expect("serializes"), br#"{"a":1}"#);
        let value: serde_json::Value = from_json("k", br#"{"a":1}"#).expect("parses");
        assert_eq!(value["a"], 1);
        let err = from_json::<u64>("acct/1", b"nope").expect_err("not JSON");
        assert!(matches!(&err, KvError::Json { key, .. } if key == "acct/1"));
        assert!(err.to_string().starts_with("value of kv key `acct/1` is not the expected JSON"));
        let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(matches!(to_json("k", &bad), Err(KvError::Json { .. })));
    }
}
