//! Shared set-up for the tests against the real broker that `scripts/test.sh` starts.
#![allow(dead_code)]

use gzac_portal_bridge::client::{self, Received};
use gzac_portal_bridge::config::Config;
use gzac_portal_bridge::model::{Clock, Datum, Timestamp};
use gzac_portal_bridge::routes::verzoek;
use gzac_portal_bridge::tools::registry::Registry;
use gzac_portal_bridge::{schemas, topology};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The real broker's address. Tests never skip: without a broker they fail and say what to do.
pub fn bootstrap() -> String {
    std::env::var("GZAC_TEST_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "GZAC_TEST_BOOTSTRAP is not set: run the tests with `scripts/test.sh`, which starts a real \
             Apache Kafka broker (needs Java 17+ and Maven on PATH: apt-get install openjdk-17-jre-headless maven)"
        )
    })
}

/// The clock of every test's bridges: the system clock, unless it is less than three hours before
/// or one hour after midnight in Amsterdam; then 20:00 of the day before that midnight. A test's
/// "today" is then its bridges' today too, at whatever hour the suite runs.
pub fn away_from_midnight() -> Clock {
    let now = Timestamp::now();
    let minute = i64::from(now.minuut_van_de_dag());
    match minute {
        60..1260 => Clock::default(),
        1260.. => Clock::starting_at(Timestamp(now.0 - (minute - 1200) * 60_000)),
        _ => Clock::starting_at(Timestamp(now.0 - (minute + 240) * 60_000)),
    }
}

/// One test's world: its own topic prefix, group, registry and registered schemas.
pub struct World {
    pub cfg: Config,
    pub registry: Registry,
    pub registry_server: Option<gzac_portal_bridge::tools::registry::Server>,
    pub ids: Vec<(String, u32)>,
    /// The portal's and GZAC's producer in this test (librdkafka's default partitioner).
    pub producer: rdkafka::producer::FutureProducer,
}

impl World {
    pub async fn new(name: &str) -> World {
        Self::on(name, bootstrap()).await
    }

    /// A world on another broker (the fault tests' own).
    pub async fn on(name: &str, bootstrap: String) -> World {
        Self::on_with(name, bootstrap, &[]).await
    }

    /// A world on another broker whose clients need `kafka` settings (e.g. SASL/TLS as a super
    /// user: the world sets topics up and reads outputs).
    pub async fn on_with(name: &str, bootstrap: String, kafka: &[(&str, String)]) -> World {
        Self::replicated(name, bootstrap, kafka, 1).await
    }

    /// A world whose topics have `replication` replicas (a cluster of the project's script).
    pub async fn replicated(name: &str, bootstrap: String, kafka: &[(&str, String)], replication: i32) -> World {
        let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut cfg = Config::defaults();
        cfg.bootstrap_servers = bootstrap;
        for (k, v) in kafka {
            cfg.kafka.insert(k.to_string(), v.clone());
        }
        cfg.topic_prefix = format!("t-{name}-{run}.");
        cfg.group_id = format!("g-{name}-{run}");
        cfg.instance_id = "i0".into();
        // Tests that are not about sealing run without a state key, knowingly.
        cfg.state_encryption.unsealed = true;
        cfg.pipeline.clock = away_from_midnight();
        cfg.pipeline.batch_max_interval = Duration::from_millis(50);
        cfg.pipeline.retry_backoff_max = Duration::from_secs(1);
        cfg.kafka_consumer.insert("session.timeout.ms".into(), "6000".into());
        cfg.kafka_consumer.insert("heartbeat.interval.ms".into(), "500".into());
        let registry = Registry::new();
        let server = registry.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        cfg.registry.url = format!("http://{}", server.addr);
        cfg.registry.timeout = Duration::from_secs(2);
        let wanted = topology::Topology::load().unwrap().wanted(&cfg.topic_prefix).unwrap();
        // Fewer partitions keep the broker light; several keep rebalances meaningful.
        let wanted: Vec<_> = wanted.into_iter().map(|w| topology::Wanted { partitions: 3, ..w }).collect();
        topology::apply(&cfg.client_config(), &wanted, replication, false)
            .await
            .expect("topics apply on the test broker");
        let ids = schemas::register_all(&cfg.sr_settings().unwrap(), &cfg.topic_prefix).await.unwrap();
        let producer = client::producer(&cfg).unwrap();
        World { cfg, registry, registry_server: Some(server), ids, producer }
    }

    pub fn topic(&self, name: &str) -> String {
        self.cfg.topic(name)
    }

    pub fn schema_id(&self, topic: &str) -> u32 {
        let subject = schemas::subject(&self.topic(topic));
        self.ids.iter().find(|(s, _)| *s == subject).map(|(_, id)| *id).expect("subject registered")
    }

    pub fn verzoek_id(&self) -> u32 {
        self.schema_id(verzoek::INPUT)
    }

    /// Read the bridge's outputs for the Verzoek route (read_committed).
    pub async fn read_verzoek_outputs(&self, n: usize, timeout: Duration, settle: Duration) -> Vec<Received> {
        let topics = vec![
            self.topic(verzoek::OUTPUT),
            self.topic(verzoek::TERUGMELDINGEN),
            format!("{}.dlq", self.topic(verzoek::INPUT)),
        ];
        let cfg = self.cfg.clone();
        tokio::task::spawn_blocking(move || client::read_n(&cfg, &topics, n, timeout, settle)).await.unwrap().unwrap()
    }

    /// Environment for a bridge process of this world.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("GZAC_BRIDGE_BOOTSTRAP_SERVERS".to_string(), self.cfg.bootstrap_servers.clone()),
            ("GZAC_BRIDGE_TOPIC_PREFIX".to_string(), self.cfg.topic_prefix.clone()),
            ("GZAC_BRIDGE_GROUP_ID".to_string(), self.cfg.group_id.clone()),
            ("GZAC_BRIDGE_REGISTRY_URL".to_string(), self.cfg.registry.url.clone()),
            ("GZAC_BRIDGE_STATE_UNSEALED".to_string(), self.cfg.state_encryption.unsealed.to_string()),
        ];
        if self.cfg.pipeline.clock.simulated() {
            env.push(("GZAC_BRIDGE_CLOCK_START".to_string(), self.cfg.pipeline.clock.now().rfc3339()));
        }
        let maps = [
            ("KAFKA", &self.cfg.kafka),
            ("KAFKA_CONSUMER", &self.cfg.kafka_consumer),
            ("KAFKA_PRODUCER", &self.cfg.kafka_producer),
        ];
        for (prefix, props) in maps {
            for (k, v) in props.iter() {
                env.push((format!("GZAC_BRIDGE_{prefix}__{}", k.replace('.', "_").to_uppercase()), v.clone()));
            }
        }
        env
    }
}

impl World {
    /// Today in Amsterdam by the clock this world's bridges run on.
    pub fn today(&self) -> Datum {
        Datum::in_amsterdam(self.cfg.pipeline.clock.now())
    }

    /// Now by the clock this world's bridges run on.
    pub fn now(&self) -> Timestamp {
        self.cfg.pipeline.clock.now()
    }

    /// Write `record` to the contract topic `topic` (framed with its registered schema id).
    pub async fn send<T: serde::Serialize + apache_avro::AvroSchema>(&self, topic: &str, key: &str, record: &T) {
        let bytes = client::frame(self.schema_id(topic), record).unwrap();
        client::send(&self.producer, &self.topic(topic), key, &bytes, None).await.unwrap();
    }

    /// A compacted-table tombstone.
    pub async fn tombstone(&self, topic: &str, key: &str) {
        let topic = self.topic(topic);
        let rec = rdkafka::producer::FutureRecord::<str, [u8]>::to(&topic).key(key);
        self.producer.send(rec, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    }

    /// Read at least `n` records from the contract topics `topics`, then `settle` longer.
    pub async fn read(&self, topics: &[&str], n: usize, settle: Duration) -> Vec<Received> {
        let topics: Vec<String> = topics.iter().map(|t| self.topic(t)).collect();
        let cfg = self.cfg.clone();
        tokio::task::spawn_blocking(move || client::read_n(&cfg, &topics, n, Duration::from_secs(60), settle))
            .await
            .unwrap()
            .unwrap()
    }

    /// Decode a record read back, with its type's own schema as reader.
    pub async fn decode<T: serde::de::DeserializeOwned + apache_avro::AvroSchema>(&self, r: &Received) -> T {
        let codec = gzac_portal_bridge::codec::Codec::new(self.cfg.sr_settings().unwrap());
        codec.decode::<T>(r.value.as_deref().unwrap(), &T::get_schema()).await.unwrap()
    }

    /// Write a config file for a bridge process of this world (settings the environment lacks).
    pub fn config_file(&self, yaml: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("{}.yaml", self.cfg.group_id));
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

/// Start a bridge process for `w`; its log goes to a file named after the test.
/// A child process that is killed when dropped, so a failing test leaves no process behind.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn spawn_bridge(w: &World, instance: &str, extra_args: &[&str]) -> Reaped {
    spawn_bridge_with(w, instance, extra_args, &[])
}

/// The log file of a bridge process of `w`.
pub fn bridge_log(w: &World, instance: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}-{instance}.log", w.cfg.group_id))
}

/// `spawn_bridge` with extra environment (e.g. `GZAC_BRIDGE_HEALTH`).
pub fn spawn_bridge_with(w: &World, instance: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Reaped {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(bridge_log(w, instance)).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_gzac-portal-bridge"))
        .args(extra_args)
        .arg("run")
        .envs(w.env())
        .env("GZAC_BRIDGE_INSTANCE_ID", instance)
        .env("RUST_LOG", "info,rdkafka=warn,librdkafka=error")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map(Reaped)
        .expect("start the bridge binary")
}

/// Run `scripts/kafka.sh cmd` for a broker of a test's own: client port `port`, controller port
/// `port + 1`, data in `target/<state>`.
pub fn kafka_script(cmd: &str, port: u16, state: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let status = std::process::Command::new(format!("{root}/scripts/kafka.sh"))
        .arg(cmd)
        .env("KAFKA_PORT", port.to_string())
        .env("KAFKA_CONTROLLER_PORT", (port + 1).to_string())
        .env("KAFKA_STATE", format!("{root}/target/{state}"))
        .status()
        .expect("run scripts/kafka.sh (needs bash, Java 17+ with keytool and Maven: apt-get install openjdk-17-jre-headless maven)");
    assert!(status.success(), "scripts/kafka.sh {cmd} failed");
}

pub fn kill9(child: &mut std::process::Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

pub fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

/// An Avro value as JSON, the way a plain connector writes it: null fields left out, a union as
/// its branch's value, an enum as its symbol, `timestamp-millis` as RFC 3339, `date` as
/// `YYYY-MM-DD`; string fields named in `documents` hold JSON documents and become objects.
pub fn avro_json_with(v: &apache_avro::types::Value, documents: &[&str]) -> serde_json::Value {
    use apache_avro::types::Value as A;
    match v {
        A::Record(fields) => serde_json::Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let json = match (documents.contains(&k.as_str()), strip_union(v)) {
                        (true, A::String(s)) => {
                            serde_json::from_str(s).unwrap_or_else(|e| panic!("{k} is no JSON document: {e}"))
                        }
                        _ => avro_json_with(v, documents),
                    };
                    (k.clone(), json)
                })
                .filter(|(_, v)| !v.is_null())
                .collect(),
        ),
        A::Union(_, inner) => avro_json_with(inner, documents),
        A::Array(items) => serde_json::Value::Array(items.iter().map(|i| avro_json_with(i, documents)).collect()),
        other => avro_json(other),
    }
}

fn strip_union(v: &apache_avro::types::Value) -> &apache_avro::types::Value {
    match v {
        apache_avro::types::Value::Union(_, inner) => strip_union(inner),
        other => other,
    }
}

/// `avro_json_with` without JSON documents.
pub fn avro_json(v: &apache_avro::types::Value) -> serde_json::Value {
    use apache_avro::types::Value as A;
    use serde_json::Value as J;
    match v {
        A::Null => J::Null,
        A::Boolean(b) => J::Bool(*b),
        A::Int(n) => J::from(*n),
        A::Long(n) => J::from(*n),
        A::Float(f) => J::from(*f),
        A::Double(f) => J::from(*f),
        A::String(s) | A::Enum(_, s) => J::String(s.clone()),
        A::Union(_, inner) => avro_json(inner),
        A::Array(items) => J::Array(items.iter().map(avro_json).collect()),
        A::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), avro_json(v))).collect()),
        A::Record(fields) => {
            J::Object(fields.iter().map(|(k, v)| (k.clone(), avro_json(v))).filter(|(_, v)| !v.is_null()).collect())
        }
        A::TimestampMillis(ms) => J::String(gzac_portal_bridge::model::Timestamp(*ms).rfc3339()),
        A::Date(days) => {
            J::String(gzac_portal_bridge::model::Timestamp(i64::from(*days) * 86_400_000).rfc3339()[..10].to_string())
        }
        other => J::String(format!("{other:?}")),
    }
}

/// The reference schema file `name` of `tests/reference/`, compiled, formats checked. Draft-07
/// style `$id`s that are only a fragment (`"#/properties/x"`, as the objecttypes files have; draft
/// 2020-12 forbids them) are dropped: they name, they do not constrain.
pub fn reference_schema(name: &str) -> jsonschema::Validator {
    fn drop_fragment_ids(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if map.get("$id").and_then(|id| id.as_str()).is_some_and(|id| id.starts_with('#')) {
                    map.remove("$id");
                }
                map.values_mut().for_each(drop_fragment_ids);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(drop_fragment_ids),
            _ => {}
        }
    }
    let path = format!("{}/tests/reference/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    drop_fragment_ids(&mut schema);
    jsonschema::options().should_validate_formats(true).build(&schema).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Why `instance` fails `validator`, or None when it validates.
pub fn invalid(validator: &jsonschema::Validator, instance: &serde_json::Value) -> Option<String> {
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// The component `name` of the OpenAPI file `file` in `tests/reference/`, compiled as a JSON
/// Schema for what a writer sends: `readOnly` properties are the register's to fill, so they are
/// not required of the record.
pub fn openapi_schema(file: &str, name: &str) -> jsonschema::Validator {
    fn writer_view(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                let read_only: Vec<String> = map
                    .get("properties")
                    .and_then(|p| p.as_object())
                    .map(|p| p.iter().filter(|(_, s)| s["readOnly"] == true).map(|(k, _)| k.clone()).collect())
                    .unwrap_or_default();
                if let Some(serde_json::Value::Array(req)) = map.get_mut("required") {
                    req.retain(|r| !read_only.iter().any(|k| r == k.as_str()));
                }
                map.values_mut().for_each(writer_view);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(writer_view),
            _ => {}
        }
    }
    let path = format!("{}/tests/reference/{file}", env!("CARGO_MANIFEST_DIR"));
    let doc: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut schemas = doc["components"]["schemas"].clone();
    writer_view(&mut schemas);
    let root = serde_json::json!({"$ref": format!("#/components/schemas/{name}"), "components": {"schemas": schemas}});
    jsonschema::options().should_validate_formats(true).build(&root).unwrap_or_else(|e| panic!("{path} {name}: {e}"))
}

/// What a read_committed follower of some topics has seen so far: records per key, and when the
/// last record arrived. It follows through the broker's restarts.
#[derive(Default)]
pub struct Seen {
    pub per_key: HashMap<String, usize>,
    pub total: usize,
    pub last: Option<Instant>,
}

pub fn follow(w: &World, topics: &[&str], stop: Arc<AtomicBool>) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (cfg, s) = (w.cfg.clone(), seen.clone());
    let topics: Vec<String> = topics.iter().map(|t| w.topic(t)).collect();
    let task = tokio::task::spawn_blocking(move || {
        let mut done = 0;
        let _ = client::read_until(&cfg, &topics, Duration::from_secs(900), |recs: &[Received]| {
            let mut s = s.lock().unwrap();
            for r in &recs[done..] {
                *s.per_key.entry(r.key_str().to_string()).or_default() += 1;
                s.total += 1;
                s.last = Some(Instant::now());
            }
            done = recs.len();
            stop.load(Ordering::SeqCst)
        });
    });
    (seen, task)
}

pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

pub async fn status(url: &str) -> u16 {
    match reqwest::get(url).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// The portal sends the verzoeken with these keys at once (its producer holds them while the
/// broker is away) and waits until each is acknowledged.
pub async fn send_verzoeken(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    schema_id: u32,
    keys: impl Iterator<Item = String>,
) {
    let sends: Vec<_> = keys
        .map(|key| {
            let bytes = client::frame(schema_id, &gzac_portal_bridge::tools::samples::verzoek(&key)).unwrap();
            let (p, t) = (producer.clone(), topic.to_string());
            tokio::spawn(async move { client::send(&p, &t, &key, &bytes, None).await })
        })
        .collect();
    for s in sends {
        s.await.unwrap().expect("the portal's verzoek reaches the broker");
    }
}
