//! [`ReuseSpec`]: whether an instance may serve more than one invocation. Off by default: every
//! invocation gets a fresh instance, so nothing one request leaves in memory reaches the next.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An instance serves at most this many invocations.
const MAX_USES: u32 = 1_000_000;
/// The longest an idle instance may be kept.
const MAX_IDLE_MS: u64 = 60 * 60 * 1000;
/// 30 s: long enough to bridge the gaps of steady traffic, short enough that an idle function
/// gives its pool slots and memory back soon.
pub const DEFAULT_IDLE_MS: u64 = 30_000;

/// Instance reuse, as deployed (`faas deploy --reuse N --reuse-idle 30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReuseSpec {
    /// Invocations one instance serves before it is discarded; 1 (the default) means a fresh
    /// instance each time.
    pub max_uses: u32,
    /// An instance idle this long is discarded.
    pub idle_timeout_ms: u64,
}

impl Default for ReuseSpec {
    fn default() -> Self {
        Self { max_uses: 1, idle_timeout_ms: DEFAULT_IDLE_MS }
    }
}

impl ReuseSpec {
    pub fn enabled(&self) -> bool {
        self.max_uses > 1
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_USES).contains(&self.max_uses) {
            return Err(format!("reuse.max_uses is {}; it must be between 1 and {MAX_USES}", self.max_uses));
        }
        if !(1..=MAX_IDLE_MS).contains(&self.idle_timeout_ms) {
            return Err(format!(
                "reuse.idle_timeout_ms is {}; it must be between 1 and {MAX_IDLE_MS} (an hour)",
                self.idle_timeout_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_a_fresh_instance_each_time() {
        let spec: ReuseSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, ReuseSpec::default());
        assert!(!spec.enabled());
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let zero = ReuseSpec { max_uses: 0, ..ReuseSpec::default() };
        assert!(zero.validate().unwrap_err().contains("reuse.max_uses"));
        let idle = ReuseSpec { max_uses: 10, idle_timeout_ms: 0 };
        assert!(idle.validate().unwrap_err().contains("reuse.idle_timeout_ms"));
        assert!(serde_json::from_str::<ReuseSpec>(r#"{"uses": 3}"#).is_err());
    }
}
