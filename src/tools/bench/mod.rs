//! `gzac-portal-bridge bench`: every route against a passthrough with the same fan-out, on the
//! same broker with the same transaction settings, in one run.
//!
//! A route here is what the bridge runs for one pattern, all its stages (repartitioning, the route,
//! delivery of notificaties). Its passthrough is a chain of byte-copy stages, as many as the
//! route has, each writing as many records per input as the route's stage wrote (outputs and
//! changelog records, counted in the same run), on topics with the same partition counts.
//! Throughput: a backlog of inputs is written first, then the stages drain it; the rate is taken
//! from the final records' own timestamps (group join and start-up are not in it). CPU per
//! input: the process's CPU time from the first final record to the last, per input. Latency:
//! inputs at a fixed rate, each carrying its send time in its `traceparent`, which every stage
//! passes on; an input's latency is until the last of its final records is readable by a
//! `read_committed` consumer.

mod cases;
mod gemeenten;
mod measure;
mod scale;

use crate::config::Config;
use crate::tools::registry::Registry;
use crate::{schemas, topology};
pub use cases::Kind;
use measure::{Figures, Latency};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Inputs per route (and per passthrough) in the throughput phase.
    #[arg(long, default_value_t = 10_000)]
    pub records: usize,
    /// The routes to bench (all by default).
    #[arg(long, value_delimiter = ',')]
    pub routes: Vec<Kind>,
    /// Replication factor of the benchmark's topics.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Input rate of the latency phase (records/s); 0 skips it.
    #[arg(long, default_value_t = 1000)]
    pub latency_rate: usize,
    /// Length of the latency phase.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub latency_for: Duration,
    /// Instead: the cost of what the bridge holds, for these numbers of open taken (no broker):
    /// memory, a tick with nothing due, a tick with one due. E.g. `--scale 10000,100000,1000000`.
    #[arg(long, value_delimiter = ',')]
    pub scale: Vec<usize>,
    /// Instead: start the whole bridge on fresh topics, report the time until every route is
    /// ready, then its CPU use while idle for this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle: Option<Duration>,
    /// With `--idle`: first put this many open taken in the taak route's changelog, so the start
    /// restores them (restart to ready, memory and idle CPU with that much held).
    #[arg(long, default_value_t = 0)]
    pub held: usize,
    /// Instead: the whole bridge serving this many municipalities (`--records` verzoeken spread
    /// over them): start to ready, threads, memory, verzoeken/s, idle CPU.
    #[arg(long)]
    pub gemeenten: Option<usize>,
}

/// Resident memory of this process (bytes), from /proc.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub async fn bench(args: BenchArgs, mut cfg: Config) -> anyhow::Result<()> {
    if !args.scale.is_empty() {
        for n in &args.scale {
            tokio::task::block_in_place(|| scale::scale(*n))?;
        }
        return Ok(());
    }
    let kinds = if args.routes.is_empty() { Kind::ALL.to_vec() } else { args.routes.clone() };
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    cfg.topic_prefix = format!("bench-{run_id}.");
    cfg.group_id = format!("bench-{run_id}");
    cfg.state_encryption.unsealed = true;
    let registry = Registry::new();
    let server = registry.serve("127.0.0.1:0".parse()?).await?;
    cfg.registry.url = format!("http://{}", server.addr);
    if let Some(n) = args.gemeenten {
        return gemeenten::gemeenten(cfg, n.max(1), args.records).await;
    }

    let mut wanted = topology::Topology::load()?.wanted(&cfg.topic_prefix)?;
    for kind in &kinds {
        wanted.extend(cases::passthrough_topics(&cfg, *kind, &wanted));
    }
    topology::apply(&cfg.client_config(), &wanted, args.replication_factor, false).await?;
    let ids = schemas::register_all(&cfg.sr_settings()?, &cfg.topic_prefix).await?;
    let started = Instant::now();
    println!(
        "broker {} · batch {} records / {:?} · {} inputs per route; latency at {}/s for {:?}",
        cfg.bootstrap_servers,
        cfg.pipeline.batch_max_records,
        cfg.pipeline.batch_max_interval,
        args.records,
        args.latency_rate,
        args.latency_for
    );
    if let Some(window) = args.idle {
        return idle(&cfg, window, args.held).await;
    }
    let mut rows = Vec::new();
    for kind in kinds {
        let (route, passthrough) = measure::route_and_passthrough(&cfg, &ids, kind, &args).await?;
        println!("{}", row(kind.name(), &route));
        println!("{}", row(&format!("  passthrough ×{}", passthrough.fanout_text), &passthrough));
        rows.push((kind, route, passthrough));
    }
    println!("\n{:<24} {:>10} {:>12} {:>10} {:>10}", "route", "inputs/s", "vs same-fan-out", "µs CPU/in", "p99 ms");
    for (kind, r, p) in &rows {
        println!(
            "{:<24} {:>10.0} {:>11.0}% {:>10.1} {:>10}",
            kind.name(),
            r.rate(),
            100.0 * r.rate() / p.rate(),
            r.cpu_us_per_input,
            r.latency.as_ref().map_or("-".into(), |l| l.p99.to_string())
        );
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS of this process (bridge + bench client): {rss:.0} MiB");
    }
    println!("total wall time {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The whole bridge, idle: time from start until every route is ready, then CPU per second.
async fn idle(cfg: &Config, window: Duration, held: usize) -> anyhow::Result<()> {
    if held > 0 {
        scale::hold(cfg, held).await?;
    }
    let before = rss();
    let started = Instant::now();
    let running = crate::bridge::start(cfg)?;
    // Ready: every route and table says so, and the taak route has restored what it holds.
    let restored = |name: &str, s: &crate::health::Stats| {
        name != "taak" || s.rows.load(std::sync::atomic::Ordering::SeqCst) >= held as i64
    };
    while !running.stats.iter().all(|(n, s)| s.not_ready().is_none() && restored(n, s)) {
        anyhow::ensure!(running.healthy(), "a route stopped while starting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = started.elapsed();
    let memory = rss().saturating_sub(before) as f64 / (1 << 20) as f64;
    // Let group joins and first fetches settle before measuring.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu0 = measure::cpu_us();
    tokio::time::sleep(window).await;
    let cpu = measure::cpu_us().saturating_sub(cpu0) as f64 / window.as_secs_f64() / 1e6;
    running.stop(cfg.shutdown_timeout()).await?;
    println!("held {held}: start to ready (every route and table, state restored) {:.2} s", ready.as_secs_f64());
    println!("memory of the started bridge (RSS growth): {memory:.0} MiB");
    println!("idle CPU over {window:?}: {:.2} % of one core (the whole bench process)", cpu * 100.0);
    Ok(())
}

fn row(name: &str, f: &Figures) -> String {
    let lat = |l: &Option<Latency>| match l {
        Some(l) => format!("latency p50 {} ms p99 {} ms max {} ms ({} inputs)", l.p50, l.p99, l.max, l.inputs),
        None => "latency not measured".into(),
    };
    format!(
        "{name:<28} {:>8.0} inputs/s  {:>6.1} µs CPU/input  {:>5.2} records out/input  {}",
        f.rate(),
        f.cpu_us_per_input,
        f.records_out_per_input,
        lat(&f.latency)
    )
}
