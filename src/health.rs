//! Health, readiness and metrics over HTTP for `run --health ADDR` (for Kubernetes probes and
//! Prometheus): `/health` (every route alive), `/ready` (every route consuming: schemas
//! registered, tables read), `/metrics` (Prometheus text format).

use crate::pipeline::Stats;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub type Routes = Arc<Vec<(&'static str, Arc<Stats>)>>;

fn check(routes: &Routes, bad: impl Fn(&Stats) -> bool, what: &str) -> (StatusCode, String) {
    let failing: Vec<&str> = routes.iter().filter(|(_, s)| bad(s)).map(|(n, _)| *n).collect();
    if failing.is_empty() {
        (StatusCode::OK, "ok\n".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{what}: {}\n", failing.join(", ")))
    }
}

pub fn metrics(routes: &Routes) -> String {
    let mut out = String::new();
    type Family = (&'static str, &'static str, fn(&Stats) -> u64);
    let families: [Family; 5] = [
        ("gzac_bridge_records_total", "Input records whose transaction committed.", |s| {
            s.records.load(Ordering::Relaxed)
        }),
        ("gzac_bridge_dead_letters_total", "Input records sent to the dead-letter topic.", |s| {
            s.dead_letters.load(Ordering::Relaxed)
        }),
        ("gzac_bridge_transactions_committed_total", "Committed transactions.", |s| s.commits.load(Ordering::Relaxed)),
        ("gzac_bridge_transactions_aborted_total", "Aborted transactions (retried).", |s| {
            s.aborts.load(Ordering::Relaxed)
        }),
        ("gzac_bridge_ready", "1 while the route consumes.", |s| {
            u64::from(s.ready.load(Ordering::Relaxed) && !s.stopped.load(Ordering::Relaxed))
        }),
    ];
    for (name, help, value) in families {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (route, stats) in routes.iter() {
            let _ = writeln!(out, "{name}{{route=\"{route}\"}} {}", value(stats));
        }
    }
    out
}

pub fn router(routes: Routes) -> Router {
    let (h, r, m) = (routes.clone(), routes.clone(), routes);
    Router::new()
        .route("/health", get(move || async move { check(&h, |s| s.stopped.load(Ordering::SeqCst), "stopped") }))
        .route(
            "/ready",
            get(move || async move {
                check(&r, |s| !s.ready.load(Ordering::SeqCst) || s.stopped.load(Ordering::SeqCst), "not ready")
            }),
        )
        .route("/metrics", get(move || async move { metrics(&m) }))
}

/// Serve the endpoints on `addr` until the process ends.
pub async fn serve(addr: std::net::SocketAddr, routes: Routes) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(routes)).await {
            tracing::error!(error = %e, "health endpoint stopped");
        }
    });
    Ok(bound)
}
