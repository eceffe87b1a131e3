//! Status from real objects: pods made by the real StatefulSet controller (kube-controller-manager),
//! their status patched by the test as a kubelet would, and the TableSnap's `Ready` and `Degraded`
//! follow: a pod counts as protected only when its agent runs with the current configuration.

mod common;

use common::context;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tablesnap_operator::apply::reconcile;
use tablesnap_operator::crd::{TableSnap, TableSnapStatus};
use tablesnap_operator::render::HASH_ANNOTATION;

const WAIT: Duration = Duration::from_secs(60);

async fn reconciled(client: &Client, ns: &str) -> TableSnapStatus {
    let api: Api<TableSnap> = Api::namespaced(client.clone(), ns);
    let ctx = context(client);
    for _ in 0..2 {
        let ts = api.get("nightly").await.unwrap();
        reconcile(Arc::new(ts), ctx.clone()).await.unwrap();
    }
    api.get("nightly").await.unwrap().status.unwrap_or_default()
}

fn condition(status: &TableSnapStatus, type_: &str) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {status:?}"));
    (c.status.clone(), c.reason.clone())
}

/// What a kubelet writes once a pod's containers and native sidecars started.
async fn kubelet_runs(client: &Client, ns: &str, pod: &Pod) {
    let now = jiff::Timestamp::now().to_string();
    let spec = pod.spec.as_ref().unwrap();
    let running = |name: &str| json!({"name": name, "image": "x", "imageID": "", "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}});
    let init: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| running(&c.name))
        .collect();
    let main: Vec<_> = spec.containers.iter().map(|c| running(&c.name)).collect();
    let conditions: Vec<_> = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": now}))
        .collect();
    let status = json!({"status": {"phase": "Running", "startTime": now, "conditions": conditions, "initContainerStatuses": init, "containerStatuses": main}});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
        .unwrap();
}

/// The pod `name` once the StatefulSet controller recreated it from the current template (it
/// carries `hash`), marked running.
async fn rolled_and_running(client: &Client, ns: &str, name: &str, hash: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = common::wait_for(&format!("pod {name} with config {hash}"), WAIT, || async {
        let p = pods.get_opt(name).await.ok()??;
        (p.annotations().get(HASH_ANNOTATION).map(String::as_str) == Some(hash)).then_some(p)
    })
    .await;
    kubelet_runs(client, ns, &pod).await;
}

async fn template_hash(client: &Client, ns: &str) -> String {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get("cass")
        .await
        .unwrap();
    sts.spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[HASH_ANNOTATION]
        .clone()
}

#[tokio::test]
async fn ready_and_degraded_follow_the_pods_the_statefulset_controller_rolls() {
    let Some(client) =
        common::client("ready_and_degraded_follow_the_pods_the_statefulset_controller_rolls").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "status").await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "cass", "labels": {"backup": "tablesnap"}},
        "spec": {
            "replicas": 2, "serviceName": "cass", "podManagementPolicy": "Parallel",
            // OnDelete: a pod takes the new template when the test deletes it, so that every
            // count below is deterministic (RollingUpdate would race the assertions).
            "updateStrategy": {"type": "OnDelete"},
            // matchExpressions: the pod count must use the whole selector.
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["cass"]}]},
            "template": {"metadata": {"labels": {"app": "cass"}}, "spec": {"containers": [{"name": "cassandra", "image": "cassandra:5.0", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    // A pod of something else in the namespace, not selected.
    let other: Pod = serde_json::from_value(json!({"metadata": {"name": "other", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}})).unwrap();
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    common::wait_for(
        "the StatefulSet controller creates 2 pods",
        WAIT,
        || async {
            let n = pods
                .list(&ListParams::default().labels("app=cass"))
                .await
                .ok()?
                .items
                .len();
            (n == 2).then_some(())
        },
    )
    .await;
    let ts: TableSnap = serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly"},
        "spec": {"bucket": "backups", "region": "garage", "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
    }))
    .unwrap();
    Api::<TableSnap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ts)
        .await
        .unwrap();

    let status = reconciled(&client, &ns).await;
    assert_eq!(
        (status.targets[0].pods_ready, status.targets[0].pods_total),
        (0, 2),
        "only the StatefulSet's pods count: {status:?}"
    );
    assert_eq!(condition(&status, "Ready").0, "False");

    // cass-1 is deleted (OnDelete), the controller recreates it from the new template, it
    // runs: one of two protected.
    let hash = template_hash(&client, &ns).await;
    pods.delete("cass-1", &Default::default()).await.unwrap();
    rolled_and_running(&client, &ns, "cass-1", &hash).await;
    let status = reconciled(&client, &ns).await;
    assert_eq!(
        (status.targets[0].pods_ready, status.targets[0].pods_total),
        (1, 2),
        "{status:?}"
    );
    assert_eq!(condition(&status, "Ready").0, "False");
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "AgentsNotRunning".into())
    );

    // Then cass-0: all protected.
    pods.delete("cass-0", &Default::default()).await.unwrap();
    rolled_and_running(&client, &ns, "cass-0", &hash).await;
    let status = reconciled(&client, &ns).await;
    assert_eq!(
        (status.targets[0].pods_ready, status.targets[0].pods_total),
        (2, 2),
        "{status:?}"
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "AllPodsProtected".into())
    );
    assert_eq!(condition(&status, "Degraded").0, "False");

    // A spec change: the running agents have the old configuration until their pods roll.
    Api::<TableSnap>::namespaced(client.clone(), &ns)
        .patch(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"prefix": "other"}})),
        )
        .await
        .unwrap();
    let status = reconciled(&client, &ns).await;
    assert_ne!(template_hash(&client, &ns).await, hash);
    assert_eq!(
        condition(&status, "Ready").0,
        "False",
        "pods running the old configuration count as protected: {status:?}"
    );
    assert_eq!(status.targets[0].pods_ready, 0, "{status:?}");
    // No operator runs to honour the finalizer: release it, so the namespace can go.
    let _ = Api::<TableSnap>::namespaced(client.clone(), &ns)
        .patch(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    common::drop_namespace(&client, &ns).await;
}
