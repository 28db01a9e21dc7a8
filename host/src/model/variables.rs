//! A function's variables and secrets, as stored ([`StoredConfig`]: variables in clear, secrets
//! sealed) and as changed ([`ConfigChange`]), with the rules every change must pass: key names,
//! value sizes, a total.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One value: enough for a certificate chain or a JSON document, small enough to hand every
/// instance its own copy.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// Keys plus values of one function, secrets counted at their plaintext size.
pub const MAX_TOTAL_BYTES: usize = 1 << 20;
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_KEYS: usize = 256;

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes: the names environment variables use, so a value
/// can move between `--var`, a shell and a `.env` file unchanged. Case matters.
pub fn validate_key(key: &str) -> Result<(), String> {
    let mut bytes = key.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("invalid key {key:?}: keys match [A-Za-z_][A-Za-z0-9_]*"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("key `{}…` is over {MAX_KEY_BYTES} bytes", &key[..16]));
    }
    Ok(())
}

/// One config version as stored: variables in clear, secrets sealed (see `model::secrets`).
/// A key is a variable or a secret, never both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredConfig {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// What one `deploy --var/--secret`, `config set` or `config unset` asks for. Secrets in
/// plaintext: they are sealed by [`StoredConfig::apply`] and never kept.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

impl std::fmt::Debug for ConfigChange {
    /// Secret names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigChange")
            .field("variables", &self.variables)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("unset", &self.unset)
            .finish()
    }
}

impl ConfigChange {
    pub fn is_empty(&self) -> bool {
        self.variables.is_empty() && self.secrets.is_empty() && self.unset.is_empty()
    }
}

impl StoredConfig {
    /// This config with `change` applied: values set (a variable replaces a secret of the same
    /// name and the other way round), keys unset; secrets sealed with `seal(key, plaintext)`.
    /// Refused whole if any rule fails.
    pub fn apply(
        &self,
        change: &ConfigChange,
        seal: impl Fn(&str, &str) -> String,
        sealed_len: impl Fn(&str) -> usize,
    ) -> Result<StoredConfig, String> {
        for (key, value) in change.variables.iter().chain(&change.secrets) {
            validate_key(key)?;
            if value.len() > MAX_VALUE_BYTES {
                return Err(format!("the value of `{key}` is {} bytes; the limit is {MAX_VALUE_BYTES}", value.len()));
            }
        }
        if let Some(key) = change.variables.keys().find(|k| change.secrets.contains_key(*k)) {
            return Err(format!("`{key}` is given both as a variable and as a secret"));
        }
        let mut next = self.clone();
        for key in &change.unset {
            validate_key(key)?;
            if change.variables.contains_key(key) || change.secrets.contains_key(key) {
                return Err(format!("`{key}` is both set and unset"));
            }
            if next.variables.remove(key).is_none() && next.secrets.remove(key).is_none() {
                return Err(format!("`{key}` is not set"));
            }
        }
        for (key, value) in &change.variables {
            next.secrets.remove(key);
            next.variables.insert(key.clone(), value.clone());
        }
        for (key, value) in &change.secrets {
            next.variables.remove(key);
            next.secrets.insert(key.clone(), seal(key, value));
        }
        let keys = next.variables.len() + next.secrets.len();
        if keys > MAX_KEYS {
            return Err(format!("{keys} keys; a function may have at most {MAX_KEYS}"));
        }
        let total: usize = next.variables.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + next.secrets.iter().map(|(k, v)| k.len() + sealed_len(v)).sum::<usize>();
        if total > MAX_TOTAL_BYTES {
            return Err(format!("the config would be {total} bytes; the limit is {MAX_TOTAL_BYTES} per function"));
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(base: &StoredConfig, change: &ConfigChange) -> Result<StoredConfig, String> {
        base.apply(change, |_, v| format!("sealed:{v}"), |s| s.len() - 7)
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn keys() {
        for good in ["A", "_x", "API_KEY_2", "lower"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["", "1A", "A-B", "a.b", "é", "A B", &"K".repeat(129)] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_replace_unset() {
        let change = ConfigChange { variables: vars(&[("A", "1")]), secrets: vars(&[("S", "x")]), unset: vec![] };
        let one = apply(&StoredConfig::default(), &change).expect("ok");
        assert_eq!(one.secrets["S"], "sealed:x");
        let change = ConfigChange { variables: vars(&[("S", "plain")]), ..Default::default() };
        let two = apply(&one, &change).expect("ok");
        assert!(two.secrets.is_empty() && two.variables["S"] == "plain");
        let change = ConfigChange { unset: vec!["A".into()], ..Default::default() };
        assert!(!apply(&two, &change).expect("ok").variables.contains_key("A"));
        assert!(apply(&StoredConfig::default(), &change).expect_err("absent").contains("not set"));
    }

    #[test]
    fn limits() {
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let change = ConfigChange { variables: vars(&[("A", &big)]), ..Default::default() };
        assert!(apply(&StoredConfig::default(), &change).is_err());
        let value = "x".repeat(MAX_VALUE_BYTES);
        let many: BTreeMap<_, _> = (0..20).map(|i| (format!("K{i}"), value.clone())).collect();
        let change = ConfigChange { variables: many, ..Default::default() };
        assert!(apply(&StoredConfig::default(), &change).expect_err("total").contains("limit"));
        let change = ConfigChange { variables: vars(&[("A", "1")]), secrets: vars(&[("A", "2")]), unset: vec![] };
        assert!(apply(&StoredConfig::default(), &change).is_err());
    }
}
