//! Bericht (GZAC → portal): translate Open VTB's bericht to NL Portal's, publish it at its
//! `publicatiedatum` (not before; the schedule lives in the changelog and survives restarts), and
//! notify the ontvanger on each channel of their choice. A bericht is published and notified once:
//! its state says so, also after a replay from offset 0. One the portal cannot take goes back to
//! GZAC as a weigering.

use super::notificatie::{self, Item};
use super::{afwijzing, event, portaal_ontvanger, Afwijzing};
use crate::codec::{Codec, CodecError};
use crate::config::{BerichtenConfig, Config, NotificatieConfig};
use crate::events::Link;
use crate::model::common::{Notificatieopdracht, Weigering, WeigeringSoort};
use crate::model::{gzac, portaal, Datum, Timestamp};
use crate::pipeline::{decode_avro, Ctx, Output, Route};
use crate::table::GlobalTable;
use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::runtime::Handle;

pub const INPUT: &str = "gzac.berichten.v1";
pub const OUTPUT: &str = "portaal.berichten.v1";
pub const CHANGELOG: &str = "gzac-portal-bridge.berichten-state.v1";
/// Largest portal bericht (as JSON, about its Avro size and more), far below any topic's limit.
pub const MAX_BERICHT_BYTES: usize = 256 * 1024;
pub const TYPE_GEPUBLICEERD: &str = "nl.overheid.berichten.bericht-gepubliceerd";

/// A bericht's state, keyed by its GZAC uuid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BerichtState {
    /// Waiting for its publicatiedatum; `link` is the GZAC record that scheduled it, so the
    /// publication links to it.
    Gepland { bericht: Box<gzac::Bericht>, link: Option<Link> },
    /// Published and notified at `op`; a replay of it does nothing.
    Gepubliceerd { op: Timestamp },
}

pub struct BerichtRoute {
    input: String,
    output: String,
    notificaties: String,
    weigeringen: String,
    changelog: String,
    cfg: NotificatieConfig,
    berichten: BerichtenConfig,
    voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>,
    reader: Schema,
    retention: std::time::Duration,
}

/// The key of a mapping table for an absent value.
const GEEN: &str = "geen";

impl BerichtRoute {
    pub fn new(cfg: &Config, voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>) -> Self {
        BerichtRoute {
            input: cfg.topic(INPUT),
            output: cfg.topic(OUTPUT),
            notificaties: cfg.topic(notificatie::TOPIC),
            weigeringen: cfg.topic(super::WEIGERINGEN),
            changelog: cfg.topic(CHANGELOG),
            cfg: cfg.notificaties.clone(),
            berichten: cfg.berichten.clone(),
            voorkeuren,
            reader: gzac::Bericht::get_schema(),
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
    /// weigering, should it no longer translate).
    fn publish(&self, b: &gzac::Bericht, op: Timestamp) -> anyhow::Result<Vec<Output>> {
        let p = match Self::translate(&self.berichten, b, op) {
            Ok(p) => p,
            Err(r) => return Ok(vec![self.weigering(b, &r)?]),
        };
        let mut out = vec![Output::new(&self.output, p.id.clone(), &p, event(TYPE_GEPUBLICEERD, &p.id))?];
        let item = Item {
            soort: "bericht",
            id: &p.id,
            deadline: Some(p.einddatum_handelingstermijn),
            gebeurtenis: "bericht-gepubliceerd",
        };
        out.extend(notificatie::opdrachten(&self.cfg, &self.voorkeuren, &p.identificatie, &item, &self.notificaties)?);
        Ok(out)
    }

    fn weigering(&self, b: &gzac::Bericht, r: &Afwijzing) -> anyhow::Result<Output> {
        tracing::warn!(bericht = %b.uuid, reden = r.code, "bericht not delivered to the portal");
        super::weigering_output(&self.weigeringen, WeigeringSoort::Bericht, &b.uuid, r)
    }
}

impl Route for BerichtRoute {
    type Input = gzac::Bericht;
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
            (self.notificaties.clone(), Notificatieopdracht::get_schema()),
            (self.weigeringen.clone(), Weigering::get_schema()),
        ]
    }
    fn changelog(&self) -> Option<&str> {
        Some(&self.changelog)
    }
    fn prepare(&mut self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        self.voorkeuren.wait_ready(shutdown)
    }
    fn decode(&self, codec: &Codec, rt: &Handle, bytes: &[u8]) -> Result<gzac::Bericht, CodecError> {
        decode_avro(codec, rt, bytes, &self.reader)
    }

    fn handle(&mut self, b: gzac::Bericht, ctx: &mut Ctx<'_, BerichtState>) -> anyhow::Result<Vec<Output>> {
        super::required("uuid", &b.uuid)?;
        if let Some(BerichtState::Gepubliceerd { .. }) = ctx.get(&b.uuid) {
            tracing::debug!(bericht = %b.uuid, "already published; replay ignored");
            return Ok(vec![]);
        }
        // What the portal cannot take is refused now, not at publication time.
        if let Err(r) = Self::translate(&self.berichten, &b, ctx.now) {
            return Ok(vec![self.weigering(&b, &r)?]);
        }
        if Self::due(&b) <= ctx.now {
            let out = self.publish(&b, ctx.now)?;
            ctx.put(&b.uuid, Some(BerichtState::Gepubliceerd { op: ctx.now }));
            Ok(out)
        } else {
            tracing::info!(bericht = %b.uuid, at = %Self::due(&b).rfc3339(), "bericht scheduled");
            let uuid = b.uuid.clone();
            ctx.put(&uuid, Some(BerichtState::Gepland { link: ctx.link.cloned(), bericht: Box::new(b) }));
            Ok(vec![])
        }
    }

    /// Publish what has come due; forget what was published longer than `state_retention` ago.
    fn tick(&mut self, ctx: &mut Ctx<'_, BerichtState>) -> anyhow::Result<Vec<Output>> {
        let now = ctx.now;
        let forget_before = Timestamp(now.0 - self.retention.as_millis() as i64);
        let mut out = Vec::new();
        let selected = ctx.state.select(|s| match s {
            BerichtState::Gepland { bericht, .. } => Self::due(bericht) <= now,
            BerichtState::Gepubliceerd { op } => op < &forget_before,
        });
        for (partition, key, state) in selected {
            match state {
                BerichtState::Gepland { bericht, link } => {
                    out.extend(self.publish(&bericht, now)?.into_iter().map(|o| o.caused_by(link.as_ref())));
                    ctx.state.put(partition, &key, Some(BerichtState::Gepubliceerd { op: now }));
                }
                BerichtState::Gepubliceerd { .. } => ctx.state.put(partition, &key, None),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{bericht, BSN};

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
