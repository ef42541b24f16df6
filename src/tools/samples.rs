//! Example records of every kind, as the demo, the benchmark and the tests use them. The BSN
//! 569312863 is NL Portal's example (it passes the elfproef); nothing here is real.

use crate::identifiers::bsn_urn;
use crate::model::common::Kanaal;
use crate::model::{gzac, portaal, Datum, Timestamp};

pub const BSN: &str = "569312863";
/// A second valid BSN, for "someone else".
pub const OTHER_BSN: &str = "111222333";

/// A valid productaanvraag.
pub fn verzoek(submission_id: &str) -> portaal::Verzoek {
    portaal::Verzoek {
        submission_id: submission_id.into(),
        verzoektype: "parkeervergunning".into(),
        bsn: Some(BSN.into()),
        kvk: None,
        rol: None,
        data: r#"{"kenteken":"AB-123-C","zone":"centrum"}"#.into(),
        pdf_url: Some(format!(
            "https://documenten.gemeente.example/api/v1/enkelvoudiginformatieobjecten/{}",
            crate::routes::derived_id(&["pdf", submission_id])
        )),
        csv_url: Some(format!(
            "https://documenten.gemeente.example/api/v1/enkelvoudiginformatieobjecten/{}",
            crate::routes::derived_id(&["csv", submission_id])
        )),
        attachments: vec![],
        language_code: "nl".into(),
        payment: Some(portaal::Payment {
            completed: true,
            amount: "42.50".into(),
            public_order_ids: vec!["2026/OF-A1B2C3".into()],
            payment_ids: vec!["3014828147".into()],
        }),
        submitted_at: Timestamp::now(),
    }
}

/// A bericht for `bsn`, due a day ago (also on a clock a few hours behind), to act on by local midnight two weeks from today (the
/// portal must show that day, not the one before, which UTC would give). `uuid` should be a UUID.
pub fn bericht(uuid: &str, bsn: &str) -> gzac::Bericht {
    gzac::Bericht {
        uuid: uuid.into(),
        onderwerp: "Uw aanvraag parkeervergunning".into(),
        bericht_tekst: "Wij hebben uw aanvraag ontvangen en in behandeling genomen.".into(),
        publicatiedatum: Some(Timestamp(Timestamp::now().0 - 86_400_000)),
        referentie: Some("ZAAK-2026-0042".into()),
        ontvanger: bsn_urn(bsn),
        geopend_op: None,
        bericht_type: Some("INFO".into()),
        is_gerelateerd_aan: vec![gzac::IsGerelateerdAan { urn: format!("urn:nld:gemeente:zaak:uuid:{ZAAK_UUID}") }],
        handelings_perspectief: Some(gzac::HandelingsPerspectief::InformatieKrijgen),
        einddatum_handelings_termijn: Some(Datum::vandaag().plus(14).om(0)),
        mijn_overheid_berichtenbox: false,
        bijlagen: vec![gzac::BerichtBijlage {
            informatie_object: "urn:nld:gemeente:documenten:informatieobject:717815f6-1939-4fd2-93f0-83d25bad154e"
                .into(),
            omschrijving: Some("ontvangstbevestiging.pdf".into()),
            is_bericht_type_bijlage: false,
        }],
    }
}

/// A klant's choice of `kanalen`, with an email address and a phone number (Open Klant's
/// digitale adressen) and Dutch as its voorkeurstaal.
pub fn klantvoorkeur(bsn: &str, kanalen: Vec<Kanaal>) -> portaal::Klantvoorkeur {
    let adres = |soort, adres: &str| portaal::DigitaalAdres {
        soort_digitaal_adres: soort,
        adres: adres.into(),
        omschrijving: None,
        is_standaard_adres: true,
    };
    portaal::Klantvoorkeur {
        partij: portaal::Partij { soort: portaal::PartijType::Bsn, value: bsn.into() },
        digitale_adressen: vec![
            adres(portaal::SoortDigitaalAdres::Email, "klant@example.nl"),
            adres(portaal::SoortDigitaalAdres::Telefoonnummer, "+31612345678"),
        ],
        kanalen,
        voorkeurstaal: Some("nld".into()),
    }
}

/// An open formuliertaak for `bsn`, to be done by `einddatum`, with a form the portal has (by
/// id) and prefill data; related to a zaak by its uuid URN. `uuid` should be a UUID.
pub fn taak(uuid: &str, bsn: &str, einddatum: Datum) -> gzac::ExterneTaak {
    gzac::ExterneTaak {
        uuid: uuid.into(),
        titel: "Upload de plattegrond".into(),
        status: gzac::TaakStatus::Open,
        // Valtimo's portaaltaak id for it: a UUID.
        verwerker_taak_id: Some(crate::routes::derived_id(&["camunda", uuid])),
        startdatum: None,
        handelings_perspectief: Some(gzac::HandelingsPerspectief::InformatieGeven),
        einddatum_handelings_termijn: einddatum,
        datum_herinnering: None,
        toelichting: Some("Upload een plattegrond van het evenemententerrein.".into()),
        is_toegewezen_aan: bsn_urn(bsn),
        is_gerelateerd_aan: vec![gzac::IsGerelateerdAan { urn: format!("urn:nld:gemeente:zaak:uuid:{ZAAK_UUID}") }],
        taak_soort: gzac::TaakSoort::Formuliertaak,
        details: gzac::Details::Formuliertaak(gzac::FormulierTaak {
            formulier_definitie: r#"{"soort":"id","value":"plattegrond-upload"}"#.into(),
            voorinvullen_gegevens: Some(r#"{"kenteken":"AB-123-C"}"#.into()),
            ontvangen_gegevens: None,
        }),
    }
}

/// The zaak the sample taken belong to.
pub const ZAAK_UUID: &str = "0b9e6a3c-1b2d-4c5e-8f70-123456789abc";

/// An open betaaltaak of € 147.43 for `bsn` (Ogone PSPID in `doelrekening.code`).
pub fn betaaltaak(uuid: &str, bsn: &str, einddatum: Datum) -> gzac::ExterneTaak {
    gzac::ExterneTaak {
        titel: "Betaal de leges".into(),
        handelings_perspectief: Some(gzac::HandelingsPerspectief::Betalen),
        toelichting: None,
        taak_soort: gzac::TaakSoort::Betaaltaak,
        details: gzac::Details::Betaaltaak(gzac::BetaalTaak {
            bedrag: "147.43".into(),
            valuta: "EUR".into(),
            transactieomschrijving: "ZAAK-2026-0042 leges".into(),
            doelrekening: gzac::Doelrekening {
                naam: Some("Gemeente Voorbeeld".into()),
                code: Some("GemeenteVoorbeeld".into()),
                iban: Some("NL91ABNA0417164300".into()),
            },
        }),
        ..taak(uuid, bsn, einddatum)
    }
}

/// The portal's taak (objecttype v1.1) as NL Portal holds it once `bsn` has done it.
fn afgerond(taak_id: &str, bsn: &str, soort: portaal::TaakSoort) -> portaal::Taak {
    portaal::Taak {
        titel: "Upload de plattegrond".into(),
        status: portaal::TaakStatus::Afgerond,
        soort,
        identificatie: portaal::TaakIdentificatie { soort: portaal::PartijType::Bsn, value: bsn.into() },
        verwerker_taak_id: crate::routes::derived_id(&["camunda", taak_id]),
        eigenaar: "gzac".into(),
        koppeling: portaal::Koppeling { registratie: "zaak".into(), uuid: Some(ZAAK_UUID.into()) },
        verloopdatum: None,
        url: None,
        portaalformulier: None,
        ogonebetaling: None,
    }
}

/// An antwoord on formuliertaak `taak_id`, submitted by `bsn`: the form sent.
pub fn antwoord(id: &str, taak_id: &str, bsn: &str) -> portaal::TaakAntwoord {
    let mut taak = afgerond(taak_id, bsn, portaal::TaakSoort::Portaalformulier);
    taak.portaalformulier = Some(portaal::Portaalformulier {
        formulier: portaal::Formulier { soort: portaal::FormulierSoort::Id, value: "plattegrond-upload".into() },
        data: Some(r#"{"kenteken":"AB-123-C"}"#.into()),
        verzonden_data: Some(r#"{"plattegrond":"https://documenten.gemeente.example/9"}"#.into()),
    });
    portaal::TaakAntwoord {
        id: id.into(),
        taak_id: taak_id.into(),
        ingediend_door: portaal::Partij { soort: portaal::PartijType::Bsn, value: bsn.into() },
        ingediend_op: Timestamp::now(),
        taak,
        betaalreferentie: None,
    }
}

/// The portal's word that `bsn` paid betaaltaak `taak_id` (Ogone's PAYID as the reference).
pub fn betaling(id: &str, taak_id: &str, bsn: &str) -> portaal::TaakAntwoord {
    let mut taak = afgerond(taak_id, bsn, portaal::TaakSoort::Ogonebetaling);
    taak.ogonebetaling = Some(portaal::Ogonebetaling {
        bedrag: 147.43,
        betaalkenmerk: "ZAAK-2026-0042 leges".into(),
        pspid: "GemeenteVoorbeeld".into(),
    });
    portaal::TaakAntwoord { taak, betaalreferentie: Some("3014828147".into()), ..antwoord(id, taak_id, bsn) }
}

/// A zaak as the Zaken API has it, whose initiator is `bsn`.
pub fn zaak(uuid: &str, bsn: &str) -> gzac::Zaak {
    gzac::Zaak {
        url: format!("https://zaken.gemeente.example/zaken/api/v1/zaken/{uuid}"),
        uuid: uuid.into(),
        identificatie: format!("ZAAK-{uuid}"),
        zaaktype: "https://catalogi.gemeente.example/catalogi/api/v1/zaaktypen/1f0e9d8c-7b6a-4e5d-9c3b-2a1f0e9d8c7b"
            .into(),
        status: Some(
            "https://zaken.gemeente.example/zaken/api/v1/statussen/5b6a7f8e-9d01-4c2b-8a3d-1e2f3a4b5c6d".into(),
        ),
        rollen: vec![gzac::Rol {
            betrokkene_type: gzac::BetrokkeneType::NatuurlijkPersoon,
            omschrijving_generiek: gzac::OmschrijvingGeneriek::Initiator,
            betrokkene_identificatie: gzac::BetrokkeneIdentificatie {
                inp_bsn: Some(bsn.into()),
                inn_nnp_id: None,
                kvk_nummer: None,
                vestigings_nummer: None,
            },
        }],
    }
}

/// A zaakverzoek on zaak `zaak_uuid` by `bsn`.
pub fn zaakverzoek(id: &str, zaak_uuid: &str, bsn: &str) -> portaal::ZaakVerzoek {
    portaal::ZaakVerzoek {
        submission_id: id.into(),
        verzoektype: "evenement-uitbreiden".into(),
        zaak: portaal::ZaakReferentie { uuid: zaak_uuid.into(), url: None, identificatie: None },
        indiener: portaal::Partij { soort: portaal::PartijType::Bsn, value: bsn.into() },
        rol: portaal::Rol::Klant,
        data: r#"{"bezoekers":2000}"#.into(),
        attachments: vec![],
        language_code: "nl".into(),
        submitted_at: Timestamp::now(),
    }
}
