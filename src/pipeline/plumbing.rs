//! What every route needs at start, built once by the bridge and handed to each route's
//! pipeline: the state cipher (its key file read once), the topics' size limits (one
//! DescribeConfigs for all topics, not an admin client per route) and one metadata client for
//! the partition counts routes ask for (not a consumer per question).

use super::*;
use crate::encryption::StateCipher;
use std::sync::OnceLock;

pub struct Plumbing {
    pub(super) cipher: Option<Arc<StateCipher>>,
    /// Every topic's `max.message.bytes`, read by the first route that asks (empty when the
    /// broker could not say: the defaults hold then).
    topic_limits: OnceLock<HashMap<String, usize>>,
    metadata: BaseConsumer<GroupContext>,
}

impl Plumbing {
    /// Reads the state key; nothing here waits for the broker.
    pub fn new(cfg: &Config) -> anyhow::Result<Arc<Plumbing>> {
        let cipher = StateCipher::from_config(&cfg.state_encryption)?.map(Arc::new);
        let stats = Arc::new(Stats::default());
        stats.grant_grace(cfg.pipeline.authorisation_grace);
        let metadata = cfg.client_config().create_with_context(GroupContext::new("bridge", &[], stats))?;
        Ok(Arc::new(Plumbing { cipher, topic_limits: OnceLock::new(), metadata }))
    }

    /// Whether state is sealed (a state key is configured).
    pub fn sealed(&self) -> bool {
        self.cipher.is_some()
    }

    /// The `max.message.bytes` of every municipality's contract topics and dead-letter topics.
    pub(super) fn topic_limits(&self, cfg: &Config, rt: &Handle) -> &HashMap<String, usize> {
        self.topic_limits.get_or_init(|| {
            let gemeenten: Vec<Config> =
                cfg.gemeenten().map(|g| g.into_iter().map(|g| g.cfg).collect()).unwrap_or_default();
            let topics: Vec<String> =
                gemeenten.iter().flat_map(|c: &Config| crate::topics::ALL.iter().map(|t| c.topic(t))).collect();
            let all: Vec<String> = topics.iter().cloned().chain(topics.iter().map(|t| dlq_topic(t))).collect();
            rt.block_on(topic_limits(cfg, &all)).unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the topics' max.message.bytes; using the defaults");
                HashMap::new()
            })
        })
    }

    /// How many partitions `topic` has, waiting while it is not there yet; `stats` are the
    /// asking route's (it is not ready meanwhile, and says why).
    pub fn partition_count(&self, topic: &str, shutdown: &AtomicBool, stats: &Stats) -> anyhow::Result<i32> {
        let what = format!("reading the metadata of {topic}");
        with_retries(&what, shutdown, stats, &|| unfixable_of(&self.metadata), || {
            Ok(partition_ids(&self.metadata, topic)?.len() as i32)
        })
    }
}
