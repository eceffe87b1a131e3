//! `--http-listen`: `/healthz` (the event loop and the uploader are turning) and `/metrics`.

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
        .with_state(Arc::new(Served { ctx, registry }));
    tracing::info!(%addr, "serving /healthz and /metrics");
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
