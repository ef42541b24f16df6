//! Day two without an operator, on the real broker: a restart under the same instance id with
//! other topics consumes the new ones (not the stale assignment of the old), and every input sent
//! again — byte-identical, after the bridge acted on it and a SIGKILL — produces nothing a first
//! copy did not.

mod common;

use common::{kill9, sigterm, spawn_bridge, World};
use gzac_portal_bridge::client::{self, Received};
use gzac_portal_bridge::model::portaal;
use gzac_portal_bridge::routes::{bericht, taak, verzoek, zaakverzoek};
use gzac_portal_bridge::tools::samples::{self, BSN, OTHER_BSN};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The group id pinned by the operator, so that only the bridge's own check of its assignment
/// (and not the prefix in the default group id) can make the second start consume its topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_the_same_instance_id_with_other_topics_consumes_the_new_ones() {
    let mut old = World::new("stale-a").await;
    let mut new = World::new("stale-b").await;
    new.cfg.group_id = old.cfg.group_id.clone();
    // A session long enough that the restart comes back within it: the static member is handed
    // its old assignment without a rebalance (KIP-345).
    for w in [&mut old, &mut new] {
        w.cfg.kafka_consumer.insert("session.timeout.ms".into(), "45000".into());
    }
    let mut bridge = spawn_bridge(&old, "i0", &[]);
    old.send(verzoek::INPUT, "old-1", &samples::verzoek("old-1")).await;
    old.read_verzoek_outputs(2, Duration::from_secs(90), Duration::ZERO).await;
    assert!(sigterm(&mut bridge).success());

    let mut bridge = spawn_bridge(&new, "i0", &[]);
    for i in 0..5 {
        let key = format!("new-{i}");
        new.send(verzoek::INPUT, &key, &samples::verzoek(&key)).await;
    }
    let out = new.read_verzoek_outputs(10, Duration::from_secs(90), Duration::ZERO).await;
    assert_eq!(out.len(), 10, "every verzoek on the new topics forwarded and answered");
    assert!(bridge.try_wait().unwrap().is_none(), "the bridge is still running");
    assert!(sigterm(&mut bridge).success());
}

/// Every output record per topic: key → the ce_ids it came with, and how many records.
type Snapshot = BTreeMap<String, BTreeMap<String, (BTreeSet<String>, usize)>>;

fn snapshot(w: &World, records: &[Received]) -> Snapshot {
    let mut s = Snapshot::new();
    for r in records {
        let topic = r.topic.strip_prefix(&w.cfg.topic_prefix).unwrap_or(&r.topic).to_string();
        let e = s.entry(topic).or_default().entry(r.key_str().to_string()).or_default();
        e.0.insert(r.header("ce_id").unwrap_or("").to_string());
        e.1 += 1;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_sent_again_after_a_sigkill_produces_nothing_new() {
    let w = World::new("redelivery").await;
    let outputs: Vec<String> = [
        verzoek::OUTPUT,
        zaakverzoek::OUTPUT,
        verzoek::TERUGMELDINGEN,
        bericht::OUTPUT,
        bericht::GZAC_GEOPEND,
        taak::PORTAAL_TAKEN,
        taak::GZAC_ANTWOORDEN,
        "gzac.weigeringen.v1",
        "gzac.niet-bereikt.v1",
        "notificaties.opdrachten.v1",
        "portaal.verzoeken.v1.dlq",
        "portaal.zaakverzoeken.v1.dlq",
        "gzac.taken.v1.dlq",
        "portaal.taakantwoorden.v1.dlq",
        "gzac.berichten.v1.dlq",
        "portaal.berichten-geopend.v1.dlq",
    ]
    .iter()
    .map(|t| w.topic(t))
    .collect();
    let read = |n: usize| {
        let (cfg, topics) = (w.cfg.clone(), outputs.clone());
        tokio::task::spawn_blocking(move || {
            client::read_n(&cfg, &topics, n, Duration::from_secs(90), Duration::from_secs(8)).unwrap()
        })
    };

    w.send(zaakverzoek::ZAKEN, "z-1", &samples::zaak("z-1", BSN)).await;
    w.send(
        portaal_voorkeuren(),
        BSN,
        &samples::klantvoorkeur(BSN, vec![gzac_portal_bridge::model::common::Kanaal::Email]),
    )
    .await;
    let open = samples::taak("t-open", BSN, w.today().plus(30));
    let verlopen = samples::taak("t-verlopen", BSN, w.today().plus(-1));
    let opening = portaal::BerichtGeopend {
        id: "o-1".into(),
        bericht_id: "b-1".into(),
        geopend_op: gzac_portal_bridge::model::Timestamp::parse("2026-12-01T10:00:00+01:00").unwrap(),
        door: portaal::Partij { soort: portaal::PartijType::Bsn, value: BSN.into() },
    };
    // Each input once, as framed bytes, so the second copy is byte-identical.
    let frame = |topic: &str, record: &dyn Fn(u32) -> Vec<u8>| (topic.to_string(), record(w.schema_id(topic)));
    let inputs: Vec<(String, String, Vec<u8>)> = vec![
        ("v-1", frame(verzoek::INPUT, &|id| client::frame(id, &samples::verzoek("v-1")).unwrap())),
        (
            "v-bad",
            frame(verzoek::INPUT, &|id| {
                client::frame(id, &portaal::Verzoek { verzoektype: "onbekend".into(), ..samples::verzoek("v-bad") })
                    .unwrap()
            }),
        ),
        ("z-1", frame(zaakverzoek::INPUT, &|id| client::frame(id, &samples::zaakverzoek("zv-1", "z-1", BSN)).unwrap())),
        (
            "z-1",
            frame(zaakverzoek::INPUT, &|id| {
                client::frame(id, &samples::zaakverzoek("zv-2", "z-1", OTHER_BSN)).unwrap()
            }),
        ),
        ("b-1", frame(bericht::INPUT, &|id| client::frame(id, &samples::bericht("b-1", BSN)).unwrap())),
        ("t-open", frame(taak::GZAC_TAKEN, &|id| client::frame(id, &open).unwrap())),
        ("t-verlopen", frame(taak::GZAC_TAKEN, &|id| client::frame(id, &verlopen).unwrap())),
    ]
    .into_iter()
    .map(|(k, (t, b))| (t, k.to_string(), b))
    .collect();
    let later: Vec<(String, String, Vec<u8>)> = vec![
        ("b-1", frame(bericht::GEOPEND, &|id| client::frame(id, &opening).unwrap())),
        ("t-open", frame(taak::ANTWOORDEN, &|id| client::frame(id, &samples::antwoord("a-1", "t-open", BSN)).unwrap())),
    ]
    .into_iter()
    .map(|(k, (t, b))| (t, k.to_string(), b))
    .collect();
    let send_all = |records: &[(String, String, Vec<u8>)]| {
        let records = records.to_vec();
        let (producer, prefix) = (w.producer.clone(), w.cfg.topic_prefix.clone());
        async move {
            for (topic, key, bytes) in records {
                client::send(&producer, &format!("{prefix}{topic}"), &key, &bytes, None).await.unwrap();
            }
        }
    };

    let mut bridge = spawn_bridge(&w, "i0", &[]);
    send_all(&inputs).await;
    // The bericht and the taak are there before their opening and antwoord come.
    w.read(&[bericht::OUTPUT, taak::PORTAAL_TAKEN], 3, Duration::ZERO).await;
    send_all(&later).await;
    // verzoeken 1 + 2, zaakverzoeken 1 + 2, bericht 1, geopend 1, taken 2 + 2 (expired), antwoord 3
    let once = snapshot(&w, &read(15).await.unwrap());
    let terugmeldingen = w.topic(verzoek::TERUGMELDINGEN);
    assert_eq!(once[verzoek::TERUGMELDINGEN].len(), 5, "{once:?}");
    assert!(!once.keys().any(|t| t.ends_with(".dlq")), "no dead letters: {once:?}");
    let n_once: usize = once.values().flat_map(|k| k.values()).map(|(_, n)| n).sum();

    kill9(&mut bridge);
    let mut bridge = spawn_bridge(&w, "i0", &[]);
    send_all(&inputs).await;
    send_all(&later).await;
    // The portal hears its five answers again (the same terugmeldingen); nothing else is new.
    let twice = snapshot(&w, &read(n_once + 5).await.unwrap());
    assert!(sigterm(&mut bridge).success());
    assert_eq!(once.keys().collect::<Vec<_>>(), twice.keys().collect::<Vec<_>>());
    for (topic, keys) in &once {
        for (key, (ids, n)) in keys {
            let (ids_twice, n_twice) = &twice[topic][key];
            assert_eq!(ids, ids_twice, "{topic} {key}: the same events, no new one");
            if format!("{}{topic}", w.cfg.topic_prefix) != terugmeldingen {
                assert_eq!(n, n_twice, "{topic} {key}: nothing written again");
            } else {
                assert_eq!(*n_twice, 2 * n, "{topic} {key}: the first answer repeated once");
            }
        }
    }
}

fn portaal_voorkeuren() -> &'static str {
    "portaal.klantvoorkeuren.v1"
}
