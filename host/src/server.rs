//! [`run`]: wires store, engine, registry, invoker, triggers and workflows together, serves on
//! the listeners it is handed until `shutdown` resolves, then drains. [`serve`] binds the
//! configured addresses first; `main.rs` only parses the command line and calls that.

use crate::admin::{self, Admin};
use crate::capabilities::workflow_handle::workflow_channel;
use crate::capabilities::{Capabilities, EventLimits, EventNotifier};
use crate::config::ServeConfig;
use crate::kafka::{KafkaSettings, Publisher};
use crate::metrics::Metrics;
use crate::model::secrets::{KeySource, SecretKey};
use crate::registry::{Registry, follow_remote_changes};
use crate::runtime::engine::{CompileCache, EpochTicker, PoolSize, build_baseline_engine, build_engine};
use crate::runtime::invoker::Invoker;
use crate::store;
use crate::triggers::http::{DataPlane, Http};
use crate::triggers::kafka::Kafka;
use crate::triggers::leases::Leases;
use crate::triggers::queue::{AsyncQueue, QueueSettings};
use crate::triggers::schedules::Scheduler;
use crate::triggers::subscriptions::{Subscriptions, listen_for_remote_appends};
use crate::triggers::{self, Trigger};
use crate::workflows::{self, Liveness, Workflows};
use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The two listeners a server answers on.
pub struct Listeners {
    /// The data plane: functions' routes.
    pub data: TcpListener,
    /// The control plane: the API, metrics, health.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses `config` names.
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        let data = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let admin =
            TcpListener::bind(config.admin_listen).await.with_context(|| format!("binding {}", config.admin_listen))?;
        Ok(Self { data, admin })
    }
}

/// Binds the configured addresses and [`run`]s.
pub async fn serve(config: ServeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    check_admin_exposure(&config, config.admin_listen)?;
    let listeners = Listeners::bind(&config).await?;
    run(config, listeners, shutdown).await
}

/// Serves on `listeners` until `shutdown` resolves, then drains: the data plane finishes its
/// requests, subscriptions and Kafka triggers the batches in hand, saga runners and 2PC
/// coordinators the work in hand; the control plane answers until the end.
pub async fn run(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let admin_addr = listeners.admin.local_addr()?;
    let data_addr = listeners.data.local_addr()?;
    check_admin_exposure(&config, admin_addr)?;
    let token = config.admin_token.clone().filter(|t| !t.is_empty());
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let database_url = config.database_url.clone().unwrap_or_else(|| store::default_url(&config.data_dir));
    let stores = store::open(&database_url).await.context("opening the database")?;
    let secret_key = Arc::new(open_secret_key(&config, &stores).await?);

    let engine = build_engine(PoolSize { instances: config.max_instances })?;
    let _ticker = EpochTicker::start(engine.clone());
    let baseline = if config.tiered_compilation { Some(build_baseline_engine()?) } else { None };
    let _baseline_ticker = baseline.clone().map(EpochTicker::start);
    let metrics = Metrics::new();
    let notifier = EventNotifier::new();
    let event_limits = EventLimits {
        max_event_bytes: usize::try_from(config.max_event_size).unwrap_or(usize::MAX),
        max_events_per_append: config.max_events_per_append as usize,
    };
    let kafka_settings = config
        .kafka_brokers
        .clone()
        .filter(|b| !b.trim().is_empty())
        .map(|brokers| KafkaSettings { brokers, session_timeout: config.kafka_session_timeout });
    let publisher = match &kafka_settings {
        Some(settings) => {
            Some(Arc::new(Publisher::new(settings, metrics.clone()).context("configuring the Kafka producer")?))
        }
        None => None,
    };
    // The engines run functions, so they come after the invoker; guests reach them through
    // this channel, served once the engines have resumed this node's own work.
    let (workflow_handle, workflow_calls) = workflow_channel();
    let capabilities = Arc::new(
        Capabilities::new(stores.clone(), notifier.clone(), event_limits, workflow_handle)
            .with_kafka(publisher.clone(), metrics.clone()),
    );
    let mut invoker = Invoker::new(&engine, metrics.clone(), capabilities)?;
    let cache_dir = config.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("cache"));
    let mut cache = CompileCache::new(engine, &cache_dir)?;
    if let Some(baseline) = baseline {
        invoker = invoker.with_baseline(&baseline)?;
        cache = cache.with_baseline(baseline);
    }
    let invoker = Arc::new(invoker);
    let max_component_bytes = usize::try_from(config.max_component_size).context("max component size")?;
    let registry = Arc::new(
        Registry::open(stores.functions.clone(), cache, invoker.clone(), max_component_bytes, secret_key)
            .await?
            .with_kafka(kafka_settings.is_some())
            .with_tier_up_delay(config.tier_up_delay),
    );
    let kafka = match (kafka_settings, publisher) {
        (Some(settings), Some(publisher)) => {
            Some(Kafka::new(settings, registry.clone(), invoker.clone(), publisher, metrics.clone()))
        }
        _ => {
            warn_orphaned_kafka_triggers(&registry);
            None
        }
    };
    let node = workflows::node_id(&config.data_dir).context("reading the node id")?;
    // The lease time is the node timeout: a node silent that long loses its sagas and its
    // subscriptions alike.
    let leases = Leases::new(stores.leases.clone(), node.clone(), config.node_timeout, metrics.clone());
    let subscriptions = Subscriptions::new(
        registry.clone(),
        invoker.clone(),
        stores.clone(),
        notifier.clone(),
        kafka.as_ref().map(|k| k.publisher().clone()),
        leases.clone(),
    );
    let queue = AsyncQueue::new(
        stores.invocations.clone(),
        registry.clone(),
        invoker.clone(),
        metrics.clone(),
        node.clone(),
        QueueSettings {
            concurrency: config.async_concurrency,
            retention: config.async_retention,
            ..QueueSettings::default()
        },
    );
    let scheduler =
        Scheduler::new(stores.schedules.clone(), registry.clone(), invoker.clone(), metrics.clone(), node.clone());
    let liveness = Liveness { node_timeout: config.node_timeout, sweep_every: config.recovery_interval };
    let workflows = Arc::new(
        Workflows::new(stores.workflows.clone(), registry.clone(), invoker.clone(), metrics.clone(), node, liveness)
            .advertising(advertised_admin_url(&config, admin_addr)?),
    );
    // Before any trigger takes work: what this node owned before a restart is resumed first,
    // so it is never confused with work started by this process.
    let workflow_tasks = workflows.start(workflow_calls).await.context("resuming sagas and transactions")?;
    let lease_keeper = leases.start().await.context("taking up subscription leases")?;
    let queue_tasks = queue.start().await.context("resuming async invocations")?;
    let scheduler_task = scheduler.start().await.context("starting schedules")?;
    let remote_appends = stores.postgres_url.clone().map(|url| listen_for_remote_appends(url, notifier));
    let remote_deploys = stores.postgres_url.clone().map(|url| follow_remote_changes(url, registry.clone()));

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let http = Http::serve(
        listeners.data,
        Arc::new(DataPlane { registry: registry.clone(), invoker, metrics: metrics.clone(), queue: queue.clone() }),
    );
    let mut triggers: Vec<Arc<dyn Trigger>> = vec![http, subscriptions.clone(), queue.clone(), scheduler.clone()];
    if let Some(kafka) = &kafka {
        triggers.push(kafka.clone());
    }
    let trigger_tasks: Vec<_> =
        triggers.into_iter().map(|trigger| triggers::run(trigger, &registry, stopping.clone())).collect();
    let admin = admin::router(Arc::new(Admin {
        registry,
        metrics,
        token,
        subscriptions,
        stores,
        workflows: workflows.clone(),
        kafka,
        leases: leases.clone(),
        queue,
        scheduler,
    }));
    let admin_server = {
        let mut stopping = stopping.clone();
        axum::serve(listeners.admin, admin).with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
    };

    tracing::info!(data = %data_addr, admin = %admin_addr, database = %redact(&database_url), "faas serving");
    // One machine-readable line on stdout, so scripts and tests learn the bound ports.
    println!("faas ready data=http://{data_addr} admin=http://{admin_addr}");
    std::io::stdout().flush().ok();

    let draining = async move {
        shutdown.await;
        tracing::info!("shutting down: draining triggers");
        let _ = stop.send(true);
        futures::future::join_all(trigger_tasks).await;
        // Subscriptions and outboxes stopped with their checkpoints saved: other nodes may
        // take them over now rather than after the lease time.
        lease_keeper.abort();
        leases.release_all().await;
        workflows.drain(WORKFLOW_DRAIN_GRACE).await;
    };
    let (admin_result, ()) = tokio::join!(admin_server.into_future(), draining);
    workflow_tasks.iter().chain(&queue_tasks).chain([&scheduler_task]).for_each(|task| task.abort());
    for task in remote_appends.into_iter().chain(remote_deploys) {
        task.abort();
    }
    admin_result.context("control plane")?;
    tracing::info!("faas stopped");
    Ok(())
}

/// How long saga runners and coordinators get to finish the work in hand at shutdown.
const WORKFLOW_DRAIN_GRACE: Duration = Duration::from_secs(10);

/// The control plane needs a token unless only this machine can reach it.
/// The master key for secrets (`FAAS_SECRET_KEY`, else the data dir's key file, created on first
/// start), checked against the token the database's first node stored: a node with another key
/// refuses to start rather than fail on every secret.
/// Where the other nodes reach this one's control plane: `--advertise-admin-url`, or the admin
/// listener's own address when it names one (not `0.0.0.0` or `::`).
fn advertised_admin_url(config: &ServeConfig, admin: std::net::SocketAddr) -> anyhow::Result<Option<String>> {
    Ok(match &config.advertise_admin_url {
        Some(url) => {
            let parsed: Result<http::Uri, _> = url.parse();
            if !parsed.is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()) {
                bail!("--advertise-admin-url `{url}` is not an http:// or https:// URL");
            }
            Some(url.trim_end_matches('/').to_owned())
        }
        None if admin.ip().is_unspecified() => {
            tracing::info!(%admin, "the admin listener names no address: other nodes cannot gather this node's logs (set --advertise-admin-url)");
            None
        }
        None => Some(format!("http://{admin}")),
    })
}

async fn open_secret_key(config: &ServeConfig, stores: &store::Stores) -> anyhow::Result<SecretKey> {
    let (key, source) = SecretKey::load(config.secret_key.as_deref(), &config.data_dir)?;
    match &source {
        KeySource::Env => tracing::info!("secret key from FAAS_SECRET_KEY"),
        KeySource::File(path) => tracing::info!(path = %path.display(), "secret key from file"),
        KeySource::Created(path) => tracing::warn!(path = %path.display(),
            "created a new secret key file (mode 0600); back it up, or set FAAS_SECRET_KEY on every node"),
    }
    let token = stores.functions.secret_key_check(&key.check_token()).await.context("reading the secret key check")?;
    key.verify(&token)?;
    Ok(key)
}

fn check_admin_exposure(config: &ServeConfig, admin: std::net::SocketAddr) -> anyhow::Result<()> {
    let token = config.admin_token.as_deref().filter(|t| !t.is_empty());
    if token.is_none() && !admin.ip().is_loopback() {
        bail!(
            "refusing to serve the control plane on non-loopback address {admin} without a token: set FAAS_ADMIN_TOKEN"
        );
    }
    Ok(())
}

fn warn_orphaned_kafka_triggers(registry: &Registry) {
    let orphaned: Vec<String> =
        registry.all_active().iter().filter(|f| f.spec.triggers.kafka.is_some()).map(|f| f.name.to_string()).collect();
    if !orphaned.is_empty() {
        tracing::warn!(functions = ?orphaned, "these functions have Kafka triggers, but no --kafka-brokers is set: they consume nothing");
    }
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
