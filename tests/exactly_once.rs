//! Exactly-once through crashes: 10,000 verzoeken, the bridge process killed with SIGKILL twice
//! mid-stream and restarted; a read_committed reader sees exactly one GZAC verzoek and one
//! terugmelding per input: no duplicate, no loss.

mod common;

use common::{kill9, spawn_bridge, World};
use gzac_portal_bridge::client;
use gzac_portal_bridge::routes::{derived_id, verzoek};
use gzac_portal_bridge::tools::samples;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 10_000;

/// Counts committed outputs as they appear, so the test can kill the bridge mid-stream.
fn progress(w: &World, stop: Arc<AtomicBool>) -> (Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let consumer: BaseConsumer = w
        .cfg
        .client_config()
        .set("group.id", format!("progress-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&w.topic(verzoek::OUTPUT)]).unwrap();
    let t = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (count, t)
}

fn wait_for(count: &AtomicUsize, at_least: usize, bridge: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while count.load(Ordering::SeqCst) < at_least {
        assert!(bridge.try_wait().unwrap().is_none(), "the bridge exited on its own");
        assert!(
            Instant::now() < deadline,
            "no progress to {at_least} within {timeout:?}: {}",
            count.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_twice_mid_stream_neither_duplicates_nor_loses() {
    let w = World::new("eos").await;
    let p = client::producer(&w.cfg).unwrap();
    let topic = w.topic(verzoek::INPUT);
    let id = w.verzoek_id();
    for i in 0..N {
        let key = format!("eos-{i}");
        let bytes = client::frame(id, &samples::verzoek(&key)).unwrap();
        loop {
            match p.send_result(rdkafka::producer::FutureRecord::to(&topic).key(&key).payload(&bytes)) {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    client::flush(&p).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (count, counter) = progress(&w, stop.clone());
    let minutes = Duration::from_secs(240);

    let mut bridge = spawn_bridge(&w, "i0", &[]);
    wait_for(&count, N / 5, &mut bridge, minutes);
    kill9(&mut bridge);
    let at_first_kill = count.load(Ordering::SeqCst);

    let mut bridge = spawn_bridge(&w, "i0", &[]);
    wait_for(&count, at_first_kill + N / 4, &mut bridge, minutes);
    kill9(&mut bridge);
    let at_second_kill = count.load(Ordering::SeqCst);
    assert!(at_second_kill < N, "the second kill came after the stream ended; it must be mid-stream");

    let mut bridge = spawn_bridge(&w, "i0", &[]);
    wait_for(&count, N, &mut bridge, minutes);
    stop.store(true, Ordering::SeqCst);
    counter.join().unwrap();

    // The final word: everything committed, read from the start, with time for any surplus.
    let recs = w.read_verzoek_outputs(2 * N, Duration::from_secs(120), Duration::from_secs(5)).await;
    unsafe { libc::kill(bridge.id() as i32, libc::SIGTERM) };
    let status = bridge.wait().unwrap();
    assert!(status.success(), "SIGTERM ends the bridge cleanly: {status}");

    let mut per_key: HashMap<(String, String), usize> = HashMap::new();
    for r in &recs {
        *per_key.entry((r.topic.clone(), r.key_str().to_string())).or_default() += 1;
    }
    let dupes: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dupes.is_empty(), "duplicates: {dupes:?}");
    let (out, tm) = (w.topic(verzoek::OUTPUT), w.topic(verzoek::TERUGMELDINGEN));
    let mut missing = Vec::new();
    for i in 0..N {
        let key = format!("eos-{i}");
        if !per_key.contains_key(&(out.clone(), derived_id(&["verzoek", &key])))
            || !per_key.contains_key(&(tm.clone(), key.clone()))
        {
            missing.push(key);
        }
    }
    assert!(missing.is_empty(), "{} inputs lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert_eq!(recs.len(), 2 * N, "one verzoek and one terugmelding per input, nothing else");

    // The committed offsets cover the whole input.
    let c: BaseConsumer = w.cfg.client_config().set("group.id", w.cfg.route_group("verzoek")).create().unwrap();
    let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for part in md.topics()[0].partitions() {
        tpl.add_partition(&topic, part.id());
    }
    let committed: i64 = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0))
        .sum();
    assert_eq!(committed, N as i64);
}
