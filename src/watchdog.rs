//! A transactional producer whose blocking calls run under a deadline the bridge enforces itself.
//!
//! librdkafka can block in a transactional call far past the timeout it was given: after the
//! broker that was transaction coordinator is lost, `send_offsets_to_transaction` waits on a
//! coordinator that is never looked up again (librdkafka issues 5456 and 5511). So every such call
//! runs on a helper thread of its own, and the route's thread waits for it at most the call's
//! timeout plus a grace. A call that overruns is reported as `Hung`: the route gives the
//! producer up and makes a new one under the same transactional id, which fences the old one
//! (left to its stuck thread) and aborts what it had open.

use rdkafka::error::KafkaResult;
use rdkafka::producer::{ProducerContext, ThreadedProducer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long past its own timeout a call may take before it is taken for hung.
pub const GRACE: Duration = Duration::from_secs(2);

type Job<C> = Box<dyn FnOnce(&ThreadedProducer<C>) + Send>;

/// A producer and the thread its blocking calls run on.
pub struct Guarded<C: ProducerContext + 'static> {
    producer: Arc<ThreadedProducer<C>>,
    calls: mpsc::Sender<Job<C>>,
}

/// A call that did not return within its timeout and the grace.
#[derive(Debug, thiserror::Error)]
#[error("{what} did not return within {waited:?} (librdkafka ignored its timeout)")]
pub struct Hung {
    pub what: &'static str,
    pub waited: Duration,
}

impl<C: ProducerContext + 'static> Guarded<C> {
    pub fn new(producer: ThreadedProducer<C>, name: &str) -> std::io::Result<Self> {
        let producer = Arc::new(producer);
        let (calls, jobs) = mpsc::channel::<Job<C>>();
        let p = producer.clone();
        // Ends when the Guarded is dropped (the channel closes) and its last call has returned.
        std::thread::Builder::new().name(format!("txn-{name}")).spawn(move || {
            for job in jobs {
                job(&p);
            }
        })?;
        Ok(Guarded { producer, calls })
    }

    /// The producer, for calls that do not block (send, begin_transaction, in_flight_count).
    pub fn get(&self) -> &ThreadedProducer<C> {
        &self.producer
    }

    /// Run `op` with `timeout` on the helper thread; wait for it at most `timeout + GRACE`, or
    /// until `shutdown` is set (then it counts as hung too: the process is leaving).
    pub fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        timeout: Duration,
        shutdown: &AtomicBool,
        op: impl FnOnce(&ThreadedProducer<C>, Duration) -> KafkaResult<T> + Send + 'static,
    ) -> Result<KafkaResult<T>, Hung> {
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self.calls.send(Box::new(move |p: &ThreadedProducer<C>| {
            let _ = tx.send(op(p, timeout));
        }));
        let started = Instant::now();
        let hung = || Hung { what, waited: started.elapsed() };
        if sent.is_err() {
            return Err(hung());
        }
        let deadline = started + timeout + GRACE;
        loop {
            let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            match rx.recv_timeout(slice) {
                Ok(result) => return Ok(result),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(hung()),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline || shutdown.load(Ordering::SeqCst) {
                        return Err(hung());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::DefaultProducerContext;
    use rdkafka::ClientConfig;

    fn producer() -> Guarded<DefaultProducerContext> {
        let p: ThreadedProducer<DefaultProducerContext> =
            ClientConfig::new().set("bootstrap.servers", "127.0.0.1:1").create().unwrap();
        Guarded::new(p, "test").unwrap()
    }

    #[test]
    fn a_call_that_returns_in_time_gives_its_result() {
        let g = producer();
        let r = g.call("answer", Duration::from_millis(100), &AtomicBool::new(false), |_, t| Ok(t));
        assert_eq!(r.unwrap().unwrap(), Duration::from_millis(100));
    }

    #[test]
    fn a_call_that_blocks_past_its_timeout_is_hung_and_the_caller_goes_on() {
        let g = producer();
        let t0 = Instant::now();
        let r = g.call("stuck", Duration::from_millis(50), &AtomicBool::new(false), |_, _| {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        });
        let hung = r.unwrap_err();
        assert_eq!(hung.what, "stuck");
        assert!(t0.elapsed() < GRACE + Duration::from_secs(1), "gave up after {:?}", t0.elapsed());
        // The helper thread is still stuck: the next call on this producer is hung as well.
        let next = g.call("next", Duration::from_millis(10), &AtomicBool::new(true), |_, _| Ok(()));
        assert!(next.is_err());
    }
}
