//! Back in seconds after a crash: a bridge killed with SIGKILL and restarted under its instance
//! id gets its partitions back at once (static membership), and a second instance started with
//! the same id is refused with a message instead of fencing the first in a loop. Kept apart from
//! the 10,000-record run in exactly_once.rs, so that its load does not decide these timings.

mod common;

use common::{kill9, spawn_bridge, World};
use gzac_portal_bridge::client;
use gzac_portal_bridge::routes::{derived_id, verzoek};
use gzac_portal_bridge::tools::samples;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_restarted_under_its_id_is_back_within_ten_seconds() {
    let mut w = World::new("restart").await;
    // Kafka's default session timeout: without static membership the restarted instance would
    // wait that long for its dead predecessor's partitions.
    w.cfg.kafka_consumer.insert("session.timeout.ms".into(), "45000".into());
    let send = |from: usize| {
        let w = &w;
        async move {
            for i in from..from + 10 {
                let key = format!("rs-{i}");
                w.send(verzoek::INPUT, &key, &samples::verzoek(&key)).await;
            }
        }
    };
    let mut bridge = spawn_bridge(&w, "i0", &[]);
    send(0).await;
    w.read_verzoek_outputs(20, Duration::from_secs(60), Duration::ZERO).await;
    kill9(&mut bridge);

    send(10).await;
    let restarted = Instant::now();
    let mut bridge = spawn_bridge(&w, "i0", &[]);
    let want: Vec<String> = (10..20).map(|i| derived_id(&["verzoek", &format!("rs-{i}")])).collect();
    let (cfg, topics) = (w.cfg.clone(), vec![w.topic(verzoek::OUTPUT)]);
    tokio::task::spawn_blocking(move || {
        client::read_until(&cfg, &topics, Duration::from_secs(60), |recs| {
            want.iter().all(|k| recs.iter().any(|r| r.key_str() == k))
        })
    })
    .await
    .unwrap()
    .unwrap();
    let took = restarted.elapsed();
    assert!(common::sigterm(&mut bridge).success());
    assert!(took < Duration::from_secs(10), "output resumed {took:?} after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_id_is_refused_loudly() {
    let w = World::new("twins").await;
    let mut first = spawn_bridge(&w, "twin", &[]);
    w.send(verzoek::INPUT, "tw-1", &samples::verzoek("tw-1")).await;
    w.read_verzoek_outputs(2, Duration::from_secs(60), Duration::ZERO).await;
    let mut second = spawn_bridge(&w, "twin", &[]);
    let t0 = Instant::now();
    let stopped = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "two instances with one id fence each other without end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = first.kill();
    let _ = second.kill();
    let _ = (first.wait(), second.wait());
    assert!(!stopped.success(), "the refused instance exits with an error");
    let log = std::fs::read_to_string(common::bridge_log(&w, "twin")).unwrap();
    assert!(log.contains("instance_id"), "the message says what to fix");
}
