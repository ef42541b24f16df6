//! One record through the route: decode, route, encode, size checks, dead letters, timer work,
//! and the sends that put its outputs and state changes into the open transaction.

use super::*;

impl<R: Route> Pipeline<R> {
    /// Decode, route and encode one record, and queue its outputs, state changes (or its dead letter).
    pub(super) fn process(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), StepError> {
        let Some(&i) = self.by_topic.get(msg.topic()) else { return Ok(()) };
        self.begin()?;
        let slot = (i, msg.partition());
        let origin = Origin::Input(slot, msg.offset());
        let cause = Cause {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            traceparent: find(msg.headers(), "traceparent").filter(|tp| valid_traceparent(tp)),
        };
        let mark = self.served[i].store.mark();
        let mut result = match self.refused.get(&origin) {
            Some(reason) => Err(CodecError::BadData { class: DeadLetterClass::OutputRefused, message: reason.clone() }),
            None => self.translate(slot, msg.payload(), &cause.link()),
        };
        if result.is_ok() {
            if let Some(e) = self.state_too_large(i, mark) {
                result = Err(e);
            }
        }
        if matches!(result, Err(CodecError::BadData { class: DeadLetterClass::OutputTooLarge, .. })) {
            self.limits_changed(i, mark)?;
        }
        match result {
            Ok(records) => self.send_all(i, records, origin)?,
            Err(CodecError::Transient(e)) => return Err(StepError::Transient(e)),
            Err(CodecError::Stop(e)) => return Err(StepError::Stop(e)),
            Err(CodecError::BadData { class, message }) => {
                self.served[i].store.rollback_to(mark);
                let (route, topic, partition, offset) = (self.name, cause.topic, cause.partition, cause.offset);
                let gemeente = self.served[i].gemeente.as_str();
                if class == DeadLetterClass::BridgeError || class == DeadLetterClass::Panic {
                    // Not the input's fault: it waits on the dead-letter topic for a fixed bridge.
                    error!(route, gemeente, topic, partition, offset, class = class.as_str(), error = %message,
                        "a bug in the bridge: the record is sent to the dead-letter topic, to replay once fixed");
                } else {
                    warn!(
                        route,
                        gemeente,
                        topic,
                        partition,
                        offset,
                        class = class.as_str(),
                        "bad record sent to the dead-letter topic"
                    );
                }
                self.dead_letter(i, msg, &cause, class, &message)?;
                self.open_mut().classes.push(class.as_str());
                self.open_mut().by_served.entry(i).or_default().1 += 1;
            }
        }
        let open = self.open_mut();
        open.input_times.extend(msg.timestamp().to_millis());
        open.offsets.insert(slot, msg.offset() + 1);
        open.records += 1;
        open.by_served.entry(i).or_default().0 += 1;
        Ok(())
    }

    /// A state entry the record made that its changelog would refuse: the record is a dead letter
    /// like one whose output is too large (checked before anything is sent).
    pub(super) fn state_too_large(&self, i: usize, mark: (usize, usize)) -> Option<CodecError> {
        let changelog = self.served[i].route.changelog()?;
        let limit = self.limits.of(changelog);
        let size =
            self.served[i].store.pending_since(mark).map(|(_, k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).max()?;
        (size > limit).then(|| CodecError::BadData {
            class: DeadLetterClass::OutputTooLarge,
            message: format!("its state entry would be {size} bytes; {changelog} takes {limit}"),
        })
    }

    /// Before a record is dead-lettered as too large: read the topics' limits again (at most
    /// every `LIMITS_FRESH`). Raised since, the batch is read again with them — by a new producer
    /// when the producer's own limit must grow.
    pub(super) fn limits_changed(&mut self, i: usize, mark: (usize, usize)) -> Result<(), StepError> {
        if self.limits_read.elapsed() < LIMITS_FRESH {
            return Ok(());
        }
        let mut all = self.written.clone();
        all.extend(self.served.iter().map(|s| s.input.clone()));
        let topics = self.rt.block_on(topic_limits(&self.cfg, &all)).unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the topics' max.message.bytes again; keeping the defaults");
            HashMap::new()
        });
        let fresh = Limits::read(&self.cfg, &self.written, topics);
        self.limits_read = Instant::now();
        if fresh == self.limits {
            return Ok(());
        }
        self.served[i].store.rollback_to(mark);
        let grew = fresh.producer > self.limits.producer;
        self.limits = fresh;
        info!(route = self.name, "the topics' max.message.bytes changed; reading the batch again");
        Err(if grew {
            StepError::Fatal("the producer's message.max.bytes must grow with the topics'".into())
        } else {
            StepError::Transient("the topics' max.message.bytes changed".into())
        })
    }

    /// The original key, value, timestamp and headers plus `__connect.errors.*`; a value too large
    /// for the dead-letter topic is cut to fit, with its full size and SHA-256 in headers.
    pub(super) fn dead_letter(
        &self,
        i: usize,
        msg: &BorrowedMessage<'_>,
        cause: &Cause<'_>,
        class: DeadLetterClass,
        reason: &str,
    ) -> Result<(), StepError> {
        let key = msg.key().unwrap_or_default();
        let mut value = msg.payload();
        let mut headers = dlq_headers(msg.headers(), cause, class, reason);
        let dlq = &self.served[i].dlq;
        let room = self.limits.of(dlq).saturating_sub(record_size(key.len(), 0, &headers) + 200);
        if let Some(v) = value.filter(|v| v.len() > room) {
            headers = truncated_headers(headers, v);
            value = Some(&v[..room]);
        }
        let mut rec: BaseRecord<'_, [u8], [u8], Box<Origin>> =
            BaseRecord::with_opaque_to(dlq, Box::new(Origin::DeadLetter((i, msg.partition()), msg.offset())))
                .headers(headers);
        if msg.key().is_some() {
            rec = rec.key(key);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        if let Some(ts) = msg.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        self.send(rec)
    }

    /// Time-driven work of the route for every municipality, in the current (or a new) transaction.
    pub(super) fn tick(&mut self) -> Result<(), StepError> {
        for i in 0..self.served.len() {
            self.tick_one(i)?;
        }
        let parked = self.served.iter().map(|s| s.store.parked()).sum();
        self.stats.timer_refusals.store(parked, Ordering::Relaxed);
        Ok(())
    }

    fn tick_one(&mut self, i: usize) -> Result<(), StepError> {
        let now = self.cfg.pipeline.clock.now();
        let (name, served) = (self.name, &mut self.served[i]);
        let gemeente = served.gemeente.as_str();
        let mark = served.store.mark();
        let mut ctx = Ctx { now, partition: -1, state: &mut served.store, link: None };
        let route = &mut served.route;
        let outputs = match catch_unwind(AssertUnwindSafe(|| route.tick(&mut ctx))) {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                // Routes refuse a failing item themselves (weigering or parked); what comes back
                // here failed the whole tick, which is tried again at the next.
                served.store.rollback_to(mark);
                match e {
                    RouteError::Bug(_) => error!(route = name, gemeente, error = %e, "timer work failed"),
                    _ => warn!(route = name, gemeente, error = %e, "timer work failed; tried again next tick"),
                }
                return Ok(());
            }
            Err(_) => {
                served.store.rollback_to(mark);
                return Err(StepError::Stop(format!("route {name} ({gemeente}): timer work panicked")));
            }
        };
        let timer = Cause { topic: "timer", partition: -1, offset: -1, traceparent: None }.link();
        let records: Result<Vec<_>, CodecError> = outputs.into_iter().map(|o| self.encode(i, o, &timer)).collect();
        let records = match records {
            Ok(r) => r,
            Err(e) => {
                self.served[i].store.rollback_to(mark);
                warn!(route = name, gemeente = self.served[i].gemeente.as_str(), error = %e, "timer output could not be encoded");
                return Ok(());
            }
        };
        if records.is_empty() && self.served[i].store.pending_len() == 0 {
            return Ok(());
        }
        self.begin()?;
        let n = records.len();
        self.send_all(i, records, Origin::Timer)?;
        self.open_mut().records += n.max(1);
        Ok(())
    }

    /// An output, encoded, with its headers; refused when no topic would take it. `input` is the
    /// record being handled, unless the output names the one that caused it.
    pub(super) fn encode(&self, i: usize, o: Output, input: &Link) -> Result<Encoded, CodecError> {
        let bytes = match &o.value {
            Payload::Avro(r) => self.codec.encode(&o.topic, r.as_ref())?,
            Payload::Raw(b) => b.clone(),
        };
        // The schema the value was written with, as the registry serves it.
        let dataschema = Codec::frame(&bytes).ok().map(|(id, _)| format!("{}/schemas/ids/{id}", self.registry_url));
        let link = o.link.as_ref().unwrap_or(input);
        let headers =
            ce_headers(&o.event, &self.served[i].source, link, dataschema.as_deref(), self.cfg.pipeline.clock.now());
        let size = record_size(o.key.len(), bytes.len(), &headers);
        let limit = self.limits.of(&o.topic);
        if size > limit {
            return Err(CodecError::BadData {
                class: DeadLetterClass::OutputTooLarge,
                message: format!("its record for {} would be {size} bytes; the topic takes {limit}", o.topic),
            });
        }
        Ok(Encoded { output: o, bytes, headers })
    }

    pub(super) fn translate(
        &mut self,
        (i, partition): Slot,
        payload: Option<&[u8]>,
        link: &Link,
    ) -> Result<Vec<Encoded>, CodecError> {
        let bad = |class, message: String| CodecError::BadData { class, message };
        let bytes = payload.ok_or_else(|| bad(DeadLetterClass::NullValue, "the record has no value".into()))?;
        let max = self.limits.input(&self.served[i].input);
        if bytes.len() > max {
            return Err(bad(DeadLetterClass::Oversize, format!("{} bytes, more than the {max} allowed", bytes.len())));
        }
        // A panic on some input is a bug, but it must cost that record only, not the process.
        let now = self.cfg.pipeline.clock.now();
        let served = &mut self.served[i];
        let (route, codec, rt, store) = (&mut served.route, &self.codec, &self.rt, &mut served.store);
        let outputs = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Output>, CodecError> {
            let input = route.decode(&Decoder::new(codec, rt), bytes)?;
            let mut ctx = Ctx { now, partition, state: store, link: Some(link) };
            route.handle(input, &mut ctx).map_err(|e| match e {
                RouteError::BadInput(m) => bad(DeadLetterClass::ProcessingError, m),
                RouteError::Bug(_) => bad(DeadLetterClass::BridgeError, e.to_string()),
                RouteError::Transient(m) => CodecError::Transient(m),
            })
        }))
        .map_err(|p| bad(DeadLetterClass::Panic, panic_text(&p)))??;
        outputs.into_iter().map(|o| self.encode(i, o, link)).collect()
    }

    /// Send a record's outputs, then the state changes it made (to the changelog).
    pub(super) fn send_all(&mut self, i: usize, records: Vec<Encoded>, origin: Origin) -> Result<(), StepError> {
        self.open_mut().outputs += records.len() as u64;
        for Encoded { output, bytes, headers } in records {
            let mut rec = BaseRecord::with_opaque_to(&output.topic, Box::new(origin))
                .key(output.key.as_bytes())
                .payload(&bytes)
                .headers(headers);
            if let Some(p) = output.partition {
                rec = rec.partition(p);
            }
            self.send(rec)?;
        }
        let changes = self.served[i].store.take_pending();
        if let Some(changelog) = self.served[i].route.changelog() {
            let changelog = changelog.to_string();
            self.open_mut().state_writes += changes.len() as u64;
            for (partition, key, value) in &changes {
                let mut rec: BaseRecord<'_, str, [u8], Box<Origin>> =
                    BaseRecord::with_opaque_to(&changelog, Box::new(origin)).key(key.as_str()).partition(*partition);
                if let Some(v) = value {
                    rec = rec.payload(v.as_slice());
                }
                self.send(rec)?;
            }
        }
        Ok(())
    }

    pub(super) fn send<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
        &self,
        mut rec: BaseRecord<'_, K, P, Box<Origin>>,
    ) -> Result<(), StepError> {
        loop {
            match self.producer.get().send(rec) {
                Ok(()) => return Ok(()),
                // A full local queue is back-pressure: wait for deliveries, then send again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(classify("producing", &e, &self.stats)),
            }
        }
    }
}

/// An encoded output with its headers, checked against the topic's size limit.
pub(super) struct Encoded {
    pub(super) output: Output,
    pub(super) bytes: Vec<u8>,
    pub(super) headers: OwnedHeaders,
}

pub(super) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    let text = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("processing panicked: {}", text.unwrap_or_else(|| "(no message)".into()))
}
