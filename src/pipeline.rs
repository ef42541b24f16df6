//! The one generic consume → decode → route → encode → produce loop, exactly once.
//!
//! Each route runs on its own thread with its own consumer and transactional producer. A
//! transaction is opened at the first record of a batch and committed, with the consumer offsets
//! sent to it (EOS v2), after `batch_max_records` records or `batch_max_interval`. Any failure
//! aborts it and rewinds the consumer to the committed offsets, so every input is either fully
//! processed once or not at all. The loop knows no route: routes only turn a typed input into
//! typed outputs.

use crate::codec::{Codec, CodecError};
use crate::config::Config;
use crate::events::{ce_headers, dlq_headers, find, Cause, Event};
use apache_avro::types::Value;
use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

/// A translation and rule step between one input topic and its outputs. No Kafka in here.
pub trait Route: Send + Sync + 'static {
    type Input;
    /// Short name, used in logs and the transactional id.
    fn name(&self) -> &'static str;
    fn input_topic(&self) -> &str;
    /// Every topic the route writes Avro to, with its record schema (registered at start).
    fn outputs(&self) -> Vec<(String, Schema)>;
    /// Turn the framed input bytes into the input type; usually `codec.decode` with the route's
    /// reader schema.
    fn decode(&self, codec: &Codec, rt: &Handle, bytes: &[u8]) -> Result<Self::Input, CodecError>;
    /// Turn one input into its outputs. An `Err` is a record that cannot be processed: it goes to
    /// the dead-letter topic. Business rejections are outputs (terugmeldingen), not errors.
    fn handle(&self, input: Self::Input) -> anyhow::Result<Vec<Output>>;
}

/// Decode an Avro input resolved to `T`'s own schema (what most routes' `decode` is).
pub fn decode_avro<T: DeserializeOwned + apache_avro::AvroSchema>(
    codec: &Codec,
    rt: &Handle,
    bytes: &[u8],
    reader: &Schema,
) -> Result<T, CodecError> {
    rt.block_on(codec.decode(bytes, reader))
}

#[derive(Debug, Clone)]
pub enum Payload {
    /// Encoded with the schema registered for the output topic.
    Avro(Value),
    /// Written as is (the benchmark's passthrough).
    Raw(Vec<u8>),
}

/// One record a route wants written.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub key: String,
    pub value: Payload,
    pub event: Event,
}

impl Output {
    pub fn new<T: Serialize>(
        topic: &str,
        key: String,
        record: &T,
        event: Event,
    ) -> anyhow::Result<Self> {
        Ok(Output {
            topic: topic.to_string(),
            key,
            value: Payload::Avro(apache_avro::to_value(record)?),
            event,
        })
    }
}

pub fn dlq_topic(input: &str) -> String {
    format!("{input}.dlq")
}

/// Sets a flag when the group takes partitions away, so the loop aborts what it holds of them.
#[derive(Default)]
struct GroupContext {
    rebalanced: AtomicBool,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            info!(partitions = tpl.count(), "partitions revoked");
            self.rebalanced.store(true, Ordering::SeqCst);
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            info!(partitions = tpl.count(), "partitions assigned");
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
        Backoff {
            next: initial,
            initial,
            max,
        }
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

/// The running state of one route's loop.
struct Pipeline<R: Route> {
    route: R,
    cfg: Config,
    codec: Codec,
    producer: ThreadedProducer<DefaultProducerContext>,
    rt: Handle,
    source: String,
    dlq: String,
    /// Open transaction: when it began and the next offset per input partition.
    open: Option<(Instant, BTreeMap<i32, i64>, usize)>,
}

/// Run `route` until `shutdown` is set. Blocks: call it from a dedicated thread.
pub fn run<R: Route>(
    route: R,
    cfg: &Config,
    rt: Handle,
    shutdown: Arc<AtomicBool>,
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

    let consumer: BaseConsumer<GroupContext> = cfg
        .client_config()
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create_with_context(GroupContext::default())?;
    let transactional_id = format!("{}-{}-{}", cfg.group_id, route.name(), cfg.instance_id);
    let producer: ThreadedProducer<DefaultProducerContext> = cfg
        .client_config()
        .set("transactional.id", &transactional_id)
        .set(
            "transaction.timeout.ms",
            p.transaction_timeout.as_millis().to_string(),
        )
        .set("linger.ms", "5")
        .create()?;
    // Fences a crashed predecessor with the same id and aborts its open transaction.
    loop {
        match producer.init_transactions(Duration::from_secs(30)) {
            Ok(()) => break,
            Err(e) => {
                warn!(route = route.name(), error = %e, "init_transactions failed, retrying");
                backoff.wait(&shutdown);
                if shutdown.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
        }
    }
    consumer.subscribe(&[route.input_topic()])?;
    let transactional_id = transactional_id.as_str();
    info!(
        route = route.name(),
        input = route.input_topic(),
        transactional_id,
        "route started"
    );

    let mut pipe = Pipeline {
        dlq: dlq_topic(route.input_topic()),
        source: cfg.ce_source(),
        route,
        cfg: cfg.clone(),
        codec,
        producer,
        rt,
        open: None,
    };
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
        loop {
            if shutdown.load(Ordering::SeqCst) {
                return match self.commit(consumer) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = self.abort_and_rewind(consumer);
                        Err(anyhow::anyhow!(
                            "could not commit the last transaction at shutdown (aborted): {e}"
                        ))
                    }
                };
            }
            let wait = match &self.open {
                Some((started, _, _)) => interval.saturating_sub(started.elapsed()),
                None => Duration::from_millis(100),
            };
            let polled = consumer.poll(wait);
            // A revocation during this poll: what the open transaction holds of the revoked
            // partitions must not be committed by us, so drop it all and start again.
            if consumer.context().rebalanced.swap(false, Ordering::SeqCst) && self.open.is_some() {
                info!(
                    route = self.route.name(),
                    "rebalance: aborting the open transaction"
                );
                self.recover(consumer, shutdown, backoff);
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
            let step = step.and_then(|()| match &self.open {
                Some((started, _, n)) if *n >= batch_max || started.elapsed() >= interval => {
                    self.commit(consumer)
                }
                _ => Ok(()),
            });
            match step {
                Ok(()) => backoff.reset(),
                Err(StepError::Transient(e)) => {
                    warn!(route = self.route.name(), error = %e, "transient failure: transaction aborted, retrying");
                    self.recover(consumer, shutdown, backoff);
                    backoff.wait(shutdown);
                }
                Err(StepError::Fatal(e)) => {
                    let _ = self.abort_and_rewind(consumer);
                    anyhow::bail!("route {} stopped: {e}", self.route.name());
                }
            }
        }
    }

    /// Decode, route and encode one record, and queue its outputs (or its dead letter).
    fn process(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), StepError> {
        if self.open.is_none() {
            self.producer.begin_transaction().map_err(from_kafka)?;
            self.open = Some((Instant::now(), BTreeMap::new(), 0));
        }
        let cause = Cause {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            traceparent: find(msg.headers(), "traceparent"),
        };
        match self.translate(msg.payload()) {
            Ok(records) => {
                for (out, bytes) in records {
                    let headers = ce_headers(&out.event, &self.source, &cause);
                    let rec = BaseRecord::to(&out.topic)
                        .key(out.key.as_bytes())
                        .payload(&bytes)
                        .headers(headers);
                    self.send(rec)?;
                }
            }
            Err(CodecError::Transient(e)) => return Err(StepError::Transient(e)),
            Err(CodecError::BadData { class, message }) => {
                warn!(
                    route = self.route.name(),
                    topic = cause.topic,
                    partition = cause.partition,
                    offset = cause.offset,
                    class,
                    "bad record sent to the dead-letter topic"
                );
                let headers = dlq_headers(msg.headers(), &cause, class, &message);
                let mut rec: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(&self.dlq).headers(headers);
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
            }
        }
        let (_, offsets, n) = self.open.as_mut().expect("transaction is open");
        offsets.insert(msg.partition(), msg.offset() + 1);
        *n += 1;
        Ok(())
    }

    fn translate(&self, payload: Option<&[u8]>) -> Result<Vec<(Output, Vec<u8>)>, CodecError> {
        let bad = |class, message: String| CodecError::BadData { class, message };
        let bytes = payload.ok_or_else(|| bad("null-value", "the record has no value".into()))?;
        let max = self.cfg.pipeline.max_record_bytes;
        if bytes.len() > max {
            return Err(bad(
                "oversize",
                format!("{} bytes, more than the {max} allowed", bytes.len()),
            ));
        }
        let input = self.route.decode(&self.codec, &self.rt, bytes)?;
        let outputs = self
            .route
            .handle(input)
            .map_err(|e| bad("processing-error", format!("{e:#}")))?;
        outputs
            .into_iter()
            .map(|o| {
                let bytes = match &o.value {
                    Payload::Avro(v) => self.codec.encode(&o.topic, v.clone())?,
                    Payload::Raw(b) => b.clone(),
                };
                Ok((o, bytes))
            })
            .collect()
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
        let Some((_, offsets, n)) = self.open.take() else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in &offsets {
            tpl.add_partition_offset(self.route.input_topic(), *partition, Offset::Offset(*next))
                .map_err(from_kafka)?;
        }
        let timeout = Duration::from_secs(30);
        let group = consumer
            .group_metadata()
            .ok_or_else(|| StepError::Transient("no consumer group metadata yet".into()))?;
        self.producer
            .send_offsets_to_transaction(&tpl, &group, timeout)
            .map_err(from_kafka)?;
        self.producer
            .commit_transaction(timeout)
            .map_err(from_kafka)?;
        debug!(
            route = self.route.name(),
            records = n,
            "transaction committed"
        );
        Ok(())
    }

    /// Abort and rewind until it succeeds: reading on from the current position after a failed
    /// rewind would skip the aborted records.
    fn recover(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
    ) {
        while let Err(e) = self.abort_and_rewind(consumer) {
            warn!(route = self.route.name(), error = %e, "rewind failed, retrying");
            backoff.wait(shutdown);
            if shutdown.load(Ordering::SeqCst) {
                // Nothing was committed past the aborted records: the next start reads them again.
                return;
            }
        }
    }

    /// Abort the open transaction (if any) and seek every assigned partition back to its
    /// committed offset, so the aborted records are read again.
    fn abort_and_rewind(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
    ) -> Result<(), KafkaError> {
        self.open = None;
        if let Err(e) = self.producer.abort_transaction(Duration::from_secs(30)) {
            // Nothing open is fine; a producer that cannot abort fails again on the next begin.
            debug!(route = self.route.name(), error = %e, "abort_transaction");
        }
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
