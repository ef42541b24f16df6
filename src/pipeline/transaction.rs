//! The transactional producer: its delivery reports, the error classes of a step, backoff, the
//! open transaction, and begin → send offsets → commit (or abort and rewind), each blocking
//! call under the watchdog.

use super::*;

/// What a produced record was made for: an input record (partition, offset), timer work, or
/// the dead letter of an input record. A refused one is handled by what it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Origin {
    Input(Slot, i64),
    Timer,
    DeadLetter(Slot, i64),
}

/// Delivery reports of the transactional producer: outputs the broker refused for good.
#[derive(Default)]
pub(super) struct Deliveries {
    pub(super) refused: Mutex<Vec<(Origin, String)>>,
    pub(super) unauthorised: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Origin>;
    fn delivery(&self, result: &DeliveryResult<'_>, origin: Box<Origin>) {
        if let Err((e, m)) = result {
            let code = e.rdkafka_error_code();
            if let Some(hint) = code.and_then(unfixable) {
                *lock(&self.unauthorised) = Some(format!("writing {}: {e} — {hint}", m.topic()));
            } else if code.is_some_and(refused_for_good) {
                lock(&self.refused).push((*origin, format!("{} refused the output: {e}", m.topic())));
            }
        }
    }
}

pub(super) type TxProducer = Guarded<Deliveries>;

/// The longest a single transactional call may wait (it is called again while time is left):
/// short, so that a call librdkafka does not return from is noticed within seconds.
pub(super) const ATTEMPT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    /// Broker or registry unavailable, or an abortable transaction error: abort, rewind, back
    /// off, try again.
    #[error("transient: {0}")]
    Transient(String),
    /// The producer is unusable or a commit's outcome is unknown: a new producer, the state of
    /// the assigned partitions rebuilt from the changelog, read again from the committed offsets.
    #[error("producer unusable: {0}")]
    Fatal(String),
    /// Retrying cannot fix it (credentials, ACLs, a second instance with our id): the route stops.
    #[error("{0}")]
    Stop(String),
}

/// A Kafka error by its class; `stats` keeps an ACL refusal right after start from stopping.
pub(super) fn classify(what: &str, e: &KafkaError, stats: &Stats) -> StepError {
    if let Some(hint) = stops(stats, e.rdkafka_error_code()) {
        return StepError::Stop(format!("{what}: {e} — {hint}"));
    }
    match e {
        KafkaError::Transaction(re) if re.is_fatal() => StepError::Fatal(format!("{what}: {e}")),
        _ => StepError::Transient(format!("{what}: {e}")),
    }
}

/// The open transaction: when it began, the next offset per input partition, records in it.
pub(super) struct Open {
    pub(super) started: Instant,
    pub(super) offsets: BTreeMap<Slot, i64>,
    pub(super) records: usize,
    /// Output records sent in it, dead-letter classes, and the inputs' timestamps (ms): metrics
    /// once it commits.
    pub(super) outputs: u64,
    /// Changelog records sent in it.
    pub(super) state_writes: u64,
    pub(super) classes: Vec<&'static str>,
    /// Per municipality (index in `served`): input records (not timer work) in it, and how many
    /// of them went to the dead-letter topic.
    pub(super) by_served: BTreeMap<usize, (u64, u64)>,
    pub(super) input_times: Vec<i64>,
}

/// A transactional producer, initialised: `init_transactions` fences a predecessor with the same
/// id (a crashed process, or this route's own failed producer) and aborts or completes its open
/// transaction. `None` when shutdown came first.
pub(super) fn new_producer(
    cfg: &Config,
    transactional_id: &str,
    message_max_bytes: usize,
    shutdown: &AtomicBool,
    backoff: &mut Backoff,
    stats: &Stats,
) -> Result<Option<TxProducer>, StepError> {
    let mut config = cfg.producer_config();
    if !cfg.kafka.contains_key("retry.backoff.ms") && !cfg.kafka_producer.contains_key("retry.backoff.ms") {
        // A transaction's first request after a commit is often answered CONCURRENT_TRANSACTIONS
        // while the markers are written; librdkafka's default 100 ms backoff would add to every
        // transaction.
        config.set("retry.backoff.ms", "10");
    }
    if !cfg.kafka.contains_key("partitioner") && !cfg.kafka_producer.contains_key("partitioner") {
        // Java's partitioner (murmur2) rather than librdkafka's crc32, so that a Valtimo/Spring
        // consumer finds a key in the partition its own producers would put it in.
        config.set("partitioner", "murmur2_random");
    }
    if config.get("linger.ms").is_none() {
        // A transaction is committed every `batch_max_interval`: waiting longer per batch of
        // records only adds latency (librdkafka's default is 5 ms too; set it to be sure).
        config.set("linger.ms", "5");
    }
    let timeout = cfg.pipeline.transaction_timeout;
    let producer: ThreadedProducer<Deliveries> = config
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", timeout.as_millis().to_string())
        .set("message.max.bytes", message_max_bytes.to_string())
        .create_with_context(Deliveries::default())
        .map_err(|e| StepError::Stop(format!("cannot create the producer: {e}")))?;
    let mut producer = Guarded::new(producer, transactional_id)
        .map_err(|e| StepError::Stop(format!("cannot start the producer's thread: {e}")))?;
    loop {
        let attempt = timeout.min(ATTEMPT * 2);
        let init = producer.call("init_transactions", attempt, shutdown, |p, t| p.init_transactions(t));
        match init {
            Ok(Ok(())) => return Ok(Some(producer)),
            Err(hung) => {
                // A producer stuck in init is given up like any other: a new one takes its id.
                error!(transactional_id, error = %hung, "producer hung; making a new one");
                if shutdown.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                let fresh: ThreadedProducer<Deliveries> = config
                    .create_with_context(Deliveries::default())
                    .map_err(|e| StepError::Stop(format!("cannot create the producer: {e}")))?;
                producer = Guarded::new(fresh, transactional_id)
                    .map_err(|e| StepError::Stop(format!("cannot start the producer's thread: {e}")))?;
            }
            Ok(Err(e)) => {
                let what = format!("init_transactions for transactional id {transactional_id}");
                if let StepError::Stop(m) = classify(&what, &e, stats) {
                    return Err(StepError::Stop(m));
                }
                warn!(transactional_id, error = %e, "init_transactions failed, retrying");
                backoff.wait(shutdown);
                if shutdown.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
        }
    }
}

impl<R: Route> Pipeline<R> {
    /// A blocking transactional call under the watchdog. Hung, the producer is given up at once
    /// (a new one fences it) and health says so.
    pub(super) fn guarded(
        &self,
        what: &'static str,
        timeout: Duration,
        op: impl FnOnce(&ThreadedProducer<Deliveries>, Duration) -> KafkaResult<()> + Send + 'static,
    ) -> Result<KafkaResult<()>, StepError> {
        self.producer.call(what, timeout, &self.shutdown, op).map_err(|hung: Hung| {
            let m = format!("{hung}; giving the producer up");
            error!(route = self.name, transactional_id = self.transactional_id.as_str(), "{m}");
            self.stats.hung(&m);
            StepError::Fatal(m)
        })
    }

    pub(super) fn begin(&mut self) -> Result<(), StepError> {
        if self.open.is_none() {
            // begin_transaction is local: it fails only when the producer is in a state we did not
            // expect, which a new producer clears.
            self.producer.get().begin_transaction().map_err(|e| StepError::Fatal(format!("begin_transaction: {e}")))?;
            self.open = Some(Open {
                started: Instant::now(),
                offsets: BTreeMap::new(),
                records: 0,
                outputs: 0,
                state_writes: 0,
                classes: Vec::new(),
                by_served: BTreeMap::new(),
                input_times: Vec::new(),
            });
        }
        Ok(())
    }

    pub(super) fn open_mut(&mut self) -> &mut Open {
        self.open.as_mut().expect("a transaction is open")
    }

    /// Offsets to the transaction, wait for deliveries, commit — each error by its class: a
    /// retriable one is retried until `transaction_timeout`, an abortable one aborts (the
    /// transaction stays `open` until the abort succeeded), a fatal one or a commit whose outcome
    /// stays unknown replaces the producer and rebuilds state.
    pub(super) fn commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), StepError> {
        let Some(open) = &self.open else {
            return Ok(());
        };
        let deadline = Instant::now() + self.cfg.pipeline.transaction_timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let t0 = Instant::now();
        if !open.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((i, partition), next) in &open.offsets {
                tpl.add_partition_offset(&self.served[*i].input, *partition, Offset::Offset(*next))
                    .map_err(|e| StepError::Transient(e.to_string()))?;
            }
            let tpl = Arc::new(tpl);
            retry_retriable(left, |t| {
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| StepError::Transient("no consumer group metadata yet".into()))?;
                let tpl = tpl.clone();
                self.guarded("send_offsets_to_transaction", t, move |p, t| {
                    p.send_offsets_to_transaction(&tpl, &group, t)
                })
            })?
            .map_err(|e| classify("send_offsets_to_transaction", &e, &self.stats))?;
        }
        let t1 = Instant::now();
        // Wait for the deliveries here: rust-rdkafka's commit flushes by polling in 100 ms slices,
        // which with the producer's own polling thread costs 100 ms a transaction.
        self.await_deliveries(left());
        self.check_deliveries()?;
        match retry_retriable(left, |t| self.guarded("commit_transaction", t, |p, t| p.commit_transaction(t)))? {
            Ok(()) => {}
            Err(KafkaError::Transaction(re)) if re.txn_requires_abort() => {
                self.check_deliveries()?;
                return Err(StepError::Transient(format!("commit_transaction: {re}")));
            }
            Err(e) => {
                if let StepError::Stop(m) = classify("commit_transaction", &e, &self.stats) {
                    return Err(StepError::Stop(m));
                }
                // Fatal, or still retriable at the deadline: whether it landed is unknown.
                return Err(StepError::Fatal(format!("commit_transaction (outcome unknown): {e}")));
            }
        }
        let open = self.open.take().expect("a transaction was open");
        for s in &mut self.served {
            s.store.committed();
        }
        self.stats.rows.store(self.served.iter().map(|s| s.store.len() as i64).sum(), Ordering::Relaxed);
        self.refused.clear();
        self.replaced = 0;
        let (inputs, dead_letters) = open.by_served.values().fold((0, 0), |(n, d), (i, x)| (n + i, d + x));
        self.stats.committed(inputs, dead_letters);
        let now = crate::model::Timestamp::now().0;
        self.stats.outputs.inc_by(open.outputs);
        self.stats.state_writes.fetch_add(open.state_writes, Ordering::Relaxed);
        self.stats.commit_seconds.observe(t0.elapsed().as_secs_f64());
        if inputs > 0 {
            self.stats.batch_records.observe(inputs as f64);
        }
        for t in &open.input_times {
            self.stats.end_to_end_seconds.observe((now - t).max(0) as f64 / 1000.0);
        }
        for (i, (inputs, dead)) in &open.by_served {
            let label = |result: &str| {
                vec![
                    ("gemeente".to_string(), self.served[*i].gemeente.clone()),
                    ("result".to_string(), result.to_string()),
                ]
            };
            self.stats.by_gemeente.get_or_create(&label("processed")).inc_by(inputs - dead);
            if *dead > 0 {
                self.stats.by_gemeente.get_or_create(&label("dead_letter")).inc_by(*dead);
            }
        }
        for class in &open.classes {
            self.stats.dead_letters_by_class.get_or_create(&vec![("class".to_string(), class.to_string())]).inc();
        }
        debug!(
            route = self.name,
            records = open.records,
            open_ms = open.started.elapsed().as_millis() as u64,
            offsets_ms = (t1 - t0).as_millis() as u64,
            commit_ms = t1.elapsed().as_millis() as u64,
            "transaction committed"
        );
        Ok(())
    }

    /// Outputs the broker refused for good make their inputs dead letters on the next read; an
    /// ACL the producer lacks stops the route.
    pub(super) fn check_deliveries(&mut self) -> Result<(), StepError> {
        let ctx = self.producer.get().context();
        if let Some(m) = lock(&ctx.unauthorised).take() {
            return Err(StepError::Stop(m));
        }
        let refused = std::mem::take(&mut *lock(&ctx.refused));
        if refused.is_empty() {
            return Ok(());
        }
        for (origin, reason) in refused {
            match origin {
                Origin::Input(..) => {
                    self.refused.insert(origin, reason);
                }
                Origin::Timer => {
                    return Err(StepError::Stop(format!("route {}: timer output refused: {reason}", self.name)))
                }
                Origin::DeadLetter((i, partition), offset) => {
                    return Err(StepError::Stop(format!(
                        "route {}: the dead letter of {}/{partition}/{offset} was refused ({reason}); \
                         raise max.message.bytes of {} (nothing was lost: the record is read again)",
                        self.name, self.served[i].input, self.served[i].dlq
                    )))
                }
            }
        }
        Err(StepError::Transient(format!(
            "{} output(s) refused by the broker; their inputs go to the dead-letter topic",
            self.refused.len()
        )))
    }

    /// Wait (at most `bound`) until every record sent has been acknowledged or failed.
    pub(super) fn await_deliveries(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while self.producer.get().in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Abort the open transaction (if any), undo its state changes, and seek every assigned
    /// partition back to its committed offset, so the aborted records are read again. The
    /// transaction stays open until its abort succeeded, so a failed abort is tried again.
    pub(super) fn abort_and_rewind(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), StepError> {
        let timeout = self.cfg.pipeline.transaction_timeout;
        if self.open.is_some() {
            // Let in-flight records land first: an abort sent while librdkafka is still adding
            // the transaction's partitions has been answered INVALID_TXN_STATE (a fatal error).
            self.await_deliveries(Duration::from_secs(5).min(timeout));
            match self.guarded("abort_transaction", ATTEMPT.min(timeout), |p, t| p.abort_transaction(t))? {
                Ok(()) => {}
                Err(KafkaError::Transaction(re)) if re.is_retriable() => {
                    return Err(StepError::Transient(format!("abort_transaction: {re}")))
                }
                Err(e) => return Err(StepError::Fatal(format!("abort_transaction: {e}"))),
            }
            self.open = None;
            self.stats.aborts.fetch_add(1, Ordering::Relaxed);
        }
        for s in &mut self.served {
            s.store.rolled_back();
        }
        let rewind = || -> KafkaResult<()> {
            let assigned = consumer.assignment()?;
            if assigned.count() == 0 {
                return Ok(());
            }
            let committed = consumer.committed_offsets(assigned, timeout)?;
            let mut tpl = TopicPartitionList::new();
            for e in committed.elements() {
                let offset = match e.offset() {
                    Offset::Offset(n) => Offset::Offset(n),
                    _ => Offset::Beginning,
                };
                tpl.add_partition_offset(e.topic(), e.partition(), offset)?;
            }
            consumer.seek_partitions(tpl, timeout)?;
            Ok(())
        };
        rewind().map_err(|e| classify("rewinding to the committed offsets", &e, &self.stats))
    }
}

/// Call `op` (with at most `ATTEMPT` to take) again while it fails with a retriable error and
/// time is left.
pub(super) fn retry_retriable(
    left: impl Fn() -> Duration,
    mut op: impl FnMut(Duration) -> Result<KafkaResult<()>, StepError>,
) -> Result<KafkaResult<()>, StepError> {
    loop {
        match op(left().min(ATTEMPT))? {
            Err(KafkaError::Transaction(re)) if re.is_retriable() && !left().is_zero() => {
                debug!(error = %re, "retriable transaction error, calling again");
                std::thread::sleep(Duration::from_millis(100).min(left()));
            }
            other => return Ok(other),
        }
    }
}
