//! One rollout at a time (review 2): a TableSnap selecting the per-rack StatefulSets of one
//! cluster changes one of them, waits until the real StatefulSet controller reports it rolled out
//! (pods recreated, their status patched by the test as a kubelet would), then the next, so that
//! never one node of every rack is down at once.

mod common;

use common::context;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tablesnap_operator::apply::reconcile;
use tablesnap_operator::crd::{TableSnap, TableSnapStatus};
use tablesnap_operator::render::HASH_ANNOTATION;

const WAIT: Duration = Duration::from_secs(60);

fn rack(name: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"backup": "tablesnap"}},
        "spec": {
            "replicas": 1, "serviceName": "cass",
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "cassandra", "image": "cassandra:5.0", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .unwrap()
}

/// Wait for the rack's pod made from the template with `hash` (any, when `None`), mark it
/// running, and wait until the StatefulSet controller reports the rack rolled out.
async fn rack_runs(client: &Client, ns: &str, rack: &str, hash: Option<&str>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = format!("{rack}-0");
    let pod = common::wait_for(&format!("pod {name}"), WAIT, || async {
        let p = pods.get_opt(&name).await.ok()??;
        let ok = hash
            .is_none_or(|h| p.annotations().get(HASH_ANNOTATION).map(String::as_str) == Some(h));
        ok.then_some(p)
    })
    .await;
    common::kubelet_runs(client, ns, &pod, None).await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    common::wait_for(&format!("{rack} rolled out"), WAIT, || async {
        let s = sts.get(rack).await.ok()?;
        let st = s.status.as_ref()?;
        (st.observed_generation >= s.metadata.generation
            && st.ready_replicas == Some(1)
            && st.updated_replicas == Some(1)
            && st.current_revision == st.update_revision)
            .then_some(())
    })
    .await;
}

async fn reconciled(client: &Client, ns: &str) -> TableSnapStatus {
    let api: Api<TableSnap> = Api::namespaced(client.clone(), ns);
    let ctx = context(client);
    // The finalizer, the pre-flight pod (the test plays its kubelet), the apply.
    for _ in 0..3 {
        common::kubelet_passes_preflight(client, ns).await;
        reconcile(Arc::new(api.get("nightly").await.unwrap()), ctx.clone())
            .await
            .unwrap();
    }
    api.get("nightly").await.unwrap().status.unwrap_or_default()
}

async fn hash_of(client: &Client, ns: &str, rack: &str) -> Option<String> {
    let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get(rack)
        .await
        .unwrap();
    s.spec?
        .template
        .metadata?
        .annotations?
        .get(HASH_ANNOTATION)
        .cloned()
}

#[tokio::test]
async fn racks_roll_one_at_a_time() {
    let Some(client) = common::client("racks_roll_one_at_a_time").await else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "rollout").await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    for r in ["rack1", "rack2"] {
        sts.create(&PostParams::default(), &rack(r)).await.unwrap();
    }
    for r in ["rack1", "rack2"] {
        rack_runs(&client, &ns, r, None).await;
    }
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
    let first = hash_of(&client, &ns, "rack1").await;
    assert!(first.is_some(), "rack1 gets the sidecar first");
    assert_eq!(
        hash_of(&client, &ns, "rack2").await,
        None,
        "rack2 waits while rack1 rolls: {status:?}"
    );
    let waiting = status.targets.iter().find(|t| t.name == "rack2").unwrap();
    assert_eq!(
        waiting.reason.as_deref(),
        Some("WaitingForRollout"),
        "{waiting:?}"
    );

    // A reconcile while rack1 still rolls (its template up to date, its pod not back): rack1's
    // own rollout, not rack2's, keeps rack2 waiting.
    let status = reconciled(&client, &ns).await;
    assert_eq!(
        hash_of(&client, &ns, "rack2").await,
        None,
        "rack2 changed while rack1 still rolls: {status:?}"
    );
    let waiting = status.targets.iter().find(|t| t.name == "rack2").unwrap();
    assert_eq!(
        waiting.reason.as_deref(),
        Some("WaitingForRollout"),
        "{waiting:?}"
    );
    // rack1's pod runs no agent yet: it is named as not protected, whether the StatefulSet
    // controller has deleted it and not yet made the new one (the full run caught the status
    // counting 0 of 0 pods then) or not.
    let rolling = status.targets.iter().find(|t| t.name == "rack1").unwrap();
    assert!(
        rolling.pods_protected == 0
            && rolling.pods_total == 1
            && rolling.unprotected.len() == 1
            && rolling.unprotected[0].starts_with("rack1-0: "),
        "{rolling:?}"
    );

    // rack1's pod comes back with the sidecar and is ready: rack2's turn.
    rack_runs(&client, &ns, "rack1", first.as_deref()).await;
    let status = reconciled(&client, &ns).await;
    let second = hash_of(&client, &ns, "rack2").await;
    assert!(
        second.is_some(),
        "rack2 gets the sidecar after rack1 rolled out: {status:?}"
    );
    rack_runs(&client, &ns, "rack2", second.as_deref()).await;
    let status = reconciled(&client, &ns).await;
    assert!(
        status
            .targets
            .iter()
            .all(|t| t.injected && t.pods_ready == 1),
        "{status:?}"
    );
    common::release_finalizer(&client, &ns).await;
    common::drop_namespace(&client, &ns).await;
}
