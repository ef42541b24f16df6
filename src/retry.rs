//! The one retry helper: exponential backoff, capped, with jitter. Every loop that waits for
//! something to come back (a broker, the registry, a transaction's coordinator) waits with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Exponential backoff, capped, with jitter: each wait is a random half to whole of the current
/// step, so that the nine routes (and the instances) of a bridge do not retry in lockstep.
pub struct Backoff {
    pub next: Duration,
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { next: initial, initial, max }
    }
    pub fn wait(&mut self, shutdown: &AtomicBool) {
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let until = Instant::now() + self.next.mul_f64(0.5 + (random % 1000) as f64 / 2000.0);
        while Instant::now() < until && !shutdown.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.next = (self.next * 2).min(self.max);
    }
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}
