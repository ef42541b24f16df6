//! The one generic consume → decode → route → encode → produce loop, exactly once.
//!
//! Each route runs on its own thread with its own consumer and transactional producer. A
//! transaction is opened at the first record of a batch and committed, with the consumer offsets
//! sent to it (EOS v2), after `batch_max_records` records or `batch_max_interval`. Any failure
//! aborts it, rolls the route's state back and rewinds the consumer to the committed offsets, so
//! every input is either fully processed once or not at all. The loop knows no route: routes
//! only turn a typed input (or the passing of time) into typed outputs and state changes.

use crate::codec::{Codec, CodecError};
use crate::config::Config;
use crate::events::{ce_headers, dlq_headers, find, truncated_headers, Cause, Event, Link};
pub use crate::health::Stats;
use crate::model::Timestamp;
use crate::state::Store;
use crate::watchdog::{Guarded, Hung};
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tracing::{debug, error, info, warn};

/// A translation and rule step between one input topic and its outputs. No Kafka in here.
pub trait Route: Send + 'static {
    type Input;
    /// Per-key state kept in a changelog topic (`()` for stateless routes).
    type State: Clone + Serialize + DeserializeOwned + Send;
    /// Short name, used in logs and the transactional id.
    fn name(&self) -> &'static str;
    fn input_topic(&self) -> &str;
    /// Every topic the route writes Avro to, with its record schema (registered at start).
    fn outputs(&self) -> Vec<(String, Schema)>;
    /// The compacted changelog topic of the route's state, when it keeps any.
    fn changelog(&self) -> Option<&str> {
        None
    }
    /// Runs before the route joins its group: e.g. wait until its global tables are read.
    fn prepare(&mut self, _shutdown: &AtomicBool, _stats: &Arc<Stats>) -> anyhow::Result<()> {
        Ok(())
    }
    /// Turn the framed input bytes into the input type; usually `decode_avro`.
    fn decode(&self, codec: &Codec, rt: &Handle, bytes: &[u8]) -> Result<Self::Input, CodecError>;
    /// Turn one input into its outputs. An `Err` is a record that cannot be processed: it goes to
    /// the dead-letter topic and its state changes are undone. Business rejections are outputs
    /// (terugmeldingen), not errors.
    fn handle(&mut self, input: Self::Input, ctx: &mut Ctx<'_, Self::State>) -> anyhow::Result<Vec<Output>>;
    /// When a state entry next needs `tick` (a deadline, a reminder, the moment it is forgotten):
    /// the store keeps a time index of it, and `tick` gets only what is due (`ctx.state.due`).
    fn schedule(&self) -> Option<crate::state::Schedule<Self::State>> {
        None
    }
    /// Time-driven work (scheduled publication, expiry), called every `tick_interval`.
    fn tick(&mut self, _ctx: &mut Ctx<'_, Self::State>) -> anyhow::Result<Vec<Output>> {
        Ok(vec![])
    }
}

/// What a route sees besides its input: the time, the input's partition and its state.
pub struct Ctx<'a, S> {
    pub now: Timestamp,
    /// The input record's partition (state of other keys lives in other partitions).
    pub partition: i32,
    pub state: &'a mut Store<S>,
    /// The input being handled (`None` in `tick`): keep it in state for outputs made later.
    pub link: Option<&'a Link>,
}

impl<S: Clone + Serialize + DeserializeOwned> Ctx<'_, S> {
    pub fn get(&self, key: &str) -> Option<&S> {
        self.state.get(self.partition, key)
    }
    pub fn put(&mut self, key: &str, value: Option<S>) {
        self.state.put(self.partition, key, value)
    }
}

/// Decode an Avro input resolved to the route's reader schema (what most routes' `decode` is).
pub fn decode_avro<T: DeserializeOwned>(
    codec: &Codec,
    rt: &Handle,
    bytes: &[u8],
    reader: &Schema,
) -> Result<T, CodecError> {
    rt.block_on(codec.decode(bytes, reader))
}

/// A record a route hands over; the pipeline encodes it with the output topic's writer, by serde
/// straight into Avro (no intermediate `Value`).
pub trait Record: Send + std::fmt::Debug {
    fn write(&self, writer: &GenericDatumWriter<'_>, out: &mut Vec<u8>) -> apache_avro::AvroResult<usize>;
}

impl<T: Serialize + Send + std::fmt::Debug> Record for T {
    fn write(&self, writer: &GenericDatumWriter<'_>, out: &mut Vec<u8>) -> apache_avro::AvroResult<usize> {
        writer.write_ser(out, self)
    }
}

#[derive(Debug)]
pub enum Payload {
    /// Encoded with the schema registered for the output topic.
    Avro(Box<dyn Record>),
    /// Written as is (repartitioning, the benchmark's passthrough).
    Raw(Vec<u8>),
}

/// One record a route wants written.
#[derive(Debug)]
pub struct Output {
    pub topic: String,
    pub key: String,
    pub value: Payload,
    pub event: Event,
    /// A fixed partition (repartitioning); otherwise the producer's partitioner picks one.
    pub partition: Option<i32>,
    /// The input this output answers to, when it is not the record being handled (timer work).
    pub link: Option<Link>,
}

impl Output {
    pub fn new<T: Serialize + Send + Clone + std::fmt::Debug + 'static>(
        topic: &str,
        key: String,
        record: &T,
        event: Event,
    ) -> anyhow::Result<Self> {
        Ok(Output {
            topic: topic.to_string(),
            key,
            value: Payload::Avro(Box::new(record.clone())),
            event,
            partition: None,
            link: None,
        })
    }

    /// The same output, linked to the input that caused it (for work done later).
    pub fn caused_by(self, link: Option<&Link>) -> Self {
        Output { link: link.cloned(), ..self }
    }
}

/// An error no retry fixes (a missing ACL): `with_retries` gives up on it at once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unfixable(pub String);

/// The partition ids of `topic`. A topic the principal may not see is `Unfixable` (it names the
/// ACL); one that does not exist (yet) is an ordinary error, retried.
pub(crate) fn partition_ids(consumer: &BaseConsumer<GroupContext>, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let t = md.topics().first();
    if let Some(RDKafkaErrorCode::TopicAuthorizationFailed) = t.and_then(|t| t.error()).map(RDKafkaErrorCode::from) {
        return Err(Unfixable(format!(
            "the broker does not let the bridge's principal see topic {topic}: grant it Describe and Read/Write there (`acls plan --role bridge`)"
        ))
        .into());
    }
    let ids: Vec<i32> = t.map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    anyhow::ensure!(!ids.is_empty(), "topic {topic} does not exist; run `topics apply`");
    Ok(ids)
}

/// How many partitions `topic` has, asked by `route` at start (a topic just created may need a
/// moment): what a route that picks its output partitions itself (murmur2) divides by.
pub fn partition_count(
    client: &rdkafka::ClientConfig,
    route: &'static str,
    topic: &str,
    shutdown: &AtomicBool,
    stats: &Arc<Stats>,
) -> anyhow::Result<i32> {
    let c: BaseConsumer<GroupContext> = client.create_with_context(GroupContext::new(route, topic, stats.clone()))?;
    with_retries(&format!("reading the metadata of {topic}"), shutdown, stats, &|| unfixable_of(&c), || {
        Ok(partition_ids(&c, topic)?.len() as i32)
    })
}

/// How long one metadata request may take before it is tried again: short, so that a refused
/// credential (seen between attempts) stops the route within seconds.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Retry a start-up step that can fail for a while (metadata of a topic just created, a broker
/// that is down) until it succeeds or shutdown — however long the outage: the component stays not
/// ready, and `stats` says why (so `/health` fails once it lasts past `stall_timeout`).
/// An error no retry fixes (a missing ACL, refused credentials) is returned at once.
pub fn with_retries<T>(
    what: &str,
    shutdown: &AtomicBool,
    stats: &Stats,
    unfixable: &dyn Fn() -> Option<String>,
    mut step: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut warned = Instant::now();
    let mut pause = Duration::from_millis(200);
    loop {
        match step() {
            Ok(v) => {
                stats.recovered();
                return Ok(v);
            }
            // Refused credentials or a missing ACL: no retry helps, say what to do at once —
            // except a missing ACL in the first minute, which may be one just created.
            Err(e)
                if e.is::<Unfixable>()
                    && !authorisation_may_lag(stats, Some(RDKafkaErrorCode::TopicAuthorizationFailed)) =>
            {
                return Err(e)
            }
            Err(e) if let Some(why) = unfixable() => return Err(e.context(why)),
            Err(_) if shutdown.load(Ordering::SeqCst) => anyhow::bail!("{what}: stopped while retrying"),
            Err(e) => {
                stats.retrying(&format!("{what}: {e:#}"));
                if warned.elapsed() >= Duration::from_secs(30) {
                    warned = Instant::now();
                    warn!(error = %format!("{e:#}"), waited_s = started.elapsed().as_secs(), "{what} still failing, retrying");
                } else {
                    debug!(error = %format!("{e:#}"), "{what} failed, retrying");
                }
                let until = Instant::now() + pause;
                while Instant::now() < until && !shutdown.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What a client's error callbacks said that no retry fixes (serves them first: librdkafka
/// reports refused credentials as an error event, not as the failed call's error).
pub(crate) fn unfixable_of(consumer: &BaseConsumer<GroupContext>) -> Option<String> {
    // A consumer returns error events from poll (nothing is assigned yet: no records come).
    while let Some(polled) = consumer.poll(Duration::ZERO) {
        if let Err(e) = polled {
            if authorisation_may_lag(&consumer.context().stats, e.rdkafka_error_code()) {
                consumer.context().stats.retrying(&format!("{e}: waiting for ACLs just created to arrive"));
                continue;
            }
            if let Some(hint) = e.rdkafka_error_code().and_then(unfixable) {
                return Some(format!("{}: {e} — {hint}", consumer.context().name));
            }
        }
    }
    consumer.context().take_fatal()
}

pub fn dlq_topic(input: &str) -> String {
    format!("{input}.dlq")
}

/// Records what the group did during `poll`, so the loop can act on it on its own thread, and
/// turns librdkafka's statistics into the component's lag and broker state. Also used by the
/// global tables' readers (which assign, so only the statistics matter there).
pub(crate) struct GroupContext {
    pub(crate) name: &'static str,
    pub(crate) topic: String,
    pub(crate) revoked: Mutex<Vec<i32>>,
    pub(crate) assigned: Mutex<Vec<i32>>,
    pub(crate) stats: Arc<Stats>,
    /// A client error that retrying cannot fix (authentication, a missing ACL).
    pub(crate) fatal: Mutex<Option<String>>,
    /// The static member was fenced (`FENCED_INSTANCE_ID`): its own session ran out during an
    /// outage, or a second instance uses our `instance_id`. The consumer is unusable either way.
    pub(crate) fenced: Mutex<Option<String>>,
    /// Topics other than `topic` in the last assignment: a stale assignment of a static member
    /// that read other topics before (an upgrade, another prefix).
    pub(crate) foreign: Mutex<Vec<String>>,
    /// librdkafka's statistics saw no broker up at some point since this was last cleared.
    pub(crate) broker_was_down: AtomicBool,
    /// The partitions the last statistics reported lag for (their gauges are dropped when gone).
    lag_partitions: Mutex<Vec<i32>>,
}

impl GroupContext {
    pub(crate) fn new(name: &'static str, topic: &str, stats: Arc<Stats>) -> Self {
        GroupContext {
            name,
            topic: topic.to_string(),
            revoked: Mutex::default(),
            assigned: Mutex::default(),
            stats,
            fatal: Mutex::default(),
            fenced: Mutex::default(),
            foreign: Mutex::default(),
            broker_was_down: AtomicBool::new(false),
            lag_partitions: Mutex::default(),
        }
    }
    pub(crate) fn take_fatal(&self) -> Option<String> {
        lock(&self.fatal).take()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for GroupContext {
    /// librdkafka's log, as rust-rdkafka logs it; and refused credentials, which librdkafka only
    /// logs (no error event), become the route's fatal error.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if message.contains("SASL authentication error") {
            *lock(&self.fatal) = Some(format!(
                "{}: {message} — {}",
                self.name,
                unfixable(RDKafkaErrorCode::Authentication).unwrap_or_default()
            ));
        }
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
            L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
        }
    }
    fn stats(&self, s: Statistics) {
        let up = s.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
        self.stats.broker_up.store(up, Ordering::Relaxed);
        if !up {
            self.broker_was_down.store(true, Ordering::Relaxed);
        }
        let Some(topic) = s.topics.get(&self.topic) else { return };
        let mut lag = 0i64;
        let label = |p: i32| vec![("partition".to_string(), p.to_string())];
        let mut seen = Vec::new();
        for p in topic.partitions.values().filter(|p| p.partition >= 0 && p.desired) {
            let at = [p.app_offset, p.committed_offset, p.lo_offset].into_iter().find(|o| *o >= 0);
            if let (Some(at), true) = (at, p.ls_offset >= 0) {
                let behind = (p.ls_offset - at).max(0);
                lag += behind;
                self.stats.partition_lag.get_or_create(&label(p.partition)).set(behind);
                seen.push(p.partition);
            }
        }
        // Set in place (a scrape never sees a half-filled family); partitions gone are dropped.
        let mut last = lock(&self.lag_partitions);
        for gone in last.iter().filter(|p| !seen.contains(p)) {
            self.stats.partition_lag.remove(&label(*gone));
        }
        // No assigned partition with a known position: the lag stays unknown (health watches that).
        if !seen.is_empty() {
            self.stats.set_lag(lag);
        }
        *last = seen;
    }
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        match code.and_then(unfixable) {
            // A fenced static member: this consumer is done for, but a new one under the same
            // group.instance.id may rejoin (the loop decides; see `Exit::Fenced`).
            _ if code == Some(RDKafkaErrorCode::FencedInstanceId) => {
                *lock(&self.fenced) = Some(format!("{}: {reason}", self.name))
            }
            Some(hint) if authorisation_may_lag(&self.stats, code) => {
                warn!(component = self.name, reason, "refused by an ACL; waiting for ACLs just created to arrive");
                self.stats.retrying(&format!("{reason} — {hint}"));
            }
            Some(hint) => *lock(&self.fatal) = Some(format!("{}: {reason} — {hint}", self.name)),
            // A fatal consumer error wraps its cause, which the client names by code
            // (`fatal_error`): the group loop reads it there; a table reader stops on it.
            None if code == Some(RDKafkaErrorCode::Fatal) => {
                *lock(&self.fatal) = Some(format!("{}: {reason}", self.name))
            }
            // librdkafka logs these itself; it reconnects and retries on its own.
            None => debug!(component = self.name, error = %error, reason, "kafka client error"),
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            info!(route = self.name, partitions = ?partitions_of(tpl), "partitions revoked");
            self.stats.assigned(0);
            lock(&self.revoked).extend(partitions_of(tpl));
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(route = self.name, partitions = ?partitions_of(tpl), "partitions assigned");
                let (ours, theirs): (Vec<_>, Vec<_>) =
                    tpl.elements().into_iter().partition(|e| e.topic() == self.topic);
                lock(&self.assigned).extend(ours.iter().map(|e| e.partition()));
                self.stats.assigned(ours.len());
                let mut foreign = lock(&self.foreign);
                foreign.extend(theirs.iter().map(|e| e.topic().to_string()));
                foreign.dedup();
            }
            Rebalance::Error(e) => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::FencedInstanceId) {
                    *lock(&self.fenced) = Some(format!("{}: {e}", self.name));
                } else if let Some(hint) = e.rdkafka_error_code().and_then(unfixable) {
                    *lock(&self.fatal) = Some(format!("{}: {e} — {hint}", self.name));
                }
            }
            _ => {}
        }
    }
}

/// A refusal by an ACL within `pipeline.authorisation_grace` of start, while ACLs just created
/// (a deploy job's `acls apply`, then the pods) may still be on their way: retried, not a stop.
fn authorisation_may_lag(stats: &Stats, code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    let authz = [
        C::TopicAuthorizationFailed,
        C::GroupAuthorizationFailed,
        C::TransactionalIdAuthorizationFailed,
        C::ClusterAuthorizationFailed,
    ];
    code.is_some_and(|c| authz.contains(&c)) && stats.in_grace()
}

/// Kafka errors that no retry can fix, with what the operator has to do.
fn unfixable(code: RDKafkaErrorCode) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    Some(match code {
        C::Authentication | C::SaslAuthenticationFailed => {
            "the broker refused the bridge's credentials: check sasl.username / sasl.password"
        }
        C::TransactionalIdAuthorizationFailed => {
            "grant the principal Write and Describe on its transactional-id prefix (`<group_id>.`; `acls plan`)"
        }
        C::TopicAuthorizationFailed => "grant the bridge's principal Read/Write on the route's topics",
        C::GroupAuthorizationFailed => "grant the bridge's principal Read on its consumer groups (`<group_id>.`)",
        C::ClusterAuthorizationFailed => "grant the bridge's principal IdempotentWrite on the cluster",
        C::FencedInstanceId => {
            "another running instance uses the same instance_id (group.instance.id); give every instance its own"
        }
        _ => return None,
    })
}

/// Broker answers on a produced record that a retry will never change: the input that made it
/// is dead-lettered instead.
fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(code, C::MessageSizeTooLarge | C::InvalidRecord | C::InvalidMessage | C::MessageBatchTooLarge)
}

/// Which input record a produced record belongs to: (partition, offset); (-1, -1) for timer work.
type Origin = (i32, i64);

/// Delivery reports of the transactional producer: outputs the broker refused for good.
#[derive(Default)]
struct Deliveries {
    refused: Mutex<Vec<(Origin, String)>>,
    unauthorised: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Origin>;
    fn delivery(&self, result: &DeliveryResult<'_>, origin: Box<Origin>) {
        if let Err((e, m)) = result {
            let code = e.rdkafka_error_code();
            if let Some(hint) = code.and_then(unfixable) {
                *lock(&self.unauthorised) = Some(format!("writing {}: {e} — {hint}", m.topic()));
            } else if code.is_some_and(refused_for_good) {
                lock(&self.refused).push((*origin, format!("{} refused the output: {e}", m.topic())));
            }
        }
    }
}

type TxProducer = Guarded<Deliveries>;

/// The longest a single transactional call may wait (it is called again while time is left):
/// short, so that a call librdkafka does not return from is noticed within seconds.
const ATTEMPT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum StepError {
    /// Broker or registry unavailable, or an abortable transaction error: abort, rewind, back
    /// off, try again.
    #[error("transient: {0}")]
    Transient(String),
    /// The producer is unusable or a commit's outcome is unknown: a new producer, the state of
    /// the assigned partitions rebuilt from the changelog, read again from the committed offsets.
    #[error("producer unusable: {0}")]
    Fatal(String),
    /// Retrying cannot fix it (credentials, ACLs, a second instance with our id): the route stops.
    #[error("{0}")]
    Stop(String),
}

fn classify(what: &str, e: &KafkaError) -> StepError {
    if let Some(hint) = e.rdkafka_error_code().and_then(unfixable) {
        return StepError::Stop(format!("{what}: {e} — {hint}"));
    }
    match e {
        KafkaError::Transaction(re) if re.is_fatal() => StepError::Fatal(format!("{what}: {e}")),
        _ => StepError::Transient(format!("{what}: {e}")),
    }
}

struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff { next: initial, initial, max }
    }
    fn wait(&mut self, shutdown: &AtomicBool) {
        let until = Instant::now() + self.next;
        while Instant::now() < until && !shutdown.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.next = (self.next * 2).min(self.max);
    }
    fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// The open transaction: when it began, the next offset per input partition, records in it.
struct Open {
    started: Instant,
    offsets: BTreeMap<i32, i64>,
    records: usize,
    /// Input records (not timer work) in it, and how many of them went to the dead-letter topic.
    inputs: u64,
    dead_letters: u64,
    /// Output records sent in it, dead-letter classes, and the inputs' timestamps (ms): metrics
    /// once it commits.
    outputs: u64,
    classes: Vec<&'static str>,
    input_times: Vec<i64>,
}

/// The running state of one route's loop.
struct Pipeline<R: Route> {
    route: R,
    cfg: Config,
    codec: Codec,
    producer: TxProducer,
    transactional_id: String,
    shutdown: Arc<AtomicBool>,
    rt: Handle,
    source: String,
    dlq: String,
    /// The largest record each output topic (the dead-letter topic and the changelog) takes,
    /// when that was read, and the topics it covers.
    limits: Limits,
    limits_read: Instant,
    written: Vec<String>,
    /// Base of the `ce_dataschema` URLs.
    registry_url: String,
    store: Store<R::State>,
    /// Set from `begin_transaction` until the commit or abort has succeeded.
    open: Option<Open>,
    /// Inputs whose output the broker refused for good: dead-lettered when read again.
    refused: BTreeMap<Origin, String>,
    /// Producers replaced in a row without a commit in between (a second process with our id).
    replaced: u32,
    stats: Arc<Stats>,
}

/// A transactional producer, initialised: `init_transactions` fences a predecessor with the same
/// id (a crashed process, or this route's own failed producer) and aborts or completes its open
/// transaction. `None` when shutdown came first.
fn new_producer(
    cfg: &Config,
    transactional_id: &str,
    message_max_bytes: usize,
    shutdown: &AtomicBool,
    backoff: &mut Backoff,
    stats: &Stats,
) -> Result<Option<TxProducer>, StepError> {
    let mut config = cfg.producer_config();
    if !cfg.kafka.contains_key("retry.backoff.ms") && !cfg.kafka_producer.contains_key("retry.backoff.ms") {
        // A transaction's first request after a commit is often answered CONCURRENT_TRANSACTIONS
        // while the markers are written; librdkafka's default 100 ms backoff would add to every
        // transaction.
        config.set("retry.backoff.ms", "10");
    }
    if !cfg.kafka.contains_key("partitioner") && !cfg.kafka_producer.contains_key("partitioner") {
        // Java's partitioner (murmur2) rather than librdkafka's crc32, so that a Valtimo/Spring
        // consumer finds a key in the partition its own producers would put it in.
        config.set("partitioner", "murmur2_random");
    }
    if config.get("linger.ms").is_none() {
        // A transaction is committed every `batch_max_interval`: waiting longer per batch of
        // records only adds latency (librdkafka's default is 5 ms too; set it to be sure).
        config.set("linger.ms", "5");
    }
    let timeout = cfg.pipeline.transaction_timeout;
    let producer: ThreadedProducer<Deliveries> = config
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", timeout.as_millis().to_string())
        .set("message.max.bytes", message_max_bytes.to_string())
        .create_with_context(Deliveries::default())
        .map_err(|e| StepError::Stop(format!("cannot create the producer: {e}")))?;
    let mut producer = Guarded::new(producer, transactional_id)
        .map_err(|e| StepError::Stop(format!("cannot start the producer's thread: {e}")))?;
    loop {
        let attempt = timeout.min(ATTEMPT * 2);
        let init = producer.call("init_transactions", attempt, shutdown, |p, t| p.init_transactions(t));
        match init {
            Ok(Ok(())) => return Ok(Some(producer)),
            Err(hung) => {
                // A producer stuck in init is given up like any other: a new one takes its id.
                error!(transactional_id, error = %hung, "producer hung; making a new one");
                if shutdown.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                let fresh: ThreadedProducer<Deliveries> = config
                    .create_with_context(Deliveries::default())
                    .map_err(|e| StepError::Stop(format!("cannot create the producer: {e}")))?;
                producer = Guarded::new(fresh, transactional_id)
                    .map_err(|e| StepError::Stop(format!("cannot start the producer's thread: {e}")))?;
            }
            Ok(Err(e)) => {
                let what = format!("init_transactions for transactional id {transactional_id}");
                if let StepError::Stop(m) = classify(&what, &e) {
                    if !authorisation_may_lag(stats, e.rdkafka_error_code()) {
                        return Err(StepError::Stop(m));
                    }
                }
                warn!(transactional_id, error = %e, "init_transactions failed, retrying");
                backoff.wait(shutdown);
                if shutdown.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
        }
    }
}

/// Size limits: the largest input the route takes, and the largest record (key, value and
/// headers) each written topic takes — the producer's `message.max.bytes` and the topic's
/// `max.message.bytes`, whichever is smaller.
#[derive(PartialEq)]
struct Limits {
    input: usize,
    producer: usize,
    topics: HashMap<String, usize>,
}

/// How old the limits may be before a record about to be dead-lettered as too large makes the
/// route read them again (an operator who raised `max.message.bytes` needs no restart).
const LIMITS_FRESH: Duration = Duration::from_secs(30);

/// Room for the record batch and record framing around key, value and headers.
const RECORD_OVERHEAD: usize = 512;
/// librdkafka's and Kafka's defaults.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
const DEFAULT_TOPIC_MAX_MESSAGE_BYTES: usize = 1_048_588;

impl Limits {
    fn of(&self, topic: &str) -> usize {
        self.topics.get(topic).copied().unwrap_or(self.producer).min(self.producer).saturating_sub(RECORD_OVERHEAD)
    }

    /// Read the topics' `max.message.bytes`. An operator who raised it on the topics raises what
    /// the bridge writes too, unless `message.max.bytes` is set for the producer.
    /// With both `message.max.bytes` and `pipeline.max_record_bytes` set, those are taken as
    /// they are (a topic that takes less then refuses the output: `output-refused`).
    fn read(cfg: &Config, input: &str, written: &[String], rt: &Handle) -> Limits {
        let mut all = written.to_vec();
        all.push(input.to_string());
        let configured: Option<usize> = cfg.producer_config().get("message.max.bytes").and_then(|v| v.parse().ok());
        let topics = if configured.is_some() && cfg.pipeline.max_record_bytes.is_some() {
            HashMap::new()
        } else {
            rt.block_on(topic_limits(cfg, &all)).unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the topics' max.message.bytes; using the defaults");
                HashMap::new()
            })
        };
        let producer = match configured {
            Some(set) => set,
            None => written
                .iter()
                .filter_map(|t| topics.get(t))
                .map(|n| n + RECORD_OVERHEAD)
                .fold(DEFAULT_MESSAGE_MAX_BYTES, usize::max)
                .min(1_000_000_000),
        };
        let input = cfg
            .pipeline
            .max_record_bytes
            .unwrap_or_else(|| topics.get(input).copied().unwrap_or(DEFAULT_TOPIC_MAX_MESSAGE_BYTES));
        Limits { input, producer, topics }
    }
}

async fn topic_limits(cfg: &Config, topics: &[String]) -> anyhow::Result<HashMap<String, usize>> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = cfg.client_config().create()?;
    let specs: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut out = HashMap::new();
    for (topic, res) in topics.iter().zip(admin.describe_configs(&specs, &opts).await?) {
        let value = res.ok().and_then(|r| r.get("max.message.bytes").and_then(|e| e.value.clone()));
        if let Some(n) = value.and_then(|v| v.parse().ok()) {
            out.insert(topic.clone(), n);
        }
    }
    Ok(out)
}

/// Bytes a record takes on the wire besides the batch framing: key, value and headers.
fn record_size(key: usize, value: usize, headers: &OwnedHeaders) -> usize {
    key + value + headers.iter().map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 8).sum::<usize>()
}

/// Run `route` until `shutdown` is set. Blocks: call it from a dedicated thread.
pub fn run<R: Route>(
    mut route: R,
    cfg: &Config,
    rt: Handle,
    shutdown: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> anyhow::Result<()> {
    let p = &cfg.pipeline;
    stats.grant_grace(p.authorisation_grace);
    // No length prefix may make the decoder allocate more than a fetch can hold (process-wide; first call wins).
    apache_avro::util::max_allocation_bytes(64 << 20);
    let mut backoff = Backoff::new(p.retry_backoff_initial, p.retry_backoff_max);
    let mut codec = Codec::new(cfg.sr_settings()?);
    for (topic, schema) in route.outputs() {
        loop {
            match rt.block_on(codec.prepare_output(&topic, schema.clone())) {
                Ok(id) => break debug!(topic, id, "output schema ready"),
                Err(CodecError::Transient(e)) => {
                    stats.retrying(&format!("registry unavailable: {e}"));
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
    route.prepare(&shutdown, &stats)?;

    let mut consumer = group_consumer(cfg, route.name(), route.input_topic(), &stats)?;
    if let Some(changelog) = route.changelog() {
        let count = |t: &str| partition_ids(&consumer, t).map(|ids| ids.len());
        let (input, log) =
            with_retries("reading topic metadata", &shutdown, &stats, &|| unfixable_of(&consumer), || {
                Ok((count(route.input_topic())?, count(changelog)?))
            })?;
        anyhow::ensure!(
            log >= input && input > 0,
            "changelog {changelog} has {log} partitions, fewer than the {input} of {}; run `topics apply`",
            route.input_topic()
        );
    }
    let dlq = dlq_topic(route.input_topic());
    let mut written: Vec<String> = route.outputs().into_iter().map(|(t, _)| t).collect();
    written.push(dlq.clone());
    written.extend(route.changelog().map(str::to_string));
    let limits = Limits::read(cfg, route.input_topic(), &written, &rt);
    let transactional_id = cfg.transactional_id(route.name());
    let producer = match new_producer(cfg, &transactional_id, limits.producer, &shutdown, &mut backoff, &stats) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        Err(e) => anyhow::bail!("{e}"),
    };
    if shutdown.load(Ordering::SeqCst) {
        return Ok(());
    }
    consumer.subscribe(&[route.input_topic()])?;
    info!(
        route = route.name(),
        input = route.input_topic(),
        transactional_id = transactional_id.as_str(),
        "route started"
    );

    let mut store = Store::sealed(crate::encryption::StateCipher::from_config(&cfg.state_encryption)?.map(Arc::new));
    if let Some(schedule) = route.schedule() {
        store = store.scheduled(schedule);
    }
    let mut pipe = Pipeline {
        dlq,
        source: cfg.ce_source(),
        route,
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
        store,
        open: None,
        refused: BTreeMap::new(),
        replaced: 0,
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
                warn!(
                    route = pipe.route.name(),
                    reason, "static member fenced (its session ran out); rejoining the group"
                );
            }
            Ok(Exit::Stale(topics)) => {
                // A static member that rejoined within its session with other topics is handed
                // its old assignment without a rebalance. Leaving the group (unsubscribe sends
                // LeaveGroup) removes the member, and the next join is assigned afresh.
                warn!(route = pipe.route.name(), assigned = ?topics, input = pipe.route.input_topic(),
                    "assigned partitions of topics this route does not read (a stale static assignment); leaving and joining again");
                pipe.stats.retrying(&format!("stale assignment of {topics:?}; rejoining"));
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
        let new = match group_consumer(cfg, pipe.route.name(), pipe.route.input_topic(), &stats) {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        // The old member is closed before the new one joins under the same group.instance.id.
        close_within(std::mem::replace(&mut consumer, new), cfg.pipeline.shutdown_timeout / 2, pipe.route.name());
        if let Err(e) = consumer.subscribe(&[pipe.route.input_topic()]) {
            break Err(e.into());
        }
        rejoined = Some(Instant::now());
    };
    if let Err(e) = &result {
        stats.problem(&format!("{e:#}"));
    }
    let name = pipe.route.name();
    info!(route = name, "route stopped");
    close_within((consumer, pipe), cfg.pipeline.shutdown_timeout / 2, name);
    result
}

/// How one run of the group loop ended.
enum Exit {
    Shutdown,
    /// The static member was fenced: rejoin with a new consumer, or stop when it shows a second
    /// instance with our `instance_id`.
    Fenced(String),
    /// The group assigned partitions of other topics than the input: leave and join again.
    Stale(Vec<String>),
}

/// The route's consumer in its group `<group_id>.<route>` (not yet subscribed).
fn group_consumer(
    cfg: &Config,
    route: &'static str,
    input: &str,
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
        .create_with_context(GroupContext::new(route, input, stats.clone()))?)
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
        loop {
            if shutdown.load(Ordering::SeqCst) {
                if let Err(e) = self.commit(consumer) {
                    // Nothing is lost: aborted, its records are read again by whoever owns them next.
                    warn!(route = self.route.name(), error = %e, "last transaction could not commit at shutdown; aborted");
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
                return Ok(Exit::Stale(foreign));
            }
            let step = self.after_rebalance(consumer, shutdown, backoff).and_then(|kept_going| {
                if !kept_going {
                    // The open transaction was aborted: whatever was polled is read again.
                    return Ok(());
                }
                match polled {
                    None => {
                        if self.open.is_none() && self.stats.broker_up.load(Ordering::Relaxed) {
                            self.stats.recovered();
                        }
                        Ok(())
                    }
                    Some(Err(e)) => match classify("consuming", &e) {
                        StepError::Stop(m) if !authorisation_may_lag(&self.stats, e.rdkafka_error_code()) => {
                            Err(StepError::Stop(m))
                        }
                        _ => {
                            self.stats.retrying(&format!("consumer: {e}"));
                            debug!(route = self.route.name(), error = %e, "consumer error");
                            Ok(())
                        }
                    },
                    // Left over from a stale assignment that is being given back: never ours.
                    Some(Ok(msg)) if msg.topic() != self.route.input_topic() => Ok(()),
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
                    self.handle_failure(consumer, shutdown, backoff, e)?;
                    backoff.wait(shutdown);
                }
            }
        }
    }

    /// The group membership is gone (fenced, or left to be assigned afresh): abort what is open,
    /// by a new producer when the abort fails, and forget every partition's state — the next
    /// assignment restores what it brings.
    fn membership_lost(&mut self, shutdown: &AtomicBool, backoff: &mut Backoff) -> Result<(), StepError> {
        if self.open.is_some() {
            self.await_deliveries(Duration::from_secs(5).min(self.cfg.pipeline.transaction_timeout));
            let abort = self.producer.call("abort_transaction", ATTEMPT, shutdown, |p, t| p.abort_transaction(t));
            if !matches!(abort, Ok(Ok(()))) {
                // The new producer's init_transactions aborts what the old one left open.
                if let Some(p) = new_producer(
                    &self.cfg,
                    &self.transactional_id,
                    self.limits.producer,
                    shutdown,
                    backoff,
                    &self.stats,
                )? {
                    self.producer = p;
                }
            }
            self.open = None;
            self.stats.aborts.fetch_add(1, Ordering::Relaxed);
        }
        self.store.rolled_back();
        self.store.forget_all();
        self.refused.clear();
        Ok(())
    }

    /// After a failed step, get back to a clean place: aborted and rewound, or a new producer with
    /// state rebuilt. Returns an error only for what retrying cannot fix.
    fn handle_failure(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
        mut e: StepError,
    ) -> anyhow::Result<()> {
        loop {
            if shutdown.load(Ordering::SeqCst) {
                // Nothing was committed past the failed records: the next start reads them again.
                return Ok(());
            }
            self.stats.retrying(&e.to_string());
            e = match e {
                StepError::Stop(m) => anyhow::bail!("{m}"),
                StepError::Transient(m) => {
                    warn!(route = self.route.name(), error = %m, "transaction aborted, retrying");
                    match self.abort_and_rewind(consumer) {
                        Ok(()) => return Ok(()),
                        Err(next) => {
                            backoff.wait(shutdown);
                            next
                        }
                    }
                }
                StepError::Fatal(m) => {
                    error!(route = self.route.name(), error = %m, "producer unusable; replacing it and rebuilding state");
                    match self.replace_producer(consumer, shutdown, backoff) {
                        Ok(()) => return Ok(()),
                        Err(next) => {
                            backoff.wait(shutdown);
                            next
                        }
                    }
                }
            };
        }
    }

    /// A new producer with the same transactional id (which aborts or completes whatever the old
    /// one left open), then the assigned partitions' state rebuilt from the changelog and the
    /// consumer rewound: whether the last commit landed or not, memory now agrees with Kafka.
    fn replace_producer(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
    ) -> Result<(), StepError> {
        self.replaced += 1;
        // Replaced again and again with the broker up all along: another process uses our
        // transactional id. During an outage replacing is what gets the route back: never stop.
        if self.replaced > 5 && !consumer.context().broker_was_down.load(Ordering::Relaxed) {
            return Err(StepError::Stop(format!(
                "the producer with transactional id {} was replaced {} times without a commit in between: \
                 another process probably uses the same instance_id; give every instance its own",
                self.transactional_id,
                self.replaced - 1
            )));
        }
        if self.open.take().is_some() {
            self.stats.aborts.fetch_add(1, Ordering::Relaxed);
        }
        self.store.rolled_back();
        match new_producer(&self.cfg, &self.transactional_id, self.limits.producer, shutdown, backoff, &self.stats)? {
            Some(p) => self.producer = p,
            None => return Ok(()),
        }
        let assigned: Vec<i32> = consumer
            .assignment()
            .map_err(|e| classify("reading the assignment", &e))?
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        self.restore(&assigned, shutdown, backoff);
        self.abort_and_rewind(consumer)
    }

    /// Act on what the group did during the last poll. A revocation while a transaction is open
    /// aborts it (we must not commit output for partitions we no longer own): Ok(false) then.
    /// Newly assigned partitions get their state rebuilt before any of their records is processed.
    fn after_rebalance(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
    ) -> Result<bool, StepError> {
        let revoked: Vec<i32> = std::mem::take(&mut *lock(&consumer.context().revoked));
        let assigned: Vec<i32> = std::mem::take(&mut *lock(&consumer.context().assigned));
        let mut outcome = Ok(true);
        if !revoked.is_empty() {
            if self.open.is_some() {
                info!(route = self.route.name(), "rebalance: aborting the open transaction");
                // A failed abort is handled by the caller; the partitions change hands regardless.
                outcome = self.abort_and_rewind(consumer).map(|()| false);
            }
            self.store.forget(&revoked);
        }
        self.restore(&assigned, shutdown, backoff);
        outcome
    }

    /// Rebuild the state of `partitions` from the changelog, retrying until it succeeds.
    fn restore(&mut self, partitions: &[i32], shutdown: &AtomicBool, backoff: &mut Backoff) {
        let Some(changelog) = self.route.changelog().map(str::to_string) else { return };
        if partitions.is_empty() {
            return;
        }
        self.stats.restoring.store(true, Ordering::SeqCst);
        let client = self.cfg.reader_config(&format!("{}restore", self.cfg.own_prefix()));
        loop {
            match self.store.restore(&client, &changelog, partitions) {
                Ok(skipped) => {
                    self.stats.rows.store(self.store.len() as i64, Ordering::Relaxed);
                    if skipped > 0 {
                        error!(
                            route = self.route.name(),
                            skipped, "changelog entries that no longer parse were skipped"
                        );
                        self.stats.bad_state_rows.fetch_add(skipped, Ordering::Relaxed);
                    }
                    break;
                }
                Err(e) => {
                    self.stats.retrying(&format!("restoring state: {e:#}"));
                    warn!(route = self.route.name(), error = %format!("{e:#}"), "restoring state failed, retrying");
                    backoff.wait(shutdown);
                    if shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                }
            }
        }
        self.stats.restoring.store(false, Ordering::SeqCst);
        info!(route = self.route.name(), partitions = ?partitions, entries = self.store.len(), "state restored");
    }

    /// A blocking transactional call under the watchdog. Hung, the producer is given up at once
    /// (a new one fences it) and health says so.
    fn guarded(
        &self,
        what: &'static str,
        timeout: Duration,
        op: impl FnOnce(&ThreadedProducer<Deliveries>, Duration) -> KafkaResult<()> + Send + 'static,
    ) -> Result<KafkaResult<()>, StepError> {
        self.producer.call(what, timeout, &self.shutdown, op).map_err(|hung: Hung| {
            let m = format!("{hung}; giving the producer up");
            error!(route = self.route.name(), transactional_id = self.transactional_id.as_str(), "{m}");
            self.stats.hung(&m);
            StepError::Fatal(m)
        })
    }

    fn begin(&mut self) -> Result<(), StepError> {
        if self.open.is_none() {
            // begin_transaction is local: it fails only when the producer is in a state we did not
            // expect, which a new producer clears.
            self.producer.get().begin_transaction().map_err(|e| StepError::Fatal(format!("begin_transaction: {e}")))?;
            self.open = Some(Open {
                started: Instant::now(),
                offsets: BTreeMap::new(),
                records: 0,
                inputs: 0,
                dead_letters: 0,
                outputs: 0,
                classes: Vec::new(),
                input_times: Vec::new(),
            });
        }
        Ok(())
    }

    fn open_mut(&mut self) -> &mut Open {
        self.open.as_mut().expect("a transaction is open")
    }

    /// Decode, route and encode one record, and queue its outputs, state changes (or its dead letter).
    fn process(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), StepError> {
        self.begin()?;
        let origin = (msg.partition(), msg.offset());
        let cause = Cause {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            traceparent: find(msg.headers(), "traceparent").filter(|tp| valid_traceparent(tp)),
        };
        let mark = self.store.mark();
        let mut result = match self.refused.get(&origin) {
            Some(reason) => Err(CodecError::BadData { class: "output-refused", message: reason.clone() }),
            None => self.translate(msg.partition(), msg.payload(), &cause.link()),
        };
        if result.is_ok() {
            if let Some(e) = self.state_too_large(mark) {
                result = Err(e);
            }
        }
        if matches!(result, Err(CodecError::BadData { class: "output-too-large", .. })) {
            self.limits_changed(mark)?;
        }
        match result {
            Ok(records) => self.send_all(records, origin)?,
            Err(CodecError::Transient(e)) => return Err(StepError::Transient(e)),
            Err(CodecError::Stop(e)) => return Err(StepError::Stop(e)),
            Err(CodecError::BadData { class, message }) => {
                self.store.rollback_to(mark);
                warn!(
                    route = self.route.name(),
                    topic = cause.topic,
                    partition = cause.partition,
                    offset = cause.offset,
                    class,
                    "bad record sent to the dead-letter topic"
                );
                self.dead_letter(msg, &cause, class, &message)?;
                self.open_mut().dead_letters += 1;
                self.open_mut().classes.push(class);
            }
        }
        let open = self.open_mut();
        open.input_times.extend(msg.timestamp().to_millis());
        open.offsets.insert(msg.partition(), msg.offset() + 1);
        open.records += 1;
        open.inputs += 1;
        Ok(())
    }

    /// A state entry the record made that its changelog would refuse: the record is a dead letter
    /// like one whose output is too large (checked before anything is sent).
    fn state_too_large(&self, mark: (usize, usize)) -> Option<CodecError> {
        let changelog = self.route.changelog()?;
        let limit = self.limits.of(changelog);
        let size = self.store.pending_since(mark).map(|(_, k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).max()?;
        (size > limit).then(|| CodecError::BadData {
            class: "output-too-large",
            message: format!("its state entry would be {size} bytes; {changelog} takes {limit}"),
        })
    }

    /// Before a record is dead-lettered as too large: read the topics' limits again (at most
    /// every `LIMITS_FRESH`). Raised since, the batch is read again with them — by a new producer
    /// when the producer's own limit must grow.
    fn limits_changed(&mut self, mark: (usize, usize)) -> Result<(), StepError> {
        if self.limits_read.elapsed() < LIMITS_FRESH {
            return Ok(());
        }
        let fresh = Limits::read(&self.cfg, self.route.input_topic(), &self.written, &self.rt);
        self.limits_read = Instant::now();
        if fresh == self.limits {
            return Ok(());
        }
        self.store.rollback_to(mark);
        let grew = fresh.producer > self.limits.producer;
        self.limits = fresh;
        info!(route = self.route.name(), "the topics' max.message.bytes changed; reading the batch again");
        Err(if grew {
            StepError::Fatal("the producer's message.max.bytes must grow with the topics'".into())
        } else {
            StepError::Transient("the topics' max.message.bytes changed".into())
        })
    }

    /// The original key, value, timestamp and headers plus `__connect.errors.*`; a value too large
    /// for the dead-letter topic is cut to fit, with its full size and SHA-256 in headers.
    fn dead_letter(
        &self,
        msg: &BorrowedMessage<'_>,
        cause: &Cause<'_>,
        class: &str,
        reason: &str,
    ) -> Result<(), StepError> {
        let key = msg.key().unwrap_or_default();
        let mut value = msg.payload();
        let mut headers = dlq_headers(msg.headers(), cause, class, reason);
        let room = self.limits.of(&self.dlq).saturating_sub(record_size(key.len(), 0, &headers) + 200);
        if let Some(v) = value.filter(|v| v.len() > room) {
            headers = truncated_headers(headers, v);
            value = Some(&v[..room]);
        }
        let mut rec: BaseRecord<'_, [u8], [u8], Box<Origin>> =
            BaseRecord::with_opaque_to(&self.dlq, Box::new((-1, -1))).headers(headers);
        if msg.key().is_some() {
            rec = rec.key(key);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        if let Some(ts) = msg.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        self.send(rec)
    }

    /// Time-driven work of the route, in the current (or a new) transaction.
    fn tick(&mut self) -> Result<(), StepError> {
        let mark = self.store.mark();
        let mut ctx = Ctx { now: Timestamp::now(), partition: -1, state: &mut self.store, link: None };
        let route = &mut self.route;
        let outputs = match catch_unwind(AssertUnwindSafe(|| route.tick(&mut ctx))) {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                self.store.rollback_to(mark);
                warn!(route = self.route.name(), error = %format!("{e:#}"), "timer work failed; tried again next tick");
                return Ok(());
            }
            Err(_) => {
                self.store.rollback_to(mark);
                return Err(StepError::Stop(format!("route {}: timer work panicked", self.route.name())));
            }
        };
        self.stats.timer_refusals.store(self.store.parked(), Ordering::Relaxed);
        let timer = Cause { topic: "timer", partition: -1, offset: -1, traceparent: None }.link();
        let records: Result<Vec<_>, CodecError> = outputs.into_iter().map(|o| self.encode(o, &timer)).collect();
        let records = match records {
            Ok(r) => r,
            Err(e) => {
                self.store.rollback_to(mark);
                warn!(route = self.route.name(), error = %e, "timer output could not be encoded");
                return Ok(());
            }
        };
        if records.is_empty() && self.store.pending_len() == 0 {
            return Ok(());
        }
        self.begin()?;
        let n = records.len();
        self.send_all(records, (-1, -1))?;
        self.open_mut().records += n.max(1);
        Ok(())
    }

    /// An output, encoded, with its headers; refused when no topic would take it. `input` is the
    /// record being handled, unless the output names the one that caused it.
    fn encode(&self, o: Output, input: &Link) -> Result<Encoded, CodecError> {
        let bytes = match &o.value {
            Payload::Avro(r) => self.codec.encode(&o.topic, r.as_ref())?,
            Payload::Raw(b) => b.clone(),
        };
        // The schema the value was written with, as the registry serves it.
        let dataschema = Codec::frame(&bytes).ok().map(|(id, _)| format!("{}/schemas/ids/{id}", self.registry_url));
        let headers = ce_headers(&o.event, &self.source, o.link.as_ref().unwrap_or(input), dataschema.as_deref());
        let size = record_size(o.key.len(), bytes.len(), &headers);
        let limit = self.limits.of(&o.topic);
        if size > limit {
            return Err(CodecError::BadData {
                class: "output-too-large",
                message: format!("its record for {} would be {size} bytes; the topic takes {limit}", o.topic),
            });
        }
        Ok(Encoded { output: o, bytes, headers })
    }

    fn translate(&mut self, partition: i32, payload: Option<&[u8]>, link: &Link) -> Result<Vec<Encoded>, CodecError> {
        let bad = |class, message: String| CodecError::BadData { class, message };
        let bytes = payload.ok_or_else(|| bad("null-value", "the record has no value".into()))?;
        let max = self.limits.input;
        if bytes.len() > max {
            return Err(bad("oversize", format!("{} bytes, more than the {max} allowed", bytes.len())));
        }
        // A panic on some input is a bug, but it must cost that record only, not the process.
        let (route, codec, rt, store) = (&mut self.route, &self.codec, &self.rt, &mut self.store);
        let outputs = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Output>, CodecError> {
            let input = route.decode(codec, rt, bytes)?;
            let mut ctx = Ctx { now: Timestamp::now(), partition, state: store, link: Some(link) };
            route.handle(input, &mut ctx).map_err(|e| bad("processing-error", format!("{e:#}")))
        }))
        .map_err(|p| bad("panic", panic_text(&p)))??;
        outputs.into_iter().map(|o| self.encode(o, link)).collect()
    }

    /// Send a record's outputs, then the state changes it made (to the changelog).
    fn send_all(&mut self, records: Vec<Encoded>, origin: Origin) -> Result<(), StepError> {
        self.open_mut().outputs += records.len() as u64;
        for Encoded { output, bytes, headers } in records {
            let mut rec = BaseRecord::with_opaque_to(&output.topic, Box::new(origin))
                .key(output.key.as_bytes())
                .payload(&bytes)
                .headers(headers);
            if let Some(p) = output.partition {
                rec = rec.partition(p);
            }
            self.send(rec)?;
        }
        let changes = self.store.take_pending();
        if let Some(changelog) = self.route.changelog() {
            let changelog = changelog.to_string();
            for (partition, key, value) in &changes {
                let mut rec: BaseRecord<'_, str, [u8], Box<Origin>> =
                    BaseRecord::with_opaque_to(&changelog, Box::new(origin)).key(key.as_str()).partition(*partition);
                if let Some(v) = value {
                    rec = rec.payload(v.as_slice());
                }
                self.send(rec)?;
            }
        }
        Ok(())
    }

    fn send<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
        &self,
        mut rec: BaseRecord<'_, K, P, Box<Origin>>,
    ) -> Result<(), StepError> {
        loop {
            match self.producer.get().send(rec) {
                Ok(()) => return Ok(()),
                // A full local queue is back-pressure: wait for deliveries, then send again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(classify("producing", &e)),
            }
        }
    }

    /// Offsets to the transaction, wait for deliveries, commit — each error by its class: a
    /// retriable one is retried until `transaction_timeout`, an abortable one aborts (the
    /// transaction stays `open` until the abort succeeded), a fatal one or a commit whose outcome
    /// stays unknown replaces the producer and rebuilds state.
    fn commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), StepError> {
        let Some(open) = &self.open else {
            return Ok(());
        };
        let deadline = Instant::now() + self.cfg.pipeline.transaction_timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let t0 = Instant::now();
        if !open.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (partition, next) in &open.offsets {
                tpl.add_partition_offset(self.route.input_topic(), *partition, Offset::Offset(*next))
                    .map_err(|e| StepError::Transient(e.to_string()))?;
            }
            let tpl = Arc::new(tpl);
            retry_retriable(left, |t| {
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| StepError::Transient("no consumer group metadata yet".into()))?;
                let tpl = tpl.clone();
                self.guarded("send_offsets_to_transaction", t, move |p, t| {
                    p.send_offsets_to_transaction(&tpl, &group, t)
                })
            })?
            .map_err(|e| classify("send_offsets_to_transaction", &e))?;
        }
        let t1 = Instant::now();
        // Wait for the deliveries here: rust-rdkafka's commit flushes by polling in 100 ms slices,
        // which with the producer's own polling thread costs 100 ms a transaction.
        self.await_deliveries(left());
        self.check_deliveries()?;
        match retry_retriable(left, |t| self.guarded("commit_transaction", t, |p, t| p.commit_transaction(t)))? {
            Ok(()) => {}
            Err(KafkaError::Transaction(re)) if re.txn_requires_abort() => {
                self.check_deliveries()?;
                return Err(StepError::Transient(format!("commit_transaction: {re}")));
            }
            Err(e) => {
                if let StepError::Stop(m) = classify("commit_transaction", &e) {
                    return Err(StepError::Stop(m));
                }
                // Fatal, or still retriable at the deadline: whether it landed is unknown.
                return Err(StepError::Fatal(format!("commit_transaction (outcome unknown): {e}")));
            }
        }
        let open = self.open.take().expect("a transaction was open");
        self.store.committed();
        self.stats.rows.store(self.store.len() as i64, Ordering::Relaxed);
        self.refused.clear();
        self.replaced = 0;
        self.stats.committed(open.inputs, open.dead_letters);
        let now = crate::model::Timestamp::system().0;
        self.stats.outputs.inc_by(open.outputs);
        self.stats.commit_seconds.observe(t0.elapsed().as_secs_f64());
        if open.inputs > 0 {
            self.stats.batch_records.observe(open.inputs as f64);
        }
        for t in &open.input_times {
            self.stats.end_to_end_seconds.observe((now - t).max(0) as f64 / 1000.0);
        }
        for class in &open.classes {
            self.stats.dead_letters_by_class.get_or_create(&vec![("class".to_string(), class.to_string())]).inc();
        }
        debug!(
            route = self.route.name(),
            records = open.records,
            open_ms = open.started.elapsed().as_millis() as u64,
            offsets_ms = (t1 - t0).as_millis() as u64,
            commit_ms = t1.elapsed().as_millis() as u64,
            "transaction committed"
        );
        Ok(())
    }

    /// Outputs the broker refused for good make their inputs dead letters on the next read; an
    /// ACL the producer lacks stops the route.
    fn check_deliveries(&mut self) -> Result<(), StepError> {
        let ctx = self.producer.get().context();
        if let Some(m) = lock(&ctx.unauthorised).take() {
            return Err(StepError::Stop(m));
        }
        let refused = std::mem::take(&mut *lock(&ctx.refused));
        if refused.is_empty() {
            return Ok(());
        }
        let mut timer = None;
        for (origin, reason) in refused {
            if origin.0 < 0 {
                timer = Some(reason);
            } else {
                self.refused.insert(origin, reason);
            }
        }
        if let Some(reason) = timer {
            return Err(StepError::Stop(format!("route {}: timer output refused: {reason}", self.route.name())));
        }
        Err(StepError::Transient(format!(
            "{} output(s) refused by the broker; their inputs go to the dead-letter topic",
            self.refused.len()
        )))
    }

    /// Wait (at most `bound`) until every record sent has been acknowledged or failed.
    fn await_deliveries(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while self.producer.get().in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Abort the open transaction (if any), undo its state changes, and seek every assigned
    /// partition back to its committed offset, so the aborted records are read again. The
    /// transaction stays open until its abort succeeded, so a failed abort is tried again.
    fn abort_and_rewind(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), StepError> {
        let timeout = self.cfg.pipeline.transaction_timeout;
        if self.open.is_some() {
            // Let in-flight records land first: an abort sent while librdkafka is still adding
            // the transaction's partitions has been answered INVALID_TXN_STATE (a fatal error).
            self.await_deliveries(Duration::from_secs(5).min(timeout));
            match self.guarded("abort_transaction", ATTEMPT.min(timeout), |p, t| p.abort_transaction(t))? {
                Ok(()) => {}
                Err(KafkaError::Transaction(re)) if re.is_retriable() => {
                    return Err(StepError::Transient(format!("abort_transaction: {re}")))
                }
                Err(e) => return Err(StepError::Fatal(format!("abort_transaction: {e}"))),
            }
            self.open = None;
            self.stats.aborts.fetch_add(1, Ordering::Relaxed);
        }
        self.store.rolled_back();
        let rewind = || -> KafkaResult<()> {
            let assigned = consumer.assignment()?;
            if assigned.count() == 0 {
                return Ok(());
            }
            let committed = consumer.committed_offsets(assigned, timeout)?;
            let mut tpl = TopicPartitionList::new();
            for e in committed.elements() {
                let offset = match e.offset() {
                    Offset::Offset(n) => Offset::Offset(n),
                    _ => Offset::Beginning,
                };
                tpl.add_partition_offset(e.topic(), e.partition(), offset)?;
            }
            consumer.seek_partitions(tpl, timeout)?;
            Ok(())
        };
        rewind().map_err(|e| classify("rewinding to the committed offsets", &e))
    }
}

/// An encoded output with its headers, checked against the topic's size limit.
struct Encoded {
    output: Output,
    bytes: Vec<u8>,
    headers: OwnedHeaders,
}

/// Call `op` (with at most `ATTEMPT` to take) again while it fails with a retriable error and
/// time is left.
fn retry_retriable(
    left: impl Fn() -> Duration,
    mut op: impl FnMut(Duration) -> Result<KafkaResult<()>, StepError>,
) -> Result<KafkaResult<()>, StepError> {
    loop {
        match op(left().min(ATTEMPT))? {
            Err(KafkaError::Transaction(re)) if re.is_retriable() && !left().is_zero() => {
                debug!(error = %re, "retriable transaction error, calling again");
                std::thread::sleep(Duration::from_millis(100).min(left()));
            }
            other => return Ok(other),
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    let text = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("processing panicked: {}", text.unwrap_or_else(|| "(no message)".into()))
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
