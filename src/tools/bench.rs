//! `gzac-portal-bridge bench`: the Verzoek route against a raw byte-copy passthrough, on the same
//! broker with the same transaction settings, in one run. Input is written first, then each route
//! drains it; throughput is counted from the output records' own timestamps, so group join and
//! start-up are not in the figure.

use crate::client;
use crate::codec::{Codec, CodecError};
use crate::config::Config;
use crate::events::Event;
use crate::pipeline::{self, Ctx, Output, Payload, Route, RouteError};
use crate::routes::verzoek::{self, VerzoekRoute};
use crate::tools::registry::Registry;
use crate::tools::samples;
use crate::{schemas, topology};
use apache_avro::AvroSchema;
use apache_avro::Schema;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Records per route.
    #[arg(long, default_value_t = 20_000)]
    pub records: usize,
    /// Replication factor of the benchmark's topics.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Input rate of the latency phase (records/s); 0 skips it.
    #[arg(long, default_value_t = 1000)]
    pub latency_rate: usize,
    /// Length of the latency phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub latency_for: Duration,
    /// Instead: the cost of what the bridge holds, for these numbers of open taken (no broker):
    /// memory, a tick with nothing due, a tick with one due. E.g. `--scale 10000,100000,1000000`.
    #[arg(long, value_delimiter = ',')]
    pub scale: Vec<usize>,
}

/// Resident memory of this process (bytes), from /proc.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// N open taken held by the taak route's store (indexed by its schedule as in a run): what they
/// cost in memory, and what a tick costs with nothing due and with one due.
fn scale(n: usize) -> anyhow::Result<()> {
    use crate::pipeline::{Ctx, Route};
    use crate::routes::taak::{TaakRoute, TaakState};
    let cfg = Config::defaults();
    let mut route = TaakRoute::new(&cfg, Arc::new(crate::table::GlobalTable::fixed(vec![])));
    let before = rss();
    let mut store = crate::state::Store::default().scheduled(route.schedule().expect("the taak route schedules"));
    let dag = crate::model::Datum::vandaag().plus(30);
    for i in 0..n {
        let t = samples::taak(&format!("{i:08}-8a4b-4c5d-9e6f-7a8b9c0d1e21"), samples::BSN, dag.plus((i % 300) as i32));
        let s = TaakState::held(t, false, crate::model::Timestamp(0));
        store.put((i % 6) as i32, &s.taak.uuid.clone(), Some(s));
        if i % 10_000 == 0 {
            store.committed(); // as after each transaction: the undo log and pending changes go
        }
    }
    store.committed();
    let held = rss().saturating_sub(before);
    let now = crate::model::Timestamp::now();
    let ticks = 1000;
    let t0 = Instant::now();
    for _ in 0..ticks {
        let mut ctx = Ctx { now, partition: -1, state: &mut store, link: None };
        anyhow::ensure!(route.tick(&mut ctx)?.is_empty(), "nothing is due");
    }
    let idle = t0.elapsed() / ticks;
    // The first of the 300 last days passes: the tick that expires the taken of that day.
    let mut ctx = Ctx { now: crate::model::Timestamp(dag.einde().0 + 1), partition: -1, state: &mut store, link: None };
    let t1 = Instant::now();
    let fired = route.tick(&mut ctx)?.len();
    let due = t1.elapsed();
    println!(
        "held {n:>9}: {:>7.1} MiB ({:>5.0} B each); a tick with nothing due {:>9.2?}; \
         the tick that expires the {} taken of one day ({fired} records out) {:>9.2?}",
        held as f64 / (1 << 20) as f64,
        held as f64 / n.max(1) as f64,
        idle,
        n.div_ceil(300),
        due
    );
    Ok(())
}

/// Copies each input record's bytes to one output topic, untouched.
pub struct Passthrough {
    input: String,
    output: String,
    seq: AtomicU64,
}

impl Route for Passthrough {
    type Input = Vec<u8>;
    type State = ();
    fn name(&self) -> &'static str {
        "passthrough"
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn outputs(&self) -> Vec<(String, Schema)> {
        vec![]
    }
    fn decode(&self, _: &crate::pipeline::Decoder<'_>, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
    fn handle(&mut self, input: Vec<u8>, _: &mut Ctx<'_, ()>) -> Result<Vec<Output>, RouteError> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed).to_string();
        let event = Event { id: n.clone(), kind: "bench.passthrough", subject: n.clone(), ..Event::default() };
        Ok(vec![Output {
            topic: self.output.clone(),
            key: n,
            value: Payload::Raw(input),
            event,
            partition: None,
            link: None,
        }])
    }
}

struct Measured {
    records: usize,
    seconds: f64,
}

/// Run `route` until `output` holds `n` records; the rate is taken between the first and the
/// last output record's timestamp.
async fn drain<R: Route>(route: R, cfg: &Config, output: String, n: usize) -> anyhow::Result<Measured> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let (c, s, rt) = (cfg.clone(), shutdown.clone(), Handle::current());
    let plumbing = pipeline::Plumbing::new(cfg)?;
    let worker = std::thread::spawn(move || pipeline::run(route, &c, rt, s, Default::default(), plumbing));
    let c = cfg.clone();
    // Count and take the first and last timestamp only: keeping the records would make the
    // bench client, not the bridge, the biggest user of memory.
    let (count, first, last) = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, i64, i64)> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::Message;
        let reader: BaseConsumer = c.reader_config(&format!("{}count", c.own_prefix())).create()?;
        let md = reader.fetch_metadata(Some(&output), Duration::from_secs(10))?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition_offset(&output, p.id(), rdkafka::Offset::Beginning)?;
        }
        reader.assign(&tpl)?;
        let (mut count, mut first, mut last) = (0, i64::MAX, i64::MIN);
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        while count < n {
            anyhow::ensure!(std::time::Instant::now() < deadline, "only {count} of {n} records came out");
            if let Some(m) = reader.poll(Duration::from_millis(100)) {
                let ts = m?.timestamp().to_millis().unwrap_or(0);
                (count, first, last) = (count + 1, first.min(ts), last.max(ts));
            }
        }
        Ok((count, first, last))
    })
    .await??;
    shutdown.store(true, Ordering::SeqCst);
    worker.join().map_err(|_| anyhow::anyhow!("route panicked"))??;
    Ok(Measured { records: count, seconds: ((last - first).max(1)) as f64 / 1000.0 })
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
            tokio::task::block_in_place(|| scale(*n))?;
        }
        return Ok(());
    }
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    cfg.topic_prefix = format!("bench-{run_id}.");
    cfg.group_id = format!("bench-{run_id}");
    let registry = Registry::new();
    let server = registry.serve("127.0.0.1:0".parse()?).await?;
    let addr = server.addr;
    cfg.registry.url = format!("http://{addr}");

    let raw_in = cfg.topic("passthrough.in");
    let raw_out = cfg.topic("passthrough.out");
    let mut wanted = topology::Topology::load()?.wanted(&cfg.topic_prefix)?;
    let template = wanted[0].clone();
    for name in [&raw_in, &raw_out] {
        wanted.push(topology::Wanted { name: name.clone(), ..template.clone() });
    }
    topology::apply(&cfg.client_config(), &wanted, args.replication_factor, false).await?;
    let ids = schemas::register_all(&cfg.sr_settings()?, &cfg.topic_prefix).await?;
    let subject = schemas::subject(&cfg.topic(verzoek::INPUT));
    let id = ids.iter().find(|(s, _)| *s == subject).map(|(_, id)| *id).expect("verzoek subject registered");

    println!("writing {} verzoeken to each input ...", args.records);
    let producer = client::producer(&cfg)?;
    let input = cfg.topic(verzoek::INPUT);
    for i in 0..args.records {
        let key = format!("bench-{i}");
        let bytes = client::frame(id, &samples::verzoek(&key))?;
        for topic in [&input, &raw_in] {
            loop {
                let rec = rdkafka::producer::FutureRecord::to(topic).key(&key).payload(&bytes);
                match producer.send_result(rec) {
                    Ok(_) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
    }
    client::flush(&producer)?;

    let started = Instant::now();
    let raw = drain(
        Passthrough { input: raw_in, output: raw_out, seq: AtomicU64::new(0) },
        &cfg,
        cfg.topic("passthrough.out"),
        args.records,
    )
    .await?;
    let route = drain(VerzoekRoute::new(&cfg), &cfg, cfg.topic(verzoek::OUTPUT), args.records).await?;
    let rate = |m: &Measured| m.records as f64 / m.seconds;
    println!(
        "\nbroker {} · batch {} records / {:?} · {} records each",
        cfg.bootstrap_servers, cfg.pipeline.batch_max_records, cfg.pipeline.batch_max_interval, args.records
    );
    println!("{:<34} {:>10} {:>10}", "route", "records/s", "seconds");
    println!("{:<34} {:>10.0} {:>10.2}", "passthrough (byte copy, EOS)", rate(&raw), raw.seconds);
    println!("{:<34} {:>10.0} {:>10.2}", "verzoek (Avro+translate, EOS)", rate(&route), route.seconds);
    println!("ratio verzoek / passthrough: {:.0}%", 100.0 * rate(&route) / rate(&raw));
    if args.latency_rate > 0 {
        let l = latency(&cfg, id, args.latency_rate, args.latency_for).await?;
        println!(
            "\nend-to-end latency, verzoek route at {} records/s for {:?} (portal send → read_committed receive):",
            args.latency_rate, args.latency_for
        );
        println!("  {} records  p50 {} ms  p99 {} ms  max {} ms", l.len(), pct(&l, 0.50), pct(&l, 0.99), pct(&l, 1.0));
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS of this process (bridge + bench client): {rss:.0} MiB");
    }
    println!("total wall time {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn pct(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Run the Verzoek route while the portal writes `rate` records/s for `duration`, each stamped
/// with its send time in `submitted_at` (carried to `ingediendOp`); a read_committed reader
/// measures receive time minus send time. Returns the sorted latencies in ms.
async fn latency(cfg: &Config, schema_id: u32, rate: usize, duration: Duration) -> anyhow::Result<Vec<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let shutdown = Arc::new(AtomicBool::new(false));
    let (c, s, rt) = (cfg.clone(), shutdown.clone(), Handle::current());
    let plumbing = pipeline::Plumbing::new(cfg)?;
    let worker =
        std::thread::spawn(move || pipeline::run(VerzoekRoute::new(&c), &c, rt, s, Default::default(), plumbing));

    let total = (rate as f64 * duration.as_secs_f64()) as usize;
    let reader: BaseConsumer = cfg
        .reader_config(&format!("{}latency", cfg.own_prefix()))
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    reader.subscribe(&[&cfg.topic(verzoek::OUTPUT)])?;
    let schema = crate::model::gzac::Verzoek::get_schema();
    let read = std::thread::spawn(move || -> anyhow::Result<(Vec<i64>, usize)> {
        let mut lat = Vec::new();
        let mut warm = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(120) + duration;
        while lat.len() < total && std::time::Instant::now() < deadline {
            let Some(m) = reader.poll(Duration::from_millis(50)) else { continue };
            let m = m?;
            let (_, mut body) = Codec::frame(m.payload().unwrap_or_default())?;
            #[allow(deprecated)]
            let v = apache_avro::from_avro_datum(&schema, &mut body, None)?;
            let out: crate::model::gzac::Verzoek = apache_avro::from_value(&v)?;
            // The submission id (verzoekBron.kenmerk) carries the send time: `lat-<n>-<ms>`.
            let kenmerk = &out.verzoek_bron.kenmerk;
            if kenmerk.starts_with("warm-") {
                warm += 1;
            } else if let Some(sent) = kenmerk.rsplit('-').next().and_then(|ms| ms.parse::<i64>().ok()) {
                lat.push(crate::model::Timestamp::now().0 - sent);
            }
        }
        Ok((lat, warm))
    });

    // Warm up until the route and the reader are both in place, then send at the rate.
    let producer = client::producer(cfg)?;
    let input = cfg.topic(verzoek::INPUT);
    let send = |key: String| {
        let v =
            crate::model::portaal::Verzoek { submitted_at: crate::model::Timestamp::now(), ..samples::verzoek(&key) };
        let bytes = client::frame(schema_id, &v)?;
        producer
            .send_result(rdkafka::producer::FutureRecord::to(&input).key(&key).payload(&bytes))
            .map(drop)
            .map_err(|(e, _)| anyhow::anyhow!("send: {e}"))
    };
    for i in 0..20 {
        send(format!("warm-{i}"))?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        for _ in 0..per_tick.min(total - sent) {
            send(format!("lat-{sent}-{}", crate::model::Timestamp::now().0))?;
            sent += 1;
        }
    }
    client::flush(&producer)?;
    let (mut lat, _warm) = tokio::task::spawn_blocking(move || read.join().expect("reader thread")).await??;
    shutdown.store(true, Ordering::SeqCst);
    worker.join().map_err(|_| anyhow::anyhow!("route panicked"))??;
    lat.sort_unstable();
    Ok(lat)
}
