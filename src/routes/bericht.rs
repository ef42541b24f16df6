//! Bericht (GZAC → portal): translate Open VTB's bericht to NL Portal's, publish it at its
//! `publicatiedatum` (not before; the schedule lives in the changelog and survives restarts), and
//! notify the ontvanger on each channel of their choice. A bericht is published and notified once:
//! its state says so, also after a replay from offset 0. One the portal cannot take goes back to
//! GZAC as a weigering.
//!
//! The portal says when the ontvanger opened a bericht (`portaal.berichten-geopend.v1`); GZAC
//! gets Open VTB's `geopendOp` once, for the first opening. Both inputs reach this route through
//! one repartition topic keyed by bericht uuid, so a bericht's record and its openings meet in one
//! partition and state. A bericht that asks the klant to act and stays unopened is escalated once:
//! a reminder on a channel not used before, or GZAC hears that the klant was not reached.

use super::notificatie::{self, Item, Kanalen, Notifier};
use super::repartition::Repartition;
use super::{afwijzing, event, portaal_ontvanger, Afwijzing};
use crate::codec::CodecError;
use crate::config::{BerichtEscalatie, BerichtenConfig, Config};
use crate::events::Link;
use crate::model::common::{Kanaal, NietBereikt, Weigering, WeigeringSoort};
use crate::model::{gzac, portaal, Datum, Timestamp};
use crate::pipeline::{Ctx, Decoder, Output, Route, RouteError, Start};
use crate::table::GlobalTable;
use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use crate::topics::BERICHTEN_REPARTITION as REPARTITION;
pub use crate::topics::BERICHTEN_STATE as CHANGELOG;
pub use crate::topics::GZAC_BERICHTEN as INPUT;
pub use crate::topics::GZAC_BERICHTEN_GEOPEND as GZAC_GEOPEND;
pub use crate::topics::PORTAAL_BERICHTEN as OUTPUT;
pub use crate::topics::PORTAAL_BERICHTEN_GEOPEND as GEOPEND;
/// Largest portal bericht (as JSON, about its Avro size and more), far below any topic's limit.
pub const MAX_BERICHT_BYTES: usize = 256 * 1024;
pub const TYPE_GEPUBLICEERD: &str = "nl.overheid.berichten.bericht-gepubliceerd";
pub const TYPE_GEOPEND: &str = "nl.overheid.berichten.bericht-geopend";

/// A bericht's state, keyed by its GZAC uuid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BerichtState {
    /// Waiting for its publicatiedatum; `link` is the GZAC record that scheduled it, so the
    /// publication links to it.
    Gepland { bericht: Box<gzac::Bericht>, link: Option<Link> },
    /// Published and notified; a replay of it does nothing.
    Gepubliceerd(Publicatie),
}

/// What is kept of a published bericht: enough to record its opening and to escalate it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publicatie {
    pub op: Timestamp,
    #[serde(default)]
    pub ontvanger: Option<portaal::Partij>,
    /// The channels its notificatie went out on.
    #[serde(default)]
    pub kanalen: Vec<Kanaal>,
    #[serde(default)]
    pub einddatum: Option<Datum>,
    /// When to escalate if it is still unopened then; none: never.
    #[serde(default)]
    pub escalatie_op: Option<Timestamp>,
    #[serde(default)]
    pub geescaleerd: bool,
    /// The first opening the portal reported.
    #[serde(default)]
    pub geopend_op: Option<Timestamp>,
    #[serde(default)]
    pub link: Option<Link>,
}

/// The two kinds of record on the repartition topic.
pub enum BerichtInput {
    Bericht(gzac::Bericht),
    Geopend(portaal::BerichtGeopend),
}

pub struct BerichtRoute {
    input: String,
    output: String,
    gzac_geopend: String,
    weigeringen: String,
    niet_bereikt: String,
    changelog: String,
    notifier: Notifier,
    berichten: BerichtenConfig,
    escalatie: BerichtEscalatie,
    bericht_reader: Schema,
    geopend_reader: Schema,
    retention: std::time::Duration,
}

/// The key of a mapping table for an absent value.
const GEEN: &str = "geen";

impl BerichtRoute {
    pub fn new(cfg: &Config, voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>) -> Self {
        BerichtRoute {
            input: cfg.topic(REPARTITION),
            output: cfg.topic(OUTPUT),
            gzac_geopend: cfg.topic(GZAC_GEOPEND),
            weigeringen: cfg.topic(super::WEIGERINGEN),
            niet_bereikt: cfg.topic(super::NIET_BEREIKT),
            changelog: cfg.topic(CHANGELOG),
            notifier: Notifier::new(cfg, voorkeuren),
            berichten: cfg.berichten.clone(),
            escalatie: cfg.notificaties.escalatie.berichten.clone(),
            bericht_reader: gzac::Bericht::get_schema(),
            geopend_reader: portaal::BerichtGeopend::get_schema(),
            retention: cfg.pipeline.state_retention,
        }
    }

    /// When a bericht is due: its publicatiedatum, or at once without one.
    fn due(b: &gzac::Bericht) -> Timestamp {
        b.publicatiedatum.unwrap_or(Timestamp(0))
    }
    /// NL Portal's bericht for Open VTB's, published at `op`. Its id is GZAC's uuid; days are
    /// Europe/Amsterdam days; `berichtType` and `handelingsperspectief` come from the configured
    /// tables. What NL Portal cannot show is refused with the reason (never guessed).
    pub fn translate(cfg: &BerichtenConfig, b: &gzac::Bericht, op: Timestamp) -> Result<portaal::Bericht, Afwijzing> {
        let bad = |code, text: &str| Err(afwijzing(code, text));
        if b.onderwerp.chars().count() > 50 {
            return bad("ONDERWERP_TE_LANG", "Het onderwerp is langer dan 50 tekens.");
        }
        if b.bericht_tekst.chars().count() > 4000 {
            return bad("TEKST_TE_LANG", "De berichttekst is langer dan 4000 tekens.");
        }
        let in_range = |t: Option<Timestamp>, field| t.map_or(Ok(()), |t| t.checked(field).map(|_| ()));
        if in_range(b.publicatiedatum, "publicatiedatum")
            .and(in_range(b.einddatum_handelings_termijn, "einddatum"))
            .is_err()
        {
            return bad("ONGELDIGE_DATUM", "Een datum ligt buiten 1970..9999.");
        }
        let type_key = b.bericht_type.as_deref().filter(|t| !t.is_empty()).unwrap_or(GEEN);
        let Some(bericht_type) = cfg.typen.get(type_key).copied() else {
            return bad(
                "ONBEKEND_BERICHTTYPE",
                "Dit berichtType heeft geen tegenhanger in het portaal (berichten.typen).",
            );
        };
        let perspectief_key = b.handelings_perspectief.map(|h| super::symbol(&h)).unwrap_or_else(|| GEEN.to_string());
        let Some(handelingsperspectief) = cfg.handelingsperspectieven.get(&perspectief_key).cloned() else {
            return bad(
                "ONBEKEND_HANDELINGSPERSPECTIEF",
                "Dit handelingsPerspectief heeft geen tegenhanger in het portaal (berichten.handelingsperspectieven).",
            );
        };
        let publicatiedatum = Datum::in_amsterdam(b.publicatiedatum.unwrap_or(op).max(op));
        let einddatum = b
            .einddatum_handelings_termijn
            .map(Datum::in_amsterdam)
            .unwrap_or_else(|| publicatiedatum.plus(cfg.standaard_termijn_dagen).min(Datum::MAX));
        // NL Portal requires a referentie: GZAC's, else the zaak it is about, else its uuid.
        let referentie = b
            .referentie
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| b.is_gerelateerd_aan.first().and_then(|r| r.urn.rsplit(':').next()).map(str::to_string))
            .unwrap_or_else(|| b.uuid.clone());
        let p = portaal::Bericht {
            id: b.uuid.clone(),
            identificatie: portaal_ontvanger(&b.ontvanger)?,
            onderwerp: b.onderwerp.clone(),
            bericht_tekst: b.bericht_tekst.clone(),
            bericht_type,
            bijlages: b
                .bijlagen
                .iter()
                .filter(|a| !a.is_bericht_type_bijlage)
                .map(|a| a.informatie_object.clone())
                .collect(),
            publicatiedatum,
            referentie,
            handelingsperspectief,
            einddatum_handelingstermijn: einddatum,
            geopend: false,
        };
        // Bounded here, because a scheduled bericht is written by a timer, where no input is left
        // to dead-letter if its record turned out too large for the topic.
        if serde_json::to_vec(&p).map_or(usize::MAX, |v| v.len()) > MAX_BERICHT_BYTES {
            return bad("BERICHT_TE_GROOT", "Het bericht is te groot voor het portaal.");
        }
        Ok(p)
    }

    /// Publish to the portal and notify: the outputs of a bericht whose time has come (or the
    /// weigering, should it no longer translate), and what its state keeps.
    fn publish(
        &self,
        b: &gzac::Bericht,
        op: Timestamp,
        link: Option<Link>,
    ) -> Result<(Vec<Output>, Publicatie), RouteError> {
        let mut publicatie = Publicatie {
            op,
            ontvanger: None,
            kanalen: vec![],
            einddatum: None,
            escalatie_op: None,
            geescaleerd: false,
            geopend_op: None,
            link,
        };
        let p = match Self::translate(&self.berichten, b, op) {
            Ok(p) => p,
            Err(r) => return Ok((vec![self.weigering(b, &r, op)], publicatie)),
        };
        let mut out = vec![Output::new(&self.output, p.id.clone(), &p, event(TYPE_GEPUBLICEERD, &p.id))];
        let item = Item {
            soort: "bericht",
            id: &p.id,
            deadline: Some(p.einddatum_handelingstermijn),
            gebeurtenis: "bericht-gepubliceerd",
            op,
        };
        let (notificaties, kanalen) = self.notifier.verzoeken(&p.identificatie, &item, Kanalen::Gekozen)?;
        out.extend(notificaties);
        publicatie.escalatie_op = escalatie_op(&self.escalatie, b, op, p.einddatum_handelingstermijn);
        publicatie.ontvanger = Some(p.identificatie);
        publicatie.kanalen = kanalen;
        publicatie.einddatum = Some(p.einddatum_handelingstermijn);
        Ok((out, publicatie))
    }

    fn weigering(&self, b: &gzac::Bericht, r: &Afwijzing, now: Timestamp) -> Output {
        tracing::warn!(bericht = %b.uuid, reden = r.code, "bericht not delivered to the portal");
        super::weigering_output(&self.weigeringen, WeigeringSoort::Bericht, &b.uuid, r, now)
    }

    fn on_bericht(&self, b: gzac::Bericht, ctx: &mut Ctx<'_, BerichtState>) -> Result<Vec<Output>, RouteError> {
        super::required("uuid", &b.uuid)?;
        if let Some(BerichtState::Gepubliceerd(_)) = ctx.get(&b.uuid) {
            tracing::debug!(bericht = %b.uuid, "already published; replay ignored");
            return Ok(vec![]);
        }
        // What the portal cannot take is refused now, not at publication time.
        if let Err(r) = Self::translate(&self.berichten, &b, ctx.now) {
            return Ok(vec![self.weigering(&b, &r, ctx.now)]);
        }
        if Self::due(&b) <= ctx.now {
            let (out, p) = self.publish(&b, ctx.now, ctx.link.cloned())?;
            ctx.put(&b.uuid, Some(BerichtState::Gepubliceerd(p)));
            Ok(out)
        } else {
            tracing::info!(bericht = %b.uuid, at = %Self::due(&b).rfc3339(), "bericht scheduled");
            let uuid = b.uuid.clone();
            ctx.put(&uuid, Some(BerichtState::Gepland { link: ctx.link.cloned(), bericht: Box::new(b) }));
            Ok(vec![])
        }
    }

    /// The first opening by the ontvanger goes to GZAC as `geopendOp`; later ones change nothing.
    /// An opening of a bericht not published yet, or by someone else, is bad input.
    fn on_geopend(
        &self,
        g: portaal::BerichtGeopend,
        ctx: &mut Ctx<'_, BerichtState>,
    ) -> Result<Vec<Output>, RouteError> {
        super::required("id", &g.id)?;
        super::required("bericht_id", &g.bericht_id)?;
        g.geopend_op.checked("geopend_op").map_err(RouteError::BadInput)?;
        let mut p = match ctx.get(&g.bericht_id) {
            Some(BerichtState::Gepubliceerd(p)) => p.clone(),
            Some(BerichtState::Gepland { .. }) => {
                return Err(RouteError::bad_input(format!("bericht {} is not published yet", g.bericht_id)))
            }
            // Forgotten after state_retention (it was published long ago, and a first opening
            // would have been recorded by then): a later opening changes nothing.
            None => {
                tracing::info!(bericht = %g.bericht_id, "opening of a bericht not (or no longer) known here: ignored");
                return Ok(vec![]);
            }
        };
        if p.geopend_op.is_some() {
            return Ok(vec![]);
        }
        if p.ontvanger.as_ref().is_some_and(|o| *o != g.door) {
            let why = format!("bericht {} was opened by someone other than its ontvanger", g.bericht_id);
            return Err(RouteError::BadInput(why));
        }
        tracing::info!(bericht = %g.bericht_id, "bericht geopend");
        p.geopend_op = Some(g.geopend_op);
        let update = gzac::BerichtGeopendOp { uuid: g.bericht_id.clone(), geopend_op: g.geopend_op };
        let out =
            vec![Output::new(&self.gzac_geopend, update.uuid.clone(), &update, event(TYPE_GEOPEND, &update.uuid))];
        ctx.put(&g.bericht_id, Some(BerichtState::Gepubliceerd(p)));
        Ok(out)
    }

    /// Remind on a channel not used before, or tell GZAC the klant was not reached.
    fn escalate(&self, uuid: &str, p: &Publicatie, now: Timestamp) -> Result<Vec<Output>, RouteError> {
        let Some(ontvanger) = &p.ontvanger else { return Ok(vec![]) };
        let gebeurtenis = notificatie::ESCALATIE_BERICHT;
        let item = Item { soort: "bericht", id: uuid, deadline: p.einddatum, gebeurtenis, op: now };
        let (out, _) = self.notifier.verzoeken(ontvanger, &item, Kanalen::Behalve(&p.kanalen))?;
        tracing::info!(bericht = %uuid, kanalen = out.len(), "unopened bericht escalated");
        if !out.is_empty() {
            return Ok(out.into_iter().map(|o| o.caused_by(p.link.as_ref())).collect());
        }
        let notified = !p.kanalen.is_empty();
        let o = super::niet_bereikt_output(&self.niet_bereikt, WeigeringSoort::Bericht, uuid, notified, now);
        Ok(vec![o.caused_by(p.link.as_ref())])
    }
}

impl Route for BerichtRoute {
    type Input = BerichtInput;
    type State = BerichtState;

    fn name(&self) -> &'static str {
        "bericht"
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn outputs(&self) -> Vec<(String, Schema)> {
        vec![
            (self.output.clone(), portaal::Bericht::get_schema()),
            self.notifier.output(),
            (self.weigeringen.clone(), Weigering::get_schema()),
            (self.gzac_geopend.clone(), gzac::BerichtGeopendOp::get_schema()),
            (self.niet_bereikt.clone(), NietBereikt::get_schema()),
        ]
    }
    fn changelog(&self) -> Option<&str> {
        Some(&self.changelog)
    }
    fn prepare(&mut self, start: &Start<'_>) -> anyhow::Result<()> {
        self.notifier.prepare(start)
    }
    fn decode(&self, decoder: &Decoder<'_>, bytes: &[u8]) -> Result<BerichtInput, CodecError> {
        super::decode_either(
            decoder,
            bytes,
            (&self.bericht_reader, "bericht"),
            (&self.geopend_reader, "opening"),
            BerichtInput::Bericht,
            BerichtInput::Geopend,
        )
    }

    fn handle(&mut self, input: BerichtInput, ctx: &mut Ctx<'_, BerichtState>) -> Result<Vec<Output>, RouteError> {
        match input {
            BerichtInput::Bericht(b) => self.on_bericht(b, ctx),
            BerichtInput::Geopend(g) => self.on_geopend(g, ctx),
        }
    }

    /// Publish what has come due; escalate what stayed unopened; forget a published bericht
    /// `state_retention` after publication (unless its escalation is still to come).
    /// A scheduled bericht at its publicatiedatum; a published one at its escalation moment while
    /// that is still to come, else when it is forgotten.
    fn schedule(&self) -> Option<crate::state::Schedule<BerichtState>> {
        let retention = self.retention;
        Some(std::sync::Arc::new(move |s: &BerichtState| match s {
            BerichtState::Gepland { bericht, .. } => Some(Self::due(bericht)),
            BerichtState::Gepubliceerd(p) if escalation_pending(p) => p.escalatie_op,
            BerichtState::Gepubliceerd(p) => Some(p.op.plus(retention)),
        }))
    }

    fn tick(&mut self, ctx: &mut Ctx<'_, BerichtState>) -> Result<Vec<Output>, RouteError> {
        let now = ctx.now;
        let mut out = Vec::new();
        for (partition, key, state) in ctx.state.due(now) {
            let fired = match state {
                BerichtState::Gepland { bericht, link } => self.publish(&bericht, now, link.clone()).map(|(o, p)| {
                    (o.into_iter().map(|o| o.caused_by(link.as_ref())).collect(), Some(BerichtState::Gepubliceerd(p)))
                }),
                BerichtState::Gepubliceerd(mut p) if escalation_pending(&p) => self.escalate(&key, &p, now).map(|o| {
                    p.geescaleerd = true;
                    (o, Some(BerichtState::Gepubliceerd(p)))
                }),
                BerichtState::Gepubliceerd(_) => Ok((vec![], None)),
            };
            match fired {
                Ok((o, next)) => {
                    out.extend(o);
                    ctx.state.put(partition, &key, next);
                }
                // One bericht that cannot be handled does not hold up the others.
                Err(e) => {
                    tracing::error!(bericht = %key, error = %format!("{e:#}"), "timer work refused; the bericht is left as it is");
                    ctx.state.park(partition, &key);
                }
            }
        }
        Ok(out)
    }
}

/// An unopened bericht that asks to act, not yet escalated: kept until its escalation moment.
fn escalation_pending(p: &Publicatie) -> bool {
    p.geopend_op.is_none() && !p.geescaleerd && p.escalatie_op.is_some()
}

/// When a bericht published at `op` is escalated if still unopened: for one whose
/// handelingsperspectief asks to act, `voor_einddatum` before its last day ends or `na_publicatie`
/// after `op`, whichever comes first; never for one that asks nothing.
pub fn escalatie_op(cfg: &BerichtEscalatie, b: &gzac::Bericht, op: Timestamp, einddatum: Datum) -> Option<Timestamp> {
    let perspectief = b.handelings_perspectief.map(|h| super::symbol(&h))?;
    if !cfg.handelingsperspectieven.contains(&perspectief) {
        return None;
    }
    let voor = cfg.voor_einddatum.map(|d| einddatum.einde().minus(d));
    let na = cfg.na_publicatie.map(|d| op.plus(d));
    [voor, na].into_iter().flatten().min()
}

/// The key berichten and their openings are repartitioned by.
pub fn bericht_key(b: &gzac::Bericht) -> String {
    b.uuid.clone()
}

pub fn geopend_key(g: &portaal::BerichtGeopend) -> String {
    g.bericht_id.clone()
}

/// The stage before the bericht route: GZAC's berichten onto the repartition topic.
pub fn herverdeling(cfg: &Config) -> Repartition<gzac::Bericht> {
    Repartition::new(cfg, "bericht-herverdeling", INPUT, REPARTITION, bericht_key)
}

/// The stage before the bericht route: the portal's openings onto the same repartition topic.
pub fn geopend_herverdeling(cfg: &Config) -> Repartition<portaal::BerichtGeopend> {
    Repartition::new(cfg, "geopend-herverdeling", GEOPEND, REPARTITION, geopend_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::samples::{bericht, BSN};

    #[test]
    fn escalation_comes_before_the_deadline_or_after_publication_whichever_is_first() {
        let mut cfg = Config::defaults().notificaties.escalatie.berichten;
        let day = std::time::Duration::from_secs(86_400);
        let at = |s: &str| Timestamp::parse(s).unwrap();
        let op = at("2027-03-01T10:00:00+01:00");
        let eind = Datum::in_amsterdam(at("2027-03-15T12:00:00+01:00"));
        let act = gzac::Bericht {
            handelings_perspectief: Some(gzac::HandelingsPerspectief::InformatieGeven),
            ..bericht("b", BSN)
        };
        assert_eq!(escalatie_op(&cfg, &act, op, eind), None, "off unless a time is set");
        cfg.voor_einddatum = Some(3 * day);
        // The end of 15 March is midnight starting the 16th, local time; three days before it.
        assert_eq!(escalatie_op(&cfg, &act, op, eind), Some(at("2027-03-13T00:00:00+01:00")));
        cfg.na_publicatie = Some(7 * day);
        assert_eq!(escalatie_op(&cfg, &act, op, eind), Some(at("2027-03-08T10:00:00+01:00")));
        let info = gzac::Bericht {
            handelings_perspectief: Some(gzac::HandelingsPerspectief::InformatieKrijgen),
            ..bericht("b", BSN)
        };
        assert_eq!(escalatie_op(&cfg, &info, op, eind), None, "a bericht that asks nothing is never escalated");
    }

    #[test]
    fn days_are_amsterdam_days_and_values_come_from_the_tables() {
        let cfg = Config::defaults().berichten;
        // 2026-12-01T23:00Z is midnight starting 2 December in Amsterdam; 2026-07-01T22:30Z is
        // 00:30 on 2 July (summer time).
        let winter = Timestamp(1_796_166_000_000);
        let summer = Timestamp(1_782_945_000_000);
        let day_before = Timestamp(winter.0 - 86_400_000);
        let b = gzac::Bericht {
            einddatum_handelings_termijn: Some(winter),
            publicatiedatum: Some(day_before),
            ..bericht("b", BSN)
        };
        let p = BerichtRoute::translate(&cfg, &b, day_before).unwrap();
        assert_eq!(
            (p.einddatum_handelingstermijn.iso(), p.publicatiedatum.iso()),
            ("2026-12-02".into(), "2026-12-01".into())
        );
        let b = gzac::Bericht { einddatum_handelings_termijn: Some(summer), ..bericht("b", BSN) };
        assert_eq!(BerichtRoute::translate(&cfg, &b, winter).unwrap().einddatum_handelingstermijn.iso(), "2026-07-02");
        let geven = gzac::Bericht {
            handelings_perspectief: Some(gzac::HandelingsPerspectief::InformatieGeven),
            ..bericht("b", BSN)
        };
        assert_eq!(
            BerichtRoute::translate(&cfg, &geven, winter).unwrap().handelingsperspectief,
            "informatie verstrekken"
        );
        let long = gzac::Bericht { onderwerp: "x".repeat(51), ..bericht("b", BSN) };
        assert_eq!(BerichtRoute::translate(&cfg, &long, winter).unwrap_err().code, "ONDERWERP_TE_LANG");
    }
}
