//! Status from real objects: pods made by the real StatefulSet controller (kube-controller-manager),
//! their status patched by the test as a kubelet would, real agents serving their reports on the
//! pods' IPs (loopback addresses), and the TableSnap's `Ready` and `Degraded` follow: a pod counts
//! as protected only when its agent runs with the current configuration and says that it ships.

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

use common::reconciled;

fn condition(status: &TableSnapStatus, type_: &str) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {status:?}"));
    (c.status.clone(), c.reason.clone())
}

/// The pod `name` once the StatefulSet controller recreated it from the current template (it
/// carries `hash`), marked running.
async fn rolled_and_running(client: &Client, ns: &str, name: &str, hash: &str, ip: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = common::wait_for(&format!("pod {name} with config {hash}"), WAIT, || async {
        let p = pods.get_opt(name).await.ok()??;
        (p.annotations().get(HASH_ANNOTATION).map(String::as_str) == Some(hash)).then_some(p)
    })
    .await;
    common::kubelet_runs(client, ns, &pod, Some(ip)).await;
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
    // The agents listen on the pods' IPs (127.0.3.x here) at the TableSnap's agent port.
    let port = common::free_port();
    let ts: TableSnap = serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly"},
        "spec": {"bucket": "backups", "region": "garage", "agent": {"httpPort": port}, "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
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
    // runs, its agent ships: one of two protected.
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());
    let hash = template_hash(&client, &ns).await;
    pods.delete("cass-1", &Default::default()).await.unwrap();
    let _agent1 = common::AgentProcess::start("127.0.3.2", port, &[&store_url]).await;
    rolled_and_running(&client, &ns, "cass-1", &hash, "127.0.3.2").await;
    let status = reconciled(&client, &ns).await;
    let t = &status.targets[0];
    assert_eq!(
        (t.pods_ready, t.pods_protected, t.pods_total),
        (1, 1, 2),
        "{status:?}"
    );
    assert_eq!(condition(&status, "Ready").0, "False");
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "AgentsNotRunning".into())
    );
    assert_eq!(t.oldest_recovery_point, None, "cass-0 has none: {t:?}");
    assert!(
        t.unprotected
            .iter()
            .any(|u| u.starts_with("cass-0: the agent is not running")),
        "{t:?}"
    );

    // cass-0 rolls and its container runs, but its agent cannot reach its bucket: running is
    // not protected.
    pods.delete("cass-0", &Default::default()).await.unwrap();
    let waiting = common::AgentProcess::start(
        "127.0.3.1",
        port,
        &[
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--wait-for-bucket",
            "backups",
        ],
    )
    .await;
    rolled_and_running(&client, &ns, "cass-0", &hash, "127.0.3.1").await;
    let status = reconciled(&client, &ns).await;
    let t = &status.targets[0];
    assert_eq!(
        (t.pods_ready, t.pods_protected, t.pods_total),
        (2, 1, 2),
        "{status:?}"
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "AgentsNotShipping".into())
    );
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "AgentsNotShipping".into())
    );
    assert_eq!(
        t.unprotected,
        ["cass-0: the agent waits for the bucket (see its log)"],
        "{t:?}"
    );
    assert_eq!(t.oldest_recovery_point, None, "{t:?}");

    // Its storage fixed (the agent restarted with it): all protected, with a recovery point.
    drop(waiting);
    let _agent0 = common::AgentProcess::start("127.0.3.1", port, &[&store_url]).await;
    let before = jiff::Timestamp::now();
    let status = reconciled(&client, &ns).await;
    let t = &status.targets[0];
    assert_eq!(
        (t.pods_ready, t.pods_protected, t.pods_total),
        (2, 2, 2),
        "{status:?}"
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "AllPodsProtected".into())
    );
    assert_eq!(condition(&status, "Degraded").0, "False");
    let point: jiff::Timestamp = t
        .oldest_recovery_point
        .as_deref()
        .unwrap_or_else(|| panic!("no recovery point: {t:?}"))
        .parse()
        .unwrap();
    assert!(
        (point.as_second() - before.as_second()).abs() <= 5,
        "idle agents: the recovery point is the time of their report ({point} vs {before})"
    );

    // An unchanged world writes nothing: one more reconcile, as a ServiceAccount so that the
    // API server's audit log shows every request it made, sends reads only (the recovery point
    // moved by less than a step, so the status is not rewritten; the pre-flight check passed for
    // this configuration, so no pod is created).
    let live = Api::<TableSnap>::namespaced(client.clone(), &ns)
        .get("nightly")
        .await
        .unwrap();
    assert!(
        live.status.as_ref().unwrap().preflight_passed.is_some(),
        "{live:?}"
    );
    let sa_client = common::admin_service_account(&client, &ns, "steady").await;
    let user = format!("system:serviceaccount:{ns}:steady");
    let seen = common::audited(&user)
        .expect("the audit log of e2e/scripts/k8s.sh")
        .len();
    reconcile(Arc::new(live), context(&sa_client))
        .await
        .unwrap();
    let requests: Vec<_> = common::audited(&user).unwrap().split_off(seen);
    assert!(
        requests
            .iter()
            .any(|r| r.verb == "list" && r.resource == "pods"),
        "the reconcile's reads are in the audit log: {requests:?}"
    );
    let writes: Vec<_> = requests
        .iter()
        .filter(|r| matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete"))
        .collect();
    assert!(
        writes.is_empty(),
        "a reconcile of an unchanged world wrote: {writes:?}"
    );
    common::drop_admin_service_account(&client, &ns, "steady").await;

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
    assert_eq!(status.targets[0].pods_protected, 0, "{status:?}");
    // No operator runs to honour the finalizer: release it, so the namespace can go.
    common::release_finalizer(&client, &ns).await;
    common::drop_namespace(&client, &ns).await;
}

/// A pod its StatefulSet wants and the API server will not create (here an admission policy,
/// as with a quota, or during a rollout between the old pod's deletion and the new one's
/// creation) runs no agent: it counts among the target's pods, is named as not protected, and
/// the TableSnap is not Ready while the one pod that exists ships (the status said "1 of 1
/// protected", Ready, when the real StatefulSet controller was between pods).
#[tokio::test]
async fn a_pod_the_statefulset_wants_and_cannot_have_is_not_protected() {
    let Some(client) =
        common::client("a_pod_the_statefulset_wants_and_cannot_have_is_not_protected").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "missing").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let policy = common::deny_policy(
        &client,
        &ns,
        &format!("{ns}-no-cass-1"),
        json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}),
        "object.metadata.name != 'cass-1'",
        "cass-1 is refused by policy",
    )
    .await;
    let probe: Pod = serde_json::from_value(json!({"metadata": {"name": "cass-1"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    common::wait_for("the policy in force", WAIT, || async {
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        pods.create(&pp, &probe).await.is_err().then_some(())
    })
    .await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "cass", "labels": {"backup": "tablesnap"}},
        "spec": {
            "replicas": 2, "serviceName": "cass", "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": {"app": "cass"}},
            "template": {"metadata": {"labels": {"app": "cass"}}, "spec": {"containers": [{"name": "cassandra", "image": "cassandra:5.0", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    common::wait_for(
        "the StatefulSet controller creates cass-0",
        WAIT,
        || async { pods.get_opt("cass-0").await.ok()?.map(|_| ()) },
    )
    .await;
    let port = common::free_port();
    let ts: TableSnap = serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly"},
        "spec": {"bucket": "backups", "region": "garage", "agent": {"httpPort": port}, "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
    }))
    .unwrap();
    Api::<TableSnap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ts)
        .await
        .unwrap();
    let status = reconciled(&client, &ns).await;
    let t = &status.targets[0];
    assert_eq!(
        (t.injected, t.pods_ready, t.pods_protected, t.pods_total),
        (true, 0, 0, 2),
        "{status:?}"
    );

    // cass-0 takes the sidecar and its agent ships; cass-1 still cannot be created.
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());
    let hash = template_hash(&client, &ns).await;
    pods.delete("cass-0", &Default::default()).await.unwrap();
    let _agent = common::AgentProcess::start("127.0.3.3", port, &[&store_url]).await;
    rolled_and_running(&client, &ns, "cass-0", &hash, "127.0.3.3").await;
    assert!(pods.get_opt("cass-1").await.unwrap().is_none());
    let status = reconciled(&client, &ns).await;
    let t = &status.targets[0];
    assert_eq!(
        (t.pods_ready, t.pods_protected, t.pods_total),
        (1, 1, 2),
        "{status:?}"
    );
    assert_eq!(
        t.unprotected,
        [format!("cass-1: {}", tablesnap_operator::status::MISSING)],
        "{t:?}"
    );
    assert_eq!(t.oldest_recovery_point, None, "cass-1 has none: {t:?}");
    assert_eq!(condition(&status, "Ready").0, "False", "{status:?}");
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "AgentsNotRunning".into())
    );
    policy.remove().await;
    common::release_finalizer(&client, &ns).await;
    common::drop_namespace(&client, &ns).await;
}
