//! The scale bench: what held items cost (no broker).

use super::rss;
use crate::config::Config;
use crate::tools::samples;
use std::sync::Arc;
use std::time::Instant;

/// Put `n` open taken straight into the taak route's changelog (as a run would have left them,
/// unsealed), spread over its partitions: what a restart then restores.
pub(super) async fn hold(cfg: &Config, n: usize) -> anyhow::Result<()> {
    use crate::routes::taak::TaakState;
    use rdkafka::producer::{FutureRecord, Producer};
    let producer = crate::client::producer(cfg)?;
    let topic = cfg.topic(crate::topics::TAKEN_STATE);
    let partitions = crate::topology::Topology::load()?
        .wanted(&cfg.topic_prefix)?
        .into_iter()
        .find(|w| w.name == topic)
        .map_or(1, |w| w.partitions);
    let dag = crate::model::Datum::vandaag().plus(30);
    for i in 0..n {
        let uuid = crate::routes::derived_id(&["held", &i.to_string()]);
        let t = samples::taak(&uuid, samples::BSN, dag.plus((i % 300) as i32));
        let json = serde_json::to_vec(&TaakState::held(t, false, crate::model::Timestamp(0)))?;
        let partition = crate::partitioner::partition_for(uuid.as_bytes(), partitions);
        loop {
            let rec = FutureRecord::to(&topic).key(&uuid).payload(&json).partition(partition);
            match producer.send_result(rec) {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    }
    producer.flush(std::time::Duration::from_secs(120))?;
    println!("{n} open taken written to {topic}");
    Ok(())
}

/// N open taken held by the taak route's store (indexed by its schedule as in a run): what they
/// cost in memory, and what a tick costs with nothing due and with one due.
pub(super) fn scale(n: usize) -> anyhow::Result<()> {
    use crate::pipeline::{Ctx, Route};
    use crate::routes::taak::{TaakRoute, TaakState};
    let cfg = Config::defaults();
    let mut route = TaakRoute::new(&cfg, Arc::new(crate::table::GlobalTable::fixed(vec![])));
    let before = rss();
    let mut store = crate::state::Store::default().scheduled(route.schedule().expect("the taak route schedules"));
    let dag = crate::model::Datum::vandaag().plus(30);
    let mut json_bytes = 0;
    for i in 0..n {
        let t = samples::taak(&format!("{i:08}-8a4b-4c5d-9e6f-7a8b9c0d1e21"), samples::BSN, dag.plus((i % 300) as i32));
        let s = TaakState::held(t, false, crate::model::Timestamp(0));
        if i == 0 {
            json_bytes = serde_json::to_vec(&s)?.len();
        }
        store.put((i % 6) as i32, &s.taak.uuid.clone(), Some(s));
        if i % 10_000 == 0 {
            store.committed(); // as after each transaction: the undo log and pending changes go
        }
    }
    store.committed();
    let held = rss().saturating_sub(before);
    let now = crate::model::Timestamp::now();
    let ticks = 1000;
    let t0 = Instant::now();
    for _ in 0..ticks {
        let mut ctx = Ctx { now, partition: -1, state: &mut store, link: None };
        anyhow::ensure!(route.tick(&mut ctx)?.is_empty(), "nothing is due");
    }
    let idle = t0.elapsed() / ticks;
    // The first of the 300 last days passes: the tick that expires the taken of that day.
    let mut ctx = Ctx { now: crate::model::Timestamp(dag.einde().0 + 1), partition: -1, state: &mut store, link: None };
    let t1 = Instant::now();
    let fired = route.tick(&mut ctx)?.len();
    let due = t1.elapsed();
    println!(
        "held {n:>9}: {:>7.1} MiB ({:>5.0} B each; one as JSON {json_bytes} B); a tick with nothing due {:>9.2?}; \
         the tick that expires the {} taken of one day ({fired} records out) {:>9.2?}",
        held as f64 / (1 << 20) as f64,
        held as f64 / n.max(1) as f64,
        idle,
        n.div_ceil(300),
        due
    );
    Ok(())
}
