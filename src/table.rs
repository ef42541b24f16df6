//! Global tables: every instance reads a whole compacted reference topic (all partitions) into
//! memory and keeps following it. Joins against them are therefore right whatever partitioner
//! wrote the topic and however the group spreads the other inputs. A route does not start before
//! its tables have been read up to the end they had at start-up (readiness).

use crate::codec::Codec;
use crate::config::Config;
use crate::pipeline::with_retries;
use crate::state::{drop_reached, ends_of};
use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tracing::{info, warn};

struct Rows<T> {
    /// Record key → (lookup key, value).
    by_key: HashMap<String, (String, T)>,
    /// Lookup key → record key.
    by_lookup: HashMap<String, String>,
}

pub struct GlobalTable<T> {
    topic: String,
    rows: Arc<RwLock<Rows<T>>>,
    ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    failed: Arc<RwLock<Option<String>>>,
}

impl<T> Drop for GlobalTable<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl<T: DeserializeOwned + Clone + Send + Sync + 'static> GlobalTable<T> {
    /// Start following `topic`. `lookup` gives the key a route looks rows up by (e.g. the party).
    pub fn start(
        cfg: &Config,
        topic: String,
        reader: Schema,
        lookup: fn(&T) -> String,
        rt: Handle,
    ) -> anyhow::Result<Self> {
        let rows = Arc::new(RwLock::new(Rows { by_key: HashMap::new(), by_lookup: HashMap::new() }));
        let ready = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(RwLock::new(None));
        let consumer: BaseConsumer = cfg.reader_config(&format!("{}-table", cfg.group_id)).create()?;
        let codec = Codec::new(cfg.sr_settings()?);
        let (r, rd, st, f, t) = (rows.clone(), ready.clone(), stop.clone(), failed.clone(), topic.clone());
        std::thread::Builder::new().name(format!("table-{topic}")).spawn(move || {
            if let Err(e) = follow(&consumer, &codec, &t, &reader, lookup, &rt, &r, &rd, &st) {
                warn!(topic = %t, error = %e, "global table stopped");
                *f.write().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
            }
        })?;
        Ok(GlobalTable { topic, rows, ready, stop, failed })
    }

    /// Block until the table has read its topic up to the end it had at start-up.
    pub fn wait_ready(&self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        while !self.ready.load(Ordering::SeqCst) {
            if let Some(e) = self.failed.read().unwrap_or_else(|p| p.into_inner()).clone() {
                anyhow::bail!("reading {}: {e}", self.topic);
            }
            if shutdown.load(Ordering::SeqCst) {
                anyhow::bail!("shutdown before {} was read", self.topic);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn lookup(&self, key: &str) -> Option<T> {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        let record_key = rows.by_lookup.get(key)?;
        rows.by_key.get(record_key).map(|(_, v)| v.clone())
    }
}

#[allow(clippy::too_many_arguments)]
fn follow<T: DeserializeOwned>(
    consumer: &BaseConsumer,
    codec: &Codec,
    topic: &str,
    reader: &Schema,
    lookup: fn(&T) -> String,
    rt: &Handle,
    rows: &RwLock<Rows<T>>,
    ready: &AtomicBool,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    // Where the topic ends now: the table is ready once it has read that far.
    let (tpl, mut ends) = with_retries(&format!("reading the metadata of {topic}"), stop, || {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
        let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        anyhow::ensure!(!partitions.is_empty(), "topic {topic} does not exist; run `topics apply`");
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
        Ok((tpl, ends_of(consumer, topic, &partitions)?))
    })?;
    consumer.assign(&tpl)?;
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let mut rows = rows.write().unwrap_or_else(|p| p.into_inner());
            if let Some((old_lookup, _)) = rows.by_key.remove(&key) {
                rows.by_lookup.remove(&old_lookup);
            }
            if let Some(bytes) = m.payload() {
                // A transient registry failure is retried; a bad row is skipped with a warning
                // (every instance reads the table, so dead-lettering would repeat per instance).
                let value = loop {
                    match rt.block_on(codec.decode::<T>(bytes, reader)) {
                        Ok(v) => break Some(v),
                        Err(crate::codec::CodecError::Transient(e)) => {
                            warn!(topic, error = %e, "registry unavailable while reading a table, retrying");
                            std::thread::sleep(Duration::from_millis(500));
                            if stop.load(Ordering::SeqCst) {
                                return Ok(());
                            }
                        }
                        Err(e) => {
                            warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "bad table row ignored");
                            break None;
                        }
                    }
                };
                if let Some(v) = value {
                    let l = lookup(&v);
                    rows.by_lookup.insert(l.clone(), key.clone());
                    rows.by_key.insert(key, (l, v));
                }
            }
        }
        if !ready.load(Ordering::SeqCst) {
            drop_reached(consumer, &mut ends)?;
            if ends.is_empty() {
                ready.store(true, Ordering::SeqCst);
                let n = rows.read().unwrap_or_else(|p| p.into_inner()).by_key.len();
                info!(topic, rows = n, ms = started.elapsed().as_millis() as u64, "global table ready");
            }
        }
    }
    Ok(())
}
