//! Command line of gzac-portal-bridge. Everything else lives in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gzac_portal_bridge::config::Config;
use gzac_portal_bridge::tools::{demo, registry};
use gzac_portal_bridge::{bridge, schemas, topology};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Parser)]
#[command(name = "gzac-portal-bridge", version, about = "Exactly-once Kafka bridge between a citizen portal and GZAC")]
struct Cli {
    /// Configuration file (YAML), laid over the built-in defaults; see config.example.yaml.
    #[arg(long, global = true, env = "GZAC_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr: `human` (default) or `json` (one object per line, for log shippers).
    #[arg(long, global = true, env = "GZAC_BRIDGE_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
    /// With many municipalities (`gemeenten`): the one whose topics `tail`, `send` and `dlq` use.
    #[arg(long, global = true)]
    gemeente: Option<String>,
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
    /// The ACLs each role needs (from topics.yaml's roles).
    Acls {
        #[command(subcommand)]
        action: AclsAction,
    },
    /// Print a topic's committed records as JSON lines (key, partition, offset, headers, value).
    Tail {
        /// A contract topic name (the configured prefix is added).
        topic: String,
        /// beginning, end, or an RFC 3339 time.
        #[arg(long, default_value = "beginning")]
        from: gzac_portal_bridge::console::From,
        /// Keep printing new records (otherwise stop at the end).
        #[arg(long)]
        follow: bool,
        /// Only records with this key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Write JSON lines from stdin (`{"key": …, "value": {…}, "headers": {…}}`) to a topic, as Avro
    /// checked against its schema: all in one transaction, or nothing when a line is refused.
    Send { topic: String },
    /// Dead letters: counts per error class, and replay onto the input topic.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
        /// Whose consumer groups and transactional ids to use: the operator's (`operator.`) by
        /// default; `bridge` to replay the dead letters of the bridge's internal topics.
        #[arg(long, default_value = "operator")]
        role: String,
    },
    /// Print the AsyncAPI 3.0 document of the topic contract (committed as asyncapi.yaml).
    Asyncapi,
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
enum AclsAction {
    /// Print every ACL, per role; `--kafka-acls` prints the kafka-acls.sh commands instead.
    Plan {
        #[arg(long)]
        kafka_acls: bool,
        /// Only this role's.
        #[arg(long)]
        role: Option<String>,
    },
    /// Create them through the Admin API (run with a principal that may: a super user).
    Apply,
}

#[derive(Subcommand)]
enum DlqAction {
    /// Count the dead letters per error class, with the oldest and newest.
    List {
        /// An input topic (its `.dlq`); every input's when left out.
        topic: Option<String>,
    },
    /// Put dead letters back on their input topic (original key, value, headers), in one transaction.
    Replay {
        /// The input topic whose `.dlq` to replay.
        topic: String,
        /// Only this error class (`__connect.errors.exception.class.name`).
        #[arg(long)]
        class: Option<String>,
        /// Only dead letters written at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Say what would be replayed, write nothing.
        #[arg(long)]
        dry_run: bool,
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

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives during start-up is not lost (nor fatal).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Human => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    let cfg = || Config::load(cli.config.as_deref()).context("loading configuration");
    // One municipality's configuration, for the commands that read or write its topics.
    let one = || -> anyhow::Result<Config> { Ok(cfg()?.of_gemeente(cli.gemeente.as_deref())?) };
    match cli.command {
        Command::Run { health } => {
            let stop = shutdown_signal();
            let cfg = cfg()?;
            let running = bridge::start(&cfg)?;
            if let Some(addr) = health {
                let bound =
                    gzac_portal_bridge::health::serve(addr, running.stats.clone(), cfg.pipeline.stall_timeout).await?;
                tracing::info!(%bound, "serving /health, /ready and /metrics");
            }
            tokio::select! {
                _ = stop => tracing::info!("shutdown requested"),
                _ = running.wait_for_failure() => tracing::error!("a route stopped; shutting down"),
            }
            running.stop(cfg.shutdown_timeout()).await
        }
        Command::Demo { keep_running } => {
            let stop = shutdown_signal();
            if keep_running {
                // Ctrl-C ends the demo gracefully once the scenario has played.
                demo::run(true, stop).await
            } else {
                tokio::select! {
                    r = demo::run(false, std::future::pending()) => r,
                    _ = stop => {
                        eprintln!("demo interrupted");
                        Ok(())
                    }
                }
            }
        }
        Command::Topics { action: TopicsAction::Apply { dry_run, replication_factor } } => {
            let cfg = cfg()?;
            let topo = topology::Topology::load()?;
            let rf = replication_factor.unwrap_or(topo.defaults.replication_factor);
            // Every municipality's topics (each its own prefix).
            let mut wanted = Vec::new();
            for g in cfg.gemeenten()? {
                wanted.extend(topo.wanted(&g.cfg.topic_prefix)?);
            }
            let steps = topology::apply(&cfg.client_config(), &wanted, rf, dry_run).await?;
            for s in &steps {
                println!("{s}");
            }
            let drift = steps.iter().filter(|s| matches!(s, topology::Step::Drift { .. })).count();
            if drift > 0 {
                anyhow::bail!("{drift} topic setting(s) differ from topics.yaml");
            }
            Ok(())
        }
        Command::Acls { action } => {
            let cfg = cfg()?;
            let mut acls = gzac_portal_bridge::acls::plan(&cfg, &topology::Topology::load()?)?;
            match action {
                AclsAction::Plan { kafka_acls, role } => {
                    acls.retain(|a| role.as_ref().is_none_or(|r| &a.role == r));
                    for a in &acls {
                        if kafka_acls {
                            println!("{}", a.kafka_acls(&cfg.bootstrap_servers));
                        } else {
                            println!("{a}");
                        }
                    }
                }
                AclsAction::Apply => {
                    let client = cfg.client_config();
                    tokio::task::spawn_blocking(move || {
                        gzac_portal_bridge::acls::apply(&client, &acls, std::time::Duration::from_secs(30))
                    })
                    .await??;
                    println!("ACLs in place");
                }
            }
            Ok(())
        }
        Command::Dlq { action, role } => {
            let cfg = one()?.as_role(&role);
            match action {
                DlqAction::List { topic } => {
                    let rows =
                        tokio::task::spawn_blocking(move || gzac_portal_bridge::dlq::list(&cfg, topic.as_deref()))
                            .await??;
                    let time = |t: Option<i64>| {
                        t.map(|t| gzac_portal_bridge::model::Timestamp(t).rfc3339()).unwrap_or_default()
                    };
                    for (dlq, class, t) in rows {
                        println!("{dlq}\t{class}\t{}\toldest {}\tnewest {}", t.count, time(t.oldest), time(t.newest));
                    }
                }
                DlqAction::Replay { topic, class, since, dry_run } => {
                    let since = since
                        .map(|s| humantime::parse_rfc3339_weak(&s).map_err(|e| anyhow::anyhow!("--since: {e}")))
                        .transpose()?
                        .map(|t| {
                            gzac_portal_bridge::model::Timestamp(
                                t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64,
                            )
                        });
                    let t = topic.clone();
                    let done = tokio::task::spawn_blocking(move || {
                        gzac_portal_bridge::dlq::replay(&cfg, &t, class.as_deref(), since, dry_run)
                    })
                    .await??;
                    let verb = if dry_run { "would replay" } else { "replayed" };
                    println!(
                        "{verb} {} dead letter(s) onto {topic}; {} cut to fit and not replayable",
                        done.replayed, done.truncated
                    );
                }
            }
            Ok(())
        }
        Command::Asyncapi => {
            print!("{}", gzac_portal_bridge::asyncapi::yaml()?);
            Ok(())
        }
        Command::Tail { topic, from, follow, key } => {
            let cfg = one()?;
            let mut out = std::io::stdout().lock();
            gzac_portal_bridge::console::tail(&cfg, &topic, from, follow, key.as_deref(), &mut out).await?;
            Ok(())
        }
        Command::Send { topic } => {
            let cfg = one()?;
            let n = gzac_portal_bridge::console::send(&cfg, &topic, std::io::stdin().lock()).await?;
            eprintln!("{n} record(s) written to {topic}");
            Ok(())
        }
        Command::Schemas { action: SchemasAction::Register } => {
            let cfg = cfg()?;
            for g in cfg.gemeenten()? {
                for (subject, id) in schemas::register_all(&cfg.sr_settings()?, &g.cfg.topic_prefix).await? {
                    println!("{subject}\tid {id}");
                }
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
            let stop = shutdown_signal();
            let server = registry::Registry::new().serve(listen).await?;
            println!("schema registry listening on http://{}", server.addr);
            stop.await;
            server.stop().await;
            Ok(())
        }
        Command::Bench(args) => demo::bench(args, cfg()?).await,
    }
}
