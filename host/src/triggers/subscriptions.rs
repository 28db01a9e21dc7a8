//! Event subscriptions: for every active function with `triggers.subscriptions`, one task per
//! subscription that reads matching events after its durable checkpoint, in global order, and
//! hands them to the function's `event-handler` in batches.
//!
//! Delivery is at least once: the checkpoint moves only after the handler succeeded. A failing
//! batch is retried with backoff; when it keeps failing, its events are retried one by one and the
//! ones that still fail are parked (recorded, visible in the API, replayable) so delivery goes on.
//! An outbox (`DeploySpec::outbox`) is read the same way, but its events go to a Kafka topic
//! instead of the function: published one by one in global order, each acknowledged before the
//! next, retried until the broker takes them (never parked), keyed by stream, so each stream's
//! events stay in order on one partition.
//!
//! The task sleeps until an append wakes it (in this process, or via PostgreSQL NOTIFY from other
//! nodes), with a slow poll as a safety net.
//!
//! With several nodes on one database, each subscription and outbox is delivered by one node at
//! a time: its task runs a batch only while this node holds the work's lease ([`Leases`]), and
//! every checkpoint write names the lease's epoch, so a node that lost the lease (paused past
//! it, or the subscription was reset) cannot move the checkpoint. An outbox checks the lease
//! before each publish: duplicates downstream are limited to the batch in flight at a takeover.

use super::Trigger;
use super::leases::{Lease, Leases};
use crate::backoff;
use crate::capabilities::{EventNotifier, event_store::to_wit};
use crate::kafka::Publisher;
use crate::model::names::StreamFilter;
use crate::model::spec::{StartFrom, SubscriptionSpec};
use crate::registry::Registry;
use crate::runtime::function::LoadedFunction;
use crate::runtime::invoker::{BusyWait, InvokeError, Invoker};
use crate::store::events::{RecordedEvent, ResetCounts, SubscriptionReset};
use crate::store::leases::LeaseFence;
use crate::store::postgres::Notice;
use crate::store::{StoreError, Stores};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The safety-net poll, for a missed notification (e.g. a PostgreSQL listener reconnecting).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a drain waits for batches in hand.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Runs the subscriptions of every active function.
pub struct Subscriptions {
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    stores: Stores,
    notifier: EventNotifier,
    /// For outboxes; none without Kafka brokers.
    publisher: Option<Arc<Publisher>>,
    /// Who delivers what, across nodes.
    leases: Arc<Leases>,
    /// One delivery task per subscription and outbox.
    tasks: tokio::sync::Mutex<HashMap<Key, JoinHandle<()>>>,
    /// Set by [`Trigger::drain`]: tasks finish the batch in hand and end.
    stopping: watch::Sender<bool>,
}

/// The key of a subscription's checkpoint and task: function name and the subscription's stream
/// pattern as deployed (an outbox's [`OutboxSpec::key`](crate::model::spec::OutboxSpec::key)).
type Key = (String, String);

/// Where a subscription's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sink {
    Function,
    Kafka { topic: String },
}

/// The subscription or outbox named `key` in the function's active spec.
fn find(function: &LoadedFunction, key: &str) -> Option<(SubscriptionSpec, Sink)> {
    if let Some(subscription) = function.spec.triggers.subscriptions.iter().find(|s| s.stream == key) {
        return Some((subscription.clone(), Sink::Function));
    }
    let outbox = function.spec.outbox.iter().find(|o| o.key() == key)?;
    Some((outbox.as_subscription(), Sink::Kafka { topic: outbox.topic.clone() }))
}

impl Subscriptions {
    pub fn new(
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        stores: Stores,
        notifier: EventNotifier,
        publisher: Option<Arc<Publisher>>,
        leases: Arc<Leases>,
    ) -> Arc<Self> {
        let (tasks, stopping) = (Default::default(), watch::Sender::new(false));
        Arc::new(Self { registry, invoker, stores, notifier, publisher, leases, tasks, stopping })
    }
}

/// The lease a subscription's or an outbox's delivery runs under.
pub fn lease_name(function: &str, key: &str, sink_is_kafka: bool) -> String {
    let kind = if sink_is_kafka { "outbox" } else { "subscription" };
    format!("{kind}/{function}/{key}")
}

#[async_trait::async_trait]
impl Trigger for Subscriptions {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    /// One task per subscription and outbox of the active functions: new ones start, gone ones
    /// are stopped (a redeploy that keeps a subscription keeps its task and checkpoint).
    async fn reconcile(self: Arc<Self>) {
        let wanted: HashSet<Key> = self
            .registry
            .all_active()
            .iter()
            .flat_map(|f| {
                let outboxes = f.spec.outbox.iter().map(|o| o.key());
                let keys = f.spec.triggers.subscriptions.iter().map(|s| s.stream.clone()).chain(outboxes);
                keys.map(|key| (f.name.to_string(), key)).collect::<Vec<_>>()
            })
            .collect();
        let mut tasks = self.tasks.lock().await;
        let mut gone = Vec::new();
        tasks.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
                gone.push(key.clone());
            }
            keep
        });
        for (function, key) in gone {
            for kafka in [false, true] {
                self.leases.unregister(&lease_name(&function, &key, kafka)).await;
            }
        }
        for key in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(key) {
                let (this, key) = (self.clone(), slot.key().clone());
                slot.insert(tokio::spawn(async move { this.run(key).await }));
            }
        }
    }

    /// Every task finishes the batch in hand (its checkpoint saved) and ends; one still busy
    /// after [`DRAIN_GRACE`] is abandoned, and its batch is delivered again after the restart.
    async fn drain(self: Arc<Self>) {
        self.stopping.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().await.drain().map(|(_, task)| task).collect();
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(DRAIN_GRACE, futures::future::join_all(tasks)).await.is_err() {
            tracing::warn!("subscriptions still delivering after the drain grace; abandoned (delivered again later)");
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
    }
}

impl Subscriptions {
    /// One subscription's delivery loop. Ends when the function or the subscription goes away.
    async fn run(self: Arc<Self>, (function_name, pattern): Key) {
        let Some(function) = self.registry.active(&function_name) else { return };
        let Some((_, sink)) = find(&function, &pattern) else { return };
        let lease = self.leases.register(&lease_name(&function_name, &pattern, matches!(sink, Sink::Kafka { .. })));
        drop(function);
        let mut wake = self.notifier.subscribe();
        let mut stopping = self.stopping.subscribe();
        let mut checkpoint = None;
        let mut epoch = 0;
        let mut retries = backoff::STORE.retries();
        loop {
            if *stopping.borrow() {
                return;
            }
            let held = tokio::select! {
                held = lease.held() => held,
                _ = stopping.changed() => continue,
            };
            if held.epoch != epoch {
                // A new term: another node or a reset may have moved the checkpoint meanwhile.
                epoch = held.epoch;
                checkpoint = None;
            }
            let Some(function) = self.registry.active(&function_name) else { return };
            let Some((subscription, sink)) = find(&function, &pattern) else { return };
            let busy = lease.busy().await;
            if !lease.holds(epoch) {
                continue; // handed back or expired while waiting for the batch slot
            }
            let work = Work { lease: &lease, fence: lease.fence(epoch), key: &pattern };
            let result = match checkpoint {
                None => self.initial_checkpoint(&function_name, &work, &subscription).await.map(|cp| {
                    checkpoint = Some(cp);
                    true
                }),
                Some(after) => self.deliver_next(&function, &subscription, &work, &sink, after).await.map(|next| {
                    let progressed = next != after;
                    checkpoint = Some(next);
                    progressed
                }),
            };
            drop(busy);
            match result {
                Ok(true) => retries.reset(),
                Ok(false) => {
                    retries.reset();
                    // Caught up: sleep until something is appended (or the node drains).
                    tokio::select! {
                        _ = tokio::time::timeout(POLL_INTERVAL, wake.changed()) => {}
                        _ = stopping.changed() => {}
                    }
                }
                Err(StoreError::Fenced(_)) => {
                    tracing::info!(function = %function_name, subscription = %pattern, epoch,
                        "lease moved on (taken over or reset); this node stops delivering it");
                    lease.lost(epoch);
                    checkpoint = None;
                }
                Err(error) => {
                    tracing::warn!(function = %function_name, subscription = %pattern, %error, "subscription store error; retrying");
                    tokio::select! {
                        () = retries.wait() => {}
                        _ = stopping.changed() => {}
                    }
                }
            }
        }
    }

    /// The durable checkpoint, or where a new subscription starts.
    async fn initial_checkpoint(
        &self,
        function: &str,
        work: &Work<'_>,
        subscription: &SubscriptionSpec,
    ) -> Result<u64, StoreError> {
        if let Some(position) = self.stores.subscriptions.checkpoint(function, work.key).await? {
            return Ok(position);
        }
        let start = match subscription.from {
            StartFrom::Start => 0,
            StartFrom::Now => self.stores.events.head().await?,
        };
        self.stores.subscriptions.save_checkpoint(function, work.key, start, &work.fence).await?;
        Ok(start)
    }

    /// Delivers the next batch after `after`; returns the new checkpoint.
    async fn deliver_next(
        &self,
        function: &Arc<LoadedFunction>,
        subscription: &SubscriptionSpec,
        work: &Work<'_>,
        sink: &Sink,
        after: u64,
    ) -> Result<u64, StoreError> {
        let (key, fence) = (work.key, &work.fence);
        let (namespace, filter) = match subscription.target(&function.name) {
            Ok(target) => target,
            Err(message) => {
                tracing::error!(function = %function.name, %message, "invalid subscription");
                return Ok(after);
            }
        };
        let events = self.stores.events.read_filtered(namespace, &filter, after, subscription.batch_size).await?;
        let Some(last) = events.last().map(|e| e.position) else { return Ok(after) };
        if let Sink::Kafka { topic } = sink {
            self.forward(function, topic, &events, work).await?;
            self.stores.subscriptions.save_checkpoint(&function.name, key, last, fence).await?;
            return Ok(last);
        }
        if let Err(error) = self.deliver_with_retries(function, subscription, &events).await {
            if let [event] = events.as_slice() {
                self.park(function, subscription, event, &error).await?;
            } else {
                // Find the poison event(s): one at a time, so the others still get through.
                for event in &events {
                    if let Err(error) =
                        self.deliver_with_retries(function, subscription, std::slice::from_ref(event)).await
                    {
                        self.park(function, subscription, event, &error).await?;
                    }
                    self.stores.subscriptions.save_checkpoint(&function.name, key, event.position, fence).await?;
                }
            }
        }
        self.stores.subscriptions.save_checkpoint(&function.name, key, last, fence).await?;
        Ok(last)
    }

    /// Publishes `events` to `topic` in order, each acknowledged before the next; a failure is
    /// retried with backoff until the broker takes the event (an outbox never skips one). Stops
    /// ([`StoreError::Fenced`]) as soon as this node no longer holds the outbox's lease, so a
    /// node woken from a pause does not publish as if it still owned the outbox.
    async fn forward(
        &self,
        function: &LoadedFunction,
        topic: &str,
        events: &[RecordedEvent],
        work: &Work<'_>,
    ) -> Result<(), StoreError> {
        let fenced = || StoreError::Fenced(format!("outbox lease `{}`", work.fence.lease));
        for event in events {
            let key = function.access.address(&event.namespace, &event.stream);
            let headers = [
                ("faas-event-id", event.id.clone()),
                ("faas-event-type", event.event_type.clone()),
                ("faas-namespace", event.namespace.clone()),
                ("faas-stream", event.stream.clone()),
                ("faas-version", event.version.to_string()),
                ("faas-position", event.position.to_string()),
                ("faas-recorded-at", event.recorded_at_ms.to_string()),
                ("faas-metadata", event.metadata.clone()),
            ]
            .map(|(k, v)| (k.to_owned(), v.into_bytes()));
            let mut retries = backoff::KAFKA.retries();
            loop {
                if !work.lease.holds(work.fence.epoch) {
                    return Err(fenced());
                }
                let result = match &self.publisher {
                    Some(publisher) => publisher.publish(topic, Some(key.as_bytes()), &event.data, &headers).await,
                    None => Err(crate::kafka::PublishError::Unavailable("no --kafka-brokers on this node".into())),
                };
                match result {
                    Ok(_) => break,
                    Err(error) => {
                        let failures = retries.failures() + 1;
                        if failures == 1 || failures.is_multiple_of(20) {
                            tracing::warn!(function = %function.name, topic, position = event.position, %error,
                                failures, "outbox publish failed; retrying");
                        }
                        retries.wait().await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn park(
        &self,
        function: &LoadedFunction,
        subscription: &SubscriptionSpec,
        event: &RecordedEvent,
        error: &InvokeError,
    ) -> Result<(), StoreError> {
        tracing::error!(function = %function.name, subscription = %subscription.stream, position = event.position,
            %error, attempts = subscription.max_attempts, "event parked after repeated handler failures");
        self.stores
            .subscriptions
            .park(&function.name, &subscription.stream, event.position, &error.to_string(), subscription.max_attempts)
            .await
    }

    async fn deliver_with_retries(
        &self,
        function: &Arc<LoadedFunction>,
        subscription: &SubscriptionSpec,
        events: &[RecordedEvent],
    ) -> Result<(), InvokeError> {
        let batch: Vec<_> = events.iter().cloned().map(|e| to_wit(e, &function.access)).collect();
        let delivery_id = format!("sub-{}-{}", events[0].position, events[events.len() - 1].position);
        let mut attempt = 1;
        let mut busy = BusyWait::default();
        loop {
            match self.invoker.handle_events(function, &batch, &delivery_id).await {
                Ok(()) => return Ok(()),
                Err(error) if busy.again(&error).await => {
                    tracing::debug!(function = %function.name, delivery_id = %delivery_id, %error, "function busy; delivery waits");
                }
                Err(error) if attempt >= subscription.max_attempts => return Err(error),
                Err(error) => {
                    tracing::warn!(function = %function.name, subscription = %subscription.stream, attempt,
                        delivery_id = %delivery_id, %error, "event handler failed; retrying");
                    tokio::time::sleep(backoff::STORE.delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Runs a parked event through the handler once more; marks it replayed on success.
    pub async fn replay_parked(&self, function: &Arc<LoadedFunction>, id: i64) -> Result<(), ReplayError> {
        let parked = self.stores.subscriptions.parked(&function.name, id - 1, 1).await?;
        let entry = parked.iter().find(|p| p.id == id).ok_or(ReplayError::NotFound)?;
        let event = self.stores.events.event_at(entry.position).await?.ok_or(ReplayError::NotFound)?;
        let batch = [to_wit(event, &function.access)];
        self.invoker.handle_events(function, &batch, &format!("replay-{id}")).await?;
        self.stores.subscriptions.mark_replayed(&function.name, id).await?;
        Ok(())
    }

    /// A projection rebuild: moves the checkpoint of one of `function`'s subscriptions (`stream`,
    /// or its only one) to `to`, and with `clear_parked` drops its parked events, in one
    /// transaction that takes the subscription's lease from whichever node delivers it. That
    /// node's next checkpoint write is refused (the batch in its hands may still reach the
    /// handler: at least once), and whoever holds the lease next starts from the new checkpoint.
    pub async fn reset(&self, function: &LoadedFunction, request: &ResetRequest) -> Result<ResetOutcome, ResetError> {
        let stream = request.subscription.as_deref();
        let streams: Vec<&str> = function.spec.triggers.subscriptions.iter().map(|s| s.stream.as_str()).collect();
        let stream = match (stream, streams.as_slice()) {
            (Some(stream), _) if streams.contains(&stream) => stream.to_owned(),
            (Some(stream), _) => {
                return Err(ResetError::NoSuchSubscription {
                    function: function.name.to_string(),
                    stream: stream.into(),
                });
            }
            (None, [only]) => (*only).to_owned(),
            (None, []) => return Err(ResetError::NoSubscriptions(function.name.to_string())),
            (None, _) => return Err(ResetError::WhichOne(streams.iter().map(|s| (*s).to_owned()).collect())),
        };
        let head = self.stores.events.head().await?;
        let position = match request.to {
            ResetTo::Start => 0,
            ResetTo::Position(position) if position <= head => position,
            ResetTo::Position(position) => return Err(ResetError::PastHead { position, head }),
        };
        let lease = lease_name(&function.name, &stream, false);
        let reset = SubscriptionReset {
            function: &function.name,
            subscription: &stream,
            lease: &lease,
            position,
            clear_parked: request.clear_parked,
            clear_kv: request.clear_kv,
        };
        let cleared = self.stores.subscriptions.reset(&reset).await?;
        self.leases.forget(&lease);
        tracing::info!(function = %function.name, subscription = %stream, position,
            cleared_parked = cleared.cleared_parked, cleared_kv = cleared.cleared_kv, "subscription reset");
        Ok(ResetOutcome {
            function: function.name.to_string(),
            subscription: stream,
            checkpoint: position,
            head,
            cleared,
        })
    }

    /// Checkpoint, head and lag of each of a function's subscriptions.
    pub async fn status(&self, function: &LoadedFunction) -> Result<Vec<SubscriptionStatus>, StoreError> {
        let head = self.stores.events.head().await?;
        let mut statuses = Vec::new();
        for subscription in &function.spec.triggers.subscriptions {
            let checkpoint = self.stores.subscriptions.checkpoint(&function.name, &subscription.stream).await?;
            // Lag counts matching events not yet delivered (not merely positions behind the head).
            let lag = match (checkpoint, subscription.target(&function.name)) {
                (Some(cp), Ok((namespace, filter))) => self.count_after(namespace, &filter, cp).await?,
                _ => 0,
            };
            statuses.push(SubscriptionStatus { stream: subscription.stream.clone(), checkpoint, head, lag });
        }
        Ok(statuses)
    }

    async fn count_after(&self, namespace: &str, filter: &StreamFilter, after: u64) -> Result<u64, StoreError> {
        const PAGE: u32 = 1000;
        let events = self.stores.events.read_filtered(namespace, filter, after, PAGE).await?;
        Ok(events.len() as u64)
    }
}

/// One batch's place: the lease it runs under, the fence its writes name, the checkpoint key.
struct Work<'a> {
    lease: &'a Lease,
    fence: LeaseFence,
    key: &'a str,
}

/// Where a subscription stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionStatus {
    pub stream: String,
    /// Last delivered position; none before the first start.
    pub checkpoint: Option<u64>,
    pub head: u64,
    /// Matching events not yet delivered (counted up to 1000).
    pub lag: u64,
}

/// What [`Subscriptions::reset`] is asked to do.
#[derive(Debug, Clone)]
pub struct ResetRequest {
    /// Which subscription (its stream pattern); may be left out when there is only one.
    pub subscription: Option<String>,
    pub to: ResetTo,
    pub clear_parked: bool,
    /// Also delete the function's kv entries (its read model), so the projection is rebuilt
    /// from nothing rather than over what it had.
    pub clear_kv: bool,
}

/// Where [`Subscriptions::reset`] moves a checkpoint: before the first event, or after `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Start,
    Position(u64),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ResetOutcome {
    pub function: String,
    pub subscription: String,
    /// The new checkpoint: delivery goes on with the first matching event after it.
    pub checkpoint: u64,
    pub head: u64,
    #[serde(flatten)]
    pub cleared: ResetCounts,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("function `{function}` has no subscription `{stream}`")]
    NoSuchSubscription { function: String, stream: String },
    #[error("function `{0}` has no subscriptions")]
    NoSubscriptions(String),
    #[error("the function has several subscriptions; name one: {}", .0.join(", "))]
    WhichOne(Vec<String>),
    #[error("position {position} is past the head of the event store ({head})")]
    PastHead { position: u64, head: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no such parked event")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invoke(#[from] InvokeError),
}

/// On PostgreSQL, wakes local subscriptions when another node appends (NOTIFY `faas_events`
/// with the new head; on every reconnect, a wake-up for what may have been missed).
pub fn listen_for_remote_appends(database_url: String, notifier: EventNotifier) -> JoinHandle<()> {
    let mut notices = crate::store::postgres::listen(database_url, "faas_events");
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            match notice {
                Notice::Notified(head) => {
                    if let Ok(position) = head.parse::<u64>() {
                        notifier.appended(position);
                    }
                }
                Notice::Listening => notifier.wake_all(),
            }
        }
    })
}
