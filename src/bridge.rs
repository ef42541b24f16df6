//! Wiring: which routes run, each on its own thread with the generic pipeline, until shutdown.

use crate::config::Config;
use crate::model::{gzac, portaal};
use crate::pipeline::{self, Plumbing, Stats};
use crate::routes::bericht::{self, BerichtRoute};
use crate::routes::bezorging::BezorgingRoute;
use crate::routes::partij_key;
use crate::routes::taak::{self, TaakRoute};
use crate::routes::verzoek::VerzoekRoute;
use crate::routes::zaakverzoek::{self, ZaakVerzoekRoute};
use crate::table::GlobalTable;
use apache_avro::AvroSchema;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::runtime::Handle;

/// Handles to the running routes.
pub struct Running {
    pub shutdown: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    /// Each route's and table's progress and counters (served by `health`).
    pub stats: crate::health::Components,
}

type Started = (&'static str, JoinHandle<anyhow::Result<()>>, Arc<Stats>);

fn spawn<R: pipeline::Route>(route: R, cfg: &Config, shutdown: &Arc<AtomicBool>, plumbing: &Arc<Plumbing>) -> Started {
    let (cfg, shutdown, rt, plumbing) = (cfg.clone(), shutdown.clone(), Handle::current(), plumbing.clone());
    let name = route.name();
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    let handle = std::thread::Builder::new()
        .name(format!("route-{name}"))
        .stack_size(crate::codec::STACK_BYTES)
        .spawn(move || {
            let result = pipeline::run(route, &cfg, rt, shutdown, s.clone(), plumbing);
            s.stopped.store(true, Ordering::SeqCst);
            if let Err(e) = &result {
                tracing::error!(route = name, error = %format!("{e:#}"), "route failed");
            }
            result
        })
        .expect("spawn route thread");
    (name, handle, stats)
}

/// Start every route. Call from inside a multi-threaded tokio runtime. Routes that join with a
/// reference table wait (in `prepare`) until it has been read before they consume anything.
pub fn start(cfg: &Config) -> anyhow::Result<Running> {
    // A state key that is missing or malformed stops the start, not a route later.
    let plumbing = Plumbing::new(cfg)?;
    if !plumbing.sealed() {
        anyhow::ensure!(
            cfg.state_encryption.unsealed,
            "state_encryption.key_id is not set: the changelogs would hold bericht text and form data in the clear. \
             Set a key (state_encryption.key_id and keys_file, or GZAC_BRIDGE_STATE_KEY_ID and GZAC_BRIDGE_STATE_KEYS), \
             or say state_encryption.unsealed: true (GZAC_BRIDGE_STATE_UNSEALED=true) to run without one"
        );
        tracing::warn!("state_encryption.unsealed: the changelogs hold bericht text and form data unencrypted");
    }
    if cfg.pipeline.clock.simulated() {
        let now = cfg.pipeline.clock.now().rfc3339();
        tracing::warn!(clock = %now, "the bridge runs on a simulated clock (pipeline.clock_start)");
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    let rt = Handle::current();
    let voorkeuren = Arc::new(GlobalTable::start(
        cfg,
        cfg.topic(crate::topics::PORTAAL_KLANTVOORKEUREN),
        portaal::Klantvoorkeur::get_schema(),
        |v: &portaal::Klantvoorkeur| partij_key(&v.partij),
        rt.clone(),
    )?);
    let zaken = Arc::new(GlobalTable::start(
        cfg,
        cfg.topic(zaakverzoek::ZAKEN),
        gzac::Zaak::get_schema(),
        |z: &gzac::Zaak| z.uuid.clone(),
        rt,
    )?);
    let (voorkeuren_stats, zaken_stats) = (voorkeuren.stats(), zaken.stats());
    let started = vec![
        spawn(VerzoekRoute::new(cfg), cfg, &shutdown, &plumbing),
        spawn(ZaakVerzoekRoute::new(cfg, zaken), cfg, &shutdown, &plumbing),
        spawn(bericht::herverdeling(cfg), cfg, &shutdown, &plumbing),
        spawn(bericht::geopend_herverdeling(cfg), cfg, &shutdown, &plumbing),
        spawn(BerichtRoute::new(cfg, voorkeuren.clone()), cfg, &shutdown, &plumbing),
        spawn(taak::herverdeling(cfg), cfg, &shutdown, &plumbing),
        spawn(taak::antwoord_herverdeling(cfg), cfg, &shutdown, &plumbing),
        spawn(TaakRoute::new(cfg, voorkeuren), cfg, &shutdown, &plumbing),
        spawn(BezorgingRoute::new(cfg), cfg, &shutdown, &plumbing),
    ];
    let mut stats: Vec<(String, Arc<Stats>)> = started.iter().map(|(n, _, s)| (n.to_string(), s.clone())).collect();
    stats.push((format!("table:{}", cfg.topic(crate::topics::PORTAAL_KLANTVOORKEUREN)), voorkeuren_stats));
    stats.push((format!("table:{}", cfg.topic(zaakverzoek::ZAKEN)), zaken_stats));
    let stats = Arc::new(stats);
    let threads = started.into_iter().map(|(n, t, _)| (n, t)).collect();
    Ok(Running { shutdown, threads, stats })
}

impl Running {
    /// True while every route is still running.
    pub fn healthy(&self) -> bool {
        self.threads.iter().all(|(_, t)| !t.is_finished())
    }

    /// Ask every route to finish its open transaction and leave the group, and wait at most
    /// `bound`. An error names each route that failed or did not stop in time.
    pub async fn stop(self, bound: std::time::Duration) -> anyhow::Result<()> {
        self.shutdown.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + bound;
        let mut problems = Vec::new();
        for (name, t) in self.threads {
            while !t.is_finished() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if !t.is_finished() {
                problems.push(format!("route {name} did not stop within {bound:?}"));
                continue;
            }
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("route {name}: {e:#}")),
                Err(_) => problems.push(format!("route {name} panicked")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(problems.join("; "))
        }
    }

    /// Wait until a route stops on its own (an error) or `shutdown` is set from outside.
    pub async fn wait_for_failure(&self) {
        while self.healthy() && !self.shutdown.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_state_key_it_runs_only_when_told_to() {
        let err = match start(&Config::defaults()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("started without a state key"),
        };
        assert!(err.contains("state_encryption.unsealed: true"), "{err}");
    }
}
