//! The catalogue of record schemas: which Rust type, which `.avsc` file, which topics carry it.
//! Subjects follow Confluent's TopicNameStrategy: `<topic>-value`.

use crate::model::{common, gzac, portaal};
use apache_avro::{AvroSchema, Schema};
use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use std::path::{Path, PathBuf};

pub struct Entry {
    /// Fully qualified Avro name; the file is `schemas/<name>.avsc`.
    pub name: &'static str,
    pub schema: fn() -> Schema,
    /// Topics whose values are records of this schema.
    pub topics: &'static [&'static str],
    /// A record as JSON (the names and shapes `tail` prints) checked against the type, as the
    /// Avro value to write; the error names the field and the reason.
    pub from_json: fn(serde_json::Value) -> anyhow::Result<apache_avro::types::Value>,
}

macro_rules! entry {
    ($t:ty, $name:literal, [$($topic:literal),*]) => {
        Entry {
            name: $name,
            schema: <$t>::get_schema,
            topics: &[$($topic),*],
            from_json: |json| {
                let record: $t = serde_path_to_error::deserialize(json)
                    .map_err(|e| anyhow::anyhow!("field `{}`: {}", e.path(), e.inner()))?;
                Ok(apache_avro::to_value(record)?)
            },
        }
    };
}

/// The catalogue entry of the schema on `topic` (a contract topic name, without prefix).
pub fn of_topic(topic: &str) -> Option<Entry> {
    catalogue().into_iter().find(|e| e.topics.contains(&topic))
}

pub fn catalogue() -> Vec<Entry> {
    vec![
        entry!(portaal::Verzoek, "nl.gzac.portaal.Verzoek", ["portaal.verzoeken.v1"]),
        entry!(portaal::ZaakVerzoek, "nl.gzac.portaal.ZaakVerzoek", ["portaal.zaakverzoeken.v1"]),
        entry!(portaal::Taak, "nl.gzac.portaal.Taak", ["portaal.taken.v1"]),
        entry!(portaal::TaakAntwoord, "nl.gzac.portaal.TaakAntwoord", ["portaal.taakantwoorden.v1"]),
        entry!(portaal::Bericht, "nl.gzac.portaal.Bericht", ["portaal.berichten.v1"]),
        entry!(portaal::BerichtGeopend, "nl.gzac.portaal.BerichtGeopend", ["portaal.berichten-geopend.v1"]),
        entry!(portaal::Klantvoorkeur, "nl.gzac.portaal.Klantvoorkeur", ["portaal.klantvoorkeuren.v1"]),
        entry!(gzac::Verzoek, "nl.gzac.zaak.Verzoek", ["gzac.verzoeken.v1", "gzac.zaakverzoeken.v1"]),
        entry!(gzac::ExterneTaak, "nl.gzac.zaak.ExterneTaak", ["gzac.taken.v1", "gzac.taakantwoorden.v1"]),
        entry!(gzac::Bericht, "nl.gzac.zaak.Bericht", ["gzac.berichten.v1"]),
        entry!(gzac::BerichtGeopendOp, "nl.gzac.zaak.BerichtGeopendOp", ["gzac.berichten-geopend.v1"]),
        entry!(gzac::Zaak, "nl.gzac.zaak.Zaak", ["gzac.zaken.v1"]),
        entry!(common::Terugmelding, "nl.gzac.common.Terugmelding", ["portaal.terugmeldingen.v1"]),
        entry!(common::Weigering, "nl.gzac.common.Weigering", ["gzac.weigeringen.v1"]),
        entry!(common::NietBereikt, "nl.gzac.common.NietBereikt", ["gzac.niet-bereikt.v1"]),
        entry!(common::Notificatieopdracht, "nl.gzac.common.Notificatieopdracht", ["notificaties.opdrachten.v1"]),
        entry!(
            common::NotificatieVerzoek,
            "nl.gzac.common.NotificatieVerzoek",
            ["gzac-portal-bridge.notificaties-repartition.v1"]
        ),
    ]
}

pub fn subject(topic: &str) -> String {
    format!("{topic}-value")
}

pub fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.avsc"))
}

/// The schema as committed JSON text (pretty, stable field order).
pub fn to_json(schema: &Schema) -> String {
    serde_json::to_string_pretty(schema).expect("a schema serialises") + "\n"
}

/// Write every schema to `dir` (used after changing a type; the test then holds them together).
pub fn export(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    catalogue()
        .iter()
        .map(|e| {
            let path = file(dir, e.name);
            std::fs::write(&path, to_json(&(e.schema)()))?;
            Ok(path)
        })
        .collect()
}

/// Register every schema under each of its topics' subjects (topic names with `prefix`);
/// returns (subject, id) pairs.
pub async fn register_all(sr: &SrSettings, prefix: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for e in catalogue() {
        let text = serde_json::to_string(&(e.schema)())?;
        for topic in e.topics.iter().map(|t| format!("{prefix}{t}")) {
            let supplied = SuppliedSchema::new(Some(e.name.to_string()), SchemaType::Avro, text.clone());
            let reg = post_schema(sr, subject(&topic), supplied)
                .await
                .map_err(|err| anyhow::anyhow!("registering {} failed: {err}", subject(&topic)))?;
            out.push((subject(&topic), reg.id));
        }
    }
    Ok(out)
}
