//! What the injected pod template makes of real pods: the API server computes a pod's QoS class
//! and enforces Pod Security admission when the StatefulSet controller creates it.
//! - A Guaranteed Cassandra pod stays Guaranteed with the default sidecar resources.
//! - A `securityContext` override merges with the restricted-compliant defaults, so pods of a
//!   namespace that enforces `restricted` are still admitted.

mod common;

use common::context;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tablesnap_operator::apply::reconcile;
use tablesnap_operator::crd::TableSnap;
use tablesnap_operator::render::HASH_ANNOTATION;

/// A Cassandra StatefulSet whose container is Guaranteed (requests = limits) and complies with
/// the `restricted` Pod Security Standard.
fn cassandra() -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "cass", "labels": {"backup": "tablesnap"}},
        "spec": {
            "replicas": 1, "serviceName": "cass",
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": {"app": "cass"}},
            "template": {
                "metadata": {"labels": {"app": "cass"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 999, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "cassandra", "image": "cassandra:5.0",
                        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .unwrap()
}

/// Inject a TableSnap with this `agent` block, delete the pod (OnDelete) and return the pod the
/// StatefulSet controller creates from the new template, or why it could not create one.
async fn rolled_pod(client: &Client, ns: &str, agent: Value) -> Result<Pod, String> {
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    sts.create(&PostParams::default(), &cassandra())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    common::wait_for("the first pod", Duration::from_secs(30), || async {
        pods.get_opt("cass-0").await.ok()?.map(|_| ())
    })
    .await;
    let ts: TableSnap = serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {"bucket": "backups", "region": "garage", "agent": agent, "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
    }))
    .unwrap();
    let tss: Api<TableSnap> = Api::namespaced(client.clone(), ns);
    tss.create(&PostParams::default(), &ts).await.unwrap();
    let ctx = context(client);
    // The finalizer, the pre-flight pod (the test plays its kubelet), the apply.
    for _ in 0..3 {
        common::kubelet_passes_preflight(client, ns).await;
        reconcile(Arc::new(tss.get("nightly").await.unwrap()), ctx.clone())
            .await
            .unwrap();
    }
    let template = sts.get("cass").await.unwrap().spec.unwrap().template;
    let hash = template.metadata.unwrap().annotations.unwrap()[HASH_ANNOTATION].clone();
    pods.delete("cass-0", &Default::default()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(p) = pods.get_opt("cass-0").await.unwrap()
            && p.annotations().get(HASH_ANNOTATION) == Some(&hash)
        {
            return Ok(p);
        }
        if std::time::Instant::now() > deadline {
            let events = Api::<Event>::namespaced(client.clone(), ns)
                .list(&Default::default())
                .await
                .unwrap();
            let why: Vec<String> = events
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
                .filter_map(|e| e.note)
                .collect();
            return Err(format!("no pod from the new template in 20 s: {why:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_guaranteed_cassandra_pod_stays_guaranteed() {
    let Some(client) = common::client("a_guaranteed_cassandra_pod_stays_guaranteed").await else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "qos").await;
    let pod = rolled_pod(&client, &ns, json!({})).await;
    common::drop_namespace(&client, &ns).await;
    let pod = pod.unwrap();
    let qos = pod.status.and_then(|s| s.qos_class);
    assert_eq!(
        qos.as_deref(),
        Some("Guaranteed"),
        "the API server's QoS class for the pod with the default sidecar"
    );
}

#[tokio::test]
async fn a_security_context_override_keeps_pods_admitted_under_restricted() {
    let Some(client) =
        common::client("a_security_context_override_keeps_pods_admitted_under_restricted").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "psa").await;
    let restricted =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    Api::<Namespace>::all(client.clone())
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&restricted))
        .await
        .unwrap();
    // Only the uid is set: the rest of the defaults must stay.
    let pod = rolled_pod(&client, &ns, json!({"securityContext": {"runAsUser": 999}})).await;
    common::drop_namespace(&client, &ns).await;
    let pod = pod.unwrap_or_else(|e| panic!("the pod was not admitted: {e}"));
    let sidecar = pod
        .spec
        .unwrap()
        .init_containers
        .unwrap()
        .into_iter()
        .find(|c| c.name == "tablesnap")
        .unwrap();
    let sc = sidecar.security_context.unwrap();
    assert_eq!(sc.run_as_user, Some(999));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
}
