//! Realistic objects (cass-operator, k8ssandra, Bitnami, hand-written) and the patched objects the
//! operator's applies produce from them, for tests and for `crdgen --rendered DIR`, whose output the
//! Python suite validates against the real Kubernetes schemas.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use crate::apply::{Outcome, plan};
use crate::crd::{Checksum, CredentialsMode, ListenEvent, Mode, TableSnap, TargetKind};

/// cass-operator's StatefulSet for datacenter dc1 (owned by the CassandraDatacenter).
pub const CASS_OPERATOR_STATEFULSET: &str =
    include_str!("../samples/cass-operator-statefulset.yaml");
/// The CassandraDatacenter dc1.
pub const CASS_OPERATOR_DATACENTER: &str = include_str!("../samples/cass-operator-datacenter.yaml");
/// A CassandraDatacenter managed by k8ssandra-operator.
pub const K8SSANDRA_DATACENTER: &str = include_str!("../samples/k8ssandra-datacenter.yaml");
/// The Bitnami chart's StatefulSet: claim `data` at /bitnami/cassandra.
pub const BITNAMI_STATEFULSET: &str = include_str!("../samples/bitnami-statefulset.yaml");
/// A hand-written StatefulSet with data and commit log claims.
pub const TWO_VOLUMES_STATEFULSET: &str = include_str!("../samples/two-volumes-statefulset.yaml");
/// A StatefulSet with no data volume at all.
pub const NO_VOLUME_STATEFULSET: &str = include_str!("../samples/no-volume-statefulset.yaml");
/// The example TableSnap.
pub const TABLESNAP: &str = include_str!("../samples/tablesnap.yaml");

fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).expect("a sample parses")
}

/// The example TableSnap.
pub fn tablesnap() -> TableSnap {
    parse(TABLESNAP)
}

/// A TableSnap using most options: generic mode, writable mount, include, SSE, service account credentials.
pub fn tablesnap_all_options() -> TableSnap {
    let mut ts = tablesnap();
    ts.spec.mode = Mode::Generic;
    ts.spec.delete_on_backup = true;
    ts.spec.include = Some(vec![".*-Data\\.db$".into()]);
    ts.spec.listen_events = vec![ListenEvent::MovedTo, ListenEvent::CloseWrite];
    ts.spec.with_sse = true;
    ts.spec.sse_kms_key_id = Some("alias/cassandra".into());
    ts.spec.multipart_chunk_size = Some(64);
    ts.spec.checksum = Some(Checksum::Crc64nvme);
    ts.spec.threads = Some(8);
    ts.spec.endpoint = Some("https://s3.example.internal".into());
    ts.spec.storage_class = Some("STANDARD_IA".into());
    ts.spec.credentials.mode = CredentialsMode::ServiceAccount;
    ts.spec.credentials.secret_ref = None;
    ts.spec.agent.image = Some("registry.example.internal/tablesnap:dev".into());
    ts.spec.agent.http_port = Some(9191);
    ts
}

/// A TableSnap for point-in-time restore: cassandra mode (read-only data mount) and the commit
/// log archive in the data volume, with a spool cap.
pub fn tablesnap_point_in_time() -> TableSnap {
    let mut ts = tablesnap();
    ts.spec.commitlog_archive = Some(crate::crd::CommitlogArchive {
        spool_max_mb: Some(4096),
        ..Default::default()
    });
    ts
}

/// Every sample StatefulSet.
pub fn statefulsets() -> Vec<StatefulSet> {
    [
        CASS_OPERATOR_STATEFULSET,
        BITNAMI_STATEFULSET,
        TWO_VOLUMES_STATEFULSET,
        NO_VOLUME_STATEFULSET,
    ]
    .map(parse)
    .into()
}

/// Every sample CassandraDatacenter.
pub fn datacenters() -> Vec<DynamicObject> {
    [CASS_OPERATOR_DATACENTER, K8SSANDRA_DATACENTER]
        .map(parse)
        .into()
}

/// The objects as they look after the operator's apply, as (file name, object): patched
/// StatefulSets whole, and a CassandraDatacenter's `podTemplateSpec` wrapped in a core/v1
/// `PodTemplate` (the CassandraDatacenter kind itself has no schema outside its CRD).
pub fn rendered() -> Vec<(String, Value)> {
    let statefulsets = statefulsets();
    let datacenters = datacenters();
    let mut out = Vec::new();
    for (variant, ts) in [
        ("default", tablesnap()),
        ("all-options", tablesnap_all_options()),
        ("point-in-time", tablesnap_point_in_time()),
    ] {
        let plan = plan(&ts, std::slice::from_ref(&ts), &statefulsets, &datacenters);
        for planned in &plan.targets {
            let Outcome::Apply { body, .. } = &planned.outcome else {
                continue;
            };
            let file = format!(
                "{variant}-{}-{}.json",
                planned.kind.as_str().to_lowercase(),
                planned.name
            );
            let object = match planned.kind {
                TargetKind::StatefulSet => {
                    let live = statefulsets
                        .iter()
                        .find(|s| s.metadata.name.as_deref() == Some(&planned.name))
                        .expect("planned from a sample");
                    crate::render::merged(&serde_json::to_value(live).expect("serializes"), body)
                }
                TargetKind::CassandraDatacenter => {
                    let live = datacenters
                        .iter()
                        .find(|d| d.metadata.name.as_deref() == Some(&planned.name))
                        .expect("planned from a sample");
                    let merged = crate::render::merged(
                        &serde_json::to_value(live).expect("serializes"),
                        body,
                    );
                    json!({
                        "apiVersion": "v1",
                        "kind": "PodTemplate",
                        "metadata": {"name": planned.name, "namespace": ts.metadata.namespace},
                        "template": merged["spec"]["podTemplateSpec"],
                    })
                }
            };
            out.push((file, object));
        }
    }
    out
}
