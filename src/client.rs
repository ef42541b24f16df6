//! Portal- and integrator-side helpers: write framed Avro input, read what the bridge wrote.
//! Used by the demo, the benchmark and the tests; a real portal uses its own Kafka client.

use crate::config::Config;
use apache_avro::AvroSchema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::time::{Duration, Instant};

/// A record as read back from a topic.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
}

impl Received {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == key).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
    pub fn key_str(&self) -> &str {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("")
    }
}

/// Frame `record` with `schema_id` in the Confluent wire format.
pub fn frame<T: Serialize + AvroSchema>(schema_id: u32, record: &T) -> anyhow::Result<Vec<u8>> {
    Ok(crate::codec::encode_with_id(schema_id, &T::get_schema(), apache_avro::to_value(record)?)?)
}

/// A plain (non-transactional, idempotent) producer like a portal's.
pub fn producer(cfg: &Config) -> anyhow::Result<FutureProducer> {
    Ok(cfg.producer_config().set("enable.idempotence", "true").set("linger.ms", "5").create()?)
}

/// Write one record and wait for the broker's acknowledgement.
pub async fn send(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
    traceparent: Option<&str>,
) -> anyhow::Result<()> {
    let mut headers = OwnedHeaders::new();
    if let Some(tp) = traceparent {
        headers = headers.insert(Header { key: "traceparent", value: Some(tp) });
    }
    let rec = FutureRecord::to(topic).key(key).payload(value).headers(headers);
    p.send(rec, Duration::from_secs(30)).await.map_err(|(e, _)| anyhow::anyhow!("send to {topic}: {e}"))?;
    Ok(())
}

/// Flush a producer, failing if anything is still unacknowledged.
pub fn flush(p: &FutureProducer) -> anyhow::Result<()> {
    p.flush(Duration::from_secs(60))?;
    Ok(())
}

/// A `read_committed` reader of every partition of `topic`, each from `start` (with `by_time`,
/// `Offset::Offset(ms)` is a moment: the first record at or after it), and the partition ids. A
/// topic that does not exist, or that this principal may not see, is an error. `purpose` names
/// its (never committing) group.
pub fn reader(
    cfg: &Config,
    purpose: &str,
    topic: &str,
    start: Offset,
    by_time: bool,
) -> anyhow::Result<(BaseConsumer, Vec<i32>)> {
    let consumer: BaseConsumer =
        cfg.reader_config(&format!("{}{purpose}-{}", cfg.own_prefix(), uuid::Uuid::new_v4())).create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} does not exist (or may not be read by this principal)");
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, start)?;
    }
    if by_time {
        tpl = consumer.offsets_for_times(tpl, Duration::from_secs(10))?;
    }
    consumer.assign(&tpl)?;
    Ok((consumer, partitions))
}

/// Read `topics` from the beginning as a `read_committed` integrator would, until `done` says
/// so or `timeout` passes (then an error that says how many were read).
pub fn read_until(
    cfg: &Config,
    topics: &[String],
    timeout: Duration,
    mut done: impl FnMut(&[Received]) -> bool,
) -> anyhow::Result<Vec<Received>> {
    let consumer: BaseConsumer = cfg.reader_config(&format!("reader-{}", uuid::Uuid::new_v4())).create()?;
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let md = consumer.fetch_metadata(Some(t), Duration::from_secs(10))?;
        for mt in md.topics() {
            for p in mt.partitions() {
                tpl.add_partition_offset(t, p.id(), Offset::Beginning)?;
            }
        }
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !done(&out) {
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} reading {topics:?}: {} record(s) read", out.len());
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            // A broker away for a while: librdkafka reconnects and the reader goes on.
            let Ok(m) = m else { continue };
            out.push(Received {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            });
        }
    }
    Ok(out)
}

/// Read until `topics` hold at least `n` records in all, then a little longer (`settle`) to
/// catch any surplus (a duplicate would show up there).
pub fn read_n(
    cfg: &Config,
    topics: &[String],
    n: usize,
    timeout: Duration,
    settle: Duration,
) -> anyhow::Result<Vec<Received>> {
    let mut reached: Option<Instant> = None;
    read_until(cfg, topics, timeout + settle, |recs| {
        if recs.len() >= n && reached.is_none() {
            reached = Some(Instant::now());
        }
        reached.is_some_and(|t| t.elapsed() >= settle)
    })
}
