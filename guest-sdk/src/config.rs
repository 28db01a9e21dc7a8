//! The function's variables and secrets, through the standard `wasi:config/store` interface.
//!
//! Set them with `faas deploy --var KEY=VALUE --secret KEY=VALUE` or, without a redeploy,
//! `faas config set`. A function sees only its own values; secrets and variables look the same
//! here (secrets are only sealed at rest and hidden from the API). An invocation sees the values
//! as they were when it started.
//!
//! On native targets (unit tests) the values come from [`crate::testing::set_config`].
//!
//! ```no_run
//! let greeting = faas_sdk::config::get("GREETING").unwrap_or_else(|| "hello".into());
//! for (key, value) in faas_sdk::config::get_all() {
//!     println!("{key} is {} bytes", value.len());
//! }
//! # let _ = greeting;
//! ```

/// The value of `key`, if set. A store failure (none happens on this platform) reads as unset;
/// use [`try_get`] to see it.
pub fn get(key: &str) -> Option<String> {
    try_get(key).ok().flatten()
}

/// Every variable and secret, sorted by key.
pub fn get_all() -> Vec<(String, String)> {
    try_get_all().unwrap_or_default()
}

/// Why the config store failed: the message of `wasi:config/store`'s error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config store: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// [`get`], with the store's error.
pub fn try_get(key: &str) -> Result<Option<String>, ConfigError> {
    #[cfg(target_arch = "wasm32")]
    {
        wit::get(key).map_err(error)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Ok(native::get(key))
    }
}

/// [`get_all`], with the store's error.
pub fn try_get_all() -> Result<Vec<(String, String)>, ConfigError> {
    #[cfg(target_arch = "wasm32")]
    let mut all = wit::get_all().map_err(error)?;
    #[cfg(not(target_arch = "wasm32"))]
    let mut all = native::get_all();
    all.sort();
    Ok(all)
}

#[cfg(target_arch = "wasm32")]
use crate::bindings::config::wasi::config::store as wit;

#[cfg(target_arch = "wasm32")]
fn error(error: wit::Error) -> ConfigError {
    ConfigError(match error {
        wit::Error::Upstream(m) | wit::Error::Io(m) => m,
    })
}

/// Native targets: the current thread's values, set by [`crate::testing::set_config`].
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    thread_local! {
        static VALUES: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub(crate) fn set(values: BTreeMap<String, String>) {
        VALUES.with(|v| *v.borrow_mut() = values);
    }

    pub(crate) fn get(key: &str) -> Option<String> {
        VALUES.with(|v| v.borrow().get(key).cloned())
    }

    pub(crate) fn get_all() -> Vec<(String, String)> {
        VALUES.with(|v| v.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #[test]
    fn native_stand_in() {
        crate::testing::set_config([("A", "1"), ("B", "2")]);
        assert_eq!(super::get("A").as_deref(), Some("1"));
        assert_eq!(super::get("C"), None);
        assert_eq!(super::get_all(), vec![("A".into(), "1".into()), ("B".into(), "2".into())]);
    }
}
