//! Externe taak and ZaakVerzoek on the real broker: translation and notificatie, the antwoord
//! rules, expiry, a crash between receiving an antwoord and committing, and a restarted bridge
//! that rebuilds its state and tables before it answers.

mod common;

use common::{kill9, sigterm, spawn_bridge, World};
use gzac_portal_bridge::bridge;
use gzac_portal_bridge::client::Received;
use gzac_portal_bridge::model::common::{Kanaal, Notificatieopdracht, Terugmelding, TerugmeldingStatus, Weigering};
use gzac_portal_bridge::model::{gzac, portaal, Datum};
use gzac_portal_bridge::tools::samples::{
    antwoord, betaaltaak, betaling, klantvoorkeur, taak, zaak, zaakverzoek, BSN, OTHER_BSN,
};
use std::collections::HashMap;
use std::time::Duration;

const GZAC_TAKEN: &str = "gzac.taken.v1";
const PORTAAL_TAKEN: &str = "portaal.taken.v1";
const ANTWOORDEN: &str = "portaal.taakantwoorden.v1";
const GZAC_ANTWOORDEN: &str = "gzac.taakantwoorden.v1";
const TERUGMELDINGEN: &str = "portaal.terugmeldingen.v1";
const NOTIFICATIES: &str = "notificaties.opdrachten.v1";
const WEIGERINGEN: &str = "gzac.weigeringen.v1";

/// A last day a month ahead: a fixed date would expire the taak once that day has passed.
fn later() -> Datum {
    Datum::vandaag().plus(30)
}

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
            digitale_adressen: klantvoorkeur(BSN, vec![])
                .digitale_adressen
                .into_iter()
                .filter(|a| a.soort_digitaal_adres == portaal::SoortDigitaalAdres::Telefoonnummer)
                .collect(),
            voorkeurstaal: None,
            ..klantvoorkeur(BSN, vec![Kanaal::Sms])
        },
    )
    .await;
    let t = taak("t-1", BSN, later());
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
    assert_eq!(Some(p.verwerker_taak_id), t.verwerker_taak_id);
    assert_eq!(
        p.koppeling,
        portaal::Koppeling { registratie: "zaak".into(), uuid: Some("0b9e6a3c-1b2d-4c5e-8f70-123456789abc".into()) }
    );
    assert_eq!(
        p.portaalformulier,
        Some(portaal::Portaalformulier {
            formulier: portaal::Formulier { soort: portaal::FormulierSoort::Id, value: "plattegrond-upload".into() },
            data: Some(r#"{"kenteken":"AB-123-C"}"#.into()),
            verzonden_data: None,
        })
    );
    assert_eq!(p.verloopdatum, Some(later().einde()), "the end of the last day in Amsterdam");
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
    w.send(GZAC_TAKEN, "t-1", &taak("t-1", BSN, later())).await;
    let closed = gzac::ExterneTaak { status: gzac::TaakStatus::Afgebroken, ..taak("t-closed", BSN, later()) };
    w.send(GZAC_TAKEN, "t-closed", &closed).await;
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
    let g: gzac::ExterneTaak = w.decode(fwd[0]).await;
    assert_eq!((g.uuid.as_str(), g.status), ("t-1", gzac::TaakStatus::Uitgevoerd), "Open VTB's update of the taak");
    let gzac::Details::Formuliertaak(f) = &g.details else { panic!("a formuliertaak stays one: {g:?}") };
    assert_eq!(f.ontvangen_gegevens, antwoord("a-right", "t-1", BSN).taak.portaalformulier.unwrap().verzonden_data);
    assert_eq!(fwd[0].key_str(), "t-1");
    assert_eq!(fwd[0].header("ce_type"), Some("nl.overheid.taken.externetaak-uitgevoerd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_taak_past_its_last_day_is_closed_and_niet_uitgevoerd() {
    let w = World::new("verlopen").await;
    w.send(GZAC_TAKEN, "t-exp", &taak("t-exp", BSN, w.today().plus(-1))).await;
    w.send(GZAC_TAKEN, "t-later", &taak("t-later", BSN, w.today())).await;
    let running = bridge::start(&w.cfg).unwrap();
    // open ×2 on the portal; then gesloten on the portal and verlopen for GZAC.
    let recs = w.read(&[PORTAAL_TAKEN, GZAC_ANTWOORDEN], 3 + 1, Duration::from_secs(3)).await;
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
        ],
        "a taak whose last day is today stays open until that day ends in Amsterdam"
    );
    let gz = on(&recs, &w, GZAC_ANTWOORDEN);
    assert_eq!(gz.len(), 1, "one verlopen written to GZAC");
    let g: gzac::ExterneTaak = w.decode(gz[0]).await;
    assert_eq!((g.uuid.as_str(), g.status), ("t-exp", gzac::TaakStatus::NietUitgevoerd));
    assert_eq!(gz[0].header("ce_type"), Some("nl.overheid.taken.externetaak-verlopen"));
    let cause = gz[0].header("ce_causationid").unwrap();
    assert!(
        cause.starts_with(&w.topic("gzac-portal-bridge.taken-repartition.v1")),
        "the expiry links to its taak: {cause}"
    );
    assert_eq!(reasons(&w, &tm).await["a-late"], "TAAK_NIET_OPEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_datum_herinnering_the_assignee_is_reminded_once_and_gzac_told() {
    let mut w = World::new("herinnering").await;
    w.cfg.taken.herinnering_uur = 0; // today's reminder is due now
    w.send("portaal.klantvoorkeuren.v1", "klant-1", &klantvoorkeur(BSN, vec![Kanaal::Email])).await;
    let today = gzac::ExterneTaak { datum_herinnering: Some(w.today()), ..taak("t-nu", BSN, later()) };
    let tomorrow = gzac::ExterneTaak { datum_herinnering: Some(w.today().plus(1)), ..taak("t-morgen", BSN, later()) };
    w.send(GZAC_TAKEN, "t-nu", &today).await;
    w.send(GZAC_TAKEN, "t-morgen", &tomorrow).await;
    let running = bridge::start(&w.cfg).unwrap();
    // Two notificaties of the new taken, one reminder, and one herinnerd for GZAC. Several
    // ticks pass in the settle time: a second reminder would show.
    let recs = w.read(&[NOTIFICATIES, GZAC_ANTWOORDEN], 3 + 1, Duration::from_secs(3)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    let mut events = Vec::new();
    for r in on(&recs, &w, NOTIFICATIES) {
        let n: Notificatieopdracht = w.decode(r).await;
        events.push((n.referentie.clone(), n.gebeurtenis.clone(), n.request.template_id.clone()));
    }
    events.sort();
    let t = &w.cfg.notificaties.templates;
    assert_eq!(
        events,
        vec![
            ("t-morgen".into(), "taak-aangemaakt".into(), t.taak.email["nld"].clone()),
            ("t-nu".into(), "taak-aangemaakt".into(), t.taak.email["nld"].clone()),
            ("t-nu".into(), "taak-herinnering".into(), t.herinnering.email["nld"].clone()),
        ]
    );
    let herinnerd = on(&recs, &w, GZAC_ANTWOORDEN);
    assert_eq!(herinnerd.len(), 1, "GZAC hears of the one reminder");
    assert_eq!(herinnerd[0].header("ce_type"), Some("nl.overheid.taken.externetaak-herinnerd"));
    assert_eq!(herinnerd[0].key_str(), "t-nu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_betaaltaak_is_paid_in_the_portal_and_gzac_gets_it_uitgevoerd() {
    let w = World::new("betaaltaak").await;
    w.send(GZAC_TAKEN, "t-pay", &betaaltaak("t-pay", BSN, later())).await;
    let running = bridge::start(&w.cfg).unwrap();
    let shown = w.read(&[PORTAAL_TAKEN], 1, Duration::ZERO).await;
    let p: portaal::Taak = w.decode(&shown[0]).await;
    assert_eq!(p.soort, portaal::TaakSoort::Ogonebetaling);
    let o = p.ogonebetaling.unwrap();
    assert_eq!(
        (o.bedrag, o.betaalkenmerk.as_str(), o.pspid.as_str()),
        (147.43, "ZAAK-2026-0042 leges", "GemeenteVoorbeeld")
    );
    w.send(ANTWOORDEN, "t-pay", &betaling("a-pay", "t-pay", BSN)).await;
    let recs = w.read(&[GZAC_ANTWOORDEN, TERUGMELDINGEN], 2, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reasons(&w, &recs).await["a-pay"], "Doorgestuurd");
    let fwd = on(&recs, &w, GZAC_ANTWOORDEN);
    let g: gzac::ExterneTaak = w.decode(fwd[0]).await;
    assert_eq!((g.taak_soort, g.status), (gzac::TaakSoort::Betaaltaak, gzac::TaakStatus::Uitgevoerd));
    assert_eq!(fwd[0].header("ce_betaalreferentie"), Some("3014828147"), "the provider's transaction id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taak_the_portal_cannot_take_goes_back_to_gzac_as_a_weigering() {
    let w = World::new("weigering").await;
    let nobody = gzac::ExterneTaak {
        is_toegewezen_aan: "urn:nld:klant:klantnummer:610541501".into(),
        ..taak("t-x", BSN, later())
    };
    let vestiging = gzac::ExterneTaak {
        is_toegewezen_aan: "urn:nld:hr:kvknummer:69599084:vestigingsnummer:000038509504".into(),
        ..taak("t-kvk", BSN, later())
    };
    w.send(GZAC_TAKEN, "t-x", &nobody).await;
    w.send(GZAC_TAKEN, "t-kvk", &vestiging).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL_TAKEN, WEIGERINGEN, "gzac.taken.v1.dlq"], 2, Duration::from_secs(2)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let portal = on(&recs, &w, PORTAAL_TAKEN);
    assert_eq!(portal.len(), 1);
    assert_eq!(portal[0].key_str(), "t-kvk", "a ketenpartner's vestiging reaches the portal");
    let p: portaal::Taak = w.decode(portal[0]).await;
    assert_eq!((p.identificatie.soort, p.identificatie.value.as_str()), (portaal::PartijType::Kvk, "69599084"));
    let wg: Weigering = w.decode(on(&recs, &w, WEIGERINGEN)[0]).await;
    assert_eq!((wg.referentie.as_str(), wg.reden_code.as_str()), ("t-x", "ONBEKENDE_ONTVANGER"));
    assert!(!wg.toelichting.contains("610541501"), "the reason does not repeat the input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_receiving_antwoorden_and_committing_neither_forwards_twice_nor_loses() {
    let w = World::new("kill-antwoord").await;
    const N: usize = 300;
    for i in 0..N {
        w.send(GZAC_TAKEN, &format!("t-{i}"), &taak(&format!("t-{i}"), BSN, later())).await;
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
    w.send(GZAC_TAKEN, "t-1", &taak("t-1", BSN, later())).await;
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
    w.send(GZAC_TAKEN, "t-1", &taak("t-1", BSN, later())).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&[PORTAAL_TAKEN], 1, Duration::from_secs(1)).await;
    let bad = bad_rows(&running, "taak");
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 1, "the route restored around the bad entry and went on");
    assert!(bad >= 1, "the bad entry is counted: {bad}");
}
