//! The pre-flight check against the real API server: before the pod template of a Cassandra
//! StatefulSet changes, the operator runs one pod with the agent's image, the sidecar's env (its
//! Secret references) and pull secrets. The test writes that pod's status as the kubelet would for
//! a Secret that does not exist (`CreateContainerConfigError`), an image it cannot pull
//! (`ImagePullBackOff`), and a clean run; only the clean run lets the template change.

mod common;

use common::context;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tablesnap_operator::apply::reconcile;
use tablesnap_operator::crd::{TableSnap, TableSnapStatus};
use tablesnap_operator::preflight;

fn statefulset() -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "cass", "labels": {"backup": "tablesnap"}},
        "spec": {
            "replicas": 1, "serviceName": "cass",
            "selector": {"matchLabels": {"app": "cass"}},
            "template": {"metadata": {"labels": {"app": "cass"}}, "spec": {"containers": [{"name": "cassandra", "image": "cassandra:5.0", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .unwrap()
}

async fn pass(client: &Client, ns: &str) -> TableSnapStatus {
    let api: Api<TableSnap> = Api::namespaced(client.clone(), ns);
    reconcile(Arc::new(api.get("nightly").await.unwrap()), context(client))
        .await
        .unwrap();
    api.get("nightly").await.unwrap().status.unwrap_or_default()
}

async fn preflight_pod(client: &Client, ns: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut list = pods
        .list(&ListParams::default().labels(preflight::LABEL))
        .await
        .unwrap()
        .items;
    assert_eq!(list.len(), 1, "one pre-flight pod: {list:?}");
    list.pop().unwrap()
}

/// The kubelet's word for a container it cannot start.
async fn kubelet_waits(client: &Client, ns: &str, pod: &str, reason: &str, message: &str) {
    let status = json!({"status": {"phase": "Pending", "containerStatuses": [{
        "name": "tablesnap", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "started": false,
        "state": {"waiting": {"reason": reason, "message": message}}}]}});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

fn has_sidecar(sts: &StatefulSet) -> bool {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == "tablesnap"))
}

fn target_reason(status: &TableSnapStatus) -> (bool, Option<String>, String) {
    let t = &status.targets[0];
    (
        t.injected,
        t.reason.clone(),
        t.message.clone().unwrap_or_default(),
    )
}

async fn warnings(client: &Client, ns: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn a_missing_secret_or_an_unpullable_image_never_reaches_the_pod_template() {
    let Some(client) =
        common::client("a_missing_secret_or_an_unpullable_image_never_reaches_the_pod_template")
            .await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "preflight").await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    sts.create(&PostParams::default(), &statefulset())
        .await
        .unwrap();
    let template = || async {
        serde_json::to_value(sts.get("cass").await.unwrap().spec.unwrap().template).unwrap()
    };
    let before = template().await;
    let ts: TableSnap = serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly"},
        "spec": {"bucket": "backups", "region": "garage",
                 "credentials": {"mode": "Secret", "secretRef": {"name": "s3-keys"}},
                 "agent": {"image": "registry.example/tablesnap:1", "imagePullSecrets": [{"name": "regcred"}]},
                 "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
    }))
    .unwrap();
    let tss: Api<TableSnap> = Api::namespaced(client.clone(), &ns);
    tss.create(&PostParams::default(), &ts).await.unwrap();

    // The finalizer, then the pre-flight pod: the template waits for it.
    pass(&client, &ns).await;
    let status = pass(&client, &ns).await;
    let (injected, reason, _) = target_reason(&status);
    assert_eq!(
        (injected, reason.as_deref()),
        (false, Some("WaitingForPreflight")),
        "{status:?}"
    );
    let pod = preflight_pod(&client, &ns).await;
    let spec = pod.spec.clone().unwrap();
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("registry.example/tablesnap:1")
    );
    assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "regcred");
    let env = spec.containers[0].env.clone().unwrap();
    assert!(
        env.iter().any(|e| e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .is_some_and(|r| r.name == "s3-keys")),
        "the sidecar's Secret reference: {env:?}"
    );
    assert_eq!(
        pod.owner_references()[0].name,
        "nightly",
        "the garbage collector takes it with the TableSnap"
    );

    // The Secret does not exist: the kubelet says so, the template stays, the user is told.
    kubelet_waits(
        &client,
        &ns,
        &pod.name_any(),
        "CreateContainerConfigError",
        "secret \"s3-keys\" not found",
    )
    .await;
    let status = pass(&client, &ns).await;
    let (injected, reason, message) = target_reason(&status);
    assert_eq!(
        (injected, reason.as_deref()),
        (false, Some("PreflightFailed")),
        "{status:?}"
    );
    assert!(
        message.contains("secret \"s3-keys\" not found"),
        "{message}"
    );
    assert_eq!(template().await, before, "the pod template changed");
    let events = warnings(&client, &ns, "PreflightFailed").await;
    assert!(
        events.iter().any(|n| n.contains("s3-keys")),
        "a Warning event names the Secret: {events:?}"
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "TargetsResolved")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "PreflightFailed")
    );

    // The image cannot be pulled either (the kubelet retries; it still says why).
    kubelet_waits(
        &client,
        &ns,
        &pod.name_any(),
        "ImagePullBackOff",
        "Back-off pulling image \"registry.example/tablesnap:1\"",
    )
    .await;
    let (_, reason, message) = target_reason(&pass(&client, &ns).await);
    assert_eq!(reason.as_deref(), Some("PreflightFailed"));
    assert!(message.contains("ImagePullBackOff"), "{message}");
    assert!(!has_sidecar(&sts.get("cass").await.unwrap()));

    // Fixed (the Secret created, the image pulled): the agent runs and exits 0. The pod is
    // deleted, the template gets the sidecar.
    common::kubelet_finishes(&client, &ns, &pod.name_any(), 0).await;
    let status = pass(&client, &ns).await;
    assert!(status.targets[0].injected, "{status:?}");
    assert!(has_sidecar(&sts.get("cass").await.unwrap()));
    assert!(status.preflight_passed.is_some(), "{status:?}");
    common::wait_for(
        "the pre-flight pod deleted",
        Duration::from_secs(30),
        || async {
            let left = Api::<Pod>::namespaced(client.clone(), &ns)
                .list(&ListParams::default().labels(preflight::LABEL))
                .await
                .ok()?
                .items;
            left.iter()
                .all(|p| p.metadata.deletion_timestamp.is_some())
                .then_some(())
        },
    )
    .await;

    // A new image is a new configuration: checked again before the template changes.
    tss.patch(
        "nightly",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"agent": {"image": "registry.example/tablesnap:2"}}})),
    )
    .await
    .unwrap();
    let injected_template = template().await;
    let (_, reason, _) = target_reason(&pass(&client, &ns).await);
    assert_eq!(reason.as_deref(), Some("WaitingForPreflight"));
    assert_eq!(
        template().await,
        injected_template,
        "the template changed before the new image was checked"
    );

    common::release_finalizer(&client, &ns).await;
    common::drop_namespace(&client, &ns).await;
}

/// Issue 13 (mutation testing): the pre-flight pod's create. A pod of its name the LIST of
/// labelled pods does not show (its label taken off) makes the create answer 409: the reconcile
/// waits on it and goes on. A create the server refuses (an admission policy) fails the
/// reconcile. And deleting a pre-flight pod that is already gone succeeds, while a delete the
/// server refuses (a ValidatingAdmissionPolicy on DELETE) is an error.
#[tokio::test]
async fn the_preflight_pods_create_and_delete_take_only_the_answers_they_expect() {
    let Some(client) =
        common::client("the_preflight_pods_create_and_delete_take_only_the_answers_they_expect")
            .await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "preflight-create").await;
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &statefulset())
        .await
        .unwrap();
    let ts: TableSnap = serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly"},
        "spec": {"bucket": "backups", "region": "garage",
                 "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
    }))
    .unwrap();
    let tss: Api<TableSnap> = Api::namespaced(client.clone(), &ns);
    tss.create(&PostParams::default(), &ts).await.unwrap();
    let once = || async {
        reconcile(
            Arc::new(tss.get("nightly").await.unwrap()),
            context(&client),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    // The finalizer, then the pre-flight pod.
    once().await.unwrap();
    once().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = preflight_pod(&client, &ns).await.name_any();
    let unlabel = json!({"metadata": {"labels": {preflight::LABEL: null}}});
    pods.patch(&pod, &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .unwrap();
    let conflict = once().await;
    let status = tss.get("nightly").await.unwrap().status.unwrap_or_default();

    pods.delete(&pod, &Default::default()).await.unwrap();
    let gone = tablesnap_operator::apply::delete_pod(&pods, "never-there").await;
    let kept: Pod = serde_json::from_value(json!({
        "metadata": {"name": "kept"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &kept).await.unwrap();
    // From now on the namespace refuses every pod create and delete, as an admission policy
    // (Kyverno, Gatekeeper) of the cluster might.
    let policy = format!("{ns}-frozen");
    let frozen = common::deny_policy(
        &client,
        &ns,
        &policy,
        json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "DELETE"], "resources": ["pods"]}),
        "false",
        "pods here are frozen by policy",
    )
    .await;
    let dry = kube::api::DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    common::wait_for("the policy in force", Duration::from_secs(30), || async {
        pods.delete("kept", &dry).await.is_err().then_some(())
    })
    .await;
    let refused = once().await;
    let kept_refused = tablesnap_operator::apply::delete_pod(&pods, "kept").await;
    frozen.remove().await;
    common::release_finalizer(&client, &ns).await;
    common::drop_namespace(&client, &ns).await;

    assert!(
        conflict.is_ok(),
        "a 409 on the create is a pod already there: {conflict:?}"
    );
    assert_eq!(
        target_reason(&status).1.as_deref(),
        Some("WaitingForPreflight"),
        "{status:?}"
    );
    let refused = refused.expect_err("a create the server refuses fails the reconcile");
    assert!(refused.contains("frozen by policy"), "{refused}");
    assert!(gone.is_ok(), "a pod already gone: {gone:?}");
    let kept_refused = format!(
        "{:?}",
        kept_refused.expect_err("a refused delete is an error")
    );
    assert!(kept_refused.contains("frozen by policy"), "{kept_refused}");
}
