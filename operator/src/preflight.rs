//! The pre-flight check: before the first pod template changes for a new agent configuration,
//! one short-lived pod runs the agent's image with the sidecar's env (its Secret references) and
//! pull secrets, `tablesnap --version`. The kubelet then says what would break the Cassandra pods'
//! restart: an image it cannot pull (`ErrImagePull`, `ImagePullBackOff`), a Secret or key that
//! does not exist (`CreateContainerConfigError`), a binary that does not start. The operator
//! never reads a Secret; the kubelet does, for this pod as for the Cassandra pods.
//!
//! Pure decisions here ([`pod`], [`verdict`]); `apply` creates, reads and deletes the pod.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::TableSnap;

/// Label on pre-flight pods: the TableSnap they check.
pub const LABEL: &str = "tablesnap.io/preflight";
/// Label on pre-flight pods: the configuration they check.
pub const HASH_LABEL: &str = "tablesnap.io/preflight-hash";
/// A pre-flight pod still running after this long is failed (the kubelet gave up or no node
/// takes it).
pub const DEADLINE_SECONDS: i64 = 300;
/// A failed pre-flight pod is kept (for `kubectl describe`) this long, then tried again.
pub const RETRY_AFTER_SECONDS: i64 = 600;

/// The kubelet's waiting reasons that no retry of the Cassandra pods would get past.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What the pre-flight pod says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The agent's image ran with the sidecar's env and exited 0.
    Passed,
    /// Not decided yet; a sentence for the status.
    Pending(String),
    /// It cannot work: the kubelet's reason and message.
    Failed {
        /// The kubelet's reason (`ImagePullBackOff`, `CreateContainerConfigError`, ...).
        reason: String,
        /// A sentence for the status and the event.
        message: String,
    },
}

/// The part of the sidecar the pre-flight pod checks: image, pull policy, env, resources and
/// security context (no probes, ports or mounts: there is no data volume to mount).
fn checked_container(sidecar: &Container) -> Container {
    Container {
        name: "tablesnap".into(),
        image: sidecar.image.clone(),
        image_pull_policy: sidecar.image_pull_policy.clone(),
        args: Some(vec!["--version".into()]),
        env: sidecar.env.clone(),
        env_from: sidecar.env_from.clone(),
        resources: sidecar.resources.clone(),
        security_context: sidecar.security_context.clone(),
        ..Default::default()
    }
}

/// A hash of what the pre-flight pod checks: a new one is needed exactly when it changes.
pub fn hash(ts: &TableSnap, sidecar: &Container) -> String {
    let doc = serde_json::json!({
        "container": checked_container(sidecar),
        "imagePullSecrets": ts.spec.agent.image_pull_secrets,
    });
    let bytes = serde_json::to_vec(&doc).expect("a container serializes");
    hex::encode(&Sha256::digest(&bytes)[..6])
}

/// The pre-flight pod's name: the TableSnap's name (shortened to fit) and the hash.
pub fn pod_name(ts_name: &str, hash: &str) -> String {
    let room = 63 - "tablesnap-preflight-".len() - 1 - hash.len();
    let short: String = ts_name.chars().take(room).collect();
    format!(
        "tablesnap-preflight-{}-{hash}",
        short.trim_end_matches(['-', '.'])
    )
}

/// The pre-flight pod for `ts` and its sidecar, owned by the TableSnap (the garbage collector
/// removes it with the TableSnap).
pub fn pod(ts: &TableSnap, sidecar: &Container) -> Pod {
    let hash = hash(ts, sidecar);
    let owner = OwnerReference {
        api_version: TableSnap::api_version(&()).into(),
        kind: TableSnap::kind(&()).into(),
        name: ts.name_any(),
        uid: ts.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&ts.name_any(), &hash)),
            namespace: ts.namespace(),
            labels: Some(
                [
                    (LABEL.to_owned(), ts.name_any()),
                    (HASH_LABEL.to_owned(), hash),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "tablesnap-operator".to_owned(),
                    ),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![checked_container(sidecar)],
            image_pull_secrets: Some(ts.spec.agent.image_pull_secrets.clone())
                .filter(|s| !s.is_empty()),
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(DEADLINE_SECONDS),
            automount_service_account_token: Some(false),
            ..Default::default()
        }),
        status: None,
    }
}

/// What the pod's status says, as the kubelet wrote it.
pub fn verdict(pod: &Pod) -> Verdict {
    let name = pod.name_any();
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "tablesnap");
    let state = container.and_then(|c| c.state.as_ref());
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
        && let Some(reason) = waiting.reason.as_deref()
        && FATAL_WAITING.contains(&reason)
    {
        return Verdict::Failed {
            reason: reason.into(),
            message: format!(
                "pre-flight pod {name}: {reason}: {}; the Cassandra pods would not start with this agent configuration, so their template is left unchanged",
                waiting.message.as_deref().unwrap_or("(no message)")
            ),
        };
    }
    match status.phase.as_deref() {
        Some("Succeeded") => Verdict::Passed,
        Some("Failed") => {
            let terminated = state.and_then(|s| s.terminated.as_ref());
            let detail = match terminated {
                Some(t) => format!(
                    "the agent exited with {}{}",
                    t.exit_code,
                    t.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                None => status
                    .message
                    .clone()
                    .or(status.reason.clone())
                    .unwrap_or_else(|| "the pod failed".into()),
            };
            Verdict::Failed {
                reason: "PreflightFailed".into(),
                message: format!(
                    "pre-flight pod {name}: {detail}; the pod template is left unchanged"
                ),
            }
        }
        _ => Verdict::Pending(format!(
            "waiting for the pre-flight pod {name} (the agent's image with the sidecar's env) to run before the pod template changes"
        )),
    }
}

/// Whether the pre-flight pod goes now, its verdict `verdict` at `now`: once it passed, or once
/// it failed and is older than [`RETRY_AFTER_SECONDS`] (a failed pod stays for `kubectl describe`
/// until then, and its successor tries again).
pub fn retire(pod: &Pod, verdict: &Verdict, now: jiff::Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let age = pod
        .creation_timestamp()
        .map_or(0, |t| now.as_second() - t.0.as_second());
    *verdict == Verdict::Passed || (phase == Some("Failed") && age > RETRY_AFTER_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
    };

    fn with(phase: &str, state: Option<ContainerState>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("tablesnap-preflight-x-abc".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: state.map(|s| {
                    vec![ContainerStatus {
                        name: "tablesnap".into(),
                        state: Some(s),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(reason: &str, message: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_kubelets_word_decides() {
        assert_eq!(verdict(&with("Succeeded", None)), Verdict::Passed);
        assert!(matches!(
            verdict(&with("Pending", None)),
            Verdict::Pending(_)
        ));
        assert!(matches!(
            verdict(&with("Pending", Some(waiting("ContainerCreating", "")))),
            Verdict::Pending(_)
        ));
        let Verdict::Failed { reason, message } = verdict(&with(
            "Pending",
            Some(waiting(
                "CreateContainerConfigError",
                "secret \"s3\" not found",
            )),
        )) else {
            panic!("a missing Secret must fail")
        };
        assert_eq!(reason, "CreateContainerConfigError");
        assert!(message.contains("secret \"s3\" not found"), "{message}");
        assert!(matches!(
            verdict(&with("Pending", Some(waiting("ImagePullBackOff", "Back-off pulling")))),
            Verdict::Failed { reason, .. } if reason == "ImagePullBackOff"
        ));
        let exited = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 127,
                ..Default::default()
            }),
            ..Default::default()
        };
        let Verdict::Failed { reason, message } = verdict(&with("Failed", Some(exited))) else {
            panic!("a failed pod must fail")
        };
        assert_eq!(reason, "PreflightFailed");
        assert!(message.contains("exited with 127"), "{message}");
    }

    #[test]
    fn names_fit_and_keep_the_hash() {
        let n = pod_name(&"a".repeat(80), "0123456789ab");
        assert!(n.len() <= 63, "{n}");
        assert!(n.ends_with("-0123456789ab"), "{n}");
        assert_eq!(pod_name("nightly", "ab"), "tablesnap-preflight-nightly-ab");
    }

    #[test]
    fn the_pod_checks_the_sidecars_image_env_and_pull_secrets() {
        let ts: TableSnap = serde_json::from_value(serde_json::json!({
            "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
            "metadata": {"name": "nightly", "namespace": "db", "uid": "u-1"},
            "spec": {"bucket": "b", "targets": {"name": "cass"}, "credentials": {"mode": "Secret", "secretRef": {"name": "s3"}},
                     "agent": {"image": "registry.example/tablesnap:1", "imagePullSecrets": [{"name": "regcred"}]}}
        }))
        .unwrap();
        let data = crate::resolve::DataVolume {
            volume: "data".into(),
            mount_path: "/var/lib/cassandra".into(),
        };
        let sidecar = crate::render::sidecar(&ts, &data);
        let p = pod(&ts, &sidecar);
        let spec = p.spec.unwrap();
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.example/tablesnap:1"));
        assert_eq!(c.args, Some(vec!["--version".to_string()]));
        assert_eq!(
            c.env, sidecar.env,
            "the same Secret references as the sidecar"
        );
        assert!(c.volume_mounts.is_none() && c.liveness_probe.is_none());
        assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "regcred");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let owner = &p.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("TableSnap", "u-1")
        );
        let labels = p.metadata.labels.unwrap();
        assert_eq!(labels[LABEL], "nightly");
        assert_eq!(labels[HASH_LABEL], hash(&ts, &sidecar));
        let mut other = ts.clone();
        other.spec.agent.image = Some("registry.example/tablesnap:2".into());
        assert_ne!(
            hash(&other, &crate::render::sidecar(&other, &data)),
            hash(&ts, &sidecar)
        );
    }

    /// Issue 13 (mutation testing): a passed pre-flight pod goes at once; a failed one only once
    /// it is older than RETRY_AFTER_SECONDS; a pending one stays however old.
    #[test]
    fn a_failed_preflight_pod_goes_only_once_it_is_old_enough() {
        let now: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let aged = |phase: &str, seconds: i64| {
            let mut pod = with(phase, None);
            let created = now - jiff::SignedDuration::from_secs(seconds);
            pod.metadata.creation_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created),
            );
            pod
        };
        let failed = Verdict::Failed {
            reason: "Error".into(),
            message: "exit 1".into(),
        };
        let pending = Verdict::Pending("waiting".into());
        assert!(retire(&aged("Succeeded", 5), &Verdict::Passed, now));
        assert!(
            !retire(&aged("Failed", 30), &failed, now),
            "a fresh failure stays"
        );
        assert!(!retire(&aged("Failed", RETRY_AFTER_SECONDS), &failed, now));
        assert!(retire(
            &aged("Failed", RETRY_AFTER_SECONDS + 1),
            &failed,
            now
        ));
        assert!(
            !retire(&aged("Pending", RETRY_AFTER_SECONDS + 1), &failed, now),
            "not failed yet"
        );
        assert!(!retire(
            &aged("Pending", 10 * RETRY_AFTER_SECONDS),
            &pending,
            now
        ));
    }
}
