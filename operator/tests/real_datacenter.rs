//! A CassandraDatacenter under cass-operator's real CRDs (`../shared/k8s/`, copied to
//! `operator/tests/data/`) in a real kube-apiserver. With v1.32.0 (podTemplateSpec lists keyed by
//! name) the sidecar is merged into the user's `podTemplateSpec` and removed again exactly; with
//! v1.22.0 (atomic lists) an apply would replace the user's containers, init containers and
//! volumes, so the operator must leave them alone and say why.
//!
//! One test: both versions install the same cluster-scoped CRD, so they run one after the other.

mod common;

use common::context;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use tablesnap_operator::apply::reconcile;
use tablesnap_operator::crd::TableSnap;

const V1_32: &str = include_str!("data/cass-operator-v1.32.0-cassandradatacenters.crd.yaml");
const V1_22: &str = include_str!("data/cass-operator-v1.22.0-cassandradatacenters.crd.yaml");

fn datacenters(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cassandra.datastax.com",
        "v1beta1",
        "CassandraDatacenter",
    ));
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn user_datacenter() -> Value {
    json!({
        "apiVersion": "cassandra.datastax.com/v1beta1",
        "kind": "CassandraDatacenter",
        "metadata": {"name": "dc1"},
        "spec": {
            "clusterName": "cluster1",
            "serverType": "cassandra",
            "serverVersion": "4.1.5",
            "size": 3,
            "storageConfig": {"cassandraDataVolumeClaimSpec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}},
            "podTemplateSpec": {
                "metadata": {"annotations": {"team": "data"}},
                "spec": {
                    "containers": [{"name": "cassandra", "env": [{"name": "JVM_EXTRA_OPTS", "value": "-Dx=1"}]}, {"name": "exporter", "image": "exporter:1"}],
                    "initContainers": [{"name": "user-init", "image": "busybox:1.36"}],
                    "volumes": [{"name": "keystore", "secret": {"secretName": "keystore"}}]
                }
            }
        }
    })
}

fn tablesnap(ns: &str) -> TableSnap {
    serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1",
        "kind": "TableSnap",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {"bucket": "backups", "region": "garage", "targets": {"kind": "CassandraDatacenter", "name": "dc1"}}
    }))
    .unwrap()
}

async fn reconcile_passes(client: &Client, ns: &str, passes: usize) {
    let api: Api<TableSnap> = Api::namespaced(client.clone(), ns);
    let ctx = context(client);
    // One pass more than the callers count: the pre-flight pod's (the test plays its kubelet).
    for _ in 0..passes + 1 {
        common::kubelet_passes_preflight(client, ns).await;
        let Some(ts) = api.get_opt("nightly").await.unwrap() else {
            return;
        };
        reconcile(Arc::new(ts), ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("reconcile of {ns}/nightly failed: {e}"));
    }
}

/// The rack StatefulSet cass-operator makes of a datacenter: its podTemplateSpec (annotations
/// and our sidecar included) plus cass-operator's own container and claim, owned by the DC.
fn rack_statefulset(dc: &DynamicObject, pod_template: &Value) -> StatefulSet {
    let mut template = pod_template.clone();
    template["metadata"]["labels"] = json!({"cassandra.datastax.com/datacenter": "dc1", "cassandra.datastax.com/rack": "default"});
    template["spec"]["containers"][0]["image"] =
        json!("cr.k8ssandra.io/k8ssandra/cass-management-api:4.1.5");
    template["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "server-data", "mountPath": "/var/lib/cassandra"}]);
    serde_json::from_value(json!({
        "metadata": {
            "name": "cluster1-dc1-default-sts",
            "labels": {"cassandra.datastax.com/datacenter": "dc1"},
            "ownerReferences": [{"apiVersion": "cassandra.datastax.com/v1beta1", "kind": "CassandraDatacenter", "name": "dc1", "uid": dc.metadata.uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "replicas": 3, "serviceName": "cluster1-dc1-all-pods-service",
            "selector": {"matchLabels": {"cassandra.datastax.com/datacenter": "dc1", "cassandra.datastax.com/rack": "default"}},
            "template": template,
            "volumeClaimTemplates": [{"metadata": {"name": "server-data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]
        }
    }))
    .unwrap()
}

fn names(pod_spec: &Value, list: &str) -> Vec<String> {
    pod_spec[list]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Create the user's datacenter and the TableSnap, reconcile; return (before, after) podTemplateSpec.
async fn inject(client: &Client, ns: &str) -> (Value, Value) {
    let dcs = datacenters(client, ns);
    dcs.patch(
        "dc1",
        &PatchParams::apply("kubectl"),
        &Patch::Apply(user_datacenter()),
    )
    .await
    .unwrap();
    let before = dcs.get("dc1").await.unwrap().data["spec"]["podTemplateSpec"].clone();
    Api::<TableSnap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &tablesnap(ns))
        .await
        .unwrap();
    reconcile_passes(client, ns, 3).await;
    let after = dcs.get("dc1").await.unwrap().data["spec"]["podTemplateSpec"].clone();
    (before, after)
}

#[tokio::test]
async fn cassandra_datacenter_merges_from_v1_32_and_is_left_alone_before_v1_24() {
    let Some(client) =
        common::client("cassandra_datacenter_merges_from_v1_32_and_is_left_alone_before_v1_24")
            .await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;

    // v1.32.0: merged by name.
    common::install_crd(&client, V1_32).await;
    let ns = common::namespace(&client, "dc-v1-32").await;
    let (before, after) = inject(&client, &ns).await;
    let spec = &after["spec"];
    assert_eq!(names(spec, "containers"), ["cassandra", "exporter"]);
    assert_eq!(
        spec["containers"][0]["env"], before["spec"]["containers"][0]["env"],
        "the user's cassandra env is kept"
    );
    assert_eq!(names(spec, "initContainers"), ["user-init", "tablesnap"]);
    assert_eq!(names(spec, "volumes"), ["keystore", "tablesnap-scratch"]);
    assert_eq!(spec["initContainers"][1]["restartPolicy"], "Always");

    // cass-operator builds the rack StatefulSet from the podTemplateSpec, our annotations and
    // sidecar included, and owns it (review 10: the operator took it for one of its own
    // targets no longer selected and "removed" the sidecar on every reconcile).
    let dc = datacenters(&client, &ns).get("dc1").await.unwrap();
    let rack = rack_statefulset(&dc, &after);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams {
        field_manager: Some("cass-operator".into()),
        ..Default::default()
    };
    sts_api.create(&pp, &rack).await.unwrap();
    let rack_before = sts_api.get("cluster1-dc1-default-sts").await.unwrap();
    reconcile_passes(&client, &ns, 2).await;
    let rack_after = sts_api.get("cluster1-dc1-default-sts").await.unwrap();
    let not_status = |s: &StatefulSet| {
        let spec = serde_json::to_value(&s.spec).unwrap();
        let managed: Vec<_> = s
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| m.subresource.as_deref() != Some("status"))
            .map(|m| (m.manager.clone(), m.time.clone()))
            .collect();
        (spec, managed)
    };
    assert!(
        not_status(&rack_after) == not_status(&rack_before),
        "cass-operator's rack StatefulSet is not ours to change: managers {:?}",
        not_status(&rack_after).1
    );
    let removed: Vec<String> = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Removed"))
        .filter_map(|e| e.note)
        .collect();
    assert!(removed.is_empty(), "false Removed events: {removed:?}");

    Api::<TableSnap>::namespaced(client.clone(), &ns)
        .delete("nightly", &DeleteParams::default())
        .await
        .unwrap();
    reconcile_passes(&client, &ns, 2).await;
    let restored =
        datacenters(&client, &ns).get("dc1").await.unwrap().data["spec"]["podTemplateSpec"].clone();
    assert_eq!(
        restored, before,
        "deleting the TableSnap restores the podTemplateSpec exactly"
    );
    common::drop_namespace(&client, &ns).await;

    // v1.22.0: atomic lists. Nothing of the user's may be replaced; the status says why.
    common::install_crd(&client, V1_22).await;
    let ns = common::namespace(&client, "dc-v1-22").await;
    let (before, after) = inject(&client, &ns).await;
    let ts = Api::<TableSnap>::namespaced(client.clone(), &ns)
        .get("nightly")
        .await
        .unwrap();
    // Back to the current CRD for anything that runs later.
    common::install_crd(&client, V1_32).await;
    common::drop_namespace(&client, &ns).await;
    two_datacenters_roll_one_at_a_time(&client).await;
    assert_eq!(
        after, before,
        "the user's podTemplateSpec was replaced by an atomic-list apply"
    );
    let status = ts.status.expect("a status");
    let target = &status.targets[0];
    assert!(!target.injected, "{target:?}");
    assert_eq!(
        target.reason.as_deref(),
        Some("PodTemplateListsNotMergeable"),
        "{target:?}"
    );
    let message = target.message.clone().unwrap_or_default();
    assert!(
        message.contains("v1.24"),
        "the message names the cass-operator version that fixes it: {message}"
    );
    let resolved = status
        .conditions
        .iter()
        .find(|c| c.type_ == "TargetsResolved")
        .unwrap();
    assert_eq!(resolved.status, "False");
    assert_eq!(resolved.reason, "PodTemplateListsNotMergeable");
}

/// cass-operator's status of a datacenter, as it writes it.
async fn cass_operator_says(client: &Client, ns: &str, dc: &str, progress: &str, seen: bool) {
    let dcs = datacenters(client, ns);
    let generation = dcs.get(dc).await.unwrap().metadata.generation.unwrap();
    let observed = if seen { generation } else { generation - 1 };
    dcs.patch_status(
        dc,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"cassandraOperatorProgress": progress, "observedGeneration": observed}})),
    )
    .await
    .unwrap();
}

async fn target_states(client: &Client, ns: &str) -> Vec<(String, bool, Option<String>)> {
    let ts = Api::<TableSnap>::namespaced(client.clone(), ns)
        .get("nightly")
        .await
        .unwrap();
    let mut v: Vec<_> = ts
        .status
        .unwrap_or_default()
        .targets
        .into_iter()
        .map(|t| (t.name, t.injected, t.reason))
        .collect();
    v.sort();
    v
}

/// Two datacenters of one cluster (v1.32.0 CRD): the second gets the sidecar only once
/// cass-operator reports the first rolled out, so that no two racks restart a node at once.
async fn two_datacenters_roll_one_at_a_time(client: &Client) {
    let ns = common::namespace(client, "dc-two").await;
    let dcs = datacenters(client, &ns);
    for name in ["dc-a", "dc-b"] {
        let mut dc = user_datacenter();
        dc["metadata"] = json!({"name": name, "labels": {"backup": "tablesnap"}});
        dcs.patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(dc))
            .await
            .unwrap();
        cass_operator_says(client, &ns, name, "Ready", true).await;
    }
    let mut ts = tablesnap(&ns);
    ts.spec.targets =
        serde_json::from_value(json!({"selector": {"matchLabels": {"backup": "tablesnap"}}}))
            .unwrap();
    Api::<TableSnap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ts)
        .await
        .unwrap();
    let waiting = Some("WaitingForRollout".to_string());
    reconcile_passes(client, &ns, 2).await;
    assert_eq!(
        target_states(client, &ns).await,
        [
            ("dc-a".into(), true, None),
            ("dc-b".into(), false, waiting.clone())
        ],
        "dc-a changed and cass-operator has not seen it yet: dc-b waits"
    );
    cass_operator_says(client, &ns, "dc-a", "Updating", true).await;
    reconcile_passes(client, &ns, 1).await;
    assert_eq!(
        target_states(client, &ns).await[1],
        ("dc-b".into(), false, waiting),
        "dc-a is rolling: dc-b waits"
    );
    cass_operator_says(client, &ns, "dc-a", "Ready", true).await;
    reconcile_passes(client, &ns, 1).await;
    assert_eq!(
        target_states(client, &ns).await,
        [("dc-a".into(), true, None), ("dc-b".into(), true, None)],
        "dc-a rolled out: dc-b gets the sidecar"
    );
    common::release_finalizer(client, &ns).await;
    common::drop_namespace(client, &ns).await;
}
