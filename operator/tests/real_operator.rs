//! The operator binary against a real kube-apiserver, authenticated with a token minted for a
//! ServiceAccount that has exactly the chart's RBAC (from `deploy/`):
//! - it injects and removes the sidecar with no request refused (the RBAC is sufficient);
//! - every permission the chart grants is one it used, and taking away any one of them gets a
//!   request refused (the RBAC is least), as the API server's audit log shows;
//! - two replicas elect one leader, and killing it hands over.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};
use tablesnap_operator::crd::TableSnap;

/// One grant: (apiGroup, resource, verb).
type Permission = (String, String, String);

/// The rules of the chart's ClusterRole and leader-election Role, as rendered into `deploy/`.
fn chart_rules() -> (Vec<Value>, Vec<Value>) {
    let text = std::fs::read_to_string(common::repo_root().join("deploy/tablesnap-operator.yaml"))
        .unwrap();
    let (mut cluster, mut lease) = (Vec::new(), Vec::new());
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        match v["kind"].as_str() {
            Some("ClusterRole") => cluster = v["rules"].as_array().unwrap().clone(),
            Some("Role") => lease = v["rules"].as_array().unwrap().clone(),
            _ => {}
        }
    }
    assert!(
        !cluster.is_empty() && !lease.is_empty(),
        "deploy/ has the ClusterRole and the Role"
    );
    (cluster, lease)
}

fn expand(rules: &[Value]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r["apiGroups"].as_array().unwrap() {
            for res in r["resources"].as_array().unwrap() {
                for v in r["verbs"].as_array().unwrap() {
                    out.insert((
                        g.as_str().unwrap().into(),
                        res.as_str().unwrap().into(),
                        v.as_str().unwrap().into(),
                    ));
                }
            }
        }
    }
    out
}

fn without(rules: &[Value], p: &Permission) -> Vec<Value> {
    rules
        .iter()
        .filter_map(|r| {
            let mut r = r.clone();
            let hit = r["apiGroups"].as_array().unwrap().iter().any(|g| g == &p.0)
                && r["resources"].as_array().unwrap().iter().any(|x| x == &p.1);
            if hit {
                r["verbs"].as_array_mut().unwrap().retain(|v| v != &p.2);
                if r["verbs"].as_array().unwrap().is_empty() {
                    return None;
                }
            }
            Some(r)
        })
        .collect()
}

/// Server-side apply one object as the test's field manager.
async fn apply(
    client: &Client,
    api_version: &str,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    body: Value,
) {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let mut obj = body;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    obj["metadata"]["name"] = json!(name);
    let api: Api<DynamicObject> = match namespace {
        Some(n) => Api::namespaced_with(client.clone(), n, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        name,
        &PatchParams::apply(common::TEST_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
}

/// A ServiceAccount `op` in `ns` bound to these cluster rules and, in `ns`, these lease rules.
async fn service_account(
    client: &Client,
    ns: &str,
    cluster_rules: &[Value],
    lease_rules: &[Value],
) {
    let role = format!("{ns}-operator");
    apply(
        client,
        "v1",
        "ServiceAccount",
        "op",
        Some(ns),
        json!({"metadata": {}}),
    )
    .await;
    apply(
        client,
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        &role,
        None,
        json!({"metadata": {}, "rules": cluster_rules}),
    )
    .await;
    apply(
        client,
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        &role,
        None,
        json!({"metadata": {}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": ns}]}),
    )
    .await;
    apply(
        client,
        "rbac.authorization.k8s.io/v1",
        "Role",
        "leader-election",
        Some(ns),
        json!({"metadata": {}, "rules": lease_rules}),
    )
    .await;
    apply(
        client,
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "leader-election",
        Some(ns),
        json!({"metadata": {}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader-election"}, "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": ns}]}),
    )
    .await;
}

async fn drop_cluster_role(client: &Client, ns: &str) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let name = format!("{ns}-operator");
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await;
}

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

fn tablesnap(prefix: &str) -> TableSnap {
    serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly"},
        "spec": {"bucket": "backups", "prefix": prefix, "region": "garage", "targets": {"selector": {"matchLabels": {"backup": "tablesnap"}}}}
    }))
    .unwrap()
}

fn sidecar_of(sts: &StatefulSet) -> Option<String> {
    let pod = sts.spec.as_ref()?.template.spec.as_ref()?;
    pod.init_containers
        .as_ref()?
        .iter()
        .find(|c| c.name == "tablesnap")
        .map(|c| c.args.clone().unwrap_or_default().join(" "))
}

async fn has_sidecar(client: &Client, ns: &str) -> bool {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get("cass")
        .await
        .unwrap();
    sidecar_of(&sts).is_some()
}

/// Inject, see the status, delete, see the sidecar go: what the operator must be allowed to do.
async fn scenario(client: &Client, ns: &str, operator: &common::Operator) {
    let _kubelet = common::background_preflight_kubelet(client, ns);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    sts.create(&PostParams::default(), &statefulset())
        .await
        .unwrap();
    let tss: Api<TableSnap> = Api::namespaced(client.clone(), ns);
    tss.create(&PostParams::default(), &tablesnap("a"))
        .await
        .unwrap();
    let wait = Duration::from_secs(60);
    common::wait_for(
        &format!("the sidecar in {ns}; operator log:\n{}", operator.log()),
        wait,
        || async { has_sidecar(client, ns).await.then_some(()) },
    )
    .await;
    common::wait_for("status Injected=True", wait, || async {
        let ts = tss.get("nightly").await.ok()?;
        ts.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Injected" && c.status == "True")
            .then_some(())
    })
    .await;
    tss.delete("nightly", &DeleteParams::default())
        .await
        .unwrap();
    common::wait_for("the TableSnap gone (finalizer released)", wait, || async {
        tss.get_opt("nightly")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!has_sidecar(client, ns).await, "the sidecar was removed");
}

fn user(ns: &str) -> String {
    format!("system:serviceaccount:{ns}:op")
}

fn used(ns: &str) -> Option<Vec<common::Audited>> {
    common::audited(&user(ns))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_charts_rbac_is_sufficient_and_least() {
    let Some(client) = common::client("the_charts_rbac_is_sufficient_and_least").await else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    // With the CassandraDatacenter API present the operator also lists and watches it, whatever
    // the order the tests run in.
    common::install_crd(
        &client,
        include_str!("data/cass-operator-v1.32.0-cassandradatacenters.crd.yaml"),
    )
    .await;
    let (cluster_rules, lease_rules) = chart_rules();
    let dir = tempfile::tempdir().unwrap();

    // Sufficient: the whole scenario with the chart's permissions, nothing refused.
    let ns = common::namespace(&client, "rbac-full").await;
    service_account(&client, &ns, &cluster_rules, &lease_rules).await;
    let kubeconfig = dir.path().join("full.kubeconfig");
    common::token_kubeconfig(&client, &ns, "op", &kubeconfig).await;
    let operator = common::Operator::start(&kubeconfig, &ns, "op-0", dir.path().join("full.log"));
    scenario(&client, &ns, &operator).await;
    // SIGTERM: the graceful stop releases the lease, with the permissions that takes.
    let mut operator = operator;
    operator.terminate();
    common::wait_for(
        "the operator exits on SIGTERM",
        Duration::from_secs(30),
        || {
            let exited = operator.child.try_wait().unwrap().is_some();
            async move { exited.then_some(()) }
        },
    )
    .await;
    assert!(
        operator.log().contains("released the lease"),
        "{}",
        operator.log()
    );
    drop(operator);
    let Some(requests) = used(&ns) else {
        assert!(
            std::env::var("TABLESNAP_REQUIRE_REAL").as_deref() != Ok("1"),
            "TABLESNAP_REQUIRE_REAL=1 but no audit log (TABLESNAP_K8S_AUDIT_LOG)"
        );
        println!(
            "SKIPPED least-privilege half: no audit log (TABLESNAP_K8S_AUDIT_LOG; e2e/scripts/k8s.sh writes one)"
        );
        drop_cluster_role(&client, &ns).await;
        common::drop_namespace(&client, &ns).await;
        return;
    };
    let refused: Vec<_> = requests.iter().filter(|r| r.code == 403).collect();
    assert!(
        refused.is_empty(),
        "requests refused with the chart's RBAC: {refused:?}"
    );
    let used_set: BTreeSet<Permission> = requests
        .iter()
        .map(|r| (r.group.clone(), r.resource.clone(), r.verb.clone()))
        .collect();
    drop_cluster_role(&client, &ns).await;
    common::drop_namespace(&client, &ns).await;

    // Least: everything granted was used, except what this scenario cannot reach.
    let reason_unused = |p: &Permission| -> Option<&'static str> {
        match (p.0.as_str(), p.1.as_str(), p.2.as_str()) {
            ("cassandra.datastax.com", "cassandradatacenters", "patch") => Some(
                "applies to CassandraDatacenter targets (real_datacenter.rs); this scenario has a StatefulSet",
            ),
            ("events.k8s.io", "events", "patch") => {
                Some("the recorder patches the series of a repeated event")
            }
            _ => None,
        }
    };
    let granted: BTreeSet<Permission> = expand(&cluster_rules)
        .union(&expand(&lease_rules))
        .cloned()
        .collect();
    let unused: Vec<&Permission> = granted
        .iter()
        .filter(|p| !used_set.contains(*p) && reason_unused(p).is_none())
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants permissions the operator never used: {unused:?}\nused: {used_set:?}"
    );
    let beyond: Vec<&Permission> = used_set.difference(&granted).collect();
    assert!(beyond.is_empty(), "used without a grant (?): {beyond:?}");

    // One permission fewer: each of the used ones, taken away in turn, gets a request refused.
    let mut runs = Vec::new();
    for p in used_set.iter().filter(|p| granted.contains(*p)) {
        let (client, cluster_rules, lease_rules, dir) = (
            client.clone(),
            cluster_rules.clone(),
            lease_rules.clone(),
            dir.path().to_owned(),
        );
        let p = p.clone();
        runs.push(tokio::spawn(async move {
            let ns = common::namespace(
                &client,
                &format!("rbac-no-{}-{}", p.2, p.1.replace('/', "-")),
            )
            .await;
            service_account(
                &client,
                &ns,
                &without(&cluster_rules, &p),
                &without(&lease_rules, &p),
            )
            .await;
            let kubeconfig = dir.join(format!("{ns}.kubeconfig"));
            common::token_kubeconfig(&client, &ns, "op", &kubeconfig).await;
            let operator =
                common::Operator::start(&kubeconfig, &ns, "op-0", dir.join(format!("{ns}.log")));
            let _kubelet = common::background_preflight_kubelet(&client, &ns);
            let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
            sts.create(&PostParams::default(), &statefulset())
                .await
                .unwrap();
            Api::<TableSnap>::namespaced(client.clone(), &ns)
                .create(&PostParams::default(), &tablesnap("a"))
                .await
                .unwrap();
            // Deleting the TableSnap exercises the cleanup's permissions too.
            let deleted = std::sync::atomic::AtomicBool::new(false);
            let refused = common::wait_for(
                &format!("a refused {p:?}"),
                Duration::from_secs(60),
                || async {
                    if has_sidecar(&client, &ns).await
                        && !deleted.swap(true, std::sync::atomic::Ordering::SeqCst)
                    {
                        let _ = Api::<TableSnap>::namespaced(client.clone(), &ns)
                            .delete("nightly", &DeleteParams::default())
                            .await;
                    }
                    used(&ns)?
                        .into_iter()
                        .any(|r| {
                            r.code == 403 && r.group == p.0 && r.resource == p.1 && r.verb == p.2
                        })
                        .then_some(())
                },
            )
            .await;
            drop(operator);
            // Release the finalizer ourselves: the crippled operator may not have.
            common::release_finalizer(&client, &ns).await;
            drop_cluster_role(&client, &ns).await;
            common::drop_namespace(&client, &ns).await;
            refused
        }));
    }
    for r in runs {
        r.await.expect("a reduced-permission run");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_elect_one_leader_and_killing_it_hands_over() {
    let Some(client) =
        common::client("two_replicas_elect_one_leader_and_killing_it_hands_over").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let (cluster_rules, lease_rules) = chart_rules();
    let ns = common::namespace(&client, "leader").await;
    service_account(&client, &ns, &cluster_rules, &lease_rules).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("op.kubeconfig");
    common::token_kubeconfig(&client, &ns, "op", &kubeconfig).await;
    let mut a = Some(common::Operator::start(
        &kubeconfig,
        &ns,
        "op-a",
        dir.path().join("a.log"),
    ));
    let mut b = Some(common::Operator::start(
        &kubeconfig,
        &ns,
        "op-b",
        dir.path().join("b.log"),
    ));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = || async {
        leases
            .get_opt("tablesnap-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
    };
    let first = common::wait_for("a lease holder", Duration::from_secs(60), &holder).await;
    // Each replica applies the Lease under its own field manager: kube-lease-manager's mutual
    // exclusion is the conflict between two managers.
    let lease = leases.get("tablesnap-operator").await.unwrap();
    let managers: BTreeSet<String> = lease
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m.contains(&first)),
        "the holder's field manager names it: {managers:?}"
    );

    let _kubelet = common::background_preflight_kubelet(&client, &ns);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    sts.create(&PostParams::default(), &statefulset())
        .await
        .unwrap();
    let tss: Api<TableSnap> = Api::namespaced(client.clone(), &ns);
    tss.create(&PostParams::default(), &tablesnap("a"))
        .await
        .unwrap();
    common::wait_for("the sidecar", Duration::from_secs(60), || async {
        has_sidecar(&client, &ns).await.then_some(())
    })
    .await;
    let (leader, follower) = if first == "op-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let follower_log = follower.as_ref().unwrap().log();
    assert!(
        !follower_log.contains("applied the tablesnap sidecar"),
        "the follower reconciled too:\n{follower_log}"
    );
    assert!(
        leader
            .as_ref()
            .unwrap()
            .log()
            .contains("applied the tablesnap sidecar")
    );

    // Kill the leader (no lease release): the other takes over once the lease expires, and
    // reconciles a spec change.
    drop(leader.take());
    let second = common::wait_for("a new lease holder", Duration::from_secs(90), || async {
        holder().await.filter(|h| *h != first)
    })
    .await;
    assert_ne!(second, first);
    tss.patch(
        "nightly",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"prefix": "b"}})),
    )
    .await
    .unwrap();
    common::wait_for(
        "the new leader applies the change",
        Duration::from_secs(60),
        || async {
            let s = sts.get("cass").await.ok()?;
            sidecar_of(&s)?.contains("--prefix b").then_some(())
        },
    )
    .await;
    common::release_finalizer(&client, &ns).await;
    drop(follower.take());
    drop_cluster_role(&client, &ns).await;
    common::drop_namespace(&client, &ns).await;
}
