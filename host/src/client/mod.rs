//! The CLI side of the control plane: `faas deploy|list|get|rollback|delete` and
//! [`config`] (`faas config get|set|unset`) as calls to a (possibly remote) server's API; and
//! [`scaffold`] (`faas new`), which writes a function crate locally.

pub mod config;
pub mod logs;
pub mod scaffold;

use crate::model::limits::{Limits, parse_bytes, parse_duration};
use crate::model::outbound::OutboundSpec;
use crate::model::reuse::ReuseSpec;
use crate::model::schedule::{CatchUp, ScheduleSpec};
use crate::model::spec::{
    AsyncSpec, DeploySpec, Grants, KafkaFrom, KafkaTrigger, OutboxSpec, StartFrom, SubscriptionSpec, Triggers,
};
use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::path::PathBuf;

/// Where the control plane is.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Base URL of the server's control plane.
    #[arg(long, env = "FAAS_ADMIN_URL", default_value = "http://127.0.0.1:8081", global = true)]
    pub admin_url: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "FAAS_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// `faas deploy` arguments.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Function name (lowercase letters, digits, dashes).
    pub name: String,
    /// The component, built with `cargo build --target wasm32-wasip2`.
    pub file: PathBuf,
    /// HTTP route: an exact path (`/hello`) or a subtree (`/hello/...`). Repeatable.
    #[arg(long = "route")]
    pub routes: Vec<String>,
    /// Memory limit per instance, e.g. 64MiB.
    #[arg(long, value_parser = parse_bytes)]
    pub memory: Option<u64>,
    /// Wall-clock limit per invocation, e.g. 10s.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Instances of this function running at once.
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// Requests that may wait for a free instance before getting 503.
    #[arg(long)]
    pub max_queue: Option<u32>,
    /// Largest request body, e.g. 10MiB.
    #[arg(long, value_parser = parse_bytes)]
    pub max_body: Option<u64>,
    /// Deliver events of a stream (`account-1`) or category (`account-*`) to the function's
    /// event handler. Repeatable.
    #[arg(long = "subscribe")]
    pub subscriptions: Vec<String>,
    /// Where new subscriptions start.
    #[arg(long, value_enum, default_value = "start")]
    pub subscribe_from: SubscribeFrom,
    /// Let the function read another namespace's streams. Repeatable.
    #[arg(long = "grant-read")]
    pub read_namespaces: Vec<String>,
    /// Let the function publish to a Kafka topic (or topics starting with a prefix ending in
    /// `*`). Repeatable.
    #[arg(long = "grant-publish")]
    pub publish_topics: Vec<String>,
    /// Feed records of a Kafka topic to the function's message handler. Repeatable; all topics
    /// share one consumer group.
    #[arg(long = "kafka-topic")]
    pub kafka_topics: Vec<String>,
    /// Forward the events of a stream or category to a Kafka topic: `STREAM=TOPIC`, e.g.
    /// `order-*=orders` (an outbox: at least once, in order per stream). Repeatable.
    #[arg(long = "outbox", value_parser = parse_outbox)]
    pub outbox: Vec<OutboxSpec>,
    /// The trigger's consumer group (default `faas-<name>`).
    #[arg(long, requires = "kafka_topics")]
    pub kafka_group: Option<String>,
    /// Most records per handler call.
    #[arg(long, requires = "kafka_topics")]
    pub kafka_batch: Option<u32>,
    /// Retries of a failing record before it goes to the dead-letter topic.
    #[arg(long, requires = "kafka_topics")]
    pub kafka_max_retries: Option<u32>,
    /// The dead-letter topic (default `<topic>.dlq`).
    #[arg(long, requires = "kafka_topics")]
    pub kafka_dlq: Option<String>,
    /// Where a new consumer group starts.
    #[arg(long, value_enum, requires = "kafka_topics")]
    pub kafka_from: Option<KafkaFromArg>,
    /// Let the function make outgoing HTTP requests to an origin: `https://api.example.com`,
    /// `https://*.example.com` (subdomains), `http://127.0.0.1:9000`. Repeatable; none by
    /// default. Internal addresses are reachable only when named literally.
    #[arg(long = "allow-outbound")]
    pub allow_outbound: Vec<String>,
    /// Time an outgoing request may wait for the response's first byte, e.g. 10s.
    #[arg(long, value_parser = parse_duration)]
    pub outbound_timeout: Option<std::time::Duration>,
    /// Run the function on a cron schedule: 5 fields (`*/5 * * * *`), 6 with seconds first, or
    /// `@hourly`/`@daily`/`@weekly`/`@monthly`/`@yearly`. Repeatable.
    #[arg(long = "schedule")]
    pub schedules: Vec<String>,
    /// The IANA time zone of the schedules (default UTC), e.g. `Europe/Berlin`.
    #[arg(long, requires = "schedules")]
    pub schedule_tz: Option<String>,
    /// For an HTTP-only component: the path called with GET at each tick (with an
    /// `x-faas-schedule` header), instead of the `scheduled-handler` export.
    #[arg(long, requires = "schedules")]
    pub schedule_route: Option<String>,
    /// Ticks missed while no node ran: skip them (`none`), run the newest once (`last`), or run
    /// every one (`all`).
    #[arg(long, value_parser = CatchUp::parse, requires = "schedules")]
    pub schedule_catch_up: Option<CatchUp>,
    /// Attempts of a queued (async) invocation before it is dead-lettered.
    #[arg(long)]
    pub async_max_attempts: Option<u32>,
    /// A queued invocation not done this long after it was queued is dead-lettered, e.g. 1h.
    #[arg(long, value_parser = parse_duration)]
    pub async_max_age: Option<std::time::Duration>,
    /// Let one instance serve up to N invocations, one at a time, before it is discarded
    /// (default 1: a fresh instance each time). Faster, but what one invocation leaves in the
    /// instance's memory the next one of the same function sees; a trap or timeout still
    /// discards the instance at once.
    #[arg(long, value_name = "N")]
    pub reuse: Option<u32>,
    /// Discard a reusable instance after it was idle this long, e.g. 30s (the default).
    #[arg(long, value_parser = parse_duration, requires = "reuse")]
    pub reuse_idle: Option<std::time::Duration>,
    /// Let one instance of a WASIp3 HTTP handler (`wasi:http/handler@0.3`) run up to M requests
    /// at once (default 1); at most --reuse.
    #[arg(long, value_name = "M", requires = "reuse")]
    pub reuse_concurrency: Option<u32>,
    #[command(flatten)]
    pub values: config::ValueArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KafkaFromArg {
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SubscribeFrom {
    Start,
    Now,
}

pub struct Client {
    http: reqwest::Client,
    remote: Remote,
}

impl Client {
    pub fn new(remote: Remote) -> Self {
        Self { http: reqwest::Client::new(), remote }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.remote.admin_url.trim_end_matches('/'))
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the server's message.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = self.send_raw(request).await?;
        let text = response.text().await.context("reading the response")?;
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    /// Sends a request with the token; a non-2xx answer becomes an error carrying the server's
    /// message, a 2xx one is handed back unread (for a stream).
    async fn send_raw(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let request = match &self.remote.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.with_context(|| format!("cannot reach {}", self.remote.admin_url))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.context("reading the response")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let message = body["error"]["message"].as_str().map_or_else(|| body.to_string(), str::to_owned);
        Err(anyhow!("{message} (HTTP {status})"))
    }

    pub async fn deploy(&self, args: DeployArgs) -> anyhow::Result<Value> {
        let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
        let defaults = Limits::default();
        let timeout_ms = match args.timeout {
            Some(t) => u64::try_from(t.as_millis()).context("timeout too large")?,
            None => defaults.timeout_ms,
        };
        let kafka = kafka_trigger(&args);
        let spec = DeploySpec {
            triggers: Triggers {
                http: args.routes,
                subscriptions: args
                    .subscriptions
                    .iter()
                    .map(|stream| SubscriptionSpec {
                        from: match args.subscribe_from {
                            SubscribeFrom::Start => StartFrom::Start,
                            SubscribeFrom::Now => StartFrom::Now,
                        },
                        ..SubscriptionSpec::new(stream)
                    })
                    .collect(),
                kafka,
                schedules: args
                    .schedules
                    .iter()
                    .map(|cron| ScheduleSpec {
                        cron: cron.clone(),
                        tz: args.schedule_tz.clone(),
                        route: args.schedule_route.clone(),
                        catch_up: args.schedule_catch_up.unwrap_or_default(),
                    })
                    .collect(),
            },
            asynchronous: AsyncSpec {
                max_attempts: args.async_max_attempts.unwrap_or(AsyncSpec::default().max_attempts),
                max_age_ms: match args.async_max_age {
                    Some(age) => u64::try_from(age.as_millis()).context("async max age too large")?,
                    None => AsyncSpec::default().max_age_ms,
                },
            },
            reuse: ReuseSpec {
                max_uses: args.reuse.unwrap_or(ReuseSpec::default().max_uses),
                idle_timeout_ms: match args.reuse_idle {
                    Some(idle) => u64::try_from(idle.as_millis()).context("reuse idle time too large")?,
                    None => ReuseSpec::default().idle_timeout_ms,
                },
                max_concurrency: args.reuse_concurrency.unwrap_or(ReuseSpec::default().max_concurrency),
            },
            outbox: args.outbox,
            grants: Grants { read_namespaces: args.read_namespaces, publish_topics: args.publish_topics },
            outbound: OutboundSpec {
                allow: args.allow_outbound,
                first_byte_timeout_ms: match args.outbound_timeout {
                    Some(t) => u64::try_from(t.as_millis()).context("outbound timeout too large")?,
                    None => OutboundSpec::default().first_byte_timeout_ms,
                },
                ..OutboundSpec::default()
            },
            limits: Limits {
                memory_bytes: args.memory.unwrap_or(defaults.memory_bytes),
                timeout_ms,
                max_concurrency: args.max_concurrency.unwrap_or(defaults.max_concurrency),
                max_queue: args.max_queue.unwrap_or(defaults.max_queue),
                max_body_bytes: args.max_body.unwrap_or(defaults.max_body_bytes),
            },
        };
        let file_name =
            args.file.file_name().map_or_else(|| "component.wasm".into(), |n| n.to_string_lossy().into_owned());
        let mut form = Form::new().text("config", serde_json::to_string(&spec)?);
        if !args.values.is_empty() {
            form = form.text("values", args.values.to_json(&[]).to_string());
        }
        let form = form.part("component", Part::bytes(bytes).file_name(file_name).mime_str("application/wasm")?);
        self.send(self.http.post(self.url(&format!("/v1/functions/{}/versions", args.name))).multipart(form)).await
    }

    /// Every function, following the list's `next` cursor page by page.
    pub async fn list(&self) -> anyhow::Result<Value> {
        let mut functions = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = self.http.get(self.url("/v1/functions")).query(&[("limit", "1000")]);
            if let Some(after) = &after {
                request = request.query(&[("after", after)]);
            }
            let mut page = self.send(request).await?;
            let Some(items) = page["functions"].as_array_mut() else { bail!("unexpected answer: {page}") };
            functions.append(items);
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return Ok(serde_json::json!({ "functions": functions })),
            }
        }
    }

    pub async fn get(&self, name: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(&format!("/v1/functions/{name}")))).await
    }

    pub async fn rollback(&self, name: &str, version: u32) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(&format!("/v1/functions/{name}/versions/{version}/activate")))).await
    }

    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url(&format!("/v1/functions/{name}")))).await.map(drop)
    }

    pub async fn subscription(&self, command: SubscriptionCommand) -> anyhow::Result<Value> {
        match command {
            SubscriptionCommand::Status { function } => {
                self.send(self.http.get(self.url(&format!("/v1/functions/{function}/subscriptions")))).await
            }
            SubscriptionCommand::Reset { function, subscription, to_position, to_start, clear_parked, clear_kv } => {
                let body = serde_json::json!({
                    "subscription": subscription,
                    "to_position": to_position,
                    "to_start": to_start,
                    "clear_parked": clear_parked,
                    "clear_kv": clear_kv,
                });
                let url = self.url(&format!("/v1/functions/{function}/subscriptions/reset"));
                self.send(self.http.post(url).json(&body)).await
            }
        }
    }

    pub async fn schedule(&self, function: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(&format!("/v1/functions/{function}/schedule")))).await
    }

    pub async fn invocations(&self, command: InvocationCommand) -> anyhow::Result<Value> {
        match command {
            InvocationCommand::List { function, status, limit, after } => {
                let mut request = self.http.get(self.url("/v1/invocations")).query(&[("limit", limit.to_string())]);
                for (key, value) in [("function", function), ("status", status), ("after", after)] {
                    if let Some(value) = value {
                        request = request.query(&[(key, value)]);
                    }
                }
                self.send(request).await
            }
            InvocationCommand::Get { id } => self.send(self.http.get(self.url(&format!("/v1/invocations/{id}")))).await,
            InvocationCommand::Replay { id } => {
                self.send(self.http.post(self.url(&format!("/v1/invocations/{id}/replay")))).await
            }
            InvocationCommand::Invoke { function, path, method, data, idempotency_key, callback } => {
                let mut request = self
                    .http
                    .post(self.url(&format!("/v1/functions/{function}/invocations")))
                    .body(data.unwrap_or_default());
                for (key, value) in [("path", path), ("method", method)] {
                    if let Some(value) = value {
                        request = request.query(&[(key, value)]);
                    }
                }
                if let Some(key) = idempotency_key {
                    request = request.header("idempotency-key", key);
                }
                if let Some(url) = callback {
                    request = request.header("x-faas-callback", url);
                }
                self.send(request).await
            }
        }
    }

    pub async fn nodes(&self) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url("/v1/nodes"))).await
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum SubscriptionCommand {
    /// Checkpoint, head and lag of each subscription, and the parked events.
    Status { function: String },
    /// Moves a subscription's checkpoint (a projection rebuild): delivery stops, whichever node
    /// delivers it is fenced off, and it goes on after the new checkpoint.
    Reset {
        function: String,
        /// Which subscription (its stream pattern, e.g. `account-*`); needed only when the
        /// function has several.
        #[arg(long)]
        subscription: Option<String>,
        /// Deliver again everything after this position.
        #[arg(long, conflicts_with = "to_start", required_unless_present = "to_start")]
        to_position: Option<u64>,
        /// Deliver again from the first event.
        #[arg(long)]
        to_start: bool,
        /// Also delete the subscription's parked events.
        #[arg(long)]
        clear_parked: bool,
        /// Also delete the function's kv entries (its read model), so the projection is rebuilt
        /// from nothing.
        #[arg(long)]
        clear_kv: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum InvocationCommand {
    /// Queues an invocation: the function runs it in the background, retried on failure.
    Invoke {
        function: String,
        /// The path the function sees (default: its first route).
        #[arg(long)]
        path: Option<String>,
        /// The method (default POST).
        #[arg(long)]
        method: Option<String>,
        /// The request body.
        #[arg(long, short = 'd')]
        data: Option<String>,
        /// Queue it only once: a second invoke with the same key returns the first invocation.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// POST the result to this URL (it must be in the function's outbound allow-list).
        #[arg(long)]
        callback: Option<String>,
    },
    /// Newest first: status, attempts, response status.
    List {
        #[arg(long)]
        function: Option<String>,
        /// queued, running, succeeded, failed or dead (the dead letters).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The `next` of the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// One invocation: attempts, error, the final response.
    Get { id: String },
    /// Queues a dead or failed invocation again, attempts counted from zero.
    Replay { id: String },
}

fn parse_outbox(text: &str) -> Result<OutboxSpec, String> {
    let (stream, topic) = text.split_once('=').ok_or("expected STREAM=TOPIC, e.g. `order-*=orders`")?;
    Ok(OutboxSpec { stream: stream.to_owned(), topic: topic.to_owned() })
}

fn kafka_trigger(args: &DeployArgs) -> Option<KafkaTrigger> {
    if args.kafka_topics.is_empty() {
        return None;
    }
    let defaults = KafkaTrigger::new(&[]);
    Some(KafkaTrigger {
        topics: args.kafka_topics.clone(),
        group: args.kafka_group.clone(),
        batch_size: args.kafka_batch.unwrap_or(defaults.batch_size),
        max_retries: args.kafka_max_retries.unwrap_or(defaults.max_retries),
        dlq: args.kafka_dlq.clone(),
        from: match args.kafka_from {
            Some(KafkaFromArg::Latest) => KafkaFrom::Latest,
            _ => KafkaFrom::Earliest,
        },
    })
}

/// `faas list` as a table: name, active version, routes.
pub fn format_list(list: &Value) -> anyhow::Result<String> {
    let Some(functions) = list["functions"].as_array() else { bail!("unexpected answer: {list}") };
    let mut out = format!("{:<24} {:>7}  ROUTES\n", "NAME", "ACTIVE");
    for f in functions {
        let routes: Vec<&str> =
            f["routes"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let active = f["active_version"].as_u64().map_or_else(|| "-".into(), |v| v.to_string());
        out += &format!("{:<24} {:>7}  {}\n", f["name"].as_str().unwrap_or("?"), active, routes.join(" "));
    }
    Ok(out)
}
