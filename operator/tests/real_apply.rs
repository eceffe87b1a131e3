//! Server-side apply into a StatefulSet another tool created, judged by a real kube-apiserver: the
//! operator's sidecar, volume and annotations are added, nothing the other field manager set
//! changes, and deleting the TableSnap leaves the object (spec, labels, annotations and
//! managedFields) exactly as it was.

mod common;

use common::context;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tablesnap_operator::apply::reconcile;
use tablesnap_operator::crd::TableSnap;
use tablesnap_operator::render::{FIELD_MANAGER, HASH_ANNOTATION, OWNER_ANNOTATION};

/// A StatefulSet as a user writes it: its own init container, volume and template annotation.
fn user_statefulset(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": {"backup": "tablesnap", "team": "data"}, "annotations": {"owner": "dba"}},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {
                    "initContainers": [{"name": "volume-permissions", "image": "busybox:1.36", "command": ["chown", "-R", "999", "/var/lib/cassandra"], "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}]}],
                    "containers": [{
                        "name": "cassandra",
                        "image": "cassandra:5.0",
                        "env": [{"name": "MAX_HEAP_SIZE", "value": "1G"}],
                        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}, {"name": "config", "mountPath": "/etc/cassandra"}]
                    }],
                    "volumes": [{"name": "config", "emptyDir": {}}]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    })
}

fn tablesnap(ns: &str) -> TableSnap {
    serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1",
        "kind": "TableSnap",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {"bucket": "backups", "endpoint": "http://garage:3900", "region": "garage", "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
    }))
    .unwrap()
}

/// What must not change: labels, annotations, spec, and every managedFields entry but the status
/// subresource's (the StatefulSet controller writes status whenever it likes).
fn snapshot(sts: &StatefulSet) -> Value {
    let v = serde_json::to_value(sts).unwrap();
    let managed: Vec<Value> = v["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.get("subresource").and_then(Value::as_str) != Some("status"))
        .collect();
    json!({
        "labels": v["metadata"]["labels"],
        "annotations": v["metadata"]["annotations"],
        "ownerReferences": v["metadata"]["ownerReferences"],
        "spec": v["spec"],
        "managedFields": managed,
    })
}

fn manager_entry(snap: &Value, manager: &str) -> Option<Value> {
    snap["managedFields"]
        .as_array()?
        .iter()
        .find(|m| m["manager"] == manager)
        .cloned()
}

/// Reconcile the TableSnap as the controller would, until it wrote what it wanted (the first
/// pass adds the finalizer, the next applies; a deleted one is cleaned up and released).
async fn reconcile_passes(client: &Client, ns: &str, name: &str, passes: usize) {
    let api: Api<TableSnap> = Api::namespaced(client.clone(), ns);
    let ctx = context(client);
    // One pass more than the callers count: the pre-flight pod's (the test plays its kubelet).
    for _ in 0..passes + 1 {
        common::kubelet_passes_preflight(client, ns).await;
        let Some(ts) = api.get_opt(name).await.unwrap() else {
            return;
        };
        reconcile(Arc::new(ts), ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("reconcile of {ns}/{name} failed: {e}"));
    }
}

async fn created_by_another_manager(how: &str) {
    let test = format!("ssa_{how}");
    let Some(client) = common::client(&test).await else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, &format!("apply-{how}")).await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let body = user_statefulset("cass");
    let other = match how {
        // `kubectl apply --server-side` (and Helm 4) own their fields through an Apply entry.
        "server-side" => {
            sts_api
                .patch("cass", &PatchParams::apply("kubectl"), &Patch::Apply(&body))
                .await
                .unwrap();
            "kubectl"
        }
        // `kubectl create` / Helm 3 / client-side apply: an Update entry.
        _ => {
            let sts: StatefulSet = serde_json::from_value(body).unwrap();
            let pp = PostParams {
                field_manager: Some("helm".into()),
                ..Default::default()
            };
            sts_api.create(&pp, &sts).await.unwrap();
            "helm"
        }
    };
    let before = snapshot(&sts_api.get("cass").await.unwrap());

    let ts_api: Api<TableSnap> = Api::namespaced(client.clone(), &ns);
    ts_api
        .create(&PostParams::default(), &tablesnap(&ns))
        .await
        .unwrap();
    reconcile_passes(&client, &ns, "nightly", 3).await;

    let sts = sts_api.get("cass").await.unwrap();
    let after = snapshot(&sts);
    let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let names = |v: Option<Vec<String>>| v.unwrap_or_default();
    assert_eq!(
        names(
            pod.init_containers
                .as_ref()
                .map(|l| l.iter().map(|c| c.name.clone()).collect())
        ),
        ["volume-permissions", "tablesnap"],
        "the sidecar goes after the user's init container"
    );
    assert_eq!(
        names(
            pod.volumes
                .as_ref()
                .map(|l| l.iter().map(|c| c.name.clone()).collect())
        ),
        ["config", "tablesnap-scratch"]
    );
    let sidecar = &pod.init_containers.as_ref().unwrap()[1];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let template_annotations = sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(
        template_annotations
            .get("prometheus.io/scrape")
            .map(String::as_str),
        Some("true")
    );
    assert!(template_annotations.contains_key(HASH_ANNOTATION));
    assert_eq!(
        template_annotations
            .get(OWNER_ANNOTATION)
            .map(String::as_str),
        Some("nightly")
    );
    assert_eq!(
        manager_entry(&after, other),
        manager_entry(&before, other),
        "the other manager's fields are untouched"
    );
    assert!(
        manager_entry(&after, FIELD_MANAGER).is_some(),
        "our fields are ours: {after:#}"
    );
    // Take our three additions out again: the rest is the user's object, unchanged.
    let mut spec = after["spec"].clone();
    let tpl = &mut spec["template"];
    tpl["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["name"] != "tablesnap");
    tpl["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v["name"] != "tablesnap-scratch");
    let ann = tpl["metadata"]["annotations"].as_object_mut().unwrap();
    ann.remove(HASH_ANNOTATION);
    ann.remove(OWNER_ANNOTATION);
    assert_eq!(spec, before["spec"], "only our entries were added");
    assert_eq!(after["labels"], before["labels"]);
    assert_eq!(after["annotations"], before["annotations"]);
    assert_eq!(
        after["ownerReferences"],
        Value::Null,
        "no ownerReference on a Cassandra object"
    );

    // A reconcile of an unchanged world writes nothing (the resourceVersion moves with the
    // StatefulSet controller's status writes; spec and the managedFields times do not).
    reconcile_passes(&client, &ns, "nightly", 1).await;
    assert_eq!(
        snapshot(&sts_api.get("cass").await.unwrap()),
        after,
        "an idle reconcile patched the StatefulSet"
    );

    ts_api
        .delete("nightly", &DeleteParams::default())
        .await
        .unwrap();
    reconcile_passes(&client, &ns, "nightly", 2).await;
    assert!(
        ts_api.get_opt("nightly").await.unwrap().is_none(),
        "the finalizer was released"
    );
    let restored = snapshot(&sts_api.get("cass").await.unwrap());
    assert_eq!(
        restored, before,
        "deleting the TableSnap restores the StatefulSet exactly"
    );
    common::drop_namespace(&client, &ns).await;
}

#[tokio::test]
async fn apply_into_a_statefulset_of_a_server_side_apply_manager() {
    created_by_another_manager("server-side").await;
}

#[tokio::test]
async fn apply_into_a_statefulset_of_an_update_manager() {
    created_by_another_manager("update").await;
}

/// Review 15: another manager co-owns a field of the sidecar (`kubectl set image` on it, a
/// `kubectl edit` of its limits). The empty apply that removes our fields leaves that manager's
/// `{name: tablesnap, image: ...}` behind: a plain init container with no args. Deleting the
/// TableSnap must remove the sidecar entirely all the same.
#[tokio::test]
async fn a_sidecar_field_co_owned_by_another_manager_is_removed_too() {
    let Some(client) =
        common::client("a_sidecar_field_co_owned_by_another_manager_is_removed_too").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "apply-co-owned").await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    sts_api
        .patch(
            "cass",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&user_statefulset("cass")),
        )
        .await
        .unwrap();
    let before = snapshot(&sts_api.get("cass").await.unwrap());
    let ts_api: Api<TableSnap> = Api::namespaced(client.clone(), &ns);
    ts_api
        .create(&PostParams::default(), &tablesnap(&ns))
        .await
        .unwrap();
    reconcile_passes(&client, &ns, "nightly", 3).await;

    // What `kubectl set image statefulset/cass tablesnap=...` sends.
    let set_image = json!({"spec": {"template": {"spec": {"initContainers": [{"name": "tablesnap", "image": "registry.example/tablesnap:patched"}]}}}});
    let pp = PatchParams {
        field_manager: Some("kubectl-set".into()),
        ..Default::default()
    };
    sts_api
        .patch("cass", &pp, &Patch::Strategic(&set_image))
        .await
        .unwrap();
    // And an applier that puts its own limits on the sidecar (an Apply entry).
    let limits = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "cass"},
        "spec": {"template": {"spec": {"initContainers": [{"name": "tablesnap", "resources": {"limits": {"memory": "512Mi"}}}]}}}});
    sts_api
        .patch(
            "cass",
            &PatchParams::apply("platform-team").force(),
            &Patch::Apply(&limits),
        )
        .await
        .unwrap();
    let co_owned = sts_api.get("cass").await.unwrap();
    let managers: Vec<String> = co_owned
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"kubectl-set".to_string())
            && managers.contains(&"platform-team".to_string()),
        "{managers:?}"
    );

    ts_api
        .delete("nightly", &DeleteParams::default())
        .await
        .unwrap();
    reconcile_passes(&client, &ns, "nightly", 2).await;
    assert!(ts_api.get_opt("nightly").await.unwrap().is_none());
    let sts = sts_api.get("cass").await.unwrap();
    let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let init: Vec<&str> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        init,
        ["volume-permissions"],
        "the sidecar is gone, whoever co-owned it"
    );
    let after = snapshot(&sts);
    assert_eq!(
        after["spec"], before["spec"],
        "the user's StatefulSet is as before"
    );
    common::drop_namespace(&client, &ns).await;
}

/// `spec.agent.imagePullSecrets` go into the pod template beside the user's own pull secrets
/// (PodSpec.imagePullSecrets merges by name under server-side apply), and go again with the
/// TableSnap.
#[tokio::test]
async fn image_pull_secrets_are_added_beside_the_users_and_removed_again() {
    let Some(client) =
        common::client("image_pull_secrets_are_added_beside_the_users_and_removed_again").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "apply-pull-secrets").await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let mut body = user_statefulset("cass");
    body["spec"]["template"]["spec"]["imagePullSecrets"] = json!([{"name": "user-registry"}]);
    sts_api
        .patch("cass", &PatchParams::apply("kubectl"), &Patch::Apply(&body))
        .await
        .unwrap();
    let before = snapshot(&sts_api.get("cass").await.unwrap());
    let mut ts = serde_json::to_value(tablesnap(&ns)).unwrap();
    ts["spec"]["agent"] = json!({"imagePullSecrets": [{"name": "tablesnap-registry"}]});
    let ts: TableSnap = serde_json::from_value(ts).unwrap();
    let ts_api: Api<TableSnap> = Api::namespaced(client.clone(), &ns);
    ts_api.create(&PostParams::default(), &ts).await.unwrap();
    reconcile_passes(&client, &ns, "nightly", 3).await;
    let pull = |sts: &StatefulSet| -> Vec<String> {
        sts.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(
        pull(&sts_api.get("cass").await.unwrap()),
        ["user-registry", "tablesnap-registry"]
    );
    ts_api
        .delete("nightly", &DeleteParams::default())
        .await
        .unwrap();
    reconcile_passes(&client, &ns, "nightly", 2).await;
    let restored = sts_api.get("cass").await.unwrap();
    assert_eq!(pull(&restored), ["user-registry"]);
    assert_eq!(snapshot(&restored), before, "restored exactly");
    common::drop_namespace(&client, &ns).await;
}

/// Review 15: removing from a target that was deleted meanwhile. An apply to a missing object
/// is a create: the API server answers 422 (a StatefulSet without a spec) or, with the chart's
/// RBAC (no create), 403, never 404, so the removal failed and the finalizer was stuck.
#[tokio::test]
async fn removing_from_a_target_that_is_gone_succeeds() {
    let Some(client) = common::client("removing_from_a_target_that_is_gone_succeeds").await else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "apply-gone").await;
    let ts = tablesnap(&ns);
    let result = tablesnap_operator::apply::remove_from(
        &context(&client),
        &ts,
        tablesnap_operator::crd::TargetKind::StatefulSet,
        &ns,
        "deleted-meanwhile",
    )
    .await;
    let created = Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .get_opt("deleted-meanwhile")
        .await
        .unwrap();
    common::drop_namespace(&client, &ns).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(created.is_none(), "the removal created the object");
}

/// Issue 13 (mutation testing): only a 404 (cass-operator not installed) means "no
/// CassandraDatacenters". An operator whose role may not list them (a Role that names only
/// StatefulSets) fails the reconcile with the 403, rather than reporting every pod of the
/// datacenters it cannot see as if they were not there.
#[tokio::test]
async fn a_datacenter_list_the_server_refuses_is_an_error_not_an_empty_list() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let Some(client) =
        common::client("a_datacenter_list_the_server_refuses_is_an_error_not_an_empty_list").await
    else {
        return;
    };
    let ns = common::namespace(&client, "apply-forbidden").await;
    let sa = "statefulsets-only";
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": sa}})).unwrap(),
        )
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": sa},
        "rules": [{"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["list"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": sa},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&pp, &binding)
        .await
        .unwrap();
    let limited = common::service_account_client(&client, &ns, sa).await;
    // RBAC is cached by the authorizer: wait until the StatefulSet list is allowed.
    common::wait_for(
        "the Role in force",
        std::time::Duration::from_secs(30),
        || async {
            Api::<StatefulSet>::namespaced(limited.clone(), &ns)
                .list(&Default::default())
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let listed = tablesnap_operator::apply::list_targets(&limited, &ns).await;
    common::drop_namespace(&client, &ns).await;
    match listed {
        Err(tablesnap_operator::Error::Kube(kube::Error::Api(status))) => {
            assert_eq!(status.code, 403, "{status:?}")
        }
        other => panic!("a refused list of CassandraDatacenters: {other:?}"),
    }
}
