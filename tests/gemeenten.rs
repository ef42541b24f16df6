//! Three municipalities on one bridge process: records of every pattern in flight for all three
//! at once and a SIGKILL mid-stream. Every output lands on the topics of the municipality its
//! input came from, with that municipality's OIN, NotifyNL templates and portal links; no record
//! crosses; each input is answered exactly once.

mod common;

use common::{kill9, sigterm, spawn_bridge, World};
use gzac_portal_bridge::client::{self, Received};
use gzac_portal_bridge::config::Config;
use gzac_portal_bridge::model::common::{Kanaal, Notificatieopdracht};
use gzac_portal_bridge::routes::derived_id;
use gzac_portal_bridge::schemas;
use gzac_portal_bridge::tools::samples::{self, BSN};
use gzac_portal_bridge::topology;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GEMEENTEN: [(&str, &str); 3] =
    [("utrecht", "00000001002220647000"), ("zeist", "00000001003214345000"), ("houten", "00000001001827097000")];
/// Verzoeken per municipality; berichten, taken and zaakverzoeken per municipality.
const VERZOEKEN: usize = 1500;
const EACH: usize = 250;

/// One municipality of the test: its configuration (its own topic prefix) and schema ids.
struct Gemeente {
    id: &'static str,
    oin: &'static str,
    cfg: Config,
    ids: Vec<(String, u32)>,
}

impl Gemeente {
    /// Municipality `id` in `w`: its topics (prefix `<w's prefix><id>.`, three partitions) and
    /// schemas.
    async fn on(w: &World, id: &'static str, oin: &'static str) -> Gemeente {
        let mut cfg = w.cfg.clone();
        cfg.topic_prefix = format!("{}{id}.", w.cfg.topic_prefix);
        cfg.oin = oin.into();
        let wanted = topology::Topology::load().unwrap().wanted(&cfg.topic_prefix).unwrap();
        let wanted: Vec<_> = wanted.into_iter().map(|w| topology::Wanted { partitions: 3, ..w }).collect();
        topology::apply(&cfg.client_config(), &wanted, 1, false).await.unwrap();
        let ids = schemas::register_all(&cfg.sr_settings().unwrap(), &cfg.topic_prefix).await.unwrap();
        Gemeente { id, oin, cfg, ids }
    }

    fn topic(&self, name: &str) -> String {
        self.cfg.topic(name)
    }
    fn frame<T: serde::Serialize + apache_avro::AvroSchema>(&self, topic: &str, record: &T) -> Vec<u8> {
        let subject = schemas::subject(&self.topic(topic));
        let id = self.ids.iter().find(|(s, _)| *s == subject).map(|(_, id)| *id).expect("registered");
        client::frame(id, record).unwrap()
    }
    /// Its own NotifyNL template for a kind of notificatie (every municipality has others).
    fn template(&self, kind: u8) -> String {
        format!("{:08x}-0000-4000-8000-0000000000{kind:02x}", self.oin[8..16].parse::<u32>().unwrap())
    }
    fn portal(&self) -> String {
        format!("https://mijn.{}.example", self.id)
    }
    fn uuid(&self, what: &str, i: usize) -> String {
        derived_id(&[self.id, what, &i.to_string()])
    }
}

/// Counts committed records of every municipality as they appear, per contract topic in
/// `names` (to kill mid-stream).
type Counts = Arc<std::sync::Mutex<HashMap<&'static str, usize>>>;
fn progress(
    w: &World,
    gemeenten: &[Gemeente],
    names: [&'static str; 3],
    stop: Arc<AtomicBool>,
) -> (Counts, std::thread::JoinHandle<()>) {
    let count = Counts::default();
    let c = count.clone();
    let consumer: BaseConsumer = w
        .cfg
        .client_config()
        .set("group.id", format!("progress-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let topics: Vec<(String, &'static str)> = gemeenten.iter().flat_map(|g| names.map(|n| (g.topic(n), n))).collect();
    consumer.subscribe(&topics.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>()).unwrap();
    let t = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                use rdkafka::Message;
                let name = topics.iter().find(|(t, _)| t == m.topic()).map(|(_, n)| *n).unwrap();
                *c.lock().unwrap().entry(name).or_default() += 1;
            }
        }
    });
    (count, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_municipalities_every_pattern_and_a_sigkill_nothing_crosses_exactly_once() {
    let w = World::new("gemeenten").await;
    let mut gemeenten = Vec::new();
    let mut yaml = String::from("gemeenten:\n");
    for (id, oin) in GEMEENTEN {
        let g = Gemeente::on(&w, id, oin).await;
        yaml.push_str(&format!(
            "  - id: {id}\n    oin: \"{oin}\"\n    topic_prefix: \"{}\"\n    notificaties:\n      portaal_url: \"{}\"\n      templates:\n        bericht:\n          email: {{ nld: \"{}\" }}\n        taak:\n          email: {{ nld: \"{}\" }}\n",
            g.cfg.topic_prefix,
            g.portal(),
            g.template(1),
            g.template(2)
        ));
        gemeenten.push(g);
    }
    let config = w.config_file(&yaml);

    // The same klant in all three (one person, three municipalities), each with its own zaak.
    let p = client::producer(&w.cfg).unwrap();
    let send = |topic: String, key: String, bytes: Vec<u8>| {
        let p = p.clone();
        async move {
            loop {
                match p.send_result(rdkafka::producer::FutureRecord::to(&topic).key(&key).payload(&bytes)) {
                    Ok(_) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
    };
    for g in &gemeenten {
        let voorkeur = samples::klantvoorkeur(BSN, vec![Kanaal::Email]);
        send(g.topic("portaal.klantvoorkeuren.v1"), "klant-1".into(), g.frame("portaal.klantvoorkeuren.v1", &voorkeur))
            .await;
        let zaak = samples::zaak(&g.uuid("zaak", 0), BSN);
        send(g.topic("gzac.zaken.v1"), zaak.uuid.clone(), g.frame("gzac.zaken.v1", &zaak)).await;
    }
    client::flush(&p).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let watched = ["gzac.verzoeken.v1", "portaal.berichten.v1", "portaal.taken.v1"];
    let (count, counter) = progress(&w, &gemeenten, watched, stop.clone());
    let seen = |name: &str| count.lock().unwrap().get(name).copied().unwrap_or(0);
    let args = ["--config", config.to_str().unwrap()];
    let mut bridge = spawn_bridge(&w, "i0", &args);
    // Every pattern of every municipality in flight at once, interleaved.
    let einddatum = w.today().plus(10);
    for i in 0..VERZOEKEN {
        for g in &gemeenten {
            let key = format!("{}-v-{i}", g.id);
            send(
                g.topic("portaal.verzoeken.v1"),
                key.clone(),
                g.frame("portaal.verzoeken.v1", &samples::verzoek(&key)),
            )
            .await;
            if i % (VERZOEKEN / EACH) == 0 {
                let i = i / (VERZOEKEN / EACH);
                let b = samples::bericht(&g.uuid("bericht", i), BSN);
                send(g.topic("gzac.berichten.v1"), b.uuid.clone(), g.frame("gzac.berichten.v1", &b)).await;
                let t = samples::taak(&g.uuid("taak", i), BSN, einddatum);
                send(g.topic("gzac.taken.v1"), t.uuid.clone(), g.frame("gzac.taken.v1", &t)).await;
                let zv = samples::zaakverzoek(&format!("{}-zv-{i}", g.id), &g.uuid("zaak", 0), BSN);
                send(
                    g.topic("portaal.zaakverzoeken.v1"),
                    zv.submission_id.clone(),
                    g.frame("portaal.zaakverzoeken.v1", &zv),
                )
                .await;
            }
        }
    }
    client::flush(&p).unwrap();

    let total = VERZOEKEN * gemeenten.len();
    let deadline = Instant::now() + Duration::from_secs(240);
    // Killed once every pattern has written something, while verzoeken are still coming.
    while seen(watched[0]) < total / 4 || watched.iter().any(|n| seen(n) == 0) {
        assert!(bridge.try_wait().unwrap().is_none(), "the bridge exited on its own");
        assert!(Instant::now() < deadline, "no progress: {:?}", count.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    kill9(&mut bridge);
    let at_kill = count.lock().unwrap().clone();
    eprintln!("killed at {at_kill:?}");
    assert!(at_kill[watched[0]] < total, "the kill came after the stream ended; it must be mid-stream");
    let mut bridge = spawn_bridge(&w, "i0", &args);

    // Per municipality: verzoek + terugmelding per verzoek; zaakverzoek + terugmelding; bericht
    // and taak, each with one email notificatie.
    let outputs = [
        ("gzac.verzoeken.v1", VERZOEKEN),
        ("gzac.zaakverzoeken.v1", EACH),
        ("portaal.terugmeldingen.v1", VERZOEKEN + EACH),
        ("portaal.berichten.v1", EACH),
        ("portaal.taken.v1", EACH),
        ("notificaties.opdrachten.v1", 2 * EACH),
    ];
    let inputs = ["portaal.verzoeken.v1", "portaal.zaakverzoeken.v1", "gzac.berichten.v1", "gzac.taken.v1"];
    let mut topics: Vec<String> = Vec::new();
    for g in &gemeenten {
        topics.extend(outputs.iter().map(|(t, _)| g.topic(t)));
        topics.extend(inputs.iter().map(|t| format!("{}.dlq", g.topic(t))));
        topics.push(g.topic("gzac.weigeringen.v1"));
    }
    let expected: usize = outputs.iter().map(|(_, n)| n).sum::<usize>() * gemeenten.len();
    let cfg = w.cfg.clone();
    let recs: Vec<Received> = tokio::task::spawn_blocking(move || {
        client::read_n(&cfg, &topics, expected, Duration::from_secs(300), Duration::from_secs(5))
    })
    .await
    .unwrap()
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    counter.join().unwrap();
    assert!(sigterm(&mut bridge).success(), "SIGTERM ends the bridge cleanly");

    let codec = gzac_portal_bridge::codec::Codec::new(w.cfg.sr_settings().unwrap());
    for g in &gemeenten {
        let mine: Vec<&Received> = recs.iter().filter(|r| r.topic.starts_with(&g.cfg.topic_prefix)).collect();
        // Its own OIN on everything written for it.
        let source = format!("urn:nld:oin:{}:systeem:gzac-portal-bridge", g.oin);
        let foreign: Vec<_> = mine.iter().filter(|r| r.header("ce_source") != Some(source.as_str())).take(3).collect();
        assert!(foreign.is_empty(), "{}: records with another source: {foreign:?}", g.id);
        for (topic, n) in outputs {
            let on: Vec<&&Received> = mine.iter().filter(|r| r.topic == g.topic(topic)).collect();
            let ids: HashSet<&str> = on.iter().filter_map(|r| r.header("ce_id")).collect();
            assert_eq!((on.len(), ids.len()), (n, n), "{}: {topic} holds each output once", g.id);
        }
        let dead: Vec<_> =
            mine.iter().filter(|r| r.topic.ends_with(".dlq") || r.topic.contains("weigeringen")).collect();
        assert!(dead.is_empty(), "{}: {dead:?}", g.id);
        // Only its own inputs' outputs: keys derived from its own submission ids.
        let verzoeken: HashSet<String> =
            (0..VERZOEKEN).map(|i| derived_id(&["verzoek", &format!("{}-v-{i}", g.id)])).collect();
        for r in mine.iter().filter(|r| r.topic == g.topic("gzac.verzoeken.v1")) {
            assert!(verzoeken.contains(r.key_str()), "{}: a verzoek that is not its own: {}", g.id, r.key_str());
        }
        let terugmeldingen: HashSet<String> = (0..VERZOEKEN)
            .map(|i| format!("{}-v-{i}", g.id))
            .chain((0..EACH).map(|i| format!("{}-zv-{i}", g.id)))
            .collect();
        for r in mine.iter().filter(|r| r.topic == g.topic("portaal.terugmeldingen.v1")) {
            assert!(terugmeldingen.contains(r.key_str()), "{}: a terugmelding not its own: {}", g.id, r.key_str());
        }
        let items: HashSet<String> = (0..EACH).flat_map(|i| [g.uuid("bericht", i), g.uuid("taak", i)]).collect();
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for r in mine.iter().filter(|r| r.topic == g.topic("notificaties.opdrachten.v1")) {
            let n: Notificatieopdracht = codec
                .decode(r.value.as_deref().unwrap(), &<Notificatieopdracht as apache_avro::AvroSchema>::get_schema())
                .await
                .unwrap();
            assert!(items.contains(&n.referentie), "{}: a notificatie about another's item", g.id);
            let template = if n.gebeurtenis.starts_with("bericht") { g.template(1) } else { g.template(2) };
            assert_eq!(n.request.template_id, template, "{}: its own template", g.id);
            let link = &n.request.personalisation["link"];
            assert!(link.starts_with(&format!("{}/", g.portal())), "{}: its own portal: {link}", g.id);
            *kinds.entry(n.gebeurtenis.clone()).or_default() += 1;
        }
        assert_eq!(kinds.values().sum::<usize>(), 2 * EACH, "{}: {kinds:?}", g.id);
    }
    // Nothing of the municipalities' went to the shared prefix's own topics.
    assert!(recs.iter().all(|r| gemeenten.iter().any(|g| r.topic.starts_with(&g.cfg.topic_prefix))));
    assert_eq!(recs.len(), expected, "nothing besides the outputs above");
}

/// Adding a municipality is a configuration change and a restart: the restarted instance (same
/// instance id, so the same static group members) reads the new municipality's topics at once,
/// besides the ones it served before, and keeps their state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_municipality_added_by_a_restart_is_served_at_once() {
    let w = World::new("erbij").await;
    let mut gemeenten = Vec::new();
    for (id, oin) in &GEMEENTEN[..2] {
        gemeenten.push(Gemeente::on(&w, id, oin).await);
    }
    let yaml = |n: usize| {
        let mut y = String::from("gemeenten:\n");
        for g in &gemeenten[..n] {
            y.push_str(&format!(
                "  - id: {}\n    oin: \"{}\"\n    topic_prefix: \"{}\"\n",
                g.id, g.oin, g.cfg.topic_prefix
            ));
        }
        y
    };
    let p = client::producer(&w.cfg).unwrap();
    let send = |g: &Gemeente, key: &str| {
        let (p, topic, bytes) =
            (p.clone(), g.topic("portaal.verzoeken.v1"), g.frame("portaal.verzoeken.v1", &samples::verzoek(key)));
        let key = key.to_string();
        async move { client::send(&p, &topic, &key, &bytes, None).await.unwrap() }
    };
    let read = |topics: Vec<String>, n: usize| {
        let cfg = w.cfg.clone();
        tokio::task::spawn_blocking(move || {
            client::read_n(&cfg, &topics, n, Duration::from_secs(60), Duration::from_secs(2)).unwrap()
        })
    };
    let out = |g: &Gemeente| g.topic("gzac.verzoeken.v1");

    let config = w.config_file(&yaml(1));
    let args = ["--config", config.to_str().unwrap()];
    let mut bridge = spawn_bridge(&w, "i0", &args);
    send(&gemeenten[0], "u-1").await;
    // Zeist's verzoek waits: no bridge serves it yet.
    send(&gemeenten[1], "z-1").await;
    assert_eq!(read(vec![out(&gemeenten[0])], 1).await.unwrap().len(), 1);
    assert!(sigterm(&mut bridge).success());

    // Within the old members' session: without a rebalance the group would hand back the old
    // assignment, which has none of zeist's partitions.
    let config = w.config_file(&yaml(2));
    let args = ["--config", config.to_str().unwrap()];
    let mut bridge = spawn_bridge(&w, "i0", &args);
    send(&gemeenten[0], "u-1").await; // the same again: answered once in all
    send(&gemeenten[0], "u-2").await;
    send(&gemeenten[1], "z-2").await;
    let recs = read(vec![out(&gemeenten[0]), out(&gemeenten[1])], 4).await.unwrap();
    assert!(sigterm(&mut bridge).success());
    let mut keys: Vec<(bool, String)> =
        recs.iter().map(|r| (r.topic == out(&gemeenten[0]), r.key_str().to_string())).collect();
    keys.sort();
    let want = |utrecht: bool, k: &str| (utrecht, derived_id(&["verzoek", k]));
    let mut expected = vec![want(true, "u-1"), want(true, "u-2"), want(false, "z-1"), want(false, "z-2")];
    expected.sort();
    assert_eq!(keys, expected, "zeist's verzoeken (also the one sent before) answered, utrecht's once");

    // The operator's tools take the municipality by name; with many, they need it.
    let tail = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gzac-portal-bridge"))
            .args(["--config", config.to_str().unwrap()])
            .args(extra)
            .args(["tail", "gzac.verzoeken.v1"])
            .envs(w.env())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, _) = tail(&["--gemeente", "zeist"]);
    assert!(ok && stdout.lines().count() == 2 && stdout.contains(&derived_id(&["verzoek", "z-2"])), "{stdout}");
    let (ok, _, stderr) = tail(&[]);
    assert!(!ok && stderr.contains("--gemeente"), "{stderr}");
}
