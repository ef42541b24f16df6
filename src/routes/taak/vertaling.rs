//! The taak in two vocabularies: Open VTB's ExterneTaak as the portal's taak (objecttype v1.1 /
//! NL Portal taak v2), and the rules an antwoord must meet before it reaches GZAC. Pure functions.

use super::TaakState;
use crate::config::TakenConfig;
use crate::model::{gzac, portaal};
use crate::routes::{afwijzing, formulierdata, portaal_ontvanger, Afwijzing};

/// Open VTB status → the portal's (taak objecttype v1.1 knows no `niet_uitgevoerd` or
/// `afgebroken`: such a taak is `gesloten`).
pub fn portaal_status(s: gzac::TaakStatus) -> portaal::TaakStatus {
    match s {
        gzac::TaakStatus::Open => portaal::TaakStatus::Open,
        gzac::TaakStatus::Uitgevoerd => portaal::TaakStatus::Afgerond,
        gzac::TaakStatus::Verwerkt => portaal::TaakStatus::Verwerkt,
        gzac::TaakStatus::NietUitgevoerd | gzac::TaakStatus::Afgebroken => portaal::TaakStatus::Gesloten,
    }
}

/// Open VTB's `bedrag` (a decimal string, e.g. `147.43`) as NL Portal's number of euros.
pub fn bedrag(s: &str) -> Result<f64, Afwijzing> {
    let normal = crate::routes::bedrag(s, 12)?;
    normal.parse::<f64>().map_err(|_| afwijzing("ONGELDIG_BEDRAG", "Het bedrag is geen bedrag in euro."))
}

/// The form a formuliertaak points at. NL Portal shows a form it has by id or fetches by URL
/// (`formulier{soort, value}`); an inline form definition has no place in the portal's taak.
fn formulier(definitie: &str) -> Result<portaal::Formulier, Afwijzing> {
    let v: serde_json::Value = serde_json::from_str(definitie)
        .map_err(|_| afwijzing("ONGELDIG_FORMULIER", "De formulierDefinitie is geen JSON-document."))?;
    let value = v["value"].as_str().filter(|s| !s.is_empty());
    match (v["soort"].as_str(), value) {
        (Some("id"), Some(value)) => Ok(portaal::Formulier { soort: portaal::FormulierSoort::Id, value: value.into() }),
        (Some("url"), Some(value)) => Ok(portaal::Formulier { soort: portaal::FormulierSoort::Url, value: value.into() }),
        _ => Err(afwijzing(
            "FORMULIER_NIET_IN_PORTAAL",
            "Het portaal toont alleen formulieren die het kent: formulierDefinitie moet {\"soort\": \"id\"|\"url\", \"value\": …} zijn.",
        )),
    }
}

/// The portal's taak (objecttype v1.1) for an Open VTB ExterneTaak; `verzonden_data` is what the
/// klant sent, once an antwoord was accepted. The record's key is the GZAC uuid, which the
/// antwoord refers to. What the portal cannot show is refused with the reason.
pub fn translate(
    t: &gzac::ExterneTaak,
    cfg: &TakenConfig,
    verzonden_data: Option<&str>,
) -> Result<portaal::Taak, Afwijzing> {
    let partij = portaal_ontvanger(&t.is_toegewezen_aan)?;
    let identificatie = portaal::TaakIdentificatie { soort: partij.soort, value: partij.value };
    t.einddatum_handelings_termijn
        .checked("einddatumHandelingsTermijn")
        .map_err(|_| afwijzing("ONGELDIGE_DATUM", "De einddatum ligt buiten 1970..9999."))?;
    let (soort, url, portaalformulier, ogonebetaling) = match (&t.taak_soort, &t.details) {
        (gzac::TaakSoort::Formuliertaak, gzac::Details::Formuliertaak(f)) => {
            let p = portaal::Portaalformulier {
                formulier: formulier(&f.formulier_definitie)?,
                data: f.voorinvullen_gegevens.clone(),
                verzonden_data: verzonden_data.map(str::to_string),
            };
            (portaal::TaakSoort::Portaalformulier, None, Some(p), None)
        }
        (gzac::TaakSoort::Urltaak, gzac::Details::Urltaak(u)) => {
            (portaal::TaakSoort::Url, Some(portaal::TaakUrl { uri: u.uitvraag_link.clone() }), None, None)
        }
        (gzac::TaakSoort::Betaaltaak, gzac::Details::Betaaltaak(b)) => {
            let pspid =
                b.doelrekening.code.clone().filter(|c| !c.is_empty()).or_else(|| cfg.pspid.clone()).ok_or_else(
                    || {
                        afwijzing(
                            "GEEN_PSPID",
                            "De betaaltaak noemt geen betaalprovider (doelrekening.code) en er is geen standaard.",
                        )
                    },
                )?;
            if b.valuta != "EUR" {
                return Err(afwijzing("ONBEKENDE_VALUTA", "Het portaal kan alleen in euro laten betalen."));
            }
            let o = portaal::Ogonebetaling {
                bedrag: bedrag(&b.bedrag)?,
                betaalkenmerk: b.transactieomschrijving.clone(),
                pspid,
            };
            (portaal::TaakSoort::Ogonebetaling, None, None, Some(o))
        }
        _ => return Err(afwijzing("ONGELDIGE_DETAILS", "De details passen niet bij de taakSoort.")),
    };
    // Always present: the zaak (or product) by uuid when GZAC relates it by a uuid URN.
    let prefix = format!("{}:", cfg.zaak_uuid_urn);
    let uuid = t.is_gerelateerd_aan.iter().find_map(|r| r.urn.strip_prefix(&prefix)).map(str::to_string);
    Ok(portaal::Taak {
        titel: t.titel.clone(),
        status: portaal_status(t.status),
        soort,
        identificatie,
        // NL Portal requires a UUID here; Open VTB's is optional: the taak's own uuid then.
        verwerker_taak_id: t.verwerker_taak_id.clone().unwrap_or_else(|| t.uuid.clone()),
        eigenaar: "gzac".into(),
        koppeling: portaal::Koppeling { registratie: "zaak".into(), uuid },
        // The portal's moment of expiry: the end of the last day, in Europe/Amsterdam.
        verloopdatum: Some(t.einddatum_handelings_termijn.einde()),
        url,
        portaalformulier,
        ogonebetaling,
    })
}

/// Is this antwoord acceptable for this taak state? `Ok` is the Open VTB update to forward:
/// the taak `uitgevoerd`, with what the klant sent as `ontvangenGegevens`.
pub fn check(state: Option<&TaakState>, a: &portaal::TaakAntwoord) -> Result<gzac::ExterneTaak, Afwijzing> {
    let s = state.ok_or_else(|| afwijzing("ONBEKENDE_TAAK", "Deze taak is bij de gemeente niet bekend."))?;
    if s.beantwoord {
        return Err(afwijzing("TAAK_AL_BEANTWOORD", "Deze taak is al beantwoord."));
    }
    if s.taak.status != gzac::TaakStatus::Open {
        return Err(afwijzing("TAAK_NIET_OPEN", "Deze taak staat niet meer open."));
    }
    if portaal_ontvanger(&s.taak.is_toegewezen_aan).ok().as_ref() != Some(&a.ingediend_door) {
        return Err(afwijzing("NIET_TOEGEWEZEN", "Deze taak is niet aan u toegewezen."));
    }
    if a.taak.status != portaal::TaakStatus::Afgerond {
        return Err(afwijzing("TAAK_NIET_AFGEROND", "Een antwoord is een afgeronde taak."));
    }
    let verzonden = a.taak.portaalformulier.as_ref().and_then(|p| p.verzonden_data.clone());
    if let Some(data) = &verzonden {
        formulierdata(data)?;
    }
    let mut g = s.taak.clone();
    g.status = gzac::TaakStatus::Uitgevoerd;
    match &mut g.details {
        gzac::Details::Formuliertaak(f) => {
            let data =
                verzonden.ok_or_else(|| afwijzing("GEEN_FORMULIERDATA", "Het formulier is niet meegestuurd."))?;
            f.ontvangen_gegevens = Some(data);
        }
        gzac::Details::Urltaak(u) => u.ontvangen_gegevens = verzonden,
        gzac::Details::Betaaltaak(_) => {
            if a.taak.soort != portaal::TaakSoort::Ogonebetaling
                || a.betaalreferentie.as_deref().unwrap_or("").is_empty()
            {
                return Err(afwijzing(
                    "GEEN_BETAALREFERENTIE",
                    "De betaling is niet bevestigd door de betaalprovider.",
                ));
            }
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::Datum;
    use crate::tools::samples::{betaaltaak, taak, BSN};

    const T: &str = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e21";

    fn cfg() -> TakenConfig {
        Config::defaults().taken
    }

    #[test]
    fn each_soort_translates_to_its_portal_counterpart() {
        let f = translate(&taak(T, BSN, Datum(20_000)), &cfg(), Some("{}")).unwrap();
        let pf = f.portaalformulier.unwrap();
        assert_eq!(
            (f.soort, pf.formulier.soort, pf.formulier.value.as_str()),
            (portaal::TaakSoort::Portaalformulier, portaal::FormulierSoort::Id, "plattegrond-upload")
        );
        assert_eq!(
            (pf.data.as_deref(), pf.verzonden_data.as_deref()),
            (Some(r#"{"kenteken":"AB-123-C"}"#), Some("{}"))
        );
        assert_eq!(f.koppeling.uuid.as_deref(), Some(crate::tools::samples::ZAAK_UUID));
        // Expires at the end of its last day in Amsterdam, not at midnight UTC.
        assert_eq!(f.verloopdatum, Some(Datum(20_000).einde()));

        let b = translate(&betaaltaak(T, BSN, Datum(20_000)), &cfg(), None).unwrap();
        let o = b.ogonebetaling.unwrap();
        assert_eq!(
            (b.soort, o.bedrag, o.pspid.as_str()),
            (portaal::TaakSoort::Ogonebetaling, 147.43, "GemeenteVoorbeeld")
        );

        let url = gzac::ExterneTaak {
            taak_soort: gzac::TaakSoort::Urltaak,
            details: gzac::Details::Urltaak(gzac::UrlTaak {
                uitvraag_link: "https://formulieren.gemeente.example/plattegrond".into(),
                voorinvullen_gegevens: None,
                ontvangen_gegevens: None,
                ontvangen_bijlagen: vec![],
            }),
            ..taak(T, BSN, Datum(20_000))
        };
        let u = translate(&url, &cfg(), None).unwrap();
        assert_eq!(
            (u.soort, u.url.unwrap().uri.as_str()),
            (portaal::TaakSoort::Url, "https://formulieren.gemeente.example/plattegrond")
        );

        // What the portal cannot show is refused, with a reason for GZAC.
        let code = |t: &gzac::ExterneTaak| translate(t, &cfg(), None).unwrap_err().code;
        let inline = gzac::ExterneTaak {
            details: gzac::Details::Formuliertaak(gzac::FormulierTaak {
                formulier_definitie: r#"{"components":[]}"#.into(),
                voorinvullen_gegevens: None,
                ontvangen_gegevens: None,
            }),
            ..taak(T, BSN, Datum(20_000))
        };
        assert_eq!(code(&inline), "FORMULIER_NIET_IN_PORTAAL");
        assert_eq!(
            code(&gzac::ExterneTaak { taak_soort: gzac::TaakSoort::Urltaak, ..taak(T, BSN, Datum(20_000)) }),
            "ONGELDIGE_DETAILS"
        );
        assert_eq!(
            code(&gzac::ExterneTaak {
                is_toegewezen_aan: "urn:nld:klant:klantnummer:1".into(),
                ..taak(T, BSN, Datum(20_000))
            }),
            "ONBEKENDE_ONTVANGER"
        );
        // Ketenpartners: a vestiging by its KVK number, an RSIN as such.
        let vestiging = gzac::ExterneTaak {
            is_toegewezen_aan: "urn:nld:hr:kvknummer:69599084:vestigingsnummer:000038509504".into(),
            ..taak(T, BSN, Datum(20_000))
        };
        let v = translate(&vestiging, &cfg(), None).unwrap().identificatie;
        assert_eq!((v.soort, v.value.as_str()), (portaal::PartijType::Kvk, "69599084"));
        let rsin =
            gzac::ExterneTaak { is_toegewezen_aan: "urn:nld:rsin:111222333".into(), ..taak(T, BSN, Datum(20_000)) };
        assert_eq!(translate(&rsin, &cfg(), None).unwrap().identificatie.soort, portaal::PartijType::Rsin);
    }

    /// Each GZAC record and antwoord sent again, after the bridge acted on it: nothing a first
    /// copy would not have produced, and the portal hears its first answer again.
    #[test]
    fn bedragen() {
        assert_eq!(bedrag("147.43"), Ok(147.43));
        assert_eq!(bedrag("12"), Ok(12.0));
        for bad in ["", "-1.00", "1.234", "1,50", "1e3", ".5", "abc"] {
            assert!(bedrag(bad).is_err(), "{bad}");
        }
    }
    #[test]
    fn status_vocabulary() {
        assert_eq!(portaal_status(gzac::TaakStatus::Uitgevoerd), portaal::TaakStatus::Afgerond);
        assert_eq!(portaal_status(gzac::TaakStatus::NietUitgevoerd), portaal::TaakStatus::Gesloten);
        assert_eq!(portaal_status(gzac::TaakStatus::Afgebroken), portaal::TaakStatus::Gesloten);
    }
}
