//! [`DeploySpec`]: what a deploy says about a function besides its bytes: triggers and limits.
//! It is stored with each version, so a rollback restores routes and limits too.

use crate::limits::Limits;
use crate::routes::RoutePattern;
use serde::{Deserialize, Serialize};

/// The configuration half of a deploy (the other half is the component).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    #[serde(default)]
    pub triggers: Triggers,
    #[serde(default)]
    pub limits: Limits,
}

/// How a function is invoked. Only HTTP exists today; Kafka topics and event subscriptions will
/// be further fields here, and `deny_unknown_fields` makes an early use of them a clear 400.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Route patterns: exact paths (`/hello`) or trailing wildcards (`/hello/...`).
    #[serde(default)]
    pub http: Vec<String>,
}

impl DeploySpec {
    /// Validates limits and parses routes; the message names what is wrong.
    pub fn validate(&self) -> Result<Vec<RoutePattern>, String> {
        self.limits.validate()?;
        let mut routes = Vec::with_capacity(self.triggers.http.len());
        for text in &self.triggers.http {
            let route = RoutePattern::parse(text)?;
            if routes.contains(&route) {
                return Err(format!("route `{text}` is listed twice"));
            }
            routes.push(route);
        }
        Ok(routes)
    }
}

/// Function names are used in URLs, logs and metrics labels, so they are kept plain.
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid function name `{name}`: use 1-63 lowercase letters, digits and dashes, starting with a letter"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("hello").is_ok());
        assert!(validate_name("bank-account2").is_ok());
        for bad in ["", "Hello", "1abc", "a_b", "a/b", "trailing-", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn unknown_spec_fields_are_rejected() {
        let err = serde_json::from_str::<DeploySpec>(r#"{"triggers":{"kafka":["t"]}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `kafka`"));
    }

    #[test]
    fn duplicate_routes_are_rejected() {
        let spec = DeploySpec { triggers: Triggers { http: vec!["/a".into(), "/a".into()] }, ..Default::default() };
        assert!(spec.validate().unwrap_err().contains("twice"));
    }
}
