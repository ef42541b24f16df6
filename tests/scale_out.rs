//! Three bridge processes in one group, a rebalance mid-stream (one joins, one is killed), and
//! producers that disagree on partitioning: GZAC's taken written with librdkafka's default
//! partitioner (crc32), the portal's antwoorden with the Java client's (murmur2). Every antwoord
//! still meets its taak's state: exactly one forward per taak, one right terugmelding per antwoord.

mod common;

use common::{kill9, sigterm, spawn_bridge, World};
use gzac_portal_bridge::client;
use gzac_portal_bridge::model::common::{Terugmelding, TerugmeldingStatus};
use gzac_portal_bridge::tools::samples::{antwoord, taak, BSN, OTHER_BSN};
use std::collections::HashMap;
use std::time::Duration;

const N: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_a_rebalance_mid_stream_keep_state_and_joins_right() {
    let w = World::new("scale").await;
    for i in 0..N {
        w.send(
            "gzac.taken.v1",
            &format!("t-{i}"),
            &taak(&format!("t-{i}"), BSN, gzac_portal_bridge::model::Datum::vandaag().plus(30)),
        )
        .await;
    }
    let mut b0 = spawn_bridge(&w, "i0", &[]);
    let mut b1 = spawn_bridge(&w, "i1", &[]);
    w.read(&["portaal.taken.v1"], N, Duration::ZERO).await;

    let portal = client::producer(&w.cfg).unwrap();
    let murmur: rdkafka::producer::FutureProducer =
        w.cfg.client_config().set("partitioner", "murmur2_random").set("linger.ms", "5").create().unwrap();
    drop(portal);
    let topic = w.topic("portaal.taakantwoorden.v1");
    let id = w.schema_id("portaal.taakantwoorden.v1");
    let mut expected: HashMap<String, &str> = HashMap::new();
    let mut b2 = None;
    for i in 0..N {
        let t = format!("t-{i}");
        let mut batch = vec![];
        if i % 3 == 0 {
            batch.push((format!("wrong-{i}"), OTHER_BSN, "NIET_TOEGEWEZEN"));
        }
        batch.push((format!("right-{i}"), BSN, "Doorgestuurd"));
        if i % 3 == 1 {
            batch.push((format!("again-{i}"), BSN, "TAAK_AL_BEANTWOORD"));
        }
        for (aid, bsn, want) in batch {
            let bytes = client::frame(id, &antwoord(&aid, &t, bsn)).unwrap();
            client::send(&murmur, &topic, &t, &bytes, None).await.unwrap();
            expected.insert(aid, want);
        }
        if i == N / 3 {
            b2 = Some(spawn_bridge(&w, "i2", &[])); // joins: rebalance
        }
        if i == 2 * N / 3 {
            kill9(&mut b0); // dies: rebalance after its session times out
        }
    }
    let recs = w
        .read(&["portaal.terugmeldingen.v1", "gzac.taakantwoorden.v1"], expected.len() + N, Duration::from_secs(4))
        .await;
    assert!(sigterm(&mut b1).success());
    assert!(sigterm(b2.as_mut().unwrap()).success());

    let mut got: HashMap<String, String> = HashMap::new();
    let mut forwards: HashMap<String, usize> = HashMap::new();
    for r in &recs {
        if r.topic == w.topic("gzac.taakantwoorden.v1") {
            *forwards.entry(r.key_str().to_string()).or_default() += 1;
            continue;
        }
        let t: Terugmelding = w.decode(r).await;
        let why = match t.status {
            TerugmeldingStatus::Afgewezen => t.reden_code.unwrap_or_default(),
            s => format!("{s:?}"),
        };
        assert!(got.insert(t.referentie.clone(), why).is_none(), "two terugmeldingen for {}", t.referentie);
    }
    assert_eq!(forwards.len(), N, "every taak forwarded");
    assert!(forwards.values().all(|n| *n == 1), "a taak forwarded twice");
    let wrong: Vec<_> = expected.iter().filter(|(k, v)| got.get(*k).map(String::as_str) != Some(**v)).take(5).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} antwoorden judged wrongly, e.g. {wrong:?} (got {:?})",
        wrong.len(),
        expected.len(),
        wrong.iter().map(|(k, _)| got.get(*k)).collect::<Vec<_>>()
    );
    assert_eq!(got.len(), expected.len());

    // All three instances took part.
    for i in ["i0", "i1", "i2"] {
        let log = std::fs::read_to_string(std::env::temp_dir().join(format!("{}-{i}.log", w.cfg.group_id))).unwrap();
        assert!(log.contains("partitions assigned"), "instance {i} never got partitions");
    }
}
