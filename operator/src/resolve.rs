//! Which objects a TableSnap selects, who may inject into them, and where their Cassandra data lives.
//! Everything here is a pure function over objects already read from the API.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PodSpec;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::core::{Selector, SelectorExt};

use crate::crd::{TableSnap, TargetKind, Targets};

/// Mount paths that hold Cassandra's data in the common images (official, cass-operator, Bitnami).
pub const KNOWN_DATA_PATHS: [&str; 3] = [
    "/var/lib/cassandra",
    "/bitnami/cassandra",
    "/var/lib/cassandra/data",
];
/// cass-operator's data volume claim and its mount path in the `cassandra` container.
pub const CASS_OPERATOR_VOLUME: &str = "server-data";
/// The name of cass-operator's Cassandra container.
pub const CASS_OPERATOR_CONTAINER: &str = "cassandra";
/// See [`CASS_OPERATOR_VOLUME`].
pub const CASS_OPERATOR_PATH: &str = "/var/lib/cassandra";
/// The pod label cass-operator puts on every pod of a datacenter.
pub const CASS_OPERATOR_DC_LABEL: &str = "cassandra.datastax.com/datacenter";
/// The label k8ssandra-operator puts on the objects it manages.
pub const K8SSANDRA_CLUSTER_LABEL: &str = "k8ssandra.io/cluster-name";

/// The API resource of cass-operator's CassandraDatacenter.
pub fn cassandra_datacenter_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cassandra.datastax.com",
        "v1beta1",
        "CassandraDatacenter",
    ))
}

/// A Cassandra object that may receive the sidecar.
#[derive(Clone, Debug)]
pub enum Candidate<'a> {
    /// A StatefulSet.
    StatefulSet(&'a StatefulSet),
    /// A cass-operator CassandraDatacenter.
    Datacenter(&'a DynamicObject),
}

impl Candidate<'_> {
    /// Its kind.
    pub fn kind(&self) -> TargetKind {
        match self {
            Candidate::StatefulSet(_) => TargetKind::StatefulSet,
            Candidate::Datacenter(_) => TargetKind::CassandraDatacenter,
        }
    }

    /// Its name.
    pub fn name(&self) -> String {
        match self {
            Candidate::StatefulSet(o) => o.name_any(),
            Candidate::Datacenter(o) => o.name_any(),
        }
    }

    /// Its labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            Candidate::StatefulSet(o) => o.labels(),
            Candidate::Datacenter(o) => o.labels(),
        }
    }

    /// The annotations of its pod template (where the operator marks what it injected).
    pub fn template_annotations(&self) -> BTreeMap<String, String> {
        match self {
            Candidate::StatefulSet(o) => o
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default(),
            Candidate::Datacenter(o) => o
                .data
                .pointer("/spec/podTemplateSpec/metadata/annotations")
                .and_then(|a| serde_json::from_value(a.clone()).ok())
                .unwrap_or_default(),
        }
    }

    /// Whether `manager` owns fields of it (server-side apply's managedFields).
    pub fn managed_by(&self, manager: &str) -> bool {
        let entries = match self {
            Candidate::StatefulSet(o) => o.metadata.managed_fields.as_ref(),
            Candidate::Datacenter(o) => o.metadata.managed_fields.as_ref(),
        };
        entries
            .into_iter()
            .flatten()
            .any(|m| m.manager.as_deref() == Some(manager))
    }

    /// The pod spec of its template, if any.
    pub fn pod_spec(&self) -> Option<PodSpec> {
        match self {
            Candidate::StatefulSet(o) => o.spec.as_ref().and_then(|s| s.template.spec.clone()),
            Candidate::Datacenter(o) => o
                .data
                .pointer("/spec/podTemplateSpec/spec")
                .and_then(|s| serde_json::from_value(s.clone()).ok()),
        }
    }
}

/// Whether a TableSnap's `targets` select an object of this kind, name and labels.
pub fn selects(
    targets: &Targets,
    kind: TargetKind,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if targets.kind.is_some_and(|k| k != kind) {
        return false;
    }
    if let Some(wanted) = &targets.name {
        return wanted == name;
    }
    match &targets.selector {
        // An invalid selector selects nothing; the API server's validation keeps these rare.
        Some(selector) => Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels)),
        None => false,
    }
}

/// The TableSnap that owns a target when several select it: the oldest one (then by name), so that
/// a later one reports a conflict instead of fighting over the pod template.
pub fn claimant<'a>(
    tablesnaps: &'a [TableSnap],
    kind: TargetKind,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<&'a TableSnap> {
    tablesnaps
        .iter()
        .filter(|t| t.metadata.deletion_timestamp.is_none())
        .filter(|t| selects(&t.spec.targets, kind, name, labels))
        .min_by_key(|t| {
            (
                t.metadata.creation_timestamp.as_ref().map(|c| c.0),
                t.name_any(),
            )
        })
}

/// Where the agent finds Cassandra's data in a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataVolume {
    /// The pod volume (or claim template) name.
    pub volume: String,
    /// Where the Cassandra container mounts it; the agent mounts it at the same path.
    pub mount_path: String,
}

/// Why a target gets no sidecar: a status reason and a sentence saying what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason for conditions and events.
    pub reason: &'static str,
    /// What is wrong and what would fix it.
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// What to do with one selected object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Inject the sidecar mounting this volume.
    Inject(DataVolume),
    /// Report this problem; touch nothing.
    Skip(Problem),
    /// Not ours to report: a StatefulSet whose CassandraDatacenter is selected too.
    Ignore,
}

/// Resolve a candidate: refuse objects another operator rebuilds, then find the data volume.
pub fn resolve(
    candidate: &Candidate<'_>,
    targets: &Targets,
    selected_datacenters: &[String],
) -> Resolution {
    match candidate {
        Candidate::StatefulSet(sts) => resolve_statefulset(sts, targets, selected_datacenters),
        Candidate::Datacenter(dc) => resolve_datacenter(dc, targets),
    }
}

fn owner_of_kind(
    owners: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
    kind: &str,
) -> Option<String> {
    owners?
        .iter()
        .find(|o| o.kind == kind)
        .map(|o| o.name.clone())
}

fn k8ssandra_message(kind: &str, name: &str, cluster: &str) -> String {
    format!(
        "{kind} {name} belongs to K8ssandraCluster {cluster}, whose container lists have no merge keys, so the operator does not patch it; \
         add the tablesnap sidecar to the K8ssandraCluster's spec.cassandra.initContainers yourself (see the README), and remove this target from the TableSnap"
    )
}

fn resolve_statefulset(
    sts: &StatefulSet,
    targets: &Targets,
    selected_datacenters: &[String],
) -> Resolution {
    let name = sts.name_any();
    if let Some(cluster) = sts
        .labels()
        .get(K8SSANDRA_CLUSTER_LABEL)
        .cloned()
        .or_else(|| owner_of_kind(sts.metadata.owner_references.as_ref(), "K8ssandraCluster"))
    {
        return Resolution::Skip(Problem::new(
            "ManagedByK8ssandra",
            k8ssandra_message("StatefulSet", &name, &cluster),
        ));
    }
    if let Some(dc) = owner_of_kind(
        sts.metadata.owner_references.as_ref(),
        "CassandraDatacenter",
    ) {
        if selected_datacenters.contains(&dc) {
            return Resolution::Ignore;
        }
        return Resolution::Skip(Problem::new(
            "ManagedByCassandraDatacenter",
            format!(
                "StatefulSet {name} is rebuilt by CassandraDatacenter {dc}; select the CassandraDatacenter instead (targets.kind: CassandraDatacenter, targets.name: {dc})"
            ),
        ));
    }
    let Some(spec) = sts.spec.as_ref() else {
        return Resolution::Skip(Problem::new(
            "InvalidTarget",
            format!("StatefulSet {name} has no spec"),
        ));
    };
    let claims: Vec<String> = spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    match spec.template.spec.as_ref() {
        Some(pod) => find_data_volume(pod, &claims, targets, &format!("StatefulSet {name}")),
        None => Resolution::Skip(Problem::new(
            "InvalidTarget",
            format!("StatefulSet {name} has no pod template spec"),
        )),
    }
}

fn resolve_datacenter(dc: &DynamicObject, targets: &Targets) -> Resolution {
    let name = dc.name_any();
    if let Some(cluster) = dc.labels().get(K8SSANDRA_CLUSTER_LABEL) {
        return Resolution::Skip(Problem::new(
            "ManagedByK8ssandra",
            k8ssandra_message("CassandraDatacenter", &name, cluster),
        ));
    }
    // cass-operator's Cassandra container is always `cassandra`: another name would put an
    // image-less container into podTemplateSpec, which makes cass-operator's StatefulSet invalid.
    if targets.container != CASS_OPERATOR_CONTAINER {
        return Resolution::Skip(Problem::new(
            "UnsupportedContainer",
            format!(
                "CassandraDatacenter {name}: cass-operator names its Cassandra container {CASS_OPERATOR_CONTAINER:?}; targets.container {:?} applies to StatefulSets only, remove it",
                targets.container
            ),
        ));
    }
    // cass-operator mounts its claim `server-data` at /var/lib/cassandra in the `cassandra` container;
    // a podTemplateSpec may add mounts of its own, which the general rule then finds.
    let pod: PodSpec = dc
        .data
        .pointer("/spec/podTemplateSpec/spec")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let mut pod = pod;
    let container = pod
        .containers
        .iter_mut()
        .find(|c| c.name == targets.container);
    let builtin = k8s_openapi::api::core::v1::VolumeMount {
        name: CASS_OPERATOR_VOLUME.to_owned(),
        mount_path: CASS_OPERATOR_PATH.to_owned(),
        ..Default::default()
    };
    match container {
        Some(c) => {
            let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
            if !mounts.iter().any(|m| m.name == CASS_OPERATOR_VOLUME) {
                mounts.push(builtin);
            }
        }
        None => pod.containers.push(k8s_openapi::api::core::v1::Container {
            name: targets.container.clone(),
            volume_mounts: Some(vec![builtin]),
            ..Default::default()
        }),
    }
    find_data_volume(
        &pod,
        &[CASS_OPERATOR_VOLUME.to_owned()],
        targets,
        &format!("CassandraDatacenter {name}"),
    )
}

/// The data volume rule: the Cassandra container's mount of a claim template at a known data path,
/// or the only claim-backed mount, or what `targets.dataVolume` / `targets.dataPath` name.
pub fn find_data_volume(
    pod: &PodSpec,
    claims: &[String],
    targets: &Targets,
    what: &str,
) -> Resolution {
    let Some(container) = pod.containers.iter().find(|c| c.name == targets.container) else {
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        return Resolution::Skip(Problem::new(
            "CassandraContainerNotFound",
            format!(
                "{what} has no container named {:?} (it has {names:?}); set targets.container",
                targets.container
            ),
        ));
    };
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let found = |m: &k8s_openapi::api::core::v1::VolumeMount| {
        Resolution::Inject(DataVolume {
            volume: m.name.clone(),
            mount_path: m.mount_path.clone(),
        })
    };
    if targets.data_volume.is_some() || targets.data_path.is_some() {
        let hit = mounts.iter().find(|m| {
            targets.data_volume.as_ref().is_none_or(|v| *v == m.name)
                && targets
                    .data_path
                    .as_ref()
                    .is_none_or(|p| p.trim_end_matches('/') == m.mount_path.trim_end_matches('/'))
        });
        return match hit {
            Some(m) => found(m),
            None => Resolution::Skip(Problem::new(
                "DataVolumeNotFound",
                format!(
                    "{what}: container {:?} has no volume mount matching targets.dataVolume={:?} targets.dataPath={:?}; its mounts are {:?}",
                    targets.container,
                    targets.data_volume,
                    targets.data_path,
                    mounts
                        .iter()
                        .map(|m| format!("{}:{}", m.name, m.mount_path))
                        .collect::<Vec<_>>()
                ),
            )),
        };
    }
    let pod_volumes: Vec<String> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    let known = |m: &k8s_openapi::api::core::v1::VolumeMount| {
        KNOWN_DATA_PATHS.contains(&m.mount_path.trim_end_matches('/'))
    };
    let claimed: Vec<_> = mounts.iter().filter(|m| claims.contains(&m.name)).collect();
    if let Some(m) = claimed.iter().find(|m| known(m)) {
        return found(m);
    }
    if claimed.len() == 1 {
        return found(claimed[0]);
    }
    if claimed.len() > 1 {
        return Resolution::Skip(Problem::new(
            "DataVolumeAmbiguous",
            format!(
                "{what}: container {:?} mounts several claims {:?} and none at a known data path {KNOWN_DATA_PATHS:?}; set targets.dataVolume",
                targets.container,
                claimed.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()
            ),
        ));
    }
    // No claim template: a pod volume (hostPath, emptyDir, an existing claim) at a known data path.
    if let Some(m) = mounts
        .iter()
        .filter(|m| pod_volumes.contains(&m.name))
        .find(|m| known(m))
    {
        return found(m);
    }
    Resolution::Skip(Problem::new(
        "DataVolumeNotFound",
        format!(
            "{what}: container {:?} mounts no volume claim and nothing at a known data path {KNOWN_DATA_PATHS:?}; set targets.dataVolume and targets.dataPath",
            targets.container
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    fn sts(yaml: &str) -> StatefulSet {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn dc(yaml: &str) -> DynamicObject {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn targets() -> Targets {
        samples::tablesnap().spec.targets
    }

    /// The problem `resolve` reports for `c` (fails the test when it injects or ignores instead).
    fn problem(c: &Candidate<'_>, t: &Targets) -> Problem {
        match resolve(c, t, &[]) {
            Resolution::Skip(p) => p,
            other => panic!("expected a problem, got {other:?}"),
        }
    }

    fn inject(volume: &str, path: &str) -> Resolution {
        Resolution::Inject(DataVolume {
            volume: volume.into(),
            mount_path: path.into(),
        })
    }

    #[test]
    fn bitnami_statefulset_uses_claim_data_at_bitnami_cassandra() {
        let o = sts(samples::BITNAMI_STATEFULSET);
        assert_eq!(
            resolve(&Candidate::StatefulSet(&o), &targets(), &[]),
            inject("data", "/bitnami/cassandra")
        );
    }

    #[test]
    fn two_claims_pick_the_one_at_the_data_path_not_the_commit_log() {
        let o = sts(samples::TWO_VOLUMES_STATEFULSET);
        assert_eq!(
            resolve(&Candidate::StatefulSet(&o), &targets(), &[]),
            inject("data", "/var/lib/cassandra")
        );
    }

    #[test]
    fn overrides_pick_another_mount_and_report_a_missing_one() {
        let o = sts(samples::TWO_VOLUMES_STATEFULSET);
        let mut t = targets();
        t.data_volume = Some("commitlog".into());
        assert_eq!(
            resolve(&Candidate::StatefulSet(&o), &t, &[]),
            inject("commitlog", "/var/lib/cassandra/commitlog")
        );
        t.data_volume = None;
        t.data_path = Some("/srv/cassandra".into());
        let p = problem(&Candidate::StatefulSet(&o), &t);
        assert_eq!(p.reason, "DataVolumeNotFound");
        assert!(p.message.contains("/srv/cassandra"), "{}", p.message);
    }

    #[test]
    fn no_matching_volume_is_a_problem_not_a_crash() {
        let o = sts(samples::NO_VOLUME_STATEFULSET);
        let p = problem(&Candidate::StatefulSet(&o), &targets());
        assert_eq!(p.reason, "DataVolumeNotFound");
        assert!(
            p.message.contains("cass-ephemeral") && p.message.contains("targets.dataVolume"),
            "{}",
            p.message
        );
    }

    /// Review 8: targets.container on a CassandraDatacenter added an image-less container.
    #[test]
    fn a_datacenter_takes_no_other_container_name() {
        let dc: DynamicObject =
            serde_yaml::from_str(crate::samples::CASS_OPERATOR_DATACENTER).unwrap();
        let targets = Targets {
            container: "db".into(),
            ..Default::default()
        };
        match resolve(&Candidate::Datacenter(&dc), &targets, &[]) {
            Resolution::Skip(p) => assert_eq!(p.reason, "UnsupportedContainer", "{}", p.message),
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn missing_cassandra_container_names_the_containers_it_has() {
        let o = sts(samples::BITNAMI_STATEFULSET);
        let mut t = targets();
        t.container = "db".into();
        let p = problem(&Candidate::StatefulSet(&o), &t);
        assert_eq!(p.reason, "CassandraContainerNotFound");
        assert!(p.message.contains("\"cassandra\""), "{}", p.message);
    }

    #[test]
    fn cass_operator_statefulset_is_never_patched() {
        let o = sts(samples::CASS_OPERATOR_STATEFULSET);
        let p = problem(&Candidate::StatefulSet(&o), &targets());
        assert_eq!(p.reason, "ManagedByCassandraDatacenter");
        assert!(
            p.message.contains("CassandraDatacenter dc1"),
            "{}",
            p.message
        );
        // When its datacenter is selected too, the datacenter gets the sidecar and the StatefulSet is not reported.
        assert_eq!(
            resolve(&Candidate::StatefulSet(&o), &targets(), &["dc1".into()]),
            Resolution::Ignore
        );
    }

    #[test]
    fn cass_operator_datacenter_uses_server_data() {
        let o = dc(samples::CASS_OPERATOR_DATACENTER);
        assert_eq!(
            resolve(&Candidate::Datacenter(&o), &targets(), &[]),
            inject("server-data", "/var/lib/cassandra")
        );
    }

    /// Issue 13 (mutation testing): cass-operator's own mount is added when the podTemplateSpec
    /// names no `cassandra` container, or names one with mounts of its own.
    #[test]
    fn a_datacenter_without_its_container_or_with_other_mounts_uses_server_data() {
        let mut o = dc(samples::CASS_OPERATOR_DATACENTER);
        o.data["spec"]
            .as_object_mut()
            .unwrap()
            .remove("podTemplateSpec");
        assert_eq!(
            resolve(&Candidate::Datacenter(&o), &targets(), &[]),
            inject("server-data", "/var/lib/cassandra"),
            "no podTemplateSpec"
        );
        let mut o = dc(samples::CASS_OPERATOR_DATACENTER);
        o.data["spec"]["podTemplateSpec"]["spec"]["containers"][0]["volumeMounts"] =
            serde_json::json!([{"name": "extra", "mountPath": "/etc/extra"}]);
        assert_eq!(
            resolve(&Candidate::Datacenter(&o), &targets(), &[]),
            inject("server-data", "/var/lib/cassandra"),
            "a mount of the user's own"
        );
    }

    #[test]
    fn two_claims_at_no_known_path_are_ambiguous() {
        let yaml = samples::TWO_VOLUMES_STATEFULSET
            .replace(
                "mountPath: /var/lib/cassandra/commitlog",
                "mountPath: /srv/log",
            )
            .replace("mountPath: /var/lib/cassandra", "mountPath: /srv/data");
        let o = sts(&yaml);
        let p = problem(&Candidate::StatefulSet(&o), &targets());
        assert_eq!(p.reason, "DataVolumeAmbiguous");
        assert!(
            p.message.contains("commitlog") && p.message.contains("targets.dataVolume"),
            "{}",
            p.message
        );
    }

    #[test]
    fn k8ssandra_datacenter_explains_what_to_do() {
        let o = dc(samples::K8SSANDRA_DATACENTER);
        let p = problem(&Candidate::Datacenter(&o), &targets());
        assert_eq!(p.reason, "ManagedByK8ssandra");
        assert!(
            p.message.contains("K8ssandraCluster demo")
                && p.message.contains("spec.cassandra.initContainers"),
            "{}",
            p.message
        );
    }

    #[test]
    fn selection_by_labels_name_and_kind() {
        let labels = BTreeMap::from([("backup".to_owned(), "tablesnap".to_owned())]);
        let t = targets();
        assert!(selects(&t, TargetKind::StatefulSet, "x", &labels));
        assert!(!selects(&t, TargetKind::StatefulSet, "x", &BTreeMap::new()));
        let by_name = Targets {
            name: Some("dc1".into()),
            kind: Some(TargetKind::CassandraDatacenter),
            ..t.clone()
        };
        assert!(selects(
            &by_name,
            TargetKind::CassandraDatacenter,
            "dc1",
            &BTreeMap::new()
        ));
        assert!(!selects(
            &by_name,
            TargetKind::StatefulSet,
            "dc1",
            &BTreeMap::new()
        ));
        assert!(!selects(
            &by_name,
            TargetKind::CassandraDatacenter,
            "dc2",
            &BTreeMap::new()
        ));
    }

    #[test]
    fn the_oldest_tablesnap_claims_a_target() {
        let older = samples::tablesnap();
        let mut newer = samples::tablesnap();
        newer.metadata.name = Some("hourly".into());
        newer.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-02-01T00:00:00Z".parse().unwrap(),
            ));
        let labels = BTreeMap::from([("backup".to_owned(), "tablesnap".to_owned())]);
        let all = [newer.clone(), older.clone()];
        assert_eq!(
            claimant(&all, TargetKind::StatefulSet, "x", &labels)
                .unwrap()
                .name_any(),
            "nightly"
        );
        let mut deleting = older;
        deleting.metadata.deletion_timestamp = newer.metadata.creation_timestamp.clone();
        let all = [newer, deleting];
        assert_eq!(
            claimant(&all, TargetKind::StatefulSet, "x", &labels)
                .unwrap()
                .name_any(),
            "hourly"
        );
    }
}
