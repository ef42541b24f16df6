//! Fault injection with librdkafka's in-process mock cluster: the broker goes down mid-stream and
//! comes back. The route must keep running, dead-letter nothing and lose nothing. (The mock shows
//! aborted records to read_committed readers, so duplicates are not judged here; exactly-once is
//! proven on the real broker in exactly_once.rs.)

use gzac_portal_bridge::client;
use gzac_portal_bridge::config::Config;
use gzac_portal_bridge::pipeline;
use gzac_portal_bridge::routes::verzoek::{self, VerzoekRoute};
use gzac_portal_bridge::tools::registry::{Registry, Server};
use gzac_portal_bridge::tools::samples;
use gzac_portal_bridge::{schemas, topology};
use rdkafka::mocking::MockCluster;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A mock cluster with every topic, a registry with every schema, and a config pointing at both;
/// plus the schema id of the verzoek input. The server stops when dropped.
async fn mock_world() -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, Server, Config, u32) {
    let mock = MockCluster::new(1).unwrap();
    let server = Registry::new().serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut cfg = Config::defaults();
    cfg.bootstrap_servers = mock.bootstrap_servers();
    cfg.registry.url = format!("http://{}", server.addr);
    cfg.pipeline.retry_backoff_max = Duration::from_millis(500);
    for t in topology::Topology::load().unwrap().wanted("").unwrap() {
        mock.create_topic(&t.name, 3, 1).unwrap();
    }
    let ids = schemas::register_all(&cfg.sr_settings().unwrap(), "").await.unwrap();
    let id = ids.iter().find(|(s, _)| s == "portaal.verzoeken.v1-value").unwrap().1;
    (mock, server, cfg, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_stream_delays_but_loses_and_dead_letters_nothing() {
    let (mock, _server, cfg, id) = mock_world().await;
    let p = client::producer(&cfg).unwrap();
    let send = move |i: usize| {
        let key = format!("f-{i}");
        let bytes = client::frame(id, &samples::verzoek(&key)).unwrap();
        let p = p.clone();
        async move { client::send(&p, verzoek::INPUT, &key, &bytes, None).await }
    };
    for i in 0..10 {
        send(i).await.unwrap();
    }

    let shutdown = Arc::new(AtomicBool::new(false));
    let (c, s, rt) = (cfg.clone(), shutdown.clone(), tokio::runtime::Handle::current());
    let plumbing = pipeline::Plumbing::new(&cfg).unwrap();
    let route =
        std::thread::spawn(move || pipeline::run(VerzoekRoute::new(&c), &c, rt, s, Default::default(), plumbing));
    let out = vec![verzoek::OUTPUT.to_string(), "portaal.verzoeken.v1.dlq".to_string()];
    let read = |n: usize, settle: Duration| {
        let (cfg, out) = (cfg.clone(), out.clone());
        tokio::task::spawn_blocking(move || client::read_n(&cfg, &out, n, Duration::from_secs(90), settle))
    };
    read(10, Duration::ZERO).await.unwrap().unwrap();

    mock.broker_down(1).unwrap();
    let later = tokio::spawn(async move {
        for i in 10..20 {
            send(i).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!route.is_finished(), "the route stopped while the broker was down");
    mock.broker_up(1).unwrap();
    later.await.unwrap();

    let recs = read(20, Duration::from_secs(2)).await.unwrap().unwrap();
    assert!(recs.iter().all(|r| !r.topic.ends_with(".dlq")), "a broker outage is not bad data");
    let keys: HashSet<&str> = recs.iter().map(|r| r.key_str()).collect();
    let expected: HashSet<String> =
        (0..20).map(|i| gzac_portal_bridge::routes::derived_id(&["verzoek", &format!("f-{i}")])).collect();
    assert!(
        expected.iter().all(|k| keys.contains(k.as_str())),
        "lost: {:?}",
        expected.iter().filter(|k| !keys.contains(k.as_str())).collect::<Vec<_>>()
    );
    shutdown.store(true, Ordering::SeqCst);
    route.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_replaces_the_producer_and_the_route_goes_on() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (mock, _server, cfg, id) = mock_world().await;
    let p = client::producer(&cfg).unwrap();
    for i in 0..10 {
        let key = format!("x-{i}");
        client::send(&p, verzoek::INPUT, &key, &client::frame(id, &samples::verzoek(&key)).unwrap(), None)
            .await
            .unwrap();
    }
    // The broker answers the first EndTxn with INVALID_TXN_STATE, which librdkafka makes fatal.
    mock.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE]);

    let shutdown = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(pipeline::Stats::default());
    let (c, s, st, rt) = (cfg.clone(), shutdown.clone(), stats.clone(), tokio::runtime::Handle::current());
    let plumbing = pipeline::Plumbing::new(&cfg).unwrap();
    let route = std::thread::spawn(move || pipeline::run(VerzoekRoute::new(&c), &c, rt, s, st, plumbing));
    let out = vec![verzoek::OUTPUT.to_string()];
    let c = cfg.clone();
    let expected: HashSet<String> =
        (0..10).map(|i| gzac_portal_bridge::routes::derived_id(&["verzoek", &format!("x-{i}")])).collect();
    let want = expected.clone();
    tokio::task::spawn_blocking(move || {
        client::read_until(&c, &out, Duration::from_secs(90), |recs| {
            let keys: HashSet<String> = recs.iter().map(|r| r.key_str().to_string()).collect();
            want.iter().all(|k| keys.contains(k))
        })
    })
    .await
    .unwrap()
    .unwrap();
    // (The mock shows aborted output too, so wait for the commit itself.)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stats.records.load(Ordering::SeqCst) < 10 && std::time::Instant::now() < deadline {
        assert!(!route.is_finished(), "the route stopped on a fatal producer error");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats.records.load(Ordering::SeqCst), 10, "every record committed once the producer was replaced");
    assert!(stats.aborts.load(Ordering::SeqCst) >= 1, "the failed transaction was counted as aborted");
    shutdown.store(true, Ordering::SeqCst);
    route.join().unwrap().unwrap();
}

type Started = (Arc<pipeline::Stats>, Arc<AtomicBool>, std::thread::JoinHandle<anyhow::Result<()>>);

/// Ten verzoeken on the mock; then `inject` (errors meant for the bridge, not the portal's
/// producer), then the verzoek route running on them: its stats, shutdown flag and thread.
async fn route_on_ten(cfg: &Config, id: u32, prefix: &str, inject: impl FnOnce()) -> Started {
    let p = client::producer(cfg).unwrap();
    for i in 0..10 {
        let key = format!("{prefix}-{i}");
        client::send(&p, verzoek::INPUT, &key, &client::frame(id, &samples::verzoek(&key)).unwrap(), None)
            .await
            .unwrap();
    }
    inject();
    let shutdown = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(pipeline::Stats::default());
    let (c, s, st, rt) = (cfg.clone(), shutdown.clone(), stats.clone(), tokio::runtime::Handle::current());
    let plumbing = pipeline::Plumbing::new(cfg).unwrap();
    let route = std::thread::spawn(move || pipeline::run(VerzoekRoute::new(&c), &c, rt, s, st, plumbing));
    (stats, shutdown, route)
}

/// Wait until `n` input records have committed; the route must stay up meanwhile.
async fn committed(stats: &pipeline::Stats, route: &std::thread::JoinHandle<anyhow::Result<()>>, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stats.records.load(Ordering::SeqCst) < n {
        assert!(!route.is_finished(), "the route stopped");
        assert!(std::time::Instant::now() < deadline, "only {} of {n} committed", stats.records.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_commit_errors_are_retried_until_the_commit_lands() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (mock, _server, cfg, id) = mock_world().await;
    let busy = RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
    let (stats, shutdown, route) = route_on_ten(&cfg, id, "r", || {
        mock.request_errors(RDKafkaApiKey::EndTxn, &[busy, busy, busy]);
        mock.request_errors(RDKafkaApiKey::AddOffsetsToTxn, &[busy, busy]);
    })
    .await;
    committed(&stats, &route, 10).await;
    assert_eq!(stats.dead_letters.load(Ordering::SeqCst), 0, "a busy coordinator is not bad data");
    shutdown.store(true, Ordering::SeqCst);
    route.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_producer_is_replaced_and_nothing_is_lost() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (mock, _server, cfg, id) = mock_world().await;
    let (stats, shutdown, route) = route_on_ten(&cfg, id, "f", || {
        mock.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED])
    })
    .await;
    committed(&stats, &route, 10).await;
    assert!(stats.aborts.load(Ordering::SeqCst) >= 1, "the fenced transaction was counted as aborted");
    assert_eq!(stats.dead_letters.load(Ordering::SeqCst), 0);
    shutdown.store(true, Ordering::SeqCst);
    route.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_the_broker_refuses_for_good_dead_letters_its_input_instead_of_looping() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (mock, _server, cfg, id) = mock_world().await;
    // The broker refuses the first produce request as too large, as a topic with a lower
    // max.message.bytes than the bridge read would.
    let (stats, shutdown, route) = route_on_ten(&cfg, id, "s", || {
        mock.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE])
    })
    .await;
    committed(&stats, &route, 10).await;
    let dead = stats.dead_letters.load(Ordering::SeqCst);
    assert!((1..10).contains(&dead), "the refused input(s) went to the dead-letter topic, the rest on: {dead}");
    shutdown.store(true, Ordering::SeqCst);
    route.join().unwrap().unwrap();
    let dlq = vec!["portaal.verzoeken.v1.dlq".to_string()];
    let c = cfg.clone();
    let recs =
        tokio::task::spawn_blocking(move || client::read_n(&c, &dlq, 1, Duration::from_secs(30), Duration::ZERO))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(recs[0].header("__connect.errors.exception.class.name"), Some("output-refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_transactional_id_acl_stops_the_route_with_a_message_that_names_it() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (mock, _server, mut cfg, id) = mock_world().await;
    cfg.pipeline.authorisation_grace = Duration::ZERO; // no ACLs just created to wait for here
    let denied = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED; 50];
    let (_stats, _shutdown, route) =
        route_on_ten(&cfg, id, "a", || mock.request_errors(RDKafkaApiKey::InitProducerId, &denied)).await;
    let started = std::time::Instant::now();
    while !route.is_finished() {
        assert!(started.elapsed() < Duration::from_secs(30), "an unauthorised producer is retried forever");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = format!("{:#}", route.join().unwrap().unwrap_err());
    assert!(err.contains("transactional-id"), "{err}");
}
