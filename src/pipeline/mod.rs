//! The one generic consume → decode → route → encode → produce loop, exactly once.
//!
//! Each route runs on its own thread with its own consumer and transactional producer. A
//! transaction is opened at the first record of a batch and committed, with the consumer offsets
//! sent to it (EOS v2), after `batch_max_records` records or `batch_max_interval`. Any failure
//! aborts it, rolls the route's state back and rewinds the consumer to the committed offsets, so
//! every input is either fully processed once or not at all. The loop knows no route: routes
//! only turn a typed input (or the passing of time) into typed outputs and state changes.

use crate::codec::{Codec, CodecError, DeadLetterClass};
use crate::config::Config;
use crate::events::{ce_headers, dlq_headers, find, truncated_headers, Cause, Link};
pub use crate::health::Stats;
use crate::retry::Backoff;
use crate::state::Store;
use crate::watchdog::{Guarded, Hung};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tracing::{debug, error, info, warn};

mod group;
mod limits;
mod plumbing;
mod records;
mod recovery;
mod route;
mod startup;
mod transaction;

pub(crate) use group::GroupContext;
use group::*;
use limits::*;
pub use plumbing::Plumbing;
pub use route::{Ctx, Decoder, Output, Payload, Route, RouteError, Start};
pub use startup::dlq_topic;
pub(crate) use startup::{partition_ids, unfixable_of};
pub use startup::{with_retries, Unfixable, METADATA_TIMEOUT};
use transaction::*;

/// One municipality's instance of a route: its own route (its settings, tables and topics),
/// its own state and dead-letter topic. Records are given to it by the topic they came from.
pub struct Served<R: Route> {
    /// The municipality's id (logs, metrics).
    pub gemeente: String,
    /// The CloudEvents source of its outputs (its OIN).
    pub source: String,
    pub route: R,
    store: Store<R::State>,
    input: String,
    dlq: String,
}

impl<R: Route> Served<R> {
    /// `route` made with `cfg`, one municipality's configuration.
    pub fn new(cfg: &Config, route: R) -> Self {
        Served {
            gemeente: cfg.gemeente.clone(),
            source: cfg.ce_source(),
            input: route.input_topic().to_string(),
            dlq: dlq_topic(route.input_topic()),
            route,
            // Sealed and scheduled by `run_served`, which has the cipher.
            store: Store::default(),
        }
    }
}

/// An input partition of one of the municipalities: (index in `served`, partition).
pub(super) type Slot = (usize, i32);

/// The running state of one route's loop.
struct Pipeline<R: Route> {
    name: &'static str,
    /// The route once per municipality; one consumer reads all their input topics.
    served: Vec<Served<R>>,
    by_topic: HashMap<String, usize>,
    cfg: Config,
    codec: Codec,
    producer: TxProducer,
    transactional_id: String,
    shutdown: Arc<AtomicBool>,
    rt: Handle,
    /// The largest record each output topic (the dead-letter topic and the changelog) takes,
    /// when that was read, and the topics it covers.
    limits: Limits,
    limits_read: Instant,
    written: Vec<String>,
    /// Base of the `ce_dataschema` URLs.
    registry_url: String,
    /// Set from `begin_transaction` until the commit or abort has succeeded.
    open: Option<Open>,
    /// Inputs whose output the broker refused for good: dead-lettered when read again.
    refused: BTreeMap<Origin, String>,
    /// Producers replaced in a row without a commit in between (a second process with our id).
    replaced: u32,
    /// Whether the first assignment of this process was checked for inputs it lacks.
    first_assignment_checked: bool,
    stats: Arc<Stats>,
}

/// Run `route` for the one municipality `cfg` describes until `shutdown` is set. Blocks.
pub fn run<R: Route>(
    route: R,
    cfg: &Config,
    rt: Handle,
    shutdown: Arc<AtomicBool>,
    stats: Arc<Stats>,
    plumbing: Arc<Plumbing>,
) -> anyhow::Result<()> {
    run_served(vec![Served::new(cfg, route)], cfg, rt, shutdown, stats, plumbing)
}

/// Run one route for every municipality in `served` — one consumer over all their input topics,
/// one transactional producer — until `shutdown` is set. Blocks: call it from a dedicated thread.
pub fn run_served<R: Route>(
    mut served: Vec<Served<R>>,
    cfg: &Config,
    rt: Handle,
    shutdown: Arc<AtomicBool>,
    stats: Arc<Stats>,
    plumbing: Arc<Plumbing>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!served.is_empty(), "a route needs at least one municipality");
    let name = served[0].route.name();
    let p = &cfg.pipeline;
    stats.grant_grace(p.authorisation_grace);
    // No length prefix may make the decoder allocate more than a fetch can hold (process-wide; first call wins).
    apache_avro::util::max_allocation_bytes(64 << 20);
    let mut backoff = Backoff::new(p.retry_backoff_initial, p.retry_backoff_max);
    let mut codec = Codec::new(cfg.sr_settings()?);
    let outputs: Vec<(String, apache_avro::Schema)> = served.iter().flat_map(|s| s.route.outputs()).collect();
    for (topic, schema) in &outputs {
        loop {
            match rt.block_on(codec.prepare_output(topic, schema.clone())) {
                Ok(id) => break debug!(topic, id, "output schema ready"),
                Err(CodecError::Transient(e)) => {
                    stats.retrying(&e.to_string());
                    warn!(topic, error = %e, "registry unavailable, retrying");
                    backoff.wait(&shutdown);
                    if shutdown.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                }
                Err(e) => anyhow::bail!("cannot register the schema of {topic}: {e}"),
            }
        }
    }
    backoff.reset();
    for s in &mut served {
        s.route.prepare(&Start { plumbing: &plumbing, shutdown: &shutdown, stats: &stats })?;
    }
    let inputs: Vec<String> = served.iter().map(|s| s.input.clone()).collect();
    let mut consumer = group_consumer(cfg, name, &inputs, &stats)?;
    for s in &served {
        let Some(changelog) = s.route.changelog() else { continue };
        let count = |t: &str| partition_ids(&consumer, t).map(|ids| ids.len());
        let (input, log) =
            with_retries("reading topic metadata", &shutdown, &stats, &|| unfixable_of(&consumer), || {
                Ok((count(&s.input)?, count(changelog)?))
            })?;
        anyhow::ensure!(
            log >= input && input > 0,
            "changelog {changelog} has {log} partitions, fewer than the {input} of {}; run `topics apply`",
            s.input
        );
    }
    let mut written: Vec<String> = outputs.into_iter().map(|(t, _)| t).collect();
    for s in &served {
        written.push(s.dlq.clone());
        written.extend(s.route.changelog().map(str::to_string));
    }
    let limits = Limits::read(cfg, &written, plumbing.topic_limits(cfg, &rt).clone());
    let transactional_id = cfg.transactional_id(name);
    let producer = match new_producer(cfg, &transactional_id, limits.producer, &shutdown, &mut backoff, &stats) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        Err(e) => anyhow::bail!("{e}"),
    };
    if shutdown.load(Ordering::SeqCst) {
        return Ok(());
    }
    let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    info!(route = name, inputs = ?inputs, transactional_id = transactional_id.as_str(), "route started");

    for s in &mut served {
        let store = Store::sealed(plumbing.cipher.clone());
        s.store = match s.route.schedule() {
            Some(schedule) => store.scheduled(schedule),
            None => store,
        };
    }
    let mut pipe = Pipeline {
        name,
        by_topic: served.iter().enumerate().map(|(i, s)| (s.input.clone(), i)).collect(),
        served,
        cfg: cfg.clone(),
        codec,
        producer,
        transactional_id,
        shutdown: shutdown.clone(),
        rt,
        limits,
        limits_read: Instant::now(),
        written,
        registry_url: cfg.registry.url.trim_end_matches('/').to_string(),
        open: None,
        refused: BTreeMap::new(),
        replaced: 0,
        first_assignment_checked: false,
        stats: stats.clone(),
    };
    stats.ready.store(true, Ordering::SeqCst);
    let session = cfg.session_timeout();
    let mut rejoined: Option<Instant> = None;
    let result = loop {
        match pipe.run_loop(&consumer, &shutdown, &mut backoff) {
            Ok(Exit::Shutdown) => break Ok(()),
            Err(e) => break Err(e),
            Ok(Exit::Fenced(reason)) => {
                // Fenced again soon after rejoining, the broker up all along: another live
                // process joins with our group.instance.id. Anything else is our own session that
                // ran out while the broker was away (KIP-345): rejoin.
                let again = rejoined.is_some_and(|at| at.elapsed() < session * 2);
                if again && !consumer.context().broker_was_down.load(Ordering::Relaxed) {
                    break Err(anyhow::anyhow!(
                        "{reason} — {}",
                        unfixable(RDKafkaErrorCode::FencedInstanceId).unwrap_or_default()
                    ));
                }
                warn!(route = name, reason, "static member fenced (its session ran out); rejoining the group");
            }
            Ok(Exit::Stale(why)) => {
                // A static member that rejoined within its session with other topics is handed
                // its old assignment without a rebalance. Leaving the group (unsubscribe sends
                // LeaveGroup) removes the member, and the next join is assigned afresh.
                warn!(route = name, inputs = ?inputs, "{why} (a stale static assignment?); leaving and joining again");
                pipe.stats.retrying(&format!("{why}; rejoining"));
                consumer.unsubscribe();
                let until = Instant::now() + Duration::from_secs(5);
                while Instant::now() < until && consumer.assignment().map(|a| a.count() > 0).unwrap_or(false) {
                    let _ = consumer.poll(Duration::from_millis(100));
                }
                backoff.wait(&shutdown);
            }
        }
        if let Err(e) = pipe.membership_lost(&shutdown, &mut backoff) {
            break Err(anyhow::anyhow!("{e}"));
        }
        let new = match group_consumer(cfg, name, &inputs, &stats) {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        // The old member is closed before the new one joins under the same group.instance.id.
        close_within(std::mem::replace(&mut consumer, new), cfg.shutdown_timeout() / 2, name);
        if let Err(e) = consumer.subscribe(&topics) {
            break Err(e.into());
        }
        rejoined = Some(Instant::now());
    };
    if let Err(e) = &result {
        stats.problem(&format!("{e:#}"));
    }
    info!(route = name, "route stopped");
    close_within((consumer, pipe), cfg.shutdown_timeout() / 2, name);
    result
}

/// How one run of the group loop ended.
enum Exit {
    Shutdown,
    /// The static member was fenced: rejoin with a new consumer, or stop when it shows a second
    /// instance with our `instance_id`.
    Fenced(String),
    /// The group assigned partitions of other topics than the inputs, or (at the first
    /// assignment) none of some input: leave and join again.
    Stale(String),
}

/// The route's consumer in its group `<group_id>.<route>` (not yet subscribed).
fn group_consumer(
    cfg: &Config,
    route: &'static str,
    inputs: &[String],
    stats: &Arc<Stats>,
) -> anyhow::Result<BaseConsumer<GroupContext>> {
    Ok(cfg
        .consumer_config()
        .set("group.id", cfg.route_group(route))
        // Static membership: a restarted instance gets its partitions back at once instead of
        // waiting for its old session to time out.
        .set("group.instance.id", format!("{}.{}", cfg.instance_id, route))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(GroupContext::new(route, inputs, stats.clone()))?)
}

/// Drop Kafka clients on a thread of their own and wait at most `bound`: closing a consumer waits
/// for a group join still in flight (a stop during start-up), and a client stuck in a call that
/// librdkafka never times out would hold the route forever. Past the bound the route goes on
/// (its transaction is already committed or aborted) and the clients are left to finish alone.
fn close_within<T: Send + 'static>(clients: T, bound: Duration, route: &str) {
    let closing = std::thread::spawn(move || drop(clients));
    let deadline = Instant::now() + bound;
    while !closing.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !closing.is_finished() {
        warn!(route, "closing the Kafka clients takes long; not waiting for it");
    }
}

/// How often librdkafka reports lag and broker state (for health and metrics).
pub(crate) const STATISTICS_INTERVAL_MS: &str = "2000";

impl<R: Route> Pipeline<R> {
    fn run_loop(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
    ) -> anyhow::Result<Exit> {
        let batch_max = self.cfg.pipeline.batch_max_records;
        let interval = self.cfg.pipeline.batch_max_interval;
        let tick_every = self.cfg.pipeline.tick_interval;
        let mut last_tick = Instant::now();
        let mut failed_at: Option<Instant> = None;
        loop {
            if shutdown.load(Ordering::SeqCst) {
                if let Err(e) = self.commit(consumer) {
                    // Nothing is lost: aborted, its records are read again by whoever owns them next.
                    warn!(route = self.name, error = %e, "last transaction could not commit at shutdown; aborted");
                    let _ = self.abort_and_rewind(consumer);
                }
                return Ok(Exit::Shutdown);
            }
            let wait = match &self.open {
                Some(o) => interval.saturating_sub(o.started.elapsed()),
                None => Duration::from_millis(100),
            };
            let polled = consumer.poll(wait);
            let ctx = consumer.context();
            if let Some(reason) = lock(&ctx.fenced).take() {
                return Ok(Exit::Fenced(reason));
            }
            match consumer.client().fatal_error() {
                Some((RDKafkaErrorCode::FencedInstanceId, reason)) => return Ok(Exit::Fenced(reason)),
                Some((code, reason)) => anyhow::bail!("{}: fatal consumer error {code:?}: {reason}", ctx.name),
                None => {}
            }
            if let Some(reason) = ctx.take_fatal() {
                anyhow::bail!("{reason}");
            }
            let foreign = std::mem::take(&mut *lock(&ctx.foreign));
            if !foreign.is_empty() {
                return Ok(Exit::Stale(format!("assigned partitions of topics this route does not read: {foreign:?}")));
            }
            // A restart that added inputs (a municipality more) is handed the old assignment,
            // which has none of the new ones: once per start, such an assignment is given back.
            // (With more instances than partitions, the next one may lack them too; that stands.)
            if let Some(unassigned) = lock(&ctx.unassigned).take() {
                if !self.first_assignment_checked {
                    self.first_assignment_checked = true;
                    if !unassigned.is_empty() {
                        return Ok(Exit::Stale(format!("assigned no partition of {unassigned:?}")));
                    }
                }
            }
            let step = self.after_rebalance(consumer, shutdown, backoff).and_then(|kept_going| {
                if !kept_going {
                    // The open transaction was aborted: whatever was polled is read again.
                    return Ok(());
                }
                match polled {
                    None => {
                        // Idle with the broker up: recovered — unless a step failed so recently
                        // that its records may not have been read again yet (a seek's refetch
                        // can outlast a short backoff); a commit says recovered in any case.
                        let settled = failed_at.is_none_or(|t| t.elapsed() > self.cfg.pipeline.retry_backoff_max * 2);
                        if self.open.is_none() && self.stats.broker_up.load(Ordering::Relaxed) && settled {
                            self.stats.recovered();
                        }
                        Ok(())
                    }
                    Some(Err(e)) => match classify("consuming", &e, &self.stats) {
                        StepError::Stop(m) => Err(StepError::Stop(m)),
                        _ => {
                            self.stats.retrying(&format!("consumer: {e}"));
                            debug!(route = self.name, error = %e, "consumer error");
                            Ok(())
                        }
                    },
                    // Left over from a stale assignment that is being given back: never ours.
                    Some(Ok(msg)) if !self.by_topic.contains_key(msg.topic()) => Ok(()),
                    Some(Ok(msg)) => {
                        // A record fetched is a broker reached, also before librdkafka's first
                        // statistics (every 2 s) say so: readiness then names the real problem.
                        self.stats.broker_up.store(true, Ordering::Relaxed);
                        self.process(&msg)
                    }
                }
            });
            let step = step.and_then(|()| {
                if last_tick.elapsed() >= tick_every {
                    last_tick = Instant::now();
                    self.tick()?;
                }
                match &self.open {
                    Some(o) if o.records >= batch_max || o.started.elapsed() >= interval => self.commit(consumer),
                    _ => Ok(()),
                }
            });
            match step {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    failed_at = Some(Instant::now());
                    self.handle_failure(consumer, shutdown, backoff, e)?;
                    backoff.wait(shutdown);
                }
            }
        }
    }
}

/// W3C trace context `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`; anything else is not passed on.
pub fn valid_traceparent(tp: &[u8]) -> bool {
    let hex = |b: &[u8]| !b.is_empty() && b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    let parts: Vec<&[u8]> = tp.split(|c| *c == b'-').collect();
    parts.len() == 4
        && [2, 32, 16, 2].iter().zip(&parts).all(|(n, p)| p.len() == *n && hex(p))
        && parts[0] != b"ff"
        && parts[1].iter().any(|c| *c != b'0')
        && parts[2].iter().any(|c| *c != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_checked() {
        assert!(valid_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(!valid_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
        assert!(!valid_traceparent(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
        assert!(!valid_traceparent(&[0xff, 0x00, b'-', 0x12]));
        assert!(!valid_traceparent(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    }
}
