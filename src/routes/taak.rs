//! Externe taak: GZAC's portaaltaak lifecycle to the portal (NL Portal taak v2), the assignee
//! notified of a new taak, and the portal's antwoord checked against the taak's state before it
//! reaches GZAC. Both inputs arrive through one repartition topic keyed by taak uuid (see
//! `repartition`), so a taak's events and antwoorden are handled in order, by one instance, against
//! one state. An open taak past its verloopdatum becomes verlopen on both sides.

use super::notificatie::{self, Item};
use super::{afwijzing, derived_id, event, portaal_partij, terugmelding, terugmelding_output, Afwijzing};
use crate::codec::{Codec, CodecError};
use crate::config::{Config, NotificatieConfig};
use crate::model::common::{Notificatieopdracht, Soort, Terugmelding};
use crate::model::{gzac, portaal, Timestamp};
use crate::pipeline::{decode_avro, Ctx, Output, Route};
use crate::table::GlobalTable;
use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::runtime::Handle;

pub const GZAC_TAKEN: &str = "gzac.taken.v1";
pub const PORTAAL_TAKEN: &str = "portaal.taken.v1";
pub const ANTWOORDEN: &str = "portaal.taakantwoorden.v1";
pub const GZAC_ANTWOORDEN: &str = "gzac.taakantwoorden.v1";
pub const TERUGMELDINGEN: &str = "portaal.terugmeldingen.v1";
pub const REPARTITION: &str = "gzac-portal-bridge.taken-repartition.v1";
pub const CHANGELOG: &str = "gzac-portal-bridge.taken-state.v1";

// CloudEvents types: each belongs to one output schema. The portal's taak has types of its own;
// on the GZAC side Open VTB's names for the ExterneTaak events.
pub const TYPE_AANGEMAAKT: &str = "nl.overheid.portaal.taak-aangemaakt";
pub const TYPE_GEWIJZIGD: &str = "nl.overheid.portaal.taak-gewijzigd";
pub const TYPE_VERLOPEN: &str = "nl.overheid.portaal.taak-verlopen";
pub const TYPE_GZAC_VERLOPEN: &str = "nl.overheid.taken.externetaak-verlopen";
pub const TYPE_ANTWOORD: &str = "nl.overheid.taken.externetaak-uitgevoerd";

/// What the bridge knows of a taak, keyed by its uuid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaakState {
    /// The latest lifecycle event, with the status as the bridge sees it now.
    pub taak: gzac::Taak,
    pub beantwoord: bool,
    /// When the bridge last changed this state.
    pub gewijzigd: Timestamp,
    /// What the klant sent (JSON), once an antwoord was accepted: shown with the taak in the portal.
    #[serde(default)]
    pub verzonden_data: Option<String>,
    /// The record that last changed it: what an expiry links to.
    #[serde(default)]
    pub link: Option<crate::events::Link>,
}

/// The two kinds of record on the repartition topic.
pub enum TaakInput {
    Taak(gzac::Taak),
    Antwoord(portaal::TaakAntwoord),
}

pub struct TaakRoute {
    input: String,
    portaal_taken: String,
    gzac_taken: String,
    gzac_antwoorden: String,
    terugmeldingen: String,
    notificaties: String,
    changelog: String,
    cfg: NotificatieConfig,
    voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>,
    retention: std::time::Duration,
    /// Reader schemas of the two kinds of record on the repartition topic.
    taak_reader: Schema,
    antwoord_reader: Schema,
}

/// Valtimo portaaltaak status → the portal's (taak objecttype v1.1 has no `verlopen`: an
/// expired taak is `gesloten`).
pub fn portaal_status(s: gzac::TaakStatus) -> portaal::TaakStatus {
    match s {
        gzac::TaakStatus::Open => portaal::TaakStatus::Open,
        gzac::TaakStatus::Ingediend => portaal::TaakStatus::Afgerond,
        gzac::TaakStatus::Verwerkt => portaal::TaakStatus::Verwerkt,
        gzac::TaakStatus::Gesloten | gzac::TaakStatus::Ingetrokken | gzac::TaakStatus::Verlopen => {
            portaal::TaakStatus::Gesloten
        }
    }
}

/// The portal's taak (objecttype v1.1) for a GZAC taak; `verzonden_data` is what the klant sent,
/// once an antwoord was accepted. The record's key is the GZAC uuid, which the antwoord refers to.
pub fn translate(t: &gzac::Taak, verzonden_data: Option<&str>) -> anyhow::Result<portaal::Taak> {
    let partij = portaal_partij(t.identificatie.soort, &t.identificatie.value)?;
    let identificatie = portaal::TaakIdentificatie { soort: partij.soort, value: partij.value };
    // A Valtimo portaaltaak's form is referred to by id (a form in the portal) or by URL.
    let formulier = portaal::Formulier {
        soort: match t.formulier.soort {
            gzac::FormulierType::Id => portaal::FormulierSoort::Id,
            gzac::FormulierType::Url => portaal::FormulierSoort::Url,
        },
        value: t.formulier.value.clone(),
    };
    let portaalformulier = portaal::Portaalformulier {
        formulier,
        data: Some(t.data.clone()),
        verzonden_data: verzonden_data.map(str::to_string),
    };
    // Always present: a portaaltaak belongs to a zaak, whose uuid is the last part of its URL.
    let koppeling = portaal::Koppeling {
        registratie: "zaak".into(),
        uuid: t.zaak.as_ref().map(|url| url.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_string()),
    };
    if let Some(d) = t.verloopdatum {
        d.checked("verloopdatum")?;
    }
    Ok(portaal::Taak {
        titel: t.title.clone(),
        status: portaal_status(t.status),
        soort: portaal::TaakSoort::Portaalformulier,
        identificatie,
        verwerker_taak_id: t.verwerker_taak_id.clone(),
        eigenaar: "gzac".into(),
        koppeling,
        verloopdatum: t.verloopdatum,
        url: None,
        portaalformulier: Some(portaalformulier),
        ogonebetaling: None,
    })
}

/// Is this antwoord acceptable for this taak state? `Ok` is the GZAC answer to forward.
pub fn check(state: Option<&TaakState>, a: &portaal::TaakAntwoord) -> Result<gzac::TaakAntwoord, Afwijzing> {
    let s = state.ok_or_else(|| afwijzing("ONBEKENDE_TAAK", "Deze taak is bij de gemeente niet bekend."))?;
    if s.beantwoord {
        return Err(afwijzing("TAAK_AL_BEANTWOORD", "Deze taak is al beantwoord."));
    }
    if s.taak.status != gzac::TaakStatus::Open {
        return Err(afwijzing("TAAK_NIET_OPEN", "Deze taak staat niet meer open."));
    }
    let assignee = portaal_partij(s.taak.identificatie.soort, &s.taak.identificatie.value).ok();
    if assignee.as_ref() != Some(&a.ingediend_door) {
        return Err(afwijzing("NIET_TOEGEWEZEN", "Deze taak is niet aan u toegewezen."));
    }
    Ok(gzac::TaakAntwoord {
        uuid: derived_id(&["taakantwoord", &a.id]),
        verwerker_taak_id: s.taak.verwerker_taak_id.clone(),
        verzonden_data: a.verzonden_data.clone(),
        documenten: a.documenten.clone(),
        status: gzac::TaakStatus::Ingediend,
        ingediend_op: a.ingediend_op,
    })
}

impl TaakRoute {
    pub fn new(cfg: &Config, voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>) -> Self {
        TaakRoute {
            input: cfg.topic(REPARTITION),
            portaal_taken: cfg.topic(PORTAAL_TAKEN),
            gzac_taken: cfg.topic(GZAC_TAKEN),
            gzac_antwoorden: cfg.topic(GZAC_ANTWOORDEN),
            terugmeldingen: cfg.topic(TERUGMELDINGEN),
            notificaties: cfg.topic(notificatie::TOPIC),
            changelog: cfg.topic(CHANGELOG),
            cfg: cfg.notificaties.clone(),
            voorkeuren,
            retention: cfg.pipeline.state_retention,
            taak_reader: gzac::Taak::get_schema(),
            antwoord_reader: portaal::TaakAntwoord::get_schema(),
        }
    }

    fn portal_update(&self, s: &TaakState, kind: &'static str) -> anyhow::Result<Output> {
        self.portal_output(&s.taak.uuid, translate(&s.taak, s.verzonden_data.as_deref())?, kind)
    }

    /// The portal's taak, keyed (and subjected) by the taak uuid.
    fn portal_output(&self, uuid: &str, p: portaal::Taak, kind: &'static str) -> anyhow::Result<Output> {
        // The event id differs per distinct update (a second change while still open too) and is
        // the same when the same update is replayed.
        let id_source = format!("{uuid}/{}", super::digest(&p)?);
        Output::new(
            &self.portaal_taken,
            uuid.to_string(),
            &p,
            super::Event { subject: uuid.to_string(), ..event(kind, &id_source) },
        )
    }

    fn on_taak(&self, t: gzac::Taak, ctx: &mut Ctx<'_, TaakState>) -> anyhow::Result<Vec<Output>> {
        super::required("uuid", &t.uuid)?;
        let previous = ctx.get(&t.uuid).cloned();
        if previous.as_ref().is_some_and(|p| p.taak == t) {
            return Ok(vec![]); // nothing new (e.g. the verlopen the bridge itself wrote to GZAC)
        }
        let kind = match (previous.is_some(), t.status) {
            (_, gzac::TaakStatus::Verlopen) => TYPE_VERLOPEN,
            (false, _) => TYPE_AANGEMAAKT,
            (true, _) => TYPE_GEWIJZIGD,
        };
        let verzonden_data = previous.as_ref().and_then(|p| p.verzonden_data.clone());
        let p = translate(&t, verzonden_data.as_deref())?;
        let mut out = Vec::new();
        if previous.is_none() && t.status == gzac::TaakStatus::Open {
            let item = Item { soort: "taak", id: &t.uuid, deadline: p.verloopdatum, gebeurtenis: "taak-aangemaakt" };
            let ontvanger = portaal::Partij { soort: p.identificatie.soort, value: p.identificatie.value.clone() };
            out.extend(notificatie::opdrachten(&self.cfg, &self.voorkeuren, &ontvanger, &item, &self.notificaties)?);
        }
        // The portal's update goes first, then its notificaties.
        out.insert(0, self.portal_output(&t.uuid, p, kind)?);
        let beantwoord = previous.is_some_and(|p| p.beantwoord);
        let state = TaakState { taak: t, beantwoord, gewijzigd: ctx.now, verzonden_data, link: ctx.link.cloned() };
        ctx.put(&state.taak.uuid.clone(), Some(state));
        Ok(out)
    }

    fn on_antwoord(&self, a: portaal::TaakAntwoord, ctx: &mut Ctx<'_, TaakState>) -> anyhow::Result<Vec<Output>> {
        super::required("id", &a.id)?;
        super::required("taak_id", &a.taak_id)?;
        let state = ctx.get(&a.taak_id).cloned();
        match check(state.as_ref(), &a) {
            Ok(g) => {
                tracing::info!(taak = %a.taak_id, antwoord = %a.id, "taakantwoord doorgestuurd");
                let mut s = state.expect("checked");
                s.beantwoord = true;
                s.taak.status = gzac::TaakStatus::Ingediend;
                s.gewijzigd = ctx.now;
                s.verzonden_data = Some(a.verzonden_data.clone());
                s.link = ctx.link.cloned();
                let out = vec![
                    Output::new(&self.gzac_antwoorden, a.taak_id.clone(), &g, event(TYPE_ANTWOORD, &g.uuid))?,
                    self.portal_update(&s, TYPE_GEWIJZIGD)?,
                    self.terugmelding(&a, Ok(&g.uuid))?,
                ];
                ctx.put(&a.taak_id, Some(s));
                Ok(out)
            }
            Err(r) => {
                tracing::info!(taak = %a.taak_id, antwoord = %a.id, reden = r.code, "taakantwoord afgewezen");
                Ok(vec![self.terugmelding(&a, Err(&r))?])
            }
        }
    }

    fn terugmelding(&self, a: &portaal::TaakAntwoord, outcome: Result<&str, &Afwijzing>) -> anyhow::Result<Output> {
        let t: Terugmelding = terugmelding(Soort::Taakantwoord, &a.id, outcome);
        terugmelding_output(&self.terugmeldingen, &t)
    }
}

impl Route for TaakRoute {
    type Input = TaakInput;
    type State = TaakState;

    fn name(&self) -> &'static str {
        "taak"
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn outputs(&self) -> Vec<(String, Schema)> {
        vec![
            (self.portaal_taken.clone(), portaal::Taak::get_schema()),
            (self.gzac_taken.clone(), gzac::Taak::get_schema()),
            (self.gzac_antwoorden.clone(), gzac::TaakAntwoord::get_schema()),
            (self.terugmeldingen.clone(), Terugmelding::get_schema()),
            (self.notificaties.clone(), Notificatieopdracht::get_schema()),
        ]
    }
    fn changelog(&self) -> Option<&str> {
        Some(&self.changelog)
    }
    fn prepare(&mut self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        self.voorkeuren.wait_ready(shutdown)
    }
    fn decode(&self, codec: &Codec, rt: &Handle, bytes: &[u8]) -> Result<TaakInput, CodecError> {
        // The repartition topic carries both kinds: whichever reader schema the writer's resolves
        // to (Avro schema resolution, not the writer's full name) decides.
        match decode_avro(codec, rt, bytes, &self.taak_reader) {
            Ok(t) => Ok(TaakInput::Taak(t)),
            Err(CodecError::BadData { message: as_taak, .. }) => {
                match decode_avro(codec, rt, bytes, &self.antwoord_reader) {
                    Ok(a) => Ok(TaakInput::Antwoord(a)),
                    Err(CodecError::BadData { class, message }) => Err(CodecError::BadData {
                        class,
                        message: format!("neither a taak ({as_taak}) nor an antwoord ({message})"),
                    }),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn handle(&mut self, input: TaakInput, ctx: &mut Ctx<'_, TaakState>) -> anyhow::Result<Vec<Output>> {
        match input {
            TaakInput::Taak(t) => self.on_taak(t, ctx),
            TaakInput::Antwoord(a) => self.on_antwoord(a, ctx),
        }
    }

    /// Open taken past their verloopdatum become verlopen, in the portal and in GZAC; taken no
    /// longer open are forgotten `state_retention` after their last change.
    fn tick(&mut self, ctx: &mut Ctx<'_, TaakState>) -> anyhow::Result<Vec<Output>> {
        let now = ctx.now;
        let forget_before = Timestamp(now.0 - self.retention.as_millis() as i64);
        let open = |s: &TaakState| s.taak.status == gzac::TaakStatus::Open;
        let expired = |s: &TaakState| open(s) && s.taak.verloopdatum.is_some_and(|d| d <= now);
        let mut out = Vec::new();
        for (partition, key, mut s) in ctx.state.select(|s| expired(s) || (!open(s) && s.gewijzigd < forget_before)) {
            if !expired(&s) {
                ctx.state.put(partition, &key, None);
                continue;
            }
            tracing::info!(taak = %key, "taak verlopen");
            s.taak.status = gzac::TaakStatus::Verlopen;
            s.gewijzigd = now;
            out.push(self.portal_update(&s, TYPE_VERLOPEN)?.caused_by(s.link.as_ref()));
            let gzac = Output::new(&self.gzac_taken, key.clone(), &s.taak, event(TYPE_GZAC_VERLOPEN, &key))?;
            out.push(gzac.caused_by(s.link.as_ref()));
            ctx.state.put(partition, &key, Some(s));
        }
        Ok(out)
    }
}

/// The key antwoorden and taken are repartitioned by.
pub fn taak_key(t: &gzac::Taak) -> String {
    t.uuid.clone()
}

pub fn antwoord_key(a: &portaal::TaakAntwoord) -> String {
    a.taak_id.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{antwoord, taak, BSN, OTHER_BSN};

    fn state(status: gzac::TaakStatus, beantwoord: bool) -> TaakState {
        TaakState {
            taak: gzac::Taak { status, ..taak("t", BSN, None) },
            beantwoord,
            gewijzigd: Timestamp(0),
            verzonden_data: None,
            link: None,
        }
    }

    #[test]
    fn antwoord_rules() {
        let open = state(gzac::TaakStatus::Open, false);
        let code = |s: Option<&TaakState>, bsn| check(s, &antwoord("a", "t", bsn)).unwrap_err().code;
        assert_eq!(code(None, BSN), "ONBEKENDE_TAAK");
        assert_eq!(code(Some(&open), OTHER_BSN), "NIET_TOEGEWEZEN");
        assert_eq!(code(Some(&state(gzac::TaakStatus::Gesloten, false)), BSN), "TAAK_NIET_OPEN");
        assert_eq!(code(Some(&state(gzac::TaakStatus::Ingediend, true)), BSN), "TAAK_AL_BEANTWOORD");
        let g = check(Some(&open), &antwoord("a", "t", BSN)).unwrap();
        assert_eq!(
            (g.verwerker_taak_id, g.status),
            (taak("t", BSN, None).verwerker_taak_id, gzac::TaakStatus::Ingediend)
        );
    }

    #[test]
    fn status_and_form_vocabulary() {
        assert_eq!(portaal_status(gzac::TaakStatus::Ingediend), portaal::TaakStatus::Afgerond);
        assert_eq!(portaal_status(gzac::TaakStatus::Ingetrokken), portaal::TaakStatus::Gesloten);
        assert_eq!(
            portaal_status(gzac::TaakStatus::Verlopen),
            portaal::TaakStatus::Gesloten,
            "the portal has no verlopen"
        );
        let url = gzac::Taak {
            formulier: gzac::Formulier { soort: gzac::FormulierType::Url, value: "https://f/1".into() },
            ..taak("t", BSN, None)
        };
        let p = translate(&url, Some("{}")).unwrap();
        let f = p.portaalformulier.unwrap();
        assert_eq!(p.soort, portaal::TaakSoort::Portaalformulier, "a form by URL is still a portaalformulier");
        assert_eq!((f.formulier.soort, f.formulier.value.as_str()), (portaal::FormulierSoort::Url, "https://f/1"));
        assert_eq!((f.data.as_deref(), f.verzonden_data.as_deref()), (Some(url.data.as_str()), Some("{}")));
        let rsin = gzac::Taak {
            identificatie: gzac::Identificatie { soort: gzac::PartijSoort::Rsin, value: "123".into() },
            ..taak("t", BSN, None)
        };
        assert!(translate(&rsin, None).is_err(), "the portal has no identification for it");
    }
}
