//! [`Limits`]: how much one function may use per invocation, with defaults and bounds.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// 64 MiB: enough for a typical Rust handler with room for buffers, small enough that a thousand
/// concurrent instances fit in an ordinary machine.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// 30 s: the common default of function platforms (Lambda's API Gateway integration caps at 29 s).
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
/// Requests allowed to wait for a free instance before we answer 503: one extra "wave" of work.
pub const DEFAULT_MAX_QUEUE: u32 = 100;
/// 10 MiB, as in Spin's and most gateways' defaults.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 << 20;

/// The pooling allocator reserves address space for this much memory per instance; a function
/// cannot ask for more.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
const MIN_MEMORY_BYTES: u64 = 1 << 20;
pub(crate) const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
const MAX_CONCURRENCY: u32 = 10_000;
const MAX_QUEUE: u32 = 100_000;
const MAX_BODY_BYTES: u64 = 1 << 30;

/// Per-function limits, as deployed. Every field has a default, so `{}` is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory an instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock budget of one invocation, including queueing and streaming the response.
    pub timeout_ms: u64,
    /// Instances of this function running at once.
    pub max_concurrency: u32,
    /// Requests waiting for a free instance; past this, 503 with `Retry-After`.
    pub max_queue: u32,
    /// Largest request body a function accepts; past this, 413.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queue: DEFAULT_MAX_QUEUE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl Limits {
    /// Checks every field against its bounds and names the first one out of range.
    pub fn validate(&self) -> Result<(), String> {
        check("memory_bytes", self.memory_bytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES)?;
        check("timeout_ms", self.timeout_ms, 1, MAX_TIMEOUT_MS)?;
        check("max_concurrency", self.max_concurrency.into(), 1, MAX_CONCURRENCY.into())?;
        check("max_queue", self.max_queue.into(), 0, MAX_QUEUE.into())?;
        check("max_body_bytes", self.max_body_bytes, 0, MAX_BODY_BYTES)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

fn check(field: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("limits.{field} is {value}; it must be between {min} and {max}"))
    }
}

/// Parses a byte size such as `64MiB`, `512KiB`, `1GiB`, `100MB` or a plain number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a size like 64MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{text}` (use KiB, MiB or GiB)")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a duration such as `10s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("`{text}` is not a duration like 10s: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }

    #[test]
    fn out_of_range_limits_name_the_field() {
        let limits = Limits { memory_bytes: 10, ..Limits::default() };
        assert!(limits.validate().unwrap_err().contains("limits.memory_bytes"));
        assert!(Limits::default().validate().is_ok());
        let limits = Limits { max_concurrency: 0, ..Limits::default() };
        assert!(limits.validate().unwrap_err().contains("max_concurrency"));
    }
}
