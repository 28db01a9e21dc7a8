//! [`ConcurrencyLimiter`]: at most N instances of a function at once, with a bounded queue of
//! requests waiting for one. Past the queue a request is refused at once, never piled up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The queue is full: the caller should answer 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

pub struct ConcurrencyLimiter {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queue: usize,
}

impl ConcurrencyLimiter {
    pub fn new(max_concurrency: u32, max_queue: u32) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrency as usize)),
            waiting: AtomicUsize::new(0),
            max_queue: max_queue as usize,
        }
    }

    /// A permit to run one instance; holding it is being "active".
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Overloaded);
        }
        let _leave_queue = LeaveQueue(&self.waiting);
        self.permits.clone().acquire_owned().await.map_err(|_closed| Overloaded)
    }
}

/// Leaves the queue when the wait ends, also when the waiting request is cancelled.
struct LeaveQueue<'a>(&'a AtomicUsize);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_past_the_queue_and_admits_after_release() {
        let limiter = Arc::new(ConcurrencyLimiter::new(1, 1));
        let first = limiter.acquire().await.unwrap();
        let queued = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire().await.map(drop) })
        };
        while limiter.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(limiter.acquire().await.err(), Some(Overloaded));
        drop(first);
        assert_eq!(queued.await.unwrap(), Ok(()));
        assert_eq!(limiter.waiting.load(Ordering::Acquire), 0);
        assert!(limiter.acquire().await.is_ok());
    }
}
