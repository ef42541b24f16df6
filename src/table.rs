//! Global tables: every instance reads a whole compacted reference topic (all partitions) into
//! memory and keeps following it. Joins against them are therefore right whatever partitioner
//! wrote the topic and however the group spreads the other inputs. A route does not start before
//! its tables have been read up to the end they had at start-up (readiness). One reader (one
//! thread, one consumer) follows the same table of every municipality, each into its own rows.

use crate::catch_up::{drop_reached, ends_of};
use crate::codec::{Codec, CodecError, STACK_BYTES};
use crate::config::Config;
use crate::health::Stats;
use crate::pipeline::{unfixable_of, with_retries, GroupContext, STATISTICS_INTERVAL_MS};
use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tracing::{error, info, warn};

struct Rows<T> {
    /// Record key → (lookup key, value).
    by_key: HashMap<String, (String, T)>,
    /// Lookup key → record key.
    by_lookup: HashMap<String, String>,
}

pub struct GlobalTable<T> {
    topic: String,
    rows: Arc<RwLock<Rows<T>>>,
    stats: Arc<Stats>,
    /// Held, not read: the reader stops when the last of its tables is dropped.
    _stop: Arc<Stopper>,
}

/// Stops the reader when the last table it fills is dropped.
#[derive(Default)]
struct Stopper(Arc<AtomicBool>);

impl Drop for Stopper {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl<T> GlobalTable<T> {
    /// A table that follows no topic: these rows, by lookup key (unit tests of routes, the bench).
    pub fn fixed(rows: Vec<(String, T)>) -> Self {
        let by_lookup = rows.iter().map(|(k, _)| (k.clone(), k.clone())).collect();
        let by_key = rows.into_iter().map(|(k, v)| (k.clone(), (k, v))).collect();
        GlobalTable {
            topic: String::new(),
            rows: Arc::new(RwLock::new(Rows { by_key, by_lookup })),
            // Nothing to read: ready at once.
            stats: {
                let stats = Arc::new(Stats::default());
                stats.ready.store(true, Ordering::SeqCst);
                stats
            },
            _stop: Arc::default(),
        }
    }
}

impl<T: DeserializeOwned + Clone + Send + Sync + 'static> GlobalTable<T> {
    /// Start following `topics` (the same table of each municipality), one table each, with one
    /// reader. `lookup` gives the key a route looks rows up by (e.g. the party). The reader
    /// follows its topics through broker outages (librdkafka reconnects; errors only show in
    /// `stats`, which the tables share); only what retrying cannot fix ends it, and `stats` says so.
    pub fn start(
        cfg: &Config,
        topics: &[String],
        reader: Schema,
        lookup: fn(&T) -> String,
        rt: Handle,
    ) -> anyhow::Result<Vec<Arc<Self>>> {
        let stats = Arc::new(Stats::default());
        stats.grant_grace(cfg.pipeline.authorisation_grace);
        let stop = Arc::new(Stopper::default());
        let flag = stop.0.clone();
        let consumer: BaseConsumer<GroupContext> = cfg
            .reader_config(&format!("{}table", cfg.own_prefix()))
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .create_with_context(GroupContext::new("table", topics, stats.clone()))?;
        let codec = Codec::new(cfg.sr_settings()?);
        let tables: Vec<Arc<Self>> = topics
            .iter()
            .map(|topic| {
                Arc::new(GlobalTable {
                    topic: topic.clone(),
                    rows: Arc::new(RwLock::new(Rows { by_key: HashMap::new(), by_lookup: HashMap::new() })),
                    stats: stats.clone(),
                    _stop: stop.clone(),
                })
            })
            .collect();
        let rows: HashMap<String, Arc<RwLock<Rows<T>>>> =
            tables.iter().map(|t| (t.topic.clone(), t.rows.clone())).collect();
        let s = stats.clone();
        let name = topics.first().cloned().unwrap_or_default();
        std::thread::Builder::new().name(format!("table-{name}")).stack_size(STACK_BYTES).spawn(move || {
            let result = follow(&consumer, &codec, &reader, lookup, &rt, &rows, &s, &flag);
            if let Err(e) = result {
                error!(topic = %name, error = %format!("{e:#}"), "global table stopped");
                s.problem(&format!("{e:#}"));
            }
            s.stopped.store(true, Ordering::SeqCst);
        })?;
        Ok(tables)
    }

    /// What the table reports (readiness, lag, errors), for health and metrics.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Block until the table has read its topic up to the end it had at start-up.
    pub fn wait_ready(&self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        while !self.stats.ready.load(Ordering::SeqCst) {
            if self.stats.stopped.load(Ordering::SeqCst) {
                anyhow::bail!("reading {}: {}", self.topic, self.stats.unhealthy(Duration::ZERO).unwrap_or_default());
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

/// What one table record does: set a row, delete it (tombstone), or nothing (a bad row).
enum Change<T> {
    Set(T),
    Delete,
    Keep,
}

#[allow(clippy::too_many_arguments)]
fn follow<T: DeserializeOwned>(
    consumer: &BaseConsumer<GroupContext>,
    codec: &Codec,
    reader: &Schema,
    lookup: fn(&T) -> String,
    rt: &Handle,
    tables: &HashMap<String, Arc<RwLock<Rows<T>>>>,
    stats: &Stats,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    // Where the topics end now: the tables are ready once they have read that far.
    let (tpl, mut ends) =
        with_retries("reading the metadata of the tables", stop, stats, &|| unfixable_of(consumer), || {
            let mut tpl = TopicPartitionList::new();
            let mut ends = HashMap::new();
            for topic in tables.keys() {
                let partitions = crate::pipeline::partition_ids(consumer, topic)?;
                for p in &partitions {
                    tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
                }
                ends.extend(ends_of(consumer, topic, &partitions)?);
            }
            Ok((tpl, ends))
        })?;
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut since_check = 0;
    let mut backoff = crate::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !stop.load(Ordering::SeqCst) {
        if let Some(reason) = consumer.context().take_fatal() {
            anyhow::bail!("{reason}");
        }
        let polled = consumer.poll(Duration::from_millis(100));
        let idle = polled.is_none();
        match polled {
            None => {
                if stats.broker_up.load(Ordering::Relaxed) {
                    stats.recovered();
                }
            }
            // The broker is away or a partition is moving: librdkafka goes on fetching by itself.
            Some(Err(e)) => {
                stats.retrying(&format!("reading a table: {e}"));
                warn!(error = %e, "table reader error; following on");
            }
            Some(Ok(m)) => {
                let topic = m.topic();
                let Some(rows) = tables.get(topic) else { continue };
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                // Decoded before the lock is taken: a slow registry must not block lookups.
                let change = match m.payload() {
                    None => Change::Delete,
                    Some(bytes) => loop {
                        match rt.block_on(codec.decode::<T>(bytes, reader)) {
                            Ok(v) => {
                                backoff.reset();
                                break Change::Set(v);
                            }
                            Err(CodecError::Transient(e)) => {
                                stats.retrying(&e.to_string());
                                warn!(topic, error = %e, "registry unavailable while reading a table, retrying");
                                backoff.wait(stop);
                                if stop.load(Ordering::SeqCst) {
                                    return Ok(());
                                }
                            }
                            Err(CodecError::Stop(e)) => anyhow::bail!("{e}"),
                            // Every instance reads the table, so dead-lettering would repeat per
                            // instance: a bad row is counted and the previous row stays.
                            Err(e) => {
                                warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "bad table row ignored; the previous row stays");
                                stats.bad_state_rows.fetch_add(1, Ordering::Relaxed);
                                break Change::Keep;
                            }
                        }
                    },
                };
                let mut rows = rows.write().unwrap_or_else(|p| p.into_inner());
                let before = rows.by_key.len() as i64;
                if !matches!(change, Change::Keep) {
                    if let Some((old_lookup, _)) = rows.by_key.remove(&key) {
                        rows.by_lookup.remove(&old_lookup);
                    }
                }
                if let Change::Set(v) = change {
                    let l = lookup(&v);
                    rows.by_lookup.insert(l.clone(), key.clone());
                    rows.by_key.insert(key, (l, v));
                }
                // Rows of every table this reader fills: changed by this row's difference only.
                stats.rows.fetch_add(rows.by_key.len() as i64 - before, Ordering::Relaxed);
                drop(rows);
                stats.records.fetch_add(1, Ordering::Relaxed);
                stats.progressed();
                stats.recovered();
            }
        }
        since_check += 1;
        if !stats.ready.load(Ordering::SeqCst) && (idle || since_check >= 1000) {
            since_check = 0;
            // A failed position query during an outage is tried again on the next round.
            if drop_reached(consumer, &mut ends).is_ok() && ends.is_empty() {
                stats.ready.store(true, Ordering::SeqCst);
                info!(
                    tables = tables.len(),
                    rows = stats.rows.load(Ordering::Relaxed),
                    ms = started.elapsed().as_millis() as u64,
                    "global tables ready"
                );
            }
        }
    }
    Ok(())
}
