//! Records the bridge writes, held against the real schema of the system that takes them
//! (SPEC §3, tests/reference/): decoded from Avro to JSON as a plain connector would, then
//! validated with a JSON Schema validator.

mod common;

use apache_avro::AvroSchema;
use common::{avro_json, avro_json_with, invalid, reference_schema, World};
use gzac_portal_bridge::bridge;
use gzac_portal_bridge::model::common::{Kanaal, Notificatieopdracht};
use gzac_portal_bridge::model::{gzac, portaal, Datum};
use gzac_portal_bridge::routes::derived_id;
use gzac_portal_bridge::tools::samples::{
    antwoord, bericht, betaaltaak, betaling, klantvoorkeur, taak, verzoek, zaak, zaakverzoek, BSN,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notificatie_request_is_a_notifynl_request() {
    let w = World::new("notifynl").await;
    w.send("portaal.klantvoorkeuren.v1", "klant-1", &klantvoorkeur(BSN, vec![Kanaal::Email, Kanaal::Sms])).await;
    w.send("gzac.berichten.v1", "b-1", &bericht("b-1", BSN)).await;
    w.send("gzac.taken.v1", "t-1", &taak("t-1", BSN, w.today().plus(30))).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&["notificaties.opdrachten.v1"], 4, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 4, "email and SMS for the bericht and for the taak");

    let notifynl = reference_schema("notifynl-notification-request.schema.json");
    let schema = Notificatieopdracht::get_schema();
    for r in &recs {
        let mut body = &r.value.as_deref().unwrap()[5..];
        #[allow(deprecated)]
        let value = apache_avro::from_avro_datum(&schema, &mut body, None).unwrap();
        let json = avro_json(&value);
        let request = &json["request"];
        assert_eq!(invalid(&notifynl, request), None, "not a NotifyNL request: {request}");
        assert_eq!(request["reference"], json["id"], "the reference is the notificatie id");
    }
    // The validator does reject what NotifyNL would: both addresses, or a template id that is no UUID.
    let mut both = avro_json(&{
        let mut body = &recs[0].value.as_deref().unwrap()[5..];
        #[allow(deprecated)]
        apache_avro::from_avro_datum(&schema, &mut body, None).unwrap()
    })["request"]
        .clone();
    both["email_address"] = "klant@example.nl".into();
    both["phone_number"] = "+31612345678".into();
    assert!(invalid(&notifynl, &both).is_some());
    both.as_object_mut().unwrap().remove("phone_number");
    both["template_id"] = "bericht-email-v1".into();
    assert!(invalid(&notifynl, &both).is_some(), "a template id must be a UUID");
}

/// Taken of every soort: a formuliertaak answered, a betaaltaak paid, a urltaak, one past its last
/// day and one whose reminder is due (UUIDs, as Open VTB gives them).
fn taken(today: Datum) -> Vec<gzac::ExterneTaak> {
    let id = |n: &str| derived_id(&["records", n]);
    let later = today.plus(30);
    let urltaak = gzac::ExterneTaak {
        taak_soort: gzac::TaakSoort::Urltaak,
        details: gzac::Details::Urltaak(gzac::UrlTaak {
            uitvraag_link: "https://formulieren.gemeente.example/plattegrond".into(),
            voorinvullen_gegevens: Some(r#"{"zaaknummer":"ZAAK-2026-0042"}"#.into()),
            ontvangen_gegevens: None,
            ontvangen_bijlagen: vec![],
        }),
        ..taak(&id("url"), BSN, later)
    };
    vec![
        taak(&id("formulier"), BSN, later),
        betaaltaak(&id("betaal"), BSN, later),
        urltaak,
        taak(&id("verlopen"), BSN, today.plus(-1)),
        gzac::ExterneTaak { datum_herinnering: Some(today), ..taak(&id("herinner"), BSN, later) },
    ]
}

const TAAK_DOCUMENTS: &[&str] =
    &["data", "verzonden_data", "formulierDefinitie", "voorinvullenGegevens", "ontvangenGegevens"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_taak_is_a_taak_objecttype_record_and_an_open_vtb_externe_taak() {
    let mut w = World::new("taken").await;
    w.cfg.taken.herinnering_uur = 0;
    let taken = taken(w.today());
    for t in &taken {
        w.send("gzac.taken.v1", &t.uuid, t).await;
    }
    let running = bridge::start(&w.cfg).unwrap();
    w.read(&["portaal.taken.v1"], taken.len(), Duration::ZERO).await;
    w.send("portaal.taakantwoorden.v1", &taken[0].uuid, &antwoord("a-1", &taken[0].uuid, BSN)).await;
    w.send("portaal.taakantwoorden.v1", &taken[1].uuid, &betaling("a-2", &taken[1].uuid, BSN)).await;
    // portal: open ×5, afgerond ×2, gesloten; GZAC: its 5, and 2 uitgevoerd, verlopen, herinnerd.
    let recs =
        w.read(&["portaal.taken.v1", "gzac.taken.v1", "gzac.taakantwoorden.v1"], 8 + 9, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();

    let portal = [reference_schema("nlportal-taakv2.json"), reference_schema("objecttype-taak.json")];
    let open_vtb = |soort: &str| {
        common::openapi_schema("openvtb-taken-openapi.yaml", &format!("{soort}_ExterneTaakPolymorphicSerializer"))
    };
    let (reader, gzac_reader) = (portaal::Taak::get_schema(), gzac::ExterneTaak::get_schema());
    let mut seen = Vec::new();
    for r in &recs {
        let mut body = &r.value.as_deref().unwrap()[5..];
        let portal_side = r.topic == w.topic("portaal.taken.v1");
        #[allow(deprecated)]
        let value =
            apache_avro::from_avro_datum(if portal_side { &reader } else { &gzac_reader }, &mut body, None).unwrap();
        let json = avro_json_with(&value, TAAK_DOCUMENTS);
        if portal_side {
            for s in &portal {
                assert_eq!(invalid(s, &json), None, "not a taak objecttype v1.1 record: {json}");
            }
            seen.push(format!("portaal {} {}", json["soort"].as_str().unwrap(), json["status"].as_str().unwrap()));
        } else {
            let soort = json["taakSoort"].as_str().unwrap();
            assert_eq!(invalid(&open_vtb(soort), &json), None, "not an Open VTB {soort}: {json}");
            seen.push(format!("gzac {soort} {}", json["status"].as_str().unwrap()));
        }
    }
    seen.sort();
    let mut want = vec![
        "gzac betaaltaak open",
        "gzac betaaltaak uitgevoerd",
        "gzac formuliertaak niet_uitgevoerd",
        "gzac formuliertaak open",
        "gzac formuliertaak open",
        "gzac formuliertaak open",
        "gzac formuliertaak open",
        "gzac formuliertaak uitgevoerd",
        "gzac urltaak open",
        "portaal ogonebetaling afgerond",
        "portaal ogonebetaling open",
        "portaal portaalformulier afgerond",
        "portaal portaalformulier gesloten",
        "portaal portaalformulier open",
        "portaal portaalformulier open",
        "portaal portaalformulier open",
        "portaal url open",
    ];
    want.sort();
    assert_eq!(seen, want);
    // The validators do reject what the real systems would: a portal status `verlopen`, an Open
    // VTB betaaltaak without doelrekening.
    let mut bad = serde_json::json!({"titel": "x", "status": "verlopen", "soort": "url", "identificatie": {"type": "bsn", "value": BSN}, "verwerker_taak_id": derived_id(&["x"]), "eigenaar": "gzac"});
    assert!(invalid(&portal[0], &bad).is_some());
    bad = serde_json::json!({"titel": "x", "taakSoort": "betaaltaak", "einddatumHandelingsTermijn": "2026-12-31", "isToegewezenAan": "urn:nld:brp:bsn:569312863", "details": {"bedrag": "1.00", "transactieomschrijving": "x"}});
    assert!(invalid(&open_vtb("betaaltaak"), &bad).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bericht_is_an_open_vtb_bericht_and_an_nl_portal_bericht() {
    let w = World::new("berichten").await;
    let id = |n: &str| derived_id(&["records", n]);
    let berichten = vec![
        bericht(&id("info"), BSN),
        gzac::Bericht {
            ontvanger: "urn:nld:hr:kvknummer:69599084:vestigingsnummer:000038509504".into(),
            bericht_type: Some("BETAAL".into()),
            handelings_perspectief: Some(gzac::HandelingsPerspectief::Betalen),
            ..bericht(&id("betaal"), BSN)
        },
        gzac::Bericht {
            referentie: None,
            einddatum_handelings_termijn: None,
            handelings_perspectief: None,
            bericht_type: None,
            bijlagen: vec![],
            ..bericht(&id("kaal"), BSN)
        },
    ];
    // What GZAC writes is Open VTB's Bericht.
    let open_vtb = common::openapi_schema("openvtb-berichten-openapi.yaml", "Bericht");
    let gzac_reader = gzac::Bericht::get_schema();
    for b in &berichten {
        let json = avro_json(&apache_avro::to_value(b).unwrap().resolve(&gzac_reader).unwrap());
        assert_eq!(invalid(&open_vtb, &json), None, "not an Open VTB Bericht: {json}");
        w.send("gzac.berichten.v1", &b.uuid, b).await;
    }
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&["portaal.berichten.v1"], berichten.len(), Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), berichten.len());
    let nl_portal = reference_schema("nlportal-bericht.schema.json");
    let reader = portaal::Bericht::get_schema();
    for r in &recs {
        let mut body = &r.value.as_deref().unwrap()[5..];
        #[allow(deprecated)]
        let value = apache_avro::from_avro_datum(&reader, &mut body, None).unwrap();
        let json = avro_json(&value);
        assert_eq!(invalid(&nl_portal, &json), None, "not an NL Portal bericht: {json}");
    }
    // The validators do reject what the real systems would: a free-text handelingsperspectief,
    // a referentie over 25 characters.
    let mut bad = avro_json(&{
        let mut body = &recs[0].value.as_deref().unwrap()[5..];
        #[allow(deprecated)]
        apache_avro::from_avro_datum(&reader, &mut body, None).unwrap()
    });
    bad["handelingsperspectief"] = "lezen".into();
    assert!(invalid(&nl_portal, &bad).is_some());
    let mut long = avro_json(&apache_avro::to_value(&berichten[0]).unwrap().resolve(&gzac_reader).unwrap());
    long["referentie"] = "ZAAK-2026-0042-EN-NOG-VEEL-MEER".into();
    assert!(invalid(&open_vtb, &long).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gzac_verzoek_is_an_open_vtb_verzoek() {
    let w = World::new("openvtb").await;
    let mut zonder_betaling = verzoek("v-2");
    zonder_betaling.payment = None;
    zonder_betaling.attachments =
        vec!["https://documenten.gemeente.example/api/v1/enkelvoudiginformatieobjecten/9".into()];
    // What the portal writes is Open Formulieren's productaanvraag.
    let productaanvraag = reference_schema("objecttype-productaanvraag-denhaag.json");
    for v in [&verzoek("v-1"), &zonder_betaling] {
        let json = avro_json_with(
            &apache_avro::to_value(v).unwrap().resolve(&portaal::Verzoek::get_schema()).unwrap(),
            &["data"],
        );
        assert_eq!(invalid(&productaanvraag, &json), None, "not a productaanvraag: {json}");
        assert!(json["data"].is_object());
    }
    let mut bad = avro_json_with(
        &apache_avro::to_value(verzoek("v-x")).unwrap().resolve(&portaal::Verzoek::get_schema()).unwrap(),
        &["data"],
    );
    bad["attachments"] = serde_json::json!(["geen url"]);
    assert!(invalid(&productaanvraag, &bad).is_some(), "the validator does check attachment URLs");
    w.send("portaal.verzoeken.v1", "v-1", &verzoek("v-1")).await;
    w.send("portaal.verzoeken.v1", "v-2", &zonder_betaling).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&["gzac.verzoeken.v1"], 2, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 2);

    let open_vtb = common::openapi_schema("openvtb-verzoeken-openapi.yaml", "Verzoek");
    let reader = gzac::Verzoek::get_schema();
    for r in &recs {
        let mut body = &r.value.as_deref().unwrap()[5..];
        #[allow(deprecated)]
        let value = apache_avro::from_avro_datum(&reader, &mut body, None).unwrap();
        let json = avro_json_with(&value, &["aanvraagGegevens"]);
        assert_eq!(invalid(&open_vtb, &json), None, "not an Open VTB Verzoek: {json}");
        if r.key_str() == "v-1" {
            let betaling = &json["verzoekBetaling"];
            assert_eq!(
                (betaling["bedrag"].as_str(), betaling["transactieReferentie"].as_str()),
                (Some("42.50"), Some("3014828147"))
            );
            assert_eq!(json["bijlagen"].as_array().unwrap().len(), 1, "the CSV of the submission: {json}");
        }
    }
    // The validator does reject what Open VTB would: a language of three letters.
    let mut bad = avro_json_with(
        &{
            let mut body = &recs[0].value.as_deref().unwrap()[5..];
            #[allow(deprecated)]
            apache_avro::from_avro_datum(&reader, &mut body, None).unwrap()
        },
        &["aanvraagGegevens"],
    );
    bad["verzoekTaal"] = "nld".into();
    assert!(invalid(&open_vtb, &bad).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gzac_zaakverzoek_is_an_open_vtb_verzoek_about_its_zaak() {
    let w = World::new("openvtbzv").await;
    w.send("gzac.zaken.v1", "z-1", &zaak("z-1", BSN)).await;
    w.send("portaal.zaakverzoeken.v1", "z-1", &zaakverzoek("zv-1", "z-1", BSN)).await;
    let running = bridge::start(&w.cfg).unwrap();
    let recs = w.read(&["gzac.zaakverzoeken.v1"], 1, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 1);
    let open_vtb = common::openapi_schema("openvtb-verzoeken-openapi.yaml", "Verzoek");
    let mut body = &recs[0].value.as_deref().unwrap()[5..];
    #[allow(deprecated)]
    let value = apache_avro::from_avro_datum(&gzac::Verzoek::get_schema(), &mut body, None).unwrap();
    let json = avro_json_with(&value, &["aanvraagGegevens"]);
    assert_eq!(invalid(&open_vtb, &json), None, "not an Open VTB Verzoek: {json}");
    assert_eq!(json["isGerelateerdAan"][0]["urn"], format!("{}:ZAAK-z-1", w.cfg.verzoek.zaak_urn));
}
