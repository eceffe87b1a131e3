//! The sidecar and the server-side apply bodies, as pure functions of a TableSnap and a resolved target.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::crd::{CredentialsMode, DEFAULT_AGENT_IMAGE, Mode, TableSnap, TargetKind};
use crate::resolve::DataVolume;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "tablesnap-operator";
/// Name of the sidecar container.
pub const SIDECAR_NAME: &str = "tablesnap";
/// Name of the scratch `emptyDir` volume.
pub const SCRATCH_VOLUME: &str = "tablesnap-scratch";
/// Where the scratch volume is mounted in the sidecar.
pub const SCRATCH_PATH: &str = "/var/tmp/tablesnap";
/// Pod template annotation: hash of the rendered sidecar, so a spec change rolls pods once.
pub const HASH_ANNOTATION: &str = "tablesnap.io/config-hash";
/// Pod template annotation: the TableSnap that injected the sidecar.
pub const OWNER_ANNOTATION: &str = "tablesnap.io/tablesnap";

/// The agent's command line for this TableSnap and data volume (without the program name).
pub fn agent_args(ts: &TableSnap, data: &DataVolume) -> Vec<String> {
    let spec = &ts.spec;
    let mut args: Vec<String> = vec!["--name".into(), "$(POD_NAME)".into(), "--mode".into(), spec.mode.as_str().into()];
    args.push("--http-listen".into());
    args.push(format!("0.0.0.0:{}", spec.http_port()));
    args.push("--log-format".into());
    args.push(spec.agent.log_format.clone().unwrap_or_else(|| "json".into()));
    if spec.mode == Mode::Cassandra && !spec.delete_on_backup {
        // The data mount is read-only, so staging cannot hard-link next to the data; the agent
        // stages in the scratch volume instead.
        args.push("--staging-dir".into());
        args.push(format!("{SCRATCH_PATH}/staging"));
    }
    let mut opt = |flag: &str, value: &Option<String>| {
        if let Some(v) = value {
            args.push(flag.into());
            args.push(v.clone());
        }
    };
    opt("--prefix", &spec.prefix);
    opt("--endpoint-url", &spec.endpoint);
    opt("--aws-region", &spec.region);
    opt("--keyname-separator", &spec.keyname_separator);
    opt("--storage-class", &spec.storage_class);
    opt("--sse-kms-key-id", &spec.sse_kms_key_id);
    let mut num = |flag: &str, value: Option<i64>| {
        if let Some(v) = value {
            args.push(flag.into());
            args.push(v.to_string());
        }
    };
    num("--max-upload-size", spec.max_upload_size);
    num("--multipart-chunk-size", spec.multipart_chunk_size);
    num("--threads", spec.threads);
    for (flag, on) in [
        ("--virtual-hosted-style", spec.virtual_hosted_style),
        ("--recursive", spec.recursive),
        ("--auto-add", spec.auto_add),
        ("--backup", spec.backup_existing),
        ("--without-index", spec.without_index),
        ("--delete-on-backup", spec.delete_on_backup),
        ("--with-sse", spec.with_sse),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    for event in &spec.listen_events {
        args.push("--listen-events".into());
        args.push(event.as_str().into());
    }
    for re in spec.include.iter().flatten() {
        args.push("--include".into());
        args.push(re.clone());
    }
    for re in spec.exclude.iter().flatten() {
        args.push("--exclude".into());
        args.push(re.clone());
    }
    args.push(spec.bucket.clone());
    if spec.paths.is_empty() {
        args.push(data.mount_path.clone());
    } else {
        args.extend(spec.paths.iter().cloned());
    }
    args
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: None }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The agent as a native sidecar: an init container with `restartPolicy: Always`.
pub fn sidecar(ts: &TableSnap, data: &DataVolume) -> Container {
    let spec = &ts.spec;
    let port = spec.http_port();
    let mut env = vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar { name: "TMPDIR".into(), value: Some(SCRATCH_PATH.into()), ..Default::default() },
    ];
    if let (CredentialsMode::Secret, Some(secret)) = (spec.credentials.mode, &spec.credentials.secret_ref) {
        env.push(env_from_secret("AWS_ACCESS_KEY_ID", &secret.name, &secret.access_key_id_key));
        env.push(env_from_secret("AWS_SECRET_ACCESS_KEY", &secret.name, &secret.secret_access_key_key));
        if let Some(key) = &secret.session_token_key {
            env.push(env_from_secret("AWS_SESSION_TOKEN", &secret.name, key));
        }
    }
    let resources = spec.agent.resources.clone().unwrap_or_else(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".into())),
            ("memory".to_owned(), Quantity("64Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("256Mi".into()))])),
        ..Default::default()
    });
    let security_context = spec.agent.security_context.clone().unwrap_or_else(|| SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    });
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(spec.agent.image.clone().unwrap_or_else(|| DEFAULT_AGENT_IMAGE.into())),
        image_pull_policy: spec.agent.image_pull_policy.clone(),
        args: Some(agent_args(ts, data)),
        env: Some(env),
        restart_policy: Some("Always".into()),
        ports: Some(vec![ContainerPort {
            name: Some("tablesnap-http".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            initial_delay_seconds: Some(10),
            period_seconds: Some(20),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        resources: Some(resources),
        security_context: Some(security_context),
        volume_mounts: Some(vec![
            VolumeMount {
                name: data.volume.clone(),
                mount_path: data.mount_path.clone(),
                read_only: Some(!spec.delete_on_backup),
                ..Default::default()
            },
            VolumeMount { name: SCRATCH_VOLUME.into(), mount_path: SCRATCH_PATH.into(), ..Default::default() },
        ]),
        ..Default::default()
    }
}

/// The scratch volume entry.
pub fn scratch_volume() -> Value {
    json!({"name": SCRATCH_VOLUME, "emptyDir": {}})
}

/// A short stable hash of the rendered sidecar and volume: changes exactly when the pods must roll.
pub fn config_hash(container: &Container) -> String {
    let bytes = serde_json::to_vec(&json!({"container": container, "volume": scratch_volume()})).expect("a container serializes");
    hex::encode(&Sha256::digest(&bytes)[..8])
}

/// The apiVersion of a target kind.
pub fn api_version(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::StatefulSet => "apps/v1",
        TargetKind::CassandraDatacenter => "cassandra.datastax.com/v1beta1",
    }
}

/// What the operator applies into one target: the pod template annotations, the sidecar and the
/// scratch volume; for a CassandraDatacenter also the name-only placeholder of the Cassandra
/// container, because its `podTemplateSpec.spec` requires `containers`.
pub fn apply_body(ts: &TableSnap, kind: TargetKind, name: &str, container_name: &str, data: &DataVolume) -> Value {
    let sidecar = sidecar(ts, data);
    let hash = config_hash(&sidecar);
    let metadata = json!({"annotations": {HASH_ANNOTATION: hash, OWNER_ANNOTATION: ts.name_any()}});
    let mut pod_spec = json!({"initContainers": [sidecar], "volumes": [scratch_volume()]});
    let spec = match kind {
        TargetKind::StatefulSet => json!({"template": {"metadata": metadata, "spec": pod_spec}}),
        TargetKind::CassandraDatacenter => {
            pod_spec["containers"] = json!([{"name": container_name}]);
            json!({"podTemplateSpec": {"metadata": metadata, "spec": pod_spec}})
        }
    };
    json!({
        "apiVersion": api_version(kind),
        "kind": kind.as_str(),
        "metadata": {"name": name, "namespace": ts.namespace()},
        "spec": spec,
    })
}

/// The apply body that removes everything the operator applied to a target: an apply with no
/// fields drops exactly the fields our field manager owns, nothing another manager owns.
pub fn removal_body(kind: TargetKind, name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": api_version(kind),
        "kind": kind.as_str(),
        "metadata": {"name": name, "namespace": namespace},
    })
}

/// The hash inside an apply body (what the live template carries when it is up to date).
pub fn body_hash(body: &Value) -> Option<&str> {
    body.pointer("/spec/template/metadata/annotations")
        .or_else(|| body.pointer("/spec/podTemplateSpec/metadata/annotations"))
        .and_then(|a| a.get(HASH_ANNOTATION))
        .and_then(Value::as_str)
}

/// The object a server-side apply of `body` onto `live` yields, for our fields: maps merge
/// recursively; `containers`, `initContainers` and `volumes` merge by `name` as the API server does.
/// Used to validate what a patched object looks like and to preview it; never sent to the server.
pub fn merged(live: &Value, body: &Value) -> Value {
    match (live, body) {
        (Value::Object(l), Value::Object(b)) => {
            let mut out = l.clone();
            for (k, bv) in b {
                let nv = match (l.get(k), bv) {
                    (Some(Value::Array(la)), Value::Array(ba)) if ["containers", "initContainers", "volumes"].contains(&k.as_str()) => {
                        let mut items = la.clone();
                        for item in ba {
                            match items.iter_mut().find(|i| i.get("name") == item.get("name")) {
                                Some(existing) => *existing = merged(existing, item),
                                None => items.push(item.clone()),
                            }
                        }
                        Value::Array(items)
                    }
                    (Some(lv), _) => merged(lv, bv),
                    (None, _) => bv.clone(),
                };
                out.insert(k.clone(), nv);
            }
            Value::Object(out)
        }
        (_, b) => b.clone(),
    }
}
