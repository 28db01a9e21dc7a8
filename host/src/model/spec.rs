//! [`DeploySpec`]: what a deploy says about a function besides its bytes: triggers and limits.
//! It is stored with each version, so a rollback restores routes and limits too.

use super::limits::Limits;
use super::names::{StreamFilter, validate_name, validate_stream_name, validate_topic};
use super::outbound::OutboundSpec;
use super::reuse::ReuseSpec;
use super::routes::RoutePattern;
use super::schedule::{MAX_SCHEDULES, ScheduleSpec};
use serde::{Deserialize, Serialize};

/// The configuration half of a deploy (the other half is the component).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    #[serde(default)]
    pub triggers: Triggers,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub grants: Grants,
    /// Event streams forwarded to Kafka topics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<OutboxSpec>,
    /// Outgoing HTTP: the origins the function may call (none by default) and the limits.
    #[serde(default)]
    pub outbound: OutboundSpec,
    /// Queued invocations (`POST /v1/functions/{name}/invocations`, `x-faas-invoke: async`).
    #[serde(default, rename = "async")]
    pub asynchronous: AsyncSpec,
    /// Whether an instance may serve more than one invocation (off by default).
    #[serde(default, skip_serializing_if = "is_default_reuse")]
    pub reuse: ReuseSpec,
}

fn is_default_reuse(reuse: &ReuseSpec) -> bool {
    *reuse == ReuseSpec::default()
}

/// How queued (async) invocations of the function are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncSpec {
    /// Attempts before an invocation that keeps failing (5xx, trap, timeout) is dead-lettered.
    #[serde(default = "default_async_attempts")]
    pub max_attempts: u32,
    /// An invocation not done this long after it was queued is dead-lettered instead of retried.
    #[serde(default = "default_async_max_age_ms")]
    pub max_age_ms: u64,
}

fn default_async_attempts() -> u32 {
    3
}

fn default_async_max_age_ms() -> u64 {
    6 * 60 * 60 * 1000
}

/// The longest `async.max_age_ms`: a week.
pub const MAX_ASYNC_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

impl Default for AsyncSpec {
    fn default() -> Self {
        Self { max_attempts: default_async_attempts(), max_age_ms: default_async_max_age_ms() }
    }
}

/// Forwards the events of matching streams to a Kafka topic: a transactional outbox, where the
/// appended events are the state change and the host publishes them, at least once and in
/// order per stream (the stream is the record key), resuming from a durable checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSpec {
    /// A stream or category, as in a subscription (`order-*`, `bank/account-*` when granted).
    pub stream: String,
    pub topic: String,
}

impl OutboxSpec {
    /// The name of its checkpoint, next to the function's subscriptions.
    pub fn key(&self) -> String {
        format!("kafka:{}:{}", self.topic, self.stream)
    }

    /// Reading it works like a subscription from the start of history.
    pub fn as_subscription(&self) -> SubscriptionSpec {
        SubscriptionSpec::new(&self.stream)
    }
}

/// Access beyond the function's own namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Namespaces whose streams this function may read (and subscribe to).
    #[serde(default)]
    pub read_namespaces: Vec<String>,
    /// Kafka topics this function may publish to: names, or prefixes ending in `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish_topics: Vec<String>,
}

impl Grants {
    /// Whether `topic` is one of [`publish_topics`](Self::publish_topics).
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish_topics.iter().any(|grant| match grant.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => grant == topic,
        })
    }
}

/// How a function is invoked; `deny_unknown_fields` makes a misspelt trigger a clear 400.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Route patterns: exact paths (`/hello`) or trailing wildcards (`/hello/...`).
    #[serde(default)]
    pub http: Vec<String>,
    /// Event subscriptions, delivered to the `event-handler` export.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
    /// Kafka records, delivered to the `message-handler` export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaTrigger>,
    /// Cron schedules, delivered to the `scheduled-handler` export (or a route, with GET).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleSpec>,
}

/// A Kafka trigger: one consumer group reading `topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTrigger {
    pub topics: Vec<String>,
    /// The consumer group; default `faas-<function>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Most records per handler call (all of one partition). A batch takes only what is
    /// fetched already, so a large cap costs no latency and makes a busy partition cheaper.
    #[serde(default = "default_kafka_batch_size")]
    pub batch_size: u32,
    /// Retries of a failing record before it goes to the dead-letter topic.
    #[serde(default = "default_kafka_retries")]
    pub max_retries: u32,
    /// The dead-letter topic; default `<topic>.dlq` for each topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq: Option<String>,
    /// Where a group without committed offsets starts.
    #[serde(default)]
    pub from: KafkaFrom,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFrom {
    /// The oldest retained record: nothing produced before the deploy is missed.
    #[default]
    Earliest,
    Latest,
}

fn default_kafka_retries() -> u32 {
    3
}

fn default_kafka_batch_size() -> u32 {
    500
}

impl KafkaTrigger {
    pub fn new(topics: &[&str]) -> Self {
        Self {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            group: None,
            batch_size: default_kafka_batch_size(),
            max_retries: default_kafka_retries(),
            dlq: None,
            from: KafkaFrom::Earliest,
        }
    }

    pub fn group(&self, function: &str) -> String {
        self.group.clone().unwrap_or_else(|| format!("faas-{function}"))
    }

    /// Where records of `topic` go after their last retry.
    pub fn dlq_topic(&self, topic: &str) -> String {
        self.dlq.clone().unwrap_or_else(|| format!("{topic}.dlq"))
    }

    fn validate(&self) -> Result<(), String> {
        if self.topics.is_empty() {
            return Err("the Kafka trigger names no topic".into());
        }
        for (i, topic) in self.topics.iter().enumerate() {
            validate_topic(topic)?;
            // The default `<topic>.dlq` of a long name is too long for Kafka.
            validate_topic(&self.dlq_topic(topic)).map_err(|e| format!("dead-letter topic of `{topic}`: {e}"))?;
            if self.topics[..i].contains(topic) {
                return Err(format!("Kafka topic `{topic}` is listed twice"));
            }
            if self.dlq_topic(topic) == *topic || self.dlq.as_ref().is_some_and(|d| self.topics.contains(d)) {
                return Err(format!("the dead-letter topic of `{topic}` is one the trigger consumes"));
            }
        }
        if let Some(dlq) = &self.dlq {
            validate_topic(dlq)?;
        }
        if let Some(group) = &self.group {
            validate_topic(group).map_err(|_| format!("invalid Kafka group `{group}`: use 1-249 of `a-zA-Z0-9._-`"))?;
        }
        if !(1..=10_000).contains(&self.batch_size) || self.max_retries > 100 {
            return Err("Kafka trigger: batch_size is 1-10000, max_retries 0-100".into());
        }
        Ok(())
    }
}

/// One event subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// A stream (`account-1`), a category prefix ending in `*` (`account-*`; `*` alone is every
    /// stream), optionally in a granted namespace (`bank/account-*`).
    pub stream: String,
    /// Where a new subscription starts: the beginning of history, or events appended from now on.
    #[serde(default)]
    pub from: StartFrom,
    /// Events per handler call.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Attempts per event before it is parked.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    #[default]
    Start,
    Now,
}

fn default_batch_size() -> u32 {
    100
}

fn default_max_attempts() -> u32 {
    5
}

impl SubscriptionSpec {
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            from: StartFrom::Start,
            batch_size: default_batch_size(),
            max_attempts: default_max_attempts(),
        }
    }

    /// The namespace (own when not given) and the stream filter.
    pub fn target<'a>(&'a self, own: &'a str) -> Result<(&'a str, StreamFilter), String> {
        let (namespace, pattern) = self.stream.split_once('/').unwrap_or((own, &self.stream));
        validate_name(namespace).map_err(|_| format!("invalid namespace in subscription `{}`", self.stream))?;
        let filter = match pattern.strip_suffix('*') {
            Some("") => StreamFilter::Prefix(String::new()),
            Some(prefix) => {
                validate_stream_name(prefix).map_err(|e| format!("subscription `{}`: {e}", self.stream))?;
                StreamFilter::Prefix(prefix.to_owned())
            }
            None => {
                validate_stream_name(pattern).map_err(|e| format!("subscription `{}`: {e}", self.stream))?;
                StreamFilter::Stream(pattern.to_owned())
            }
        };
        Ok((namespace, filter))
    }
}

/// Why a deploy spec is refused. Each names the field at fault; the message is what the
/// deployer sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Limits(String),
    #[error("grants.{field}: {message}")]
    Grant { field: &'static str, message: String },
    /// The Kafka trigger's topics, group, dead-letter topics or sizes.
    #[error("{0}")]
    Kafka(String),
    #[error("outbox: {0}")]
    Outbox(String),
    /// The outbound allow-list or limits.
    #[error("{0}")]
    Outbound(String),
    /// A subscription or outbox stream pattern, or a subscription's sizes.
    #[error("{0}")]
    Stream(String),
    #[error("{what} reads namespace `{namespace}`, which is not in grants.read_namespaces")]
    NotGranted { what: String, namespace: String },
    #[error("{0} is listed twice")]
    Duplicate(String),
    #[error("{0}")]
    Route(String),
    #[error("{0}")]
    Schedule(String),
    #[error("async: {0}")]
    Async(String),
}

impl DeploySpec {
    /// Validates limits, grants and subscriptions, and parses routes. `name` is the function's
    /// (and so its namespace's) name.
    pub fn validate(&self, name: &str) -> Result<Vec<RoutePattern>, SpecError> {
        self.limits.validate().map_err(SpecError::Limits)?;
        self.reuse.validate().map_err(SpecError::Limits)?;
        self.outbound.validate().map_err(SpecError::Outbound)?;
        for namespace in &self.grants.read_namespaces {
            validate_name(namespace).map_err(|message| SpecError::Grant { field: "read_namespaces", message })?;
        }
        for grant in &self.grants.publish_topics {
            let topic = grant.strip_suffix('*').unwrap_or(grant);
            if !topic.is_empty() || grant != "*" {
                validate_topic(topic).map_err(|message| SpecError::Grant { field: "publish_topics", message })?;
            }
        }
        if let Some(kafka) = &self.triggers.kafka {
            kafka.validate().map_err(SpecError::Kafka)?;
        }
        let granted = |namespace: &str| namespace == name || self.grants.read_namespaces.iter().any(|n| n == namespace);
        for (i, outbox) in self.outbox.iter().enumerate() {
            validate_topic(&outbox.topic).map_err(SpecError::Outbox)?;
            let subscription = outbox.as_subscription();
            let (namespace, _) = subscription.target(name).map_err(SpecError::Stream)?;
            if !granted(namespace) {
                let what = format!("outbox `{}`", outbox.stream);
                return Err(SpecError::NotGranted { what, namespace: namespace.to_owned() });
            }
            if self.outbox[..i].contains(outbox) {
                return Err(SpecError::Duplicate(format!("outbox `{}` -> `{}`", outbox.stream, outbox.topic)));
            }
        }
        for subscription in &self.triggers.subscriptions {
            let (namespace, _) = subscription.target(name).map_err(SpecError::Stream)?;
            if !granted(namespace) {
                let what = format!("subscription `{}`", subscription.stream);
                return Err(SpecError::NotGranted { what, namespace: namespace.to_owned() });
            }
            if !(1..=1000).contains(&subscription.batch_size) || !(1..=100).contains(&subscription.max_attempts) {
                return Err(SpecError::Stream(format!(
                    "subscription `{}`: batch_size is 1-1000, max_attempts 1-100",
                    subscription.stream
                )));
            }
        }
        if self
            .triggers
            .subscriptions
            .iter()
            .enumerate()
            .any(|(i, s)| self.triggers.subscriptions[..i].iter().any(|t| t.stream == s.stream))
        {
            return Err(SpecError::Duplicate("a subscription".into()));
        }
        if self.triggers.schedules.len() > MAX_SCHEDULES {
            return Err(SpecError::Schedule(format!("at most {MAX_SCHEDULES} schedules per function")));
        }
        for (i, schedule) in self.triggers.schedules.iter().enumerate() {
            schedule.parse().map_err(SpecError::Schedule)?;
            if self.triggers.schedules[..i].iter().any(|s| s.key() == schedule.key()) {
                return Err(SpecError::Duplicate(format!("schedule `{}`", schedule.key())));
            }
        }
        let asynchronous = &self.asynchronous;
        if !(1..=100).contains(&asynchronous.max_attempts) {
            return Err(SpecError::Async("max_attempts is 1-100".into()));
        }
        if !(1000..=MAX_ASYNC_AGE_MS).contains(&asynchronous.max_age_ms) {
            return Err(SpecError::Async("max_age_ms is 1 s to 7 days".into()));
        }
        let mut routes = Vec::with_capacity(self.triggers.http.len());
        for text in &self.triggers.http {
            let route = RoutePattern::parse(text).map_err(SpecError::Route)?;
            if routes.contains(&route) {
                return Err(SpecError::Duplicate(format!("route `{text}`")));
            }
            routes.push(route);
        }
        Ok(routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_need_grants_outside_the_own_namespace() {
        let mut spec = DeploySpec::default();
        spec.triggers.subscriptions.push(SubscriptionSpec::new("bank/account-*"));
        assert!(spec.validate("audit").unwrap_err().to_string().contains("not in grants"));
        spec.grants.read_namespaces.push("bank".into());
        assert!(spec.validate("audit").is_ok());
        let sub = SubscriptionSpec::new("account-*");
        assert_eq!(sub.target("bank").unwrap(), ("bank", StreamFilter::Prefix("account-".into())));
        assert_eq!(SubscriptionSpec::new("*").target("x").unwrap(), ("x", StreamFilter::Prefix(String::new())));
        assert_eq!(SubscriptionSpec::new("a-1").target("x").unwrap(), ("x", StreamFilter::Stream("a-1".into())));
        assert!(SubscriptionSpec::new("bad name*").target("x").is_err());
    }

    #[test]
    fn unknown_spec_fields_are_rejected() {
        let err = serde_json::from_str::<DeploySpec>(r#"{"triggers":{"kafak":["t"]}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `kafak`"));
    }

    #[test]
    fn kafka_triggers_and_grants() {
        let mut spec = DeploySpec::default();
        spec.triggers.kafka = Some(KafkaTrigger::new(&["orders"]));
        assert!(spec.validate("f").is_ok());
        let kafka = spec.triggers.kafka.as_ref().unwrap();
        assert_eq!((kafka.group("f"), kafka.dlq_topic("orders")), ("faas-f".into(), "orders.dlq".into()));
        spec.triggers.kafka = Some(KafkaTrigger::new(&[]));
        assert!(spec.validate("f").unwrap_err().to_string().contains("no topic"));
        spec.triggers.kafka = Some(KafkaTrigger::new(&["a b"]));
        assert!(spec.validate("f").unwrap_err().to_string().contains("invalid Kafka topic"));
        spec.triggers.kafka = Some(KafkaTrigger { dlq: Some("orders".into()), ..KafkaTrigger::new(&["orders"]) });
        assert!(spec.validate("f").unwrap_err().to_string().contains("dead-letter"));
        // Names the broker would refuse at the first dead letter are refused at deploy.
        spec.triggers.kafka =
            Some(KafkaTrigger { dlq: Some("__consumer_offsets".into()), ..KafkaTrigger::new(&["orders"]) });
        assert!(spec.validate("f").unwrap_err().to_string().contains("internal topics"));
        let long = "t".repeat(249);
        spec.triggers.kafka = Some(KafkaTrigger::new(&[long.as_str()]));
        assert!(spec.validate("f").unwrap_err().to_string().contains("dead-letter topic of"));
        spec.triggers.kafka = None;
        spec.grants.publish_topics = vec!["orders".into(), "audit.*".into()];
        assert!(spec.validate("f").is_ok());
        assert!(spec.grants.may_publish("orders") && spec.grants.may_publish("audit.x"));
        assert!(!spec.grants.may_publish("orders2") && !spec.grants.may_publish("audit"));
        spec.grants.publish_topics = vec!["bad topic".into()];
        assert!(spec.validate("f").is_err());
    }

    #[test]
    fn duplicate_routes_are_rejected() {
        let spec = DeploySpec {
            triggers: Triggers { http: vec!["/a".into(), "/a".into()], ..Default::default() },
            ..Default::default()
        };
        assert!(spec.validate("f").unwrap_err().to_string().contains("twice"));
    }
}
