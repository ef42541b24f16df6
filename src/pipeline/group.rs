//! The route's consumer group: what librdkafka's callbacks report (rebalances, fencing,
//! statistics, errors) and how errors are classed (what no retry fixes, what an ACL on its
//! way may still fix).

use super::*;

/// Records what the group did during `poll`, so the loop can act on it on its own thread, and
/// turns librdkafka's statistics into the component's lag and broker state. Also used by the
/// global tables' readers (which assign, so only the statistics matter there).
pub(crate) struct GroupContext {
    pub(crate) name: &'static str,
    /// The topics it reads (every municipality's input of the route; a table's topics).
    pub(crate) topics: Vec<String>,
    pub(crate) revoked: Mutex<Vec<(String, i32)>>,
    pub(crate) assigned: Mutex<Vec<(String, i32)>>,
    pub(crate) stats: Arc<Stats>,
    /// A client error that retrying cannot fix (authentication, a missing ACL).
    pub(crate) fatal: Mutex<Option<String>>,
    /// The static member was fenced (`FENCED_INSTANCE_ID`): its own session ran out during an
    /// outage, or a second instance uses our `instance_id`. The consumer is unusable either way.
    pub(crate) fenced: Mutex<Option<String>>,
    /// Topics other than `topics` in the last assignment: a stale assignment of a static member
    /// that read other topics before (an upgrade, another prefix).
    pub(crate) foreign: Mutex<Vec<String>>,
    /// The inputs of which the last assignment had no partition (set at every assignment).
    pub(crate) unassigned: Mutex<Option<Vec<String>>>,
    /// librdkafka's statistics saw no broker up at some point since this was last cleared.
    pub(crate) broker_was_down: AtomicBool,
    /// The partitions the last statistics reported lag for (their gauges are dropped when gone).
    lag_partitions: Mutex<Vec<(String, i32)>>,
}

impl GroupContext {
    pub(crate) fn new(name: &'static str, topics: &[String], stats: Arc<Stats>) -> Self {
        GroupContext {
            name,
            topics: topics.to_vec(),
            revoked: Mutex::default(),
            assigned: Mutex::default(),
            stats,
            fatal: Mutex::default(),
            fenced: Mutex::default(),
            foreign: Mutex::default(),
            unassigned: Mutex::default(),
            broker_was_down: AtomicBool::new(false),
            lag_partitions: Mutex::default(),
        }
    }
    pub(crate) fn take_fatal(&self) -> Option<String> {
        lock(&self.fatal).take()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

impl ClientContext for GroupContext {
    /// librdkafka's log, as rust-rdkafka logs it; and refused credentials, which librdkafka only
    /// logs (no error event), become the route's fatal error.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if message.contains("SASL authentication error") {
            *lock(&self.fatal) = Some(format!(
                "{}: {message} — {}",
                self.name,
                unfixable(RDKafkaErrorCode::Authentication).unwrap_or_default()
            ));
        }
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
            L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
        }
    }
    fn stats(&self, s: Statistics) {
        let up = s.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
        self.stats.broker_up.store(up, Ordering::Relaxed);
        if !up {
            self.broker_was_down.store(true, Ordering::Relaxed);
        }
        let mut lag = 0i64;
        let label =
            |(t, p): &(String, i32)| vec![("partition".to_string(), p.to_string()), ("topic".to_string(), t.clone())];
        let mut seen = Vec::new();
        for (name, topic) in s.topics.iter().filter(|(name, _)| self.topics.contains(name)) {
            for p in topic.partitions.values().filter(|p| p.partition >= 0 && p.desired) {
                let at = [p.app_offset, p.committed_offset, p.lo_offset].into_iter().find(|o| *o >= 0);
                if let (Some(at), true) = (at, p.ls_offset >= 0) {
                    let behind = (p.ls_offset - at).max(0);
                    lag += behind;
                    let tp = (name.clone(), p.partition);
                    self.stats.partition_lag.get_or_create(&label(&tp)).set(behind);
                    seen.push(tp);
                }
            }
        }
        // Set in place (a scrape never sees a half-filled family); partitions gone are dropped.
        let mut last = lock(&self.lag_partitions);
        for gone in last.iter().filter(|p| !seen.contains(p)) {
            self.stats.partition_lag.remove(&label(gone));
        }
        // No assigned partition with a known position: the lag stays unknown (health watches that).
        if !seen.is_empty() {
            self.stats.set_lag(lag);
        }
        *last = seen;
    }
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        // A fenced static member: this consumer is done for, but a new one under the same
        // group.instance.id may rejoin (the loop decides; see `Exit::Fenced`).
        if code == Some(RDKafkaErrorCode::FencedInstanceId) {
            *lock(&self.fenced) = Some(format!("{}: {reason}", self.name));
            return;
        }
        match stops(&self.stats, code) {
            Some(hint) => *lock(&self.fatal) = Some(format!("{}: {reason} — {hint}", self.name)),
            // A fatal consumer error wraps its cause, which the client names by code
            // (`fatal_error`): the group loop reads it there; a table reader stops on it.
            None if code == Some(RDKafkaErrorCode::Fatal) => {
                *lock(&self.fatal) = Some(format!("{}: {reason}", self.name))
            }
            // librdkafka logs these itself; it reconnects and retries on its own.
            None => debug!(component = self.name, error = %error, reason, "kafka client error"),
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            info!(route = self.name, partitions = ?partitions_of(tpl), "partitions revoked");
            self.stats.assigned(0);
            lock(&self.revoked).extend(partitions_of(tpl));
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(route = self.name, partitions = ?partitions_of(tpl), "partitions assigned");
                let (ours, theirs): (Vec<_>, Vec<_>) =
                    tpl.elements().into_iter().partition(|e| self.topics.iter().any(|t| t == e.topic()));
                lock(&self.assigned).extend(ours.iter().map(|e| (e.topic().to_string(), e.partition())));
                self.stats.assigned(ours.len());
                let mut foreign = lock(&self.foreign);
                foreign.extend(theirs.iter().map(|e| e.topic().to_string()));
                foreign.dedup();
                let lacking = self.topics.iter().filter(|t| !ours.iter().any(|e| e.topic() == t.as_str()));
                *lock(&self.unassigned) = Some(lacking.cloned().collect());
            }
            Rebalance::Error(e) => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::FencedInstanceId) {
                    *lock(&self.fenced) = Some(format!("{}: {e}", self.name));
                } else if let Some(hint) = stops(&self.stats, e.rdkafka_error_code()) {
                    *lock(&self.fatal) = Some(format!("{}: {e} — {hint}", self.name));
                }
            }
            _ => {}
        }
    }
}

/// A refusal by an ACL within `pipeline.authorisation_grace` of start, while ACLs just created
/// (a deploy job's `acls apply`, then the pods) may still be on their way: retried, not a stop.
/// What the operator must fix when `code` is an error no retry fixes — `None` for any other, and
/// for an ACL refusal within the grace after start (then `stats` says it is waited for).
pub(super) fn stops(stats: &Stats, code: Option<RDKafkaErrorCode>) -> Option<&'static str> {
    let hint = code.and_then(unfixable)?;
    if authorisation_may_lag(stats, code) {
        warn!(error = ?code, "refused by an ACL; waiting for ACLs just created to arrive");
        stats.retrying(&format!("{code:?}: waiting for ACLs just created to arrive — {hint}"));
        return None;
    }
    Some(hint)
}

pub(super) fn authorisation_may_lag(stats: &Stats, code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    let authz = [
        C::TopicAuthorizationFailed,
        C::GroupAuthorizationFailed,
        C::TransactionalIdAuthorizationFailed,
        C::ClusterAuthorizationFailed,
    ];
    code.is_some_and(|c| authz.contains(&c)) && stats.in_grace()
}

/// Kafka errors that no retry can fix, with what the operator has to do.
pub(super) fn unfixable(code: RDKafkaErrorCode) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    Some(match code {
        C::Authentication | C::SaslAuthenticationFailed => {
            "the broker refused the bridge's credentials: check sasl.username / sasl.password"
        }
        C::TransactionalIdAuthorizationFailed => {
            "grant the principal Write and Describe on its transactional-id prefix (`<group_id>.`; `acls plan`)"
        }
        C::TopicAuthorizationFailed => "grant the bridge's principal Read/Write on the route's topics",
        C::GroupAuthorizationFailed => "grant the bridge's principal Read on its consumer groups (`<group_id>.`)",
        C::ClusterAuthorizationFailed => "grant the bridge's principal IdempotentWrite on the cluster",
        C::FencedInstanceId => {
            "another running instance uses the same instance_id (group.instance.id); give every instance its own"
        }
        _ => return None,
    })
}

/// Broker answers on a produced record that a retry will never change: the input that made it
/// is dead-lettered instead.
pub(super) fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(code, C::MessageSizeTooLarge | C::InvalidRecord | C::InvalidMessage | C::MessageBatchTooLarge)
}
