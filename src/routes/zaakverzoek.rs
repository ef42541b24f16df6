//! ZaakVerzoek (portal → GZAC): a request about an existing zaak is forwarded only when the zaak
//! is known (from the compacted `gzac.zaken.v1`, read whole by every instance) and the indiener is
//! one of its betrokkenen; otherwise the portal gets `afgewezen` and GZAC nothing. The first
//! answer to a submission is kept: the same zaakverzoek sent again gets that answer repeated and
//! is never forwarded twice, also when the zaken table changed in between.

use super::{
    afwijzing, derived_id, digest, event, formulierdata, gzac_urn, terugmelding, terugmelding_output, Afwijzing,
};
use crate::codec::CodecError;
use crate::config::{Config, VerzoekConfig};
use crate::events::Event;
use crate::model::common::{Soort, Terugmelding};
use crate::model::{gzac, portaal, Timestamp};
use crate::pipeline::{Ctx, Decoder, Output, Route, RouteError, Start};
use crate::table::GlobalTable;
use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use crate::topics::GZAC_ZAAKVERZOEKEN as OUTPUT;
pub use crate::topics::GZAC_ZAKEN as ZAKEN;
pub use crate::topics::PORTAAL_TERUGMELDINGEN as TERUGMELDINGEN;
pub use crate::topics::PORTAAL_ZAAKVERZOEKEN as INPUT;
pub const TYPE_DOORGESTUURD: &str = "nl.overheid.zaken.zaakverzoek-doorgestuurd";
pub use crate::topics::ZAAKVERZOEKEN_STATE as CHANGELOG;

/// The first answer to a submission: what came in (SHA-256) and the terugmelding it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beantwoord {
    pub sha256: String,
    pub op: Timestamp,
    pub terugmelding: Terugmelding,
}

pub struct ZaakVerzoekRoute {
    input: String,
    output: String,
    terugmeldingen: String,
    cfg: VerzoekConfig,
    zaken: Arc<GlobalTable<gzac::Zaak>>,
    reader: Schema,
    changelog: String,
    retention: std::time::Duration,
}

/// The rules of SPEC §4.4 against a zaak snapshot; `Ok` is the GZAC side: an Open VTB `Verzoek`
/// related to the zaak by its URN (`isGerelateerdAan`), with the zaak's identificatie from the
/// zaken table, not from the portal's input.
pub fn check(
    zaak: Option<&gzac::Zaak>,
    v: &portaal::ZaakVerzoek,
    cfg: &VerzoekConfig,
) -> Result<gzac::Verzoek, Afwijzing> {
    let indiener = gzac_urn(&v.indiener)?;
    let zaak = zaak.ok_or_else(|| afwijzing("ONBEKENDE_ZAAK", "Deze zaak is bij de gemeente niet bekend."))?;
    if !zaak.rollen.iter().any(|r| is(&r.betrokkene_identificatie, &v.indiener)) {
        return Err(afwijzing("GEEN_BETROKKENE", "U bent geen betrokkene bij deze zaak."));
    }
    let verzoek_type = cfg
        .verzoektypen
        .get(&v.verzoektype)
        .ok_or_else(|| afwijzing("ONBEKEND_VERZOEKTYPE", "Dit soort verzoek is bij de gemeente niet bekend."))?;
    formulierdata(&v.data)?;
    Ok(gzac::Verzoek {
        uuid: derived_id(&["zaakverzoek", &v.submission_id]),
        verzoek_type: verzoek_type.clone(),
        aanvraag_gegevens: v.data.clone(),
        initiator: indiener,
        verzoek_informatie_object: None,
        bijlagen: v
            .attachments
            .iter()
            .map(|u| gzac::InformatieObject { informatie_object: cfg.informatieobject(u) })
            .collect(),
        verzoek_bron: gzac::Bron { naam: cfg.bron_naam.clone(), kenmerk: v.submission_id.clone() },
        verzoek_betaling: None,
        verzoek_taal: super::verzoek::verzoek_taal(&v.language_code),
        kanaal: cfg.kanaal.clone(),
        is_gerelateerd_aan: vec![gzac::IsGerelateerdAan { urn: cfg.zaak(&zaak.identificatie) }],
    })
}

/// Does a ZGW rol's `betrokkeneIdentificatie` name this portal party? A person by BSN
/// (`inpBsn`), an organisation by KVK number (also a vestiging's) or RSIN (`innNnpId`).
fn is(b: &gzac::BetrokkeneIdentificatie, p: &portaal::Partij) -> bool {
    let field = match p.soort {
        portaal::PartijType::Bsn => &b.inp_bsn,
        portaal::PartijType::Kvk => &b.kvk_nummer,
        portaal::PartijType::Rsin => &b.inn_nnp_id,
    };
    field.as_deref() == Some(p.value.as_str())
}

/// CloudEvents extension on a forwarded zaakverzoek: whether a klant or a ketenpartner sent it
/// (Open VTB's `Verzoek` has no field for it).
pub const ROL_EXTENSION: &str = "indienerrol";

impl ZaakVerzoekRoute {
    pub fn new(cfg: &Config, zaken: Arc<GlobalTable<gzac::Zaak>>) -> Self {
        ZaakVerzoekRoute {
            input: cfg.topic(INPUT),
            output: cfg.topic(OUTPUT),
            terugmeldingen: cfg.topic(TERUGMELDINGEN),
            cfg: cfg.verzoek.clone(),
            zaken,
            reader: portaal::ZaakVerzoek::get_schema(),
            changelog: cfg.topic(CHANGELOG),
            retention: cfg.pipeline.state_retention,
        }
    }
}

impl Route for ZaakVerzoekRoute {
    type Input = portaal::ZaakVerzoek;
    type State = Beantwoord;

    fn name(&self) -> &'static str {
        "zaakverzoek"
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
    fn prepare(&mut self, start: &Start<'_>) -> anyhow::Result<()> {
        self.zaken.wait_ready(start.shutdown)
    }
    fn decode(&self, decoder: &Decoder<'_>, bytes: &[u8]) -> Result<portaal::ZaakVerzoek, CodecError> {
        decoder.avro(bytes, &self.reader)
    }

    fn handle(&mut self, v: portaal::ZaakVerzoek, ctx: &mut Ctx<'_, Beantwoord>) -> Result<Vec<Output>, RouteError> {
        let id = super::required("submission_id", &v.submission_id)?.to_string();
        let sha256 = digest(&v)?;
        let first = match ctx.get(&id) {
            // Sent again: the first answer, repeated (same terugmelding id); GZAC has it already.
            Some(b) if b.sha256 == sha256 => {
                return Ok(vec![terugmelding_output(&self.terugmeldingen, &b.terugmelding)]);
            }
            Some(_) => Err(afwijzing(
                "SUBMISSION_ID_AL_GEBRUIKT",
                "Onder dit kenmerk is al een ander verzoek ingediend; dien het opnieuw in met een nieuw kenmerk.",
            )),
            None => check(self.zaken.lookup(&v.zaak.uuid).as_ref(), &v, &self.cfg),
        };
        let remember = |ctx: &mut Ctx<'_, Beantwoord>, terugmelding: &Terugmelding| {
            let b = Beantwoord { sha256: sha256.clone(), op: ctx.now, terugmelding: terugmelding.clone() };
            ctx.put(&id, Some(b));
        };
        match first {
            Ok(g) => {
                let t = terugmelding(Soort::Zaakverzoek, &id, Ok(&g.uuid), ctx.now);
                let rol = match v.rol {
                    portaal::Rol::Klant => "klant",
                    portaal::Rol::Ketenpartner => "ketenpartner",
                };
                let ev =
                    Event { extensions: vec![(ROL_EXTENSION, rol.to_string())], ..event(TYPE_DOORGESTUURD, &g.uuid) };
                remember(ctx, &t);
                Ok(vec![
                    // Keyed by the zaak's uuid: a zaak's verzoeken stay in order.
                    Output::new(&self.output, v.zaak.uuid.clone(), &g, ev),
                    terugmelding_output(&self.terugmeldingen, &t),
                ])
            }
            Err(a) => {
                tracing::info!(submission_id = %id, reden = a.code, "zaakverzoek afgewezen");
                // A different submission under a used id is refused but not remembered: the first
                // answer stays the one to repeat.
                let t = terugmelding(Soort::Zaakverzoek, &id, Err(&a), ctx.now);
                if a.code != "SUBMISSION_ID_AL_GEBRUIKT" {
                    remember(ctx, &t);
                }
                Ok(vec![terugmelding_output(&self.terugmeldingen, &t)])
            }
        }
    }

    fn schedule(&self) -> Option<crate::state::Schedule<Beantwoord>> {
        let retention = self.retention;
        Some(Arc::new(move |b: &Beantwoord| Some(b.op.plus(retention))))
    }

    /// Forget answers older than `state_retention`.
    fn tick(&mut self, ctx: &mut Ctx<'_, Beantwoord>) -> Result<Vec<Output>, RouteError> {
        for (partition, key, _) in ctx.state.due(ctx.now) {
            ctx.state.put(partition, &key, None);
        }
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::samples::{zaak, zaakverzoek, BSN, OTHER_BSN};

    #[test]
    fn only_a_betrokkene_of_a_known_zaak_is_forwarded() {
        let z = zaak("z", BSN);
        let cfg = Config::defaults().verzoek;
        let code = |zaak: Option<&gzac::Zaak>, bsn| check(zaak, &zaakverzoek("v", "z", bsn), &cfg).unwrap_err().code;
        assert_eq!(code(None, BSN), "ONBEKENDE_ZAAK");
        assert_eq!(code(Some(&z), OTHER_BSN), "GEEN_BETROKKENE");
        assert_eq!(code(Some(&z), "123456789"), "ONGELDIG_BSN");
        let g = check(Some(&z), &zaakverzoek("v", "z", BSN), &cfg).unwrap();
        assert_eq!(
            g.is_gerelateerd_aan,
            vec![gzac::IsGerelateerdAan { urn: "urn:nld:gemeente:zaak:zaaknummer:ZAAK-z".into() }]
        );
        assert_eq!(g.uuid, derived_id(&["zaakverzoek", "v"]));
    }

    #[test]
    fn the_same_zaakverzoek_again_is_answered_as_the_first_time_and_forwarded_once() {
        let cfg = Config::defaults();
        let zaken = Arc::new(GlobalTable::fixed(vec![(zaak("z", BSN).uuid.clone(), zaak("z", BSN))]));
        let mut route = ZaakVerzoekRoute::new(&cfg, zaken);
        let mut store = crate::state::Store::default().scheduled(route.schedule().unwrap());
        let mut ctx = Ctx { now: Timestamp(0), partition: 0, state: &mut store, link: None };
        let v = zaakverzoek("v", "z", BSN);
        let first = route.handle(v.clone(), &mut ctx).unwrap();
        assert_eq!(first.iter().map(|o| o.topic.as_str()).collect::<Vec<_>>(), [OUTPUT, TERUGMELDINGEN]);
        let again = route.handle(v.clone(), &mut ctx).unwrap();
        assert_eq!(again.len(), 1, "only the terugmelding, repeated");
        assert_eq!(format!("{:?}", again[0].event.id), format!("{:?}", first[1].event.id));
        // A rejection is kept too: the zaak's rollen changing later does not change the answer.
        let w = zaakverzoek("w", "z", OTHER_BSN);
        let no = route.handle(w.clone(), &mut ctx).unwrap();
        let no_again = route.handle(w, &mut ctx).unwrap();
        assert_eq!(format!("{:?}", no[0].event.id), format!("{:?}", no_again[0].event.id));
        // Another submission under a used id is refused, and the first answer stays.
        let other = portaal::ZaakVerzoek { data: "{\"x\":1}".into(), ..v.clone() };
        assert_eq!(route.handle(other, &mut ctx).unwrap().len(), 1);
        assert_eq!(route.handle(v, &mut ctx).unwrap()[0].event.id, first[1].event.id);
    }

    #[test]
    fn a_ketenpartner_is_a_betrokkene_by_its_kvk_number() {
        let mut z = zaak("z", BSN);
        z.rollen.push(gzac::Rol {
            betrokkene_type: gzac::BetrokkeneType::Vestiging,
            omschrijving_generiek: gzac::OmschrijvingGeneriek::Belanghebbende,
            betrokkene_identificatie: gzac::BetrokkeneIdentificatie {
                inp_bsn: None,
                inn_nnp_id: None,
                kvk_nummer: Some("69599084".into()),
                vestigings_nummer: Some("000038509504".into()),
            },
        });
        let cfg = Config::defaults().verzoek;
        let by = |soort, value: &str| portaal::ZaakVerzoek {
            indiener: portaal::Partij { soort, value: value.into() },
            rol: portaal::Rol::Ketenpartner,
            ..zaakverzoek("v", "z", BSN)
        };
        let g = check(Some(&z), &by(portaal::PartijType::Kvk, "69599084"), &cfg).unwrap();
        assert_eq!(g.initiator, "urn:nld:hr:kvknummer:69599084");
        let other = check(Some(&z), &by(portaal::PartijType::Kvk, "12345678"), &cfg).unwrap_err();
        assert_eq!(other.code, "GEEN_BETROKKENE");
        // An RSIN no rol names is no betrokkene either.
        assert_eq!(
            check(Some(&z), &by(portaal::PartijType::Rsin, "111222333"), &cfg).unwrap_err().code,
            "GEEN_BETROKKENE"
        );
    }
}
