//! Reading a topic up to the end it had when reading began — what restoring state, loading a
//! reference table, `tail` and `dlq list` all do: the ends (high watermarks) first, then read
//! until every position has reached them.

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::Offset;
use std::collections::HashMap;
use std::time::Duration;

/// Where each of `partitions` of `topic` ends now (its high watermark), for those that hold any
/// record: a reader is caught up once its position reaches these ends (by topic and partition).
pub(crate) fn ends_of<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    topic: &str,
    partitions: &[i32],
) -> KafkaResult<HashMap<(String, i32), i64>> {
    let mut ends = HashMap::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(30))?;
        if high > low {
            ends.insert((topic.to_string(), *p), high);
        }
    }
    Ok(ends)
}

/// Remove from `ends` the partitions whose position has reached its end. With read_committed a
/// position waits at a transaction still open, so this also waits for it to finish.
pub(crate) fn drop_reached<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    ends: &mut HashMap<(String, i32), i64>,
) -> KafkaResult<()> {
    for pos in consumer.position()?.elements() {
        let at = (pos.topic().to_string(), pos.partition());
        if let (Offset::Offset(n), Some(end)) = (pos.offset(), ends.get(&at)) {
            if n >= *end {
                ends.remove(&at);
            }
        }
    }
    Ok(())
}
