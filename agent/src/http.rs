//! `--http-listen`: `/healthz` (the event loop and the uploader are turning), `/metrics`, and
//! `/status`, the agent's own report as JSON, which the operator reads from every pod to say
//! whether it is protected.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::agent::Ctx;
use crate::error::{Error, Result};
use crate::metrics::{KindLabel, now};
use crate::store::RequestKind;

/// A loop that has not turned for this long is unhealthy.
pub const MAX_BEAT_AGE: i64 = 60;

struct Served {
    ctx: Arc<Ctx>,
    registry: Registry,
}

/// Binds `addr` (an error names the address) and serves until the runtime stops.
pub async fn serve(addr: SocketAddr, ctx: Arc<Ctx>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidConfig(format!("--http-listen {addr}: cannot listen ({e})")))?;
    let mut registry = Registry::default();
    ctx.stats.register(&mut registry);
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(Arc::new(Served { ctx, registry }));
    tracing::info!(%addr, "serving /healthz, /metrics and /status");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health and metrics server stopped");
        }
    });
    Ok(())
}

async fn healthz(State(s): State<Arc<Served>>) -> impl IntoResponse {
    if s.ctx.stats.healthy(MAX_BEAT_AGE) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stalled\n")
    }
}

/// The agent's report on `/status`: what the operator needs to call a pod protected and to
/// show its recovery point. Field names are the wire format; add fields, never rename them.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The version of the agent.
    pub version: &'static str,
    /// Unix time of this report, by the agent's clock.
    pub time: i64,
    /// The bucket check at start passed: the agent is shipping, not waiting for the bucket.
    pub storage_ready: bool,
    /// Both loops are turning ([`MAX_BEAT_AGE`]), as `/healthz` says.
    pub healthy: bool,
    /// Files waiting to be shipped or retried.
    pub queue_depth: u64,
    /// Unix time the oldest file not yet shipped was seen; `None` when nothing waits.
    pub oldest_unshipped: Option<i64>,
    /// The recovery point: every file seen before this unix time is in the bucket. It is the
    /// report's time when nothing waits (and the bucket check passed), else when the oldest
    /// waiting file was seen; `None` while the agent waits for the bucket.
    pub recovery_point: Option<i64>,
    /// Unix time of the last successful upload (file or index), `None` before the first.
    pub last_success: Option<i64>,
    /// Files uploaded since start.
    pub files_shipped: u64,
    /// The commit log archive, when the agent ships one (`--commitlog-archive`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commitlog: Option<CommitlogReport>,
}

/// The commit log part of [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitlogReport {
    /// Unix time since which the shipped segments are continuous, as far as this run of the agent
    /// knows (its first shipped segment, or the first after a segment the spool cap dropped).
    pub window_start: Option<i64>,
    /// Unix time of the last write of the newest shipped segment.
    pub window_end: Option<i64>,
    /// Seconds since the oldest segment not yet shipped was found.
    pub archive_lag_seconds: i64,
    /// Segments shipped since start.
    pub segments_shipped: u64,
    /// Segments the spool cap deleted unshipped since start.
    pub segments_dropped: u64,
}

impl CommitlogReport {
    /// The report from the agent's counters.
    pub fn of(st: &crate::metrics::Stats) -> Self {
        let t = |g: i64| (g > 0).then_some(g);
        CommitlogReport {
            window_start: t(st.window_start.get()),
            window_end: t(st.window_end.get()),
            archive_lag_seconds: st.archive_lag.get(),
            segments_shipped: st.segments_shipped.get(),
            segments_dropped: st.segments_dropped.get(),
        }
    }
}

/// The report as of unix time `time`; pure, for tests.
pub fn report(
    time: i64,
    storage_ready: bool,
    healthy: bool,
    queue_depth: u64,
    oldest_unshipped: Option<i64>,
    last_success: i64,
    files_shipped: u64,
) -> Report {
    Report {
        version: env!("CARGO_PKG_VERSION"),
        time,
        storage_ready,
        healthy,
        queue_depth,
        oldest_unshipped,
        recovery_point: storage_ready.then(|| oldest_unshipped.map_or(time, |t| t.min(time))),
        last_success: (last_success > 0).then_some(last_success),
        files_shipped,
        commitlog: None,
    }
}

async fn status(State(s): State<Arc<Served>>) -> impl IntoResponse {
    let ctx = &s.ctx;
    let st = &ctx.stats;
    let mut body = report(
        now(),
        st.storage_ready.get() == 1,
        st.healthy(MAX_BEAT_AGE),
        ctx.outstanding_len() as u64,
        ctx.oldest_outstanding(),
        st.last_success.get(),
        st.files_shipped.get(),
    );
    if ctx.cfg.commitlog.is_some() {
        body.commitlog = Some(CommitlogReport::of(st));
    }
    axum::Json(body)
}

async fn metrics(State(s): State<Arc<Served>>) -> impl IntoResponse {
    let ctx = &s.ctx;
    let st = &ctx.stats;
    st.queue_depth.set(ctx.outstanding_len() as i64);
    st.oldest_unshipped
        .set(ctx.oldest_outstanding().map_or(0, |t| (now() - t).max(0)));
    let req = ctx.store.requests();
    for (kind, name) in [
        (RequestKind::List, "list"),
        (RequestKind::Head, "head"),
        (RequestKind::Put, "put"),
        (RequestKind::Get, "get"),
        (RequestKind::Delete, "delete"),
    ] {
        st.requests
            .get_or_create(&KindLabel { kind: name })
            .set(req.get(kind) as i64);
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::report;

    #[test]
    fn the_recovery_point_is_the_oldest_waiting_file_or_now() {
        let idle = report(1000, true, true, 0, None, 900, 5);
        assert_eq!(idle.recovery_point, Some(1000));
        assert_eq!(idle.last_success, Some(900));
        let waiting = report(1000, true, true, 2, Some(400), 900, 5);
        assert_eq!(waiting.recovery_point, Some(400));
        // A clock step back leaves the point at the report's time, never in its future.
        assert_eq!(
            report(1000, true, true, 1, Some(1200), 0, 0).recovery_point,
            Some(1000)
        );
        let blocked = report(1000, false, true, 0, None, 0, 0);
        assert_eq!(
            blocked.recovery_point, None,
            "waiting for the bucket protects nothing"
        );
        assert_eq!(blocked.last_success, None);
    }

    #[test]
    fn the_wire_format_is_camel_case() {
        let v = serde_json::to_value(report(7, true, false, 1, Some(3), 5, 2)).unwrap();
        for key in [
            "version",
            "time",
            "storageReady",
            "healthy",
            "queueDepth",
            "oldestUnshipped",
            "recoveryPoint",
            "lastSuccess",
            "filesShipped",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["recoveryPoint"], 3);
    }
}
