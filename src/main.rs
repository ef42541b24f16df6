//! Command line of gzac-portal-bridge. Everything else lives in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gzac_portal_bridge::config::Config;
use gzac_portal_bridge::{bridge, demo, registry, schemas, topology};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "gzac-portal-bridge", version, about = "Exactly-once Kafka bridge between a citizen portal and GZAC")]
struct Cli {
    /// Configuration file (YAML), laid over the built-in defaults; see config.example.yaml.
    #[arg(long, global = true, env = "GZAC_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every route until SIGTERM/SIGINT.
    Run {
        /// Serve /health, /ready and /metrics on this address (e.g. 0.0.0.0:9464).
        #[arg(long, env = "GZAC_BRIDGE_HEALTH")]
        health: Option<SocketAddr>,
    },
    /// The demo: embedded broker and registry, a scripted scenario through every route.
    Demo {
        /// Keep the embedded broker, registry and bridge running after the scenario.
        #[arg(long)]
        keep_running: bool,
    },
    /// Create or verify the topics of topics.yaml.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Avro schemas of schemas/.
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Run the project's Confluent-compatible schema registry (in memory).
    Registry {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
    /// Throughput of the Verzoek route against a raw byte-copy passthrough on the same broker.
    Bench(demo::BenchArgs),
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create missing topics; report drift on existing ones.
    Apply {
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
        /// Replication factor of new topics (topics.yaml's default otherwise).
        #[arg(long)]
        replication_factor: Option<i32>,
    },
}

#[derive(Subcommand)]
enum SchemasAction {
    /// Register every schema under its topics' subjects in the configured registry.
    Register,
    /// Write schemas/*.avsc from the Rust types (after changing a type).
    Export {
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let cfg = || Config::load(cli.config.as_deref()).context("loading configuration");
    match cli.command {
        Command::Run { health } => {
            let cfg = cfg()?;
            let running = bridge::start(&cfg)?;
            if let Some(addr) = health {
                let bound = gzac_portal_bridge::health::serve(addr, running.stats.clone()).await?;
                tracing::info!(%bound, "serving /health, /ready and /metrics");
            }
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("shutdown requested"),
                _ = running.wait_for_failure() => tracing::error!("a route stopped; shutting down"),
            }
            running.stop(cfg.pipeline.shutdown_timeout).await
        }
        Command::Demo { keep_running } => demo::run(keep_running, shutdown_signal()).await,
        Command::Topics { action: TopicsAction::Apply { dry_run, replication_factor } } => {
            let cfg = cfg()?;
            let topo = topology::Topology::load()?;
            let rf = replication_factor.unwrap_or(topo.defaults.replication_factor);
            let steps = topology::apply(&cfg.client_config(), &topo.wanted(&cfg.topic_prefix)?, rf, dry_run).await?;
            for s in &steps {
                println!("{s}");
            }
            let drift = steps.iter().filter(|s| matches!(s, topology::Step::Drift { .. })).count();
            if drift > 0 {
                anyhow::bail!("{drift} topic setting(s) differ from topics.yaml");
            }
            Ok(())
        }
        Command::Schemas { action: SchemasAction::Register } => {
            let cfg = cfg()?;
            for (subject, id) in schemas::register_all(&cfg.sr_settings()?, &cfg.topic_prefix).await? {
                println!("{subject}\tid {id}");
            }
            Ok(())
        }
        Command::Schemas { action: SchemasAction::Export { dir } } => {
            for p in schemas::export(&dir)? {
                println!("{}", p.display());
            }
            Ok(())
        }
        Command::Registry { listen } => {
            let server = registry::Registry::new().serve(listen).await?;
            println!("schema registry listening on http://{}", server.addr);
            shutdown_signal().await;
            server.stop().await;
            Ok(())
        }
        Command::Bench(args) => demo::bench(args, cfg()?).await,
    }
}
