//! Repartitioning: copy each record of an input, byte for byte, to an internal topic keyed by the
//! id its state lives under, in the partition Kafka's default partitioner (murmur2) gives that key.
//! Two inputs written by different producers (GZAC's taken, the portal's antwoorden) thereby meet
//! in the same partition, and so in the same bridge instance and state, whatever partitioner or
//! partition count the producers used.

use crate::codec::CodecError;
use crate::config::Config;
use crate::events::Event;
use crate::partitioner::partition_for;
use crate::pipeline::{Ctx, Decoder, Output, Payload, Route, RouteError, Start};
use apache_avro::{AvroSchema, Schema};
use serde::de::DeserializeOwned;

pub struct Repartition<T> {
    name: &'static str,
    input: String,
    output: String,
    reader: Schema,
    key_of: fn(&T) -> String,
    partitions: i32,
}

impl<T: AvroSchema> Repartition<T> {
    pub fn new(cfg: &Config, name: &'static str, input: &str, output: &str, key_of: fn(&T) -> String) -> Self {
        Repartition {
            name,
            input: cfg.topic(input),
            output: cfg.topic(output),
            reader: T::get_schema(),
            key_of,
            partitions: 0,
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Route for Repartition<T> {
    /// The key the record moves under, and its original bytes.
    type Input = (String, Vec<u8>);
    type State = ();

    fn name(&self) -> &'static str {
        self.name
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn outputs(&self) -> Vec<(String, Schema)> {
        vec![]
    }
    fn prepare(&mut self, start: &Start<'_>) -> anyhow::Result<()> {
        self.partitions = start.partition_count(&self.output)?;
        Ok(())
    }
    fn decode(&self, decoder: &Decoder<'_>, bytes: &[u8]) -> Result<(String, Vec<u8>), CodecError> {
        // Decoding validates the record here, so bad data goes to this input's own DLQ.
        let record: T = decoder.avro(bytes, &self.reader)?;
        Ok(((self.key_of)(&record), bytes.to_vec()))
    }
    fn handle(&mut self, (key, bytes): (String, Vec<u8>), _: &mut Ctx<'_, ()>) -> Result<Vec<Output>, RouteError> {
        // A record without the id its state lives under is a dead letter here, on the topic its
        // producer wrote, not on the internal one.
        super::required("the id it is keyed by", &key)?;
        let partition = partition_for(key.as_bytes(), self.partitions);
        Ok(vec![Output {
            topic: self.output.clone(),
            event: Event {
                id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &bytes).to_string(),
                kind: "nl.gzac-portal-bridge.intern.herverdeeld",
                subject: key.clone(),
                ..Event::default()
            },
            key,
            value: Payload::Raw(bytes),
            partition: Some(partition),
            link: None,
        }])
    }
}
