//! The records on the topics, as Rust types. Each derives its Avro schema; `schemas/*.avsc` are
//! exported from these types and a test keeps the two in step (tests/schemas.rs).
//!
//! Namespaces: `nl.gzac.portaal` (portal vocabulary), `nl.gzac.zaak` (GZAC vocabulary),
//! `nl.gzac.common` (shared: notificaties, terugmeldingen).

pub mod common;
pub mod gzac;
pub mod portaal;

use apache_avro::schema::{Name, NamespaceRef, RecordField};
use apache_avro::{AvroSchemaComponent, Schema};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch (Avro `timestamp-millis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }

    /// 9999-12-31T23:59:59.999Z: the last moment RFC 3339 can write.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// RFC 3339 in UTC, as CloudEvents `time` wants it. Total: a moment outside 1970..=9999 is
    /// written as the nearest end of that range (inputs are checked with `checked` first).
    pub fn rfc3339(self) -> String {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(self.0.clamp(0, Self::MAX.0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// This moment, when it lies in 1970..=9999 (what the bridge can write and schedule);
    /// otherwise an error naming `field`.
    pub fn checked(self, field: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (0..=Self::MAX.0).contains(&self.0),
            "{field} is {} ms since 1970, outside 1970-01-01..9999-12-31",
            self.0
        );
        Ok(self)
    }
}

impl AvroSchemaComponent for Timestamp {
    fn get_schema_in_ctxt(_: &mut HashSet<Name>, _: NamespaceRef) -> Schema {
        Schema::TimestampMillis
    }
    fn get_record_fields_in_ctxt(_: &mut HashSet<Name>, _: NamespaceRef) -> Option<Vec<RecordField>> {
        None
    }
}
