//! The sidecar and the server-side apply bodies, as pure functions of a TableSnap and a resolved target.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    LocalObjectReference, ObjectFieldSelector, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, VolumeMount,
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
    let mut args: Vec<String> = vec![
        "--name".into(),
        "$(POD_NAME)".into(),
        "--mode".into(),
        spec.mode.as_str().into(),
    ];
    // A sidecar must never crash-loop: a wrong bucket or refused credentials are reported and
    // waited for instead of ending the process.
    args.push("--wait-for-bucket".into());
    args.push("--http-listen".into());
    args.push(format!("0.0.0.0:{}", spec.http_port()));
    args.push("--log-format".into());
    args.push(
        spec.agent
            .log_format
            .clone()
            .unwrap_or_else(|| "json".into()),
    );
    if spec.mode == Mode::Cassandra && !spec.delete_on_backup {
        // The data mount is read-only, so staging cannot hard-link next to the data; the agent
        // stages in the scratch volume instead.
        args.push("--staging-dir".into());
        args.push(format!("{SCRATCH_PATH}/staging"));
    }
    // `--flag=value` where the value starts with '-': as a separate argument the agent's parser
    // would take `--` (a valid separator) or `-x` for an option.
    fn push_value(args: &mut Vec<String>, flag: &str, v: &str) {
        if v.starts_with('-') {
            args.push(format!("{flag}={v}"));
        } else {
            args.push(flag.into());
            args.push(v.into());
        }
    }
    let mut opt = |flag: &str, value: &Option<String>| {
        if let Some(v) = value {
            push_value(&mut args, flag, v);
        }
    };
    // Pod names are unique in a namespace, not in a bucket: the namespace is the default prefix.
    let prefix = match &spec.prefix {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(p.clone()),
        None => ts.namespace().map(|ns| format!("{ns}/")),
    };
    opt("--prefix", &prefix);
    opt("--endpoint-url", &spec.endpoint);
    opt("--aws-region", &spec.region);
    opt("--keyname-separator", &spec.keyname_separator);
    opt("--storage-class", &spec.storage_class);
    opt("--sse-kms-key-id", &spec.sse_kms_key_id);
    opt("--checksum", &spec.checksum.map(|c| c.as_str().to_string()));
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
    // `--flag=RE`: the agent's -i/-e take one or more values (argparse's nargs='+'), so a separate
    // value would swallow the bucket that follows.
    for re in spec.include.iter().flatten() {
        args.push(format!("--include={re}"));
    }
    for re in spec.exclude.iter().flatten() {
        args.push(format!("--exclude={re}"));
    }
    if let Some(cl) = &spec.commitlog_archive {
        args.push("--commitlog-archive".into());
        args.push(under(&data.mount_path, cl.directory()));
        args.push("--commitlog-dir".into());
        args.push(under(&data.mount_path, cl.commitlog_directory()));
        if let Some(mb) = cl.spool_max_mb {
            args.push("--commitlog-spool-max".into());
            args.push(mb.to_string());
        }
    }
    args.push(spec.bucket.clone());
    if spec.paths.is_empty() {
        args.push(data.mount_path.clone());
    } else {
        args.extend(spec.paths.iter().cloned());
    }
    args
}

/// The `archive_command` line Cassandra needs for `spec.commitlogArchive` on this data volume.
pub fn archive_command(ts: &TableSnap, data: &DataVolume) -> Option<String> {
    let cl = ts.spec.commitlog_archive.as_ref()?;
    Some(format!(
        "archive_command=/bin/ln %path {}/%name",
        under(&data.mount_path, cl.directory())
    ))
}

/// `rel` inside the mount at `mount`.
fn under(mount: &str, rel: &str) -> String {
    format!("{}/{rel}", mount.trim_end_matches('/'))
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The sidecar's resources unless `spec.agent.resources` says otherwise: requests equal to limits
/// for CPU and memory, so that a Guaranteed Cassandra pod stays Guaranteed (the QoS class is
/// computed over init containers too: a sidecar without a CPU limit made it Burstable).
pub fn default_resources() -> ResourceRequirements {
    let both = BTreeMap::from([
        ("cpu".to_owned(), Quantity("100m".into())),
        ("memory".to_owned(), Quantity("256Mi".into())),
    ]);
    ResourceRequirements {
        requests: Some(both.clone()),
        limits: Some(both),
        ..Default::default()
    }
}

/// The restricted-compliant defaults with the user's `spec.agent.securityContext` over them, field
/// by field: setting only `runAsUser` keeps the read-only root, no privilege escalation, no
/// capabilities and the seccomp profile (a replacing override got pods refused under
/// Pod Security `restricted`).
pub fn security_context(user: Option<&SecurityContext>) -> SecurityContext {
    let defaults = SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    };
    let Some(user) = user else {
        return defaults;
    };
    let mut merged = serde_json::to_value(&defaults).expect("a SecurityContext serializes");
    let over = serde_json::to_value(user).expect("a SecurityContext serializes");
    if let (Some(m), Some(o)) = (merged.as_object_mut(), over.as_object()) {
        for (k, v) in o {
            match (m.get_mut(k), v) {
                (Some(Value::Object(d)), Value::Object(u)) => {
                    for (kk, vv) in u {
                        d.insert(kk.clone(), vv.clone());
                    }
                }
                _ => {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
    }
    serde_json::from_value(merged).expect("a merged SecurityContext deserializes")
}

/// The agent as a native sidecar: an init container with `restartPolicy: Always`.
pub fn sidecar(ts: &TableSnap, data: &DataVolume) -> Container {
    let spec = &ts.spec;
    let port = spec.http_port();
    let mut env = vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "TMPDIR".into(),
            value: Some(SCRATCH_PATH.into()),
            ..Default::default()
        },
    ];
    if let (CredentialsMode::Secret, Some(secret)) =
        (spec.credentials.mode, &spec.credentials.secret_ref)
    {
        env.push(env_from_secret(
            "AWS_ACCESS_KEY_ID",
            &secret.name,
            &secret.access_key_id_key,
        ));
        env.push(env_from_secret(
            "AWS_SECRET_ACCESS_KEY",
            &secret.name,
            &secret.secret_access_key_key,
        ));
        if let Some(key) = &secret.session_token_key {
            env.push(env_from_secret("AWS_SESSION_TOKEN", &secret.name, key));
        }
    }
    let resources = spec
        .agent
        .resources
        .clone()
        .unwrap_or_else(default_resources);
    let security_context = security_context(spec.agent.security_context.as_ref());
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(
            spec.agent
                .image
                .clone()
                .unwrap_or_else(|| DEFAULT_AGENT_IMAGE.into()),
        ),
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
        volume_mounts: Some(volume_mounts(ts, data)),
        ..Default::default()
    }
}

/// The sidecar's mounts: the data volume (read-only unless the agent deletes what it shipped),
/// the scratch volume, and with `commitlogArchive` the archive directory of the data volume,
/// writable, over the read-only mount (the kubelet creates a missing `subPath` directory).
fn volume_mounts(ts: &TableSnap, data: &DataVolume) -> Vec<VolumeMount> {
    let spec = &ts.spec;
    let mut mounts = vec![
        VolumeMount {
            name: data.volume.clone(),
            mount_path: data.mount_path.clone(),
            read_only: Some(!spec.delete_on_backup),
            ..Default::default()
        },
        VolumeMount {
            name: SCRATCH_VOLUME.into(),
            mount_path: SCRATCH_PATH.into(),
            ..Default::default()
        },
    ];
    if let Some(cl) = &spec.commitlog_archive
        && !spec.delete_on_backup
    {
        mounts.push(VolumeMount {
            name: data.volume.clone(),
            mount_path: under(&data.mount_path, cl.directory()),
            sub_path: Some(cl.directory().into()),
            // Writable is the default, and the API server stores no `readOnly: false`.
            read_only: None,
            ..Default::default()
        });
    }
    mounts
}

/// The scratch volume entry.
pub fn scratch_volume() -> Value {
    json!({"name": SCRATCH_VOLUME, "emptyDir": {}})
}

/// A short stable hash of the rendered sidecar and volume: changes exactly when the pods must roll.
pub fn config_hash(container: &Container) -> String {
    config_hash_with(container, &[])
}

/// [`config_hash`] with the pull secrets the template gets (none: the same hash as before).
pub fn config_hash_with(container: &Container, pull_secrets: &[LocalObjectReference]) -> String {
    let mut doc = json!({"container": container, "volume": scratch_volume()});
    if !pull_secrets.is_empty() {
        doc["imagePullSecrets"] = json!(pull_secrets);
    }
    let bytes = serde_json::to_vec(&doc).expect("a container serializes");
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
pub fn apply_body(
    ts: &TableSnap,
    kind: TargetKind,
    name: &str,
    container_name: &str,
    data: &DataVolume,
) -> Value {
    let sidecar = sidecar(ts, data);
    let pull_secrets = &ts.spec.agent.image_pull_secrets;
    let hash = config_hash_with(&sidecar, pull_secrets);
    let metadata = json!({"annotations": {HASH_ANNOTATION: hash, OWNER_ANNOTATION: ts.name_any()}});
    let mut pod_spec = json!({"initContainers": [sidecar], "volumes": [scratch_volume()]});
    if !pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = json!(pull_secrets);
    }
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
/// Like the server's, the result lists our field manager in `metadata.managedFields`.
pub fn merged(live: &Value, body: &Value) -> Value {
    let mut out = merge(live, body);
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        let entries = meta.entry("managedFields").or_insert_with(|| json!([]));
        if let Some(list) = entries.as_array_mut()
            && !list.iter().any(|m| m["manager"] == FIELD_MANAGER)
        {
            list.push(json!({"manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": body["apiVersion"], "fieldsType": "FieldsV1", "fieldsV1": {}}));
        }
    }
    out
}

fn merge(live: &Value, body: &Value) -> Value {
    match (live, body) {
        (Value::Object(l), Value::Object(b)) => {
            let mut out = l.clone();
            for (k, bv) in b {
                let nv = match (l.get(k), bv) {
                    (Some(Value::Array(la)), Value::Array(ba))
                        if ["containers", "initContainers", "volumes"].contains(&k.as_str()) =>
                    {
                        let mut items = la.clone();
                        for item in ba {
                            match items.iter_mut().find(|i| i.get("name") == item.get("name")) {
                                Some(existing) => *existing = merge(existing, item),
                                None => items.push(item.clone()),
                            }
                        }
                        Value::Array(items)
                    }
                    (Some(lv), _) => merge(lv, bv),
                    (None, _) => bv.clone(),
                };
                out.insert(k.clone(), nv);
            }
            Value::Object(out)
        }
        (_, b) => b.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    fn data() -> DataVolume {
        DataVolume {
            volume: "data".into(),
            mount_path: "/bitnami/cassandra".into(),
        }
    }

    #[test]
    fn the_commit_log_archive_is_mounted_writable_over_the_read_only_data() {
        let ts = samples::tablesnap_point_in_time();
        let c = sidecar(&ts, &data());
        let mounts = c.volume_mounts.unwrap();
        assert_eq!(mounts[0].read_only, Some(true), "the data stays read-only");
        let archive = mounts
            .iter()
            .find(|m| m.mount_path == "/bitnami/cassandra/commitlog_archive")
            .expect("the archive is mounted");
        assert_eq!(
            (
                archive.name.as_str(),
                archive.sub_path.as_deref(),
                archive.read_only
            ),
            ("data", Some("commitlog_archive"), None)
        );
        let args = c.args.unwrap().join(" ");
        assert!(
            args.contains("--commitlog-archive /bitnami/cassandra/commitlog_archive --commitlog-dir /bitnami/cassandra/commitlog --commitlog-spool-max 4096"),
            "{args}"
        );
        assert_eq!(
            archive_command(&ts, &data()).as_deref(),
            Some("archive_command=/bin/ln %path /bitnami/cassandra/commitlog_archive/%name")
        );
        assert_eq!(archive_command(&samples::tablesnap(), &data()), None);
        // Without it: neither the flags nor the mount.
        let plain = sidecar(&samples::tablesnap(), &data());
        assert_eq!(plain.volume_mounts.unwrap().len(), 2);
        assert!(
            !plain
                .args
                .unwrap()
                .iter()
                .any(|a| a.starts_with("--commitlog"))
        );
        // Another directory, relative to the mount; a writable data mount needs no second one.
        let mut other = ts.clone();
        other.spec.commitlog_archive.as_mut().unwrap().directory = Some("cl/archive".into());
        other.spec.delete_on_backup = true;
        let c = sidecar(&other, &data());
        assert_eq!(c.volume_mounts.unwrap().len(), 2);
        assert!(
            c.args
                .unwrap()
                .iter()
                .any(|a| a == "/bitnami/cassandra/cl/archive")
        );
        assert_ne!(
            config_hash(&sidecar(&ts, &data())),
            config_hash(&sidecar(&samples::tablesnap(), &data())),
            "turning archiving on rolls the pods"
        );
    }

    #[test]
    fn default_args_match_the_agent_cli() {
        let args = agent_args(&samples::tablesnap(), &data());
        assert_eq!(
            args,
            [
                "--name",
                "$(POD_NAME)",
                "--mode",
                "cassandra",
                "--wait-for-bucket",
                "--http-listen",
                "0.0.0.0:9090",
                "--log-format",
                "json",
                "--staging-dir",
                "/var/tmp/tablesnap/staging",
                "--prefix",
                "prod",
                "--aws-region",
                "eu-west-1",
                "--recursive",
                "--auto-add",
                "--backup",
                "cassandra-backups",
                "/bitnami/cassandra",
            ]
        );
    }

    /// Review 14: with no prefix, two clusters whose pods are both `cassandra-0` (in different
    /// namespaces) wrote the same keys into a shared bucket.
    #[test]
    fn the_default_prefix_is_the_namespace() {
        let prefix_of = |prefix: Option<&str>| {
            let mut ts = samples::tablesnap();
            ts.spec.prefix = prefix.map(Into::into);
            let args = agent_args(&ts, &data());
            args.iter()
                .position(|a| a == "--prefix")
                .map(|i| args[i + 1].clone())
        };
        let ns = samples::tablesnap().namespace().unwrap();
        // Keys are {prefix}{name}{separator}{path}: the slash keeps the namespace apart.
        assert_eq!(prefix_of(None), Some(format!("{ns}/")));
        assert_eq!(prefix_of(Some("")), None, "an empty prefix is no prefix");
        assert_eq!(prefix_of(Some("prod")).as_deref(), Some("prod"));
    }

    #[test]
    fn every_option_becomes_its_flag() {
        let mut ts = samples::tablesnap_all_options();
        ts.spec.paths = vec!["/a".into(), "/b".into()];
        ts.spec.max_upload_size = Some(1024);
        ts.spec.keyname_separator = Some("|".into());
        ts.spec.without_index = true;
        ts.spec.virtual_hosted_style = true;
        let args = agent_args(&ts, &data()).join(" ");
        for expected in [
            "--mode generic",
            "--http-listen 0.0.0.0:9191",
            "--endpoint-url https://s3.example.internal",
            "--storage-class STANDARD_IA",
            "--sse-kms-key-id alias/cassandra",
            "--max-upload-size 1024",
            "--multipart-chunk-size 64",
            "--checksum crc64nvme",
            "--threads 8",
            "--keyname-separator |",
            "--virtual-hosted-style",
            "--without-index",
            "--delete-on-backup",
            "--with-sse",
            "--listen-events IN_MOVED_TO --listen-events IN_CLOSE_WRITE",
            "--include=.*-Data\\.db$",
        ] {
            assert!(args.contains(expected), "{expected:?} missing from {args}");
        }
        assert!(args.ends_with("cassandra-backups /a /b"), "{args}");
        assert!(
            !args.contains("--staging-dir"),
            "generic mode needs no staging dir: {args}"
        );
        assert!(
            !args.contains("--aws-key") && !args.contains("--aws-secret"),
            "credentials never on the command line"
        );
    }

    #[test]
    fn sidecar_is_native_read_only_and_has_liveness_but_no_readiness() {
        let c = sidecar(&samples::tablesnap(), &data());
        assert_eq!(c.restart_policy.as_deref(), Some("Always"));
        assert!(c.readiness_probe.is_none());
        let probe = c.liveness_probe.unwrap().http_get.unwrap();
        assert_eq!(
            (probe.path.as_deref(), probe.port),
            (Some("/healthz"), IntOrString::Int(9090))
        );
        let mounts = c.volume_mounts.unwrap();
        assert_eq!(
            (
                mounts[0].name.as_str(),
                mounts[0].mount_path.as_str(),
                mounts[0].read_only
            ),
            ("data", "/bitnami/cassandra", Some(true))
        );
        assert_eq!(mounts[1].name, SCRATCH_VOLUME);
        let sc = c.security_context.unwrap();
        assert_eq!(
            (
                sc.run_as_non_root,
                sc.read_only_root_filesystem,
                sc.allow_privilege_escalation
            ),
            (Some(true), Some(true), Some(false))
        );
        let env = c.env.unwrap();
        let pod_name = env.iter().find(|e| e.name == "POD_NAME").unwrap();
        assert_eq!(
            pod_name
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
        let key = env
            .iter()
            .find(|e| e.name == "AWS_SECRET_ACCESS_KEY")
            .unwrap();
        let sel = key
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("s3-credentials", "AWS_SECRET_ACCESS_KEY")
        );
    }

    #[test]
    fn delete_on_backup_mounts_writable_and_service_account_mode_has_no_secret_env() {
        let c = sidecar(&samples::tablesnap_all_options(), &data());
        assert_eq!(c.volume_mounts.unwrap()[0].read_only, Some(false));
        assert!(c.env.unwrap().iter().all(|e| !e.name.starts_with("AWS_")));
        assert_eq!(
            c.image.as_deref(),
            Some("registry.example.internal/tablesnap:dev")
        );
    }

    #[test]
    fn hash_changes_with_the_spec_only() {
        let ts = samples::tablesnap();
        let a = config_hash(&sidecar(&ts, &data()));
        assert_eq!(a, config_hash(&sidecar(&ts, &data())));
        let mut changed = ts.clone();
        changed.spec.prefix = Some("other".into());
        assert_ne!(a, config_hash(&sidecar(&changed, &data())));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn statefulset_body_touches_only_our_fields() {
        let body = apply_body(
            &samples::tablesnap(),
            TargetKind::StatefulSet,
            "cassandra",
            "cassandra",
            &data(),
        );
        assert_eq!(body["apiVersion"], "apps/v1");
        assert_eq!(
            body["metadata"],
            json!({"name": "cassandra", "namespace": "cassandra"})
        );
        let template = &body["spec"]["template"];
        assert_eq!(
            body["spec"].as_object().unwrap().len(),
            1,
            "only spec.template"
        );
        assert_eq!(
            template["metadata"]["annotations"][OWNER_ANNOTATION],
            "nightly"
        );
        assert_eq!(
            template["metadata"]["annotations"][HASH_ANNOTATION].as_str(),
            body_hash(&body)
        );
        assert_eq!(
            template["spec"]["initContainers"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            template["spec"]["volumes"],
            json!([{"name": SCRATCH_VOLUME, "emptyDir": {}}])
        );
        assert!(
            template["spec"].get("containers").is_none(),
            "a StatefulSet's containers are not ours"
        );
        assert!(body["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn datacenter_body_has_the_name_only_cassandra_placeholder() {
        let data = DataVolume {
            volume: "server-data".into(),
            mount_path: "/var/lib/cassandra".into(),
        };
        let body = apply_body(
            &samples::tablesnap(),
            TargetKind::CassandraDatacenter,
            "dc1",
            "cassandra",
            &data,
        );
        assert_eq!(body["apiVersion"], "cassandra.datastax.com/v1beta1");
        let pts = &body["spec"]["podTemplateSpec"];
        assert_eq!(pts["spec"]["containers"], json!([{"name": "cassandra"}]));
        assert_eq!(pts["spec"]["initContainers"][0]["name"], SIDECAR_NAME);
        assert!(body_hash(&body).is_some());
    }

    #[test]
    fn removal_body_has_no_fields() {
        assert_eq!(
            removal_body(TargetKind::StatefulSet, "s", "ns"),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "namespace": "ns"}})
        );
    }

    #[test]
    fn merge_keys_lists_by_name() {
        let live = json!({"spec": {"volumes": [{"name": "a", "emptyDir": {}}], "x": 1}});
        let body = json!({"spec": {"volumes": [{"name": "b", "emptyDir": {}}, {"name": "a", "hostPath": {"path": "/"}}]}});
        assert_eq!(
            merged(&live, &body),
            json!({"spec": {"x": 1, "volumes": [{"name": "a", "emptyDir": {}, "hostPath": {"path": "/"}}, {"name": "b", "emptyDir": {}}]}})
        );
    }

    /// Issue 13 (mutation testing): staging goes to the scratch volume only in cassandra mode with
    /// the data mounted read-only (without `deleteOnBackup`); generic mode stages nothing.
    #[test]
    fn only_cassandra_mode_on_read_only_data_stages_in_scratch() {
        let staging = |mode: Mode, delete: bool| {
            let mut ts = samples::tablesnap();
            ts.spec.mode = mode;
            ts.spec.delete_on_backup = delete;
            agent_args(&ts, &data()).contains(&"--staging-dir".to_string())
        };
        assert!(staging(Mode::Cassandra, false));
        assert!(!staging(Mode::Cassandra, true));
        assert!(!staging(Mode::Generic, false));
        assert!(!staging(Mode::Generic, true));
    }

    /// Issue 13 (mutation testing): what the sidecar is made of when the spec leaves it to the
    /// operator: Guaranteed resources (requests equal to limits), the restricted-compliant
    /// security context, the HTTP port, the liveness probe's timing, the pull policy given.
    #[test]
    fn the_sidecars_defaults_are_complete() {
        let both = BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".into())),
            ("memory".to_owned(), Quantity("256Mi".into())),
        ]);
        let r = default_resources();
        assert_eq!(
            (r.requests.as_ref(), r.limits.as_ref()),
            (Some(&both), Some(&both))
        );
        let mut ts = samples::tablesnap();
        ts.spec.agent.image_pull_policy = Some("Always".into());
        let c = sidecar(&ts, &data());
        assert_eq!(c.resources, Some(default_resources()));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        let port = ts.spec.http_port();
        assert_eq!(
            serde_json::to_value(&c.ports).unwrap(),
            json!([{"name": "tablesnap-http", "containerPort": port, "protocol": "TCP"}])
        );
        let p = c.liveness_probe.unwrap();
        assert_eq!(
            (
                p.initial_delay_seconds,
                p.period_seconds,
                p.timeout_seconds,
                p.failure_threshold
            ),
            (Some(10), Some(20), Some(5), Some(6))
        );
        let sc = serde_json::to_value(c.security_context.unwrap()).unwrap();
        assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
        assert_eq!(sc["seccompProfile"], json!({"type": "RuntimeDefault"}));
    }

    /// Issue 13 (mutation testing): a user's security context is merged field by field, and
    /// inside a field that is an object too: adding a capability keeps `drop: [ALL]`.
    #[test]
    fn a_security_context_override_merges_inside_objects() {
        let user: SecurityContext = serde_json::from_value(
            json!({"runAsUser": 999, "capabilities": {"add": ["NET_BIND_SERVICE"]}}),
        )
        .unwrap();
        let sc = serde_json::to_value(security_context(Some(&user))).unwrap();
        assert_eq!(
            sc["capabilities"],
            json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]})
        );
        assert_eq!(
            (sc["runAsUser"].clone(), sc["runAsNonRoot"].clone()),
            (json!(999), json!(true))
        );
    }

    /// Issue 13 (mutation testing): the data is mounted read-only, writable only with
    /// `deleteOnBackup`, both said explicitly.
    #[test]
    fn the_data_mount_is_read_only_unless_the_agent_deletes() {
        let read_only = |delete: bool| {
            let mut ts = samples::tablesnap();
            ts.spec.delete_on_backup = delete;
            sidecar(&ts, &data()).volume_mounts.unwrap()[0].read_only
        };
        assert_eq!(
            (read_only(false), read_only(true)),
            (Some(true), Some(false))
        );
    }

    /// Issue 13 (mutation testing): without pull secrets the hash is the one of the sidecar and the
    /// scratch volume alone (pods made before pull secrets existed do not roll), and the apply
    /// body names no `imagePullSecrets` (an empty list would claim the field); with them both do.
    #[test]
    fn pull_secrets_enter_the_hash_and_the_body_only_when_there_are_some() {
        let ts = samples::tablesnap();
        let c = sidecar(&ts, &data());
        let hash =
            |doc: Value| hex::encode(&Sha256::digest(serde_json::to_vec(&doc).unwrap())[..8]);
        assert_eq!(
            config_hash_with(&c, &[]),
            hash(json!({"container": c, "volume": scratch_volume()}))
        );
        let secrets = vec![LocalObjectReference { name: "reg".into() }];
        assert_eq!(
            config_hash_with(&c, &secrets),
            hash(json!({"container": c, "volume": scratch_volume(), "imagePullSecrets": secrets}))
        );
        let body = apply_body(&ts, TargetKind::StatefulSet, "cass", "cassandra", &data());
        assert_eq!(body.pointer("/spec/template/spec/imagePullSecrets"), None);
        let mut ts = ts;
        ts.spec.agent.image_pull_secrets = secrets.clone();
        let body = apply_body(&ts, TargetKind::StatefulSet, "cass", "cassandra", &data());
        assert_eq!(
            body.pointer("/spec/template/spec/imagePullSecrets"),
            Some(&json!(secrets))
        );
    }

    /// Issue 13 (mutation testing): the preview lists our field manager once, added or already
    /// there, and lists other than containers, init containers and volumes are replaced whole.
    #[test]
    fn the_preview_names_our_manager_once_and_replaces_other_lists() {
        let ours = |v: &Value| {
            v["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["manager"] == FIELD_MANAGER)
                .count()
        };
        let body =
            json!({"apiVersion": "apps/v1", "metadata": {"name": "x"}, "spec": {"args": ["c"]}});
        let live = json!({"metadata": {"name": "x", "managedFields": [{"manager": "kubectl"}]}, "spec": {"args": ["a", "b"]}});
        let once = merged(&live, &body);
        assert_eq!(ours(&once), 1);
        assert_eq!(
            once["metadata"]["managedFields"].as_array().unwrap().len(),
            2
        );
        assert_eq!(ours(&merged(&once, &body)), 1);
        assert_eq!(once["spec"]["args"], json!(["c"]));
    }
}
