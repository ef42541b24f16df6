//! Bericht (GZAC → portal): translate Open VTB's bericht to NL Portal's, publish it at its
//! `publicatiedatum` (not before; the schedule lives in the changelog and survives restarts), and
//! notify the ontvanger on each channel of their choice. A bericht is published and notified once:
//! its state says so, also after a replay from offset 0.

use super::notificatie::{self, Item};
use super::{derived_id, event, portaal_partij};
use crate::codec::{Codec, CodecError};
use crate::config::{Config, NotificatieConfig};
use crate::events::Link;
use crate::model::common::Notificatieopdracht;
use crate::model::{gzac, portaal, Timestamp};
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
    changelog: String,
    cfg: NotificatieConfig,
    voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>,
    reader: Schema,
    retention: std::time::Duration,
}

impl BerichtRoute {
    pub fn new(cfg: &Config, voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>) -> Self {
        BerichtRoute {
            input: cfg.topic(INPUT),
            output: cfg.topic(OUTPUT),
            notificaties: cfg.topic(notificatie::TOPIC),
            changelog: cfg.topic(CHANGELOG),
            cfg: cfg.notificaties.clone(),
            voorkeuren,
            reader: gzac::Bericht::get_schema(),
            retention: cfg.pipeline.state_retention,
        }
    }

    /// The portal's view of a bericht; its id derives from the GZAC uuid.
    pub fn translate(b: &gzac::Bericht) -> anyhow::Result<portaal::Bericht> {
        anyhow::ensure!(b.onderwerp.chars().count() <= 50, "onderwerp is longer than 50 characters");
        anyhow::ensure!(b.bericht_tekst.chars().count() <= 4000, "berichtTekst is longer than 4000 characters");
        b.publicatiedatum.checked("publicatiedatum")?;
        if let Some(d) = b.einddatum_handelingstermijn {
            d.checked("einddatumHandelingstermijn")?;
        }
        let p = portaal::Bericht {
            id: derived_id(&["bericht", &b.uuid]),
            identificatie: portaal_partij(b.ontvanger.soort, &b.ontvanger.waarde)?,
            onderwerp: b.onderwerp.clone(),
            bericht_tekst: b.bericht_tekst.clone(),
            bericht_type: b.bericht_type.clone(),
            bijlages: b.bijlagen.clone(),
            publicatiedatum: b.publicatiedatum,
            referentie: b.referentie.clone(),
            handelingsperspectief: b.handelingsperspectief.clone(),
            einddatum_handelingstermijn: b.einddatum_handelingstermijn,
            geopend: false,
        };
        // Bounded here, because a scheduled bericht is written by a timer, where no input is left
        // to dead-letter if its record turned out too large for the topic.
        let size = serde_json::to_vec(&p)?.len();
        anyhow::ensure!(
            size <= MAX_BERICHT_BYTES,
            "the portal bericht would be {size} bytes; at most {MAX_BERICHT_BYTES}"
        );
        Ok(p)
    }

    /// Publish to the portal and notify: the outputs of a bericht whose time has come.
    fn publish(&self, b: &gzac::Bericht) -> anyhow::Result<Vec<Output>> {
        let p = Self::translate(b)?;
        let mut out = vec![Output::new(&self.output, p.id.clone(), &p, event(TYPE_GEPUBLICEERD, &p.id))?];
        let item = Item {
            soort: "bericht",
            id: &p.id,
            deadline: p.einddatum_handelingstermijn.map(crate::model::Datum::in_amsterdam),
            gebeurtenis: "bericht-gepubliceerd",
        };
        out.extend(notificatie::opdrachten(&self.cfg, &self.voorkeuren, &p.identificatie, &item, &self.notificaties)?);
        Ok(out)
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
        Self::translate(&b)?; // bad data is refused now, not at publication time
        if b.publicatiedatum <= ctx.now {
            let out = self.publish(&b)?;
            ctx.put(&b.uuid, Some(BerichtState::Gepubliceerd { op: ctx.now }));
            Ok(out)
        } else {
            tracing::info!(bericht = %b.uuid, at = %b.publicatiedatum.rfc3339(), "bericht scheduled");
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
            BerichtState::Gepland { bericht, .. } => bericht.publicatiedatum <= now,
            BerichtState::Gepubliceerd { op } => op < &forget_before,
        });
        for (partition, key, state) in selected {
            match state {
                BerichtState::Gepland { bericht, link } => {
                    out.extend(self.publish(&bericht)?.into_iter().map(|o| o.caused_by(link.as_ref())));
                    ctx.state.put(partition, &key, Some(BerichtState::Gepubliceerd { op: now }));
                }
                BerichtState::Gepubliceerd { .. } => ctx.state.put(partition, &key, None),
            }
        }
        Ok(out)
    }
}
