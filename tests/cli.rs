//! The command line as a user runs it: topics apply (plan, idempotence, drift), schemas register,
//! a clean SIGTERM shutdown, and the demo.

mod common;

use common::{bootstrap, World};
use gzac_portal_bridge::client;
use gzac_portal_bridge::routes::verzoek;
use gzac_portal_bridge::tools::registry::Registry;
use gzac_portal_bridge::tools::samples;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bridge(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gzac-portal-bridge")).args(args).envs(env.iter().cloned()).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_apply_plans_creates_is_idempotent_and_reports_drift() {
    let prefix = format!("cli-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let env = vec![
        ("GZAC_BRIDGE_BOOTSTRAP_SERVERS".to_string(), bootstrap()),
        ("GZAC_BRIDGE_TOPIC_PREFIX".to_string(), prefix.clone()),
    ];
    // Drift planted before the first apply: a reference table created with the wrong policy.
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().unwrap();
    let zaken = format!("{prefix}gzac.zaken.v1");
    admin
        .create_topics(&[NewTopic::new(&zaken, 6, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    // CreateTopics answers before every broker's metadata shows the topic: wait until it does.
    let probe: rdkafka::consumer::BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe
        .fetch_metadata(Some(&zaken), Duration::from_secs(5))
        .map_or(true, |md| md.topics().first().is_none_or(|t| t.partitions().is_empty()))
    {
        assert!(Instant::now() < deadline, "{zaken} never showed in the metadata");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let plan = bridge(&["topics", "apply", "--dry-run", "--replication-factor", "1"], &env);
    let out = text(&plan);
    assert!(out.contains(&format!("create  {prefix}portaal.verzoeken.v1")), "{out}");
    assert!(out.contains(&format!("DRIFT   {zaken}: cleanup.policy is delete, topics.yaml wants compact")), "{out}");
    assert!(!plan.status.success(), "drift makes the command fail");

    let too_many = bridge(&["topics", "apply", "--replication-factor", "3"], &env);
    assert!(text(&too_many).contains("pass --replication-factor 1"), "{}", text(&too_many));

    let total = gzac_portal_bridge::topology::Topology::load().unwrap().topics.len();
    let first = bridge(&["topics", "apply", "--replication-factor", "1"], &env);
    assert_eq!(text(&first).matches("create  ").count(), total - 1, "{}", text(&first));
    let second = bridge(&["topics", "apply", "--replication-factor", "1"], &env);
    let out = text(&second);
    assert_eq!(out.matches("create  ").count(), 0, "{out}");
    assert_eq!(out.matches("ok      ").count(), total - 1, "{out}");
    assert!(out.contains("DRIFT"), "drift is still reported: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_register_registers_every_subject() {
    let server = Registry::new().serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let env = vec![("GZAC_BRIDGE_REGISTRY_URL".to_string(), format!("http://{}", server.addr))];
    let out = tokio::task::spawn_blocking(move || bridge(&["schemas", "register"], &env)).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let subjects: usize = gzac_portal_bridge::schemas::catalogue().iter().map(|e| e.topics.len()).sum();
    assert_eq!((lines.len(), subjects), (19, 19), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("portaal.verzoeken.v1-value\tid ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_transaction_and_exits_within_the_bound() {
    let w = World::new("sigterm").await;
    let p = client::producer(&w.cfg).unwrap();
    for i in 0..50 {
        let key = format!("t-{i}");
        client::send(
            &p,
            &w.topic(verzoek::INPUT),
            &key,
            &client::frame(w.verzoek_id(), &samples::verzoek(&key)).unwrap(),
            None,
        )
        .await
        .unwrap();
    }
    let mut child = common::Reaped(
        Command::new(env!("CARGO_BIN_EXE_gzac-portal-bridge"))
            .arg("run")
            .envs(w.env())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    w.read_verzoek_outputs(100, Duration::from_secs(60), Duration::ZERO).await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    // Nothing is left uncommitted: a restarted bridge has nothing to redo.
    let recs = w.read_verzoek_outputs(100, Duration::from_secs(10), Duration::from_secs(2)).await;
    assert_eq!(recs.len(), 100);
}

#[test]
fn demo_plays_every_pattern_and_exits_zero() {
    let out = bridge(&["demo"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("mock cluster"), "the demo says its broker is a stand-in: {stdout}");
    assert!(stdout.contains("demo done: 50 records written by the bridge for 31 records in."), "{stdout}");
    let lines = |needle: &str| stdout.lines().filter(|l| l.contains(needle)).count();
    let afgewezen = |l: &&str| l.contains("nl.overheid.portaal.terugmelding-verstuurd") && l.contains("Verzoek demo-");
    assert_eq!(stdout.lines().filter(afgewezen).filter(|l| l.contains("Afgewezen")).count(), 3, "{stdout}");
    assert_eq!(lines("dead letter: unknown-schema-id"), 1, "{stdout}");
    assert_eq!(lines("nl.overheid.berichten.bericht-gepubliceerd"), 8, "{stdout}");
    // Part one: each channel at once; part two: three emails as one digest, the SMS after 08:00;
    // part three: one bericht from each of two municipalities.
    assert_eq!(lines("bericht-gepubliceerd: Email") + lines("bericht-gepubliceerd: Sms"), 8, "{stdout}");
    assert_eq!(lines("bundel: Email"), 1, "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.contains("bundel: Email") && l.contains("aantal=3")).count(), 1, "{stdout}");
    let (held, morning, second) = (
        stdout.find("the SMS still waits").unwrap(),
        stdout.find("the quiet hours are over").unwrap(),
        stdout.find("a second municipality").unwrap(),
    );
    assert!(!stdout[held..morning].contains("bericht-gepubliceerd: Sms"), "an SMS at night: {stdout}");
    let sms = |part: &str| part.lines().filter(|l| l.contains("bericht-gepubliceerd: Sms")).count();
    assert_eq!(sms(&stdout[morning..second]), 1, "{stdout}");
    // Part three: Zeist's bericht on Zeist's topics, with its OIN, template and portal; the
    // other municipality's on its own.
    let zeist = &stdout[second..];
    let on = |topic: &str| zeist.lines().filter(|l| l.trim_start().starts_with(topic)).count();
    assert_eq!((on("zeist.portaal.berichten.v1"), on("portaal.berichten.v1")), (1, 1), "{zeist}");
    let z = zeist.lines().find(|l| l.trim_start().starts_with("zeist.notificaties.opdrachten.v1")).unwrap();
    assert!(z.contains("template 5eeeeeee-") && z.contains("link=https://mijn.zeist.example/"), "{z}");
    assert_eq!(zeist.matches("oin 00000001003214345000").count(), 2, "{zeist}");
    assert_eq!(zeist.matches("oin 00000001234567890000").count(), 3, "{zeist}");
    assert!(!zeist.lines().any(|l| l.trim_start().starts_with("notificaties") && l.contains("mijn.zeist")), "{zeist}");
    assert_eq!(lines("geopendOp"), 1, "GZAC hears of the first opening only: {stdout}");
    assert_eq!(lines("bericht-escalatie: Sms"), 1, "the unread bericht escalated once: {stdout}");
    assert_eq!(
        lines("taak-aangemaakt: "),
        4,
        "email and sms for two taken, none for the one past its last day: {stdout}"
    );
    assert_eq!(lines("taak-herinnering: "), 2, "a reminder on both channels: {stdout}");
    assert_eq!(lines("nl.overheid.taken.externetaak-herinnerd"), 1, "{stdout}");
    assert_eq!(lines("not delivered: ONBEKENDE_ONTVANGER"), 1, "GZAC hears of the taak nobody gets: {stdout}");
    assert_eq!(lines("not delivered: ONBEKEND_HANDELINGSPERSPECTIEF"), 1, "and of the unmapped bericht: {stdout}");
    assert_eq!(lines("Taakantwoord a-4 Doorgestuurd"), 1, "the paid betaaltaak: {stdout}");
    let paid = |l: &&str| l.contains("gzac.taakantwoorden.v1") && l.contains("Betaaltaak") && l.contains("Uitgevoerd");
    assert_eq!(stdout.lines().filter(paid).count(), 1, "its uitgevoerd for GZAC: {stdout}");
    assert_eq!(lines("NIET_TOEGEWEZEN") + lines("TAAK_AL_BEANTWOORD") + lines("GEEN_BETROKKENE"), 3, "{stdout}");
    assert_eq!(lines("Taakantwoord a-2 Doorgestuurd") + lines("Zaakverzoek zv-2 Doorgestuurd"), 2, "{stdout}");
    assert_eq!(lines("nl.overheid.portaal.taak-verlopen"), 1, "verlopen in the portal: {stdout}");
    assert_eq!(lines("nl.overheid.taken.externetaak-verlopen"), 1, "and in GZAC: {stdout}");
    for bsn in ["569312863", "111222333", "123456782"] {
        assert!(!stdout.contains(bsn), "the demo prints no BSN: {stdout}");
    }
    // No ce_type is shared by two topics (and so by two schemas).
    let mut topics_of: std::collections::HashMap<&str, std::collections::HashSet<&str>> = Default::default();
    for l in stdout.lines() {
        let t: Vec<&str> = l.split_whitespace().collect();
        if t.len() > 2 && t[1].starts_with("key=") && t[2].starts_with("nl.") {
            // The same contract topic of another municipality is the same topic here.
            topics_of.entry(t[2]).or_default().insert(t[0].trim_start_matches("zeist."));
        }
    }
    assert!(topics_of.len() >= 8, "{topics_of:?}");
    let shared: Vec<_> = topics_of.iter().filter(|(_, t)| t.len() > 1).collect();
    assert!(shared.is_empty(), "ce_types on more than one topic: {shared:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_tell_what_the_bridge_does() {
    let w = World::new("health").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = common::Reaped(
        Command::new(env!("CARGO_BIN_EXE_gzac-portal-bridge"))
            .args(["run", "--health", &format!("127.0.0.1:{port}")])
            .envs(w.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            match reqwest::get(&url).await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while get("/ready").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready: {:?}", get("/ready").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..3 {
        let key = format!("h-{i}");
        w.send(verzoek::INPUT, &key, &samples::verzoek(&key)).await;
    }
    client::send(&w.producer, &w.topic(verzoek::INPUT), "junk", b"junk", None).await.unwrap();
    w.read_verzoek_outputs(7, Duration::from_secs(60), Duration::ZERO).await;
    let want = [
        "gzac_bridge_records_total{component=\"verzoek\"} 4",
        // three verzoeken and their terugmeldingen; the junk only a dead letter, by its class
        "gzac_bridge_output_records_total{component=\"verzoek\"} 6",
        "gzac_bridge_dead_letters_total{component=\"verzoek\",class=\"too-short\"} 1",
        // per municipality (one here, `gemeente` by default)
        "gzac_bridge_gemeente_records_total{component=\"verzoek\",gemeente=\"gemeente\",result=\"processed\"} 3",
        "gzac_bridge_gemeente_records_total{component=\"verzoek\",gemeente=\"gemeente\",result=\"dead_letter\"} 1",
        "gzac_bridge_end_to_end_latency_seconds_count{component=\"verzoek\"} 4",
        // from librdkafka's statistics (every 2 s): the lag of each assigned partition
        "gzac_bridge_partition_lag_records{component=\"verzoek\",partition=\"",
    ];
    loop {
        let (status, body) = get("/metrics").await;
        if status == 200 && want.iter().all(|w| body.contains(w)) {
            assert!(body.contains("gzac_bridge_ready{component=\"taak\"} 1"), "{body}");
            let commits = body
                .lines()
                .find(|l| l.starts_with("gzac_bridge_transaction_commit_seconds_count{component=\"verzoek\"}"))
                .unwrap();
            assert!(commits.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 1, "{commits}");
            assert!(body.contains("# TYPE gzac_bridge_transaction_records histogram"), "{body}");
            assert!(body.trim_end().ends_with("# EOF"), "OpenMetrics text");
            // Every metric the dashboard plots is one the bridge serves.
            let dashboard =
                std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/gzac-portal-bridge.json"))
                    .unwrap();
            let mut used: Vec<&str> = dashboard
                .match_indices("gzac_bridge_")
                .map(|(i, _)| {
                    let name = &dashboard[i..];
                    let end = name.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(name.len());
                    &name[..end]
                })
                .collect();
            used.sort();
            used.dedup();
            assert!(used.len() >= 12, "{used:?}");
            for name in used {
                let base = ["_bucket", "_count", "_sum"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                let family = base.strip_suffix("_total").unwrap_or(base);
                assert!(body.contains(&format!("# TYPE {family} ")), "the dashboard uses {name}, which /metrics lacks");
            }
            assert!(body.contains("gzac_bridge_healthy{component=\"verzoek\"} 1"), "{body}");
            let zaken = format!("gzac_bridge_ready{{component=\"table:{}\"}} 1", w.topic("gzac.zaken.v1"));
            assert!(body.contains(&zaken), "the tables report too: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "metrics never showed {want:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("/health").await.0, 200);
    assert!(common::sigterm(&mut child).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_command_serves_the_confluent_api() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = common::Reaped(
        Command::new(env!("CARGO_BIN_EXE_gzac-portal-bridge"))
            .args(["registry", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let sr = schema_registry_converter::async_impl::schema_registry::SrSettings::new(url.clone());
    let schema = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let supplied = schema_registry_converter::schema_registry_common::SuppliedSchema::new(
            None,
            schema_registry_converter::schema_registry_common::SchemaType::Avro,
            schema.into(),
        );
        match schema_registry_converter::async_impl::schema_registry::post_schema(&sr, "x-value".into(), supplied).await
        {
            Ok(r) => break r.id,
            Err(e) => assert!(Instant::now() < deadline, "registry never answered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let back = schema_registry_converter::async_impl::schema_registry::get_schema_by_id(id, &sr).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&back.schema).unwrap()["name"], "R");
    assert!(common::sigterm(&mut child).success());
}

#[test]
fn demo_keep_running_prints_where_to_connect_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let mut child = common::Reaped(
        Command::new(env!("CARGO_BIN_EXE_gzac-portal-bridge"))
            .args(["demo", "--keep-running"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("Ctrl-C stops.");
        seen.push(line);
        if done {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(text.contains("bootstrap.servers = 127.0.0.1:"), "{text}");
    assert!(text.contains("schema registry   = http://127.0.0.1:"), "{text}");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(rest.iter().any(|l| l.contains("demo done")), "{rest:?}");
}

#[test]
fn json_logs_are_one_object_per_line_for_machines() {
    let out = bridge(&["--log-format", "json", "demo"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 5, "{stderr}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l}: {e}"));
        assert!(v["level"].is_string() && v["message"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains(r#""route":"verzoek""#)), "fields are top-level keys: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_in_the_logs_at_trace_level_librdkafka_debug_included() {
    use gzac_portal_bridge::model::{common::Kanaal, gzac, portaal, Datum};
    let w = World::new("trace").await;
    // Markers: a BSN of its own (it passes the elfproef, so every route processes it), an email
    // address, a phone number, a bericht's text and form data.
    const BSN: &str = "999999977";
    let (email, phone, tekst, form) =
        ("marker.klant@example.nl", "+31687654321", "MARKER-tekst-9d2e", "MARKER-form-9d2e");
    let mut voorkeur = samples::klantvoorkeur(BSN, vec![Kanaal::Email, Kanaal::Sms]);
    voorkeur.digitale_adressen[0].adres = email.into();
    voorkeur.digitale_adressen[1].adres = phone.into();
    w.send("portaal.klantvoorkeuren.v1", "klant-trace", &voorkeur).await;
    w.send("gzac.zaken.v1", "z-1", &samples::zaak("z-1", BSN)).await;
    let verzoek = portaal::Verzoek { data: format!(r#"{{"vraag":"{form}"}}"#), ..samples::verzoek("v-trace") };
    let verzoek = portaal::Verzoek { bsn: Some(BSN.into()), ..verzoek };
    w.send(verzoek::INPUT, "v-trace", &verzoek).await;
    w.send("portaal.zaakverzoeken.v1", "z-1", &samples::zaakverzoek("zv-trace", "z-1", BSN)).await;
    let bericht = gzac::Bericht { bericht_tekst: tekst.into(), ..samples::bericht("b-trace", BSN) };
    w.send("gzac.berichten.v1", "b-trace", &bericht).await;
    let t = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e51";
    w.send("gzac.taken.v1", t, &samples::taak(t, BSN, Datum::vandaag().plus(30))).await;
    // One that is refused too: a rejection's path logs as well.
    w.send(verzoek::INPUT, "v-bad", &portaal::Verzoek { verzoektype: "onbekend".into(), ..verzoek.clone() }).await;

    let env = [("RUST_LOG", "trace"), ("GZAC_BRIDGE_KAFKA__DEBUG", "all")];
    let mut child = common::spawn_bridge_with(&w, "i-trace", &[], &env);
    w.read(&["portaal.taken.v1"], 1, Duration::ZERO).await;
    w.send("portaal.taakantwoorden.v1", t, &samples::antwoord("a-trace", t, BSN)).await;
    let outputs = [
        "gzac.verzoeken.v1",
        "gzac.zaakverzoeken.v1",
        "portaal.berichten.v1",
        "gzac.taakantwoorden.v1",
        "notificaties.opdrachten.v1",
    ];
    let recs = w.read(&outputs, 1 + 1 + 1 + 1 + 4, Duration::from_secs(1)).await;
    assert_eq!(recs.len(), 8, "every route ran: {recs:#?}");
    assert!(common::sigterm(&mut child).success());
    let log = std::fs::read_to_string(common::bridge_log(&w, "i-trace")).unwrap();
    assert!(
        log.lines().count() > 1000 && log.contains("TRACE") && log.contains("librdkafka"),
        "trace and librdkafka debug were on"
    );
    for marker in [BSN, email, phone, tekst, form, "marker.klant", "687654321"] {
        let at = log.find(marker).map(|i| &log[i.saturating_sub(300)..(i + 100).min(log.len())]);
        assert_eq!(at, None, "{marker} in the log");
    }
}

/// Run the binary with `stdin` fed in.
fn bridge_with_input(args: &[&str], env: &[(String, String)], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gzac-portal-bridge"))
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_writes_checked_json_lines_and_tail_prints_them_back() {
    let w = World::new("console").await;
    let env = w.env();
    let as_json = |v: &gzac_portal_bridge::model::portaal::Verzoek| serde_json::to_value(v).unwrap();
    let good = |id: &str| serde_json::json!({"key": id, "value": as_json(&samples::verzoek(id)), "headers": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}});
    let mut bad = good("c-bad");
    bad["value"]["payment"]["completed"] = "ja".into();
    // One bad line: nothing is written, and the refusal names the line, the field and the reason.
    let input = format!("{}\n{}\n{}\n", good("c-1"), bad, good("c-2"));
    let out = bridge_with_input(&["send", "portaal.verzoeken.v1"], &env, &input);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("payment.completed") && err.contains("nothing written"), "{err}");
    // All good: all written, in one transaction.
    let out =
        bridge_with_input(&["send", "portaal.verzoeken.v1"], &env, &format!("{}\n{}\n", good("c-1"), good("c-2")));
    assert!(out.status.success(), "{}", text(&out));

    let out = tokio::task::spawn_blocking(move || bridge(&["tail", "portaal.verzoeken.v1"], &env)).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "the refused batch left nothing: {lines:#?}");
    let mut keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["c-1", "c-2"]);
    for l in &lines {
        let id = l["key"].as_str().unwrap();
        assert_eq!(l["value"]["submission_id"], id, "{}", l["value"]["undecodable"]);
        assert_eq!(l["value"]["payment"]["amount"], "42.50", "decoded with the topic's schema: {l}");
        assert!(l["partition"].is_number() && l["offset"].is_number());
        assert_eq!(l["headers"]["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    }
    // What tail prints, send takes back.
    let again: serde_json::Value = serde_json::json!({"key": "c-3", "value": lines[0]["value"].clone()});
    let out = bridge_with_input(&["send", "portaal.verzoeken.v1"], &w.env(), &format!("{again}\n"));
    assert!(out.status.success(), "{}", text(&out));
    let env = w.env();
    let out = tokio::task::spawn_blocking(move || bridge(&["tail", "portaal.verzoeken.v1", "--key", "c-3"], &env))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_registry_mistake_are_listed_and_replayed_twice_with_one_effect() {
    use gzac_portal_bridge::dlq;
    let w = World::new("replay").await;
    // The registry mistake: the portal frames its records with a schema id the registry does not
    // have (a registry restored without it) — the bridge dead-letters them as unknown-schema-id.
    let missing_id = w.ids.iter().map(|(_, id)| *id).max().unwrap() + 1;
    let p = client::producer(&w.cfg).unwrap();
    for i in 0..3 {
        let id = format!("r-{i}");
        client::send(
            &p,
            &w.topic(verzoek::INPUT),
            &id,
            &client::frame(missing_id, &samples::verzoek(&id)).unwrap(),
            None,
        )
        .await
        .unwrap();
    }
    let running = gzac_portal_bridge::bridge::start(&w.cfg).unwrap();
    let dead = w.read(&["portaal.verzoeken.v1.dlq"], 3, Duration::from_secs(1)).await;
    assert_eq!(dead.len(), 3);
    let cfg = w.cfg.clone();
    let rows =
        tokio::task::spawn_blocking(move || dlq::list(&cfg, Some("portaal.verzoeken.v1"))).await.unwrap().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].1.as_str(), rows[0].2.count), ("unknown-schema-id", 3));
    assert!(rows[0].2.oldest <= rows[0].2.newest && rows[0].2.oldest.is_some());

    // The fix: the schema comes back under that id (the registry hands out the next id).
    let settings = w.cfg.sr_settings().unwrap();
    let restored = <gzac_portal_bridge::model::portaal::Verzoek as apache_avro::AvroSchema>::get_schema();
    let supplied = schema_registry_converter::schema_registry_common::SuppliedSchema::new(
        None,
        schema_registry_converter::schema_registry_common::SchemaType::Avro,
        serde_json::to_string(&restored).unwrap().replace("Open Formulieren", "Open Forms"),
    );
    let reg = schema_registry_converter::async_impl::schema_registry::post_schema(
        &settings,
        "restored-value".into(),
        supplied,
    )
    .await
    .unwrap();
    assert_eq!(reg.id, missing_id);

    // Dry run, then the replay, twice: every verzoek reaches GZAC once.
    let run = |dry| {
        let cfg = w.cfg.clone();
        tokio::task::spawn_blocking(move || {
            dlq::replay(&cfg, "portaal.verzoeken.v1", Some("unknown-schema-id"), None, dry)
        })
    };
    assert_eq!(run(true).await.unwrap().unwrap(), dlq::Replayed { replayed: 3, truncated: 0 });
    assert_eq!(run(false).await.unwrap().unwrap().replayed, 3);
    w.read(&["gzac.verzoeken.v1"], 3, Duration::ZERO).await;
    assert_eq!(run(false).await.unwrap().unwrap().replayed, 3, "the dead letters are still there to replay");
    // Both replays' terugmeldingen: three each, and still no second verzoek.
    let recs = w.read(&["gzac.verzoeken.v1", "portaal.terugmeldingen.v1"], 3 + 6, Duration::from_secs(3)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    let mut forwarded: Vec<&str> =
        recs.iter().filter(|r| r.topic == w.topic("gzac.verzoeken.v1")).map(|r| r.key_str()).collect();
    forwarded.sort();
    forwarded.dedup();
    assert_eq!(
        recs.iter().filter(|r| r.topic == w.topic("gzac.verzoeken.v1")).count(),
        3,
        "exactly one GZAC record per input"
    );
    assert_eq!(forwarded.len(), 3);
}

#[test]
fn the_binary_needs_no_system_openssl() {
    // OpenSSL and zlib are compiled in (rdkafka's ssl-vendored and libz-static): a fresh machine
    // needs no libssl-dev, and the image's last stage (distroless/cc: glibc and libgcc) nothing
    // more than the binary and CA certificates.
    let out =
        Command::new("ldd").arg(env!("CARGO_BIN_EXE_gzac-portal-bridge")).output().expect("ldd (part of libc-bin)");
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(libs.contains("libc.so"), "ldd listed the libraries: {libs}");
    assert!(!libs.contains("libssl") && !libs.contains("libcrypto"), "links a system OpenSSL: {libs}");
    let glibc_and_libgcc = ["linux-vdso", "libc.so", "libm.so", "libgcc_s.so", "ld-linux", "libpthread", "libdl"];
    for lib in libs.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(glibc_and_libgcc.iter().any(|g| lib.contains(g)), "links {lib}, which distroless/cc lacks: {libs}");
    }
}
