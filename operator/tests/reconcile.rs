//! The reconciler against a scripted mock API server (kube's tower-test): every request's method,
//! path, field manager and body is asserted, and a scenario fails on any request it did not expect.
//! Only what a real API server cannot easily be made to do stays here (a 500, exact request
//! sequences of removal and conflicts); injection, spec updates, status and "an unchanged world
//! writes nothing" are proven against the real kube-apiserver (`real_*.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tablesnap_operator::apply::{Context, FINALIZER, reconcile};
use tablesnap_operator::crd::TableSnap;
use tablesnap_operator::metrics::Metrics;
use tablesnap_operator::render::{self, FIELD_MANAGER};
use tablesnap_operator::samples;
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const NS: &str = "cassandra";
const TABLESNAPS: &str = "/apis/tablesnap.io/v1alpha1/namespaces/cassandra/tablesnaps";
const STATEFULSETS: &str = "/apis/apps/v1/namespaces/cassandra/statefulsets";
const DATACENTERS: &str =
    "/apis/cassandra.datastax.com/v1beta1/namespaces/cassandra/cassandradatacenters";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/cassandra/events";

/// One request as the server saw it.
struct Seen {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Value,
    reply: SendResponse<Response<Body>>,
}

impl Seen {
    fn respond(self, status: StatusCode, body: Value) {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.reply.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .unwrap(),
        );
    }

    fn ok(self, body: Value) {
        self.respond(StatusCode::OK, body);
    }

    fn assert_apply(&self) {
        assert_eq!(self.method, Method::PATCH, "{}", self.path);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{}",
            self.path
        );
        assert_eq!(
            self.query.get("fieldManager").map(String::as_str),
            Some(FIELD_MANAGER),
            "{}",
            self.path
        );
        assert_eq!(
            self.query.get("force").map(String::as_str),
            Some("true"),
            "{}",
            self.path
        );
    }
}

struct ApiServer(ApiHandle);

impl ApiServer {
    async fn next(&mut self, method: Method, path: &str) -> Seen {
        let (request, reply) = tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("the client went away before {method} {path}"));
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (
                    k.to_owned(),
                    v.replace("%2F", "/")
                        .replace("%3D", "=")
                        .replace("%2C", ","),
                )
            })
            .collect();
        let seen = Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query,
            content_type: parts
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned()),
            body,
            reply,
        };
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request"
        );
        seen
    }

    async fn list(&mut self, path: &str, kind: &str, items: Vec<Value>) {
        let seen = self.next(Method::GET, path).await;
        seen.ok(json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items}));
    }

    async fn not_found(&mut self, path: &str) {
        let seen = self.next(Method::GET, path).await;
        seen.respond(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"}),
        );
    }

    async fn event(&mut self, reason: &str) -> Value {
        let seen = self.next(Method::POST, EVENTS).await;
        assert_eq!(seen.body["reason"], reason);
        assert_eq!(seen.body["regarding"]["kind"], "TableSnap");
        assert_eq!(seen.body["reportingController"], FIELD_MANAGER);
        let body = seen.body.clone();
        seen.ok(body.clone());
        body
    }

    /// Fails if the operator sends anything more (all clients are dropped by then).
    async fn done(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!(
                "unexpected extra request {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

fn setup() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: None,
        },
    );
    (
        Arc::new(Context {
            client,
            recorder,
            metrics: Metrics::default(),
        }),
        ApiServer(handle),
    )
}

/// Run one reconcile against a scripted server; the script must consume every request.
async fn scenario<F, Fut>(ts: TableSnap, script: F) -> kube::runtime::controller::Action
where
    F: FnOnce(ApiServer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let (ctx, server) = setup();
    let reconciled = tokio::spawn(reconcile(Arc::new(ts), ctx));
    let server = script(server).await;
    // The server sees the end of the stream once the reconcile is over and its `ctx` gone, or
    // fails on a request the script did not expect (which the reconcile would wait on for ever).
    server.done().await;
    reconciled
        .await
        .expect("the reconcile task")
        .expect("reconcile succeeds")
}

fn with_finalizer(mut ts: TableSnap) -> TableSnap {
    ts.metadata.finalizers = Some(vec![FINALIZER.into()]);
    ts
}

fn bitnami() -> Value {
    serde_yaml::from_str(samples::BITNAMI_STATEFULSET).unwrap()
}

/// The expected apply body for the Bitnami StatefulSet, from the pure renderer.
fn bitnami_body(ts: &TableSnap) -> Value {
    let data = tablesnap_operator::resolve::DataVolume {
        volume: "data".into(),
        mount_path: "/bitnami/cassandra".into(),
    };
    render::apply_body(
        ts,
        tablesnap_operator::crd::TargetKind::StatefulSet,
        "cassandra",
        "cassandra",
        &data,
    )
}

/// The Bitnami StatefulSet as the API server holds it after our apply.
fn bitnami_patched(ts: &TableSnap) -> Value {
    render::merged(&bitnami(), &bitnami_body(ts))
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

#[tokio::test]
async fn create_adds_the_finalizer_first() {
    let ts = samples::tablesnap();
    let object = serde_json::to_value(&ts).unwrap();
    scenario(ts, |mut api| async move {
        let seen = api
            .next(Method::PATCH, &format!("{TABLESNAPS}/nightly"))
            .await;
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/json-patch+json")
        );
        assert_eq!(
            seen.body[1],
            json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
        );
        let mut updated = object.clone();
        updated["metadata"]["finalizers"] = json!([FINALIZER]);
        seen.ok(updated);
        api
    })
    .await;
}

#[tokio::test]
async fn target_that_stops_matching_gets_exactly_our_fields_removed() {
    let ts = with_finalizer(samples::tablesnap());
    let mut live = bitnami_patched(&ts);
    live["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("backup");
    let own = serde_json::to_value(&ts).unwrap();
    scenario(ts, |mut api| async move {
        api.list(TABLESNAPS, "TableSnap", vec![own.clone()]).await;
        api.list(STATEFULSETS, "StatefulSet", vec![live]).await;
        api.not_found(DATACENTERS).await;
        let seen = api.next(Method::PATCH, &format!("{STATEFULSETS}/cassandra")).await;
        seen.assert_apply();
        assert_eq!(seen.body, json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "cassandra", "namespace": NS}}));
        seen.ok(bitnami());
        api.event("Removed").await;
        let seen = api.next(Method::PATCH, &format!("{TABLESNAPS}/nightly/status")).await;
        assert_eq!(seen.body["status"]["targetCount"], 0);
        assert_eq!(condition(&seen.body["status"], "TargetsResolved")["reason"], "NoTargets");
        seen.ok(own);
        api
    })
    .await;
}

#[tokio::test]
async fn delete_removes_our_fields_then_the_finalizer() {
    let mut ts = with_finalizer(samples::tablesnap());
    ts.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-05-01T00:00:00Z".parse().unwrap(),
    ));
    let own = serde_json::to_value(&ts).unwrap();
    let injected = bitnami_patched(&ts);
    let untouched: Value = serde_yaml::from_str(samples::TWO_VOLUMES_STATEFULSET).unwrap();
    scenario(ts, |mut api| async move {
        api.list(STATEFULSETS, "StatefulSet", vec![untouched, injected]).await;
        api.not_found(DATACENTERS).await;
        let seen = api.next(Method::PATCH, &format!("{STATEFULSETS}/cassandra")).await;
        seen.assert_apply();
        assert_eq!(seen.body, json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "cassandra", "namespace": NS}}));
        seen.ok(bitnami());
        api.event("Removed").await;
        let seen = api.next(Method::PATCH, &format!("{TABLESNAPS}/nightly")).await;
        assert_eq!(seen.content_type.as_deref(), Some("application/json-patch+json"));
        assert_eq!(seen.body, json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER}, {"op": "remove", "path": "/metadata/finalizers/0"}]));
        let mut gone = own.clone();
        gone["metadata"]["finalizers"] = json!([]);
        seen.ok(gone);
        api
    })
    .await;
}

#[tokio::test]
async fn the_later_tablesnap_reports_a_conflict_and_patches_nothing() {
    let older = with_finalizer(samples::tablesnap());
    let mut newer = with_finalizer(samples::tablesnap());
    newer.metadata.name = Some("hourly".into());
    newer.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-04-01T00:00:00Z".parse().unwrap(),
    ));
    let all = vec![
        serde_json::to_value(&older).unwrap(),
        serde_json::to_value(&newer).unwrap(),
    ];
    let live = bitnami_patched(&older);
    let newer_object = all[1].clone();
    scenario(newer.clone(), |mut api| async move {
        api.list(TABLESNAPS, "TableSnap", all).await;
        api.list(STATEFULSETS, "StatefulSet", vec![live]).await;
        api.not_found(DATACENTERS).await;
        let event = api.event("Conflict").await;
        assert_eq!(event["type"], "Warning");
        assert!(
            event["note"]
                .as_str()
                .unwrap()
                .contains("older TableSnap nightly")
        );
        let seen = api
            .next(Method::PATCH, &format!("{TABLESNAPS}/hourly/status"))
            .await;
        seen.assert_apply();
        let status = &seen.body["status"];
        assert_eq!(status["targets"][0]["reason"], "Conflict");
        assert_eq!(status["targets"][0]["injected"], false);
        assert_eq!(condition(status, "TargetsResolved")["reason"], "Conflict");
        assert_eq!(condition(status, "Ready")["status"], "False");
        seen.ok(newer_object);
        api
    })
    .await;
    assert_eq!(newer.name_any(), "hourly");
}

#[tokio::test]
async fn unresolvable_and_k8ssandra_targets_become_conditions_not_patches() {
    let ts = with_finalizer(samples::tablesnap());
    let own = serde_json::to_value(&ts).unwrap();
    scenario(ts, |mut api| async move {
        api.list(TABLESNAPS, "TableSnap", vec![own.clone()]).await;
        api.list(
            STATEFULSETS,
            "StatefulSet",
            vec![serde_yaml::from_str(samples::NO_VOLUME_STATEFULSET).unwrap()],
        )
        .await;
        api.list(
            DATACENTERS,
            "CassandraDatacenter",
            vec![serde_yaml::from_str(samples::K8SSANDRA_DATACENTER).unwrap()],
        )
        .await;
        let event = api.event("TargetSkipped").await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["related"]["name"], "cass-ephemeral");
        let event = api.event("TargetSkipped").await;
        assert!(
            event["note"]
                .as_str()
                .unwrap()
                .contains("K8ssandraCluster demo")
        );
        let seen = api
            .next(Method::PATCH, &format!("{TABLESNAPS}/nightly/status"))
            .await;
        seen.assert_apply();
        let status = &seen.body["status"];
        let reasons: Vec<&str> = status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["DataVolumeNotFound", "ManagedByK8ssandra"]);
        let resolved = condition(status, "TargetsResolved");
        assert_eq!(
            (resolved["status"].as_str(), resolved["reason"].as_str()),
            (Some("False"), Some("DataVolumeNotFound"))
        );
        assert!(
            resolved["message"]
                .as_str()
                .unwrap()
                .contains("spec.cassandra.initContainers")
        );
        assert_eq!(condition(status, "Injected")["status"], "False");
        assert_eq!(condition(status, "Ready")["status"], "False");
        seen.ok(own);
        api
    })
    .await;
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_for_a_retry() {
    let (ctx, mut api) = setup();
    let ts = with_finalizer(samples::tablesnap());
    let server = tokio::spawn(async move {
        let seen = api.next(Method::GET, TABLESNAPS).await;
        seen.respond(
            StatusCode::FORBIDDEN,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": "forbidden"}),
        );
        api
    });
    let error = reconcile(Arc::new(ts), ctx)
        .await
        .expect_err("a 403 must fail the reconcile");
    assert!(error.to_string().contains("forbidden"), "{error}");
    server.await.unwrap().done().await;
}

/// Issue 13 (mutation testing): a skip the status already reports is not announced again. Two
/// StatefulSets skipped for different reasons and a CassandraDatacenter: the first reconcile
/// publishes a Warning for each; the next, with that status, sends no event and writes nothing
/// (each target's previous status is found by its own kind and name).
#[tokio::test]
async fn a_skip_already_in_the_status_is_not_announced_again() {
    let ts = with_finalizer(samples::tablesnap());
    let own = serde_json::to_value(&ts).unwrap();
    let other_container = samples::NO_VOLUME_STATEFULSET
        .replace("cass-ephemeral", "cass-other")
        .replace("- name: cassandra", "- name: db");
    let world = move || {
        (
            vec![
                serde_yaml::from_str::<Value>(samples::NO_VOLUME_STATEFULSET).unwrap(),
                serde_yaml::from_str::<Value>(&other_container).unwrap(),
            ],
            vec![serde_yaml::from_str::<Value>(samples::K8SSANDRA_DATACENTER).unwrap()],
        )
    };
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let (sts, dcs) = world();
    let (first, object) = (written.clone(), own.clone());
    scenario(ts.clone(), |mut api| async move {
        api.list(TABLESNAPS, "TableSnap", vec![object.clone()])
            .await;
        api.list(STATEFULSETS, "StatefulSet", sts).await;
        api.list(DATACENTERS, "CassandraDatacenter", dcs).await;
        let mut related = Vec::new();
        for _ in 0..3 {
            related.push(api.event("TargetSkipped").await["related"]["name"].clone());
        }
        assert_eq!(
            related,
            [json!("cass-ephemeral"), json!("cass-other"), json!("dc2")]
        );
        let seen = api
            .next(Method::PATCH, &format!("{TABLESNAPS}/nightly/status"))
            .await;
        let reasons: Vec<Value> = seen.body["status"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["reason"].clone())
            .collect();
        assert_eq!(
            reasons,
            [
                json!("DataVolumeNotFound"),
                json!("CassandraContainerNotFound"),
                json!("ManagedByK8ssandra")
            ]
        );
        *first.lock().unwrap() = seen.body["status"].clone();
        seen.ok(object);
        api
    })
    .await;

    let mut again = ts;
    again.status = Some(serde_json::from_value(written.lock().unwrap().clone()).unwrap());
    let object = serde_json::to_value(&again).unwrap();
    let (sts, dcs) = world();
    scenario(again, |mut api| async move {
        api.list(TABLESNAPS, "TableSnap", vec![object]).await;
        api.list(STATEFULSETS, "StatefulSet", sts).await;
        api.list(DATACENTERS, "CassandraDatacenter", dcs).await;
        // Nothing more: `done` fails on an event or a status write.
        api
    })
    .await;
}
