//! Example records of every kind, as the demo, the benchmark and the tests use them. The BSN
//! 569312863 is NL Portal's example (it passes the elfproef); nothing here is real.

use crate::model::common::Kanaal;
use crate::model::{gzac, portaal, Timestamp};

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
        rol: portaal::Rol::Klant,
        data: r#"{"kenteken":"AB-123-C","zone":"centrum"}"#.into(),
        pdf_url: Some(format!("https://formulieren.gemeente.example/pdf/{submission_id}")),
        attachments: vec![],
        language_code: "nl".into(),
        payment: Some(portaal::Payment {
            completed: true,
            amount_cents: 4250,
            public_order_ids: vec!["order-77".into()],
        }),
        submitted_at: Timestamp::now(),
    }
}

/// A bericht for `bsn`, due a second ago, with a deadline of 2026-12-01.
pub fn bericht(uuid: &str, bsn: &str) -> gzac::Bericht {
    gzac::Bericht {
        uuid: uuid.into(),
        ontvanger: gzac::Partij {
            soort: gzac::PartijSoort::Bsn,
            waarde: bsn.into(),
            urn: format!("urn:nld:brp:bsn:{bsn}"),
        },
        onderwerp: "Uw aanvraag parkeervergunning".into(),
        bericht_tekst: "Wij hebben uw aanvraag ontvangen en in behandeling genomen.".into(),
        bericht_type: "informatief".into(),
        publicatiedatum: Timestamp(Timestamp::now().0 - 1000),
        referentie: Some("Z-2026-0042".into()),
        handelingsperspectief: "lezen".into(),
        einddatum_handelingstermijn: Some(Timestamp(1_796_083_200_000)), // 2026-12-01
        bijlagen: vec!["https://documenten.gemeente.example/1".into()],
        zaak: Some("https://zaken.gemeente.example/zaken/1".into()),
    }
}

/// A klant's choice of `kanalen`, with an email address and a phone number.
pub fn klantvoorkeur(bsn: &str, kanalen: Vec<Kanaal>) -> portaal::Klantvoorkeur {
    portaal::Klantvoorkeur {
        partij: portaal::Partij { soort: portaal::PartijType::Bsn, value: bsn.into() },
        kanalen,
        email: Some("klant@example.nl".into()),
        telefoonnummer: Some("+31612345678".into()),
        voorkeurstaal: Some("nld".into()),
    }
}

/// An open portaaltaak for `bsn` with a form to fill in.
pub fn taak(uuid: &str, bsn: &str, verloopdatum: Option<Timestamp>) -> gzac::Taak {
    gzac::Taak {
        uuid: uuid.into(),
        identificatie: gzac::Identificatie { soort: gzac::PartijSoort::Bsn, value: bsn.into() },
        data: r#"{"kenteken":"AB-123-C"}"#.into(),
        title: "Upload de plattegrond".into(),
        status: gzac::TaakStatus::Open,
        formulier: gzac::Formulier { soort: gzac::FormulierType::Id, value: "plattegrond-upload".into() },
        // Valtimo's portaaltaak id for it: a UUID.
        verwerker_taak_id: crate::routes::derived_id(&["camunda", uuid]),
        zaak: Some("https://zaken.gemeente.example/zaken/0b9e6a3c-1b2d-4c5e-8f70-123456789abc".into()),
        verloopdatum,
    }
}

/// An antwoord on taak `taak_id`, submitted by `bsn`.
pub fn antwoord(id: &str, taak_id: &str, bsn: &str) -> portaal::TaakAntwoord {
    portaal::TaakAntwoord {
        id: id.into(),
        taak_id: taak_id.into(),
        verwerker_taak_id: crate::routes::derived_id(&["camunda", taak_id]),
        ingediend_door: portaal::Partij { soort: portaal::PartijType::Bsn, value: bsn.into() },
        verzonden_data: r#"{"plattegrond":"https://documenten.gemeente.example/9"}"#.into(),
        documenten: vec!["https://documenten.gemeente.example/9".into()],
        ingediend_op: Timestamp::now(),
    }
}

/// A zaak snapshot whose one betrokkene is `bsn`.
pub fn zaak(uuid: &str, bsn: &str) -> gzac::Zaak {
    gzac::Zaak {
        uuid: uuid.into(),
        identificatie: format!("ZAAK-{uuid}"),
        zaaktype: "https://catalogi.gemeente.example/zaaktypen/1".into(),
        status: "in behandeling".into(),
        betrokkenen: vec![gzac::Betrokkene {
            partij: gzac::Partij {
                soort: gzac::PartijSoort::Bsn,
                waarde: bsn.into(),
                urn: format!("urn:nld:brp:bsn:{bsn}"),
            },
            rol: "initiator".into(),
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
