//! No one goes around the bridge, on a broker that authenticates (SASL/SCRAM over TLS) and
//! authorises (KRaft StandardAuthorizer, no ACL = no access) with exactly the ACLs `acls plan`
//! derives from topics.yaml: the bridge runs every route with its own; the portal, GZAC, the
//! notifier and an integrator are refused everything their role does not give them; a wrong
//! password or a missing ACL stops the bridge within seconds with a message that says what to fix.
//!
//! This file starts its own broker with the project's script (`scripts/kafka.sh start-secure`,
//! ports 19292/19293, data and certificates in target/kafka-secure).

mod common;

use common::{spawn_bridge_with, World};
use gzac_portal_bridge::acls;
use gzac_portal_bridge::bridge;
use gzac_portal_bridge::client;
use gzac_portal_bridge::dlq;
use gzac_portal_bridge::model::common::Kanaal;
use gzac_portal_bridge::model::Datum;
use gzac_portal_bridge::tools::samples::{self, BSN};
use gzac_portal_bridge::topology::Topology;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const PORT: &str = "19292";

fn state() -> String {
    format!("{}/target/kafka-secure", env!("CARGO_MANIFEST_DIR"))
}

fn kafka(cmd: &str) {
    common::kafka_script(cmd, 19292, "kafka-secure");
}

/// The secured broker; stopped when dropped, also when the test fails.
struct SecuredBroker;
impl Drop for SecuredBroker {
    fn drop(&mut self) {
        kafka("stop");
    }
}

/// librdkafka settings of `user` on the secured broker (the script gives user X password X-secret).
fn sasl(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanisms", "SCRAM-SHA-512".to_string()),
        ("sasl.username", user.to_string()),
        ("sasl.password", password.to_string()),
        ("ssl.ca.location", format!("{}/ca.pem", state())),
    ]
}

fn client_of(w: &World, user: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &w.cfg.bootstrap_servers);
    for (k, v) in sasl(user, &format!("{user}-secret")) {
        c.set(k, v);
    }
    c
}

/// Write one record as `user`: Ok, or the broker's refusal.
fn topic_of(role: &str) -> &'static str {
    match role {
        "gzac" => "gzac.verzoeken.v1",
        "portal" => "portaal.taken.v1",
        "operator" => "portaal.verzoeken.v1.dlq",
        "integrator" => "portaal.terugmeldingen.v1",
        _ => "notificaties.opdrachten.v1",
    }
}

/// Join `group` subscribed to `topic` with `cfg`'s principal and ask for the group's committed
/// offsets: `Ok` once assigned, or the refusal.
fn join_as(cfg: &gzac_portal_bridge::config::Config, group: &str, topic: &str) -> Result<(), RDKafkaErrorCode> {
    let c: BaseConsumer = cfg.consumer_config().set("group.id", group).create().unwrap();
    let code = |e: rdkafka::error::KafkaError| e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
    c.subscribe(&[topic]).map_err(code)?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if let Some(Err(e)) = c.poll(Duration::from_millis(200)) {
            let e = code(e);
            if e == RDKafkaErrorCode::GroupAuthorizationFailed {
                return Err(e);
            }
        }
        if c.assignment().is_ok_and(|a| a.count() > 0) {
            return Ok(());
        }
    }
    Err(RDKafkaErrorCode::RequestTimedOut)
}

/// `init_transactions` under `id` with `cfg`'s principal.
fn init_as(cfg: &gzac_portal_bridge::config::Config, id: &str) -> Result<(), RDKafkaErrorCode> {
    use rdkafka::producer::{BaseProducer, Producer};
    let p: BaseProducer = cfg.producer_config().set("transactional.id", id).create().unwrap();
    p.init_transactions(Duration::from_secs(20))
        .map_err(|e| e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown))
}

async fn write_as(w: &World, user: &str, topic: &str) -> Result<(), RDKafkaErrorCode> {
    let p: FutureProducer = client_of(w, user).set("message.timeout.ms", "10000").create().unwrap();
    let topic = w.topic(topic);
    match p.send(FutureRecord::to(&topic).key("k").payload(&b"x"[..]), Duration::from_secs(15)).await {
        Ok(_) => Ok(()),
        Err((e, _)) => Err(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown)),
    }
}

/// Read `topic` from the beginning as `user` (in a group of its role's prefix): Ok(records seen
/// within a few seconds), or the broker's refusal.
fn read_as(w: &World, user: &str, topic: &str) -> Result<usize, RDKafkaErrorCode> {
    read_in(w, user, &format!("{user}.secured-test"), topic)
}

/// `read_as` in `group`.
fn read_in(w: &World, user: &str, group: &str, topic: &str) -> Result<usize, RDKafkaErrorCode> {
    let c: BaseConsumer =
        client_of(w, user).set("group.id", group).set("isolation.level", "read_committed").create().unwrap();
    let topic = w.topic(topic);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    // A topic the principal may not read shows in its metadata; records show by polling.
    if let Ok(md) = c.fetch_metadata(Some(&topic), Duration::from_secs(10)) {
        if let Some(e) = md.topics().first().and_then(|t| t.error()) {
            return Err(e.into());
        }
    }
    let (mut n, until) = (0, Instant::now() + Duration::from_secs(6));
    while Instant::now() < until {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.payload().is_some() => n += 1,
            Some(Err(e)) => return Err(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown)),
            _ => {}
        }
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_each_role_may_do_works_on_a_secured_broker() {
    kafka("start-secure");
    let _broker = SecuredBroker;
    let bootstrap = format!("127.0.0.1:{PORT}");
    // The world sets up topics and schemas and reads outputs as the super user.
    let w = World::on_with("secured", bootstrap, &sasl("admin", "admin-secret")).await;
    let plan = acls::plan(&w.cfg, &Topology::load().unwrap()).unwrap();
    let admin = w.cfg.client_config();
    tokio::task::spawn_blocking(move || acls::apply(&admin, &plan, Duration::from_secs(30))).await.unwrap().unwrap();
    // ACLs reach the broker's authorizer through the metadata log, a moment after CreateAcls:
    // `acls apply` returns once the broker lists them all, so they are in force now.
    assert!(write_as(&w, "portal", "portaal.klantvoorkeuren.v1").await.is_ok(), "in force once apply returned");

    // Portal and GZAC write their inputs with their own principals.
    let as_user = |user: &str| {
        let mut c = w.cfg.clone();
        for (k, v) in sasl(user, &format!("{user}-secret")) {
            c.kafka.insert(k.to_string(), v);
        }
        c
    };
    let (portal, gzac) = (client::producer(&as_user("portal")).unwrap(), client::producer(&as_user("gzac")).unwrap());
    let send = |p: &FutureProducer, topic: &str, key: &str, bytes: Vec<u8>| {
        let (p, topic, key) = (p.clone(), w.topic(topic), key.to_string());
        async move { client::send(&p, &topic, &key, &bytes, None).await.unwrap() }
    };
    let id = |t: &str| w.schema_id(t);
    let taak_id = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e31";
    send(
        &portal,
        "portaal.klantvoorkeuren.v1",
        "klant-1",
        client::frame(id("portaal.klantvoorkeuren.v1"), &samples::klantvoorkeur(BSN, vec![Kanaal::Email])).unwrap(),
    )
    .await;
    send(&gzac, "gzac.zaken.v1", "z-1", client::frame(id("gzac.zaken.v1"), &samples::zaak("z-1", BSN)).unwrap()).await;
    send(
        &portal,
        "portaal.verzoeken.v1",
        "v-1",
        client::frame(id("portaal.verzoeken.v1"), &samples::verzoek("v-1")).unwrap(),
    )
    .await;
    // Garbage from the portal: a dead letter, for the operator to find and replay.
    send(&portal, "portaal.verzoeken.v1", "v-bad", b"not avro".to_vec()).await;
    send(
        &portal,
        "portaal.zaakverzoeken.v1",
        "z-1",
        client::frame(id("portaal.zaakverzoeken.v1"), &samples::zaakverzoek("zv-1", "z-1", BSN)).unwrap(),
    )
    .await;
    send(
        &gzac,
        "gzac.berichten.v1",
        "b-1",
        client::frame(id("gzac.berichten.v1"), &samples::bericht("b-1", BSN)).unwrap(),
    )
    .await;
    send(
        &gzac,
        "gzac.taken.v1",
        taak_id,
        client::frame(id("gzac.taken.v1"), &samples::taak(taak_id, BSN, Datum::vandaag().plus(30))).unwrap(),
    )
    .await;

    // The bridge runs every route with exactly its ACLs.
    let running = bridge::start(&as_user("bridge")).unwrap();
    w.read(&["portaal.taken.v1"], 1, Duration::ZERO).await;
    send(
        &portal,
        "portaal.taakantwoorden.v1",
        taak_id,
        client::frame(id("portaal.taakantwoorden.v1"), &samples::antwoord("a-1", taak_id, BSN)).unwrap(),
    )
    .await;
    let outputs = [
        "gzac.verzoeken.v1",
        "gzac.zaakverzoeken.v1",
        "portaal.berichten.v1",
        "portaal.taken.v1",
        "gzac.taakantwoorden.v1",
        "notificaties.opdrachten.v1",
        "portaal.terugmeldingen.v1",
    ];
    // verzoek, zaakverzoek, bericht, taak (open, afgerond), uitgevoerd, 2 notificaties, 3 terugmeldingen
    let recs = w.read(&outputs, 1 + 1 + 1 + 2 + 1 + 2 + 3, Duration::from_secs(2)).await;
    w.read(&["portaal.verzoeken.v1.dlq"], 1, Duration::ZERO).await;
    running.stop(Duration::from_secs(10)).await.unwrap();

    // The operator's job under the operator's own ACLs (its groups and transactional ids under
    // `operator.`, as `dlq` uses them by default): list the dead letters, replay them.
    let operator = as_user("operator").as_role("operator");
    let o = operator.clone();
    let rows = tokio::task::spawn_blocking(move || dlq::list(&o, Some("portaal.verzoeken.v1"))).await.unwrap().unwrap();
    assert_eq!(rows.iter().map(|(_, _, t)| t.count).sum::<usize>(), 1, "{rows:?}");
    let replayed =
        tokio::task::spawn_blocking(move || dlq::replay(&operator, "portaal.verzoeken.v1", None, None, false))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(replayed.replayed, 1);
    // …and cannot join, describe or fence the bridge's groups, nor use its transactional ids.
    for (role, topic) in [
        ("gzac", "gzac.verzoeken.v1"),
        ("portal", "portaal.taken.v1"),
        ("operator", "portaal.verzoeken.v1.dlq"),
        ("integrator", "portaal.terugmeldingen.v1"),
        ("notifier", "notificaties.opdrachten.v1"),
    ] {
        let (c, group, topic) = (as_user(role), w.cfg.route_group("verzoek"), w.topic(topic));
        let joined = tokio::task::spawn_blocking(move || join_as(&c, &group, &topic)).await.unwrap();
        assert_eq!(joined, Err(RDKafkaErrorCode::GroupAuthorizationFailed), "{role} and the bridge's group");
        // Its own group, on a topic it reads, it may join.
        let (c, topic2) = (as_user(role), w.topic(topic_of(role)));
        let own = format!("{}x", w.cfg.role_prefix(role));
        assert_eq!(tokio::task::spawn_blocking(move || join_as(&c, &own, &topic2)).await.unwrap(), Ok(()), "{role}");
        // Nor can it take the bridge's transactional id (and so fence its producer).
        let (c, id) = (as_user(role), w.cfg.transactional_id("verzoek"));
        let fenced = tokio::task::spawn_blocking(move || init_as(&c, &id)).await.unwrap();
        assert_eq!(fenced, Err(RDKafkaErrorCode::TransactionalIdAuthorizationFailed), "{role} and the bridge's id");
    }
    // The operator's own transactional ids it may use (`dlq replay`).
    let (c, id) = (as_user("operator"), format!("{}probe", w.cfg.role_prefix("operator")));
    assert_eq!(tokio::task::spawn_blocking(move || init_as(&c, &id)).await.unwrap(), Ok(()));
    for t in outputs {
        assert!(recs.iter().any(|r| r.topic == w.topic(t)), "nothing on {t}: {recs:#?}");
    }
    assert_eq!(recs.len(), 11, "{recs:#?}");

    // Going around the bridge is refused by the broker.
    let denied = Some(RDKafkaErrorCode::TopicAuthorizationFailed);
    for t in [
        "gzac.verzoeken.v1",
        "gzac.zaakverzoeken.v1",
        "gzac.taakantwoorden.v1",
        "gzac.berichten.v1",
        "gzac.weigeringen.v1",
    ] {
        assert_eq!(write_as(&w, "portal", t).await.err(), denied, "portal writing {t}");
    }
    assert_eq!(write_as(&w, "gzac", "portaal.taakantwoorden.v1").await.err(), denied, "gzac answering a taak");
    assert_eq!(write_as(&w, "gzac", "portaal.berichten.v1").await.err(), denied, "gzac publishing past the bridge");
    assert_eq!(write_as(&w, "integrator", "portaal.terugmeldingen.v1").await.err(), denied, "integrators only read");
    let read = |user: &str, topic: &str| read_as(&w, user, topic);
    for t in [
        "gzac.berichten.v1",
        "gzac-portal-bridge.berichten-state.v1",
        "gzac-portal-bridge.taken-state.v1",
        "portaal.verzoeken.v1.dlq",
        "notificaties.opdrachten.v1",
    ] {
        assert_eq!(read("portal", t).err(), denied, "portal reading {t}");
    }
    assert!(read("notifier", "notificaties.opdrachten.v1").unwrap() >= 2, "the notifier reads its opdrachten");
    for t in ["portaal.berichten.v1", "gzac.berichten.v1", "portaal.klantvoorkeuren.v1"] {
        assert_eq!(read("notifier", t).err(), denied, "notifier reading {t}");
    }
    assert!(read("integrator", "portaal.terugmeldingen.v1").unwrap() >= 3, "an integrator reads what it may");
    for t in [
        "gzac.berichten.v1",
        "portaal.berichten.v1",
        "portaal.verzoeken.v1",
        "gzac.taken.v1.dlq",
        "gzac-portal-bridge.taken-state.v1",
    ] {
        assert_eq!(read("integrator", t).err(), denied, "integrator reading {t}");
    }
    assert!(read("operator", "portaal.verzoeken.v1.dlq").is_ok(), "the operator reads dead letters");

    two_municipalities_each_refused_the_others_topics(&w).await;

    // A wrong password, or a principal without the bridge's ACLs: the bridge stops within
    // seconds and says what to fix — it does not retry forever.
    // A refusal by an ACL is waited out for `authorisation_grace` after start (ACLs just created
    // may still be on their way), then it stops.
    let grace = w.config_file("pipeline:\n  authorisation_grace: 5s\n");
    for (user, password, says, waits) in [
        ("bridge", "wrong", "sasl.username / sasl.password", Duration::ZERO),
        ("integrator", "integrator-secret", "acls plan --role bridge", Duration::from_secs(5)),
    ] {
        let started = Instant::now();
        let mut child = spawn_bridge_with(
            &w,
            user,
            &["--config", grace.to_str().unwrap()],
            &[("GZAC_BRIDGE_KAFKA__SASL_USERNAME", user), ("GZAC_BRIDGE_KAFKA__SASL_PASSWORD", password)],
        );
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{user}: still retrying after 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(!status.success(), "{user}: the bridge must fail");
        assert!(started.elapsed() >= waits, "{user}: stopped after {:?}, before the grace", started.elapsed());
        let log = std::fs::read_to_string(common::bridge_log(&w, user)).unwrap();
        assert!(log.contains(says), "{user}: the message names what to fix: {log}");
    }
}

/// One bridge for two municipalities, each with its own portal and GZAC principals: the bridge
/// serves both; each municipality's principals are refused the other's topics and groups.
async fn two_municipalities_each_refused_the_others_topics(w: &World) {
    let mut yaml = format!("group_id: {}-multi\ngemeenten:\n", w.cfg.group_id);
    for (id, oin) in [("utrecht", "00000001002220647000"), ("zeist", "00000001003214345000")] {
        yaml.push_str(&format!(
            "  - id: {id}\n    oin: \"{oin}\"\n    topic_prefix: \"{}{id}.\"\n    acls:\n      principals: {{ portal: \"User:portal-{id}\", gzac: \"User:gzac-{id}\" }}\n",
            w.cfg.topic_prefix
        ));
    }
    let file = w.config_file(&yaml);
    let env = w.env();
    let mut multi = gzac_portal_bridge::config::Config::load_with_env(Some(&file), &env).unwrap();
    multi.pipeline.clock = w.cfg.pipeline.clock.clone();
    let topo = Topology::load().unwrap();
    let mut ids = Vec::new();
    for g in multi.gemeenten().unwrap() {
        let wanted = topo.wanted(&g.cfg.topic_prefix).unwrap();
        let wanted: Vec<_> =
            wanted.into_iter().map(|t| gzac_portal_bridge::topology::Wanted { partitions: 3, ..t }).collect();
        gzac_portal_bridge::topology::apply(&multi.client_config(), &wanted, 1, false).await.unwrap();
        ids.extend(
            gzac_portal_bridge::schemas::register_all(&multi.sr_settings().unwrap(), &g.cfg.topic_prefix)
                .await
                .unwrap(),
        );
    }
    let plan = acls::plan(&multi, &topo).unwrap();
    let admin = multi.client_config();
    tokio::task::spawn_blocking(move || acls::apply(&admin, &plan, Duration::from_secs(30))).await.unwrap().unwrap();

    let as_user = |user: &str| {
        let mut c = multi.clone();
        for (k, v) in sasl(user, &format!("{user}-secret")) {
            c.kafka.insert(k.to_string(), v);
        }
        c
    };
    let running = bridge::start(&as_user("bridge")).unwrap();
    let gemeenten = multi.gemeenten().unwrap();
    let utrecht = &gemeenten[0].cfg;
    let subject = gzac_portal_bridge::schemas::subject(&utrecht.topic("portaal.verzoeken.v1"));
    let id = ids.iter().find(|(s, _)| *s == subject).map(|(_, id)| *id).unwrap();
    let portal = client::producer(&as_user("portal-utrecht")).unwrap();
    let bytes = client::frame(id, &samples::verzoek("u-1")).unwrap();
    client::send(&portal, &utrecht.topic("portaal.verzoeken.v1"), "u-1", &bytes, None).await.unwrap();
    let c = as_user("gzac-utrecht");
    let topics = vec![utrecht.topic("gzac.verzoeken.v1")];
    let got =
        tokio::task::spawn_blocking(move || client::read_n(&c, &topics, 1, Duration::from_secs(60), Duration::ZERO))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(got.len(), 1, "utrecht's GZAC reads what the bridge made of utrecht's verzoek");
    running.stop(Duration::from_secs(10)).await.unwrap();

    let denied = Some(RDKafkaErrorCode::TopicAuthorizationFailed);
    assert!(write_as(w, "portal-zeist", "zeist.portaal.verzoeken.v1").await.is_ok(), "zeist's portal, zeist's topic");
    assert_eq!(write_as(w, "portal-utrecht", "zeist.portaal.verzoeken.v1").await.err(), denied);
    assert_eq!(write_as(w, "portal-zeist", "utrecht.portaal.taakantwoorden.v1").await.err(), denied);
    assert_eq!(write_as(w, "gzac-zeist", "utrecht.gzac.berichten.v1").await.err(), denied);
    assert_eq!(
        write_as(w, "portal", "utrecht.portaal.verzoeken.v1").await.err(),
        denied,
        "the one-municipality portal"
    );
    // Each reads in a group under its own prefix (`<topic_prefix><role>.`).
    let read = |user: &str, topic: &str| {
        let (id, role) = user.split_once('-').map(|(r, g)| (g, r)).unwrap();
        read_in(w, user, &format!("{}{id}.{role}.test", w.cfg.topic_prefix), topic)
    };
    assert!(read("gzac-utrecht", "utrecht.gzac.verzoeken.v1").unwrap() >= 1);
    assert_eq!(read("gzac-zeist", "utrecht.gzac.verzoeken.v1").err(), denied);
    assert_eq!(read("portal-zeist", "utrecht.portaal.terugmeldingen.v1").err(), denied);
    assert_eq!(read("portal-utrecht", "zeist.portaal.taken.v1").err(), denied);
    // Groups: each municipality's portal only under its own prefix.
    let (c, topic) = (as_user("portal-utrecht"), utrecht.topic("portaal.taken.v1"));
    let own = format!("{}x", utrecht.role_prefix("portal"));
    assert_eq!(tokio::task::spawn_blocking(move || join_as(&c, &own, &topic)).await.unwrap(), Ok(()));
    let (c, topic) = (as_user("portal-zeist"), gemeenten[1].cfg.topic("portaal.taken.v1"));
    let other = format!("{}x", utrecht.role_prefix("portal"));
    assert_eq!(
        tokio::task::spawn_blocking(move || join_as(&c, &other, &topic)).await.unwrap(),
        Err(RDKafkaErrorCode::GroupAuthorizationFailed),
        "zeist's portal in utrecht's group"
    );
}
