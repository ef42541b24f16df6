//! Start-up steps that wait out a broker or ACLs on their way: partition ids and counts, and
//! the retry loop every start-up step runs in.

use super::*;

/// An error no retry fixes (a missing ACL): `with_retries` gives up on it at once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unfixable(pub String);

/// The partition ids of `topic`. A topic the principal may not see is `Unfixable` (it names the
/// ACL); one that does not exist (yet) is an ordinary error, retried.
pub(crate) fn partition_ids(consumer: &BaseConsumer<GroupContext>, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let t = md.topics().first();
    if let Some(RDKafkaErrorCode::TopicAuthorizationFailed) = t.and_then(|t| t.error()).map(RDKafkaErrorCode::from) {
        return Err(Unfixable(format!(
            "the broker does not let the bridge's principal see topic {topic}: grant it Describe and Read/Write there (`acls plan --role bridge`)"
        ))
        .into());
    }
    let ids: Vec<i32> = t.map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    anyhow::ensure!(!ids.is_empty(), "topic {topic} does not exist; run `topics apply`");
    Ok(ids)
}

/// How long one metadata request may take before it is tried again: short, so that a refused
/// credential (seen between attempts) stops the route within seconds.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Retry a start-up step that can fail for a while (metadata of a topic just created, a broker
/// that is down) until it succeeds or shutdown — however long the outage: the component stays not
/// ready, and `stats` says why (so `/health` fails once it lasts past `stall_timeout`).
/// An error no retry fixes (a missing ACL, refused credentials) is returned at once.
pub fn with_retries<T>(
    what: &str,
    shutdown: &AtomicBool,
    stats: &Stats,
    unfixable: &dyn Fn() -> Option<String>,
    mut step: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut warned = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match step() {
            Ok(v) => {
                stats.recovered();
                return Ok(v);
            }
            // Refused credentials or a missing ACL: no retry helps, say what to do at once —
            // except a missing ACL in the first minute, which may be one just created.
            Err(e)
                if e.is::<Unfixable>()
                    && !authorisation_may_lag(stats, Some(RDKafkaErrorCode::TopicAuthorizationFailed)) =>
            {
                return Err(e)
            }
            Err(e) if let Some(why) = unfixable() => return Err(e.context(why)),
            Err(_) if shutdown.load(Ordering::SeqCst) => anyhow::bail!("{what}: stopped while retrying"),
            Err(e) => {
                stats.retrying(&format!("{what}: {e:#}"));
                if warned.elapsed() >= Duration::from_secs(30) {
                    warned = Instant::now();
                    warn!(error = %format!("{e:#}"), waited_s = started.elapsed().as_secs(), "{what} still failing, retrying");
                } else {
                    debug!(error = %format!("{e:#}"), "{what} failed, retrying");
                }
                backoff.wait(shutdown);
            }
        }
    }
}

/// What a client's error callbacks said that no retry fixes (serves them first: librdkafka
/// reports refused credentials as an error event, not as the failed call's error).
pub(crate) fn unfixable_of(consumer: &BaseConsumer<GroupContext>) -> Option<String> {
    // A consumer returns error events from poll (nothing is assigned yet: no records come).
    while let Some(polled) = consumer.poll(Duration::ZERO) {
        if let Err(e) = polled {
            if let Some(hint) = stops(&consumer.context().stats, e.rdkafka_error_code()) {
                return Some(format!("{}: {e} — {hint}", consumer.context().name));
            }
        }
    }
    consumer.context().take_fatal()
}

pub fn dlq_topic(input: &str) -> String {
    format!("{input}.dlq")
}
