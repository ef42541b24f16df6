//! ZaakVerzoek (portal → GZAC): a request about an existing zaak is forwarded only when the zaak
//! is known (from the compacted `gzac.zaken.v1`, read whole by every instance) and the indiener is
//! one of its betrokkenen; otherwise the portal gets `afgewezen` and GZAC nothing.

use super::{afwijzing, derived_id, event, formulierdata, gzac_partij, terugmelding, terugmelding_output, Afwijzing};
use crate::codec::{Codec, CodecError};
use crate::config::{Config, VerzoekConfig};
use crate::model::common::{Soort, Terugmelding};
use crate::model::{gzac, portaal};
use crate::pipeline::{decode_avro, Ctx, Output, Route};
use crate::table::GlobalTable;
use apache_avro::{AvroSchema, Schema};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::runtime::Handle;

pub const INPUT: &str = "portaal.zaakverzoeken.v1";
pub const OUTPUT: &str = "gzac.zaakverzoeken.v1";
pub const ZAKEN: &str = "gzac.zaken.v1";
pub const TERUGMELDINGEN: &str = "portaal.terugmeldingen.v1";
pub const TYPE_DOORGESTUURD: &str = "nl.overheid.zaken.zaakverzoek-doorgestuurd";

pub struct ZaakVerzoekRoute {
    input: String,
    output: String,
    terugmeldingen: String,
    cfg: VerzoekConfig,
    zaken: Arc<GlobalTable<gzac::Zaak>>,
    reader: Schema,
}

/// The rules of SPEC §4.4 against a zaak snapshot; `Ok` is the GZAC zaakverzoek.
pub fn check(
    zaak: Option<&gzac::Zaak>,
    v: &portaal::ZaakVerzoek,
    bron_naam: &str,
) -> Result<gzac::ZaakVerzoek, Afwijzing> {
    let indiener = gzac_partij(&v.indiener)?;
    let zaak = zaak.ok_or_else(|| afwijzing("ONBEKENDE_ZAAK", "Deze zaak is bij de gemeente niet bekend."))?;
    if !zaak.betrokkenen.iter().any(|b| b.partij.soort == indiener.soort && b.partij.waarde == indiener.waarde) {
        return Err(afwijzing("GEEN_BETROKKENE", "U bent geen betrokkene bij deze zaak."));
    }
    formulierdata(&v.data)?;
    Ok(gzac::ZaakVerzoek {
        uuid: derived_id(&["zaakverzoek", &v.submission_id]),
        verzoektype: v.verzoektype.clone(),
        zaak: gzac::ZaakRef {
            uuid: zaak.uuid.clone(),
            url: v.zaak.url.clone(),
            identificatie: v.zaak.identificatie.clone().or_else(|| Some(zaak.identificatie.clone())),
        },
        indiener,
        bron: gzac::Bron { naam: bron_naam.to_string(), kenmerk: v.submission_id.clone() },
        aanvraaggegevens: v.data.clone(),
        bijlagen: v.attachments.iter().map(|u| gzac::Bijlage { url: u.clone(), soort: "bijlage".into() }).collect(),
        taal: super::verzoek::taal(&v.language_code).into(),
        ingediend_op: v.submitted_at,
    })
}

impl ZaakVerzoekRoute {
    pub fn new(cfg: &Config, zaken: Arc<GlobalTable<gzac::Zaak>>) -> Self {
        ZaakVerzoekRoute {
            input: cfg.topic(INPUT),
            output: cfg.topic(OUTPUT),
            terugmeldingen: cfg.topic(TERUGMELDINGEN),
            cfg: cfg.verzoek.clone(),
            zaken,
            reader: portaal::ZaakVerzoek::get_schema(),
        }
    }
}

impl Route for ZaakVerzoekRoute {
    type Input = portaal::ZaakVerzoek;
    type State = ();

    fn name(&self) -> &'static str {
        "zaakverzoek"
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn outputs(&self) -> Vec<(String, Schema)> {
        vec![
            (self.output.clone(), gzac::ZaakVerzoek::get_schema()),
            (self.terugmeldingen.clone(), Terugmelding::get_schema()),
        ]
    }
    fn prepare(&mut self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        self.zaken.wait_ready(shutdown)
    }
    fn decode(&self, codec: &Codec, rt: &Handle, bytes: &[u8]) -> Result<portaal::ZaakVerzoek, CodecError> {
        decode_avro(codec, rt, bytes, &self.reader)
    }

    fn handle(&mut self, v: portaal::ZaakVerzoek, _: &mut Ctx<'_, ()>) -> anyhow::Result<Vec<Output>> {
        let id = super::required("submission_id", &v.submission_id)?.to_string();
        let zaak = self.zaken.lookup(&v.zaak.uuid);
        match check(zaak.as_ref(), &v, &self.cfg.bron_naam) {
            Ok(g) => {
                let t = terugmelding(Soort::Zaakverzoek, &id, Ok(&g.uuid));
                Ok(vec![
                    Output::new(&self.output, g.zaak.uuid.clone(), &g, event(TYPE_DOORGESTUURD, &g.uuid))?,
                    terugmelding_output(&self.terugmeldingen, &t)?,
                ])
            }
            Err(a) => {
                tracing::info!(submission_id = %id, reden = a.code, "zaakverzoek afgewezen");
                let t = terugmelding(Soort::Zaakverzoek, &id, Err(&a));
                Ok(vec![terugmelding_output(&self.terugmeldingen, &t)?])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{zaak, zaakverzoek, BSN, OTHER_BSN};

    #[test]
    fn only_a_betrokkene_of_a_known_zaak_is_forwarded() {
        let z = zaak("z", BSN);
        let code = |zaak: Option<&gzac::Zaak>, bsn| check(zaak, &zaakverzoek("v", "z", bsn), "bron").unwrap_err().code;
        assert_eq!(code(None, BSN), "ONBEKENDE_ZAAK");
        assert_eq!(code(Some(&z), OTHER_BSN), "GEEN_BETROKKENE");
        assert_eq!(code(Some(&z), "123456789"), "ONGELDIG_BSN");
        let g = check(Some(&z), &zaakverzoek("v", "z", BSN), "bron").unwrap();
        assert_eq!((g.zaak.uuid.as_str(), g.zaak.identificatie.as_deref()), ("z", Some("ZAAK-z")));
        assert_eq!(g.uuid, derived_id(&["zaakverzoek", "v"]));
    }
}
