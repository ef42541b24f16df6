//! Externe taak: GZAC's portaaltaak lifecycle to the portal (NL Portal taak v2), the assignee
//! notified of a new taak, and the portal's antwoord checked against the taak's state before it
//! reaches GZAC. Both inputs arrive through one repartition topic keyed by taak uuid (see
//! `repartition`), so a taak's events and antwoorden are handled in order, by one instance, against
//! one state. An open taak past its verloopdatum becomes verlopen on both sides.

use super::notificatie::{self, Item, Kanalen, Notifier};
use super::repartition::Repartition;
use super::{event, portaal_ontvanger, terugmelding, terugmelding_output};
use crate::codec::CodecError;
use crate::config::{Config, TaakEscalatie, TakenConfig};
use crate::model::common::{Kanaal, NietBereikt, Soort, Terugmelding, Weigering, WeigeringSoort};
use crate::model::{gzac, portaal, Timestamp};
use crate::pipeline::{Ctx, Decoder, Output, Route, RouteError, Start};
use crate::table::GlobalTable;
use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use crate::topics::GZAC_TAAKANTWOORDEN as GZAC_ANTWOORDEN;
pub use crate::topics::GZAC_TAKEN;
pub use crate::topics::PORTAAL_TAAKANTWOORDEN as ANTWOORDEN;
pub use crate::topics::PORTAAL_TAKEN;
pub use crate::topics::PORTAAL_TERUGMELDINGEN as TERUGMELDINGEN;
pub use crate::topics::TAKEN_REPARTITION as REPARTITION;
pub use crate::topics::TAKEN_STATE as CHANGELOG;

// CloudEvents types: each belongs to one output schema. The portal's taak has types of its own;
// on the GZAC side Open VTB's names for the ExterneTaak events.
pub const TYPE_AANGEMAAKT: &str = "nl.overheid.portaal.taak-aangemaakt";
pub const TYPE_GEWIJZIGD: &str = "nl.overheid.portaal.taak-gewijzigd";
pub const TYPE_VERLOPEN: &str = "nl.overheid.portaal.taak-verlopen";
pub const TYPE_GZAC_VERLOPEN: &str = "nl.overheid.taken.externetaak-verlopen";
pub const TYPE_GZAC_HERINNERD: &str = "nl.overheid.taken.externetaak-herinnerd";
pub const TYPE_ANTWOORD: &str = "nl.overheid.taken.externetaak-uitgevoerd";

/// What the bridge knows of a taak, keyed by its uuid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaakState {
    /// The latest lifecycle event, with the status as the bridge sees it now.
    pub taak: gzac::ExterneTaak,
    pub beantwoord: bool,
    /// When the bridge last changed this state.
    pub gewijzigd: Timestamp,
    /// What the klant sent (JSON), once an antwoord was accepted: shown with the taak in the portal.
    #[serde(default)]
    pub verzonden_data: Option<String>,
    /// The record that last changed it: what a reminder or an expiry links to.
    #[serde(default)]
    pub link: Option<crate::events::Link>,
    /// The assignee was reminded (for this `datumHerinnering`).
    #[serde(default)]
    pub herinnerd: bool,
    /// The channels the new-taak notificatie went out on.
    #[serde(default)]
    pub kanalen: Vec<Kanaal>,
    /// Escalated (reminded on another channel, or GZAC told the klant was not reached).
    #[serde(default)]
    pub geescaleerd: bool,
    /// SHA-256 of the last GZAC records received for this taak, as they came in (the bridge
    /// changes `taak` when it is answered or expires): one of them again is a redelivery.
    #[serde(default)]
    pub ontvangen: Vec<String>,
    /// The antwoorden answered (id, SHA-256 as received, the terugmelding given): one sent
    /// again gets its first answer repeated.
    #[serde(default)]
    pub antwoorden: Vec<(String, String, Terugmelding)>,
}

impl TaakState {
    /// A taak as first held: nothing answered, reminded, escalated or remembered yet.
    pub fn held(taak: gzac::ExterneTaak, beantwoord: bool, gewijzigd: Timestamp) -> Self {
        TaakState {
            taak,
            beantwoord,
            gewijzigd,
            verzonden_data: None,
            link: None,
            herinnerd: false,
            kanalen: vec![],
            geescaleerd: false,
            ontvangen: vec![],
            antwoorden: vec![],
        }
    }
}

/// How many GZAC records and antwoorden per taak are remembered to recognise a redelivery.
const ONTHOUDEN: usize = 16;

fn onthoud<T>(list: &mut Vec<T>, item: T) {
    list.push(item);
    if list.len() > ONTHOUDEN {
        list.remove(0);
    }
}

/// The two kinds of record on the repartition topic.
pub enum TaakInput {
    Taak(gzac::ExterneTaak),
    Antwoord(portaal::TaakAntwoord),
}

pub struct TaakRoute {
    input: String,
    portaal_taken: String,
    gzac_antwoorden: String,
    terugmeldingen: String,
    weigeringen: String,
    niet_bereikt: String,
    changelog: String,
    notifier: Notifier,
    taken: TakenConfig,
    escalatie: TaakEscalatie,
    retention: std::time::Duration,
    /// Reader schemas of the two kinds of record on the repartition topic.
    taak_reader: Schema,
    antwoord_reader: Schema,
}

mod vertaling;
pub use vertaling::{bedrag, check, portaal_status, translate};

impl TaakRoute {
    pub fn new(cfg: &Config, voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>) -> Self {
        TaakRoute {
            input: cfg.topic(REPARTITION),
            portaal_taken: cfg.topic(PORTAAL_TAKEN),
            gzac_antwoorden: cfg.topic(GZAC_ANTWOORDEN),
            terugmeldingen: cfg.topic(TERUGMELDINGEN),
            weigeringen: cfg.topic(super::WEIGERINGEN),
            niet_bereikt: cfg.topic(super::NIET_BEREIKT),
            changelog: cfg.topic(CHANGELOG),
            notifier: Notifier::new(cfg, voorkeuren),
            taken: cfg.taken.clone(),
            escalatie: cfg.notificaties.escalatie.taken.clone(),
            retention: cfg.pipeline.state_retention,
            taak_reader: gzac::ExterneTaak::get_schema(),
            antwoord_reader: portaal::TaakAntwoord::get_schema(),
        }
    }

    fn portal_update(&self, s: &TaakState, kind: &'static str) -> Result<Output, RouteError> {
        let p = translate(&s.taak, &self.taken, s.verzonden_data.as_deref())
            .map_err(|r| RouteError::bad_input(format!("the taak no longer translates ({})", r.code)))?;
        self.portal_output(&s.taak.uuid, p, kind)
    }

    /// The portal's taak, keyed (and subjected) by the taak uuid.
    fn portal_output(&self, uuid: &str, p: portaal::Taak, kind: &'static str) -> Result<Output, RouteError> {
        // The event id differs per distinct update (a second change while still open too) and is
        // the same when the same update is replayed.
        let id_source = format!("{uuid}/{}", super::digest(&p)?);
        Ok(Output::new(
            &self.portaal_taken,
            uuid.to_string(),
            &p,
            super::Event { subject: uuid.to_string(), ..event(kind, &id_source) },
        ))
    }

    /// An Open VTB event about a taak for GZAC, on the topic only the bridge writes (never on
    /// GZAC's own `gzac.taken.v1`, which the bridge reads). Its id: the event and the taak's content.
    fn gzac_event(
        &self,
        t: &gzac::ExterneTaak,
        kind: &'static str,
        link: Option<&crate::events::Link>,
    ) -> Result<Output, RouteError> {
        let id_source = format!("{}/{}", t.uuid, super::digest(t)?);
        Ok(Output::new(&self.gzac_antwoorden, t.uuid.clone(), t, event(kind, &id_source)).caused_by(link))
    }

    /// Notificaties about this taak on `kanalen`, and the channels they went out on.
    fn notify(
        &self,
        s: &TaakState,
        gebeurtenis: &'static str,
        kanalen: Kanalen<'_>,
        now: Timestamp,
    ) -> Result<(Vec<Output>, Vec<Kanaal>), RouteError> {
        let Ok(ontvanger) = portaal_ontvanger(&s.taak.is_toegewezen_aan) else { return Ok((vec![], vec![])) };
        let deadline = Some(s.taak.einddatum_handelings_termijn);
        let item = Item { soort: "taak", id: &s.taak.uuid, deadline, gebeurtenis, op: now };
        self.notifier.verzoeken(&ontvanger, &item, kanalen)
    }

    /// An open taak near its end: remind on a channel not used before, or tell GZAC that the
    /// klant was not reached.
    fn escalate(&self, s: &TaakState, now: Timestamp) -> Result<Vec<Output>, RouteError> {
        let (out, _) = self.notify(s, notificatie::ESCALATIE_TAAK, Kanalen::Behalve(&s.kanalen), now)?;
        tracing::info!(taak = %s.taak.uuid, kanalen = out.len(), "open taak escalated");
        let out = if out.is_empty() {
            vec![super::niet_bereikt_output(
                &self.niet_bereikt,
                WeigeringSoort::Taak,
                &s.taak.uuid,
                !s.kanalen.is_empty(),
                now,
            )]
        } else {
            out
        };
        Ok(out.into_iter().map(|o| o.caused_by(s.link.as_ref())).collect())
    }

    /// The timer work of one due taak: its outputs and its next state (`None`: forgotten).
    fn fire(&self, mut s: TaakState, now: Timestamp) -> Result<(Vec<Output>, Option<TaakState>), RouteError> {
        let open = s.taak.status == gzac::TaakStatus::Open;
        let einde = s.taak.einddatum_handelings_termijn.einde();
        let mut out = Vec::new();
        if open && einde <= now {
            tracing::info!(taak = %s.taak.uuid, "taak verlopen");
            s.taak.status = gzac::TaakStatus::NietUitgevoerd;
            s.gewijzigd = now;
            // A stored taak that no longer translates (the configuration changed) is still
            // closed for GZAC; the portal's side becomes a weigering GZAC sees.
            match translate(&s.taak, &self.taken, s.verzonden_data.as_deref()) {
                Ok(p) => out.push(self.portal_output(&s.taak.uuid, p, TYPE_VERLOPEN)?.caused_by(s.link.as_ref())),
                Err(r) => {
                    out.push(super::weigering_output(&self.weigeringen, WeigeringSoort::Taak, &s.taak.uuid, &r, now))
                }
            }
            out.push(self.gzac_event(&s.taak, TYPE_GZAC_VERLOPEN, s.link.as_ref())?);
            return Ok((out, Some(s)));
        }
        let uur = self.taken.herinnering_uur;
        if open && !s.herinnerd && s.taak.datum_herinnering.is_some_and(|d| d.om(uur) <= now) {
            tracing::info!(taak = %s.taak.uuid, "taak herinnerd");
            s.herinnerd = true;
            let (reminders, _) = self.notify(&s, notificatie::HERINNERING, Kanalen::Gekozen, now)?;
            out.extend(reminders.into_iter().map(|o| o.caused_by(s.link.as_ref())));
            out.push(self.gzac_event(&s.taak, TYPE_GZAC_HERINNERD, s.link.as_ref())?);
            return Ok((out, Some(s)));
        }
        let voor = self.escalatie.voor_einddatum;
        if open && !s.beantwoord && !s.geescaleerd && voor.is_some_and(|d| einde.minus(d) <= now) {
            s.geescaleerd = true;
            out.extend(self.escalate(&s, now)?);
            return Ok((out, Some(s)));
        }
        if !open && s.gewijzigd.plus(self.retention) <= now {
            return Ok((out, None));
        }
        // Due by the schedule, yet nothing to do: a disagreement between the two, never a loop.
        Err(RouteError::bug("due by the schedule, but no timer work applies"))
    }

    fn on_taak(&self, t: gzac::ExterneTaak, ctx: &mut Ctx<'_, TaakState>) -> Result<Vec<Output>, RouteError> {
        super::required("uuid", &t.uuid)?;
        let previous = ctx.get(&t.uuid).cloned();
        let sha256 = super::digest(&t)?;
        if let Some(p) = &previous {
            if p.taak == t || p.ontvangen.contains(&sha256) {
                return Ok(vec![]); // nothing new (a redelivery, or a replay)
            }
            // Open VTB's lifecycle never goes back to `open` (open → uitgevoerd → verwerkt,
            // open → afgebroken / niet_uitgevoerd): an `open` taak for one that is done here is an
            // earlier record sent again, and a finished taak is not reopened.
            if p.taak.status != gzac::TaakStatus::Open && t.status == gzac::TaakStatus::Open {
                tracing::info!(taak = %t.uuid, "an open taak for one already finished: not reopened");
                let mut kept = p.clone();
                onthoud(&mut kept.ontvangen, sha256);
                ctx.put(&t.uuid, Some(kept));
                return Ok(vec![]);
            }
        }
        let kind = if previous.is_some() { TYPE_GEWIJZIGD } else { TYPE_AANGEMAAKT };
        let verzonden_data = previous.as_ref().and_then(|p| p.verzonden_data.clone());
        let p = match translate(&t, &self.taken, verzonden_data.as_deref()) {
            Ok(p) => p,
            Err(r) => {
                // GZAC sees it; the portal keeps what it had (nothing, for a new taak).
                tracing::warn!(taak = %t.uuid, reden = r.code, "taak not delivered to the portal");
                let w = super::weigering_output(&self.weigeringen, WeigeringSoort::Taak, &t.uuid, &r, ctx.now);
                return Ok(vec![w]);
            }
        };
        let mut ontvangen = previous.as_ref().map(|p| p.ontvangen.clone()).unwrap_or_default();
        onthoud(&mut ontvangen, sha256);
        let mut state = TaakState {
            ontvangen,
            antwoorden: previous.as_ref().map(|p| p.antwoorden.clone()).unwrap_or_default(),
            kanalen: previous.as_ref().map(|p| p.kanalen.clone()).unwrap_or_default(),
            geescaleerd: previous.as_ref().is_some_and(|p| p.geescaleerd),
            herinnerd: previous
                .as_ref()
                .is_some_and(|p| p.herinnerd && p.taak.datum_herinnering == t.datum_herinnering),
            beantwoord: previous.as_ref().is_some_and(|p| p.beantwoord),
            taak: t,
            gewijzigd: ctx.now,
            verzonden_data,
            link: ctx.link.cloned(),
        };
        // The portal's update goes first, then the notificaties of a new open taak.
        let mut out = vec![self.portal_output(&state.taak.uuid, p, kind)?];
        // A taak already past its last day is not announced: the next tick closes it.
        let verlopen = state.taak.einddatum_handelings_termijn.einde() <= ctx.now;
        if previous.is_none() && state.taak.status == gzac::TaakStatus::Open && !verlopen {
            let (notificaties, kanalen) = self.notify(&state, "taak-aangemaakt", Kanalen::Gekozen, ctx.now)?;
            out.extend(notificaties);
            state.kanalen = kanalen;
        }
        ctx.put(&state.taak.uuid.clone(), Some(state));
        Ok(out)
    }

    fn on_antwoord(&self, a: portaal::TaakAntwoord, ctx: &mut Ctx<'_, TaakState>) -> Result<Vec<Output>, RouteError> {
        super::required("id", &a.id)?;
        super::required("taak_id", &a.taak_id)?;
        let state = ctx.get(&a.taak_id).cloned();
        let sha256 = super::digest(&a)?;
        if let Some(t) = state.as_ref().and_then(|s| s.antwoorden.iter().find(|(id, d, _)| *id == a.id && *d == sha256))
        {
            // Sent again: the portal hears its first answer again; nothing reaches GZAC twice.
            return Ok(vec![terugmelding_output(&self.terugmeldingen, &t.2)]);
        }
        let answered =
            |s: &mut TaakState, t: &Terugmelding| onthoud(&mut s.antwoorden, (a.id.clone(), sha256.clone(), t.clone()));
        match check(state.as_ref(), &a) {
            Ok(g) => {
                tracing::info!(taak = %a.taak_id, antwoord = %a.id, "taakantwoord doorgestuurd");
                let mut s = state.expect("checked");
                s.beantwoord = true;
                s.verzonden_data = a.taak.portaalformulier.as_ref().and_then(|p| p.verzonden_data.clone());
                s.taak = g.clone();
                s.gewijzigd = ctx.now;
                s.link = ctx.link.cloned();
                let mut ev = event(TYPE_ANTWOORD, &a.id);
                if let Some(r) = &a.betaalreferentie {
                    // The payment result has no field in Open VTB's BetaalTaak: a CloudEvents extension.
                    ev.extensions.push(("betaalreferentie", r.clone()));
                }
                let t = terugmelding(Soort::Taakantwoord, &a.id, Ok(&g.uuid), ctx.now);
                answered(&mut s, &t);
                let out = vec![
                    Output::new(&self.gzac_antwoorden, a.taak_id.clone(), &g, ev),
                    self.portal_update(&s, TYPE_GEWIJZIGD)?,
                    terugmelding_output(&self.terugmeldingen, &t),
                ];
                ctx.put(&a.taak_id, Some(s));
                Ok(out)
            }
            Err(r) => {
                tracing::info!(taak = %a.taak_id, antwoord = %a.id, reden = r.code, "taakantwoord afgewezen");
                let t = terugmelding(Soort::Taakantwoord, &a.id, Err(&r), ctx.now);
                if let Some(mut s) = state {
                    answered(&mut s, &t);
                    ctx.put(&a.taak_id, Some(s));
                }
                Ok(vec![terugmelding_output(&self.terugmeldingen, &t)])
            }
        }
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
            (self.gzac_antwoorden.clone(), gzac::ExterneTaak::get_schema()),
            (self.terugmeldingen.clone(), Terugmelding::get_schema()),
            (self.weigeringen.clone(), Weigering::get_schema()),
            self.notifier.output(),
            (self.niet_bereikt.clone(), NietBereikt::get_schema()),
        ]
    }
    fn changelog(&self) -> Option<&str> {
        Some(&self.changelog)
    }
    fn prepare(&mut self, start: &Start<'_>) -> anyhow::Result<()> {
        self.notifier.prepare(start)
    }
    fn decode(&self, decoder: &Decoder<'_>, bytes: &[u8]) -> Result<TaakInput, CodecError> {
        super::decode_either(
            decoder,
            bytes,
            (&self.taak_reader, "taak"),
            (&self.antwoord_reader, "antwoord"),
            TaakInput::Taak,
            TaakInput::Antwoord,
        )
    }

    fn handle(&mut self, input: TaakInput, ctx: &mut Ctx<'_, TaakState>) -> Result<Vec<Output>, RouteError> {
        match input {
            TaakInput::Taak(t) => self.on_taak(t, ctx),
            TaakInput::Antwoord(a) => self.on_antwoord(a, ctx),
        }
    }

    /// An open taak at the first of its expiry, its reminder and its escalation still to come; a
    /// taak no longer open when it is forgotten.
    fn schedule(&self) -> Option<crate::state::Schedule<TaakState>> {
        let (uur, voor, retention) = (self.taken.herinnering_uur, self.escalatie.voor_einddatum, self.retention);
        Some(Arc::new(move |s: &TaakState| {
            if s.taak.status != gzac::TaakStatus::Open {
                return Some(s.gewijzigd.plus(retention));
            }
            let einde = s.taak.einddatum_handelings_termijn.einde();
            let herinnering = s.taak.datum_herinnering.filter(|_| !s.herinnerd).map(|d| d.om(uur));
            let escalatie = voor.filter(|_| !s.beantwoord && !s.geescaleerd).map(|d| einde.minus(d));
            [Some(einde), herinnering, escalatie].into_iter().flatten().min()
        }))
    }

    /// At its `datumHerinnering` an open taak's assignee is reminded (and GZAC told); past its
    /// `einddatumHandelingsTermijn` an open taak is closed in the portal and `niet_uitgevoerd` in
    /// GZAC. Both happen once: the state records them. Taken no longer open are forgotten
    /// `state_retention` after their last change. A taak whose timer work fails is left as it is
    /// (logged, out of the time index until it changes); the others still fire.
    fn tick(&mut self, ctx: &mut Ctx<'_, TaakState>) -> Result<Vec<Output>, RouteError> {
        let now = ctx.now;
        let mut out = Vec::new();
        for (partition, key, s) in ctx.state.due(now) {
            match self.fire(s, now) {
                Ok((o, next)) => {
                    out.extend(o);
                    ctx.state.put(partition, &key, next);
                }
                Err(e) => {
                    tracing::error!(taak = %key, error = %format!("{e:#}"), "timer work refused; the taak is left as it is");
                    ctx.state.park(partition, &key);
                }
            }
        }
        Ok(out)
    }
}

/// The key antwoorden and taken are repartitioned by.
pub fn taak_key(t: &gzac::ExterneTaak) -> String {
    t.uuid.clone()
}

pub fn antwoord_key(a: &portaal::TaakAntwoord) -> String {
    a.taak_id.clone()
}

/// The stage before the taak route: GZAC's taken onto the repartition topic.
pub fn herverdeling(cfg: &Config) -> Repartition<gzac::ExterneTaak> {
    Repartition::new(cfg, "taak-herverdeling", GZAC_TAKEN, REPARTITION, taak_key)
}

/// The stage before the taak route: the portal's antwoorden onto the same repartition topic.
pub fn antwoord_herverdeling(cfg: &Config) -> Repartition<portaal::TaakAntwoord> {
    Repartition::new(cfg, "antwoord-herverdeling", ANTWOORDEN, REPARTITION, antwoord_key)
}

#[cfg(test)]
mod tests;
