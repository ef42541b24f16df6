//! Records the bridge writes, held against the real schema of the system that takes them
//! (SPEC §3, tests/reference/): decoded from Avro to JSON as a plain connector would, then
//! validated with a JSON Schema validator.

mod common;

use apache_avro::AvroSchema;
use common::{avro_json, avro_json_with, invalid, reference_schema, World};
use gzac_portal_bridge::bridge;
use gzac_portal_bridge::model::common::{Kanaal, Notificatieopdracht};
use gzac_portal_bridge::model::{gzac, portaal, Timestamp};
use gzac_portal_bridge::samples::{antwoord, bericht, klantvoorkeur, taak, verzoek, zaak, zaakverzoek, BSN};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notificatie_request_is_a_notifynl_request() {
    let w = World::new("notifynl").await;
    w.send("portaal.klantvoorkeuren.v1", "klant-1", &klantvoorkeur(BSN, vec![Kanaal::Email, Kanaal::Sms])).await;
    w.send("gzac.berichten.v1", "b-1", &bericht("b-1", BSN)).await;
    w.send("gzac.taken.v1", "t-1", &taak("t-1", BSN, None)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_portal_taak_is_a_taak_objecttype_record() {
    let w = World::new("taakv11").await;
    let deadline = Timestamp(Timestamp::now().0 + 30 * 86_400_000);
    w.send("gzac.taken.v1", "t-1", &taak("t-1", BSN, Some(deadline))).await;
    w.send("gzac.taken.v1", "t-2", &taak("t-2", BSN, Some(Timestamp(Timestamp::now().0 + 3_000)))).await;
    let running = bridge::start(&w.cfg).unwrap();
    w.read(&["portaal.taken.v1"], 2, Duration::ZERO).await;
    w.send("portaal.taakantwoorden.v1", "t-1", &antwoord("a-1", "t-1", BSN)).await;
    // open ×2, afgerond (with what the klant sent), gesloten (expired)
    let recs = w.read(&["portaal.taken.v1"], 4, Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 4, "{recs:#?}");

    let schemas = [reference_schema("nlportal-taakv2.json"), reference_schema("objecttype-taak.json")];
    let reader = portaal::Taak::get_schema();
    let mut statuses = Vec::new();
    for r in &recs {
        let mut body = &r.value.as_deref().unwrap()[5..];
        #[allow(deprecated)]
        let value = apache_avro::from_avro_datum(&reader, &mut body, None).unwrap();
        let json = avro_json_with(&value, &["data", "verzonden_data"]);
        for s in &schemas {
            assert_eq!(invalid(s, &json), None, "not a taak objecttype v1.1 record: {json}");
        }
        statuses.push((r.key_str().to_string(), json["status"].as_str().unwrap().to_string()));
        if json["status"] == "afgerond" {
            assert!(json["portaalformulier"]["verzonden_data"].is_object(), "the klant's answer is kept: {json}");
        }
    }
    statuses.sort();
    let want = [("t-1", "afgerond"), ("t-1", "open"), ("t-2", "gesloten"), ("t-2", "open")];
    assert_eq!(statuses, want.map(|(k, s)| (k.to_string(), s.to_string())).to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gzac_verzoek_is_an_open_vtb_verzoek() {
    let w = World::new("openvtb").await;
    let mut zonder_betaling = verzoek("v-2");
    zonder_betaling.payment = None;
    zonder_betaling.attachments =
        vec!["https://documenten.gemeente.example/api/v1/enkelvoudiginformatieobjecten/9".into()];
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
