//! What a route is to the pipeline: the `Route` trait, what it sees (`Ctx`, `Decoder`, `Start`),
//! what it hands back (`Output`) and why it may fail (`RouteError`, each kind handled as what it is).

use crate::codec::{Codec, CodecError};
use crate::events::{Event, Link};
use crate::health::Stats;
use crate::model::Timestamp;
use crate::state::Store;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::runtime::Handle;

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
    /// Runs before the route joins its group: e.g. wait until its global tables are read, learn
    /// the partition count of a topic it places records in itself.
    fn prepare(&mut self, _start: &Start<'_>) -> anyhow::Result<()> {
        Ok(())
    }
    /// Turn the framed input bytes into the input type; usually `decode_avro`.
    fn decode(&self, decoder: &Decoder<'_>, bytes: &[u8]) -> Result<Self::Input, CodecError>;
    /// Turn one input into its outputs. Business rejections are outputs (terugmeldingen), not
    /// errors; an `Err` is handled by its kind (`RouteError`), its state changes undone.
    fn handle(&mut self, input: Self::Input, ctx: &mut Ctx<'_, Self::State>) -> Result<Vec<Output>, RouteError>;
    /// When a state entry next needs `tick` (a deadline, a reminder, the moment it is forgotten):
    /// the store keeps a time index of it, and `tick` gets only what is due (`ctx.state.due`).
    fn schedule(&self) -> Option<crate::state::Schedule<Self::State>> {
        None
    }
    /// Time-driven work (scheduled publication, expiry), called every `tick_interval`.
    fn tick(&mut self, _ctx: &mut Ctx<'_, Self::State>) -> Result<Vec<Output>, RouteError> {
        Ok(vec![])
    }
}

/// Why a route could not turn an input (or the passing of time) into outputs.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The input breaks a rule that no terugmelding or weigering answers (no id to answer to, a
    /// moment out of range): a dead letter (`processing-error`).
    #[error("{0}")]
    BadInput(String),
    /// The bridge's own mistake, not the input's (an output it cannot make, a schedule that
    /// disagrees with the work): a dead letter of its own class (`bridge-error`), logged as an
    /// error, so the input waits there to be replayed once the bridge is fixed.
    #[error("a bug in the bridge: {0}")]
    Bug(String),
    /// Something besides the input that may come right by itself: the transaction is aborted
    /// and the input read again after a backoff; never a dead letter.
    #[error("{0}")]
    Transient(String),
}

impl RouteError {
    pub fn bad_input(message: impl std::fmt::Display) -> Self {
        RouteError::BadInput(message.to_string())
    }
    pub fn bug(message: impl std::fmt::Display) -> Self {
        RouteError::Bug(message.to_string())
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

/// How a route decodes its input: the codec and the runtime its registry calls run on, behind one
/// synchronous call, so routes know neither the registry client nor the runtime.
pub struct Decoder<'a> {
    codec: &'a Codec,
    rt: &'a Handle,
}

impl<'a> Decoder<'a> {
    pub fn new(codec: &'a Codec, rt: &'a Handle) -> Self {
        Decoder { codec, rt }
    }

    /// An Avro input resolved to the route's reader schema (what most routes' `decode` is).
    pub fn avro<T: DeserializeOwned>(&self, bytes: &[u8], reader: &Schema) -> Result<T, CodecError> {
        self.rt.block_on(self.codec.decode(bytes, reader))
    }
}

/// What a route may ask for before it joins its group (`Route::prepare`).
pub struct Start<'a> {
    pub(super) plumbing: &'a super::Plumbing,
    pub shutdown: &'a AtomicBool,
    pub stats: &'a Arc<Stats>,
}

impl Start<'_> {
    /// How many partitions `topic` has, waiting while it is not there yet.
    pub fn partition_count(&self, topic: &str) -> anyhow::Result<i32> {
        self.plumbing.partition_count(topic, self.shutdown, self.stats)
    }
}

pub use crate::codec::Record;

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
    ) -> Self {
        Output {
            topic: topic.to_string(),
            key,
            value: Payload::Avro(Box::new(record.clone())),
            event,
            partition: None,
            link: None,
        }
    }

    /// The same output, linked to the input that caused it (for work done later).
    pub fn caused_by(self, link: Option<&Link>) -> Self {
        Output { link: link.cloned(), ..self }
    }
}
