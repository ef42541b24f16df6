//! Getting back to a clean place: after a failed step (abort, or a new producer and state
//! rebuilt), a lost membership, a rebalance (restore of the assigned partitions).

use super::*;

impl<R: Route> Pipeline<R> {
    /// The group membership is gone (fenced, or left to be assigned afresh): abort what is open,
    /// by a new producer when the abort fails, and forget every partition's state — the next
    /// assignment restores what it brings.
    pub(super) fn membership_lost(&mut self, shutdown: &AtomicBool, backoff: &mut Backoff) -> Result<(), StepError> {
        if self.open.is_some() {
            self.await_deliveries(Duration::from_secs(5).min(self.cfg.pipeline.transaction_timeout));
            let abort = self.producer.call("abort_transaction", ATTEMPT, shutdown, |p, t| p.abort_transaction(t));
            if !matches!(abort, Ok(Ok(()))) {
                // The new producer's init_transactions aborts what the old one left open.
                if let Some(p) = new_producer(
                    &self.cfg,
                    &self.transactional_id,
                    self.limits.producer,
                    shutdown,
                    backoff,
                    &self.stats,
                )? {
                    self.producer = p;
                }
            }
            self.open = None;
            self.stats.aborts.fetch_add(1, Ordering::Relaxed);
        }
        for s in &mut self.served {
            s.store.rolled_back();
            s.store.forget_all();
        }
        self.refused.clear();
        Ok(())
    }

    /// After a failed step, get back to a clean place: aborted and rewound, or a new producer with
    /// state rebuilt. Returns an error only for what retrying cannot fix.
    pub(super) fn handle_failure(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
        mut e: StepError,
    ) -> anyhow::Result<()> {
        loop {
            if shutdown.load(Ordering::SeqCst) {
                // Nothing was committed past the failed records: the next start reads them again.
                return Ok(());
            }
            self.stats.retrying(&e.to_string());
            e = match e {
                StepError::Stop(m) => anyhow::bail!("{m}"),
                StepError::Transient(m) => {
                    warn!(route = self.name, error = %m, "transaction aborted, retrying");
                    match self.abort_and_rewind(consumer) {
                        Ok(()) => return Ok(()),
                        Err(next) => {
                            backoff.wait(shutdown);
                            next
                        }
                    }
                }
                StepError::Fatal(m) => {
                    error!(route = self.name, error = %m, "producer unusable; replacing it and rebuilding state");
                    match self.replace_producer(consumer, shutdown, backoff) {
                        Ok(()) => return Ok(()),
                        Err(next) => {
                            backoff.wait(shutdown);
                            next
                        }
                    }
                }
            };
        }
    }

    /// A new producer with the same transactional id (which aborts or completes whatever the old
    /// one left open), then the assigned partitions' state rebuilt from the changelog and the
    /// consumer rewound: whether the last commit landed or not, memory now agrees with Kafka.
    pub(super) fn replace_producer(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
    ) -> Result<(), StepError> {
        self.replaced += 1;
        // Replaced again and again with the broker up all along: another process uses our
        // transactional id. During an outage replacing is what gets the route back: never stop.
        if self.replaced > 5 && !consumer.context().broker_was_down.load(Ordering::Relaxed) {
            return Err(StepError::Stop(format!(
                "the producer with transactional id {} was replaced {} times without a commit in between: \
                 another process probably uses the same instance_id; give every instance its own",
                self.transactional_id,
                self.replaced - 1
            )));
        }
        if self.open.take().is_some() {
            self.stats.aborts.fetch_add(1, Ordering::Relaxed);
        }
        for s in &mut self.served {
            s.store.rolled_back();
        }
        match new_producer(&self.cfg, &self.transactional_id, self.limits.producer, shutdown, backoff, &self.stats)? {
            Some(p) => self.producer = p,
            None => return Ok(()),
        }
        let assigned =
            partitions_of(&consumer.assignment().map_err(|e| classify("reading the assignment", &e, &self.stats))?);
        self.restore(assigned, shutdown, backoff);
        self.abort_and_rewind(consumer)
    }

    /// Act on what the group did during the last poll. A revocation while a transaction is open
    /// aborts it (we must not commit output for partitions we no longer own): Ok(false) then.
    /// Newly assigned partitions get their state rebuilt before any of their records is processed.
    pub(super) fn after_rebalance(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shutdown: &AtomicBool,
        backoff: &mut Backoff,
    ) -> Result<bool, StepError> {
        let revoked = std::mem::take(&mut *lock(&consumer.context().revoked));
        let assigned = std::mem::take(&mut *lock(&consumer.context().assigned));
        let mut outcome = Ok(true);
        if !revoked.is_empty() {
            if self.open.is_some() {
                info!(route = self.name, "rebalance: aborting the open transaction");
                // A failed abort is handled by the caller; the partitions change hands regardless.
                outcome = self.abort_and_rewind(consumer).map(|()| false);
            }
            for (i, partitions) in self.per_served(revoked) {
                self.served[i].store.forget(&partitions);
            }
        }
        self.restore(assigned, shutdown, backoff);
        outcome
    }

    /// Topic partitions grouped by the municipality whose input they are (others are ignored:
    /// a stale assignment, handled by the loop).
    fn per_served(&self, partitions: Vec<(String, i32)>) -> BTreeMap<usize, Vec<i32>> {
        let mut out: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
        for (topic, p) in partitions {
            if let Some(i) = self.by_topic.get(&topic) {
                out.entry(*i).or_default().push(p);
            }
        }
        out
    }

    /// Rebuild the state of `partitions` from their changelogs, retrying until it succeeds.
    pub(super) fn restore(&mut self, partitions: Vec<(String, i32)>, shutdown: &AtomicBool, backoff: &mut Backoff) {
        let per_served = self.per_served(partitions);
        if per_served.is_empty() || self.served[0].route.changelog().is_none() {
            return;
        }
        self.stats.restoring.store(true, Ordering::SeqCst);
        let reader = self.cfg.reader_config(&format!("{}restore", self.cfg.own_prefix()));
        // One reader for every municipality's changelog, each in turn (not one per municipality).
        let mut consumer: Option<BaseConsumer> = None;
        for (i, partitions) in per_served {
            let s = &mut self.served[i];
            let Some(changelog) = s.route.changelog().map(str::to_string) else { continue };
            loop {
                // A reader that failed is not used again.
                let restored = match consumer.take().map_or_else(|| reader.create(), Ok) {
                    Ok(c) => {
                        let r = s.store.restore(&c, &changelog, &partitions);
                        consumer = r.is_ok().then_some(c);
                        r
                    }
                    Err(e) => Err(e.into()),
                };
                match restored {
                    Ok(skipped) => {
                        if skipped > 0 {
                            error!(
                                route = self.name,
                                gemeente = s.gemeente.as_str(),
                                skipped,
                                "changelog entries that no longer parse were skipped"
                            );
                            self.stats.bad_state_rows.fetch_add(skipped, Ordering::Relaxed);
                        }
                        break;
                    }
                    Err(e) => {
                        self.stats.retrying(&format!("restoring state: {e:#}"));
                        warn!(route = self.name, gemeente = s.gemeente.as_str(), error = %format!("{e:#}"),
                            "restoring state failed, retrying");
                        backoff.wait(shutdown);
                        if shutdown.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
            }
            info!(route = self.name, gemeente = s.gemeente.as_str(), partitions = ?partitions, entries = s.store.len(), "state restored");
        }
        self.stats.rows.store(self.served.iter().map(|s| s.store.len() as i64).sum(), Ordering::Relaxed);
        self.stats.restoring.store(false, Ordering::SeqCst);
    }
}
