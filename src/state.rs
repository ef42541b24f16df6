//! Keyed state of a route, partitioned like its input and backed by a compacted changelog topic.
//!
//! Every change is written to the changelog partition with the number of the input partition it
//! belongs to, in the same transaction as the route's outputs; the in-memory map changes at once
//! and an undo log puts it back if the transaction aborts. When the group assigns partitions the
//! state of exactly those partitions is rebuilt from the changelog (read_committed, up to its end)
//! before any record of theirs is processed.
//!
//! Beside the entries, a time index (`Schedule`): when each entry next needs the route's timer.
//! A tick asks for what is due (`due`) and so costs what is due, not what is held.

use crate::catch_up::{drop_reached, ends_of};
use crate::encryption::{open_with, StateCipher};
use crate::model::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a restore may read nothing before it fails (and is retried).
const STALLED: Duration = Duration::from_secs(60);

/// A change waiting to be written to the changelog: partition, key, new value (None deletes).
pub type Change = (i32, String, Option<Vec<u8>>);

/// When an entry next needs the route's timer (a deadline, a reminder, the moment it is
/// forgotten); `None`: never, until it changes.
pub type Schedule<S> = Arc<dyn Fn(&S) -> Option<Timestamp> + Send + Sync>;

pub struct Store<S> {
    /// Seals changelog entries, when state encryption is configured.
    cipher: Option<Arc<StateCipher>>,
    parts: HashMap<i32, HashMap<String, S>>,
    /// Old values of the keys changed in the open transaction, oldest first.
    undo: Vec<(i32, String, Option<S>)>,
    /// Changelog records not yet handed to the producer.
    pending: Vec<Change>,
    schedule: Option<Schedule<S>>,
    /// (due ms, partition, key) of every entry the schedule gives a moment, and the way back.
    timers: BTreeSet<(i64, i32, String)>,
    due_of: HashMap<(i32, String), i64>,
    /// Entries taken out of the time index by `park` since the store was made.
    parked: u64,
}

impl<S> Default for Store<S> {
    fn default() -> Self {
        Store {
            cipher: None,
            parts: HashMap::new(),
            undo: Vec::new(),
            pending: Vec::new(),
            schedule: None,
            timers: BTreeSet::new(),
            due_of: HashMap::new(),
            parked: 0,
        }
    }
}

impl<S> Store<S> {
    /// A store whose changelog entries are sealed with `cipher`.
    pub fn sealed(cipher: Option<Arc<StateCipher>>) -> Self {
        Store { cipher, ..Store::default() }
    }

    /// The same store, its entries indexed by `schedule` (a route's `Route::schedule`).
    pub fn scheduled(self, schedule: Schedule<S>) -> Self {
        Store { schedule: Some(schedule), ..self }
    }

    /// Keep the time index in step with the entry `key` of `partition` now being `value`.
    fn index(&mut self, partition: i32, key: &str, value: Option<&S>) {
        let Some(schedule) = &self.schedule else { return };
        let due = value.and_then(|v| schedule(v)).map(|t| t.0);
        let id = (partition, key.to_string());
        let old = self.due_of.get(&id).copied();
        if old == due {
            return;
        }
        if let Some(t) = old {
            self.timers.remove(&(t, partition, id.1.clone()));
            self.due_of.remove(&id);
        }
        if let Some(t) = due {
            self.timers.insert((t, partition, id.1.clone()));
            self.due_of.insert(id, t);
        }
    }

    /// Drop the time index of `partitions` (their entries are gone).
    fn unindex(&mut self, partitions: &[i32]) {
        self.due_of.retain(|(p, _), _| !partitions.contains(p));
        self.timers.retain(|(_, p, _)| !partitions.contains(p));
    }

    /// Take an entry out of the time index until it changes: one the route's timer could not
    /// handle, so that it does not come back every tick while the others go on.
    pub fn park(&mut self, partition: i32, key: &str) {
        if let Some(t) = self.due_of.remove(&(partition, key.to_string())) {
            self.timers.remove(&(t, partition, key.to_string()));
        }
        self.parked += 1;
    }

    pub fn parked(&self) -> u64 {
        self.parked
    }
}

impl<S: Clone + Serialize + DeserializeOwned> Store<S> {
    pub fn get(&self, partition: i32, key: &str) -> Option<&S> {
        self.parts.get(&partition)?.get(key)
    }

    /// Set (or with `None` delete) a key's value in `partition`.
    pub fn put(&mut self, partition: i32, key: &str, value: Option<S>) {
        let bytes = value.as_ref().map(|v| {
            let json = serde_json::to_vec(v).expect("state serialises");
            match &self.cipher {
                Some(c) => c.seal(key, &json),
                None => json,
            }
        });
        self.index(partition, key, value.as_ref());
        let part = self.parts.entry(partition).or_default();
        let old = match value {
            Some(v) => part.insert(key.to_string(), v),
            None => part.remove(key),
        };
        self.undo.push((partition, key.to_string(), old));
        self.pending.push((partition, key.to_string(), bytes));
    }

    /// The entries whose moment (by the store's schedule) has come by `now`, earliest first;
    /// only those are looked at and copied.
    pub fn due(&self, now: Timestamp) -> Vec<(i32, String, S)> {
        self.timers
            .iter()
            .take_while(|(t, _, _)| *t <= now.0)
            .filter_map(|(_, p, k)| Some((*p, k.clone(), self.get(*p, k)?.clone())))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.parts.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A savepoint: `rollback_to` it undoes only what came after (one bad record's changes).
    pub(crate) fn mark(&self) -> (usize, usize) {
        (self.undo.len(), self.pending.len())
    }

    pub(crate) fn rollback_to(&mut self, mark: (usize, usize)) {
        self.pending.truncate(mark.1);
        while self.undo.len() > mark.0 {
            let (p, k, old) = self.undo.pop().expect("undo entry");
            self.index(p, &k, old.as_ref());
            let part = self.parts.entry(p).or_default();
            match old {
                Some(v) => part.insert(k, v),
                None => part.remove(&k),
            };
        }
    }

    /// The changelog records made since `mark`.
    pub(crate) fn pending_since(&self, mark: (usize, usize)) -> impl Iterator<Item = &Change> {
        self.pending.iter().skip(mark.1)
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Drop the state of partitions the group took away.
    pub(crate) fn forget(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.parts.remove(p);
        }
        self.unindex(partitions);
    }

    /// Drop the state of every partition (the group membership itself was lost).
    pub(crate) fn forget_all(&mut self) {
        self.parts.clear();
        self.timers.clear();
        self.due_of.clear();
    }

    pub(crate) fn take_pending(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.pending)
    }

    pub(crate) fn committed(&mut self) {
        self.undo.clear();
        self.pending.clear();
    }

    pub(crate) fn rolled_back(&mut self) {
        self.rollback_to((0, 0));
    }

    /// Rebuild `partitions` from `changelog` (other partitions stay as they are).
    /// `consumer` is a read_committed reader (`Config::reader_config`), assigned here to
    /// exactly these partitions (one reader serves every municipality's store in turn). An entry
    /// that no longer parses (written by another version, damaged) is skipped and counted: the
    /// count is returned, and the key keeps its previous entry.
    pub(crate) fn restore(
        &mut self,
        consumer: &BaseConsumer,
        changelog: &str,
        partitions: &[i32],
    ) -> anyhow::Result<u64> {
        self.forget(partitions);
        let mut skipped = 0;
        if partitions.is_empty() {
            return Ok(skipped);
        }
        let mut ends = ends_of(consumer, changelog, partitions)?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            if ends.contains_key(&(changelog.to_string(), *p)) {
                tpl.add_partition_offset(changelog, *p, Offset::Beginning)?;
            }
            self.parts.entry(*p).or_default();
        }
        if ends.is_empty() {
            return Ok(skipped);
        }
        consumer.assign(&tpl)?;
        // Read until every partition's position reaches the end it had when we started; with
        // read_committed that also waits for a transaction a dead predecessor left open (at most
        // its transaction timeout). A restore that reads nothing for a minute fails and is retried.
        let mut last_progress = Instant::now();
        let mut since_check = 0;
        while !ends.is_empty() {
            anyhow::ensure!(
                last_progress.elapsed() < STALLED,
                "restoring {changelog}: nothing read for {} s",
                STALLED.as_secs()
            );
            let polled = consumer.poll(Duration::from_millis(100));
            if let Some(m) = &polled {
                let m = m.as_ref().map_err(|e| e.clone())?;
                if m.topic() != changelog {
                    continue; // left from the reader's previous assignment
                }
                last_progress = Instant::now();
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                match m.payload() {
                    Some(v) => match open_with(self.cipher.as_deref(), &key, v)
                        .and_then(|plain| Ok(serde_json::from_slice::<S>(&plain)?))
                    {
                        Ok(value) => {
                            self.index(m.partition(), &key, Some(&value));
                            self.parts.entry(m.partition()).or_default().insert(key, value);
                        }
                        Err(e) => {
                            tracing::error!(changelog, partition = m.partition(), offset = m.offset(), error = %e, "changelog entry does not parse; skipped");
                            skipped += 1;
                        }
                    },
                    None => {
                        self.index(m.partition(), &key, None);
                        self.parts.entry(m.partition()).or_default().remove(&key);
                    }
                }
            }
            // Asking for the positions costs more than a record: only when idle or now and then.
            since_check += 1;
            if polled.is_none() || since_check >= 1000 {
                since_check = 0;
                drop_reached(consumer, &mut ends)?;
            }
        }
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_sees_what_is_due_and_the_index_follows_puts_rollbacks_and_forgets() {
        // An entry is due at its value (ms); odd values never.
        let mut s: Store<i64> = Store::default().scheduled(Arc::new(|v: &i64| (v % 2 == 0).then_some(Timestamp(*v))));
        for (k, v) in [("a", 10), ("b", 20), ("c", 31), ("d", 40)] {
            s.put(0, k, Some(v));
        }
        s.put(1, "e", Some(16));
        s.committed();
        let keys = |s: &Store<i64>, now| s.due(Timestamp(now)).into_iter().map(|(_, k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(&s, 20), ["a", "e", "b"], "earliest first, odd never");
        s.put(0, "a", Some(50));
        assert_eq!(keys(&s, 20), ["e", "b"]);
        s.rolled_back();
        assert_eq!(keys(&s, 20), ["a", "e", "b"], "a rollback restores the index too");
        s.park(0, "a");
        assert_eq!(keys(&s, 20), ["e", "b"], "parked until it changes");
        assert_eq!(s.parked(), 1);
        s.forget(&[1]);
        assert_eq!(keys(&s, 100), ["b", "d"]);
        s.put(0, "b", None);
        assert_eq!(keys(&s, 100), ["d"]);
    }

    #[test]
    fn rollback_restores_the_values_before_the_transaction() {
        let mut s: Store<u32> = Store::default();
        s.put(0, "a", Some(1));
        s.committed();
        s.put(0, "a", Some(2));
        s.put(0, "b", Some(3));
        s.put(0, "a", None);
        assert_eq!(s.take_pending().len(), 3);
        s.rolled_back();
        assert_eq!(s.get(0, "a"), Some(&1));
        assert_eq!(s.get(0, "b"), None);
    }
}
