//! topics.yaml: the topic contract, and `topics apply` that creates missing topics and reports
//! drift (partition count, cleanup policy) on existing ones without touching them.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

pub const TOPICS_YAML: &str = include_str!("../topics.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub defaults: Defaults,
    pub topics: Vec<TopicSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub partitions: i32,
    pub replication_factor: i32,
    pub cleanup_policy: String,
    pub retention: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub pattern: String,
    pub key: String,
    pub value: String,
    pub partitions: Option<i32>,
    pub cleanup_policy: Option<String>,
    pub retention: Option<String>,
    /// Roles that may write and read it (see `acls`).
    pub write: Vec<String>,
    pub read: Vec<String>,
    /// Carries bericht text, form data, contact data or BSNs.
    #[serde(default)]
    pub confidential: bool,
}

/// A topic as it should be on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub name: String,
    pub partitions: i32,
    pub cleanup_policy: String,
    /// `retention.ms`; -1 keeps forever.
    pub retention_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Create(Wanted),
    Ok(String),
    Drift { topic: String, what: String, wanted: String, actual: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Create(w) => write!(
                f,
                "create  {} (partitions={}, cleanup.policy={}, retention.ms={})",
                w.name, w.partitions, w.cleanup_policy, w.retention_ms
            ),
            Step::Ok(t) => write!(f, "ok      {t}"),
            Step::Drift { topic, what, wanted, actual } => {
                write!(f, "DRIFT   {topic}: {what} is {actual}, topics.yaml wants {wanted} (not changed; fix by hand)")
            }
        }
    }
}

fn retention_ms(text: &str) -> anyhow::Result<i64> {
    if text == "forever" {
        return Ok(-1);
    }
    Ok(humantime::parse_duration(text).map_err(|e| anyhow::anyhow!("retention {text:?}: {e}"))?.as_millis() as i64)
}

impl Topology {
    pub fn load() -> anyhow::Result<Self> {
        Self::parse(TOPICS_YAML)
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(serde_yaml::from_str(text)?)
    }

    /// The topics to have, each name with `prefix` (the deployment's topic prefix) in front.
    pub fn wanted(&self, prefix: &str) -> anyhow::Result<Vec<Wanted>> {
        self.topics
            .iter()
            .map(|t| {
                Ok(Wanted {
                    name: format!("{prefix}{}", t.name),
                    partitions: t.partitions.unwrap_or(self.defaults.partitions),
                    cleanup_policy: t.cleanup_policy.clone().unwrap_or_else(|| self.defaults.cleanup_policy.clone()),
                    retention_ms: retention_ms(t.retention.as_deref().unwrap_or(&self.defaults.retention))?,
                })
            })
            .collect()
    }
}

/// What the cluster has for one topic.
#[derive(Debug, Clone)]
pub struct Actual {
    pub partitions: i32,
    pub cleanup_policy: String,
}

/// Compare wanted topics with what exists; pure, so the plan is testable without a broker.
pub fn plan(wanted: &[Wanted], actual: impl Fn(&str) -> Option<Actual>) -> Vec<Step> {
    let mut steps = Vec::new();
    for w in wanted {
        match actual(&w.name) {
            None => steps.push(Step::Create(w.clone())),
            Some(a) => {
                let mut drift = false;
                if a.partitions != w.partitions {
                    drift = true;
                    steps.push(Step::Drift {
                        topic: w.name.clone(),
                        what: "partition count".into(),
                        wanted: w.partitions.to_string(),
                        actual: a.partitions.to_string(),
                    });
                }
                if a.cleanup_policy != w.cleanup_policy {
                    drift = true;
                    steps.push(Step::Drift {
                        topic: w.name.clone(),
                        what: "cleanup.policy".into(),
                        wanted: w.cleanup_policy.clone(),
                        actual: a.cleanup_policy.clone(),
                    });
                }
                if !drift {
                    steps.push(Step::Ok(w.name.clone()));
                }
            }
        }
    }
    steps
}

/// Read the cluster, make the plan, and (unless `dry_run`) create the missing topics.
pub async fn apply(
    client: &ClientConfig,
    wanted: &[Wanted],
    replication_factor: i32,
    dry_run: bool,
) -> anyhow::Result<Vec<Step>> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let timeout = Duration::from_secs(30);
    let metadata = admin.inner().fetch_metadata(None, timeout)?;
    let brokers = metadata.brokers().len() as i32;
    if replication_factor > brokers {
        anyhow::bail!(
            "replication factor {replication_factor} is more than the {brokers} broker(s) of this cluster; pass --replication-factor {brokers}"
        );
    }
    let existing: Vec<(String, i32)> =
        metadata.topics().iter().map(|t| (t.name().to_string(), t.partitions().len() as i32)).collect();
    let present: Vec<&str> =
        wanted.iter().filter(|w| existing.iter().any(|(n, _)| n == &w.name)).map(|w| w.name.as_str()).collect();
    let mut policies = std::collections::HashMap::new();
    if !present.is_empty() {
        let specs: Vec<ResourceSpecifier<'_>> = present.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        for res in admin.describe_configs(&specs, &AdminOptions::new().request_timeout(Some(timeout))).await? {
            let res = res?;
            let name = match &res.specifier {
                rdkafka::admin::OwnedResourceSpecifier::Topic(n) => n.clone(),
                _ => continue,
            };
            let policy = res.get("cleanup.policy").and_then(|e| e.value.clone()).unwrap_or_else(|| "delete".into());
            policies.insert(name, policy);
        }
    }
    let steps = plan(wanted, |name| {
        existing.iter().find(|(n, _)| n == name).map(|(_, p)| Actual {
            partitions: *p,
            cleanup_policy: policies.get(name).cloned().unwrap_or_else(|| "delete".into()),
        })
    });
    if dry_run {
        return Ok(steps);
    }
    let retention: Vec<String> = steps
        .iter()
        .filter_map(|s| if let Step::Create(w) = s { Some(w.retention_ms.to_string()) } else { None })
        .collect();
    let creates: Vec<NewTopic<'_>> = steps
        .iter()
        .filter_map(|s| if let Step::Create(w) = s { Some(w) } else { None })
        .zip(retention.iter())
        .map(|(w, r)| {
            NewTopic::new(&w.name, w.partitions, TopicReplication::Fixed(replication_factor))
                .set("cleanup.policy", &w.cleanup_policy)
                .set("retention.ms", r)
        })
        .collect();
    if !creates.is_empty() {
        for r in admin.create_topics(&creates, &AdminOptions::new().operation_timeout(Some(timeout))).await? {
            match r {
                Ok(_) => {}
                // Another instance created it between our read and our create: that is fine.
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => anyhow::bail!("creating {t} failed: {e}"),
            }
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_has_every_pattern_and_a_dlq_per_input() {
        let t = Topology::load().unwrap();
        let names: Vec<&str> = t.topics.iter().map(|t| t.name.as_str()).collect();
        for input in [
            "portaal.verzoeken.v1",
            "portaal.zaakverzoeken.v1",
            "gzac.taken.v1",
            "portaal.taakantwoorden.v1",
            "gzac.berichten.v1",
            "portaal.klantvoorkeuren.v1",
            "gzac.zaken.v1",
        ] {
            assert!(names.contains(&input), "{input}");
            assert!(names.contains(&format!("{input}.dlq").as_str()), "{input}.dlq");
        }
        for out in ["gzac.verzoeken.v1", "notificaties.opdrachten.v1", "portaal.terugmeldingen.v1", "portaal.taken.v1"]
        {
            assert!(names.contains(&out), "{out}");
        }
        let w = t.wanted("").unwrap();
        let zaken = w.iter().find(|w| w.name == "gzac.zaken.v1").unwrap();
        assert_eq!((zaken.cleanup_policy.as_str(), zaken.retention_ms), ("compact", -1));
    }

    #[test]
    fn roles_keep_integrators_and_the_portal_where_they_belong() {
        let t = Topology::load().unwrap();
        for spec in &t.topics {
            for role in spec.write.iter().chain(&spec.read) {
                assert!(crate::acls::ROLES.contains(&role.as_str()), "{}: unknown role {role}", spec.name);
            }
            let closed = spec.confidential || spec.pattern == "internal" || spec.pattern == "dead-letter";
            assert!(!(closed && spec.read.iter().any(|r| r == "integrator")), "{} is not for integrators", spec.name);
            assert!(!spec.write.iter().any(|r| r == "integrator"), "integrators only read");
            if spec.name.starts_with("gzac.") && !spec.write.iter().any(|r| r == "gzac") {
                assert_eq!(spec.write, ["bridge"], "{}: only the bridge writes what GZAC reads from it", spec.name);
            }
            // Internal topics and dead letters are the bridge's; the operator may write only the
            // repartition topics, to replay their dead letters.
            if spec.pattern == "dead-letter" || spec.name.ends_with("-state.v1") {
                assert_eq!(spec.write, ["bridge"], "{}", spec.name);
            } else if spec.pattern == "internal" {
                assert!(spec.name.ends_with("-repartition.v1"), "{}", spec.name);
                assert_eq!(spec.write, ["bridge", "operator"], "{}", spec.name);
            }
        }
    }

    #[test]
    fn plan_creates_missing_and_reports_drift() {
        let w = Topology::load().unwrap().wanted("").unwrap();
        let steps = plan(&w, |name| match name {
            "gzac.zaken.v1" => Some(Actual { partitions: 6, cleanup_policy: "delete".into() }),
            "portaal.verzoeken.v1" => Some(Actual { partitions: 2, cleanup_policy: "delete".into() }),
            "gzac.verzoeken.v1" => Some(Actual { partitions: 6, cleanup_policy: "delete".into() }),
            _ => None,
        });
        assert!(steps.contains(&Step::Ok("gzac.verzoeken.v1".into())));
        assert!(steps.iter().any(
            |s| matches!(s, Step::Drift { topic, what, .. } if topic == "gzac.zaken.v1" && what == "cleanup.policy")
        ));
        assert!(steps.iter().any(|s| matches!(s, Step::Drift { topic, what, .. } if topic == "portaal.verzoeken.v1" && what == "partition count")));
        assert!(steps.iter().any(|s| matches!(s, Step::Create(w) if w.name == "portaal.taken.v1")));
    }
}
