//! Bericht on the real broker: translation, notificatie fan-out by klantvoorkeur, confidentiality
//! by construction, scheduled publication across a restart, and no second notificatie on replay.

mod common;

use common::{sigterm, spawn_bridge, World};
use gzac_portal_bridge::bridge;
use gzac_portal_bridge::client::Received;
use gzac_portal_bridge::model::common::{Kanaal, Notificatieopdracht};
use gzac_portal_bridge::model::{gzac, portaal, Datum, Timestamp};
use gzac_portal_bridge::tools::samples::{bericht, klantvoorkeur, BSN};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;

const BERICHTEN: &str = "gzac.berichten.v1";
const PORTAAL: &str = "portaal.berichten.v1";
const NOTIFICATIES: &str = "notificaties.opdrachten.v1";
const VOORKEUREN: &str = "portaal.klantvoorkeuren.v1";

fn on<'a>(recs: &'a [Received], w: &World, topic: &str) -> Vec<&'a Received> {
    recs.iter().filter(|r| r.topic == w.topic(topic)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bericht_is_published_and_notified_on_each_chosen_channel() {
    let w = World::new("bericht").await;
    w.send(VOORKEUREN, "klant-1", &klantvoorkeur(BSN, vec![Kanaal::Email, Kanaal::Sms])).await;
    let b = bericht("b-1", BSN);
    w.send(BERICHTEN, "b-1", &b).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL, NOTIFICATIES], 3, Duration::from_secs(2)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 3, "{recs:#?}");

    let p: portaal::Bericht = w.decode(on(&recs, &w, PORTAAL)[0]).await;
    let id = "b-1".to_string();
    assert_eq!(p.id, id, "GZAC's uuid is the portal's id");
    assert_eq!(p.identificatie, portaal::Partij { soort: portaal::PartijType::Bsn, value: BSN.into() });
    assert_eq!((p.onderwerp.as_str(), p.bericht_tekst.as_str()), (b.onderwerp.as_str(), b.bericht_tekst.as_str()));
    assert_eq!(
        (p.bericht_type, &p.bijlages, p.publicatiedatum),
        (portaal::BerichtType::Notificatie, &vec![b.bijlagen[0].informatie_object.clone()], w.today())
    );
    // GZAC's deadline is local midnight two weeks ahead: the portal shows that day, not the one
    // before (which the UTC date would be).
    let einddatum = Datum::in_amsterdam(b.einddatum_handelings_termijn.unwrap());
    assert_eq!(
        (p.referentie.as_str(), p.handelingsperspectief.as_str(), p.einddatum_handelingstermijn),
        ("ZAAK-2026-0042", "informatie ontvangen", einddatum)
    );
    assert!(!p.geopend);
    assert_eq!(on(&recs, &w, PORTAAL)[0].header("ce_type"), Some("nl.overheid.berichten.bericht-gepubliceerd"));

    let mut ns: Vec<Notificatieopdracht> = Vec::new();
    for r in on(&recs, &w, NOTIFICATIES) {
        ns.push(w.decode(r).await);
    }
    ns.sort_by_key(|n| format!("{:?}", n.kanaal));
    let t = &w.cfg.notificaties.templates.bericht;
    assert_eq!(
        ns.iter()
            .map(|n| (
                n.kanaal,
                n.request.email_address.as_deref(),
                n.request.phone_number.as_deref(),
                n.request.template_id.as_str()
            ))
            .collect::<Vec<_>>(),
        vec![
            (Kanaal::Email, Some("klant@example.nl"), None, t.email["nld"].as_str()),
            (Kanaal::Sms, None, Some("+31612345678"), t.sms["nld"].as_str()),
        ]
    );
    for n in &ns {
        let p = &n.request.personalisation;
        let mut keys: Vec<&str> = p.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, vec!["link", "soort", "uiterste_datum"]);
        assert_eq!(p["link"], format!("https://mijn.gemeente.example/berichten/{id}"));
        assert_eq!(p["uiterste_datum"], einddatum.iso());
        assert_eq!(n.request.reference, n.id, "NotifyNL echoes our notificatie id in its receipts");
        assert_eq!((n.referentie.as_str(), n.gebeurtenis.as_str()), (id.as_str(), "bericht-gepubliceerd"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_byte_of_a_notificatie_carries_bericht_content_or_the_bsn() {
    let w = World::new("secret").await;
    w.send(VOORKEUREN, "klant-2", &klantvoorkeur(BSN, vec![Kanaal::Email, Kanaal::Sms])).await;
    let m = |f: &str| format!("MARKER-{f}-7f3a");
    let bijlage = |f: &str| gzac::BerichtBijlage {
        informatie_object: m(f),
        omschrijving: Some(m(&format!("{f}-naam"))),
        is_bericht_type_bijlage: false,
    };
    let b = gzac::Bericht {
        onderwerp: m("onderwerp"),
        bericht_tekst: m("tekst"),
        referentie: Some(m("ref")),
        bijlagen: vec![bijlage("bijlage1"), bijlage("bijlage2")],
        is_gerelateerd_aan: vec![gzac::IsGerelateerdAan { urn: m("zaak") }],
        ..bericht("x", BSN)
    };
    w.send(BERICHTEN, "secret", &b).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL, NOTIFICATIES], 3, Duration::from_secs(2)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    let ns = on(&recs, &w, NOTIFICATIES);
    assert_eq!(ns.len(), 2);
    // The portal bericht does carry the content: the markers are real and findable.
    assert!(String::from_utf8_lossy(on(&recs, &w, PORTAAL)[0].value.as_deref().unwrap()).contains("MARKER-tekst-7f3a"));
    for n in ns {
        let mut bytes: Vec<u8> = n.key.clone().unwrap_or_default();
        bytes.extend(n.value.clone().unwrap_or_default());
        for (k, v) in &n.headers {
            bytes.extend(k.as_bytes());
            bytes.extend(v);
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("MARKER"), "bericht content in a notificatie: {text}");
        assert!(!text.contains(BSN), "BSN in a notificatie");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berichten_reach_ketenpartners_and_what_the_portal_lacks_goes_back_to_gzac() {
    let w = World::new("bericht-map").await;
    let vestiging = gzac::Bericht {
        ontvanger: "urn:nld:hr:kvknummer:69599084:vestigingsnummer:000038509504".into(),
        bericht_type: Some("BETAAL".into()),
        handelings_perspectief: Some(gzac::HandelingsPerspectief::Betalen),
        ..bericht("b-kvk", BSN)
    };
    let rsin = gzac::Bericht {
        ontvanger: "urn:nld:rsin:111222333".into(),
        referentie: None,
        einddatum_handelings_termijn: None,
        handelings_perspectief: None,
        bericht_type: None,
        ..bericht("b-rsin", BSN)
    };
    let unmapped_type = gzac::Bericht { bericht_type: Some("WOZ".into()), ..bericht("b-type", BSN) };
    let unmapped = gzac::Bericht {
        handelings_perspectief: Some(gzac::HandelingsPerspectief::UitnodigingVoorAfspraak),
        ..bericht("b-hp", BSN)
    };
    let nobody = gzac::Bericht { ontvanger: "urn:nld:brp:bsn:123456789".into(), ..bericht("b-bsn", BSN) };
    for b in [&vestiging, &rsin, &unmapped_type, &unmapped, &nobody] {
        w.send(BERICHTEN, &b.uuid, b).await;
    }
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL, "gzac.weigeringen.v1", "gzac.berichten.v1.dlq"], 5, Duration::from_secs(2)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 5, "{recs:#?}");
    let mut portal = std::collections::HashMap::new();
    for r in on(&recs, &w, PORTAAL) {
        let p: portaal::Bericht = w.decode(r).await;
        portal.insert(p.id.clone(), p);
    }
    let kvk = &portal["b-kvk"];
    assert_eq!((kvk.identificatie.soort, kvk.identificatie.value.as_str()), (portaal::PartijType::Kvk, "69599084"));
    assert_eq!(
        (kvk.bericht_type, kvk.handelingsperspectief.as_str()),
        (portaal::BerichtType::Betaalverzoek, "betalen")
    );
    let r = &portal["b-rsin"];
    assert_eq!(r.identificatie.soort, portaal::PartijType::Rsin);
    assert_eq!(
        (r.bericht_type, r.handelingsperspectief.as_str(), r.referentie.as_str()),
        (portaal::BerichtType::Notificatie, "informatie ontvangen", gzac_portal_bridge::tools::samples::ZAAK_UUID),
        "no type or perspective: the `geen` entries; no referentie: the zaak's"
    );
    assert_eq!(r.einddatum_handelingstermijn, r.publicatiedatum.plus(w.cfg.berichten.standaard_termijn_dagen));
    let mut refused = Vec::new();
    for rec in on(&recs, &w, "gzac.weigeringen.v1") {
        let wg: gzac_portal_bridge::model::common::Weigering = w.decode(rec).await;
        refused.push((wg.referentie.clone(), wg.reden_code.clone()));
        assert_eq!(rec.header("ce_type"), Some("nl.overheid.portaal.weigering-verstuurd"));
    }
    refused.sort();
    let want = [
        ("b-bsn", "ONBEKENDE_ONTVANGER"),
        ("b-hp", "ONBEKEND_HANDELINGSPERSPECTIEF"),
        ("b-type", "ONBEKEND_BERICHTTYPE"),
    ];
    assert_eq!(refused, want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_preference_means_the_default_and_a_tombstone_deletes_a_preference() {
    let mut w = World::new("default").await;
    w.cfg.notificaties.standaard = gzac_portal_bridge::config::Standaard::Email;
    const OTHER: &str = "111222333";
    // klant-a chose nothing (default email applies); klant-b chose sms but was then deleted.
    w.send(VOORKEUREN, "klant-a", &klantvoorkeur(BSN, vec![])).await;
    w.send(VOORKEUREN, "klant-b", &klantvoorkeur(OTHER, vec![Kanaal::Sms])).await;
    w.tombstone(VOORKEUREN, "klant-b").await;
    w.send(BERICHTEN, "a", &bericht("a", BSN)).await;
    w.send(BERICHTEN, "b", &bericht("b", OTHER)).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL, NOTIFICATIES], 3, Duration::from_secs(3)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(on(&recs, &w, PORTAAL).len(), 2);
    let ns = on(&recs, &w, NOTIFICATIES);
    assert_eq!(ns.len(), 1, "{recs:#?}");
    let n: Notificatieopdracht = w.decode(ns[0]).await;
    assert_eq!((n.kanaal, n.referentie.as_str()), (Kanaal::Email, "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_bericht_is_published_at_its_time_even_across_a_restart() {
    let w = World::new("later").await;
    w.send(VOORKEUREN, "klant-3", &klantvoorkeur(BSN, vec![Kanaal::Email])).await;
    let at = Timestamp(w.now().0 + 12_000);
    let later = gzac::Bericht { publicatiedatum: Some(at), ..bericht("later", BSN) };
    let bytes = gzac_portal_bridge::client::frame(w.schema_id(BERICHTEN), &later).unwrap();
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    gzac_portal_bridge::client::send(&w.producer, &w.topic(BERICHTEN), "later", &bytes, Some(trace)).await.unwrap();
    w.send(BERICHTEN, "now", &bericht("now", BSN)).await;

    let mut first = spawn_bridge(&w, "i0", &[]);
    // The bericht due now is published; the later one is not, yet.
    let recs = w.read(&[PORTAAL, NOTIFICATIES], 2, Duration::from_secs(2)).await;
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert!(w.now() < at, "the test machine was too slow to see the bericht before its time");
    assert!(sigterm(&mut first).success());

    let mut second = spawn_bridge(&w, "i0", &[]);
    let recs = w.read(&[PORTAAL, NOTIFICATIES], 4, Duration::from_secs(3)).await;
    assert!(sigterm(&mut second).success());
    assert_eq!(recs.len(), 4, "each bericht published and notified once: {recs:#?}");
    let later = "later";
    let published = recs.iter().find(|r| r.topic == w.topic(PORTAAL) && r.key_str() == later).expect("published");
    // The record's timestamp is the system's; `at` is on the bridge's clock.
    let behind = Timestamp::now().0 - w.now().0;
    assert!(published.timestamp.unwrap() - behind + 2 >= at.0, "published before its publicatiedatum");
    // Published by a timer after a restart, yet linked to the GZAC record that scheduled it.
    // (the repartition copy of it, which carries GZAC's trace on)
    let scheduled_by = format!("{}/", w.topic("gzac-portal-bridge.berichten-repartition.v1"));
    assert!(published.header("ce_causationid").unwrap().starts_with(&scheduled_by), "{:?}", published.headers);
    assert_eq!(published.header("traceparent"), Some(trace));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bericht_replayed_from_offset_0_produces_no_new_notificatie() {
    let w = World::new("replay").await;
    w.send(VOORKEUREN, "klant-4", &klantvoorkeur(BSN, vec![Kanaal::Email, Kanaal::Sms])).await;
    w.send(BERICHTEN, "r-1", &bericht("r-1", BSN)).await;
    let running = bridge::start(&w.cfg).unwrap();
    w.read(&[NOTIFICATIES], 2, Duration::ZERO).await;
    running.stop(Duration::from_secs(10)).await.unwrap();

    // Rewind the bridge's group to offset 0 on its input, as an operator replaying would.
    let c: BaseConsumer =
        w.cfg.client_config().set("group.id", w.cfg.route_group("bericht-herverdeling")).create().unwrap();
    let topic = w.topic(BERICHTEN);
    let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(&topic, p.id(), rdkafka::Offset::Offset(0)).unwrap();
    }
    // The bridge's consumers are static members: they stay in the group until their session
    // times out (6 s here), and Kafka refuses a reset while the group has members.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = c.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
        assert!(std::time::Instant::now() < deadline, "rewind the group (the bridge is stopped): {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(c);

    // A new bericht after the replayed one shows the replay has been processed.
    w.send(BERICHTEN, "r-2", &bericht("r-2", BSN)).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL, NOTIFICATIES], 6, Duration::from_secs(3)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(on(&recs, &w, NOTIFICATIES).len(), 4, "two per bericht, none for the replay: {recs:#?}");
    assert_eq!(on(&recs, &w, PORTAAL).len(), 2, "the replayed bericht is not published again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_of_a_published_bericht_is_forgotten_after_state_retention() {
    let mut w = World::new("retention").await;
    w.cfg.pipeline.state_retention = Duration::from_secs(2);
    w.cfg.pipeline.tick_interval = Duration::from_millis(200);
    w.send(BERICHTEN, "old", &bericht("old", BSN)).await;
    let running = bridge::start(&w.cfg).unwrap();
    let log = w.read(&["gzac-portal-bridge.berichten-state.v1"], 2, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    let states: Vec<Option<String>> =
        log.iter().map(|r| r.value.as_ref().map(|v| String::from_utf8_lossy(v).to_string())).collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states[0].as_deref().unwrap_or("").contains("Gepubliceerd"), "{states:?}");
    assert_eq!(states[1], None, "a tombstone forgets the bericht");
    assert!(log.iter().all(|r| r.key_str() == "old"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_at_rest_is_sealed_and_opens_again_after_a_restart() {
    let mut w = World::new("sealed").await;
    let keys = std::env::temp_dir().join(format!("{}-state-keys", w.cfg.group_id));
    std::fs::write(&keys, "# test keys\nk-2026=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n")
        .unwrap();
    w.cfg.state_encryption = gzac_portal_bridge::config::StateEncryption {
        key_id: Some("k-2026".into()),
        keys_file: Some(keys),
        unsealed: false,
    };
    let m = |f: &str| format!("MARKER-{f}-51c9");
    // A bericht scheduled for later (its whole text waits in the changelog), a taak with prefill
    // data and its answer (kept in the taak's state).
    let at = Timestamp(w.now().0 + 25_000);
    let later = gzac::Bericht {
        onderwerp: m("onderwerp"),
        bericht_tekst: m("tekst"),
        publicatiedatum: Some(at),
        ..bericht("b-later", BSN)
    };
    let t = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e41";
    let mut taak = gzac_portal_bridge::tools::samples::taak(t, BSN, w.today().plus(30));
    if let gzac::Details::Formuliertaak(f) = &mut taak.details {
        f.voorinvullen_gegevens = Some(format!(r#"{{"naam":"{}"}}"#, m("prefill")));
    }
    let mut antwoord = gzac_portal_bridge::tools::samples::antwoord("a-1", t, BSN);
    antwoord.taak.portaalformulier.as_mut().unwrap().verzonden_data = Some(format!(r#"{{"x":"{}"}}"#, m("antwoord")));
    w.send(BERICHTEN, "b-later", &later).await;
    w.send("gzac.taken.v1", t, &taak).await;
    let running = bridge::start(&w.cfg).unwrap();
    w.read(&["portaal.taken.v1"], 1, Duration::ZERO).await;
    w.send("portaal.taakantwoorden.v1", t, &antwoord).await;
    w.read(&["gzac.taakantwoorden.v1"], 1, Duration::ZERO).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert!(w.now() < at, "the test machine was too slow to see the bericht before its time");

    // Raw changelog bytes: entries are there, sealed, and hold none of the markers.
    let changelogs = ["gzac-portal-bridge.berichten-state.v1", "gzac-portal-bridge.taken-state.v1"];
    let raw = w.read(&changelogs, 2, Duration::from_secs(1)).await;
    assert!(raw.len() >= 2, "{raw:#?}");
    for r in &raw {
        let v = r.value.as_deref().unwrap_or_default();
        assert!(v.starts_with(b"GZS1"), "a sealed entry: {:?}", String::from_utf8_lossy(v));
        assert!(!String::from_utf8_lossy(v).contains("MARKER"), "plain text at rest in {}", r.topic);
    }
    // A restarted bridge opens its sealed state: the scheduled bericht is published on time.
    let running = bridge::start(&w.cfg).unwrap();
    let published = w.read(&[PORTAAL], 1, Duration::ZERO).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    let p: portaal::Bericht = w.decode(&published[0]).await;
    assert_eq!(p.bericht_tekst, m("tekst"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bericht_without_uuid_is_a_dead_letter_on_the_topic_gzac_wrote() {
    let w = World::new("no-uuid").await;
    w.send(BERICHTEN, "x", &bericht("", BSN)).await;
    w.send(BERICHTEN, "ok", &bericht("ok", BSN)).await;
    let running = bridge::start(&w.cfg).unwrap();
    let dlq = format!("{BERICHTEN}.dlq");
    let recs = w.read(&[PORTAAL, &dlq], 2, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    let dead = on(&recs, &w, &dlq);
    assert_eq!((dead.len(), on(&recs, &w, PORTAAL).len()), (1, 1), "{recs:#?}");
    assert_eq!(dead[0].header("__connect.errors.exception.class.name"), Some("processing-error"));
    assert!(
        dead[0].header("__connect.errors.exception.message").unwrap_or("").contains("empty"),
        "{:?}",
        dead[0].headers
    );
}
