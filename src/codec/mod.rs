//! Confluent wire format (magic byte 0, 4-byte schema id, Avro binary) through a schema registry.
//! Decoding resolves the writer's schema (fetched by id) to the route's reader schema; encoding
//! uses the schema id registered for the output topic's subject. Only successes are cached: a
//! registry outage is retried, never remembered.

// from/to_avro_datum are deprecated in apache-avro 0.22 in favour of the datum builders; they
// resolve the same way.
#![allow(deprecated)]

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::Name;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{from_value, to_avro_datum, Schema};
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, get_schema_by_subject_and_version, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SchemaType, SuppliedSchema};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A record a route hands over; the pipeline encodes it with the output topic's writer, by serde
/// straight into Avro (no intermediate `Value`).
pub trait Record: Send + std::fmt::Debug {
    fn write(&self, writer: &GenericDatumWriter<'_>, out: &mut Vec<u8>) -> apache_avro::AvroResult<usize>;
}

impl<T: serde::Serialize + Send + std::fmt::Debug> Record for T {
    fn write(&self, writer: &GenericDatumWriter<'_>, out: &mut Vec<u8>) -> apache_avro::AvroResult<usize> {
        writer.write_ser(out, self)
    }
}

/// The dead-letter classes, each variant with its name, listed once: the enum, `ALL` and
/// `as_str` are made from the one list.
macro_rules! dead_letter_classes {
    ($($variant:ident => $name:literal,)*) => {
        /// Why a record went to its dead-letter topic (`__connect.errors.exception.class.name`).
        /// The README's list is held to it by a test.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum DeadLetterClass {
            $($variant,)*
        }

        impl DeadLetterClass {
            pub const ALL: &'static [DeadLetterClass] = &[$(DeadLetterClass::$variant,)*];

            /// The name in the dead letter's header and in metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DeadLetterClass::$variant => $name,)*
                }
            }
        }
    };
}

dead_letter_classes! {
    TooShort => "too-short",
    BadMagicByte => "bad-magic-byte",
    UnknownSchemaId => "unknown-schema-id",
    SchemaMismatch => "schema-mismatch",
    Undecodable => "undecodable",
    TooDeep => "too-deep",
    UnparsableWriterSchema => "unparsable-writer-schema",
    Oversize => "oversize",
    NullValue => "null-value",
    ProcessingError => "processing-error",
    OutputTooLarge => "output-too-large",
    OutputRefused => "output-refused",
    BridgeError => "bridge-error",
    Panic => "panic",
}

impl DeadLetterClass {
    /// Where it failed, as Kafka Connect's `Stage` names it (`__connect.errors.stage`): reading
    /// the value, the route's work on it, or writing what it became.
    pub fn stage(self) -> &'static str {
        use DeadLetterClass::*;
        match self {
            ProcessingError | BridgeError | Panic => "TRANSFORMATION",
            OutputTooLarge | OutputRefused => "KAFKA_PRODUCE",
            TooShort
            | BadMagicByte
            | UnknownSchemaId
            | SchemaMismatch
            | Undecodable
            | TooDeep
            | UnparsableWriterSchema
            | Oversize
            | NullValue => "VALUE_CONVERTER",
        }
    }
}

impl std::fmt::Display for DeadLetterClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record could not be decoded or encoded. `Transient` is retried; the rest are bad data.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The registry did not answer (or a route's `Transient`): read the record again later.
    #[error("{0}")]
    Transient(String),
    #[error("{class}: {message}")]
    BadData { class: DeadLetterClass, message: String },
    /// Retrying cannot fix it (the registry refuses the bridge's credentials).
    #[error("{0}")]
    Stop(String),
}

impl CodecError {
    fn bad(class: DeadLetterClass, message: impl ToString) -> Self {
        CodecError::BadData { class, message: message.to_string() }
    }
}

/// The registry's answer to a failed request: its Confluent `error_code` (`40403`: schema not
/// found) and the HTTP status that code carries (its first three digits; a three-digit code is
/// the status itself). `None` when no registry answered (a connection failure, a timeout) or its
/// answer was no Confluent error document.
fn registry_error(e: &SRCError) -> Option<(u32, u16)> {
    let raw = std::error::Error::source(e)?.downcast_ref::<RawError>()?;
    let code = raw.error_code;
    let status = if code >= 10_000 { code / 100 } else { code };
    (100..600).contains(&status).then_some((code, status as u16))
}

/// A registry error is bad data only when the registry answered that the schema does not exist
/// (Confluent error code 40403); any other 404 is a wrong URL or a registry still starting, and
/// refused credentials stop the bridge. Classified by the registry's error code, never by text.
fn classify(e: &SRCError) -> CodecError {
    let text = format!("{} {}", e.error, e.cause.as_deref().unwrap_or(""));
    let answer = registry_error(e);
    if answer.is_some_and(|(code, _)| code == 40403) {
        CodecError::bad(DeadLetterClass::UnknownSchemaId, text)
    } else if answer.is_some_and(|(_, status)| status == 401 || status == 403) {
        CodecError::Stop(format!(
            "the schema registry refuses the bridge's credentials ({text}): check registry.username / password"
        ))
    } else {
        CodecError::Transient(format!("registry unavailable: {text}"))
    }
}

/// How records of one writer schema become one reader type: built once, then reused, because
/// building it (resolving the schemata) costs more than decoding a record.
enum Decoder {
    /// The writer's schema is the reader's: serde straight from the bytes.
    Same(GenericDatumReader<'static>),
    /// Resolve to the reader's schema first; and the writer's schema alone, to tell bytes that
    /// do not decode from a value that does not resolve (a symbol the reader lacks).
    Resolve(GenericDatumReader<'static>, GenericDatumReader<'static>),
    /// The reader cannot read what this writer wrote.
    Incompatible,
}

/// Writer schema id → (reader name, decoder).
type Decoders = HashMap<u32, Vec<(Name, Arc<Decoder>)>>;

pub struct Codec {
    sr: SrSettings,
    writers: Mutex<HashMap<u32, &'static Schema>>,
    decoders: Mutex<Decoders>,
    /// Output topic → (schema id, writer).
    outputs: HashMap<String, (u32, GenericDatumWriter<'static>)>,
}

// Schemas are leaked into 'static so their readers and writers can be cached: there is one per
// writer schema id seen and per output topic, a bounded and small set.
fn leak(schema: Schema) -> &'static Schema {
    Box::leak(Box::new(schema))
}

impl Codec {
    pub fn new(sr: SrSettings) -> Self {
        Codec { sr, writers: Mutex::new(HashMap::new()), decoders: Mutex::new(HashMap::new()), outputs: HashMap::new() }
    }

    /// Register (or find) `schema` under `<topic>-value` and remember its id for encoding.
    pub async fn prepare_output(&mut self, topic: &str, schema: Schema) -> Result<u32, CodecError> {
        let subject = crate::schemas::subject(topic);
        let supplied =
            SuppliedSchema::new(None, SchemaType::Avro, serde_json::to_string(&schema).expect("schema serialises"));
        let id = match post_schema(&self.sr, subject.clone(), supplied).await {
            Ok(reg) => reg.id,
            Err(e) => {
                let text = format!("{} {}", e.error, e.cause.as_deref().unwrap_or(""));
                let status = registry_error(&e).map(|(_, status)| status);
                if matches!(status, Some(409 | 422)) {
                    return Err(CodecError::Stop(format!(
                        "the registry refuses the schema of {topic} as incompatible: {text}"
                    )));
                } else if status == Some(401) {
                    return Err(CodecError::Stop(format!(
                        "the schema registry refuses the bridge's credentials ({text}): check registry.username / password"
                    )));
                } else if status == Some(403) {
                    // Read-only rights: the schema must have been registered in advance.
                    self.registered(&subject, &schema).await?
                } else {
                    return Err(CodecError::Transient(format!("registry unavailable: {text}")));
                }
            }
        };
        let writer = GenericDatumWriter::builder(leak(schema))
            .build()
            .map_err(|e| CodecError::Stop(format!("the output schema of {topic} is unusable: {e}")))?;
        self.outputs.insert(topic.to_string(), (id, writer));
        Ok(id)
    }

    /// The id of `schema` as the latest version of `subject`, for a bridge that may only read the
    /// registry; anything else there is a stop that says how to fix it.
    async fn registered(&self, subject: &str, schema: &Schema) -> Result<u32, CodecError> {
        let hint = "register the bridge's schemas in advance with `schemas register` (as a user that may write)";
        let latest = get_schema_by_subject_and_version(&self.sr, subject, None).await.map_err(|e| {
            let text = format!("{} {}", e.error, e.cause.as_deref().unwrap_or(""));
            if registry_error(&e).is_some_and(|(_, status)| (400..500).contains(&status)) {
                CodecError::Stop(format!("the bridge may not register {subject} and finds none ({text}): {hint}"))
            } else {
                CodecError::Transient(format!("registry unavailable: {text}"))
            }
        })?;
        let same = Schema::parse_str(&latest.schema).is_ok_and(|s| s.canonical_form() == schema.canonical_form());
        if !same {
            return Err(CodecError::Stop(format!(
                "the latest schema of {subject} is not the bridge's and the bridge may not register its own: {hint}"
            )));
        }
        Ok(latest.id)
    }

    /// Split a Confluent-framed payload into schema id and Avro body, checking the length first.
    pub fn frame(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
        if bytes.len() < 5 {
            return Err(CodecError::bad(
                DeadLetterClass::TooShort,
                format!("{} bytes, a framed record needs at least 5", bytes.len()),
            ));
        }
        if bytes[0] != 0 {
            return Err(CodecError::bad(
                DeadLetterClass::BadMagicByte,
                format!("magic byte {} (expected 0)", bytes[0]),
            ));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        Ok((id, &bytes[5..]))
    }

    async fn writer_schema(&self, id: u32) -> Result<&'static Schema, CodecError> {
        if let Some(s) = self.writers.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(s);
        }
        let reg = get_schema_by_id(id, &self.sr).await.map_err(|e| classify(&e))?;
        let schema =
            Schema::parse_str(&reg.schema).map_err(|e| CodecError::bad(DeadLetterClass::UnparsableWriterSchema, e))?;
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(*writers.entry(id).or_insert_with(|| leak(schema)))
    }

    /// The full name of the record schema a framed value was written with.
    pub async fn writer_name(&self, bytes: &[u8]) -> Result<String, CodecError> {
        let (id, _) = Self::frame(bytes)?;
        let writer = self.writer_schema(id).await?;
        Ok(writer.name().map(|n| n.fullname(None)).unwrap_or_default())
    }

    async fn decoder(&self, id: u32, reader: &Schema) -> Result<Arc<Decoder>, CodecError> {
        let name = reader.name().cloned().unwrap_or_else(|| Name::new("anonymous").expect("valid name"));
        let cached = |d: &Decoders| d.get(&id).and_then(|v| v.iter().find(|(n, _)| *n == name).map(|(_, d)| d.clone()));
        if let Some(d) = cached(&self.decoders.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(d);
        }
        let writer = self.writer_schema(id).await?;
        let build = |r: Option<&'static Schema>| {
            GenericDatumReader::builder(writer)
                .maybe_reader_schema(r)
                .build()
                .map_err(|e| CodecError::bad(DeadLetterClass::SchemaMismatch, format!("schema id {id}: {e}")))
        };
        // Avro schema resolution decides, per record: a writer that only adds an enum symbol is
        // not fully compatible, yet its records with the old symbols resolve fine. Names matter
        // only as far as resolution says (unqualified record names, aliases).
        let decoder = if writer == reader && writer.canonical_form() == reader.canonical_form() {
            Decoder::Same(build(None)?)
        } else if matches!(SchemaCompatibility::can_read(writer, reader), Ok(Compatibility::Full))
            || same_unqualified_name(writer, reader)
        {
            match (build(Some(leak(reader.clone()))), build(None)) {
                (Ok(d), Ok(plain)) => Decoder::Resolve(d, plain),
                _ => Decoder::Incompatible,
            }
        } else {
            Decoder::Incompatible
        };
        let decoder = Arc::new(decoder);
        self.decoders.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default().push((name, decoder.clone()));
        Ok(decoder)
    }

    /// A value read with resolution to the reader's schema. When that fails but the writer's schema
    /// alone reads the same bytes, the bytes are sound and the value does not resolve (an enum symbol,
    /// also inside a union, that the reader lacks): `schema-mismatch`, not `undecodable`.
    fn resolve(
        id: u32,
        r: &GenericDatumReader<'static>,
        plain: &GenericDatumReader<'static>,
        body: &mut &[u8],
    ) -> Result<apache_avro::types::Value, CodecError> {
        let start = *body;
        r.read_value(body).map_err(|e| {
            let class = if plain.read_value(&mut &start[..]).is_ok() {
                DeadLetterClass::SchemaMismatch
            } else {
                DeadLetterClass::Undecodable
            };
            CodecError::bad(class, format!("schema id {id}: {e}"))
        })
    }

    /// Decode a framed value into `T`, resolving the writer's schema to `reader` when they differ.
    /// The schema id and Avro body of a framed record, refused when no decoder may read it safely.
    async fn body<'b>(&self, bytes: &'b [u8]) -> Result<(u32, &'b [u8]), CodecError> {
        let (id, body) = Self::frame(bytes)?;
        let writer = self.writer_schema(id).await?;
        if body.len() > MAX_RECURSIVE_BODY && is_recursive(writer) {
            // The decoder recurses once per level, and every level costs at least one byte: a
            // recursive writer schema's body is capped so no value can overflow the stack.
            return Err(CodecError::bad(
                DeadLetterClass::TooDeep,
                format!(
                    "schema id {id} is recursive and the value has {} bytes; at most {MAX_RECURSIVE_BODY} are \
                     accepted for recursive schemas",
                    body.len()
                ),
            ));
        }
        Ok((id, body))
    }

    /// A framed record resolved to `reader` as plain JSON (records as objects, unions as their
    /// branch, enums as symbols, timestamps as milliseconds): what `tail` prints.
    pub async fn decode_json(&self, bytes: &[u8], reader: &Schema) -> Result<serde_json::Value, CodecError> {
        let (id, mut body) = self.body(bytes).await?;
        let undecodable =
            |e: apache_avro::Error| CodecError::bad(DeadLetterClass::Undecodable, format!("schema id {id}: {e}"));
        let value = match &*self.decoder(id, reader).await? {
            Decoder::Same(r) => r.read_value(&mut body).map_err(undecodable)?,
            Decoder::Resolve(r, plain) => Self::resolve(id, r, plain, &mut body)?,
            Decoder::Incompatible => {
                return Err(CodecError::bad(
                    DeadLetterClass::SchemaMismatch,
                    format!("schema id {id} cannot be read as this topic's schema"),
                ))
            }
        };
        serde_json::Value::try_from(value).map_err(undecodable)
    }

    pub async fn decode<T: DeserializeOwned>(&self, bytes: &[u8], reader: &Schema) -> Result<T, CodecError> {
        let (id, mut body) = self.body(bytes).await?;
        let undecodable =
            |e: apache_avro::Error| CodecError::bad(DeadLetterClass::Undecodable, format!("schema id {id}: {e}"));
        let value: T = match &*self.decoder(id, reader).await? {
            Decoder::Same(r) => r.read_deser(&mut body).map_err(undecodable)?,
            Decoder::Resolve(r, plain) => {
                let v = Self::resolve(id, r, plain, &mut body)?;
                from_value::<T>(&v).map_err(|e| CodecError::bad(DeadLetterClass::SchemaMismatch, e))?
            }
            Decoder::Incompatible => {
                let reader_name = reader.name().map(|n| n.fullname(None)).unwrap_or_default();
                return Err(CodecError::bad(
                    DeadLetterClass::SchemaMismatch,
                    format!("schema id {id} cannot be read as {reader_name} (Avro schema resolution fails)"),
                ));
            }
        };
        if !body.is_empty() {
            return Err(CodecError::bad(
                DeadLetterClass::Undecodable,
                format!("{} trailing bytes after the record", body.len()),
            ));
        }
        Ok(value)
    }

    /// Encode a record for `topic` in the Confluent wire format.
    pub fn encode(&self, topic: &str, record: &dyn Record) -> Result<Vec<u8>, CodecError> {
        let (id, writer) = self.outputs.get(topic).ok_or_else(|| {
            CodecError::bad(DeadLetterClass::BridgeError, format!("{topic} was not prepared (a bug in the bridge)"))
        })?;
        let mut out = Vec::with_capacity(256);
        out.push(0);
        out.extend_from_slice(&id.to_be_bytes());
        record.write(writer, &mut out).map_err(|e| {
            CodecError::bad(
                DeadLetterClass::BridgeError,
                format!("an output does not encode (a bug in the bridge): {e}"),
            )
        })?;
        Ok(out)
    }
}

/// Largest body accepted for a recursive writer schema. apache-avro's decoder recurses once per
/// level and every level costs at least one byte, so this bounds the depth; with the route
/// threads' stack (`STACK_BYTES`) 2,000 levels were measured to fit even in a debug build. No
/// vocabulary on these topics is recursive (free-form documents travel as JSON strings), so
/// only a hostile or mistaken writer meets this bound.
pub const MAX_RECURSIVE_BODY: usize = 1024;

/// The stack of a thread that decodes (routes, tables): room for `MAX_RECURSIVE_BODY` levels.
pub const STACK_BYTES: usize = 256 * 1024 * 1024;

/// Two record schemas whose unqualified names match: Avro resolution may read one as the other.
fn same_unqualified_name(writer: &Schema, reader: &Schema) -> bool {
    matches!((writer.name(), reader.name()), (Some(w), Some(r)) if w.name() == r.name())
}

/// Whether a named type refers to itself (directly or through other types).
pub fn is_recursive(schema: &Schema) -> bool {
    fn walk<'a>(s: &'a Schema, path: &mut Vec<&'a Name>) -> bool {
        match s {
            Schema::Ref { name } => path.contains(&name),
            Schema::Record(r) => {
                path.push(&r.name);
                let found = r.fields.iter().any(|f| walk(&f.schema, path));
                path.pop();
                found
            }
            Schema::Array(a) => walk(&a.items, path),
            Schema::Map(m) => walk(&m.types, path),
            Schema::Union(u) => u.variants().iter().any(|v| walk(v, path)),
            _ => false,
        }
    }
    walk(schema, &mut Vec::new())
}

/// Encode `value` with a known schema id (for producers of test and demo input).
pub fn encode_with_id(id: u32, schema: &Schema, value: Value) -> Result<Vec<u8>, apache_avro::Error> {
    let body = to_avro_datum(schema, value)?;
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests;
