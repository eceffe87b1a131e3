//! Shared by the tests against a real kube-apiserver (`e2e/scripts/k8s.sh start` prints the
//! `TABLESNAP_KUBECONFIG` they read): a client, the CRDs installed, one namespace per test, and
//! waiting for a condition with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

/// The reconciler's context on `client`, as the operator builds it (events from the operator's
/// field manager).
pub fn context(client: &Client) -> std::sync::Arc<tablesnap_operator::apply::Context> {
    use kube::runtime::events::{Recorder, Reporter};
    std::sync::Arc::new(tablesnap_operator::apply::Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: tablesnap_operator::render::FIELD_MANAGER.into(),
                instance: Some("test".into()),
            },
        ),
        metrics: tablesnap_operator::metrics::Metrics::default(),
    })
}

/// The field manager the tests use for objects "another tool" owns.
pub const TEST_MANAGER: &str = "tablesnap-tests";

/// A client for the real API server named by `TABLESNAP_KUBECONFIG`. Without it the test says on
/// its own line that it was skipped, and fails when `TABLESNAP_REQUIRE_REAL=1` (the test script
/// sets it), so that a run that should have used the real server never passes silently.
pub async fn client(test: &str) -> Option<Client> {
    let Some(path) = std::env::var_os("TABLESNAP_KUBECONFIG") else {
        if std::env::var("TABLESNAP_REQUIRE_REAL").as_deref() == Ok("1") {
            panic!(
                "{test}: TABLESNAP_REQUIRE_REAL=1 but TABLESNAP_KUBECONFIG is not set; start the control plane with `eval \"$(e2e/scripts/k8s.sh start DIR)\"`"
            );
        }
        println!(
            "SKIPPED {test}: no real API server (set TABLESNAP_KUBECONFIG, see e2e/scripts/k8s.sh)"
        );
        return None;
    };
    tablesnap_operator::install_tls_provider();
    let kubeconfig = Kubeconfig::read_from(&path).expect("TABLESNAP_KUBECONFIG is a kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Some(Client::try_from(config).expect("a client"))
}

/// The repository root.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Poll `check` until it returns `Some`, up to `timeout`; panics naming `what` on the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Server-side apply a CRD (YAML text) and wait until it is Established.
pub async fn install_crd(client: &Client, yaml: &str) -> String {
    let crd: CustomResourceDefinition = serde_yaml::from_str(yaml).expect("a CRD");
    let name = crd.metadata.name.clone().expect("a named CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut body = serde_json::to_value(&crd).unwrap();
    body["apiVersion"] = json!("apiextensions.k8s.io/v1");
    body["kind"] = json!("CustomResourceDefinition");
    api.patch(
        &name,
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
    wait_for(
        &format!("CRD {name} Established"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .into_iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        },
    )
    .await;
    name
}

/// The TableSnap CRD from `crds/`, installed.
pub async fn install_tablesnap_crd(client: &Client) {
    let yaml = std::fs::read_to_string(repo_root().join("crds/tablesnap.yaml")).unwrap();
    install_crd(client, &yaml).await;
}

/// A fresh namespace for one test, named after it; deleted with [`drop_namespace`].
pub async fn namespace(client: &Client, test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let suffix = format!("{:x}{:x}", std::process::id(), nanos);
    let name: String = format!("{test}-{suffix}")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Delete a test's namespace (the namespace controller empties it in the background).
pub async fn drop_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await;
}

/// The error a refused request carries: code and message.
pub fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other}"),
    }
}

/// JSON of an object without the fields the server changes on every write.
pub fn stable(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// Server URL and CA (base64) of the kubeconfig in `TABLESNAP_KUBECONFIG`.
pub fn server_and_ca() -> (String, String) {
    let path = std::env::var_os("TABLESNAP_KUBECONFIG").expect("TABLESNAP_KUBECONFIG");
    let kc = Kubeconfig::read_from(path).unwrap();
    let cluster = kc.clusters[0].cluster.clone().unwrap();
    (
        cluster.server.unwrap(),
        cluster.certificate_authority_data.unwrap(),
    )
}

/// Mint a token for a ServiceAccount (TokenRequest) and write a kubeconfig that uses only it.
pub async fn token_kubeconfig(client: &Client, ns: &str, sa: &str, file: &std::path::Path) {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": 3600}
    });
    let minted: TokenRequest = api
        .create_subresource("token", sa, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{sa}: {e}"));
    let token = minted.status.expect("a minted token").token;
    let (server, ca) = server_and_ca();
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\", certificate-authority-data: \"{ca}\"}}}}]\nusers: [{{name: {sa}, user: {{token: \"{token}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: {sa}}}}}]\ncurrent-context: c\n"
    );
    std::fs::write(file, yaml).unwrap();
}

/// The operator binary as a child process; killed (SIGKILL) when dropped.
pub struct Operator {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
}

impl Operator {
    /// Start `tablesnap-operator` with this kubeconfig, watching one namespace, the lease there.
    pub fn start(
        kubeconfig: &std::path::Path,
        ns: &str,
        identity: &str,
        log: std::path::PathBuf,
    ) -> Operator {
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tablesnap-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env("WATCH_NAMESPACE", ns)
            .env("POD_NAMESPACE", ns)
            .env("POD_NAME", identity)
            .env("HTTP_LISTEN", "127.0.0.1:0")
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info,kube=warn")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the operator binary starts");
        Operator { child, log }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM: the graceful path (finish reconciles, release the lease).
    pub fn terminate(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request from the API server's audit log (`e2e/scripts/k8s.sh` logs ServiceAccounts').
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Audited {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub code: u16,
}

/// The requests `user` made, from `TABLESNAP_K8S_AUDIT_LOG`; `None` when there is no audit log
/// (a cluster not started by k8s.sh).
pub fn audited(user: &str) -> Option<Vec<Audited>> {
    let path = std::env::var_os("TABLESNAP_K8S_AUDIT_LOG")?;
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["user"]["username"] == user)
            .filter_map(|e| {
                let o = e.get("objectRef")?;
                let mut resource = o["resource"].as_str()?.to_owned();
                if let Some(sub) = o["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                Some(Audited {
                    verb: e["verb"].as_str()?.to_owned(),
                    group: o["apiGroup"].as_str().unwrap_or_default().to_owned(),
                    resource,
                    code: e["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
                })
            })
            .collect(),
    )
}

/// What a kubelet writes once a pod's containers and native sidecars started; with `ip`, the
/// pod's IP (where the operator asks its agent for its report).
pub async fn kubelet_runs(
    client: &Client,
    ns: &str,
    pod: &k8s_openapi::api::core::v1::Pod,
    ip: Option<&str>,
) {
    use kube::ResourceExt;
    let now = jiff::Timestamp::now().to_string();
    let spec = pod.spec.as_ref().unwrap();
    let running = |name: &str| json!({"name": name, "image": "x", "imageID": "", "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}});
    let init: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| running(&c.name))
        .collect();
    let main: Vec<_> = spec.containers.iter().map(|c| running(&c.name)).collect();
    let conditions: Vec<_> = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": now}))
        .collect();
    let mut status = json!({"phase": "Running", "startTime": now, "conditions": conditions, "initContainerStatuses": init, "containerStatuses": main});
    if let Some(ip) = ip {
        status["podIP"] = ip.into();
        status["podIPs"] = json!([{"ip": ip}]);
    }
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

/// A free TCP port on loopback.
pub fn free_port() -> i32 {
    i32::from(
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    )
}

/// The real agent (`tablesnap`, built next to this test binary) as a pod's sidecar would run it,
/// serving its report on `ip:port`; killed when dropped.
pub struct AgentProcess {
    pub child: std::process::Child,
    pub data: tempfile::TempDir,
    pub log: std::path::PathBuf,
}

impl AgentProcess {
    /// Start the agent watching a fresh directory with `store_args` (a bucket, or `file://...`,
    /// with any flags) and wait until its report is served.
    pub async fn start(ip: &str, port: i32, store_args: &[&str]) -> AgentProcess {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> -> target/<profile>/tablesnap
        let bin = exe.parent().unwrap().parent().unwrap().join("tablesnap");
        assert!(
            bin.exists(),
            "{} is missing: build the agent first (`cargo build --workspace`)",
            bin.display()
        );
        let data = tempfile::tempdir().unwrap();
        let log = data.path().with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let listen = format!("{ip}:{port}");
        let mut args = vec!["--http-listen", listen.as_str(), "--log-format", "json"];
        args.extend_from_slice(store_args);
        let child = std::process::Command::new(&bin)
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", "GKtest")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "garage")
            .arg(data.path())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the agent starts");
        let agent = AgentProcess { child, data, log };
        wait_for(
            &format!("the agent's report on {listen}"),
            Duration::from_secs(30),
            || async { std::net::TcpStream::connect(&listen).ok().map(|_| ()) },
        )
        .await;
        agent
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// What a kubelet writes for the operator's pre-flight pods when the image pulls and the env
/// resolves: the agent ran `--version` and exited 0.
pub async fn kubelet_passes_preflight(client: &Client, ns: &str) {
    use kube::ResourceExt;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let selector = kube::api::ListParams::default().labels(tablesnap_operator::preflight::LABEL);
    let Ok(list) = pods.list(&selector).await else {
        return;
    };
    for pod in list.items {
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded") {
            continue;
        }
        kubelet_finishes(client, ns, &pod.name_any(), 0).await;
    }
}

/// The kubelet's status of a pre-flight pod whose agent exited with `code`.
pub async fn kubelet_finishes(client: &Client, ns: &str, pod: &str, code: i32) {
    let now = jiff::Timestamp::now().to_string();
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let status = json!({"status": {"phase": phase, "startTime": now, "containerStatuses": [{
        "name": "tablesnap", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "started": false,
        "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": now, "finishedAt": now}}}]}});
    // The pod may be gone already (the operator deletes it once it passed).
    let _ = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(status))
        .await;
}

/// A kubelet for pre-flight pods in `ns`, in the background, for tests that run the operator as a
/// process; stops when dropped.
pub fn background_preflight_kubelet(client: &Client, ns: &str) -> Background {
    let (client, ns) = (client.clone(), ns.to_owned());
    Background(tokio::spawn(async move {
        loop {
            kubelet_passes_preflight(&client, &ns).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// A background task, aborted when dropped.
pub struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A client for a ServiceAccount `sa` in `ns` bound to `cluster-admin`: its requests are in the
/// audit log (which records ServiceAccounts only).
pub async fn admin_service_account(client: &Client, ns: &str, sa: &str) -> Client {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": sa}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-{sa}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    service_account_client(client, ns, sa).await
}

/// A client that authenticates as the existing ServiceAccount `sa` in `ns`, with only the rights
/// its bindings grant.
pub async fn service_account_client(client: &Client, ns: &str, sa: &str) -> Client {
    let file = tempfile::NamedTempFile::new().unwrap();
    token_kubeconfig(client, ns, sa, file.path()).await;
    let kubeconfig = Kubeconfig::read_from(file.path()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Drop what [`admin_service_account`] made that the namespace does not take with it.
pub async fn drop_admin_service_account(client: &Client, ns: &str, sa: &str) {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&format!("{ns}-{sa}"), &DeleteParams::default())
        .await;
}

/// Release the finalizer of TableSnap `nightly` in `ns` (no operator runs to honour it, or a
/// crippled one may not have), so that the namespace can go.
pub async fn release_finalizer(client: &Client, ns: &str) {
    let _ = Api::<tablesnap_operator::crd::TableSnap>::namespaced(client.clone(), ns)
        .patch(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
}

/// Reconciles the TableSnap "nightly" three times (the finalizer, the pre-flight pod, whose kubelet
/// the test plays, the apply) and returns its status.
pub async fn reconciled(client: &Client, ns: &str) -> tablesnap_operator::crd::TableSnapStatus {
    use tablesnap_operator::crd::TableSnap;
    let api: Api<TableSnap> = Api::namespaced(client.clone(), ns);
    let ctx = context(client);
    for _ in 0..3 {
        kubelet_passes_preflight(client, ns).await;
        let ts = api.get("nightly").await.unwrap();
        tablesnap_operator::apply::reconcile(std::sync::Arc::new(ts), ctx.clone())
            .await
            .unwrap();
    }
    api.get("nightly").await.unwrap().status.unwrap_or_default()
}

/// A ValidatingAdmissionPolicy and its binding (`Deny`), as a Kyverno or Gatekeeper rule of the
/// cluster might be: in namespace `ns`, a request `rule` (one `resourceRules` entry) matches is
/// refused with `message` unless the CEL `expression` holds. The API server loads it
/// asynchronously: the caller waits until it refuses a dry run. `remove` takes it away.
pub struct DenyPolicy {
    client: Client,
    name: String,
}

fn admission(kind: &str) -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "admissionregistration.k8s.io",
        "v1",
        kind,
    ))
}

pub async fn deny_policy(
    client: &Client,
    ns: &str,
    name: &str,
    rule: Value,
    expression: &str,
    message: &str,
) -> DenyPolicy {
    let bodies = [
        (
            "ValidatingAdmissionPolicy",
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [rule],
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}
                    },
                    "validations": [{"expression": expression, "message": message}]
                }
            }),
        ),
        (
            "ValidatingAdmissionPolicyBinding",
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name},
                "spec": {"policyName": name, "validationActions": ["Deny"]}
            }),
        ),
    ];
    for (kind, body) in bodies {
        Api::<kube::api::DynamicObject>::all_with(client.clone(), &admission(kind))
            .patch(
                name,
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
    }
    DenyPolicy {
        client: client.clone(),
        name: name.to_string(),
    }
}

impl DenyPolicy {
    pub async fn remove(self) {
        for kind in [
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
        ] {
            let _ =
                Api::<kube::api::DynamicObject>::all_with(self.client.clone(), &admission(kind))
                    .delete(&self.name, &Default::default())
                    .await;
        }
    }
}
