//! What each benched route is made of in the bridge (its stages, in order), what its inputs look
//! like, and the passthrough chain that stands beside it.

use crate::codec::CodecError;
use crate::config::Config;
use crate::events::Event;
use crate::model::common::Kanaal;
use crate::model::Datum;
use crate::pipeline::{self, Ctx, Decoder, Output, Payload, Plumbing, Route, RouteError, Stats};
use crate::routes::bericht::{self, BerichtRoute};
use crate::routes::bezorging::BezorgingRoute;
use crate::routes::taak::{self, TaakRoute};
use crate::routes::verzoek::VerzoekRoute;
use crate::routes::zaakverzoek::ZaakVerzoekRoute;
use crate::routes::{derived_id, partij_key};
use crate::table::GlobalTable;
use crate::tools::samples::{self, BSN};
use crate::topics::*;
use crate::topology::Wanted;
use apache_avro::Schema;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Verzoek,
    Zaakverzoek,
    Bericht,
    Taak,
    Antwoord,
}

/// The zaak every benched zaakverzoek is about (its initiator is `BSN`).
const ZAAK: &str = "5d9c7b1a-3e2f-4a6b-8c9d-0e1f2a3b4c5d";

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Verzoek, Kind::Zaakverzoek, Kind::Bericht, Kind::Taak, Kind::Antwoord];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Verzoek => "verzoek",
            Kind::Zaakverzoek => "zaakverzoek",
            Kind::Bericht => "bericht (+notificatie)",
            Kind::Taak => "taak (+notificatie)",
            Kind::Antwoord => "antwoord",
        }
    }

    /// The input topic of each stage, in order: the first is where the portal or GZAC writes.
    pub fn stage_inputs(self) -> &'static [&'static str] {
        match self {
            Kind::Verzoek => &[PORTAAL_VERZOEKEN],
            Kind::Zaakverzoek => &[PORTAAL_ZAAKVERZOEKEN],
            Kind::Bericht => &[GZAC_BERICHTEN, BERICHTEN_REPARTITION, NOTIFICATIES_REPARTITION],
            Kind::Taak => &[GZAC_TAKEN, TAKEN_REPARTITION, NOTIFICATIES_REPARTITION],
            Kind::Antwoord => &[PORTAAL_TAAKANTWOORDEN, TAKEN_REPARTITION],
        }
    }

    /// Where an input's journey ends: what the portal, GZAC or NotifyNL reads.
    pub fn finals(self) -> &'static [&'static str] {
        match self {
            Kind::Verzoek => &[GZAC_VERZOEKEN, PORTAAL_TERUGMELDINGEN],
            Kind::Zaakverzoek => &[GZAC_ZAAKVERZOEKEN, PORTAAL_TERUGMELDINGEN],
            Kind::Bericht => &[PORTAAL_BERICHTEN, NOTIFICATIES],
            Kind::Taak => &[PORTAAL_TAKEN, NOTIFICATIES],
            Kind::Antwoord => &[GZAC_TAAKANTWOORDEN, PORTAAL_TAKEN, PORTAAL_TERUGMELDINGEN],
        }
    }

    /// The `i`-th input of phase `tag`: its key and value, framed with the registered schema id.
    pub fn input(self, tag: &str, i: usize, today: Datum, id: u32) -> anyhow::Result<(String, Vec<u8>)> {
        let key = format!("bench-{tag}-{i}");
        let uuid = derived_id(&["bench", tag, &i.to_string()]);
        Ok(match self {
            Kind::Verzoek => (key.clone(), crate::client::frame(id, &samples::verzoek(&key))?),
            Kind::Zaakverzoek => (key.clone(), crate::client::frame(id, &samples::zaakverzoek(&key, ZAAK, BSN))?),
            Kind::Bericht => (uuid.clone(), crate::client::frame(id, &samples::bericht(&uuid, BSN))?),
            Kind::Taak => (uuid.clone(), crate::client::frame(id, &samples::taak(&uuid, BSN, today.plus(30)))?),
            Kind::Antwoord => (uuid.clone(), crate::client::frame(id, &samples::antwoord(&key, &uuid, BSN))?),
        })
    }

    /// The route's stages, as the bridge runs them (the reference tables fixed in memory: a klant
    /// who chose email, the zaak whose initiator sends the zaakverzoeken).
    pub fn start(self, stages: &mut Stages, cfg: &Config) {
        let voorkeur = samples::klantvoorkeur(BSN, vec![Kanaal::Email]);
        let voorkeuren = Arc::new(GlobalTable::fixed(vec![(partij_key(&voorkeur.partij), voorkeur)]));
        match self {
            Kind::Verzoek => stages.spawn(VerzoekRoute::new(cfg)),
            Kind::Zaakverzoek => {
                let zaken = Arc::new(GlobalTable::fixed(vec![(ZAAK.to_string(), samples::zaak(ZAAK, BSN))]));
                stages.spawn(ZaakVerzoekRoute::new(cfg, zaken))
            }
            Kind::Bericht => {
                stages.spawn(bericht::herverdeling(cfg));
                stages.spawn(BerichtRoute::new(cfg, voorkeuren));
                stages.spawn(BezorgingRoute::new(cfg));
            }
            Kind::Taak => {
                stages.spawn(taak::herverdeling(cfg));
                stages.spawn(TaakRoute::new(cfg, voorkeuren));
                stages.spawn(BezorgingRoute::new(cfg));
            }
            Kind::Antwoord => {
                stages.spawn(taak::antwoord_herverdeling(cfg));
                stages.spawn(TaakRoute::new(cfg, voorkeuren));
            }
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Kind::Verzoek => "verzoek",
            Kind::Zaakverzoek => "zaakverzoek",
            Kind::Bericht => "bericht",
            Kind::Taak => "taak",
            Kind::Antwoord => "antwoord",
        }
    }

    /// The passthrough chain's topics (unprefixed): one input per stage, then the sink.
    pub fn passthrough_inputs(self) -> Vec<String> {
        (0..self.stage_inputs().len()).map(|i| format!("bench.passthrough-{}.{i}", self.slug())).collect()
    }
    pub fn passthrough_sink(self) -> String {
        format!("bench.passthrough-{}.sink", self.slug())
    }

    /// The passthrough chain: stage `i` writes `copies[i]` records per input, the first to the
    /// next stage (if any), the rest to the sink.
    pub fn start_passthrough(self, stages: &mut Stages, cfg: &Config, copies: &[usize]) {
        let inputs = self.passthrough_inputs();
        for (i, copies) in copies.iter().enumerate() {
            let name: &'static str = Box::leak(format!("pt-{}-{i}", self.slug()).into_boxed_str());
            stages.spawn(Passthrough {
                name,
                input: cfg.topic(&inputs[i]),
                next: inputs.get(i + 1).map(|t| cfg.topic(t)),
                sink: cfg.topic(&self.passthrough_sink()),
                copies: *copies,
                seq: 0,
            });
        }
    }
}

/// The passthrough chain's topics, each with the partitions (and settings) of the route's topic
/// it stands for: a stage's input, and the first final topic for the sink.
pub fn passthrough_topics(cfg: &Config, kind: Kind, wanted: &[Wanted]) -> Vec<Wanted> {
    let like = |topic: &str, name: String| {
        let t = cfg.topic(topic);
        let w = wanted.iter().find(|w| w.name == t).expect("a contract topic");
        Wanted { name: cfg.topic(&name), ..w.clone() }
    };
    let mut out: Vec<Wanted> =
        kind.stage_inputs().iter().zip(kind.passthrough_inputs()).map(|(t, name)| like(t, name)).collect();
    out.push(like(kind.finals()[0], kind.passthrough_sink()));
    out
}

/// Copies each input's bytes, untouched: one copy to the next stage, the rest to the sink.
pub struct Passthrough {
    name: &'static str,
    input: String,
    next: Option<String>,
    sink: String,
    copies: usize,
    seq: u64,
}

impl Route for Passthrough {
    type Input = Vec<u8>;
    type State = ();
    fn name(&self) -> &'static str {
        self.name
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn outputs(&self) -> Vec<(String, Schema)> {
        vec![]
    }
    fn decode(&self, _: &Decoder<'_>, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
    fn handle(&mut self, input: Vec<u8>, _: &mut Ctx<'_, ()>) -> Result<Vec<Output>, RouteError> {
        let mut out = Vec::with_capacity(self.copies);
        for copy in 0..self.copies {
            self.seq += 1;
            let n = self.seq.to_string();
            let topic = match (&self.next, copy) {
                (Some(next), 0) => next.clone(),
                _ => self.sink.clone(),
            };
            let event = Event { id: n.clone(), kind: "bench.passthrough", subject: n.clone(), ..Event::default() };
            out.push(Output { topic, key: n, value: Payload::Raw(input.clone()), event, partition: None, link: None });
        }
        Ok(out)
    }
}

/// Stages running, each on its own thread with the generic pipeline, as `bridge::start` runs them.
pub struct Stages {
    cfg: Config,
    plumbing: Arc<Plumbing>,
    shutdown: Arc<AtomicBool>,
    running: Vec<(JoinHandle<anyhow::Result<()>>, Arc<Stats>)>,
}

impl Stages {
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        Ok(Stages { cfg: cfg.clone(), plumbing: Plumbing::new(cfg)?, shutdown: Arc::default(), running: vec![] })
    }

    pub fn spawn<R: Route>(&mut self, route: R) {
        let (cfg, shutdown, plumbing) = (self.cfg.clone(), self.shutdown.clone(), self.plumbing.clone());
        let rt = tokio::runtime::Handle::current();
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let handle = std::thread::Builder::new()
            .name(route.name().to_string())
            .stack_size(crate::codec::STACK_BYTES)
            .spawn(move || pipeline::run(route, &cfg, rt, shutdown, s, plumbing))
            .expect("spawn a stage");
        self.running.push((handle, stats));
    }

    /// Each stage's records out (outputs and changelog records) per input committed so far.
    pub fn copies(&self) -> Vec<f64> {
        self.running
            .iter()
            .map(|(_, s)| {
                let out = s.outputs.get() + s.state_writes.load(Ordering::Relaxed);
                out as f64 / s.records.load(Ordering::Relaxed).max(1) as f64
            })
            .collect()
    }

    pub fn stop(self) -> anyhow::Result<()> {
        self.shutdown.store(true, Ordering::SeqCst);
        for (handle, _) in self.running {
            handle.join().map_err(|_| anyhow::anyhow!("a stage panicked"))??;
        }
        Ok(())
    }
}
