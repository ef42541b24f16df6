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
use crate::events::{ce_headers, dlq_headers, find, Cause, Event};
use crate::model::Timestamp;
use crate::state::Store;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    fn prepare(&mut self, _shutdown: &AtomicBool) -> anyhow::Result<()> {
        Ok(())
    }
    /// Turn the framed input bytes into the input type; usually `decode_avro`.
    fn decode(&self, codec: &Codec, rt: &Handle, bytes: &[u8]) -> Result<Self::Input, CodecError>;
    /// Turn one input into its outputs. An `Err` is a record that cannot be processed: it goes to
    /// the dead-letter topic and its state changes are undone. Business rejections are outputs
    /// (terugmeldingen), not errors.
    fn handle(&mut self, input: Self::Input, ctx: &mut Ctx<'_, Self::State>) -> anyhow::Result<Vec<Output>>;
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
        })
    }
}

/// Retry a start-up step that can fail for a while (metadata of a topic just created, a broker
/// still electing leaders) every 500 ms for up to two minutes, or until shutdown.
pub fn with_retries<T>(
    what: &str,
    shutdown: &AtomicBool,
    mut step: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match step() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline && !shutdown.load(Ordering::SeqCst) => {
                debug!(error = %format!("{e:#}"), "{what} failed, retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.context(format!("{what} failed for two minutes"))),
        }
    }
}

pub fn dlq_topic(input: &str) -> String {
    format!("{input}.dlq")
}

/// What a route reports while it runs: readiness and counters, for `/ready` and `/metrics`.
#[derive(Default)]
pub struct Stats {
    /// Subscribed: its schemas are registered and its tables read.
    pub ready: AtomicBool,
    /// The route's loop has ended (shutdown or failure).
    pub stopped: AtomicBool,
    /// Input records whose transaction committed.
    pub records: AtomicU64,
    /// Of those, records sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
}

/// Records what the group did during `poll`, so the loop can act on it on its own thread.
#[derive(Default)]
struct GroupContext {
    route: &'static str,
    revoked: Mutex<Vec<i32>>,
    assigned: Mutex<Vec<i32>>,
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            info!(route = self.route, partitions = ?partitions_of(tpl), "partitions revoked");
            self.revoked.lock().unwrap_or_else(|p| p.into_inner()).extend(partitions_of(tpl));
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            info!(route = self.route, partitions = ?partitions_of(tpl), "partitions assigned");
            self.assigned.lock().unwrap_or_else(|p| p.into_inner()).extend(partitions_of(tpl));
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    /// Broker or registry unavailable: abort, rewind, back off, try again.
    #[error("transient: {0}")]
    Transient(String),
    /// The producer or transaction can no longer be used: the route stops with this error.
    #[error("fatal: {0}")]
    Fatal(String),
}

fn from_kafka(e: KafkaError) -> StepError {
    match &e {
        KafkaError::Transaction(re) if re.is_fatal() => StepError::Fatal(e.to_string()),
        _ => StepError::Transient(e.to_string()),
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
}

/// The running state of one route's loop.
struct Pipeline<R: Route> {
    route: R,
    cfg: Config,
    codec: Codec,
    producer: ThreadedProducer<DefaultProducerContext>,
    transactional_id: String,
    rt: Handle,
    source: String,
    dlq: String,
    store: Store<R::State>,
    open: Option<Open>,
    stats: Arc<Stats>,
}

/// A transactional producer, initialised: `init_transactions` fences a predecessor with the same
/// id (a crashed process, or this route's own failed producer) and aborts its open transaction.
/// `None` when shutdown came first.
fn new_producer(
    cfg: &Config,
    transactional_id: &str,
    shutdown: &AtomicBool,
    backoff: &mut Backoff,
) -> anyhow::Result<Option<ThreadedProducer<DefaultProducerContext>>> {
    let mut config = cfg.producer_config();
    if !cfg.kafka.contains_key("retry.backoff.ms") && !cfg.kafka_producer.contains_key("retry.backoff.ms") {
        // A transaction's first request after a commit is often answered CONCURRENT_TRANSACTIONS
        // while the markers are written; librdkafka's default 100 ms backoff would add to every
        // transaction.
        config.set("retry.backoff.ms", "10");
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", cfg.pipeline.transaction_timeout.as_millis().to_string())
        .set("linger.ms", "5")
        .create()?;
    loop {
        match producer.init_transactions(Duration::from_secs(30)) {
            Ok(()) => return Ok(Some(producer)),
            Err(e) => {
                warn!(transactional_id, error = %e, "init_transactions failed, retrying");
                backoff.wait(shutdown);
                if shutdown.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
        }
    }
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
    let mut backoff = Backoff::new(p.retry_backoff_initial, p.retry_backoff_max);
    let mut codec = Codec::new(cfg.sr_settings()?);
    for (topic, schema) in route.outputs() {
        loop {
            match rt.block_on(codec.prepare_output(&topic, schema.clone())) {
                Ok(id) => break debug!(topic, id, "output schema ready"),
                Err(CodecError::Transient(e)) => {
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
    route.prepare(&shutdown)?;

    let consumer: BaseConsumer<GroupContext> = cfg
        .consumer_config()
        .set("group.id", cfg.route_group(route.name()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create_with_context(GroupContext { route: route.name(), ..GroupContext::default() })?;
    if let Some(changelog) = route.changelog() {
        let count = |t: &str| -> anyhow::Result<usize> {
            let md = consumer.fetch_metadata(Some(t), Duration::from_secs(30))?;
            let n = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
            anyhow::ensure!(n > 0, "topic {t} does not exist; run `topics apply`");
            Ok(n)
        };
        let (input, log) =
            with_retries("reading topic metadata", &shutdown, || Ok((count(route.input_topic())?, count(changelog)?)))?;
        anyhow::ensure!(
            log >= input && input > 0,
            "changelog {changelog} has {log} partitions, fewer than the {input} of {}; run `topics apply`",
            route.input_topic()
        );
    }
    let transactional_id = format!("{}-{}-{}", cfg.group_id, route.name(), cfg.instance_id);
    let Some(producer) = new_producer(cfg, &transactional_id, &shutdown, &mut backoff)? else { return Ok(()) };
    consumer.subscribe(&[route.input_topic()])?;
    info!(
        route = route.name(),
        input = route.input_topic(),
        transactional_id = transactional_id.as_str(),
        "route started"
    );

    let mut pipe = Pipeline {
        dlq: dlq_topic(route.input_topic()),
        source: cfg.ce_source(),
        route,
        cfg: cfg.clone(),
        codec,
        producer,
        transactional_id,
        rt,
        store: Store::default(),
        open: None,
        stats: stats.clone(),
    };
    stats.ready.store(true, Ordering::SeqCst);
    let result = pipe.run_loop(&consumer, &shutdown, &mut backoff);
    info!(route = pipe.route.name(), "route stopped");
    result
}

impl<R: Route> Pipeline<R> {
    fn run_loop(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
    ) -> anyhow::Result<()> {
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
                return Ok(());
            }
            let wait = match &self.open {
                Some(o) => interval.saturating_sub(o.started.elapsed()),
                None => Duration::from_millis(100),
            };
            let polled = consumer.poll(wait);
            if !self.after_rebalance(consumer, shutdown, backoff) {
                // The open transaction was aborted: whatever was polled is read again.
                continue;
            }
            let step = match polled {
                None => Ok(()),
                Some(Err(e)) => {
                    warn!(route = self.route.name(), error = %e, "consumer error");
                    Ok(())
                }
                Some(Ok(msg)) => self.process(&msg),
            };
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
                Err(StepError::Transient(e)) => {
                    warn!(route = self.route.name(), error = %e, "transient failure: transaction aborted, retrying");
                    self.recover(consumer, shutdown, backoff);
                    backoff.wait(shutdown);
                }
                Err(StepError::Fatal(e)) => {
                    // The producer is unusable (librdkafka raises fatal errors, e.g. a broker
                    // answering INVALID_TXN_STATE to an abort). A new one with the same
                    // transactional id aborts whatever the old one left open; then read again
                    // from the committed offsets.
                    error!(route = self.route.name(), error = %e, "producer failed; replacing it");
                    self.open = None;
                    self.store.rolled_back();
                    self.stats.aborts.fetch_add(1, Ordering::Relaxed);
                    match new_producer(&self.cfg, &self.transactional_id, shutdown, backoff)? {
                        Some(p) => self.producer = p,
                        None => return Ok(()),
                    }
                    self.recover(consumer, shutdown, backoff);
                }
            }
        }
    }

    /// Act on what the group did during the last poll. A revocation while a transaction is open
    /// aborts it (we must not commit output for partitions we no longer own): returns false then.
    /// Newly assigned partitions get their state rebuilt before any of their records is processed.
    fn after_rebalance(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
    ) -> bool {
        let revoked: Vec<i32> =
            std::mem::take(&mut *consumer.context().revoked.lock().unwrap_or_else(|p| p.into_inner()));
        let assigned: Vec<i32> =
            std::mem::take(&mut *consumer.context().assigned.lock().unwrap_or_else(|p| p.into_inner()));
        let mut kept_going = true;
        if !revoked.is_empty() {
            if self.open.is_some() {
                info!(route = self.route.name(), "rebalance: aborting the open transaction");
                self.recover(consumer, shutdown, backoff);
                kept_going = false;
            }
            self.store.forget(&revoked);
        }
        if !assigned.is_empty() {
            if let Some(changelog) = self.route.changelog().map(str::to_string) {
                let client = self.cfg.reader_config(&format!("{}-restore", self.cfg.group_id));
                while let Err(e) = self.store.restore(&client, &changelog, &assigned) {
                    warn!(route = self.route.name(), error = %e, "restoring state failed, retrying");
                    backoff.wait(shutdown);
                    if shutdown.load(Ordering::SeqCst) {
                        return false;
                    }
                }
                info!(route = self.route.name(), partitions = ?assigned, entries = self.store.len(), "state restored");
            }
        }
        kept_going
    }

    fn begin(&mut self) -> Result<(), StepError> {
        if self.open.is_none() {
            self.producer.begin_transaction().map_err(from_kafka)?;
            self.open = Some(Open {
                started: Instant::now(),
                offsets: BTreeMap::new(),
                records: 0,
                inputs: 0,
                dead_letters: 0,
            });
        }
        Ok(())
    }

    /// Decode, route and encode one record, and queue its outputs, state changes (or its dead letter).
    fn process(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), StepError> {
        self.begin()?;
        let cause = Cause {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            traceparent: find(msg.headers(), "traceparent"),
        };
        let mark = self.store.mark();
        match self.translate(msg.partition(), msg.payload()) {
            Ok(records) => self.send_all(records, &cause)?,
            Err(CodecError::Transient(e)) => return Err(StepError::Transient(e)),
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
                let headers = dlq_headers(msg.headers(), &cause, class, &message);
                let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.dlq).headers(headers);
                if let Some(k) = msg.key() {
                    rec = rec.key(k);
                }
                if let Some(v) = msg.payload() {
                    rec = rec.payload(v);
                }
                if let Some(ts) = msg.timestamp().to_millis() {
                    rec = rec.timestamp(ts);
                }
                self.send(rec)?;
                self.open.as_mut().expect("transaction is open").dead_letters += 1;
            }
        }
        let open = self.open.as_mut().expect("transaction is open");
        open.offsets.insert(msg.partition(), msg.offset() + 1);
        open.records += 1;
        open.inputs += 1;
        Ok(())
    }

    /// Time-driven work of the route, in the current (or a new) transaction.
    fn tick(&mut self) -> Result<(), StepError> {
        let mark = self.store.mark();
        let mut ctx = Ctx { now: Timestamp::now(), partition: -1, state: &mut self.store };
        let outputs = match self.route.tick(&mut ctx) {
            Ok(o) => o,
            Err(e) => {
                self.store.rollback_to(mark);
                warn!(route = self.route.name(), error = %format!("{e:#}"), "timer work failed; tried again next tick");
                return Ok(());
            }
        };
        let records: Result<Vec<_>, CodecError> = outputs.into_iter().map(|o| self.encode(o)).collect();
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
        let cause = Cause { topic: "timer", partition: -1, offset: -1, traceparent: None };
        let n = records.len();
        self.send_all(records, &cause)?;
        self.open.as_mut().expect("transaction is open").records += n.max(1);
        Ok(())
    }

    fn encode(&self, o: Output) -> Result<(Output, Vec<u8>), CodecError> {
        let bytes = match &o.value {
            Payload::Avro(r) => self.codec.encode(&o.topic, r.as_ref())?,
            Payload::Raw(b) => b.clone(),
        };
        Ok((o, bytes))
    }

    fn translate(&mut self, partition: i32, payload: Option<&[u8]>) -> Result<Vec<(Output, Vec<u8>)>, CodecError> {
        let bad = |class, message: String| CodecError::BadData { class, message };
        let bytes = payload.ok_or_else(|| bad("null-value", "the record has no value".into()))?;
        let max = self.cfg.pipeline.max_record_bytes;
        if bytes.len() > max {
            return Err(bad("oversize", format!("{} bytes, more than the {max} allowed", bytes.len())));
        }
        let input = self.route.decode(&self.codec, &self.rt, bytes)?;
        let mut ctx = Ctx { now: Timestamp::now(), partition, state: &mut self.store };
        let outputs = self.route.handle(input, &mut ctx).map_err(|e| bad("processing-error", format!("{e:#}")))?;
        outputs.into_iter().map(|o| self.encode(o)).collect()
    }

    /// Send a record's outputs, then the state changes it made (to the changelog).
    fn send_all(&mut self, records: Vec<(Output, Vec<u8>)>, cause: &Cause<'_>) -> Result<(), StepError> {
        for (out, bytes) in records {
            let headers = ce_headers(&out.event, &self.source, cause);
            let mut rec = BaseRecord::to(&out.topic).key(out.key.as_bytes()).payload(&bytes).headers(headers);
            if let Some(p) = out.partition {
                rec = rec.partition(p);
            }
            self.send(rec)?;
        }
        let changes = self.store.take_pending();
        if let Some(changelog) = self.route.changelog() {
            let changelog = changelog.to_string();
            for (partition, key, value) in &changes {
                let mut rec: BaseRecord<'_, str, [u8]> =
                    BaseRecord::to(&changelog).key(key.as_str()).partition(*partition);
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
        mut rec: BaseRecord<'_, K, P>,
    ) -> Result<(), StepError> {
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                // A full local queue is back-pressure: wait for deliveries, then send again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(from_kafka(e)),
            }
        }
    }

    fn commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), StepError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let timeout = Duration::from_secs(30);
        let t0 = Instant::now();
        if !open.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (partition, next) in &open.offsets {
                tpl.add_partition_offset(self.route.input_topic(), *partition, Offset::Offset(*next))
                    .map_err(from_kafka)?;
            }
            let group = consumer
                .group_metadata()
                .ok_or_else(|| StepError::Transient("no consumer group metadata yet".into()))?;
            self.producer.send_offsets_to_transaction(&tpl, &group, timeout).map_err(from_kafka)?;
        }
        let t1 = Instant::now();
        // Wait for the deliveries here: rust-rdkafka's commit flushes by polling in 100 ms slices,
        // which with the producer's own polling thread costs 100 ms a transaction.
        self.await_deliveries(timeout);
        self.producer.commit_transaction(timeout).map_err(from_kafka)?;
        self.store.committed();
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(open.inputs, Ordering::Relaxed);
        self.stats.dead_letters.fetch_add(open.dead_letters, Ordering::Relaxed);
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

    /// Wait (at most `bound`) until every record sent has been acknowledged or failed.
    fn await_deliveries(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Abort and rewind until it succeeds: reading on from the current position after a failed
    /// rewind would skip the aborted records.
    fn recover(&mut self, consumer: &BaseConsumer<GroupContext>, shutdown: &AtomicBool, backoff: &mut Backoff) {
        while let Err(e) = self.abort_and_rewind(consumer) {
            warn!(route = self.route.name(), error = %e, "rewind failed, retrying");
            backoff.wait(shutdown);
            if shutdown.load(Ordering::SeqCst) {
                // Nothing was committed past the aborted records: the next start reads them again.
                return;
            }
        }
    }

    /// Abort the open transaction (if any), undo its state changes, and seek every assigned
    /// partition back to its committed offset, so the aborted records are read again.
    fn abort_and_rewind(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), KafkaError> {
        if self.open.take().is_some() {
            self.stats.aborts.fetch_add(1, Ordering::Relaxed);
            // Let in-flight records land first: an abort sent while librdkafka is still adding
            // the transaction's partitions has been answered INVALID_TXN_STATE (a fatal error).
            self.await_deliveries(Duration::from_secs(5));
            if let Err(e) = self.producer.abort_transaction(Duration::from_secs(30)) {
                // A producer that cannot abort fails again on the next begin, as fatal.
                debug!(route = self.route.name(), error = %e, "abort_transaction");
            }
        }
        self.store.rolled_back();
        let assigned = consumer.assignment()?;
        if assigned.count() == 0 {
            return Ok(());
        }
        let committed = consumer.committed_offsets(assigned, Duration::from_secs(30))?;
        let mut tpl = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(n) => Offset::Offset(n),
                _ => Offset::Beginning,
            };
            tpl.add_partition_offset(e.topic(), e.partition(), offset)?;
        }
        consumer.seek_partitions(tpl, Duration::from_secs(30))?;
        Ok(())
    }
}
