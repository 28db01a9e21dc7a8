//! The one retry policy: exponential backoff, `first · 2^(attempt-1)`, capped. Every loop that
//! retries (a store or connection failure, a saga step, a participant that has not
//! acknowledged, a Kafka outage, a LISTEN that dropped) picks one of the policies here instead
//! of doubling a delay by hand.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

/// Store and connection failures (a database restart, a dropped LISTEN): 50 ms … 5 s.
pub const STORE: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
/// A Kafka broker or topic that is not there yet: 100 ms … 10 s.
pub const KAFKA: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
/// Durable work that must eventually happen (a decision to record, a participant to tell, a
/// saga runner's store error): 50 ms … 30 s.
pub const WORKFLOW: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(30));
/// Retries of an async invocation that failed (5xx, trap, timeout), and of its callback:
/// 1 s … 5 min.
pub const ASYNC: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
/// A function too busy to take a call: 50 ms … 1.6 s (see `runtime::invoker::BusyWait`).
pub const BUSY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(1600));

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// A saga step's own policy: `first` from its definition, the workflow cap.
    pub fn step(first_ms: u32) -> Self {
        Self::new(Duration::from_millis(u64::from(first_ms)), WORKFLOW.max)
    }

    /// The pause before retry number `attempt` (1 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// A counter for one retry loop.
    pub fn retries(self) -> Retries {
        Retries { policy: self, failures: 0 }
    }
}

/// Failures of one loop so far; each [`Retries::wait`] sleeps one step longer.
#[derive(Debug, Clone)]
pub struct Retries {
    policy: Backoff,
    failures: u32,
}

impl Retries {
    /// Counts a failure and sleeps for its delay.
    pub async fn wait(&mut self) {
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(self.policy.delay(self.failures)).await;
    }

    /// After a success: the next failure starts from the first delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        assert_eq!(STORE.delay(1), Duration::from_millis(50));
        assert_eq!(STORE.delay(2), Duration::from_millis(100));
        assert_eq!(STORE.delay(4), Duration::from_millis(400));
        assert_eq!(STORE.delay(30), Duration::from_secs(5));
        assert_eq!(Backoff::step(100).delay(3), Duration::from_millis(400));
        assert_eq!(Backoff::step(100).delay(40), Duration::from_secs(30));
        assert_eq!(KAFKA.delay(u32::MAX), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn retries_count_and_reset() {
        let mut retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(2)).retries();
        retries.wait().await;
        retries.wait().await;
        assert_eq!(retries.failures(), 2);
        retries.reset();
        assert_eq!(retries.failures(), 0);
    }
}
