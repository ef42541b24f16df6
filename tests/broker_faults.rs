//! A real broker killed (SIGKILL) and restarted on its own data, twice, while 10,000 verzoeken
//! stream in: down 60 s and then 150 s, far longer than the bridge's transaction timeout and the
//! group's session timeout (its static members are fenced when they come back). The process must
//! stay up, resume by itself within 30 s of the broker answering, produce every effect exactly
//! once, keep its reference tables following, and say so on /ready and /health.
//!
//! This file starts its own broker (ports 19192/19193, data in target/kafka-faults) with the
//! project's script, so killing it leaves the other tests' broker alone.

mod common;

use common::{follow, sigterm, spawn_bridge_with, status, wait_for, World};
use gzac_portal_bridge::routes::{derived_id, verzoek, zaakverzoek};
use gzac_portal_bridge::tools::samples;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PORT: &str = "19192";

fn kafka(cmd: &str) {
    common::kafka_script(cmd, 19192, "kafka-faults");
}

/// The fault broker; stopped when dropped, also when the test fails.
struct FaultBroker;
impl FaultBroker {
    fn start() -> Self {
        kafka("start");
        FaultBroker
    }
}
impl Drop for FaultBroker {
    fn drop(&mut self) {
        kafka("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_broker_restarts_mid_stream_resume_by_themselves_exactly_once() {
    let _broker = FaultBroker::start();
    let w = World::on("bounce", format!("127.0.0.1:{PORT}")).await;
    w.send(zaakverzoek::ZAKEN, "z-voor", &samples::zaak("z-voor", samples::BSN)).await;

    // Down 60 s and 150 s: longer than the transaction timeout (10 s), the session timeout (6 s)
    // and Kafka's default session timeout (45 s).
    let config = w.config_file("pipeline:\n  transaction_timeout: 10s\n  stall_timeout: 2m\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let health = format!("127.0.0.1:{port}");
    let mut bridge = spawn_bridge_with(
        &w,
        "i0",
        &["--config", config.to_str().unwrap()],
        &[("GZAC_BRIDGE_HEALTH", &health), ("RUST_LOG", "info,librdkafka=error")],
    );
    let ready = format!("http://{health}/ready");
    let t0 = Instant::now();
    while status(&ready).await != 200 {
        assert!(t0.elapsed() < Duration::from_secs(90), "the bridge never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (out, out_task) = follow(&w, &[verzoek::OUTPUT], stop.clone());
    let (answers, answers_task) = follow(&w, &[verzoek::TERUGMELDINGEN], stop.clone());
    let (dead, dead_task) = follow(&w, &["portaal.verzoeken.v1.dlq"], stop.clone());

    // The portal: 10,000 verzoeken at about 200/s; its producer holds them while the broker is away.
    const N: usize = 10_000;
    let (producer, id, topic) = (w.producer.clone(), w.verzoek_id(), w.topic(verzoek::INPUT));
    let feeder = tokio::spawn(async move {
        for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
            common::send_verzoeken(&producer, &topic, id, chunk.iter().map(|i| format!("b-{i}"))).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });

    let mut saw_not_ready = false;
    for (round, before, outage) in [(1, 1_500, 60), (2, 5_000, 150)] {
        wait_for("output before the restart", Duration::from_secs(180), || out.lock().unwrap().total >= before).await;
        kafka("kill");
        let down = Instant::now();
        while down.elapsed() < Duration::from_secs(outage) {
            saw_not_ready |= status(&ready).await == 503;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let at_restart = out.lock().unwrap().total;
        kafka("resume"); // returns once the broker answers
        let resumed = wait_for(&format!("output after restart {round}"), Duration::from_secs(30), || {
            out.lock().unwrap().total > at_restart
        })
        .await;
        eprintln!("restart {round} after {outage} s down: output resumed {resumed:?} after the broker answered");
        assert!(bridge.try_wait().unwrap().is_none(), "the bridge process outlived a {outage} s outage");
    }
    assert!(saw_not_ready, "/ready said 503 while the broker was down");

    // The zaken table still follows: a zaak created after the restarts is found.
    w.send(zaakverzoek::ZAKEN, "z-na", &samples::zaak("z-na", samples::BSN)).await;
    let rows = format!("gzac_bridge_records_total{{component=\"table:{}\"}} 2", w.topic(zaakverzoek::ZAKEN));
    let metrics = format!("http://{health}/metrics");
    let t0 = Instant::now();
    while !reqwest::get(&metrics).await.unwrap().text().await.unwrap().contains(&rows) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the zaken table never read the new zaak");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    w.send(zaakverzoek::INPUT, "zv-na", &samples::zaakverzoek("zv-na", "z-na", samples::BSN)).await;
    let forwarded = w.read(&[zaakverzoek::OUTPUT], 1, Duration::ZERO).await;
    assert_eq!(forwarded.len(), 1, "a zaakverzoek on a zaak created after the restarts is forwarded");

    feeder.await.unwrap();
    wait_for("every verzoek forwarded", Duration::from_secs(180), || out.lock().unwrap().per_key.len() >= N).await;
    wait_for("every terugmelding", Duration::from_secs(60), || answers.lock().unwrap().per_key.len() > N).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a duplicate would show up here
    stop.store(true, Ordering::SeqCst);
    for t in [out_task, answers_task, dead_task] {
        t.await.unwrap();
    }
    {
        let out = out.lock().unwrap();
        let expected: Vec<String> = (0..N).map(|i| derived_id(&["verzoek", &format!("b-{i}")])).collect();
        let missing = expected.iter().filter(|k| !out.per_key.contains_key(*k)).count();
        let twice: Vec<_> = out.per_key.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert_eq!(missing, 0, "verzoeken lost");
        assert!(twice.is_empty(), "verzoeken forwarded twice: {twice:?}");
        assert_eq!(out.total, N);
        assert_eq!(answers.lock().unwrap().total, N + 1, "one terugmelding per input");
        assert_eq!(dead.lock().unwrap().total, 0, "a broker outage is not bad data");
    }

    assert_eq!(status(&format!("http://{health}/health")).await, 200, "healthy again");
    assert!(sigterm(&mut bridge).success());
    let log = std::fs::read_to_string(common::bridge_log(&w, "i0")).unwrap();
    assert!(!log.contains("global table stopped"), "a table stopped following");
}
