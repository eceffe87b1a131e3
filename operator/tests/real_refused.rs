//! An apply the API server refuses (here a ValidatingAdmissionPolicy, as a Kyverno or Gatekeeper
//! rule would) is reported on that target, as a condition and a Warning event, and the other
//! targets are injected all the same (review 7: the error aborted the whole reconcile, with no
//! status and no event).

mod common;

use common::context;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tablesnap_operator::apply::reconcile;
use tablesnap_operator::crd::TableSnap;

fn statefulset(name: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"backup": "tablesnap"}},
        "spec": {
            "replicas": 1, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "cassandra", "image": "cassandra:5.0", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn a_refused_apply_is_reported_and_the_other_targets_go_on() {
    let Some(client) =
        common::client("a_refused_apply_is_reported_and_the_other_targets_go_on").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "refused").await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    // "a-locked" sorts first: before the change, its error ended the reconcile before "b".
    for name in ["a-locked", "b-open"] {
        sts.create(&PostParams::default(), &statefulset(name))
            .await
            .unwrap();
    }
    let policy = format!("{ns}-locked");
    let frozen = common::deny_policy(
        &client,
        &ns,
        &policy,
        json!({"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["statefulsets"]}),
        "object.metadata.name != 'a-locked'",
        "a-locked is frozen by policy",
    )
    .await;
    // The policy is loaded asynchronously: wait until it refuses a (dry-run) change.
    common::wait_for("the policy in force", Duration::from_secs(30), || async {
        let pp = PatchParams {
            dry_run: true,
            ..Default::default()
        };
        let probe = json!({"metadata": {"annotations": {"probe": "1"}}});
        sts.patch("a-locked", &pp, &Patch::Merge(&probe))
            .await
            .is_err()
            .then_some(())
    })
    .await;

    let tss: Api<TableSnap> = Api::namespaced(client.clone(), &ns);
    let ts: TableSnap = serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly"},
        "spec": {"bucket": "backups", "region": "garage", "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
    }))
    .unwrap();
    tss.create(&PostParams::default(), &ts).await.unwrap();
    let ctx = context(&client);
    let mut results = Vec::new();
    // The finalizer, the pre-flight pod (the test plays its kubelet), the apply.
    for _ in 0..3 {
        common::kubelet_passes_preflight(&client, &ns).await;
        results.push(
            reconcile(Arc::new(tss.get("nightly").await.unwrap()), ctx.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    }
    let status = tss.get("nightly").await.unwrap().status.unwrap_or_default();
    let events: Vec<Event> = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let b_injected = sts
        .get("b-open")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .init_containers
        .unwrap_or_default()
        .iter()
        .any(|c| c.name == "tablesnap");
    frozen.remove().await;
    common::release_finalizer(&client, &ns).await;
    common::drop_namespace(&client, &ns).await;

    assert!(
        results[1].is_ok(),
        "a refused target fails the whole reconcile: {results:?}"
    );
    assert!(b_injected, "the other target is injected");
    let locked = status
        .targets
        .iter()
        .find(|t| t.name == "a-locked")
        .expect("a status for the refused target");
    assert_eq!(locked.reason.as_deref(), Some("ApplyFailed"), "{locked:?}");
    assert!(
        locked
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("frozen by policy"),
        "{locked:?}"
    );
    let open = status.targets.iter().find(|t| t.name == "b-open").unwrap();
    assert!(open.injected, "{open:?}");
    let resolved = status
        .conditions
        .iter()
        .find(|c| c.type_ == "TargetsResolved")
        .unwrap();
    assert_eq!(
        (resolved.status.as_str(), resolved.reason.as_str()),
        ("False", "ApplyFailed")
    );
    let refused = events
        .iter()
        .find(|e| {
            e.reason.as_deref() == Some("ApplyFailed")
                && e.note
                    .as_deref()
                    .unwrap_or_default()
                    .contains("frozen by policy")
        })
        .unwrap_or_else(|| panic!("a Warning event says why: {events:?}"));
    assert_eq!(refused.type_.as_deref(), Some("Warning"));
    // The event names the refused target, as `kubectl events --for` finds it.
    let related = refused
        .related
        .as_ref()
        .expect("the event's related object");
    assert_eq!(
        (
            related.api_version.as_deref(),
            related.kind.as_deref(),
            related.namespace.as_deref(),
            related.name.as_deref()
        ),
        (
            Some("apps/v1"),
            Some("StatefulSet"),
            Some(ns.as_str()),
            Some("a-locked")
        ),
        "{related:?}"
    );
}
