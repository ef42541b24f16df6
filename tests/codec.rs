//! Decoding follows Avro schema resolution, record by record, and a registry's answers are
//! classified by what they mean: no broker involved, the project's own registry.

use apache_avro::types::Value;
use apache_avro::{AvroSchema, Schema};
use gzac_portal_bridge::codec::{encode_with_id, Codec, CodecError, DeadLetterClass};
use gzac_portal_bridge::config::Config;
use gzac_portal_bridge::model::{gzac, portaal};
use gzac_portal_bridge::pipeline::Route;
use gzac_portal_bridge::routes::taak::{TaakInput, TaakRoute};
use gzac_portal_bridge::table::GlobalTable;
use gzac_portal_bridge::tools::registry::{Registry, Server};
use gzac_portal_bridge::tools::samples;
use schema_registry_converter::async_impl::schema_registry::post_schema;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

async fn registry() -> (Server, Config) {
    let server = Registry::new().serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut cfg = Config::defaults();
    cfg.bootstrap_servers = "127.0.0.1:1".into();
    cfg.registry.url = format!("http://{}", server.addr);
    (server, cfg)
}

/// Register `schema` (JSON) under its own subject; its id and parsed form.
async fn register(cfg: &Config, subject: &str, schema: &serde_json::Value) -> (u32, Schema) {
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_string());
    let id = post_schema(&cfg.sr_settings().unwrap(), subject.into(), supplied).await.unwrap().id;
    (id, Schema::parse_str(&schema.to_string()).unwrap())
}

fn set(record: &mut Value, field: &str, value: Value) {
    let Value::Record(fields) = record else { panic!("not a record") };
    fields.iter_mut().find(|(n, _)| n == field).unwrap().1 = value;
}

#[tokio::test]
async fn a_writer_that_adds_an_enum_symbol_loses_only_the_records_that_use_it() {
    let (_server, cfg) = registry().await;
    let mut writer = serde_json::to_value(portaal::Verzoek::get_schema()).unwrap();
    let rol = writer["fields"].as_array_mut().unwrap().iter_mut().find(|f| f["name"] == "rol").unwrap();
    rol["type"][1]["symbols"].as_array_mut().unwrap().push("gemachtigde".into());
    let (id, schema) = register(&cfg, "enum-plus-value", &writer).await;
    let codec = Codec::new(cfg.sr_settings().unwrap());
    let reader = portaal::Verzoek::get_schema();

    let klant = portaal::Verzoek { rol: Some(portaal::Rol::Klant), ..samples::verzoek("e-1") };
    let value = apache_avro::to_value(klant).unwrap().resolve(&schema).unwrap();
    let old_symbol = encode_with_id(id, &schema, value.clone()).unwrap();
    let v: portaal::Verzoek = codec.decode(&old_symbol, &reader).await.expect("an existing symbol resolves");
    assert_eq!(v.rol, Some(portaal::Rol::Klant));

    let mut new = value;
    set(&mut new, "rol", Value::Union(1, Box::new(Value::Enum(2, "gemachtigde".into()))));
    let new_symbol = encode_with_id(id, &schema, new).unwrap();
    // Cut short, the same record is no mismatch but bytes that do not decode.
    match codec.decode::<portaal::Verzoek>(&new_symbol[..new_symbol.len() - 3], &reader).await {
        Err(CodecError::BadData { class: DeadLetterClass::Undecodable, .. }) => {}
        other => panic!("truncated bytes are undecodable: {other:?}"),
    }
    match codec.decode::<portaal::Verzoek>(&new_symbol, &reader).await {
        Err(CodecError::BadData { class: DeadLetterClass::SchemaMismatch, .. }) => {}
        other => panic!("a symbol the reader lacks is a schema mismatch for that record only: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taak_written_under_another_namespace_is_still_a_taak() {
    let (_server, cfg) = registry().await;
    let mut writer = serde_json::to_value(gzac::ExterneTaak::get_schema()).unwrap();
    let text = writer.to_string().replace("nl.gzac.zaak", "nl.gemeente.gzac");
    writer = serde_json::from_str(&text).unwrap();
    let (id, schema) = register(&cfg, "taak-elders-value", &writer).await;
    let value = apache_avro::to_value(samples::taak(
        "t-ns",
        samples::BSN,
        gzac_portal_bridge::model::Datum::vandaag().plus(30),
    ))
    .unwrap()
    .resolve(&schema)
    .unwrap();
    let bytes = encode_with_id(id, &schema, value).unwrap();

    let rt = tokio::runtime::Handle::current();
    let decoded = tokio::task::spawn_blocking(move || {
        let _guard = rt.enter();
        let mut table = GlobalTable::start(
            &cfg,
            &["ns.voorkeuren".into()],
            portaal::Klantvoorkeur::get_schema(),
            |v: &portaal::Klantvoorkeur| v.partij.value.clone(),
            rt.clone(),
        )
        .unwrap();
        let route = TaakRoute::new(&cfg, table.remove(0));
        let codec = Codec::new(cfg.sr_settings().unwrap());
        route
            .decode(&gzac_portal_bridge::pipeline::Decoder::new(&codec, &rt), &bytes)
            .map(|i| matches!(i, TaakInput::Taak(t) if t.uuid == "t-ns"))
    })
    .await
    .unwrap();
    assert!(decoded.expect("resolution decides, not the writer's full name"), "decoded as the taak it is");
}

#[tokio::test]
async fn only_the_registrys_schema_not_found_is_bad_data() {
    let (server, mut cfg) = registry().await;
    let reader = portaal::Verzoek::get_schema();
    let codec = Codec::new(cfg.sr_settings().unwrap());
    let unknown = [0, 0, 0, 0x7f, 0x7f, 2, 0];
    match codec.decode::<portaal::Verzoek>(&unknown, &reader).await {
        Err(CodecError::BadData { class: DeadLetterClass::UnknownSchemaId, .. }) => {}
        other => panic!("40403 is an unknown schema id: {other:?}"),
    }
    // A wrong registry URL answers a plain 404: that is the configuration, not the record.
    cfg.registry.url = format!("http://{}/no-such-prefix", server.addr);
    let codec = Codec::new(cfg.sr_settings().unwrap());
    match codec.decode::<portaal::Verzoek>(&unknown, &reader).await {
        Err(CodecError::Transient(_)) => {}
        other => panic!("a 404 without 40403 is retried, never a dead letter: {other:?}"),
    }
}
