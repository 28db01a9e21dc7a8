//! [`run`]: wires store, engine, registry, invoker and both listeners together and serves until
//! `shutdown` resolves. `main.rs` only parses the command line and calls this.

use crate::admin::{self, Admin};
use crate::capabilities::{Capabilities, EventLimits, EventNotifier};
use crate::config::ServeConfig;
use crate::data_plane::{self, DataPlane};
use crate::engine::{CompileCache, EpochTicker, PoolSize, build_engine};
use crate::invoker::Invoker;
use crate::kafka::{Kafka, KafkaSettings, Publisher};
use crate::metrics::Metrics;
use crate::registry::{Registry, follow_remote_changes};
use crate::store;
use crate::subscriptions::{Subscriptions, listen_for_remote_appends};
use crate::workflows::{self, Liveness, Workflows};
use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn run(config: ServeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let token = config.admin_token.clone().filter(|t| !t.is_empty());
    if token.is_none() && !config.admin_listen.ip().is_loopback() {
        bail!(
            "refusing to serve the control plane on non-loopback address {} without a token: set FAAS_ADMIN_TOKEN",
            config.admin_listen
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let database_url = config.database_url.clone().unwrap_or_else(|| store::default_url(&config.data_dir));
    let stores = store::open(&database_url).await.context("opening the database")?;

    let engine = build_engine(PoolSize { instances: config.max_instances })?;
    let _ticker = EpochTicker::start(engine.clone());
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
    let capabilities = Arc::new(
        Capabilities::new(stores.clone(), notifier.clone(), event_limits)
            .with_kafka(publisher.clone(), metrics.clone()),
    );
    let invoker = Arc::new(Invoker::new(&engine, metrics.clone(), capabilities.clone())?);
    let cache_dir = config.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("cache"));
    let cache = CompileCache::new(engine, &cache_dir)?;
    let max_component_bytes = usize::try_from(config.max_component_size).context("max component size")?;
    let registry = Arc::new(
        Registry::open(stores.functions.clone(), cache, invoker.clone(), max_component_bytes)
            .await?
            .with_kafka(kafka_settings.is_some()),
    );
    let kafka = match (kafka_settings, publisher) {
        (Some(settings), Some(publisher)) => {
            Some(Kafka::new(settings, registry.clone(), invoker.clone(), publisher, metrics.clone()))
        }
        _ => {
            let orphaned: Vec<String> = registry
                .all_active()
                .iter()
                .filter(|f| f.spec.triggers.kafka.is_some())
                .map(|f| f.name.to_string())
                .collect();
            if !orphaned.is_empty() {
                tracing::warn!(functions = ?orphaned, "these functions have Kafka triggers, but no --kafka-brokers is set: they consume nothing");
            }
            None
        }
    };
    let subscriptions = Subscriptions::new(
        registry.clone(),
        invoker.clone(),
        stores.clone(),
        notifier.clone(),
        kafka.as_ref().map(|k| k.publisher().clone()),
    );
    let node = workflows::node_id(&config.data_dir).context("reading the node id")?;
    let liveness = Liveness { node_timeout: config.node_timeout, sweep_every: config.recovery_interval };
    let workflows = Arc::new(Workflows::new(
        stores.workflows.clone(),
        registry.clone(),
        invoker.clone(),
        metrics.clone(),
        node,
        liveness,
    ));
    let _ = capabilities.workflows.set(workflows.clone());
    // Before either listener accepts work: what this node owned before a restart is resumed
    // first, so it is never confused with work started by this process.
    let workflow_tasks = workflows.start().await.context("resuming sagas and transactions")?;
    let kafka_tasks = kafka.as_ref().map(Kafka::start);
    let subscription_tasks = subscriptions.start();
    let remote_appends = stores.postgres_url.clone().map(|url| listen_for_remote_appends(url, notifier));
    let remote_deploys = stores.postgres_url.clone().map(|url| follow_remote_changes(url, registry.clone()));

    let data_listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let admin_listener =
        TcpListener::bind(config.admin_listen).await.with_context(|| format!("binding {}", config.admin_listen))?;
    let data_addr = data_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let data =
        data_plane::router(Arc::new(DataPlane { registry: registry.clone(), invoker, metrics: metrics.clone() }));
    let admin = admin::router(Arc::new(Admin {
        registry,
        metrics,
        token,
        subscriptions,
        stores,
        workflows,
        kafka: kafka.clone(),
    }));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let data_server = axum::serve(data_listener, data).with_graceful_shutdown(stopped(stop_rx.clone()));
    let stop_rx_kafka = stop_rx.clone();
    let admin_server = axum::serve(admin_listener, admin).with_graceful_shutdown(stopped(stop_rx));

    tracing::info!(data = %data_addr, admin = %admin_addr, database = %redact(&database_url), "faas serving");
    // One machine-readable line on stdout, so scripts and tests learn the bound ports.
    println!("faas ready data=http://{data_addr} admin=http://{admin_addr}");
    std::io::stdout().flush().ok();

    // Kafka drains alongside the HTTP servers: stop fetching, finish or abandon in-flight
    // batches, commit, leave the groups.
    let kafka_drain = {
        let (kafka, stopped) = (kafka.clone(), stopped(stop_rx_kafka));
        async move {
            stopped.await;
            if let Some(kafka) = kafka {
                kafka.shutdown().await;
            }
        }
    };
    let (data_result, admin_result, ()) =
        tokio::join!(data_server.into_future(), admin_server.into_future(), kafka_drain);
    kafka_tasks.into_iter().for_each(|task| task.abort());
    subscription_tasks.abort();
    workflow_tasks.iter().for_each(|task| task.abort());
    for task in remote_appends.into_iter().chain(remote_deploys) {
        task.abort();
    }
    data_result.context("data plane")?;
    admin_result.context("control plane")?;
    tracing::info!("faas stopped");
    Ok(())
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
    tracing::info!("shutting down: finishing in-flight requests");
}
