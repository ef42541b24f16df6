//! Verzoek (portal → GZAC): validate a productaanvraag, translate it from the Open Formulieren
//! vocabulary to Open VTB / Valtimo, and tell the portal whether it was forwarded or rejected.

use super::{afwijzing, derived_id, digest, event, formulierdata, terugmelding, terugmelding_output, Afwijzing};
use crate::codec::CodecError;
use crate::config::{Config, VerzoekConfig};
use crate::identifiers::{bsn_urn, elfproef, is_kvk, kvk_urn};
use crate::model::common::{Soort, Terugmelding};
use crate::model::{gzac, portaal, Timestamp};
use crate::pipeline::{Ctx, Decoder, Output, Route, RouteError};
use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize};

pub use crate::topics::GZAC_VERZOEKEN as OUTPUT;
pub use crate::topics::PORTAAL_TERUGMELDINGEN as TERUGMELDINGEN;
pub use crate::topics::PORTAAL_VERZOEKEN as INPUT;
/// Which content each submission id was forwarded with, so one id never becomes two verzoeken.
pub use crate::topics::VERZOEKEN_STATE as CHANGELOG;

pub const TYPE_DOORGESTUURD: &str = "nl.overheid.verzoeken.verzoek-doorgestuurd";

pub struct VerzoekRoute {
    cfg: VerzoekConfig,
    input: String,
    output: String,
    terugmeldingen: String,
    changelog: String,
    reader: Schema,
    retention: std::time::Duration,
}

/// A forwarded submission: the SHA-256 of what was forwarded, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doorgestuurd {
    pub sha256: String,
    pub op: Timestamp,
}

impl VerzoekRoute {
    pub fn new(cfg: &Config) -> Self {
        VerzoekRoute {
            cfg: cfg.verzoek.clone(),
            input: cfg.topic(INPUT),
            output: cfg.topic(OUTPUT),
            terugmeldingen: cfg.topic(TERUGMELDINGEN),
            changelog: cfg.topic(CHANGELOG),
            reader: portaal::Verzoek::get_schema(),
            retention: cfg.pipeline.state_retention,
        }
    }

    /// The rules of SPEC §4.1; `Ok` carries the translated GZAC verzoek.
    pub fn translate(&self, v: &portaal::Verzoek) -> Result<gzac::Verzoek, Afwijzing> {
        if v.rol == Some(portaal::Rol::Ketenpartner) {
            return Err(afwijzing(
                "KETENPARTNER_DIENT_GEEN_VERZOEK_IN",
                "Een ketenpartner kan geen verzoek indienen; dien het verzoek in als klant.",
            ));
        }
        let initiator = match (v.bsn.as_deref(), v.kvk.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(afwijzing(
                    "MEER_DAN_EEN_PARTIJ",
                    "Een verzoek heeft precies één indiener: een BSN of een KVK-nummer, niet beide.",
                ))
            }
            (None, None) => {
                return Err(afwijzing(
                    "GEEN_PARTIJ",
                    "Een verzoek heeft precies één indiener: een BSN of een KVK-nummer.",
                ))
            }
            (Some(bsn), None) if !elfproef(bsn) => {
                return Err(afwijzing("ONGELDIG_BSN", "Het BSN van de indiener is ongeldig (elfproef)."))
            }
            (None, Some(kvk)) if !is_kvk(kvk) => {
                return Err(afwijzing("ONGELDIG_KVK", "Het KVK-nummer van de indiener moet uit 8 cijfers bestaan."))
            }
            (Some(bsn), None) => bsn_urn(bsn),
            (None, Some(kvk)) => kvk_urn(kvk),
        };
        // The text does not repeat what was sent: a rejection echoes no input.
        let verzoek_type =
            self.cfg.verzoektypen.get(&v.verzoektype).ok_or_else(|| {
                afwijzing("ONBEKEND_VERZOEKTYPE", "Dit soort verzoek is bij de gemeente niet bekend.")
            })?;
        formulierdata(&v.data)?;
        // Open VTB's bedrag has at most 8 digits before the point.
        let bedrag = v.payment.as_ref().map(|p| super::bedrag(&p.amount, 8)).transpose()?;
        let urn = |url: &str| self.cfg.informatieobject(url);
        // The CSV of the submitted data is a document of the verzoek like its attachments.
        let documenten = v.csv_url.iter().chain(&v.attachments);
        Ok(gzac::Verzoek {
            uuid: derived_id(&["verzoek", &v.submission_id]),
            verzoek_type: verzoek_type.clone(),
            aanvraag_gegevens: v.data.clone(),
            initiator,
            verzoek_informatie_object: v.pdf_url.as_deref().map(urn),
            bijlagen: documenten.map(|u| gzac::InformatieObject { informatie_object: urn(u) }).collect(),
            verzoek_bron: gzac::Bron { naam: self.cfg.bron_naam.clone(), kenmerk: v.submission_id.clone() },
            verzoek_betaling: v.payment.as_ref().map(|p| gzac::VerzoekBetaling {
                // The order as the provider knows it, and the provider's own payment id.
                provider_kenmerk: p.public_order_ids.first().cloned(),
                bedrag,
                voltooid: p.completed,
                transactie_datum: None,
                transactie_referentie: p.payment_ids.first().cloned(),
            }),
            verzoek_taal: verzoek_taal(&v.language_code),
            kanaal: self.cfg.kanaal.clone(),
            is_gerelateerd_aan: vec![],
        })
    }
}

/// Open VTB's `verzoekTaal`: the ISO 639-1 code, two letters.
pub fn verzoek_taal(language_code: &str) -> String {
    language_code.chars().take(2).collect::<String>().to_ascii_lowercase()
}

impl Route for VerzoekRoute {
    type Input = portaal::Verzoek;
    type State = Doorgestuurd;

    fn name(&self) -> &'static str {
        "verzoek"
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn outputs(&self) -> Vec<(String, Schema)> {
        vec![
            (self.output.clone(), gzac::Verzoek::get_schema()),
            (self.terugmeldingen.clone(), Terugmelding::get_schema()),
        ]
    }
    fn changelog(&self) -> Option<&str> {
        Some(&self.changelog)
    }
    fn decode(&self, decoder: &Decoder<'_>, bytes: &[u8]) -> Result<portaal::Verzoek, CodecError> {
        decoder.avro(bytes, &self.reader)
    }

    fn handle(&mut self, v: portaal::Verzoek, ctx: &mut Ctx<'_, Doorgestuurd>) -> Result<Vec<Output>, RouteError> {
        // Without an id there is nothing to answer to, nor an id to derive the GZAC uuid from.
        let id = &super::required("submission_id", &v.submission_id)?.to_string();
        let translated = self.translate(&v).and_then(|g| {
            let sha256 = digest(&g).map_err(|e| afwijzing("ONVERWERKBAAR", e.to_string()))?;
            match ctx.get(id) {
                Some(d) if d.sha256 != sha256 => Err(afwijzing(
                    "SUBMISSION_ID_AL_GEBRUIKT",
                    "Onder dit kenmerk is al een ander verzoek ingediend; dien het opnieuw in met een nieuw kenmerk.",
                )),
                // The same submission again (a replay, a retry by the portal): GZAC has it; the
                // portal hears again that it was forwarded (the same terugmelding, same id).
                Some(_) => Ok((g, false)),
                None => {
                    ctx.put(id, Some(Doorgestuurd { sha256, op: ctx.now }));
                    Ok((g, true))
                }
            }
        });
        match translated {
            Ok((g, new)) => {
                tracing::debug!(submission_id = %id, verzoek = %g.uuid, new, "verzoek doorgestuurd");
                let t = terugmelding(Soort::Verzoek, id, Ok(&g.uuid), ctx.now);
                let mut out = vec![terugmelding_output(&self.terugmeldingen, &t)];
                if new {
                    out.insert(0, Output::new(&self.output, g.uuid.clone(), &g, event(TYPE_DOORGESTUURD, &g.uuid)));
                }
                Ok(out)
            }
            Err(a) => {
                tracing::info!(submission_id = %id, reden = a.code, "verzoek afgewezen");
                let t = terugmelding(Soort::Verzoek, id, Err(&a), ctx.now);
                Ok(vec![terugmelding_output(&self.terugmeldingen, &t)])
            }
        }
    }

    fn schedule(&self) -> Option<crate::state::Schedule<Doorgestuurd>> {
        let retention = self.retention;
        Some(std::sync::Arc::new(move |d: &Doorgestuurd| Some(d.op.plus(retention))))
    }

    /// Forget submissions forwarded longer than `state_retention` ago.
    fn tick(&mut self, ctx: &mut Ctx<'_, Doorgestuurd>) -> Result<Vec<Output>, RouteError> {
        for (partition, key, _) in ctx.state.due(ctx.now) {
            ctx.state.put(partition, &key, None);
        }
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> VerzoekRoute {
        VerzoekRoute::new(&Config::defaults())
    }

    pub fn verzoek() -> portaal::Verzoek {
        portaal::Verzoek {
            submission_id: "sub-1".into(),
            verzoektype: "parkeervergunning".into(),
            bsn: Some("569312863".into()),
            kvk: None,
            rol: None,
            csv_url: None,
            data: r#"{"kenteken":"AB-123-C"}"#.into(),
            pdf_url: Some("https://forms.example/pdf/1".into()),
            attachments: vec!["https://forms.example/att/1".into()],
            language_code: "nl".into(),
            payment: None,
            submitted_at: Timestamp(1_700_000_000_000),
        }
    }

    #[test]
    fn valid_verzoek_is_translated() {
        let g = route().translate(&verzoek()).unwrap();
        assert_eq!(g.uuid, derived_id(&["verzoek", "sub-1"]));
        assert_eq!(g.initiator, "urn:nld:brp:bsn:569312863");
        assert_eq!(g.verzoek_taal, "nl");
        assert_eq!(g.verzoek_bron.kenmerk, "sub-1");
        assert_eq!(g.verzoek_informatie_object.as_deref(), Some("urn:nld:gemeente:documenten:informatieobject:1"));
        assert_eq!(
            g.bijlagen,
            vec![gzac::InformatieObject { informatie_object: "urn:nld:gemeente:documenten:informatieobject:1".into() }]
        );
        assert!(g.verzoek_type.starts_with("https://"));
        let b = |s| super::super::bedrag(s, 8);
        assert_eq!((b("42.5"), b("0042.50"), b("7")), (Ok("42.50".into()), Ok("42.50".into()), Ok("7.00".into())));
        for bad in ["-1.50", "1.234", "123456789.00", "1,50", ""] {
            assert_eq!(b(bad).unwrap_err().code, "ONGELDIG_BEDRAG", "{bad}");
        }
    }

    #[test]
    fn same_submission_same_uuid_other_submission_other_uuid() {
        let a = route().translate(&verzoek()).unwrap().uuid;
        let b = route().translate(&verzoek()).unwrap().uuid;
        let c = route().translate(&portaal::Verzoek { submission_id: "sub-2".into(), ..verzoek() }).unwrap().uuid;
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn rules_reject_with_reason_codes() {
        let r = route();
        let code = |v: portaal::Verzoek| r.translate(&v).unwrap_err().code;
        assert_eq!(code(portaal::Verzoek { bsn: Some("123456789".into()), ..verzoek() }), "ONGELDIG_BSN");
        assert_eq!(code(portaal::Verzoek { bsn: None, kvk: Some("1234".into()), ..verzoek() }), "ONGELDIG_KVK");
        assert_eq!(code(portaal::Verzoek { kvk: Some("12345678".into()), ..verzoek() }), "MEER_DAN_EEN_PARTIJ");
        assert_eq!(code(portaal::Verzoek { bsn: None, ..verzoek() }), "GEEN_PARTIJ");
        assert_eq!(code(portaal::Verzoek { verzoektype: "kapvergunning".into(), ..verzoek() }), "ONBEKEND_VERZOEKTYPE");
        let text = r.translate(&portaal::Verzoek { verzoektype: "kapvergunning".into(), ..verzoek() }).unwrap_err();
        assert!(!text.toelichting.contains("kapvergunning"), "a rejection does not echo the input");
        assert_eq!(
            code(portaal::Verzoek { rol: Some(portaal::Rol::Ketenpartner), ..verzoek() }),
            "KETENPARTNER_DIENT_GEEN_VERZOEK_IN"
        );
        assert_eq!(code(portaal::Verzoek { data: "{not json".into(), ..verzoek() }), "ONGELDIGE_FORMULIERDATA");
    }

    #[test]
    fn organisation_as_klant_may_file() {
        let g = route().translate(&portaal::Verzoek { bsn: None, kvk: Some("12345678".into()), ..verzoek() }).unwrap();
        assert_eq!(g.initiator, "urn:nld:hr:kvknummer:12345678");
    }

    #[test]
    fn rejection_carries_no_bsn_and_no_form_data() {
        let mut store = crate::state::Store::default();
        let mut ctx = Ctx { now: Timestamp(0), partition: 0, state: &mut store, link: None };
        let v = portaal::Verzoek { verzoektype: "onbekend".into(), ..verzoek() };
        let outs = route().handle(v, &mut ctx).unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].topic, TERUGMELDINGEN);
        let text = format!("{:?}", outs[0]);
        assert!(!text.contains("569312863") && !text.contains("AB-123-C"), "{text}");
    }
}
