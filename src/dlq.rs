//! Dead letters an operator can act on: `dlq list` counts them per error class with the oldest
//! and newest, `dlq replay` puts the original records back on their input topic in one
//! transaction, once whatever made them fail is fixed. Replaying twice is harmless: the routes
//! derive every id from the input, and a verzoek already forwarded is not forwarded again.

use crate::catch_up::{drop_reached, ends_of};
use crate::config::Config;
use crate::model::Timestamp;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Offset;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CLASS: &str = "__connect.errors.exception.class.name";
/// Headers the bridge added to a dead letter; the rest are the original record's.
const ADDED: [&str; 2] = ["__connect.errors.", "__gzac.errors."];

/// Every committed record of topic `name`, from the beginning to the end it has now.
fn read_all(cfg: &Config, name: &str) -> anyhow::Result<Vec<OwnedMessage>> {
    let (consumer, partitions) = crate::client::reader(cfg, "dlq", name, Offset::Beginning, false)?;
    let mut ends = ends_of(&consumer, name, &partitions)?;
    let (mut out, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(300));
    while !ends.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "reading {name} took longer than five minutes");
        match consumer.poll(Duration::from_millis(200)) {
            Some(m) => out.push(m?.detach()),
            None => drop_reached(&consumer, &mut ends)?,
        }
    }
    Ok(out)
}

fn header<'a>(m: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    m.headers()?.iter().find(|h| h.key == key).and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// Per error class of one dead-letter topic: how many, the oldest and the newest.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub count: usize,
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
}

/// The dead letters of `input` (a contract input topic), or of every input when none is given.
pub fn list(cfg: &Config, input: Option<&str>) -> anyhow::Result<Vec<(String, String, Tally)>> {
    let inputs: Vec<String> = match input {
        Some(t) => vec![t.to_string()],
        None => crate::topology::Topology::load()?
            .topics
            .iter()
            .filter(|t| t.pattern == "dead-letter")
            .map(|t| t.name.trim_end_matches(".dlq").to_string())
            .collect(),
    };
    let mut rows = Vec::new();
    for input in inputs {
        let mut per_class: BTreeMap<String, Tally> = BTreeMap::new();
        for m in read_all(cfg, &cfg.topic(&format!("{input}.dlq")))? {
            let t = per_class.entry(header(&m, CLASS).unwrap_or("?").to_string()).or_default();
            let at = m.timestamp().to_millis();
            t.count += 1;
            t.oldest = t.oldest.min(at).or(at);
            t.newest = t.newest.max(at);
        }
        rows.extend(per_class.into_iter().map(|(class, t)| (format!("{input}.dlq"), class, t)));
    }
    Ok(rows)
}

/// What `replay` did (or, dry, would do).
#[derive(Debug, Default, PartialEq)]
pub struct Replayed {
    pub replayed: usize,
    /// Dead letters whose value was cut to fit the dead-letter topic: they cannot be replayed.
    pub truncated: usize,
}

/// Put the dead letters of `input` (selected by error class and time) back on `input`, with
/// their original key, value and headers, in one transaction.
pub fn replay(
    cfg: &Config,
    input: &str,
    class: Option<&str>,
    since: Option<Timestamp>,
    dry_run: bool,
) -> anyhow::Result<Replayed> {
    let letters = read_all(cfg, &cfg.topic(&format!("{input}.dlq")))?;
    let chosen: Vec<&OwnedMessage> = letters
        .iter()
        .filter(|m| class.is_none_or(|c| header(m, CLASS) == Some(c)))
        .filter(|m| since.is_none_or(|s| m.timestamp().to_millis().is_some_and(|t| t >= s.0)))
        .collect();
    let (whole, cut): (Vec<&OwnedMessage>, Vec<&OwnedMessage>) =
        chosen.into_iter().partition(|m| header(m, "__gzac.errors.value.size").is_none());
    let done = Replayed { replayed: whole.len(), truncated: cut.len() };
    if dry_run || whole.is_empty() {
        return Ok(done);
    }
    let target = cfg.topic(input);
    let producer: ThreadedProducer<DefaultProducerContext> = cfg
        .producer_config()
        .set("transactional.id", format!("{}dlq-replay-{}", cfg.own_prefix(), uuid::Uuid::new_v4()))
        // The partitioner the bridge uses: a replayed repartition record lands where its key's
        // state lives (murmur2), and an input where a Java producer would have put it.
        .set("partitioner", "murmur2_random")
        .create()?;
    let t = Duration::from_secs(30);
    producer.init_transactions(t)?;
    producer.begin_transaction()?;
    for m in whole {
        let mut headers = OwnedHeaders::new();
        for h in m.headers().into_iter().flat_map(|h| h.iter()) {
            if !ADDED.iter().any(|p| h.key.starts_with(p)) {
                headers = headers.insert(Header { key: h.key, value: h.value });
            }
        }
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&target).headers(headers);
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Some(v) = m.payload() {
            rec = rec.payload(v);
        }
        producer.send(rec).map_err(|(e, _)| e)?;
    }
    producer.commit_transaction(t)?;
    Ok(done)
}
