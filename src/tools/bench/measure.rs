//! One route and its same-fan-out passthrough, measured: throughput and CPU per input on a
//! backlog, then latency at a fixed input rate.

use super::cases::{Kind, Stages};
use super::BenchArgs;
use crate::config::Config;
use crate::model::Datum;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Figures {
    pub inputs: usize,
    pub seconds: f64,
    pub cpu_us_per_input: f64,
    /// Records written by all stages (outputs and changelog records) per input.
    pub records_out_per_input: f64,
    pub latency: Option<Latency>,
    /// The passthrough's records out per stage, e.g. `3+1+1`.
    pub fanout_text: String,
}

impl Figures {
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.seconds
    }
}

pub struct Latency {
    pub inputs: usize,
    pub p50: i64,
    pub p99: i64,
    pub max: i64,
}

/// The process's CPU time (user + system, all threads) in µs, from /proc (clock ticks of 10 ms).
pub(super) fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * 10_000
}

/// Where each partition of `topics` ends now: the reader of a phase starts there.
fn ends(cfg: &Config, topics: &[String]) -> anyhow::Result<TopicPartitionList> {
    let c: BaseConsumer = cfg.reader_config(&format!("{}bench-ends", cfg.own_prefix())).create()?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            // Topics just created may not have a leader yet: ask again for a while.
            let mut tries = 0;
            let high = loop {
                match c.fetch_watermarks(topic, p.id(), Duration::from_secs(10)) {
                    Ok((_, high)) => break high,
                    Err(e) if tries < 60 => {
                        tries += 1;
                        tracing::debug!(topic, error = %e, "no watermarks yet");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(high))?;
        }
    }
    Ok(tpl)
}

/// What a reader of the final topics saw.
struct Seen {
    records: usize,
    first_ts: i64,
    last_ts: i64,
    /// Process CPU time at the first and the last record.
    cpu: (u64, u64),
    /// Per trace id (an input's send time, ms): when its last final record was read (ms).
    traces: HashMap<i64, i64>,
}

/// Read the final topics from `from` until at least `inputs` traces (or records, without
/// traces) have been seen and nothing new came for two seconds.
fn read_finals(cfg: &Config, from: TopicPartitionList, inputs: usize, by_trace: bool) -> anyhow::Result<Seen> {
    let reader: BaseConsumer =
        cfg.reader_config(&format!("{}bench-reader", cfg.own_prefix())).set("fetch.wait.max.ms", "5").create()?;
    reader.assign(&from)?;
    let mut seen = Seen { records: 0, first_ts: i64::MAX, last_ts: i64::MIN, cpu: (0, 0), traces: HashMap::new() };
    let (mut last_new, mut last_cpu_sample) = (Instant::now(), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let enough = if by_trace { seen.traces.len() >= inputs } else { seen.records >= inputs };
        if enough && last_new.elapsed() > Duration::from_secs(2) {
            return Ok(seen);
        }
        anyhow::ensure!(Instant::now() < deadline, "only {} final records came out", seen.records);
        let Some(m) = reader.poll(Duration::from_millis(50)) else { continue };
        let m = m?;
        let now = crate::model::Timestamp::now().0;
        if seen.records == 0 {
            seen.cpu.0 = cpu_us();
        }
        if last_cpu_sample.elapsed() >= Duration::from_millis(10) || seen.records == 0 {
            seen.cpu.1 = cpu_us();
            last_cpu_sample = Instant::now();
        }
        seen.records += 1;
        last_new = Instant::now();
        let ts = m.timestamp().to_millis().unwrap_or(0);
        (seen.first_ts, seen.last_ts) = (seen.first_ts.min(ts), seen.last_ts.max(ts));
        let trace = m.headers().and_then(|h| h.iter().find(|h| h.key == "traceparent")).and_then(|h| h.value);
        if let Some(sent) = trace.and_then(sent_at) {
            let at = seen.traces.entry(sent.0 * 1_000_000 + sent.1).or_insert(now);
            *at = (*at).max(now);
        }
    }
}

/// The send time (ms) and sequence number a bench `traceparent` carries.
fn sent_at(tp: &[u8]) -> Option<(i64, i64)> {
    let tp = std::str::from_utf8(tp).ok()?;
    let mut parts = tp.split('-').skip(1);
    let trace = i64::from_str_radix(parts.next()?.trim_start_matches('0'), 16).ok()?;
    let span = i64::from_str_radix(parts.next()?.trim_start_matches('0'), 16).ok()?;
    Some((trace, span % 1_000_000))
}

fn traceparent(sent_ms: i64, seq: usize) -> String {
    format!("00-{sent_ms:032x}-{:016x}-01", seq + 1)
}

/// Write `records` to `topic` as fast as the producer takes them.
async fn write_backlog(p: &FutureProducer, topic: &str, records: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    for (key, bytes) in records {
        loop {
            match p.send_result(FutureRecord::to(topic).key(key).payload(bytes)) {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    crate::client::flush(p)
}

/// Throughput, CPU and fan-out of `stages` on a backlog of `inputs`, then latency at `rate`.
async fn measure(
    cfg: &Config,
    input: &str,
    finals: Vec<String>,
    backlog: &[(String, Vec<u8>)],
    paced: &[(String, Vec<u8>)],
    rate: usize,
    start: impl FnOnce(&mut Stages),
) -> anyhow::Result<(Figures, Vec<f64>)> {
    // One producer for both phases: warmed up (its producer id acquired) by the backlog, so the
    // paced phase measures the bridge, not the bench's own first connection.
    let producer: FutureProducer =
        cfg.producer_config().set("enable.idempotence", "true").set("linger.ms", "0").create()?;
    let from = ends(cfg, &finals)?;
    write_backlog(&producer, input, backlog).await?;
    let mut stages = Stages::new(cfg)?;
    start(&mut stages);
    let (c, n) = (cfg.clone(), backlog.len());
    let seen = tokio::task::spawn_blocking(move || read_finals(&c, from, n, false)).await??;
    let copies = stages.copies();
    let latency = if paced.is_empty() {
        None
    } else {
        let from = ends(cfg, &finals)?;
        let (c, n) = (cfg.clone(), paced.len());
        let reader = tokio::task::spawn_blocking(move || read_finals(&c, from, n, true));
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let per_tick = (rate / 100).max(1);
        for (i, (key, bytes)) in paced.iter().enumerate() {
            if i % per_tick == 0 {
                tick.tick().await;
            }
            let sent = crate::model::Timestamp::now().0;
            let tp = traceparent(sent, i);
            let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(&tp) });
            producer
                .send_result(FutureRecord::to(input).key(key).payload(bytes).headers(headers))
                .map_err(|(e, _)| anyhow::anyhow!("send: {e}"))?;
        }
        crate::client::flush(&producer)?;
        let seen = reader.await??;
        let mut lat: Vec<i64> = seen.traces.iter().map(|(trace, at)| at - trace / 1_000_000).collect();
        lat.sort_unstable();
        Some(Latency { inputs: lat.len(), p50: pct(&lat, 0.50), p99: pct(&lat, 0.99), max: pct(&lat, 1.0) })
    };
    stages.stop()?;
    let figures = Figures {
        inputs: n,
        seconds: ((seen.last_ts - seen.first_ts).max(1)) as f64 / 1000.0,
        cpu_us_per_input: seen.cpu.1.saturating_sub(seen.cpu.0) as f64 / n as f64,
        records_out_per_input: copies.iter().sum(),
        latency,
        fanout_text: String::new(),
    };
    Ok((figures, copies))
}

fn pct(sorted: &[i64], q: f64) -> i64 {
    match sorted.len() {
        0 => 0,
        n => sorted[((n - 1) as f64 * q).round() as usize],
    }
}

/// The route, then its passthrough with the fan-out the route showed, on the same inputs.
pub async fn route_and_passthrough(
    cfg: &Config,
    ids: &[(String, u32)],
    kind: Kind,
    args: &BenchArgs,
) -> anyhow::Result<(Figures, Figures)> {
    let today = Datum::vandaag();
    let id_of = |topic: &str| {
        let subject = crate::schemas::subject(&cfg.topic(topic));
        ids.iter().find(|(s, _)| *s == subject).map(|(_, id)| *id).expect("the input's schema is registered")
    };
    let paced_n = (args.latency_rate as f64 * args.latency_for.as_secs_f64()) as usize;
    // Ids of this route's own (a taak the taak route saw before would change nothing).
    let (t, l) = (format!("{}-t", kind.slug()), format!("{}-l", kind.slug()));
    if kind == Kind::Antwoord {
        // An antwoord answers an open taak: the taken go through their own stages first.
        let id = id_of(Kind::Taak.stage_inputs()[0]);
        let taken: Vec<_> = (0..args.records)
            .map(|i| Kind::Taak.input(&t, i, today, id))
            .chain((0..paced_n).map(|i| Kind::Taak.input(&l, i, today, id)))
            .collect::<anyhow::Result<_>>()?;
        let finals = vec![cfg.topic(crate::topics::PORTAAL_TAKEN)];
        let input = cfg.topic(Kind::Taak.stage_inputs()[0]);
        measure(cfg, &input, finals, &taken, &[], 0, |s| Kind::Taak.start(s, cfg)).await?;
    }
    let id = id_of(kind.stage_inputs()[0]);
    let backlog: Vec<_> = (0..args.records).map(|i| kind.input(&t, i, today, id)).collect::<anyhow::Result<_>>()?;
    let paced: Vec<_> = (0..paced_n).map(|i| kind.input(&l, i, today, id)).collect::<anyhow::Result<_>>()?;
    let finals: Vec<String> = kind.finals().iter().map(|t| cfg.topic(t)).collect();
    let input = cfg.topic(kind.stage_inputs()[0]);
    let rate = args.latency_rate;
    let (route, copies) = measure(cfg, &input, finals, &backlog, &paced, rate, |s| kind.start(s, cfg)).await?;

    let copies: Vec<usize> = copies.iter().map(|c| (c.round() as usize).max(1)).collect();
    let finals = vec![cfg.topic(&kind.passthrough_sink())];
    let input = cfg.topic(&kind.passthrough_inputs()[0]);
    // Fresh keys: the passthrough's inputs are the route's bytes under new keys.
    let rekey = |rs: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
        rs.iter().map(|(k, v)| (format!("pt-{k}"), v.clone())).collect()
    };
    let (mut pt, _) = measure(cfg, &input, finals, &rekey(&backlog), &rekey(&paced), rate, |s| {
        kind.start_passthrough(s, cfg, &copies)
    })
    .await?;
    pt.fanout_text = copies.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("+");
    Ok((route, pt))
}
