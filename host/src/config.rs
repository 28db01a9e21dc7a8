//! [`ServeConfig`]: the flags of `faas serve`, each also an environment variable `FAAS_*`.

use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address of the data plane, where functions are invoked.
    #[arg(long, env = "FAAS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the control plane (deploy API, metrics, health).
    #[arg(long, env = "FAAS_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,

    /// Where the embedded database and the compile cache live.
    #[arg(long, env = "FAAS_DATA_DIR", default_value = "./.faas")]
    pub data_dir: PathBuf,

    /// Where compiled components are cached (`Component::serialize`); default `<data-dir>/cache`.
    /// Entries are keyed by the component's sha256 and the engine's settings and written
    /// atomically, so several processes may share one directory.
    #[arg(long, env = "FAAS_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// `postgres://…` for PostgreSQL; default: SQLite at `<data-dir>/faas.db`.
    #[arg(long, env = "FAAS_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Bearer token every control-plane call must carry. Required unless the admin listener is
    /// on a loopback address.
    #[arg(long, env = "FAAS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The master key sealing functions' secrets at rest: 32 bytes as base64 or 64 hex digits
    /// (`openssl rand -base64 32`). Without it, `<data-dir>/secret.key` (created with mode 0600 on
    /// first start). Nodes sharing a PostgreSQL database must share the key.
    #[arg(long, env = "FAAS_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Largest component a deploy accepts, e.g. 50MiB.
    #[arg(long, env = "FAAS_MAX_COMPONENT_SIZE", default_value = "50MiB", value_parser = crate::model::limits::parse_bytes)]
    pub max_component_size: u64,

    /// Component instances alive at once across all functions (the pooling allocator's size).
    #[arg(long, env = "FAAS_MAX_INSTANCES", default_value_t = 1000)]
    pub max_instances: u32,

    /// Start a new deploy on code from Winch, wasmtime's baseline compiler (several times faster
    /// to compile), and swap in Cranelift's optimised build once it is ready in the background.
    /// `false` compiles with Cranelift before the deploy answers.
    #[arg(long, env = "FAAS_TIERED_COMPILATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub tiered_compilation: bool,

    /// Tests only: wait this long before the background Cranelift compile of a tiered deploy.
    #[arg(long, env = "FAAS_TIER_UP_DELAY", default_value = "0s", value_parser = crate::model::limits::parse_duration, hide = true)]
    pub tier_up_delay: std::time::Duration,

    /// Largest event an append accepts (data + metadata), e.g. 1MiB.
    #[arg(long, env = "FAAS_MAX_EVENT_SIZE", default_value = "1MiB", value_parser = crate::model::limits::parse_bytes)]
    pub max_event_size: u64,

    /// Most events one append may carry.
    #[arg(long, env = "FAAS_MAX_EVENTS_PER_APPEND", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_events_per_append: u32,

    /// Kafka bootstrap servers (`host:port,…`). Without them, Kafka triggers cannot be deployed
    /// and `kafka-out` publishing answers `unavailable`.
    #[arg(long, env = "FAAS_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// How long a Kafka consumer group waits for a silent node before giving its partitions to
    /// the others (the broker accepts 6s-5min by default).
    #[arg(long, env = "FAAS_KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = crate::model::limits::parse_duration)]
    pub kafka_session_timeout: std::time::Duration,

    /// How long a node may be silent (no heartbeat in the database) before other nodes take
    /// over its sagas and transactions. Shorter: faster takeover; too short: a node busy past
    /// it loses its work (safely: its writes are fenced) and the work moves needlessly.
    #[arg(long, env = "FAAS_NODE_TIMEOUT", default_value = "10s", value_parser = crate::model::limits::parse_duration)]
    pub node_timeout: std::time::Duration,

    /// How often each node looks for sagas and transactions of dead nodes to take over.
    #[arg(long, env = "FAAS_RECOVERY_INTERVAL", default_value = "5s", value_parser = crate::model::limits::parse_duration)]
    pub recovery_interval: std::time::Duration,

    /// Async invocations this node runs at once (across functions; each function's own
    /// concurrency limit still applies).
    #[arg(long, env = "FAAS_ASYNC_CONCURRENCY", default_value_t = 64)]
    pub async_concurrency: usize,

    /// How long finished async invocations (their responses, and dead letters) are kept.
    #[arg(long, env = "FAAS_ASYNC_RETENTION", default_value = "7d", value_parser = crate::model::limits::parse_duration)]
    pub async_retention: std::time::Duration,

    /// The URL other nodes reach this node's control plane at, e.g. `http://10.0.0.5:8081`
    /// (they gather its logs for `faas logs`). Default: the admin listener's address, unless it
    /// listens on all interfaces (`0.0.0.0`), which names no address to reach.
    #[arg(long, env = "FAAS_ADVERTISE_ADMIN_URL")]
    pub advertise_admin_url: Option<String>,

    /// Export traces over OTLP/HTTP (protobuf) to this collector, e.g. `http://127.0.0.1:4318`
    /// (`/v1/traces` is appended). A span per invocation, per append, publish and saga start,
    /// per saga step and per Kafka batch; W3C `traceparent` is taken from incoming requests and
    /// records and passed on. `OTEL_SERVICE_NAME` and `OTEL_BSP_*` are honoured. Off by default.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Log format on stderr.
    #[arg(long, env = "FAAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
