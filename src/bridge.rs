//! Wiring: which routes run, each on its own thread with the generic pipeline, until shutdown.

use crate::config::{Config, Gemeente};
use crate::model::{gzac, portaal};
use crate::pipeline::{self, Plumbing, Served, Stats};
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

/// One route for every municipality, on one thread with one consumer and one producer.
fn spawn<R: pipeline::Route>(
    served: Vec<Served<R>>,
    cfg: &Config,
    shutdown: &Arc<AtomicBool>,
    plumbing: &Arc<Plumbing>,
) -> Started {
    let (cfg, shutdown, rt, plumbing) = (cfg.clone(), shutdown.clone(), Handle::current(), plumbing.clone());
    let name = served[0].route.name();
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    let handle = std::thread::Builder::new()
        .name(format!("route-{name}"))
        .stack_size(crate::codec::STACK_BYTES)
        .spawn(move || {
            let result = pipeline::run_served(served, &cfg, rt, shutdown, s.clone(), plumbing);
            s.stopped.store(true, Ordering::SeqCst);
            if let Err(e) = &result {
                tracing::error!(route = name, error = %format!("{e:#}"), "route failed");
            }
            result
        })
        .expect("spawn route thread");
    (name, handle, stats)
}

/// The route `make` builds from each municipality's configuration (and its index).
fn each<R: pipeline::Route>(gemeenten: &[Gemeente], make: impl Fn(usize, &Config) -> R) -> Vec<Served<R>> {
    gemeenten.iter().enumerate().map(|(i, g)| Served::new(&g.cfg, make(i, &g.cfg))).collect()
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
    let gemeenten = cfg.gemeenten()?;
    let ids: Vec<&str> = gemeenten.iter().map(|g| g.id.as_str()).collect();
    tracing::info!(gemeenten = ?ids, "serving");
    let shutdown = Arc::new(AtomicBool::new(false));
    let rt = Handle::current();
    // Each municipality's tables, by its index; one reader per table for all of them.
    let topics_of = |name: &str| gemeenten.iter().map(|g| g.cfg.topic(name)).collect::<Vec<_>>();
    let voorkeuren = GlobalTable::start(
        cfg,
        &topics_of(crate::topics::PORTAAL_KLANTVOORKEUREN),
        portaal::Klantvoorkeur::get_schema(),
        |v: &portaal::Klantvoorkeur| partij_key(&v.partij),
        rt.clone(),
    )?;
    let zaken = GlobalTable::start(
        cfg,
        &topics_of(zaakverzoek::ZAKEN),
        gzac::Zaak::get_schema(),
        |z: &gzac::Zaak| z.uuid.clone(),
        rt,
    )?;
    let table_name = |name: &str| match gemeenten.len() {
        1 => format!("table:{}", gemeenten[0].cfg.topic(name)),
        _ => format!("table:{name}"),
    };
    let tables = [
        (table_name(crate::topics::PORTAAL_KLANTVOORKEUREN), voorkeuren[0].stats()),
        (table_name(zaakverzoek::ZAKEN), zaken[0].stats()),
    ];
    let g = &gemeenten;
    let started = vec![
        spawn(each(g, |_, c| VerzoekRoute::new(c)), cfg, &shutdown, &plumbing),
        spawn(each(g, |i, c| ZaakVerzoekRoute::new(c, zaken[i].clone())), cfg, &shutdown, &plumbing),
        spawn(each(g, |_, c| bericht::herverdeling(c)), cfg, &shutdown, &plumbing),
        spawn(each(g, |_, c| bericht::geopend_herverdeling(c)), cfg, &shutdown, &plumbing),
        spawn(each(g, |i, c| BerichtRoute::new(c, voorkeuren[i].clone())), cfg, &shutdown, &plumbing),
        spawn(each(g, |_, c| taak::herverdeling(c)), cfg, &shutdown, &plumbing),
        spawn(each(g, |_, c| taak::antwoord_herverdeling(c)), cfg, &shutdown, &plumbing),
        spawn(each(g, |i, c| TaakRoute::new(c, voorkeuren[i].clone())), cfg, &shutdown, &plumbing),
        spawn(each(g, |_, c| BezorgingRoute::new(c)), cfg, &shutdown, &plumbing),
    ];
    let mut stats: Vec<(String, Arc<Stats>)> = started.iter().map(|(n, _, s)| (n.to_string(), s.clone())).collect();
    stats.extend(tables);
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
