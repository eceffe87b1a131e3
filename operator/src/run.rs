//! The operator process: `/healthz` and `/metrics` at once, leader election, then the controller
//! until a signal or the loss of the lease; a second signal stops at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::apply::{Context, reconcile};
use crate::crd::TableSnap;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::render::FIELD_MANAGER;
use crate::resolve::cassandra_datacenter_resource;

/// Settings of the operator process.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address of `/healthz` and `/metrics`.
    pub http_listen: SocketAddr,
    /// Name of the Lease used for leader election.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own).
    pub lease_namespace: String,
    /// This replica's identity in the Lease (its pod name).
    pub identity: String,
    /// Watch only this namespace (TableSnaps and targets); `None` watches the whole cluster.
    pub namespace: Option<String>,
}

/// The API of a namespaced kind in the watched namespace, or in all namespaces.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn scoped_datacenters(client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = cassandra_datacenter_resource();
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Back off on errors; the reconcile is retried.
fn error_policy(ts: Arc<TableSnap>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(tablesnap = %ts.name_any(), namespace = ts.namespace().unwrap_or_default(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}

/// Every TableSnap of a namespace: any of them may select a changed object there.
fn tablesnaps_in(store: &Store<TableSnap>, namespace: Option<String>) -> Vec<ObjectRef<TableSnap>> {
    store
        .state()
        .iter()
        .filter(|t| t.namespace() == namespace)
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

/// Resolves when SIGTERM or Ctrl-C arrives; a second one exits the process at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: finishing reconciles in flight (a second signal stops at once)");
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::warn!("second signal: stopping now");
        std::process::exit(130);
    });
}

/// The HTTP endpoints: `/healthz` answers `ok` while the process runs; `/metrics` in Prometheus text.
pub fn http_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        )
                            .into_response(),
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        )
}

/// Whether cass-operator's CassandraDatacenter API exists in this cluster.
async fn has_cassandra_datacenters(client: &Client, namespace: Option<&str>) -> Result<bool> {
    let api = scoped_datacenters(client, namespace);
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Run the operator until shutdown.
pub async fn run(client: Client, settings: Settings) -> Result<()> {
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .map_err(Error::Io)?;
    tracing::info!(addr = %settings.http_listen, "serving /healthz and /metrics");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let http = tokio::spawn({
        let stopped = stopped(stop_rx.clone());
        async move {
            axum::serve(listener, http_router(Arc::new(registry)))
                .with_graceful_shutdown(stopped)
                .await
        }
    });
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let lease = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
        .with_namespace(&settings.lease_namespace)
        .with_identity(&settings.identity)
        // One field manager per replica: kube-lease-manager's mutual exclusion is the conflict
        // between two managers' applies to an orphaned lease; a shared one lets both win it.
        .with_field_manager(format!("{FIELD_MANAGER}-lease-{}", settings.identity))
        .build()
        .await
        .map_err(|e| Error::LeaderElection(e.to_string()))?;
    let (mut leader, lease_task) = lease.watch().await;
    tracing::info!(lease = %settings.lease_name, identity = %settings.identity, "waiting to become the leader");
    let mut stop = stop_rx.clone();
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader.changed() => { changed.map_err(|_| Error::LeaderElection("the lease manager stopped".into()))?; }
            _ = stop.wait_for(|s| *s) => {
                drop(leader);
                let _ = lease_task.await;
                return Ok(());
            }
        }
    }
    tracing::info!("became the leader; starting the controller");

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(settings.identity.clone()),
        },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder,
        metrics,
    });
    let namespace = settings.namespace.as_deref();
    let controller = Controller::new(
        scoped::<TableSnap>(&client, namespace),
        watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let mut controller = controller.watches(
        scoped::<StatefulSet>(&client, namespace),
        watcher::Config::default(),
        {
            let store = store.clone();
            move |sts| tablesnaps_in(&store, sts.namespace())
        },
    );
    if has_cassandra_datacenters(&client, namespace).await? {
        let ar = cassandra_datacenter_resource();
        controller = controller.watches_with(
            scoped_datacenters(&client, namespace),
            ar,
            watcher::Config::default(),
            {
                let store = store.clone();
                move |dc| tablesnaps_in(&store, dc.namespace())
            },
        );
    } else {
        tracing::info!("no CassandraDatacenter API in this cluster; watching StatefulSets only");
    }

    // Stop on a signal, or when another replica holds the lease.
    let (lost_tx, lost_rx) = watch::channel(false);
    let lease_watch = tokio::spawn(async move {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                let _ = lost_tx.send(true);
                return;
            }
        }
    });
    let trigger = {
        let signal = stopped(stop_rx.clone());
        let lost = stopped(lost_rx.clone());
        async move {
            tokio::select! { _ = signal => {}, _ = lost => {} }
        }
    };
    controller
        .graceful_shutdown_on(trigger)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
    tracing::info!("controller stopped");
    let lost = *lost_rx.borrow();
    // Dropping the last receiver makes the lease manager release the Lease, so that another
    // replica takes over at once instead of after the lease duration.
    lease_watch.abort();
    let _ = lease_watch.await;
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the lease"),
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "could not release the lease; it expires by itself")
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("the lease manager did not stop in time; the lease expires by itself")
        }
    }
    if lost {
        http.abort();
        return Err(Error::LeaderElection(
            "lost the lease to another replica".into(),
        ));
    }
    let _ = http.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_text(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn a_changed_object_wakes_the_tablesnaps_of_its_namespace_only() {
        let (store, mut writer) = kube::runtime::reflector::store::<TableSnap>();
        let mut other_ns = crate::samples::tablesnap();
        other_ns.metadata.namespace = Some("elsewhere".into());
        let mut second = crate::samples::tablesnap();
        second.metadata.name = Some("hourly".into());
        for ts in [crate::samples::tablesnap(), second, other_ns] {
            writer.apply_watcher_event(&watcher::Event::Apply(ts));
        }
        let mut names: Vec<String> = tablesnaps_in(&store, Some("cassandra".into()))
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, ["hourly", "nightly"]);
        assert!(tablesnaps_in(&store, Some("nowhere".into())).is_empty());
    }

    #[tokio::test]
    async fn healthz_and_metrics() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics
            .reconciles
            .get_or_create(&crate::metrics::ResultLabel { result: "ok" })
            .inc();
        let router = http_router(Arc::new(registry));
        assert_eq!(
            get_text(router.clone(), "/healthz").await,
            (StatusCode::OK, "ok".to_owned())
        );
        let (status, body) = get_text(router.clone(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("tablesnap_operator_reconciles_total{result=\"ok\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("tablesnap_operator_reconcile_duration_seconds"),
            "{body}"
        );
        assert_eq!(get_text(router, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}
