//! Configuration: built-in defaults (config.example.yaml), then an optional file, then environment.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const DEFAULTS: &str = include_str!("../../config.example.yaml");
const ENV_PREFIX: &str = "GZAC_BRIDGE_";
/// librdkafka properties the bridge sets itself; a user value would break exactly-once.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "transactional.id",
    "isolation.level",
    "enable.auto.commit",
    "enable.idempotence",
    "auto.offset.reset",
];

/// `GZAC_BRIDGE_*` variables read by the command line or the key store, not by the configuration.
const READ_ELSEWHERE: [&str; 4] = ["CONFIG", "HEALTH", "LOG_FORMAT", "STATE_KEYS"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub instance_id: String,
    #[serde(default)]
    pub topic_prefix: String,
    pub oin: String,
    /// The municipality's id in logs and metrics (one municipality; see `gemeenten`).
    #[serde(default = "default_gemeente")]
    pub gemeente: String,
    /// Many municipalities in one process: per municipality its `id` and what differs from the
    /// settings above (`GEMEENTE_KEYS`); empty: the one municipality these settings describe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gemeenten: Vec<serde_yaml::Mapping>,
    /// Set on the configuration of one of many municipalities: its roles' group prefixes then
    /// start with its topic prefix (`role_prefix`), so no two municipalities share one.
    #[serde(skip)]
    pub one_of_many: bool,
    pub registry: RegistryConfig,
    /// librdkafka properties for every client (TLS, SASL, …).
    #[serde(default)]
    pub kafka: KafkaProps,
    /// librdkafka properties for consumers only (e.g. session.timeout.ms).
    #[serde(default)]
    pub kafka_consumer: KafkaProps,
    /// librdkafka properties for producers only (e.g. linger.ms, compression.type).
    #[serde(default)]
    pub kafka_producer: KafkaProps,
    pub pipeline: PipelineConfig,
    pub verzoek: VerzoekConfig,
    pub taken: TakenConfig,
    pub berichten: BerichtenConfig,
    pub notificaties: NotificatieConfig,
    /// Who the roles of topics.yaml are on the broker (`acls plan`).
    #[serde(default)]
    pub acls: AclsConfig,
    /// Encryption of the bridge's state at rest (the changelogs).
    #[serde(default)]
    pub state_encryption: StateEncryption,
}

/// Which key seals changelog entries; the keys themselves come from `keys_file` or the
/// environment (`GZAC_BRIDGE_STATE_KEYS`), never from this configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateEncryption {
    /// The id of the key that seals new entries; none: state is written in plain JSON.
    #[serde(default)]
    pub key_id: Option<String>,
    /// A file of `id=<64 hex digits>` lines: the current key and older ones still to open.
    #[serde(default)]
    pub keys_file: Option<std::path::PathBuf>,
    /// Run without a key, the changelogs in plain JSON: only when said explicitly.
    #[serde(default)]
    pub unsealed: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AclsConfig {
    /// Role → principal, e.g. `portal: "User:mijn-gemeente-portaal"`; default `User:<role>`.
    #[serde(default)]
    pub principals: BTreeMap<String, String>,
    /// Role → prefix of its consumer groups and transactional ids (default: `<role>.`; the
    /// bridge's is `<group_id>.`). Prefixes of different roles may not overlap (`acls plan`
    /// refuses them).
    #[serde(default)]
    pub group_prefixes: BTreeMap<String, String>,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// librdkafka properties passed through as they are.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct KafkaProps(pub BTreeMap<String, String>);

impl std::ops::Deref for KafkaProps {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KafkaProps {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Debug without secrets (sasl.password, ssl.key.password, …).
impl std::fmt::Debug for KafkaProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |k: &str| k.contains("password") || k.contains("secret") || k.ends_with(".pem");
        f.debug_map().entries(self.0.iter().map(|(k, v)| (k, if secret(k) { "***" } else { v.as_str() }))).finish()
    }
}

/// Debug without the password.
impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub batch_max_records: usize,
    #[serde(with = "humantime_serde")]
    pub batch_max_interval: Duration,
    /// Larger inputs are dead letters (`oversize`); default: the input topic's `max.message.bytes`.
    #[serde(default)]
    pub max_record_bytes: Option<usize>,
    #[serde(with = "humantime_serde")]
    pub retry_backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    /// Unset: 8 s, or half the session timeout when that is shorter (`Config::shutdown_timeout`).
    #[serde(default, with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// How often time-driven work runs (scheduled berichten, taak expiry).
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// How long the state of a finished item (published bericht, closed taak) is kept.
    #[serde(with = "humantime_serde")]
    pub state_retention: Duration,
    /// A route or table retrying this long, or with lag and no progress this long, is unhealthy.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// After start, an authorisation refusal is waited for this long (ACLs just created reach the
    /// brokers a moment later) before the bridge stops on it.
    #[serde(with = "humantime_serde")]
    pub authorisation_grace: Duration,
    /// The bridge's clock starts at this RFC 3339 moment and runs on at real speed (demo and
    /// tests of quiet hours and deadlines); none: the system clock. Env GZAC_BRIDGE_CLOCK_START.
    #[serde(default)]
    pub clock_start: Option<String>,
    /// The clock the pipelines run on: set from `clock_start` when the configuration is loaded.
    #[serde(skip)]
    pub clock: crate::model::Clock,
}

mod routes;
pub use routes::*;

fn default_gemeente() -> String {
    "gemeente".into()
}

/// What a municipality in `gemeenten` may set for itself; everything else is shared.
pub const GEMEENTE_KEYS: [&str; 8] =
    ["id", "oin", "topic_prefix", "verzoek", "taken", "berichten", "notificaties", "acls"];

/// One municipality the process serves: its id and the configuration its routes run with (the
/// shared settings with its own laid over them).
#[derive(Debug, Clone)]
pub struct Gemeente {
    pub id: String,
    pub cfg: Config,
}

/// The host name (a pod's name in Kubernetes): the default instance id.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Lay `over` onto `base`: mappings merge key by key, anything else replaces.
fn merge(base: &mut serde_yaml::Value, over: serde_yaml::Value) {
    match (base, over) {
        (serde_yaml::Value::Mapping(b), serde_yaml::Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

impl Config {
    /// Built-in defaults only (what the demo runs on).
    pub fn defaults() -> Self {
        let mut cfg: Config = serde_yaml::from_str(DEFAULTS).expect("config.example.yaml is valid");
        cfg.instance_id = host_name().unwrap_or_else(|| "bridge-0".into());
        cfg.group_id = cfg.default_group_id();
        cfg
    }

    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(file, &vars)
    }

    pub fn load_with_env(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut value: serde_yaml::Value = serde_yaml::from_str(DEFAULTS).expect("defaults parse");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
            let over: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            merge(&mut value, over);
        }
        let mut cfg: Config = serde_yaml::from_value(value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.apply_env(env)?;
        if cfg.instance_id.is_empty() {
            cfg.instance_id = host_name().unwrap_or_default();
        }
        if cfg.group_id.is_empty() {
            cfg.group_id = cfg.default_group_id();
        }
        cfg.validate()?;
        cfg.gemeenten()?;
        if let Some(start) = &cfg.pipeline.clock_start {
            let start = crate::model::Timestamp::parse(start)
                .map_err(|e| ConfigError::Invalid(format!("pipeline.clock_start: {e}")))?;
            cfg.pipeline.clock = crate::model::Clock::starting_at(start);
        }
        Ok(cfg)
    }

    /// Every municipality this process serves, each with its own configuration: the shared
    /// settings with the municipality's laid over them (sections merge key by key). Without
    /// `gemeenten`, the one this configuration describes.
    pub fn gemeenten(&self) -> Result<Vec<Gemeente>, ConfigError> {
        let bad = |m: String| ConfigError::Invalid(m);
        if self.gemeenten.is_empty() {
            return Ok(vec![Gemeente { id: self.gemeente.clone(), cfg: self.clone() }]);
        }
        let mut out: Vec<Gemeente> = Vec::new();
        for (i, over) in self.gemeenten.iter().enumerate() {
            let text = |k: &str| over.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let id = text("id").ok_or_else(|| bad(format!("gemeenten[{i}] needs an id")))?;
            let at = format!("gemeenten.{id}");
            if let Some(k) = over.keys().filter_map(|k| k.as_str()).find(|k| !GEMEENTE_KEYS.contains(k)) {
                return Err(bad(format!("{at}.{k} cannot differ per municipality (it may set {GEMEENTE_KEYS:?})")));
            }
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return Err(bad(format!("{at}: an id is lower-case letters, digits and `-`")));
            }
            let mut cfg = self.clone();
            cfg.gemeenten = Vec::new();
            cfg.one_of_many = true;
            cfg.gemeente = id.clone();
            cfg.oin = text("oin").ok_or_else(|| bad(format!("{at} needs its own oin")))?;
            cfg.topic_prefix = text("topic_prefix").ok_or_else(|| bad(format!("{at} needs its own topic_prefix")))?;
            fn section<T: Clone + Serialize + serde::de::DeserializeOwned>(
                base: &T,
                over: Option<&serde_yaml::Value>,
                at: &str,
            ) -> Result<T, ConfigError> {
                let Some(over) = over else { return Ok(base.clone()) };
                let mut value = serde_yaml::to_value(base).expect("a section serialises");
                merge(&mut value, over.clone());
                serde_yaml::from_value(value).map_err(|e| ConfigError::Invalid(format!("{at}: {e}")))
            }
            cfg.verzoek = section(&self.verzoek, over.get("verzoek"), &format!("{at}.verzoek"))?;
            cfg.taken = section(&self.taken, over.get("taken"), &format!("{at}.taken"))?;
            cfg.berichten = section(&self.berichten, over.get("berichten"), &format!("{at}.berichten"))?;
            cfg.notificaties = section(&self.notificaties, over.get("notificaties"), &format!("{at}.notificaties"))?;
            cfg.acls = section(&self.acls, over.get("acls"), &format!("{at}.acls"))?;
            cfg.validate().map_err(|e| bad(format!("{at}: {e}")))?;
            for other in &out {
                let same = if other.id == id {
                    Some("id")
                } else if other.cfg.topic_prefix == cfg.topic_prefix {
                    Some("topic_prefix")
                } else if other.cfg.oin == cfg.oin {
                    Some("oin")
                } else {
                    None
                };
                if let Some(what) = same {
                    return Err(bad(format!(
                        "gemeenten {} and {id} have the same {what}: each municipality needs its own, so Kafka keeps their records apart",
                        other.id
                    )));
                }
            }
            out.push(Gemeente { id, cfg });
        }
        Ok(out)
    }

    /// The configuration of the municipality `id` (`--gemeente`): needed when there are many,
    /// refused when there is none of that id.
    pub fn of_gemeente(&self, id: Option<&str>) -> Result<Config, ConfigError> {
        let all = self.gemeenten()?;
        let ids: Vec<&str> = all.iter().map(|g| g.id.as_str()).collect();
        match (id, all.len()) {
            (None, 1) => Ok(all[0].cfg.clone()),
            (None, _) => Err(ConfigError::Invalid(format!("name the municipality with --gemeente (one of {ids:?})"))),
            (Some(id), _) => all.iter().find(|g| g.id == id).map(|g| g.cfg.clone()).ok_or_else(|| {
                ConfigError::Invalid(format!("--gemeente {id}: no such municipality (configured: {ids:?})"))
            }),
        }
    }

    /// The environment over the file. An unknown `GZAC_BRIDGE_*` variable is refused like an
    /// unknown key (a typo would otherwise be ignored silently).
    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (key, value) in env {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let value = value.clone();
            match name {
                "BOOTSTRAP_SERVERS" => self.bootstrap_servers = value,
                "GROUP_ID" => self.group_id = value,
                "INSTANCE_ID" => self.instance_id = value,
                "OIN" => self.oin = value,
                "TOPIC_PREFIX" => self.topic_prefix = value,
                "REGISTRY_URL" => self.registry.url = value,
                "REGISTRY_USERNAME" => self.registry.username = Some(value),
                "REGISTRY_PASSWORD" => self.registry.password = Some(value),
                "STATE_KEY_ID" => self.state_encryption.key_id = Some(value),
                "STATE_KEYS_FILE" => self.state_encryption.keys_file = Some(value.into()),
                "STATE_UNSEALED" => self.state_encryption.unsealed = value == "true",
                "CLOCK_START" => self.pipeline.clock_start = Some(value),
                other => {
                    let prop = |p: &str| p.to_ascii_lowercase().replace('_', ".");
                    if let Some(p) = other.strip_prefix("KAFKA_CONSUMER__") {
                        self.kafka_consumer.insert(prop(p), value);
                    } else if let Some(p) = other.strip_prefix("KAFKA_PRODUCER__") {
                        self.kafka_producer.insert(prop(p), value);
                    } else if let Some(p) = other.strip_prefix("KAFKA__") {
                        self.kafka.insert(prop(p), value);
                    } else if !READ_ELSEWHERE.contains(&other) {
                        return Err(ConfigError::Invalid(format!(
                            "unknown environment variable {key} (known: the settings in the README's Configuration table)"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let maps = [
            ("kafka", &self.kafka),
            ("kafka_consumer", &self.kafka_consumer),
            ("kafka_producer", &self.kafka_producer),
        ];
        for (map, props) in maps {
            if let Some(k) = props.keys().find(|k| MANAGED.contains(&k.as_str())) {
                return bad(format!(
                    "{map}.{k} is managed by the bridge; set it through the bridge's own option or leave it out"
                ));
            }
        }
        if self.pipeline.batch_max_records == 0 {
            return bad("pipeline.batch_max_records must be at least 1".into());
        }
        if self.shutdown_timeout() >= self.session_timeout() {
            return bad(format!(
                "pipeline.shutdown_timeout ({:?}) must stay below the consumers' session.timeout.ms ({:?}): a member \
                 that takes longer to stop is expelled and its partitions move twice",
                self.shutdown_timeout(),
                self.session_timeout()
            ));
        }
        if !self.oin.chars().all(|c| c.is_ascii_digit()) || self.oin.len() != 20 {
            return bad(format!("oin must be 20 digits, got {:?}", self.oin));
        }
        if self.instance_id.is_empty() {
            return bad("instance_id is empty and the host name could not be read: set GZAC_BRIDGE_INSTANCE_ID".into());
        }
        let t = &self.notificaties.templates;
        for (kind, channel, map) in [
            ("bericht", "email", &t.bericht.email),
            ("bericht", "sms", &t.bericht.sms),
            ("taak", "email", &t.taak.email),
            ("taak", "sms", &t.taak.sms),
            ("herinnering", "email", &t.herinnering.email),
            ("herinnering", "sms", &t.herinnering.sms),
            ("escalatie", "email", &t.escalatie.email),
            ("escalatie", "sms", &t.escalatie.sms),
            ("bundel", "email", &t.bundel.email),
            ("bundel", "sms", &t.bundel.sms),
        ] {
            if !map.contains_key(DEFAULT_TAAL) {
                return bad(format!("notificaties.templates.{kind}.{channel} needs a template for `{DEFAULT_TAAL}`"));
            }
            if let Some((taal, id)) = map.iter().find(|(_, id)| uuid::Uuid::parse_str(id).is_err()) {
                return bad(format!(
                    "notificaties.templates.{kind}.{channel}.{taal} must be a NotifyNL template UUID, got {id:?}"
                ));
            }
        }
        if let Some((k, v)) = self
            .berichten
            .handelingsperspectieven
            .iter()
            .find(|(_, v)| !crate::model::portaal::HANDELINGSPERSPECTIEVEN.contains(&v.as_str()))
        {
            return bad(format!(
                "berichten.handelingsperspectieven.{k} is {v:?}; NL Portal knows {:?}",
                crate::model::portaal::HANDELINGSPERSPECTIEVEN
            ));
        }
        if !(0..=23).contains(&self.taken.herinnering_uur) {
            return bad(format!("taken.herinnering_uur must be an hour 0..=23, got {}", self.taken.herinnering_uur));
        }
        if let Some(s) = &self.notificaties.stille_uren {
            s.minuten().map_err(ConfigError::Invalid)?;
        }
        if let Some(h) = self.notificaties.escalatie.berichten.handelingsperspectieven.iter().find(|h| {
            serde_json::from_value::<crate::model::gzac::HandelingsPerspectief>(serde_json::Value::String(
                h.to_string(),
            ))
            .is_err()
        }) {
            return bad(format!(
                "notificaties.escalatie.berichten.handelingsperspectieven: {h:?} is no Open VTB handelingsPerspectief"
            ));
        }
        if self.pipeline.transaction_timeout < Duration::from_secs(1) {
            return bad("pipeline.transaction_timeout must be at least 1 s".into());
        }
        Ok(())
    }

    /// The consumer group of one route: every instance's consumer of that route joins it. One
    /// group per route keeps a route's rebalances (an instance starting, a route failing) from
    /// interrupting the others.
    /// The group id when none is set: scoped to the deployment by its topic prefix.
    fn default_group_id(&self) -> String {
        format!("{}gzac-portal-bridge", self.topic_prefix)
    }

    /// The consumers' `session.timeout.ms` (Kafka's default 45 s unless set).
    /// How long a stop may take: `pipeline.shutdown_timeout`, or by default 8 s, or half the
    /// session timeout when that is shorter.
    pub fn shutdown_timeout(&self) -> Duration {
        self.pipeline.shutdown_timeout.unwrap_or_else(|| Duration::from_secs(8).min(self.session_timeout() / 2))
    }

    pub fn session_timeout(&self) -> Duration {
        let ms = self.consumer_config().get("session.timeout.ms").and_then(|v| v.parse().ok()).unwrap_or(45_000);
        Duration::from_millis(ms)
    }

    /// What every consumer group and transactional id of this process starts with:
    /// `<group_id>.`. The dot keeps `gzac-portal-bridge.` apart from `gzac-portal-bridge-staging.`.
    pub fn own_prefix(&self) -> String {
        format!("{}.", self.group_id)
    }

    /// A route's transactional id: `<group_id>.<route>.<instance_id>`.
    pub fn transactional_id(&self, route: &str) -> String {
        format!("{}{route}.{}", self.own_prefix(), self.instance_id)
    }

    /// The prefix of `role`'s consumer groups and transactional ids.
    pub fn role_prefix(&self, role: &str) -> String {
        match role {
            "bridge" => self.own_prefix(),
            _ => self.acls.group_prefixes.get(role).cloned().unwrap_or_else(|| match self.one_of_many {
                true => format!("{}{role}.", self.topic_prefix),
                false => format!("{role}."),
            }),
        }
    }

    /// This configuration as a tool run by `role` uses it: its groups and transactional ids
    /// under that role's prefix (e.g. `dlq` as the operator).
    pub fn as_role(&self, role: &str) -> Config {
        let mut cfg = self.clone();
        cfg.group_id = self.role_prefix(role).trim_end_matches('.').to_string();
        cfg
    }

    pub fn route_group(&self, route: &str) -> String {
        format!("{}.{route}", self.group_id)
    }

    /// The name of a contract topic on this deployment.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// The CloudEvents source of everything the bridge writes.
    pub fn ce_source(&self) -> String {
        format!("urn:nld:oin:{}:systeem:gzac-portal-bridge", self.oin)
    }

    /// Registry client settings (schema_registry_converter), with credentials when configured.
    pub fn sr_settings(&self) -> anyhow::Result<schema_registry_converter::async_impl::schema_registry::SrSettings> {
        let mut b =
            schema_registry_converter::async_impl::schema_registry::SrSettings::new_builder(self.registry.url.clone());
        b.set_timeout(self.registry.timeout);
        if let Some(user) = &self.registry.username {
            b.set_basic_authorization(user, self.registry.password.as_deref());
        }
        b.build().map_err(|e| anyhow::anyhow!("registry settings: {e}"))
    }

    /// A consumer that sees only committed records and commits nothing itself: readers of
    /// tables, changelogs and outputs. `group` only names it; it positions itself.
    pub fn reader_config(&self, group: &str) -> rdkafka::ClientConfig {
        let mut c = self.consumer_config();
        c.set("group.id", group)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        c
    }

    /// A consumer's settings: the base plus `kafka_consumer`.
    pub fn consumer_config(&self) -> rdkafka::ClientConfig {
        let mut c = self.client_config();
        for (k, v) in self.kafka_consumer.iter() {
            c.set(k, v);
        }
        c
    }

    /// A producer's settings: the base plus `kafka_producer`.
    pub fn producer_config(&self) -> rdkafka::ClientConfig {
        let mut c = self.client_config();
        for (k, v) in self.kafka_producer.iter() {
            c.set(k, v);
        }
        c
    }

    /// Base librdkafka settings shared by every client: bootstrap plus the pass-through map.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in self.kafka.iter() {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
pub(crate) mod tests;
