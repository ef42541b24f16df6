//! CloudEvents 1.0 Kafka binary-mode headers (NL GOV profile) and Kafka Connect style DLQ headers.

use crate::model::Timestamp;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use serde::{Deserialize, Serialize};

/// What the route says about one output record; the pipeline adds source, time and tracing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// `ce_id`: deterministic, so a replayed input yields the same id.
    pub id: String,
    /// `ce_type`, reverse DNS, e.g. `nl.overheid.verzoeken.verzoek-doorgestuurd`.
    pub kind: &'static str,
    /// `ce_subject`: the record's stable id (never a BSN).
    pub subject: String,
    /// CloudEvents extension attributes (`ce_<name>`): facts about the event that the record's
    /// own schema has no field for.
    pub extensions: Vec<(&'static str, String)>,
}

/// Where the input came from, for `ce_causationid` and tracing.
pub struct Cause<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub traceparent: Option<&'a [u8]>,
}

/// The input an output answers to, kept so that work done later (a scheduled publication, an
/// expiry) still links to the record that caused it: `ce_causationid` and `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// `<topic>/<partition>/<offset>`.
    pub causation: String,
    pub traceparent: Option<String>,
}

impl Cause<'_> {
    pub fn link(&self) -> Link {
        Link {
            causation: format!("{}/{}/{}", self.topic, self.partition, self.offset),
            traceparent: self.traceparent.map(|t| String::from_utf8_lossy(t).into_owned()),
        }
    }
}

/// `ce_time` is when the bridge wrote the record (`now`, by its clock); `dataschema` the registry
/// URL of the value's schema.
pub fn ce_headers(ev: &Event, source: &str, link: &Link, dataschema: Option<&str>, now: Timestamp) -> OwnedHeaders {
    let time = now.rfc3339();
    let causation = &link.causation;
    let mut h = OwnedHeaders::new_with_capacity(9)
        .insert(hdr("ce_specversion", "1.0"))
        .insert(hdr("ce_id", &ev.id))
        .insert(hdr("ce_source", source))
        .insert(hdr("ce_type", ev.kind))
        .insert(hdr("ce_time", &time))
        .insert(hdr("ce_subject", &ev.subject))
        .insert(hdr("content-type", "application/avro"))
        .insert(hdr("ce_causationid", causation));
    if let Some(ds) = dataschema {
        h = h.insert(hdr("ce_dataschema", ds));
    }
    for (name, value) in &ev.extensions {
        h = h.insert(Header { key: &format!("ce_{name}"), value: Some(value.as_str()) });
    }
    if let Some(tp) = &link.traceparent {
        h = h.insert(hdr("traceparent", tp));
    }
    h
}

fn hdr<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header { key, value: Some(value) }
}

/// Find a header's value on an input record.
pub fn find<'a, H: Headers>(headers: Option<&'a H>, key: &str) -> Option<&'a [u8]> {
    headers?.iter().find(|h| h.key == key).and_then(|h| h.value)
}

/// Headers of a dead letter: the original headers, then Kafka Connect's `__connect.errors.*`.
pub fn dlq_headers<H: Headers>(
    original: Option<&H>,
    cause: &Cause<'_>,
    class: crate::codec::DeadLetterClass,
    message: &str,
) -> OwnedHeaders {
    let mut h = OwnedHeaders::new();
    if let Some(orig) = original {
        for x in orig.iter() {
            h = h.insert(Header { key: x.key, value: x.value });
        }
    }
    let partition = cause.partition.to_string();
    let offset = cause.offset.to_string();
    h.insert(hdr("__connect.errors.topic", cause.topic))
        .insert(hdr("__connect.errors.partition", &partition))
        .insert(hdr("__connect.errors.offset", &offset))
        .insert(hdr("__connect.errors.exception.class.name", class.as_str()))
        .insert(hdr("__connect.errors.exception.message", message))
        .insert(hdr("__connect.errors.stage", class.stage()))
}

/// Headers saying a dead letter's value was cut to fit its topic: its full size and SHA-256.
pub fn truncated_headers(headers: OwnedHeaders, value: &[u8]) -> OwnedHeaders {
    headers
        .insert(Header { key: "__gzac.errors.value.truncated", value: Some("true") })
        .insert(Header { key: "__gzac.errors.value.size", value: Some(&value.len().to_string()) })
        .insert(Header { key: "__gzac.errors.value.sha256", value: Some(&sha256_hex(value)) })
}

/// SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
