//! `bench --gemeenten N`: the whole bridge serving N municipalities in one process — start to
//! ready, threads, memory, verzoeken/s over all of them and idle CPU — so that the cost of one
//! municipality more can be read from runs with different N.

use super::measure::cpu_us;
use super::rss;
use crate::config::Config;
use crate::tools::samples;
use crate::{client, schemas, topology};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// `n` municipalities (ids `g000`…, each its own OIN and topic prefix), every topic one partition
/// (50 municipalities are some 2,000 topics on the test broker); `inputs` verzoeken spread evenly
/// over them as a backlog, drained by one bridge.
pub(super) async fn gemeenten(mut cfg: Config, n: usize, inputs: usize) -> anyhow::Result<()> {
    for i in 0..n {
        let mut m = serde_yaml::Mapping::new();
        let mut set = |k: &str, v: String| m.insert(k.into(), serde_yaml::Value::String(v));
        set("id", format!("g{i:03}"));
        set("oin", format!("00000001{:09}000", 100 + i));
        set("topic_prefix", format!("{}g{i:03}.", cfg.topic_prefix));
        cfg.gemeenten.push(m);
    }
    let all = cfg.gemeenten()?;
    let topo = topology::Topology::load()?;
    let mut wanted = Vec::new();
    for g in &all {
        wanted.extend(topo.wanted(&g.cfg.topic_prefix)?.into_iter().map(|w| topology::Wanted { partitions: 1, ..w }));
    }
    let t0 = Instant::now();
    topology::apply(&cfg.client_config(), &wanted, 1, false).await?;
    let mut ids = Vec::new();
    for g in &all {
        ids.extend(schemas::register_all(&cfg.sr_settings()?, &g.cfg.topic_prefix).await?);
    }
    println!(
        "{n} municipalities: {} topics created and schemas registered in {:.1} s",
        wanted.len(),
        t0.elapsed().as_secs_f64()
    );

    let producer = client::producer(&cfg)?;
    for k in 0..inputs {
        let g = &all[k % n];
        let topic = g.cfg.topic(crate::topics::PORTAAL_VERZOEKEN);
        let subject = schemas::subject(&topic);
        let id = ids.iter().find(|(s, _)| *s == subject).map(|(_, id)| *id).expect("registered");
        let key = format!("{}-{k}", g.id);
        let bytes = client::frame(id, &samples::verzoek(&key))?;
        while producer.send_result(rdkafka::producer::FutureRecord::to(&topic).key(&key).payload(&bytes)).is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    client::flush(&producer)?;
    drop(producer);

    let (threads0, rss0) = (threads(), rss());
    // CPU from the start: a small backlog may be drained before every route says ready.
    let cpu0 = cpu_us();
    let started = Instant::now();
    let running = crate::bridge::start(&cfg)?;
    while !running.stats.iter().all(|(_, s)| s.not_ready().is_none()) {
        anyhow::ensure!(running.healthy(), "a route stopped while starting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = started.elapsed();
    let threads1 = threads();
    let outputs: Vec<String> = all.iter().map(|g| g.cfg.topic(crate::topics::GZAC_VERZOEKEN)).collect();
    let reader = cfg.clone();
    let recs = tokio::task::spawn_blocking(move || {
        client::read_n(&reader, &outputs, inputs, Duration::from_secs(900), Duration::ZERO)
    })
    .await??;
    let cpu = cpu_us().saturating_sub(cpu0);
    let times: Vec<i64> = recs.iter().filter_map(|r| r.timestamp).collect();
    let span = (times.iter().max().unwrap_or(&0) - times.iter().min().unwrap_or(&0)).max(1) as f64 / 1000.0;
    let memory = rss().saturating_sub(rss0) as f64 / (1 << 20) as f64;
    let (consumers, routes) =
        (running.stats.len(), running.stats.iter().filter(|(n, _)| !n.starts_with("table:")).count());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle0 = cpu_us();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = cpu_us().saturating_sub(idle0) as f64 / 10e6;
    let rows: i64 = running.stats.iter().map(|(_, s)| s.rows.load(Ordering::Relaxed)).sum();
    running.stop(cfg.shutdown_timeout()).await?;
    println!("  start to ready (every route and table): {:.2} s", ready.as_secs_f64());
    println!(
        "  threads of the bridge: {} ({routes} routes and {} table readers, each one consumer)",
        threads1 - threads0,
        consumers - routes
    );
    println!("  memory of the bridge (RSS growth, after draining): {memory:.0} MiB; state entries held {rows}");
    println!(
        "  {inputs} verzoeken over {n} municipalities: {:.0} verzoeken/s, {:.0} µs CPU per verzoek (start to drained: start-up, bridge, reader)",
        inputs as f64 / span,
        cpu as f64 / inputs as f64
    );
    println!("  idle CPU over 10 s: {:.2} % of one core", idle * 100.0);
    Ok(())
}
