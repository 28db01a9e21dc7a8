//! A real Apache Kafka broker for the tests, started with the project's own
//! `scripts/kafka.sh run` (jars from Maven Central, cached), plus producer, consumer and admin
//! helpers built on rdkafka.
//!
//! [`broker`] is one broker per test run, on a free port with its own data dir. The script keeps
//! the broker only while its stdin is open, and that pipe belongs to this process: when the run
//! ends, also by a panic or a kill, the pipe closes and the broker dies with it.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub struct Broker {
    wrapper: Child,
    pub pid: u32,
    pub port: u16,
    pub bootstrap: String,
}

/// The broker shared by the run's Kafka tests.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| Broker::start(None, None))
}

/// Broker settings of [`Broker::start_with`] for a cluster that refuses what the shared one
/// allows: topics are never created on first use, and ACLs are enforced (every client of these
/// tests is `User:ANONYMOUS`; with no ACL on a resource everyone may use it, so a `DENY` ACL
/// from [`deny_writes`] is what refuses).
pub const STRICT: &[&str] = &[
    "auto.create.topics.enable=false",
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found=true",
];

impl Broker {
    /// Starts a broker on `port` (default: a free one) with its data in `data` (default: a
    /// temporary dir the script removes).
    pub fn start(port: Option<u16>, data: Option<&Path>) -> Self {
        Self::start_with(port, data, &[])
    }

    /// [`start`](Self::start), with extra `server.properties` lines (`key=value`).
    pub fn start_with(port: Option<u16>, data: Option<&Path>, properties: &[&str]) -> Self {
        let port = port.unwrap_or_else(free_port_pair);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").join("scripts/kafka.sh");
        let mut command = Command::new("bash");
        command.arg(script).arg("run").arg(port.to_string()).stdin(Stdio::piped()).stdout(Stdio::piped());
        command.env("FAAS_KAFKA_PROPERTIES", properties.join("\n"));
        match data {
            Some(dir) => command.env("FAAS_KAFKA_DATA", dir),
            None => command.env_remove("FAAS_KAFKA_DATA"),
        };
        let mut wrapper = command.spawn().expect("starting scripts/kafka.sh run");
        let stdout = wrapper.stdout.take().expect("stdout");
        let line = BufReader::new(stdout).lines().next().and_then(Result::ok).unwrap_or_default();
        let pid = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("pid="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("scripts/kafka.sh run did not start a broker (printed {line:?})"));
        Self { wrapper, pid, port, bootstrap: format!("127.0.0.1:{port}") }
    }

    /// `kill -9` of the broker process.
    pub fn kill(&mut self) {
        let _ = Command::new("kill").args(["-9", &self.pid.to_string()]).status();
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port whose successor (the controller's port) is free too.
///
/// Taken below the kernel's ephemeral range (32768–60999 on Linux), which is where `bind(0)`
/// listeners and the source ports of outgoing connections come from: a broker restarted on its
/// port (a kill/restart test) would otherwise find it taken by some client's connection in the
/// meantime. A counter keeps the tests of this process from handing out one port twice.
fn free_port_pair() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Different test processes (rare: one suite at a time) start at different places.
    let offset = (std::process::id() % u32::from(SPAN / 2)) as u16 * 2;
    for _ in 0..SPAN / 2 {
        let step = NEXT.fetch_add(2, Ordering::Relaxed);
        let port = FIRST + (offset + step) % SPAN;
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(port) && free(port + 1) {
            return port;
        }
    }
    panic!("no free port pair in {FIRST}..{}", FIRST + SPAN);
}

/// A unique topic name for one test.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with(bootstrap, name, partitions, &[]).await;
}

/// [`create_topic`] with topic configs, e.g. `("max.message.bytes", "600")`.
pub async fn create_topic_with(bootstrap: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let topic = config
        .iter()
        .fold(NewTopic::new(name, partitions, TopicReplication::Fixed(1)), |topic, (key, value)| topic.set(key, value));
    let results = admin.create_topics([&topic], &AdminOptions::new()).await.expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(topic, error)| panic!("creating topic {topic}: {error}"));
    }
}

pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        // The topic's limit decides, not librdkafka's default (1,000,000 bytes, below the
        // broker's default topic limit).
        .set("message.max.bytes", "16777216")
        .create()
        .expect("producer")
}

/// Produces `(key, value)` records; keys pick the partition. Waits for every acknowledgement.
pub async fn produce(bootstrap: &str, topic: &str, records: Vec<(String, Vec<u8>)>) {
    let producer = producer(bootstrap);
    let sends = records.iter().map(|(key, value)| {
        let producer = &producer;
        async move {
            producer
                .send(FutureRecord::to(topic).key(key).payload(value), Duration::from_secs(120))
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"))
        }
    });
    futures::future::join_all(sends).await;
}

/// An order-created record for the `order-events` example.
pub fn order(i: usize) -> (String, Vec<u8>) {
    let id = format!("o-{i}");
    let value = serde_json::json!({ "order_id": id, "customer": format!("c-{}", i % 17), "amount_cents": i * 10 });
    (id, value.to_string().into_bytes())
}

/// The group's committed offset of each partition (-1 where none).
pub async fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        (0..partitions)
            .map(|p| match committed.find_partition(&topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect()
    })
    .await
    .expect("join")
}

/// The end offset (high watermark) of each partition.
pub async fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "faas-test-watermarks")
            .create()
            .expect("consumer");
        (0..partitions)
            .map(|p| consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).expect("watermarks").1)
            .collect()
    })
    .await
    .expect("join")
}

/// A record read back by [`read_all`].
#[derive(Debug)]
pub struct Consumed {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Consumed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the beginning until `count` records arrived (or 60 s passed).
pub async fn read_all(bootstrap: &str, topic: &str, count: usize) -> Vec<Consumed> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", format!("faas-test-reader-{}", uuid::Uuid::new_v4().simple()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while out.len() < count && std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Consumed {
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
        out
    })
    .await
    .expect("join")
}

/// Server flags for a Kafka-enabled `faas serve` against `bootstrap`.
pub fn serve_args(bootstrap: &str) -> Vec<String> {
    vec!["--kafka-brokers".into(), bootstrap.into(), "--kafka-session-timeout".into(), "6s".into()]
}

/// A data dir that outlives a restarted broker.
pub fn data_dir(root: &Path) -> PathBuf {
    root.join("kafka-data")
}

/// How many members the broker lists in `group`.
pub async fn group_members(bootstrap: &str, group: &str) -> usize {
    let (bootstrap, group) = (bootstrap.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("consumer");
        let groups = consumer.fetch_group_list(Some(&group), Duration::from_secs(10)).expect("group list");
        groups.groups().iter().filter(|g| g.name() == group).map(|g| g.members().len()).sum()
    })
    .await
    .expect("join")
}

/// Adds a `DENY WRITE` ACL on `topic` for every client of these tests (`User:ANONYMOUS`), or,
/// with `deny: false`, removes it again. Needs a broker started with [`STRICT`]. rdkafka has no
/// ACL API, so this calls librdkafka's.
pub async fn deny_writes(bootstrap: &str, topic: &str, deny: bool) {
    use rdkafka::bindings as rd;
    use std::ffi::{CStr, CString};
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin client");
        let rk = admin.inner().native_ptr();
        let name = CString::new(topic.as_str()).expect("topic");
        let (principal, host) = (c"User:ANONYMOUS", c"*");
        let mut errstr = [0 as std::ffi::c_char; 512];
        // SAFETY: every pointer handed to librdkafka is valid for the call (the CStrings and
        // `errstr` outlive it); the binding, queue and event are destroyed once, after use.
        unsafe {
            let mut acl = rd::rd_kafka_AclBinding_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
                rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
                principal.as_ptr(),
                host.as_ptr(),
                rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE,
                rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_DENY,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            assert!(!acl.is_null(), "ACL binding: {:?}", CStr::from_ptr(errstr.as_ptr()));
            let queue = rd::rd_kafka_queue_new(rk);
            if deny {
                rd::rd_kafka_CreateAcls(rk, &mut acl, 1, std::ptr::null(), queue);
            } else {
                rd::rd_kafka_DeleteAcls(rk, &mut acl, 1, std::ptr::null(), queue);
            }
            let event = rd::rd_kafka_queue_poll(queue, 30_000);
            assert!(!event.is_null(), "no answer to the ACL request within 30 s");
            let error = rd::rd_kafka_event_error(event);
            let text = CStr::from_ptr(rd::rd_kafka_event_error_string(event)).to_string_lossy().into_owned();
            let mut errors = Vec::new();
            let mut count = 0;
            if deny {
                let results =
                    rd::rd_kafka_CreateAcls_result_acls(rd::rd_kafka_event_CreateAcls_result(event), &mut count);
                for i in 0..count {
                    errors.push(rd::rd_kafka_acl_result_error(*results.add(i)));
                }
            } else {
                let results =
                    rd::rd_kafka_DeleteAcls_result_responses(rd::rd_kafka_event_DeleteAcls_result(event), &mut count);
                for i in 0..count {
                    errors.push(rd::rd_kafka_DeleteAcls_result_response_error(*results.add(i)));
                }
            }
            let errors: Vec<String> = errors
                .into_iter()
                .filter(|e| !e.is_null())
                .map(|e| CStr::from_ptr(rd::rd_kafka_error_string(e)).to_string_lossy().into_owned())
                .collect();
            rd::rd_kafka_event_destroy(event);
            rd::rd_kafka_queue_destroy(queue);
            rd::rd_kafka_AclBinding_destroy(acl);
            assert!(
                error == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && errors.is_empty(),
                "ACL request on {topic}: {text} {errors:?}"
            );
        }
    })
    .await
    .expect("join");
}
