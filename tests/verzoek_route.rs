//! The Verzoek route on the real broker: the happy path field by field, every class of bad input,
//! and a registry outage mid-stream.

mod common;

use apache_avro::types::Value;
use apache_avro::{AvroSchema, Schema};
use common::World;
use gzac_portal_bridge::bridge;
use gzac_portal_bridge::client::{self, Received};
use gzac_portal_bridge::codec::{encode_with_id, Codec};
use gzac_portal_bridge::model::{common as m_common, gzac, portaal};
use gzac_portal_bridge::routes::{derived_id, verzoek};
use gzac_portal_bridge::tools::samples;
use std::time::Duration;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

async fn decode<T: serde::de::DeserializeOwned + AvroSchema>(w: &World, r: &Received) -> T {
    let codec = Codec::new(w.cfg.sr_settings().unwrap());
    codec.decode::<T>(r.value.as_deref().unwrap(), &T::get_schema()).await.unwrap()
}

fn on<'a>(recs: &'a [Received], topic: &str) -> Vec<&'a Received> {
    recs.iter().filter(|r| r.topic == topic).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_verzoek_is_forwarded_field_by_field_with_cloudevents_headers() {
    let w = World::new("happy").await;
    let input = samples::verzoek("happy-1");
    let bytes = client::frame(w.verzoek_id(), &input).unwrap();
    let p = client::producer(&w.cfg).unwrap();
    client::send(&p, &w.topic(verzoek::INPUT), "happy-1", &bytes, Some(TRACEPARENT)).await.unwrap();

    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read_verzoek_outputs(2, Duration::from_secs(60), Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 2, "{recs:?}");

    let out = on(&recs, &w.topic(verzoek::OUTPUT));
    assert_eq!(out.len(), 1);
    let g: gzac::Verzoek = decode(&w, out[0]).await;
    let uuid = derived_id(&["verzoek", "happy-1"]);
    assert_eq!(g.uuid, uuid);
    assert_eq!(out[0].key_str(), uuid);
    assert_eq!(g.verzoek_type, w.cfg.verzoek.verzoektypen["parkeervergunning"]);
    assert_eq!(g.verzoek_bron, gzac::Bron { naam: "Open Formulieren".into(), kenmerk: "happy-1".into() });
    assert_eq!(g.initiator, "urn:nld:brp:bsn:569312863");
    assert_eq!(g.aanvraag_gegevens, input.data);
    let urn = |kind| format!("urn:nld:gemeente:documenten:informatieobject:{}", derived_id(&[kind, "happy-1"]));
    assert_eq!(g.verzoek_informatie_object, Some(urn("pdf")), "the PDF's URL became its URN");
    assert_eq!(g.bijlagen, vec![gzac::InformatieObject { informatie_object: urn("csv") }], "and the CSV a bijlage");
    assert_eq!(g.verzoek_taal, "nl");
    assert_eq!(g.kanaal, "webformulier");
    let betaling = g.verzoek_betaling.unwrap();
    assert_eq!((betaling.bedrag.as_deref(), betaling.voltooid), (Some("42.50"), true));
    assert_eq!(
        (betaling.provider_kenmerk.as_deref(), betaling.transactie_referentie.as_deref()),
        (Some("2026/OF-A1B2C3"), Some("3014828147")),
        "Open Forms' order id and the provider's payment id"
    );

    let h = |k: &str| out[0].header(k).unwrap_or_else(|| panic!("header {k} missing")).to_string();
    assert_eq!(h("ce_specversion"), "1.0");
    assert_eq!(h("ce_id"), derived_id(&[verzoek::TYPE_DOORGESTUURD, &uuid]));
    assert_eq!(h("ce_source"), format!("urn:nld:oin:{}:systeem:gzac-portal-bridge", w.cfg.oin));
    assert_eq!(h("ce_type"), "nl.overheid.verzoeken.verzoek-doorgestuurd");
    assert_eq!(h("ce_subject"), uuid);
    assert_eq!(h("content-type"), "application/avro");
    assert_eq!(h("traceparent"), TRACEPARENT);
    assert!(h("ce_causationid").starts_with(&format!("{}/", w.topic(verzoek::INPUT))));
    humantime::parse_rfc3339(&h("ce_time")).expect("ce_time is RFC 3339");
    for (k, v) in &out[0].headers {
        assert!(!String::from_utf8_lossy(v).contains("569312863"), "BSN in header {k}");
    }

    let tm = on(&recs, &w.topic(verzoek::TERUGMELDINGEN));
    assert_eq!(tm.len(), 1);
    assert_eq!(tm[0].key_str(), "happy-1");
    let t: m_common::Terugmelding = decode(&w, tm[0]).await;
    assert_eq!(t.referentie, "happy-1");
    assert_eq!(t.soort, m_common::Soort::Verzoek);
    assert_eq!(t.status, m_common::TerugmeldingStatus::Doorgestuurd);
    assert_eq!(t.reden_code, None);
    assert_eq!(t.gzac_id.as_deref(), Some(uuid.as_str()));
    assert_eq!(tm[0].header("traceparent"), Some(TRACEPARENT));
    assert_eq!(tm[0].header("ce_type"), Some("nl.overheid.portaal.terugmelding-verstuurd"));
    let schema_id = w.schema_id(verzoek::OUTPUT);
    assert_eq!(h("ce_dataschema"), format!("{}/schemas/ids/{schema_id}", w.cfg.registry.url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_goes_to_the_dlq_or_a_terugmelding_and_the_route_keeps_going() {
    let mut w = World::new("bad").await;
    w.cfg.pipeline.max_record_bytes = Some(4096);
    let id = w.verzoek_id();
    let terugmelding_id = w.schema_id(verzoek::TERUGMELDINGEN);
    let v = |sub: &str| client::frame(id, &samples::verzoek(sub)).unwrap();
    let big = portaal::Verzoek { data: format!("{{\"x\":\"{}\"}}", "a".repeat(8000)), ..samples::verzoek("big") };
    let tm = m_common::Terugmelding {
        id: "x".into(),
        referentie: "x".into(),
        soort: m_common::Soort::Verzoek,
        status: m_common::TerugmeldingStatus::Ontvangen,
        reden_code: None,
        toelichting: "x".into(),
        gzac_id: None,
        tijdstip: gzac_portal_bridge::model::Timestamp(0),
    };
    let mut garbage_body = vec![0u8];
    garbage_body.extend_from_slice(&id.to_be_bytes());
    garbage_body.extend_from_slice(&[0xff; 12]);

    // (key, value, expected DLQ class or None)
    type Case<'a> = (&'a str, Option<Vec<u8>>, Option<&'a str>);
    let inputs: Vec<Case> = vec![
        ("ok-1", Some(v("ok-1")), None),
        ("short", Some(vec![0, 0, 1]), Some("too-short")),
        ("magic", Some(vec![9, 0, 0, 0, 1, 2, 3]), Some("bad-magic-byte")),
        ("unknown-id", Some(vec![0, 0, 0, 0x7f, 0xff, 2, 3]), Some("unknown-schema-id")),
        ("mismatch", Some(client::frame(terugmelding_id, &tm).unwrap()), Some("schema-mismatch")),
        ("oversize", Some(client::frame(id, &big).unwrap()), Some("oversize")),
        ("null", None, Some("null-value")),
        ("garbage", Some(garbage_body), Some("undecodable")),
        (
            "bsn",
            Some(
                client::frame(id, &portaal::Verzoek { bsn: Some("123456789".into()), ..samples::verzoek("bsn") })
                    .unwrap(),
            ),
            None,
        ),
        (
            "ketenpartner",
            Some(
                client::frame(
                    id,
                    &portaal::Verzoek { rol: Some(portaal::Rol::Ketenpartner), ..samples::verzoek("ketenpartner") },
                )
                .unwrap(),
            ),
            None,
        ),
        ("ok-2", Some(v("ok-2")), None),
    ];
    let p = client::producer(&w.cfg).unwrap();
    let topic = w.topic(verzoek::INPUT);
    for (key, value, _) in &inputs {
        let mut rec = rdkafka::producer::FutureRecord::<str, [u8]>::to(&topic).key(key).partition(0);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        p.send(rec, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    }

    let running = bridge::start(&w.cfg).unwrap();
    // 2 forwarded + 4 terugmeldingen + 7 dead letters.
    let recs = w.read_verzoek_outputs(13, Duration::from_secs(60), Duration::from_secs(1)).await;
    assert!(running.healthy(), "the route stopped on bad input");
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 13, "{recs:#?}");

    assert_eq!(on(&recs, &w.topic(verzoek::OUTPUT)).len(), 2);
    let mut codes = Vec::new();
    for r in on(&recs, &w.topic(verzoek::TERUGMELDINGEN)) {
        let t: m_common::Terugmelding = decode(&w, r).await;
        codes.push((t.referentie, t.reden_code.unwrap_or_else(|| "-".into())));
    }
    codes.sort();
    assert_eq!(
        codes,
        vec![
            ("bsn".to_string(), "ONGELDIG_BSN".to_string()),
            ("ketenpartner".into(), "KETENPARTNER_DIENT_GEEN_VERZOEK_IN".into()),
            ("ok-1".into(), "-".into()),
            ("ok-2".into(), "-".into()),
        ]
    );

    let dlq = on(&recs, &format!("{topic}.dlq"));
    assert_eq!(dlq.len(), 7);
    for (key, value, class) in inputs.iter().filter(|i| i.2.is_some()) {
        let d = dlq.iter().find(|r| r.key_str() == *key).unwrap_or_else(|| panic!("no dead letter for {key}"));
        assert_eq!(d.value.as_ref(), value.as_ref(), "{key}: original value kept");
        assert_eq!(d.header("__connect.errors.exception.class.name"), *class, "{key}");
        assert_eq!(d.header("__connect.errors.topic"), Some(topic.as_str()));
        assert_eq!(d.header("__connect.errors.partition"), Some("0"));
        let offset = inputs.iter().position(|i| i.0 == *key).unwrap().to_string();
        assert_eq!(d.header("__connect.errors.offset"), Some(offset.as_str()), "{key}");
        assert!(!d.header("__connect.errors.exception.message").unwrap_or("").is_empty());
    }
}

/// The Verzoek schema plus an optional field: a compatible new version a portal might write.
fn verzoek_v2() -> Schema {
    let mut json = serde_json::to_value(portaal::Verzoek::get_schema()).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "kanaal", "type": "string", "default": "web"}));
    Schema::parse(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_delays_the_route_but_loses_and_dead_letters_nothing() {
    let mut w = World::new("outage").await;
    let p = client::producer(&w.cfg).unwrap();
    let topic = w.topic(verzoek::INPUT);
    for i in 0..20 {
        let key = format!("before-{i}");
        client::send(&p, &topic, &key, &client::frame(w.verzoek_id(), &samples::verzoek(&key)).unwrap(), None)
            .await
            .unwrap();
    }
    let running = bridge::start(&w.cfg).unwrap();
    w.read_verzoek_outputs(40, Duration::from_secs(60), Duration::ZERO).await;

    // A new writer schema the bridge has not seen, then the registry goes away.
    let v2 = verzoek_v2();
    let sr = w.cfg.sr_settings().unwrap();
    let v2_id = schema_registry_converter::async_impl::schema_registry::post_schema(
        &sr,
        format!("{topic}-value"),
        schema_registry_converter::schema_registry_common::SuppliedSchema::new(
            None,
            schema_registry_converter::schema_registry_common::SchemaType::Avro,
            serde_json::to_string(&v2).unwrap(),
        ),
    )
    .await
    .unwrap()
    .id;
    let server = w.registry_server.take().unwrap();
    let registry_addr = server.addr;
    server.stop().await;
    for i in 0..20 {
        let key = format!("during-{i}");
        let Value::Record(mut fields) = apache_avro::to_value(samples::verzoek(&key)).unwrap() else { unreachable!() };
        fields.push(("kanaal".into(), Value::String("app".into())));
        let bytes = encode_with_id(v2_id, &v2, Value::Record(fields)).unwrap();
        client::send(&p, &topic, &key, &bytes, None).await.unwrap();
    }
    // While the registry is down the new records wait: nothing more comes out, nothing is
    // dead-lettered. The route says it is retrying (and has been for a while) before we look.
    let stats = running.stats.iter().find(|(n, _)| n == "verzoek").unwrap().1.clone();
    let t0 = std::time::Instant::now();
    while stats.retrying_seconds() < 2.0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "the route never noticed the registry was down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stats.not_ready().unwrap_or_default().contains("registry"), "{:?}", stats.not_ready());
    assert!(running.healthy());
    let during = w.read_verzoek_outputs(40, Duration::from_secs(20), Duration::from_secs(2)).await;
    assert_eq!(during.len(), 40, "records came out while the registry was down");

    // The registry comes back on the same address with the same state.
    let _server = w.registry.serve(registry_addr).await.expect("registry restarts on its port");
    let recs = w.read_verzoek_outputs(80, Duration::from_secs(60), Duration::from_secs(2)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 80, "exactly one verzoek and one terugmelding per input");
    assert!(on(&recs, &format!("{topic}.dlq")).is_empty(), "nothing dead-lettered");
    let mut keys: Vec<&str> = on(&recs, &w.topic(verzoek::TERUGMELDINGEN)).iter().map(|r| r.key_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_partitioned_like_the_java_client() {
    let w = World::new("murmur").await;
    for i in 0..30 {
        let key = format!("mm-{i}");
        w.send(verzoek::INPUT, &key, &samples::verzoek(&key)).await;
    }
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read_verzoek_outputs(60, Duration::from_secs(60), Duration::ZERO).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    // Java's default partitioner: murmur2 of the key, positive, modulo the partition count (3 here).
    let wrong: Vec<_> = recs
        .iter()
        .filter(|r| r.partition != gzac_portal_bridge::partitioner::partition_for(r.key_str().as_bytes(), 3))
        .map(|r| (r.topic.clone(), r.key_str().to_string(), r.partition))
        .collect();
    assert!(wrong.is_empty(), "not where a Java producer would put them: {wrong:?}");
}
