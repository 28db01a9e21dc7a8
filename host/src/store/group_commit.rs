//! [`GroupCommit`]: appends from many writers committed together. Every append takes the one
//! global append lock (that is what keeps positions gap-free and in commit order), so appends
//! across all streams run one after another, each paying its own commit (an fsync). Here a
//! writer task per database takes the appends that are queued when it is free, whatever their
//! number, and commits them in one transaction: one lock acquisition and one fsync for the lot.
//! Nothing waits for a batch to fill, so a lone append costs what it did (plus a channel hop).
//!
//! Inside the batch the appends run in queue order, each with its own idempotency and
//! expected-version checks against the state the appends before it left, and each caller gets
//! its own outcome: a wrong expected version or an idempotency conflict fails that append
//! alone. If the batch's transaction fails as a whole (a database error), nothing of it is
//! committed and the appends are run again one by one, so one bad append cannot fail the
//! others. A caller whose append was not acknowledged (the process died before the commit) has
//! nothing in the store: the batch commits or not as one.
//!
//! The queue is bounded: past [`QUEUE_LIMIT`] waiting appends a new one is refused at once
//! (`unavailable`, retry), so a flood costs bounded memory and tells the caller to back off.

use super::StoreError;
use super::events::{AppendError, Appended, Expected, NewEvent};
use tokio::sync::{mpsc, oneshot};

/// Appends waiting for the writer, at most; more are refused with `unavailable`.
pub const QUEUE_LIMIT: usize = 10_000;
/// Appends per transaction, at most, and their events' bytes.
const MAX_BATCH: usize = 512;
const MAX_BATCH_BYTES: usize = 8 << 20;

/// One append, owned so it can wait in the queue.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub namespace: String,
    pub stream: String,
    pub expected: Expected,
    pub events: Vec<NewEvent>,
}

impl AppendRequest {
    fn bytes(&self) -> usize {
        self.events.iter().map(|e| e.data.len() + e.metadata.len() + e.event_type.len() + e.id.len()).sum()
    }
}

pub type AppendResult = Result<Appended, AppendError>;

/// What the database side provides: a batch in one transaction, and one append alone.
#[async_trait::async_trait]
pub trait BatchAppender: Send + Sync + 'static {
    /// Runs the appends in order in one transaction; one outcome per append, or the error that
    /// failed the transaction (then nothing was committed).
    async fn append_batch(&self, batch: &[AppendRequest]) -> Result<Vec<AppendResult>, StoreError>;
}

struct Pending {
    request: AppendRequest,
    reply: oneshot::Sender<AppendResult>,
}

/// The queue in front of the writer task.
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer task on the current runtime.
    pub fn start(appender: impl BatchAppender) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_LIMIT);
        tokio::spawn(write(appender, receiver));
        Self { queue }
    }

    pub async fn append(&self, request: AppendRequest) -> AppendResult {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Pending { request, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(AppendError::Store(StoreError::Unavailable(format!(
                    "{QUEUE_LIMIT} appends are waiting for the database; retry shortly"
                ))));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(AppendError::Store(StoreError::Unavailable("the append writer stopped".into())));
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(AppendError::Store(StoreError::Unavailable("the append writer stopped before answering".into())))
        })
    }
}

/// The writer: takes what is queued (at least one), commits it as one batch, answers each.
async fn write(appender: impl BatchAppender, mut receiver: mpsc::Receiver<Pending>) {
    while let Some(first) = receiver.recv().await {
        let mut bytes = first.request.bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match receiver.try_recv() {
                Ok(next) => {
                    bytes += next.request.bytes();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<AppendRequest>, Vec<oneshot::Sender<AppendResult>>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let results = match appender.append_batch(&requests).await {
            Ok(results) => results,
            // Nothing committed: each on its own, so only the append at fault fails.
            Err(error) if requests.len() > 1 => {
                tracing::warn!(%error, appends = requests.len(), "a group commit failed; running its appends one by one");
                let mut results = Vec::with_capacity(requests.len());
                for request in &requests {
                    let result = match appender.append_batch(std::slice::from_ref(request)).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| Err(lost())),
                        Err(error) => Err(AppendError::Store(error)),
                    };
                    results.push(result);
                }
                results
            }
            Err(error) => vec![Err(AppendError::Store(error))],
        };
        let mut results = results.into_iter();
        for reply in replies {
            // A caller that went away (its instance timed out) drops its answer.
            let _ = reply.send(results.next().unwrap_or_else(|| Err(lost())));
        }
    }
}

fn lost() -> AppendError {
    AppendError::Store(StoreError::Corrupt("a group commit returned fewer outcomes than appends".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::Arc;

    /// A fake database: a version per stream, batches recorded, and a poison stream whose
    /// batch fails as a whole.
    #[derive(Clone, Default)]
    struct Fake {
        streams: Arc<Mutex<std::collections::HashMap<String, u64>>>,
        batches: Arc<Mutex<Vec<usize>>>,
        head: Arc<Mutex<u64>>,
    }

    #[async_trait::async_trait]
    impl BatchAppender for Fake {
        async fn append_batch(&self, batch: &[AppendRequest]) -> Result<Vec<AppendResult>, StoreError> {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            if batch.iter().any(|r| r.stream == "poison") {
                return Err(StoreError::Unavailable("poison".into()));
            }
            self.batches.lock().push(batch.len());
            let mut streams = self.streams.lock();
            let mut head = self.head.lock();
            Ok(batch
                .iter()
                .map(|r| {
                    let current = streams.get(&r.stream).copied();
                    if !r.expected.admits(current) {
                        return Err(AppendError::WrongExpectedVersion { expected: r.expected, actual: current });
                    }
                    let first = current.map_or(0, |v| v + 1);
                    streams.insert(r.stream.clone(), first);
                    *head += 1;
                    Ok(Appended {
                        first_version: first,
                        last_version: first,
                        first_position: *head,
                        last_position: *head,
                        duplicate: false,
                    })
                })
                .collect())
        }
    }

    fn request(stream: &str, expected: Expected) -> AppendRequest {
        let event = NewEvent { id: "e".into(), event_type: "T".into(), data: vec![], metadata: "{}".into() };
        AppendRequest { namespace: "n".into(), stream: stream.into(), expected, events: vec![event] }
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_each_gets_its_own_outcome() {
        let fake = Fake::default();
        let group = Arc::new(GroupCommit::start(fake.clone()));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let group = group.clone();
            // Half race for version 0 of one stream: exactly one wins.
            let (stream, expected) =
                if i % 2 == 0 { ("hot".to_owned(), Expected::NoStream) } else { (format!("s{i}"), Expected::Any) };
            tasks.push(tokio::spawn(async move { group.append(request(&stream, expected)).await }));
        }
        let mut won = 0;
        let mut positions = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(appended) => {
                    positions.push(appended.first_position);
                    won += 1;
                }
                Err(AppendError::WrongExpectedVersion { actual: Some(0), .. }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(won, 33, "32 distinct streams and one winner of the hot one");
        positions.sort_unstable();
        assert_eq!(positions, (1..=33).collect::<Vec<u64>>(), "gap-free positions");
        let batches = fake.batches.lock().clone();
        assert!(batches.len() < 64, "appends were grouped: {batches:?}");
        // A lone append does not wait for company.
        let started = std::time::Instant::now();
        group.append(request("lone", Expected::Any)).await.unwrap();
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_batch_that_fails_as_a_whole_fails_only_the_append_at_fault() {
        let fake = Fake::default();
        let group = Arc::new(GroupCommit::start(fake.clone()));
        let mut tasks = Vec::new();
        for stream in ["a", "poison", "b", "c"] {
            let group = group.clone();
            tasks.push(tokio::spawn(async move { group.append(request(stream, Expected::Any)).await }));
        }
        let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
        assert!(matches!(results[1], Err(AppendError::Store(StoreError::Unavailable(_)))), "{results:?}");
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3, "{results:?}");
    }
}
