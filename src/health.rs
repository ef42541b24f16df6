//! What each component (a route, a global table) reports while it runs, and the HTTP endpoints
//! for `run --health ADDR` (Kubernetes probes, Prometheus): `/health` fails when a component
//! stopped, has been retrying longer than `pipeline.stall_timeout`, or has lag and made no
//! progress for that long; `/ready` is false while starting, restoring state, retrying or cut off
//! from the broker. The reason is in the body and in `gzac_bridge_healthy` / `_ready`.

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Progress and counters of one component. Written by its own thread, read by the endpoints.
pub struct Stats {
    /// Started: its schemas are registered and its tables read (a table: read to its end once).
    pub ready: AtomicBool,
    /// Its loop has ended (shutdown or failure).
    pub stopped: AtomicBool,
    /// Rebuilding state from a changelog.
    pub restoring: AtomicBool,
    /// librdkafka's last statistics saw at least one broker up.
    pub broker_up: AtomicBool,
    /// Input records whose transaction committed (a table: rows applied).
    pub records: AtomicU64,
    /// Of those, records sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    /// Table rows or changelog entries that could not be decoded (skipped, previous value kept).
    pub bad_state_rows: AtomicU64,
    /// Held items whose timer work failed (left as they are; the others still fired).
    pub timer_refusals: AtomicU64,
    retrying_since_ms: AtomicU64,
    /// A call into librdkafka did not return within its deadline (the watchdog gave it up).
    hung: AtomicBool,
    /// Until when (ms) an authorisation refusal is waited out rather than a stop.
    grace_until_ms: AtomicU64,
    /// Partitions of its input the group assigned it, and since when (ms; 0: none assigned).
    assigned: AtomicI64,
    assigned_since_ms: AtomicU64,
    progress_ms: AtomicU64,
    /// Records in its partitions not yet processed; -1 while unknown.
    lag: AtomicI64,
    problem: Mutex<String>,
    /// Records written by committed transactions (outputs, not changelog or dead letters).
    pub outputs: Counter,
    /// Changelog records written by committed transactions.
    pub state_writes: AtomicU64,
    /// Dead letters by error class.
    pub dead_letters_by_class: Family<Vec<(String, String)>, Counter>,
    /// Input records whose transaction committed, by municipality and result (`processed`,
    /// `dead_letter`).
    pub by_gemeente: Family<Vec<(String, String)>, Counter>,
    /// How long committing a transaction took (offsets, deliveries, commit).
    pub commit_seconds: Histogram,
    /// Input records per committed transaction.
    pub batch_records: Histogram,
    /// From an input record's timestamp to the commit of its effects.
    pub end_to_end_seconds: Histogram,
    /// Lag per assigned partition, from librdkafka's statistics.
    pub partition_lag: Family<Vec<(String, String)>, Gauge>,
    /// Rows in a global table; changelog entries read by the last restore.
    pub rows: AtomicI64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ready: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            broker_up: AtomicBool::new(false),
            state_writes: AtomicU64::new(0),
            records: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            aborts: AtomicU64::new(0),
            bad_state_rows: AtomicU64::new(0),
            timer_refusals: AtomicU64::new(0),
            retrying_since_ms: AtomicU64::new(0),
            hung: AtomicBool::new(false),
            grace_until_ms: AtomicU64::new(0),
            assigned: AtomicI64::new(0),
            assigned_since_ms: AtomicU64::new(0),
            progress_ms: AtomicU64::new(now_ms()),
            lag: AtomicI64::new(-1),
            problem: Mutex::new(String::new()),
            outputs: Counter::default(),
            dead_letters_by_class: Family::default(),
            by_gemeente: Family::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            batch_records: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            end_to_end_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            partition_lag: Family::default(),
            rows: AtomicI64::new(0),
        }
    }
}

impl Stats {
    /// Something failed and will be tried again.
    pub fn retrying(&self, reason: &str) {
        let _ = self.retrying_since_ms.compare_exchange(0, now_ms(), Ordering::SeqCst, Ordering::SeqCst);
        self.problem(reason);
    }
    pub fn problem(&self, reason: &str) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = reason.to_string();
    }
    /// A call into librdkafka hung: unhealthy and not ready at once, until the route recovers.
    pub fn hung(&self, reason: &str) {
        self.retrying(reason);
        self.hung.store(true, Ordering::SeqCst);
    }
    /// The failure is over.
    pub fn recovered(&self) {
        self.retrying_since_ms.store(0, Ordering::SeqCst);
        self.hung.store(false, Ordering::SeqCst);
    }
    pub fn progressed(&self) {
        self.progress_ms.store(now_ms(), Ordering::Relaxed);
    }
    pub fn committed(&self, inputs: u64, dead_letters: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(inputs, Ordering::Relaxed);
        self.dead_letters.fetch_add(dead_letters, Ordering::Relaxed);
        self.progressed();
        self.recovered();
    }
    /// From now on, authorisation refusals are waited out for `grace` (set once, at start).
    pub fn grant_grace(&self, grace: Duration) {
        let _ = self.grace_until_ms.compare_exchange(
            0,
            now_ms() + grace.as_millis() as u64,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    /// Still in the grace period after start.
    pub fn in_grace(&self) -> bool {
        now_ms() < self.grace_until_ms.load(Ordering::SeqCst)
    }
    /// The group assigned `n` partitions of the input (0: revoked).
    pub fn assigned(&self, n: usize) {
        self.assigned.store(n as i64, Ordering::SeqCst);
        self.assigned_since_ms.store(if n > 0 { now_ms() } else { 0 }, Ordering::SeqCst);
        self.lag.store(-1, Ordering::Relaxed);
    }
    /// From librdkafka's statistics; caught up counts as progress.
    pub fn set_lag(&self, lag: i64) {
        self.lag.store(lag, Ordering::Relaxed);
        if lag == 0 {
            self.progressed();
        }
    }
    pub fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }
    /// Seconds since the component started failing (0 when it is not).
    pub fn retrying_seconds(&self) -> f64 {
        match self.retrying_since_ms.load(Ordering::SeqCst) {
            0 => 0.0,
            since => now_ms().saturating_sub(since) as f64 / 1000.0,
        }
    }

    /// Why the component is not healthy, if it is not.
    pub fn unhealthy(&self, bound: Duration) -> Option<String> {
        let problem = self.problem.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if self.stopped.load(Ordering::SeqCst) {
            return Some(if problem.is_empty() { "stopped".into() } else { format!("stopped: {problem}") });
        }
        if self.hung.load(Ordering::SeqCst) {
            return Some(format!("hung: {problem}"));
        }
        let retrying = self.retrying_seconds();
        if retrying > bound.as_secs_f64() {
            return Some(format!("retrying for {retrying:.0} s: {problem}"));
        }
        // Assigned partitions whose position librdkafka never reports: not consuming them.
        let since = self.assigned_since_ms.load(Ordering::SeqCst);
        let assigned_for = now_ms().saturating_sub(since) as f64 / 1000.0;
        if since != 0 && self.lag() < 0 && assigned_for > bound.as_secs_f64() {
            let n = self.assigned.load(Ordering::SeqCst);
            return Some(format!("{n} partitions assigned for {assigned_for:.0} s and not one of them read"));
        }
        let idle = now_ms().saturating_sub(self.progress_ms.load(Ordering::Relaxed)) as f64 / 1000.0;
        if self.lag() > 0 && idle > bound.as_secs_f64() {
            return Some(format!("no progress for {idle:.0} s with {} records waiting", self.lag()));
        }
        None
    }

    /// Why the component is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if self.stopped.load(Ordering::SeqCst) {
            Some("stopped".into())
        } else if !self.ready.load(Ordering::SeqCst) {
            Some("starting".into())
        } else if self.restoring.load(Ordering::SeqCst) {
            Some("restoring state".into())
        } else if !self.broker_up.load(Ordering::Relaxed) {
            Some("no broker reachable".into())
        } else if self.retrying_since_ms.load(Ordering::SeqCst) != 0 {
            Some(format!("retrying: {}", self.problem.lock().unwrap_or_else(|p| p.into_inner())))
        } else {
            None
        }
    }
}

/// The components by name (`verzoek`, …, `table:portaal.klantvoorkeuren.v1`).
pub type Components = Arc<Vec<(String, Arc<Stats>)>>;

fn verdict(components: &Components, check: impl Fn(&Stats) -> Option<String>) -> (StatusCode, String) {
    let failing: Vec<String> =
        components.iter().filter_map(|(n, s)| check(s).map(|why| format!("{n}: {why}"))).collect();
    if failing.is_empty() {
        (StatusCode::OK, "ok\n".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, failing.join("\n") + "\n")
    }
}

/// The Prometheus / OpenMetrics exposition (prometheus-client), every series labelled with its
/// `component`.
pub fn metrics(components: &Components, bound: Duration) -> String {
    let mut registry = Registry::with_prefix("gzac_bridge");
    for (component, st) in components.iter() {
        let r = registry.sub_registry_with_label(("component".into(), component.clone().into()));
        let count = |a: &AtomicU64| ConstCounter::new(a.load(Ordering::Relaxed));
        r.register("records", "Input records whose transaction committed (tables: rows applied)", count(&st.records));
        r.register("output_records", "Records written by committed transactions", st.outputs.clone());
        r.register(
            "dead_letters",
            "Input records sent to the dead-letter topic, by error class",
            st.dead_letters_by_class.clone(),
        );
        r.register(
            "gemeente_records",
            "Input records whose transaction committed, by municipality and result (processed, dead_letter)",
            st.by_gemeente.clone(),
        );
        r.register("transactions_committed", "Committed transactions", count(&st.commits));
        r.register("transactions_aborted", "Aborted transactions (retried)", count(&st.aborts));
        r.register(
            "bad_state_rows",
            "Table rows or changelog entries that could not be decoded",
            count(&st.bad_state_rows),
        );
        r.register(
            "timer_refusals",
            "Held items whose timer work failed: left as they are, the others still fire",
            count(&st.timer_refusals),
        );
        r.register_with_unit(
            "transaction_commit",
            "Time to commit a transaction",
            Unit::Seconds,
            st.commit_seconds.clone(),
        );
        r.register("transaction_records", "Input records per committed transaction", st.batch_records.clone());
        r.register_with_unit(
            "end_to_end_latency",
            "From an input record's timestamp to the commit of its effects",
            Unit::Seconds,
            st.end_to_end_seconds.clone(),
        );
        r.register(
            "lag_records",
            "Records not yet processed in the assigned partitions (-1: unknown)",
            ConstGauge::new(st.lag()),
        );
        r.register(
            "partition_lag_records",
            "Records not yet processed, per assigned partition",
            st.partition_lag.clone(),
        );
        r.register(
            "rows",
            "Rows of a global table; a route's state entries (held notificaties, scheduled berichten, taken) after its last commit",
            ConstGauge::new(st.rows.load(Ordering::Relaxed)),
        );
        r.register_with_unit(
            "retrying",
            "How long the component has been failing and retrying (0: it is not)",
            Unit::Seconds,
            ConstGauge::new(st.retrying_seconds()),
        );
        let flag = |b: bool| ConstGauge::new(i64::from(b));
        r.register(
            "restoring",
            "1 while state is rebuilt from its changelog",
            flag(st.restoring.load(Ordering::SeqCst)),
        );
        r.register("broker_up", "1 while librdkafka sees a broker up", flag(st.broker_up.load(Ordering::Relaxed)));
        r.register("ready", "1 while the component is ready", flag(st.not_ready().is_none()));
        r.register("healthy", "1 while the component is healthy", flag(st.unhealthy(bound).is_none()));
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String");
    out
}

pub fn router(components: Components, bound: Duration) -> Router {
    let (h, r, m) = (components.clone(), components.clone(), components);
    Router::new()
        .route("/health", get(move || async move { verdict(&h, |s| s.unhealthy(bound)) }))
        .route("/ready", get(move || async move { verdict(&r, Stats::not_ready) }))
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    metrics(&m, bound),
                )
            }),
        )
}

/// Serve the endpoints on `addr` until the process ends.
pub async fn serve(
    addr: std::net::SocketAddr,
    components: Components,
    bound: Duration,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound_addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(components, bound)).await {
            tracing::error!(error = %e, "health endpoint stopped");
        }
    });
    Ok(bound_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrying_past_the_bound_is_unhealthy_and_not_ready_at_once() {
        let s = Stats::default();
        s.ready.store(true, Ordering::SeqCst);
        s.broker_up.store(true, Ordering::SeqCst);
        assert_eq!(s.not_ready(), None);
        s.retrying("broker down");
        assert!(s.not_ready().unwrap().contains("broker down"));
        assert_eq!(s.unhealthy(Duration::from_secs(60)), None);
        s.retrying_since_ms.store(now_ms() - 61_000, Ordering::SeqCst);
        assert!(s.unhealthy(Duration::from_secs(60)).unwrap().contains("retrying for 61 s: broker down"));
        s.committed(1, 0);
        assert_eq!(s.unhealthy(Duration::from_secs(60)), None);
        assert_eq!(s.not_ready(), None);
    }

    #[test]
    fn assigned_partitions_never_read_are_unhealthy() {
        let s = Stats::default();
        s.assigned(3);
        assert_eq!(s.unhealthy(Duration::from_secs(60)), None, "just assigned");
        s.assigned_since_ms.store(now_ms() - 61_000, Ordering::SeqCst);
        assert!(s.unhealthy(Duration::from_secs(60)).unwrap().contains("3 partitions assigned"));
        s.set_lag(0);
        assert_eq!(s.unhealthy(Duration::from_secs(60)), None, "read: lag known");
        s.assigned(0);
        assert_eq!(s.unhealthy(Duration::from_secs(60)), None, "nothing assigned");
    }

    #[test]
    fn lag_without_progress_is_unhealthy() {
        let s = Stats::default();
        s.set_lag(5);
        s.progress_ms.store(now_ms() - 61_000, Ordering::SeqCst);
        assert!(s.unhealthy(Duration::from_secs(60)).unwrap().contains("5 records waiting"));
        s.set_lag(0);
        assert_eq!(s.unhealthy(Duration::from_secs(60)), None);
    }
}
