//! Size limits: what the route may read and write, from the producer's and the topics' settings.

use super::*;

/// Size limits: the largest input the route takes, and the largest record (key, value and
/// headers) each written topic takes — the producer's `message.max.bytes` and the topic's
/// `max.message.bytes`, whichever is smaller.
#[derive(PartialEq)]
pub(super) struct Limits {
    /// `pipeline.max_record_bytes`, when set: the largest input of any topic.
    configured_input: Option<usize>,
    pub(super) producer: usize,
    pub(super) topics: HashMap<String, usize>,
}

/// How old the limits may be before a record about to be dead-lettered as too large makes the
/// route read them again (an operator who raised `max.message.bytes` needs no restart).
pub(super) const LIMITS_FRESH: Duration = Duration::from_secs(30);

/// Room for the record batch and record framing around key, value and headers.
pub(super) const RECORD_OVERHEAD: usize = 512;
/// librdkafka's and Kafka's defaults.
pub(super) const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
pub(super) const DEFAULT_TOPIC_MAX_MESSAGE_BYTES: usize = 1_048_588;

impl Limits {
    pub(super) fn of(&self, topic: &str) -> usize {
        self.topics.get(topic).copied().unwrap_or(self.producer).min(self.producer).saturating_sub(RECORD_OVERHEAD)
    }

    /// Read the topics' `max.message.bytes`. An operator who raised it on the topics raises what
    /// the bridge writes too, unless `message.max.bytes` is set for the producer.
    /// With both `message.max.bytes` and `pipeline.max_record_bytes` set, those are taken as
    /// they are (a topic that takes less then refuses the output: `output-refused`).
    /// `topics`: what the broker said of the topics' `max.message.bytes`.
    pub(super) fn read(cfg: &Config, written: &[String], topics: HashMap<String, usize>) -> Limits {
        let configured: Option<usize> = cfg.producer_config().get("message.max.bytes").and_then(|v| v.parse().ok());
        let topics =
            if configured.is_some() && cfg.pipeline.max_record_bytes.is_some() { HashMap::new() } else { topics };
        let producer = match configured {
            Some(set) => set,
            None => written
                .iter()
                .filter_map(|t| topics.get(t))
                .map(|n| n + RECORD_OVERHEAD)
                .fold(DEFAULT_MESSAGE_MAX_BYTES, usize::max)
                .min(1_000_000_000),
        };
        Limits { configured_input: cfg.pipeline.max_record_bytes, producer, topics }
    }

    /// The largest record the route takes from `input`: `pipeline.max_record_bytes`, or the
    /// topic's own `max.message.bytes`.
    pub(super) fn input(&self, input: &str) -> usize {
        self.configured_input
            .unwrap_or_else(|| self.topics.get(input).copied().unwrap_or(DEFAULT_TOPIC_MAX_MESSAGE_BYTES))
    }
}

pub(super) async fn topic_limits(cfg: &Config, topics: &[String]) -> anyhow::Result<HashMap<String, usize>> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = cfg.client_config().create()?;
    let specs: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut out = HashMap::new();
    for (topic, res) in topics.iter().zip(admin.describe_configs(&specs, &opts).await?) {
        let value = res.ok().and_then(|r| r.get("max.message.bytes").and_then(|e| e.value.clone()));
        if let Some(n) = value.and_then(|v| v.parse().ok()) {
            out.insert(topic.clone(), n);
        }
    }
    Ok(out)
}

/// Bytes a record takes on the wire besides the batch framing: key, value and headers.
pub(super) fn record_size(key: usize, value: usize, headers: &OwnedHeaders) -> usize {
    key + value + headers.iter().map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 8).sum::<usize>()
}
