//! `faas`: the server (`faas serve`) and the CLI for its control plane. Parsing only; the work
//! is in the library.

use clap::{Parser, Subcommand};
use faas_host::client::{self, Client, DeployArgs, Remote};
use faas_host::config::{LogFormat, ServeConfig};
use faas_host::server;
use faas_host::telemetry::Exporter;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "faas", version, about = "A WebAssembly function platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: data plane, control plane, and every deployed function.
    Serve(ServeConfig),
    /// Deploy a component as a new version of a function and activate it.
    Deploy {
        // Boxed: the many deploy flags would make every other command as large.
        #[command(flatten)]
        args: Box<DeployArgs>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List functions.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a function: versions, active version, routes, limits, size, sha256.
    Get {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Activate an older version.
    Rollback {
        name: String,
        version: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// A function's variables and secrets, changed without a redeploy.
    Config {
        #[command(subcommand)]
        command: client::config::ConfigCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// A function's event subscriptions: status, and a reset (a projection rebuild).
    Subscription {
        #[command(subcommand)]
        command: client::SubscriptionCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Async invocations: queue one, list them (the dead letters with `--status dead`), show
    /// one, replay a dead one.
    Invocations {
        #[command(subcommand)]
        command: client::InvocationCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// A function's schedules: the next planned ticks and the last runs with their outcome.
    Schedule {
        function: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// The nodes sharing this database: heartbeat age and the leases each holds.
    Nodes {
        #[command(flatten)]
        remote: Remote,
    },
    /// Seal every stored secret under a new master key (run with every node stopped).
    RotateSecretKey(faas_host::secret_rotation::RotateArgs),
    /// A function's guest output, invocation records and host warnings (`-f` to follow).
    Logs {
        #[command(flatten)]
        args: client::logs::LogsArgs,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write a new function crate from a template (`faas new --list` shows them).
    New(faas_host::client::scaffold::NewArgs),
    /// Delete a function and all its versions.
    Delete {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => match init_logging(&config) {
            Ok(traces) => {
                let served = server::serve(config, server::shutdown_signal()).await;
                if let Some(traces) = traces {
                    traces.shutdown().await;
                }
                served
            }
            Err(error) => Err(error.into()),
        },
        Command::Deploy { args, remote } => Client::new(remote).deploy(*args).await.map(|v| print_json(&v)),
        Command::List { remote } => {
            Client::new(remote).list().await.and_then(|v| client::format_list(&v)).map(|table| print!("{table}"))
        }
        Command::Get { name, remote } => Client::new(remote).get(&name).await.map(|v| print_json(&v)),
        Command::Rollback { name, version, remote } => {
            Client::new(remote).rollback(&name, version).await.map(|v| print_json(&v))
        }
        Command::Config { command, remote } => Client::new(remote).config(command).await.map(|v| print_json(&v)),
        Command::Subscription { command, remote } => {
            Client::new(remote).subscription(command).await.map(|v| print_json(&v))
        }
        Command::Invocations { command, remote } => {
            Client::new(remote).invocations(command).await.map(|v| print_json(&v))
        }
        Command::Schedule { function, remote } => Client::new(remote).schedule(&function).await.map(|v| print_json(&v)),
        Command::Nodes { remote } => Client::new(remote).nodes().await.map(|v| print_json(&v)),
        Command::Logs { args, remote } => Client::new(remote).logs(&args).await,
        Command::New(args) if args.list => {
            print!("{}", faas_host::client::scaffold::list());
            Ok(())
        }
        Command::New(args) => faas_host::client::scaffold::create(&args).map(|next| print!("{next}")),
        Command::RotateSecretKey(args) => faas_host::secret_rotation::rotate(args).await.map(|m| println!("{m}")),
        Command::Delete { name, remote } => {
            Client::new(remote).delete(&name).await.map(|()| println!("deleted {name}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// Logs on stderr, and traces to the OTLP collector when one is configured (its exporter is
/// returned, to flush at exit).
fn init_logging(config: &ServeConfig) -> Result<Option<Exporter>, faas_host::telemetry::ExporterError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::try_from_env("FAAS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let fmt = match config.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let (exporter, traces) = match config.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            let (exporter, layer) = Exporter::start(endpoint)?;
            (Some(exporter), Some(layer))
        }
        None => (None, None),
    };
    // The filter is global (see function_logs on why not per layer); the capture layer adds the
    // host's warnings about a function to what `faas logs` shows.
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(faas_host::function_logs::CaptureLayer)
        .with(traces)
        .init();
    Ok(exporter)
}
