//! Citizen communication on the real broker, each through a SIGKILL: read receipts (GZAC gets
//! `geopendOp` once), escalation of a bericht left unopened and a taak left open (another channel,
//! or "niet bereikt" for GZAC), quiet hours (an SMS held until 08:00) and digests (a window that
//! closes without new input). Time comes from the bridge's settable clock
//! (`GZAC_BRIDGE_CLOCK_START`): each bridge process starts at a chosen moment of a simulated
//! timeline in Europe/Amsterdam, so no test sleeps until morning. The quiet-hours test runs two
//! instances, so held notificaties move between them with their partitions.

mod common;

use common::{kill9, sigterm, spawn_bridge_with, Reaped, World};
use gzac_portal_bridge::client::Received;
use gzac_portal_bridge::model::common::{Kanaal, NietBereikt, Notificatieopdracht};
use gzac_portal_bridge::model::{gzac, portaal, Datum, Timestamp};
use gzac_portal_bridge::tools::samples::{bericht, klantvoorkeur, taak, BSN, OTHER_BSN};
use std::time::Duration;

const BERICHTEN: &str = "gzac.berichten.v1";
const TAKEN: &str = "gzac.taken.v1";
const PORTAAL: &str = "portaal.berichten.v1";
const PORTAAL_TAKEN: &str = "portaal.taken.v1";
const GEOPEND: &str = "portaal.berichten-geopend.v1";
const GZAC_GEOPEND: &str = "gzac.berichten-geopend.v1";
const NIET_BEREIKT: &str = "gzac.niet-bereikt.v1";
const NOTIFICATIES: &str = "notificaties.opdrachten.v1";
const VOORKEUREN: &str = "portaal.klantvoorkeuren.v1";
const GEOPEND_DLQ: &str = "gzac-portal-bridge.berichten-repartition.v1.dlq";

/// Every feature on, as a municipality would set them.
const CONFIG: &str = "pipeline:
  tick_interval: 200ms
notificaties:
  stille_uren: { van: \"21:00\", tot: \"08:00\", kanalen: [sms] }
  bundel: { venster: 60s, kanalen: [email], gebeurtenissen: [bericht-gepubliceerd, taak-aangemaakt] }
  escalatie:
    berichten: { voor_einddatum: 4d }
    taken: { voor_einddatum: 4d }
";

fn at(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// A bridge process of `w` whose clock starts at `clock`.
fn bridge(w: &World, clock: &str) -> Reaped {
    bridge_as(w, "i0", clock)
}

/// Instance `instance` of `w`'s bridge, its clock starting at `clock`.
fn bridge_as(w: &World, instance: &str, clock: &str) -> Reaped {
    let config = w.config_file(CONFIG);
    spawn_bridge_with(w, instance, &["--config", config.to_str().unwrap()], &[("GZAC_BRIDGE_CLOCK_START", clock)])
}

/// The notificaties among `recs`; each one's request is held against NotifyNL's schema.
async fn notificaties(w: &World, recs: &[Received]) -> Vec<Notificatieopdracht> {
    let notifynl = common::reference_schema("notifynl-notification-request.schema.json");
    let mut out = Vec::new();
    for r in recs.iter().filter(|r| r.topic == w.topic(NOTIFICATIES)) {
        let n: Notificatieopdracht = w.decode(r).await;
        let request = serde_json::to_value(&n.request).unwrap();
        let request: serde_json::Map<String, serde_json::Value> = request
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let request = serde_json::Value::Object(request);
        assert_eq!(common::invalid(&notifynl, &request), None, "not a NotifyNL request: {request}");
        out.push(n);
    }
    out
}

/// Kill `bridge` the moment the first of `topics` holds a record (or after a minute): in the
/// middle of what the restart made due.
async fn kill_at_first_output(w: &World, mut bridge: Reaped, topics: &[&str]) {
    w.read(topics, 1, Duration::ZERO).await;
    kill9(&mut bridge);
}

/// What is held goes out: a bridge started at `just_before` is killed at the first notificatie
/// (in the middle of the release), one started at `after` finishes; every notificatie so far.
async fn released_through_a_crash(w: &World, just_before: &str, after: &str) -> Vec<Received> {
    kill_at_first_output(w, bridge(w, just_before), &[NOTIFICATIES]).await;
    let mut c = bridge(w, after);
    let recs = w.read(&[NOTIFICATIES], 1, Duration::from_secs(6)).await;
    assert!(sigterm(&mut c).success());
    recs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_opening_reaches_gzac_once_and_what_stays_unopened_is_escalated_once() {
    let w = World::new("opened").await;
    // BSN chose email and has a phone number too; OTHER_BSN has email only.
    w.send(VOORKEUREN, "k-1", &klantvoorkeur(BSN, vec![Kanaal::Email])).await;
    let mut alleen_email = klantvoorkeur(OTHER_BSN, vec![Kanaal::Email]);
    alleen_email.digitale_adressen.retain(|a| a.soort_digitaal_adres == portaal::SoortDigitaalAdres::Email);
    w.send(VOORKEUREN, "k-2", &alleen_email).await;
    // Deadline 15 March (local midnight); escalation 4 days before the end of that day: 12 March.
    let eind = at("2027-03-15T00:00:00+01:00");
    let act = |uuid: &str, bsn: &str, h| gzac::Bericht {
        publicatiedatum: None,
        einddatum_handelings_termijn: Some(eind),
        handelings_perspectief: Some(h),
        ..bericht(uuid, bsn)
    };
    use gzac::HandelingsPerspectief::{InformatieGeven, InformatieKrijgen};
    w.send(BERICHTEN, "b-open", &act("b-open", BSN, InformatieGeven)).await;
    w.send(BERICHTEN, "b-unread", &act("b-unread", BSN, InformatieGeven)).await;
    w.send(BERICHTEN, "b-info", &act("b-info", BSN, InformatieKrijgen)).await;
    w.send(BERICHTEN, "b-far", &act("b-far", OTHER_BSN, InformatieGeven)).await;
    let t = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e77";
    w.send(TAKEN, t, &taak(t, BSN, Datum::in_amsterdam(eind))).await;

    // 1 March, 10:00: everything is published.
    let mut a = bridge(&w, "2027-03-01T10:00:00+01:00");
    let recs = w.read(&[PORTAAL, PORTAAL_TAKEN], 5, Duration::ZERO).await;
    assert_eq!(recs.len(), 5, "{recs:#?}");
    // b-open is opened twice; someone else "opens" b-unread (refused: it stays unopened).
    let opening = |id: &str, bericht: &str, op: &str, door: &str| portaal::BerichtGeopend {
        id: id.into(),
        bericht_id: bericht.into(),
        geopend_op: at(op),
        door: portaal::Partij { soort: portaal::PartijType::Bsn, value: door.into() },
    };
    w.send(GEOPEND, "b-open", &opening("o-1", "b-open", "2027-03-01T10:05:00+01:00", BSN)).await;
    w.send(GEOPEND, "b-open", &opening("o-2", "b-open", "2027-03-01T10:07:00+01:00", BSN)).await;
    w.send(GEOPEND, "b-unread", &opening("o-3", "b-unread", "2027-03-01T10:08:00+01:00", OTHER_BSN)).await;
    // Killed in the middle of the openings.
    w.read(&[GZAC_GEOPEND], 1, Duration::ZERO).await;
    kill9(&mut a);

    // 12 March, just before 10:00: the escalations are due; killed at the first of them.
    let b = bridge(&w, "2027-03-12T09:59:58+01:00");
    kill_at_first_output(&w, b, &[NIET_BEREIKT]).await;
    // Later that morning the rest goes out; a third opening changes nothing.
    let mut c = bridge(&w, "2027-03-12T10:00:30+01:00");
    w.send(GEOPEND, "b-open", &opening("o-4", "b-open", "2027-03-12T10:00:00+01:00", BSN)).await;
    let recs = w.read(&[NOTIFICATIES, NIET_BEREIKT, GZAC_GEOPEND, GEOPEND_DLQ], 1, Duration::from_secs(1)).await;
    let escalated = |ns: &[Notificatieopdracht]| ns.iter().filter(|n| n.gebeurtenis.ends_with("-escalatie")).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut recs = recs;
    while escalated(&notificaties(&w, &recs).await) < 2 && std::time::Instant::now() < deadline {
        recs = w.read(&[NOTIFICATIES, NIET_BEREIKT, GZAC_GEOPEND, GEOPEND_DLQ], 1, Duration::from_secs(1)).await;
    }
    // Settle: nothing more may come.
    let recs =
        w.read(&[NOTIFICATIES, NIET_BEREIKT, GZAC_GEOPEND, GEOPEND_DLQ], recs.len(), Duration::from_secs(5)).await;
    assert!(sigterm(&mut c).success());

    // GZAC: one geopendOp, the first opening's moment.
    let geopend: Vec<&Received> = recs.iter().filter(|r| r.topic == w.topic(GZAC_GEOPEND)).collect();
    assert_eq!(geopend.len(), 1, "{recs:#?}");
    let g: gzac::BerichtGeopendOp = w.decode(geopend[0]).await;
    assert_eq!((g.uuid.as_str(), g.geopend_op), ("b-open", at("2027-03-01T10:05:00+01:00")));
    assert_eq!(geopend[0].header("ce_type"), Some("nl.overheid.berichten.bericht-geopend"));
    // Its body is Open VTB's PATCH body (the uuid is the record's key and subject besides).
    let patch = common::openapi_schema("openvtb-berichten-openapi.yaml", "PatchedBerichtGeopendOp");
    let body = serde_json::json!({ "geopendOp": g.geopend_op.rfc3339() });
    assert_eq!(common::invalid(&patch, &body), None);
    assert!(common::invalid(&patch, &serde_json::json!({ "geopendOp": "gisteren" })).is_some());
    // The opening by someone else is a dead letter with its reason.
    let dlq: Vec<&Received> = recs.iter().filter(|r| r.topic == w.topic(GEOPEND_DLQ)).collect();
    assert_eq!(dlq.len(), 1, "{recs:#?}");
    assert!(dlq[0].header("__connect.errors.exception.message").unwrap_or("").contains("someone other than"));

    // One escalation each, on the channel not used before, for b-unread and the taak only.
    let ns = notificaties(&w, &recs).await;
    let mut esc: Vec<(&str, &str, Kanaal)> = ns
        .iter()
        .filter(|n| n.gebeurtenis.ends_with("-escalatie"))
        .map(|n| (n.referentie.as_str(), n.gebeurtenis.as_str(), n.kanaal))
        .collect();
    esc.sort_by_key(|e| e.0);
    assert_eq!(esc, vec![(t, "taak-escalatie", Kanaal::Sms), ("b-unread", "bericht-escalatie", Kanaal::Sms)]);
    let templates = &w.cfg.notificaties.templates.escalatie;
    assert!(ns
        .iter()
        .filter(|n| n.gebeurtenis.ends_with("-escalatie"))
        .all(|n| n.request.template_id == templates.sms["nld"]
            && n.request.phone_number.as_deref() == Some("+31612345678")));
    // No email was sent twice either: each notificatie id once.
    let mut ids: Vec<&str> = ns.iter().map(|n| n.id.as_str()).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a notificatie sent twice: {ns:#?}");

    // b-far's klant has no other channel: GZAC hears so, once.
    let nb: Vec<&Received> = recs.iter().filter(|r| r.topic == w.topic(NIET_BEREIKT)).collect();
    assert_eq!(nb.len(), 1, "{recs:#?}");
    let nb: NietBereikt = w.decode(nb[0]).await;
    assert_eq!((nb.referentie.as_str(), nb.reden_code.as_str()), ("b-far", "GEEN_ANDER_KANAAL"));
}

/// `n` valid BSNs (elfproef): one klant each.
fn bsns(n: usize) -> Vec<String> {
    (100_000_000u32..).map(|v| v.to_string()).filter(|b| gzac_portal_bridge::identifiers::elfproef(b)).take(n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smses_due_at_night_are_held_until_eight_and_sent_once_by_two_instances() {
    let w = World::new("quiet").await;
    let klanten = bsns(6);
    for (i, bsn) in klanten.iter().enumerate() {
        let id = format!("q-{i}");
        w.send(VOORKEUREN, &format!("k-{i}"), &klantvoorkeur(bsn, vec![Kanaal::Sms])).await;
        w.send(BERICHTEN, &id, &gzac::Bericht { publicatiedatum: None, ..bericht(&id, bsn) }).await;
    }

    // 21:10: two instances share the klanten; the berichten are published, every SMS waits.
    let night = "2027-03-01T21:10:00+01:00";
    let (mut a0, mut a1) = (bridge_as(&w, "i0", night), bridge_as(&w, "i1", night));
    let recs = w.read(&[PORTAAL], klanten.len(), Duration::ZERO).await;
    assert_eq!(recs.len(), klanten.len());
    let recs = w.read(&[NOTIFICATIES], 0, Duration::from_secs(4)).await;
    assert!(recs.is_empty(), "an SMS went out at night: {recs:#?}");
    kill9(&mut a0);
    kill9(&mut a1);

    // 07:59:57 the next morning, both instances: killed as soon as the first SMS is out (in the
    // middle of the release); then one instance alone finishes what is left.
    let morning = "2027-03-02T07:59:57+01:00";
    let (b0, mut b1) = (bridge_as(&w, "i0", morning), bridge_as(&w, "i1", morning));
    kill_at_first_output(&w, b0, &[NOTIFICATIES]).await;
    kill9(&mut b1);
    let mut c = bridge_as(&w, "i0", "2027-03-02T08:00:30+01:00");
    let recs = w.read(&[NOTIFICATIES], klanten.len(), Duration::from_secs(6)).await;
    assert!(sigterm(&mut c).success());

    let ns = notificaties(&w, &recs).await;
    assert_eq!(ns.len(), klanten.len(), "each held SMS sent exactly once: {ns:#?}");
    let mut refs: Vec<&str> = ns.iter().map(|n| n.referentie.as_str()).collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), klanten.len(), "{ns:#?}");
    for n in &ns {
        assert_eq!(n.kanaal, Kanaal::Sms);
        assert!(n.tijdstip >= at("2027-03-02T08:00:00+01:00"), "sent before the quiet hours ended: {n:?}");
        assert_eq!(n.request.template_id, w.cfg.notificaties.templates.bericht.sms["nld"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_berichten_in_one_window_become_one_digest_when_it_closes() {
    let w = World::new("digest").await;
    w.send(VOORKEUREN, "k-1", &klantvoorkeur(BSN, vec![Kanaal::Email])).await;
    for id in ["d-1", "d-2", "d-3"] {
        w.send(BERICHTEN, id, &gzac::Bericht { publicatiedatum: None, ..bericht(id, BSN) }).await;
    }
    // 10:00: published; the window runs until 10:01.
    let mut a = bridge(&w, "2027-03-01T10:00:00+01:00");
    let recs = w.read(&[PORTAAL], 3, Duration::ZERO).await;
    assert_eq!(recs.len(), 3);
    let recs = w.read(&[NOTIFICATIES], 0, Duration::from_secs(3)).await;
    assert!(recs.is_empty(), "sent before the window closed: {recs:#?}");
    kill9(&mut a);

    // The window closes while no input arrives; killed at the digest.
    let recs = released_through_a_crash(&w, "2027-03-01T10:00:57+01:00", "2027-03-01T10:01:30+01:00").await;

    let ns = notificaties(&w, &recs).await;
    assert_eq!(ns.len(), 1, "one digest, nothing else: {ns:#?}");
    let d = &ns[0];
    assert_eq!((d.gebeurtenis.as_str(), d.kanaal), ("bundel", Kanaal::Email));
    assert_eq!(d.request.template_id, w.cfg.notificaties.templates.bundel.email["nld"]);
    let p = &d.request.personalisation;
    assert_eq!((p["aantal"].as_str(), p["soort"].as_str()), ("3", "berichten"));
    assert_eq!(p["link"], w.cfg.notificaties.portaal_url);
    let mut refs: Vec<&str> = d.referentie.split(',').collect();
    refs.sort();
    assert_eq!(refs, ["d-1", "d-2", "d-3"]);
}
