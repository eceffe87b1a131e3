//! The `TableSnap` custom resource: what to back up (the agent's flags), which Cassandra objects get
//! the sidecar, and the status the operator reports. Validation runs at the API server as CEL rules.

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The image the sidecar runs unless `spec.agent.image` says otherwise.
pub const DEFAULT_AGENT_IMAGE: &str = "ghcr.io/tablesnap/tablesnap:0.1.0";
/// The port of the agent's `/healthz` and `/metrics` endpoint unless `spec.agent.httpPort` says otherwise.
pub const DEFAULT_AGENT_PORT: i32 = 9090;

/// An http(s) URL with a host (a name, an IPv4 address or a bracketed IPv6 one) and an optional
/// port up to 65535: what the agent's URL parser accepts as `--endpoint-url`.
const ENDPOINT_RULE: &str = concat!(
    r"self.matches('^https?://([^/?#@]*@)?([A-Za-z0-9._~-]+|\\[[0-9A-Fa-f:.]+\\])",
    r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?#].*)?$')"
);
/// Every entry compiles as a regular expression: `matches` with an invalid pattern is an
/// evaluation error, which refuses the object with the rule's message. The API server's RE2 also
/// takes `\Q...\E` quoting, which the agent's regex crate does not.
const REGEX_LIST_RULE: &str =
    r"self.all(r, !r.contains('\\Q') && (''.matches(r) || !''.matches(r)))";

/// A relative path whose components never start with `.` (so neither `.` nor `..`), one regular
/// expression with a bounded length: the API server refuses CEL rules whose estimated cost is over
/// its budget (a `split` and `exists` per component was 2.9 times over it).
const RELATIVE_PATH_RULE: &str =
    "self.matches('^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$')";

/// Desired state of a TableSnap: the bucket and agent flags, the targets, the agent container.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "tablesnap.io",
    version = "v1alpha1",
    kind = "TableSnap",
    namespaced,
    shortname = "tsnap",
    status = "TableSnapStatus",
    cel,
    printcolumn = r#"{"name":"Bucket","type":"string","jsonPath":".spec.bucket"}"#,
    printcolumn = r#"{"name":"Targets","type":"integer","jsonPath":".status.targetCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.include) && has(self.exclude))").message("set include or exclude, not both"))]
#[x_kube(validation = Rule::new("!has(self.sseKmsKeyId) || (has(self.withSse) && self.withSse)").message("sseKmsKeyId needs withSse: true"))]
pub struct TableSnapSpec {
    /// S3 bucket name, or `file:///dir` for a directory on a mounted volume.
    #[x_kube(validation = Rule::new("self.matches('^file:///.*[^/].*$') || self.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')").message("bucket must be an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens) or file:///absolute/dir"))]
    pub bucket: String,
    /// Key prefix inside the bucket (`--prefix`). Default: the TableSnap's namespace and `/`, so that two
    /// clusters whose pods have the same names (`cassandra-0`) in different namespaces keep
    /// their keys apart in a shared bucket; `""` for no prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// S3-compatible endpoint URL (`--endpoint-url`), e.g. for Garage, MinIO or Ceph RGW.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(ENDPOINT_RULE).message("endpoint must be an http:// or https:// URL with a host, e.g. http://garage:3900"))]
    pub endpoint: Option<String>,
    /// AWS region (`--aws-region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_-]+$')").message("region must be a region name such as eu-west-1 (letters, digits, '-' and '_')"))]
    pub region: Option<String>,
    /// Virtual-hosted-style addressing (`--virtual-hosted-style`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub virtual_hosted_style: bool,
    /// Directories to watch; default: the data volume's mount path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(p, p.startsWith('/'))").message("every path must be absolute"))]
    pub paths: Vec<String>,
    /// Watch subdirectories too (`--recursive`).
    #[serde(default = "yes")]
    pub recursive: bool,
    /// Watch directories created later (`--auto-add`).
    #[serde(default = "yes")]
    pub auto_add: bool,
    /// Upload files already present at start (`--backup`).
    #[serde(default = "yes")]
    pub backup_existing: bool,
    /// Only files whose path matches one of these regexes (`--include`); never with `exclude`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new(REGEX_LIST_RULE).message("include: every entry must be a valid regular expression (without \\Q...\\E quoting)"))]
    pub include: Option<Vec<String>>,
    /// Skip files whose path matches one of these regexes (`--exclude`); never with `include`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new(REGEX_LIST_RULE).message("exclude: every entry must be a valid regular expression (without \\Q...\\E quoting)"))]
    pub exclude: Option<Vec<String>>,
    /// inotify events that make a file ready in generic mode (`--listen-events`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen_events: Vec<ListenEvent>,
    /// Capture mode: `cassandra` waits for whole committed SSTables, `generic` uploads on events.
    #[serde(default)]
    pub mode: Mode,
    /// Largest file to upload, in MB (`--max-upload-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 5120").message("maxUploadSize must be between 1 and 5120 (MB), S3's single PUT limit"))]
    pub max_upload_size: Option<i64>,
    /// Multipart chunk size in MB (`--multipart-chunk-size`), within S3's limits 5..5120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 5 && self <= 5120").message("multipartChunkSize must be between 5 and 5120 (MB), S3's part size limits"))]
    pub multipart_chunk_size: Option<i64>,
    /// The checksum written with each object (`--checksum`); see [`Checksum`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    /// Upload threads (`--threads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 256").message("threads must be between 1 and 256"))]
    pub threads: Option<i64>,
    /// Separator between the agent name and the file path in keys (`--keyname-separator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self != ''").message("keynameSeparator must not be empty"))]
    pub keyname_separator: Option<String>,
    /// Do not write `-listdir.json` indexes (`--without-index`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub without_index: bool,
    /// Delete files in `backups/` directories once uploaded (`--delete-on-backup`); mounts the data writable.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_on_backup: bool,
    /// S3 storage class (`--storage-class`), e.g. STANDARD_IA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Z_]+$')").message("storageClass must be an S3 storage class such as STANDARD or STANDARD_IA"))]
    pub storage_class: Option<String>,
    /// Server-side encryption (`--with-sse`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub with_sse: bool,
    /// KMS key for server-side encryption (`--sse-kms-key-id`); needs `withSse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_kms_key_id: Option<String>,
    /// Which Cassandra objects get the sidecar.
    pub targets: Targets,
    /// Where the agent gets its S3 credentials.
    #[serde(default)]
    pub credentials: Credentials,
    /// The agent container: image, resources, security context.
    #[serde(default)]
    pub agent: AgentSpec,
    /// Point-in-time restore: ship the commit log segments Cassandra archives into a directory of
    /// the data volume (`archive_command=/bin/ln %path <mountPath>/<directory>/%name` in the
    /// image's `commitlog_archiving.properties`; see the README's "Point-in-time restore"). The
    /// sidecar mounts that directory writable and removes each segment once it is in the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitlog_archive: Option<CommitlogArchive>,
}

/// Where the commit log archive and the live commit log are, inside the data volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CommitlogArchive {
    /// The archive directory, relative to the data volume's mount (default `commitlog_archive`);
    /// it must be on the same volume as the commit log for `/bin/ln`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(RELATIVE_PATH_RULE).message("directory must be a relative path inside the data volume, without . or .."))]
    pub directory: Option<String>,
    /// Cassandra's live commitlog_directory, relative to the data volume's mount (default
    /// `commitlog`): the agent reads it to record which segments a restore needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(RELATIVE_PATH_RULE).message("commitlogDirectory must be a relative path inside the data volume, without . or .."))]
    pub commitlog_directory: Option<String>,
    /// Most MiB of segments the archive may hold on its own while the bucket is unreachable
    /// (`--commitlog-spool-max`, default 8192); beyond it the oldest are dropped and named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spoolMaxMb must be at least 1"))]
    pub spool_max_mb: Option<i64>,
}

impl CommitlogArchive {
    /// The archive directory relative to the mount.
    pub fn directory(&self) -> &str {
        self.directory.as_deref().unwrap_or("commitlog_archive")
    }

    /// The live commit log directory relative to the mount.
    pub fn commitlog_directory(&self) -> &str {
        self.commitlog_directory.as_deref().unwrap_or("commitlog")
    }
}

/// Events that make a file ready in generic mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenEvent {
    /// A file was moved into a watched directory.
    #[serde(rename = "IN_MOVED_TO")]
    MovedTo,
    /// A file opened for writing was closed.
    #[serde(rename = "IN_CLOSE_WRITE")]
    CloseWrite,
    /// A file was created.
    #[serde(rename = "IN_CREATE")]
    Create,
}

impl ListenEvent {
    /// The agent's spelling of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenEvent::MovedTo => "IN_MOVED_TO",
            ListenEvent::CloseWrite => "IN_CLOSE_WRITE",
            ListenEvent::Create => "IN_CREATE",
        }
    }
}

/// How each object's content is proven (`--checksum`): `md5` (the default) writes the Python
/// tool's `md5sum` metadata; `crc64nvme` fills S3's full-object checksum field instead, about 100
/// times cheaper to compute, with no `md5sum` (needs AWS S3 or a server that supports it).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    /// Hex MD5 in the `md5sum` metadata, as the Python tool writes.
    Md5,
    /// S3's full-object CRC64NVME checksum field.
    Crc64nvme,
}

impl Checksum {
    /// The agent's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Checksum::Md5 => "md5",
            Checksum::Crc64nvme => "crc64nvme",
        }
    }
}

/// The agent's capture mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Whole committed SSTables, then the index.
    #[default]
    Cassandra,
    /// Any file, when a listened event fires.
    Generic,
}

impl Mode {
    /// The agent's spelling of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cassandra => "cassandra",
            Mode::Generic => "generic",
        }
    }
}

/// Kinds of object the operator injects into.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum TargetKind {
    /// A plain `apps/v1` StatefulSet (Bitnami chart, hand written, ...).
    StatefulSet,
    /// A cass-operator `cassandra.datastax.com/v1beta1` CassandraDatacenter.
    CassandraDatacenter,
}

impl TargetKind {
    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::CassandraDatacenter => "CassandraDatacenter",
        }
    }
}

/// Which objects in the TableSnap's namespace get the sidecar: a label selector or one name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.selector) != has(self.name)").message("set exactly one of targets.selector and targets.name"))]
#[x_kube(validation = Rule::new("!has(self.name) || has(self.kind)").message("targets.name needs targets.kind (StatefulSet or CassandraDatacenter)"))]
pub struct Targets {
    /// Label selector over StatefulSets and CassandraDatacenters of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The name of one target (with `kind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Restrict to one kind; required with `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TargetKind>,
    /// The Cassandra container's name in the pod template.
    #[serde(default = "default_container")]
    pub container: String,
    /// Override: the volume holding Cassandra's data, for unusual layouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<String>,
    /// Override: where that volume is mounted in the Cassandra container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("dataPath must be an absolute path"))]
    pub data_path: Option<String>,
}

/// How the agent authenticates to S3.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Secret' || has(self.secretRef)").message("credentials.mode Secret needs credentials.secretRef"))]
#[x_kube(validation = Rule::new("self.mode == 'Secret' || !has(self.secretRef)").message("credentials.secretRef is only used with credentials.mode Secret"))]
pub struct Credentials {
    /// `ServiceAccount` (IRSA, EKS Pod Identity, instance profile) or `Secret`.
    #[serde(default)]
    pub mode: CredentialsMode,
    /// The Secret with the keys; the operator never reads it, the kubelet does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// Where credentials come from.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CredentialsMode {
    /// The pod's service account and the AWS credential chain.
    #[default]
    ServiceAccount,
    /// Environment variables from a Secret.
    Secret,
}

/// A Secret in the TableSnap's namespace and the key names in it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    #[x_kube(validation = Rule::new("self != ''").message("secretRef.name must not be empty"))]
    pub name: String,
    /// Key of the access key id.
    #[serde(default = "default_access_key")]
    pub access_key_id_key: String,
    /// Key of the secret access key.
    #[serde(default = "default_secret_key")]
    pub secret_access_key_key: String,
    /// Key of a session token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_key: Option<String>,
}

/// Overrides for the sidecar container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Image of the agent; default the release's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull policy of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Pull secrets for the agent's image, added to the pod template beside the pods' own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Resources; default requests = limits = 100m CPU / 256Mi, so a Guaranteed pod stays Guaranteed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Security context, merged field by field over the defaults: non-root, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Port of `/healthz` and `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("httpPort must be a port number 1..65535"))]
    pub http_port: Option<i32>,
    /// Log format of the agent: `text` or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'text' || self == 'json'").message("logFormat must be text or json"))]
    pub log_format: Option<String>,
}

/// What the operator observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TableSnapStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of targets selected.
    #[serde(default)]
    pub target_count: i32,
    /// Ready, TargetsResolved, Injected, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One entry per selected target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// The agent configuration whose pre-flight pod passed (its hash); a new configuration is
    /// checked again before any pod template changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight_passed: Option<String>,
}

/// The state of one target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// StatefulSet or CassandraDatacenter.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// The data volume the agent mounts, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Its mount path, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Whether the sidecar is applied to this target.
    #[serde(default)]
    pub injected: bool,
    /// Pods of the target whose agent container is running.
    #[serde(default)]
    pub pods_ready: i32,
    /// Pods of the target: those that exist and those its StatefulSets want that do not (being
    /// recreated, or refused; named in `unprotected`).
    #[serde(default)]
    pub pods_total: i32,
    /// Pods whose agent says it ships: the bucket check passed, its loops turn, and nothing has
    /// waited longer than the operator's limit (its `/status` report).
    #[serde(default)]
    pub pods_protected: i32,
    /// The oldest recovery point among the target's pods (RFC 3339): every file any of its
    /// agents saw before this moment is in the bucket. Absent until every pod reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_recovery_point: Option<String>,
    /// Pods not protected, with why (at most a few, for a person).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unprotected: Vec<String>,
    /// With `commitlogArchive`: the start of the window in which every pod of the target can be
    /// restored to any moment (RFC 3339), as their agents report it (the latest start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable_window_start: Option<String>,
    /// Its end: the last archived write every pod has shipped (the earliest end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable_window_end: Option<String>,
    /// With `commitlogArchive`: the line the target's Cassandra needs in its
    /// `commitlog_archiving.properties` (on its classpath) for the agent to have segments to ship.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_command: Option<String>,
    /// Why the target is not injected, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A sentence for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl TableSnapSpec {
    /// The agent port in effect.
    pub fn http_port(&self) -> i32 {
        self.agent.http_port.unwrap_or(DEFAULT_AGENT_PORT)
    }
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_container() -> String {
    "cassandra".to_owned()
}

fn default_access_key() -> String {
    "AWS_ACCESS_KEY_ID".to_owned()
}

fn default_secret_key() -> String {
    "AWS_SECRET_ACCESS_KEY".to_owned()
}

/// The CRD as YAML, exactly what `crdgen` writes to `crds/tablesnap.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&TableSnap::crd()).expect("the CRD serializes to YAML");
    format!("# Generated by `cargo run -p tablesnap-operator --bin crdgen`; do not edit.\n{yaml}")
}

/// Where the generated CRD is committed, relative to the repository root.
pub const CRD_FILES: [&str; 3] = [
    "crds/tablesnap.yaml",
    "charts/tablesnap/crds/tablesnap.yaml",
    "deploy/crd.yaml",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn base() -> Value {
        json!({
            "apiVersion": "tablesnap.io/v1alpha1",
            "kind": "TableSnap",
            "metadata": {"name": "t", "namespace": "ns"},
            "spec": {"bucket": "backups", "targets": {"selector": {"matchLabels": {"app": "cassandra"}}}}
        })
    }

    fn with(pointer_path: &[&str], value: Value) -> TableSnap {
        let mut doc = base();
        let mut at = &mut doc["spec"];
        for key in &pointer_path[..pointer_path.len() - 1] {
            at = &mut at[*key];
        }
        at[pointer_path[pointer_path.len() - 1]] = value;
        serde_json::from_value(doc).expect("test object deserializes")
    }

    fn rejected_with(ts: &TableSnap, message: &str) {
        let err = ts
            .validate_cel()
            .expect_err("CEL rules must reject this object");
        assert!(
            err.to_string().contains(message),
            "expected {message:?} in {err}"
        );
    }

    #[test]
    fn commitlog_archive_paths_stay_inside_the_volume() {
        let ok = with(
            &["commitlogArchive"],
            json!({"directory": "cl/archive", "spoolMaxMb": 10}),
        );
        ok.validate_cel().expect("valid");
        let cl = ok.spec.commitlog_archive.as_ref().unwrap();
        assert_eq!(
            (cl.directory(), cl.commitlog_directory()),
            ("cl/archive", "commitlog")
        );
        for bad in ["/abs", "../up", "a/../b", "a//b", "./a", ""] {
            rejected_with(
                &with(&["commitlogArchive", "directory"], json!(bad)),
                "directory must be a relative path inside the data volume",
            );
        }
        rejected_with(
            &with(&["commitlogArchive", "commitlogDirectory"], json!("..")),
            "commitlogDirectory must be a relative path",
        );
        rejected_with(
            &with(&["commitlogArchive", "spoolMaxMb"], json!(0)),
            "spoolMaxMb must be at least 1",
        );
    }

    #[test]
    fn base_object_is_accepted_and_defaults_apply() {
        let ts: TableSnap = serde_json::from_value(base()).unwrap();
        ts.validate_cel().expect("valid object");
        assert_eq!(ts.spec.mode, Mode::Cassandra);
        assert_eq!(ts.spec.targets.container, "cassandra");
        assert!(ts.spec.recursive && ts.spec.auto_add && ts.spec.backup_existing);
        assert_eq!(ts.spec.credentials.mode, CredentialsMode::ServiceAccount);
    }

    #[test]
    fn include_xor_exclude() {
        let mut ts = with(&["include"], json!(["a"]));
        ts.validate_cel().expect("include alone is fine");
        ts.spec.exclude = Some(vec!["b".into()]);
        rejected_with(&ts, "set include or exclude, not both");
        with(&["exclude"], json!(["b"]))
            .validate_cel()
            .expect("exclude alone is fine");
    }

    #[test]
    fn bucket_name_or_file_url() {
        for ok in ["my-bucket", "a.b.c", "file:///backups"] {
            with(&["bucket"], json!(ok))
                .validate_cel()
                .unwrap_or_else(|e| panic!("{ok} rejected: {e}"));
        }
        for bad in ["My_Bucket", "ab", "s3://bucket", "file://relative"] {
            rejected_with(
                &with(&["bucket"], json!(bad)),
                "bucket must be an S3 bucket name",
            );
        }
    }

    #[test]
    fn chunk_size_within_s3_limits() {
        for ok in [5, 64, 5120] {
            with(&["multipartChunkSize"], json!(ok))
                .validate_cel()
                .expect("within limits");
        }
        for bad in [4, 5121] {
            rejected_with(
                &with(&["multipartChunkSize"], json!(bad)),
                "multipartChunkSize must be between 5 and 5120",
            );
        }
    }

    #[test]
    fn paths_and_data_path_absolute() {
        with(&["paths"], json!(["/var/lib/cassandra/data"]))
            .validate_cel()
            .expect("absolute");
        rejected_with(
            &with(&["paths"], json!(["/ok", "data"])),
            "every path must be absolute",
        );
        with(&["targets", "dataPath"], json!("/data"))
            .validate_cel()
            .expect("absolute");
        rejected_with(
            &with(&["targets", "dataPath"], json!("data")),
            "dataPath must be an absolute path",
        );
    }

    #[test]
    fn secret_reference_with_secret_mode_only() {
        with(
            &["credentials"],
            json!({"mode": "Secret", "secretRef": {"name": "s3"}}),
        )
        .validate_cel()
        .expect("secret with ref");
        rejected_with(
            &with(&["credentials"], json!({"mode": "Secret"})),
            "credentials.mode Secret needs credentials.secretRef",
        );
        rejected_with(
            &with(
                &["credentials"],
                json!({"mode": "ServiceAccount", "secretRef": {"name": "s3"}}),
            ),
            "only used with credentials.mode Secret",
        );
        rejected_with(
            &with(
                &["credentials"],
                json!({"mode": "Secret", "secretRef": {"name": ""}}),
            ),
            "secretRef.name must not be empty",
        );
    }

    #[test]
    fn targets_selector_xor_name_and_name_needs_kind() {
        with(
            &["targets"],
            json!({"name": "dc1", "kind": "CassandraDatacenter"}),
        )
        .validate_cel()
        .expect("name with kind");
        rejected_with(
            &with(&["targets"], json!({})),
            "set exactly one of targets.selector and targets.name",
        );
        rejected_with(
            &with(
                &["targets"],
                json!({"name": "x", "kind": "StatefulSet", "selector": {}}),
            ),
            "set exactly one of targets.selector and targets.name",
        );
        rejected_with(
            &with(&["targets"], json!({"name": "dc1"})),
            "targets.name needs targets.kind",
        );
    }

    #[test]
    fn numeric_and_enumerated_fields() {
        with(&["threads"], json!(4))
            .validate_cel()
            .expect("threads");
        rejected_with(
            &with(&["threads"], json!(0)),
            "threads must be between 1 and 256",
        );
        with(&["maxUploadSize"], json!(1))
            .validate_cel()
            .expect("size");
        rejected_with(
            &with(&["maxUploadSize"], json!(0)),
            "maxUploadSize must be between 1 and 5120",
        );
        with(&["agent", "httpPort"], json!(8080))
            .validate_cel()
            .expect("port");
        rejected_with(
            &with(&["agent", "httpPort"], json!(70000)),
            "httpPort must be a port number",
        );
        with(&["agent", "logFormat"], json!("text"))
            .validate_cel()
            .expect("text");
        rejected_with(
            &with(&["agent", "logFormat"], json!("xml")),
            "logFormat must be text or json",
        );
        with(&["storageClass"], json!("STANDARD_IA"))
            .validate_cel()
            .expect("class");
        rejected_with(
            &with(&["storageClass"], json!("cold")),
            "storageClass must be an S3 storage class",
        );
        with(&["endpoint"], json!("http://garage:3900"))
            .validate_cel()
            .expect("url");
        rejected_with(
            &with(&["endpoint"], json!("garage:3900")),
            "endpoint must be an http",
        );
    }

    #[test]
    fn kms_key_needs_sse() {
        let mut ts = with(&["sseKmsKeyId"], json!("alias/k"));
        rejected_with(&ts, "sseKmsKeyId needs withSse");
        ts.spec.with_sse = true;
        ts.validate_cel().expect("with sse");
    }

    #[test]
    fn crd_has_printer_columns_status_and_short_name() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(TableSnap::crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Bucket", "Targets", "Ready", "Age"]);
        assert_eq!(version["subresources"]["status"], json!({}));
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["tsnap"]));
        assert_eq!(crd["spec"]["scope"], "Namespaced");
    }

    /// The committed CRD files must be what `crdgen --write` produces from the Rust types.
    #[test]
    fn committed_crd_files_match_the_types() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for rel in CRD_FILES {
            let committed =
                std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert!(
                committed == crd_yaml(),
                "{rel} is out of date: run `cargo run -p tablesnap-operator --bin crdgen -- --write`"
            );
        }
    }
}
