//! Externe taak and ZaakVerzoek on the real broker: translation and notificatie, the antwoord
//! rules, expiry, a crash between receiving an antwoord and committing, and a restarted bridge
//! that rebuilds its state and tables before it answers.

mod common;

use common::{kill9, sigterm, spawn_bridge, World};
use gzac_portal_bridge::bridge;
use gzac_portal_bridge::client::Received;
use gzac_portal_bridge::model::common::{Kanaal, Notificatieopdracht, Terugmelding, TerugmeldingStatus};
use gzac_portal_bridge::model::{gzac, portaal, Timestamp};
use gzac_portal_bridge::samples::{antwoord, taak, zaak, zaakverzoek, BSN, OTHER_BSN};
use std::collections::HashMap;
use std::time::Duration;

const GZAC_TAKEN: &str = "gzac.taken.v1";
const PORTAAL_TAKEN: &str = "portaal.taken.v1";
const ANTWOORDEN: &str = "portaal.taakantwoorden.v1";
const GZAC_ANTWOORDEN: &str = "gzac.taakantwoorden.v1";
const TERUGMELDINGEN: &str = "portaal.terugmeldingen.v1";
const NOTIFICATIES: &str = "notificaties.opdrachten.v1";

fn on<'a>(recs: &'a [Received], w: &World, topic: &str) -> Vec<&'a Received> {
    recs.iter().filter(|r| r.topic == w.topic(topic)).collect()
}

async fn reasons(w: &World, recs: &[Received]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for r in on(recs, w, TERUGMELDINGEN) {
        let t: Terugmelding = w.decode(r).await;
        let why = match t.status {
            TerugmeldingStatus::Afgewezen => t.reden_code.unwrap_or_default(),
            other => format!("{other:?}"),
        };
        assert!(out.insert(t.referentie.clone(), why).is_none(), "two terugmeldingen for {}", t.referentie);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taak_reaches_the_portal_and_its_assignee_is_notified() {
    let w = World::new("taak").await;
    w.send(
        "portaal.klantvoorkeuren.v1",
        "klant-1",
        &portaal::Klantvoorkeur {
            partij: portaal::Partij { soort: portaal::PartijType::Bsn, value: BSN.into() },
            kanalen: vec![Kanaal::Sms],
            email: None,
            telefoonnummer: Some("+31612345678".into()),
            voorkeurstaal: None,
        },
    )
    .await;
    // A deadline a month ahead: a fixed date would expire the taak once that day has passed.
    let t = taak("t-1", BSN, Some(Timestamp(Timestamp::now().0 + 30 * 86_400_000)));
    w.send(GZAC_TAKEN, "t-1", &t).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL_TAKEN, NOTIFICATIES], 2, Duration::from_secs(2)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let out = on(&recs, &w, PORTAAL_TAKEN)[0];
    assert_eq!(out.key_str(), "t-1", "the taak's uuid is the key, not a field");
    let p: portaal::Taak = w.decode(out).await;
    assert_eq!(
        (p.titel.as_str(), p.status, p.soort),
        ("Upload de plattegrond", portaal::TaakStatus::Open, portaal::TaakSoort::Portaalformulier)
    );
    assert_eq!(p.identificatie, portaal::TaakIdentificatie { soort: portaal::PartijType::Bsn, value: BSN.into() });
    assert_eq!(p.verwerker_taak_id, t.verwerker_taak_id);
    assert_eq!(
        p.koppeling,
        portaal::Koppeling { registratie: "zaak".into(), uuid: Some("0b9e6a3c-1b2d-4c5e-8f70-123456789abc".into()) }
    );
    assert_eq!(
        p.portaalformulier,
        Some(portaal::Portaalformulier {
            formulier: portaal::Formulier { soort: portaal::FormulierSoort::Id, value: "plattegrond-upload".into() },
            data: Some(t.data.clone()),
            verzonden_data: None,
        })
    );
    assert_eq!(p.verloopdatum, t.verloopdatum);
    let n: Notificatieopdracht = w.decode(on(&recs, &w, NOTIFICATIES)[0]).await;
    assert_eq!(
        (n.kanaal, n.request.template_id.as_str(), n.gebeurtenis.as_str()),
        (Kanaal::Sms, w.cfg.notificaties.templates.taak.sms["nld"].as_str(), "taak-aangemaakt")
    );
    assert_eq!(n.request.phone_number.as_deref(), Some("+31612345678"));
    assert_eq!(n.request.personalisation["link"], "https://mijn.gemeente.example/taken/t-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_antwoord_is_forwarded_only_for_an_open_taak_by_its_assignee_and_only_once() {
    let w = World::new("antwoord").await;
    w.send(GZAC_TAKEN, "t-1", &taak("t-1", BSN, None)).await;
    w.send(GZAC_TAKEN, "t-closed", &gzac::Taak { status: gzac::TaakStatus::Gesloten, ..taak("t-closed", BSN, None) })
        .await;
    let running = bridge::start(&w.cfg).unwrap();
    w.read(&[PORTAAL_TAKEN], 2, Duration::ZERO).await;
    // Sent after the portal shows the taken, as a klant would.
    w.send(ANTWOORDEN, "t-1", &antwoord("a-wrong-party", "t-1", OTHER_BSN)).await;
    w.send(ANTWOORDEN, "t-unknown", &antwoord("a-unknown", "t-unknown", BSN)).await;
    w.send(ANTWOORDEN, "t-closed", &antwoord("a-closed", "t-closed", BSN)).await;
    w.send(ANTWOORDEN, "t-1", &antwoord("a-right", "t-1", BSN)).await;
    w.send(ANTWOORDEN, "t-1", &antwoord("a-second", "t-1", BSN)).await;
    let recs = w.read(&[TERUGMELDINGEN, GZAC_ANTWOORDEN], 6, Duration::from_secs(3)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();

    let why = reasons(&w, &recs).await;
    assert_eq!(why.len(), 5);
    assert_eq!(why["a-wrong-party"], "NIET_TOEGEWEZEN");
    assert_eq!(why["a-unknown"], "ONBEKENDE_TAAK");
    assert_eq!(why["a-closed"], "TAAK_NIET_OPEN");
    assert_eq!(why["a-right"], "Doorgestuurd");
    assert_eq!(why["a-second"], "TAAK_AL_BEANTWOORD");
    let fwd = on(&recs, &w, GZAC_ANTWOORDEN);
    assert_eq!(fwd.len(), 1, "only the right antwoord reaches GZAC");
    let g: gzac::TaakAntwoord = w.decode(fwd[0]).await;
    assert_eq!(
        (g.verwerker_taak_id, g.status),
        (taak("t-1", BSN, None).verwerker_taak_id, gzac::TaakStatus::Ingediend)
    );
    assert_eq!(fwd[0].key_str(), "t-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_taak_past_its_verloopdatum_becomes_verlopen_on_both_sides() {
    let w = World::new("verlopen").await;
    let soon = Timestamp(Timestamp::now().0 + 3_000);
    w.send(GZAC_TAKEN, "t-exp", &taak("t-exp", BSN, Some(soon))).await;
    w.send(GZAC_TAKEN, "t-later", &taak("t-later", BSN, Some(Timestamp(Timestamp::now().0 + 3_600_000)))).await;
    let running = bridge::start(&w.cfg).unwrap();
    // open ×2 on the portal; then verlopen on the portal and on GZAC's taken topic.
    let recs = w.read(&[PORTAAL_TAKEN, GZAC_TAKEN], 2 + 3 + 1, Duration::from_secs(3)).await;
    w.send(ANTWOORDEN, "t-exp", &antwoord("a-late", "t-exp", BSN)).await;
    let tm = w.read(&[TERUGMELDINGEN], 1, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();

    let mut portal = Vec::new();
    for r in on(&recs, &w, PORTAAL_TAKEN) {
        let t: portaal::Taak = w.decode(r).await;
        portal.push((r.key_str().to_string(), t.status));
    }
    portal.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(
        portal,
        vec![
            ("t-exp".to_string(), portaal::TaakStatus::Gesloten),
            ("t-exp".to_string(), portaal::TaakStatus::Open),
            ("t-later".to_string(), portaal::TaakStatus::Open),
        ]
    );
    let gz: Vec<&Received> =
        on(&recs, &w, GZAC_TAKEN).into_iter().filter(|r| r.header("ce_source").is_some()).collect();
    assert_eq!(gz.len(), 1, "one verlopen written to GZAC");
    let g: gzac::Taak = w.decode(gz[0]).await;
    assert_eq!((g.uuid.as_str(), g.status), ("t-exp", gzac::TaakStatus::Verlopen));
    assert_eq!(gz[0].header("ce_type"), Some("nl.overheid.taken.externetaak-verlopen"));
    let cause = gz[0].header("ce_causationid").unwrap();
    assert!(
        cause.starts_with(&w.topic("gzac-portal-bridge.taken-repartition.v1")),
        "the expiry links to its taak: {cause}"
    );
    assert!(gz[0].timestamp.unwrap() >= soon.0);
    assert_eq!(reasons(&w, &tm).await["a-late"], "TAAK_NIET_OPEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_receiving_antwoorden_and_committing_neither_forwards_twice_nor_loses() {
    let w = World::new("kill-antwoord").await;
    const N: usize = 300;
    for i in 0..N {
        w.send(GZAC_TAKEN, &format!("t-{i}"), &taak(&format!("t-{i}"), BSN, None)).await;
    }
    // Long transactions: a kill almost surely lands while antwoorden are received but not committed.
    let cfg = w.config_file("pipeline:\n  batch_max_records: 100000\n  batch_max_interval: 1500ms\n");
    let cfg_arg = cfg.display().to_string();
    let mut bridge = spawn_bridge(&w, "i0", &["--config", &cfg_arg]);
    w.read(&[PORTAAL_TAKEN], N, Duration::ZERO).await;
    for i in 0..N {
        w.send(ANTWOORDEN, &format!("t-{i}"), &antwoord(&format!("a-{i}"), &format!("t-{i}"), BSN)).await;
        if i == N / 2 {
            kill9(&mut bridge);
            bridge = spawn_bridge(&w, "i0", &["--config", &cfg_arg]);
        }
    }
    // Duplicates for half of them: a retrying portal must not get a second forward either.
    for i in 0..N / 2 {
        w.send(ANTWOORDEN, &format!("t-{i}"), &antwoord(&format!("dup-{i}"), &format!("t-{i}"), BSN)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    kill9(&mut bridge);
    let mut bridge = spawn_bridge(&w, "i0", &["--config", &cfg_arg]);
    let recs = w.read(&[GZAC_ANTWOORDEN, TERUGMELDINGEN], N + N + N / 2, Duration::from_secs(4)).await;
    assert!(sigterm(&mut bridge).success());
    let fwd = on(&recs, &w, GZAC_ANTWOORDEN);
    let mut keys: Vec<&str> = fwd.iter().map(|r| r.key_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((fwd.len(), keys.len()), (N, N), "one forward per taak");
    let why = reasons(&w, &recs).await;
    assert_eq!(why.len(), N + N / 2);
    assert!((0..N).all(|i| why[&format!("a-{i}")] == "Doorgestuurd"));
    assert!((0..N / 2).all(|i| why[&format!("dup-{i}")] == "TAAK_AL_BEANTWOORD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bridge_rebuilds_taak_state_and_tables_before_it_answers() {
    let w = World::new("rebuild").await;
    w.send(GZAC_TAKEN, "t-1", &taak("t-1", BSN, None)).await;
    w.send("gzac.zaken.v1", "z-1", &zaak("z-1", BSN)).await;
    let mut first = spawn_bridge(&w, "i0", &[]);
    w.read(&[PORTAAL_TAKEN], 1, Duration::ZERO).await;
    assert!(sigterm(&mut first).success());
    // While no bridge runs: an antwoord and a zaakverzoek that need the state and the zaken table.
    w.send(ANTWOORDEN, "t-1", &antwoord("a-1", "t-1", BSN)).await;
    w.send("portaal.zaakverzoeken.v1", "z-1", &zaakverzoek("zv-1", "z-1", BSN)).await;
    let mut second = spawn_bridge(&w, "i1", &[]);
    let recs = w.read(&[TERUGMELDINGEN], 2, Duration::from_secs(2)).await;
    assert!(sigterm(&mut second).success());
    let why = reasons(&w, &recs).await;
    assert_eq!(why["a-1"], "Doorgestuurd", "the taak state was rebuilt before the antwoord");
    assert_eq!(why["zv-1"], "Doorgestuurd", "the zaken table was read before the zaakverzoek");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zaakverzoek_is_forwarded_only_for_a_known_zaak_by_a_betrokkene() {
    let w = World::new("zaakverzoek").await;
    w.send("gzac.zaken.v1", "z-1", &zaak("z-1", BSN)).await;
    w.send("portaal.zaakverzoeken.v1", "z-1", &zaakverzoek("zv-outsider", "z-1", OTHER_BSN)).await;
    w.send("portaal.zaakverzoeken.v1", "z-9", &zaakverzoek("zv-unknown", "z-9", BSN)).await;
    w.send("portaal.zaakverzoeken.v1", "z-1", &zaakverzoek("zv-bad-bsn", "z-1", "123456789")).await;
    w.send("portaal.zaakverzoeken.v1", "z-1", &zaakverzoek("zv-ok", "z-1", BSN)).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[TERUGMELDINGEN, "gzac.zaakverzoeken.v1"], 5, Duration::from_secs(2)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    let why = reasons(&w, &recs).await;
    assert_eq!(why["zv-outsider"], "GEEN_BETROKKENE");
    assert_eq!(why["zv-unknown"], "ONBEKENDE_ZAAK");
    assert_eq!(why["zv-bad-bsn"], "ONGELDIG_BSN");
    assert_eq!(why["zv-ok"], "Doorgestuurd");
    let fwd = on(&recs, &w, "gzac.zaakverzoeken.v1");
    assert_eq!(fwd.len(), 1);
    let g: gzac::Verzoek = w.decode(fwd[0]).await;
    let zaak_urn = format!("{}:ZAAK-z-1", w.cfg.verzoek.zaak_urn);
    assert_eq!(g.is_gerelateerd_aan, vec![gzac::IsGerelateerdAan { urn: zaak_urn }], "the zaak from the zaken table");
    assert_eq!(g.initiator, format!("urn:nld:brp:bsn:{BSN}"));
    assert_eq!(fwd[0].header("ce_indienerrol"), Some("klant"), "who sent it, outside the Open VTB record");
    assert_eq!(fwd[0].key_str(), "z-1", "keyed by zaak uuid, never a BSN");
}

/// A component's counter of undecodable table rows or changelog entries.
fn bad_rows(running: &bridge::Running, component: &str) -> u64 {
    let (_, stats) = running.stats.iter().find(|(n, _)| n.ends_with(component)).expect("component reports");
    stats.bad_state_rows.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_row_in_the_zaken_table_keeps_the_previous_row() {
    let w = World::new("poison").await;
    w.send("gzac.zaken.v1", "z-1", &zaak("z-1", BSN)).await;
    gzac_portal_bridge::client::send(&w.producer, &w.topic("gzac.zaken.v1"), "z-1", b"not avro", None).await.unwrap();
    w.send("portaal.zaakverzoeken.v1", "z-1", &zaakverzoek("zv-1", "z-1", BSN)).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[TERUGMELDINGEN, "gzac.zaakverzoeken.v1"], 2, Duration::from_secs(1)).await;
    let bad = bad_rows(&running, &w.topic("gzac.zaken.v1"));
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reasons(&w, &recs).await["zv-1"], "Doorgestuurd", "the zaak's previous row still stands");
    assert_eq!(bad, 1, "the poison row is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_entry_that_no_longer_parses_is_skipped_at_restore() {
    let w = World::new("badstate").await;
    let changelog = w.topic("gzac-portal-bridge.taken-state.v1");
    for p in 0..3 {
        let rec = rdkafka::producer::FutureRecord::to(&changelog).key("t-oud").payload(&b"{not json"[..]).partition(p);
        w.producer.send(rec, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    }
    w.send(GZAC_TAKEN, "t-1", &taak("t-1", BSN, None)).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL_TAKEN], 1, Duration::from_secs(1)).await;
    let bad = bad_rows(&running, "taak");
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 1, "the route restored around the bad entry and went on");
    assert!(bad >= 1, "the bad entry is counted: {bad}");
}
