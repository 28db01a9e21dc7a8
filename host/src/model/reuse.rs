//! [`ReuseSpec`]: whether an instance may serve more than one invocation. Off by default: every
//! invocation gets a fresh instance, so nothing one request leaves in memory reaches the next.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An instance serves at most this many invocations.
const MAX_USES: u32 = 1_000_000;
/// The longest an idle instance may be kept.
const MAX_IDLE_MS: u64 = 60 * 60 * 1000;
/// The most invocations one (WASIp3) instance runs at once.
const MAX_CONCURRENCY: u32 = 1_000;
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
    /// Invocations one instance runs at the same time. Above 1 only for a WASIp3 HTTP handler
    /// (`wasi:http/handler@0.3`, an async export); a WASIp2 instance runs one call at a time.
    pub max_concurrency: u32,
}

impl Default for ReuseSpec {
    fn default() -> Self {
        Self { max_uses: 1, idle_timeout_ms: DEFAULT_IDLE_MS, max_concurrency: 1 }
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
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(format!(
                "reuse.max_concurrency is {}; it must be between 1 and {MAX_CONCURRENCY}",
                self.max_concurrency
            ));
        }
        if self.max_concurrency > self.max_uses {
            return Err(format!(
                "reuse.max_concurrency is {} but reuse.max_uses is {}: an instance cannot run more \
                 invocations at once than it serves in all (raise --reuse)",
                self.max_concurrency, self.max_uses
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
        let idle = ReuseSpec { max_uses: 10, idle_timeout_ms: 0, max_concurrency: 1 };
        assert!(idle.validate().unwrap_err().contains("reuse.idle_timeout_ms"));
        let wide = ReuseSpec { max_uses: 4, max_concurrency: 8, ..ReuseSpec::default() };
        assert!(wide.validate().unwrap_err().contains("reuse.max_concurrency"));
        let none = ReuseSpec { max_uses: 4, max_concurrency: 0, ..ReuseSpec::default() };
        assert!(none.validate().unwrap_err().contains("reuse.max_concurrency"));
        assert!(serde_json::from_str::<ReuseSpec>(r#"{"uses": 3}"#).is_err());
    }
}
