//! The TableSnap CRD from `crds/` in a real kube-apiserver: the server refuses invalid specs with
//! the CRD's own messages, and every spec it accepts is one the agent's CLI and config validation
//! accept too (the same generated specs go to both), so that no accepted TableSnap renders a
//! sidecar that exits at start.

mod common;

use clap::Parser;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use tablesnap_operator::crd::TableSnap;
use tablesnap_operator::render::agent_args;
use tablesnap_operator::resolve::DataVolume;

fn tablesnaps(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<TableSnap>(&()))
}

fn object(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1",
        "kind": "TableSnap",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn base_spec() -> Value {
    json!({"bucket": "backups", "targets": {"selector": {"matchLabels": {"app": "cassandra"}}}})
}

/// `base_spec()` with `path` (a `/`-separated path under spec) set to `value`.
fn spec_with(path: &str, value: Value) -> Value {
    let mut spec = base_spec();
    let mut at = &mut spec;
    let keys: Vec<&str> = path.split('/').collect();
    for key in &keys[..keys.len() - 1] {
        at = &mut at[*key];
    }
    at[keys[keys.len() - 1]] = value;
    spec
}

/// Create with `dryRun=All`: full validation (schema, CEL), nothing stored.
async fn dry_run_create(
    api: &Api<DynamicObject>,
    spec: Value,
) -> Result<DynamicObject, (u16, String)> {
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&params, &object("t", spec))
        .await
        .map_err(common::api_error)
}

#[tokio::test]
async fn invalid_specs_are_refused_with_the_crds_messages() {
    let Some(client) = common::client("invalid_specs_are_refused_with_the_crds_messages").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "crd-refused").await;
    let api = tablesnaps(&client, &ns);
    dry_run_create(&api, base_spec())
        .await
        .expect("the base spec is valid");
    let cases: Vec<(Value, &str)> = vec![
        (
            spec_with("commitlogArchive", json!({"directory": "../etc"})),
            "directory must be a relative path inside the data volume",
        ),
        (
            spec_with(
                "commitlogArchive",
                json!({"commitlogDirectory": "/var/lib"}),
            ),
            "commitlogDirectory must be a relative path inside the data volume",
        ),
        (
            spec_with("commitlogArchive", json!({"spoolMaxMb": 0})),
            "spoolMaxMb must be at least 1",
        ),
        (
            spec_with("bucket", json!("My_Bucket")),
            "bucket must be an S3 bucket name",
        ),
        (
            spec_with("bucket", json!("file:///")),
            "bucket must be an S3 bucket name",
        ),
        (
            spec_with("include", json!(["a"])).tap_set("exclude", json!(["b"])),
            "set include or exclude, not both",
        ),
        (
            spec_with("multipartChunkSize", json!(4)),
            "multipartChunkSize must be between 5 and 5120",
        ),
        (
            spec_with("maxUploadSize", json!(0)),
            "maxUploadSize must be between 1 and 5120",
        ),
        (
            spec_with("maxUploadSize", json!(5121)),
            "maxUploadSize must be between 1 and 5120",
        ),
        (
            spec_with("threads", json!(0)),
            "threads must be between 1 and 256",
        ),
        (
            spec_with("endpoint", json!("garage:3900")),
            "endpoint must be an http:// or https:// URL with a host",
        ),
        (
            spec_with("endpoint", json!("http://")),
            "endpoint must be an http:// or https:// URL with a host",
        ),
        (
            spec_with("region", json!("eu west 1")),
            "region must be a region name",
        ),
        (
            spec_with("region", json!("")),
            "region must be a region name",
        ),
        (
            spec_with("keynameSeparator", json!("")),
            "keynameSeparator must not be empty",
        ),
        (
            spec_with("include", json!(["("])),
            "include: every entry must be a valid regular expression",
        ),
        (
            spec_with("exclude", json!(["[a-"])),
            "exclude: every entry must be a valid regular expression",
        ),
        (
            spec_with("paths", json!(["/ok", "data"])),
            "every path must be absolute",
        ),
        (
            spec_with("targets/dataPath", json!("data")),
            "dataPath must be an absolute path",
        ),
        (
            spec_with("storageClass", json!("cold")),
            "storageClass must be an S3 storage class",
        ),
        (
            spec_with("sseKmsKeyId", json!("alias/k")),
            "sseKmsKeyId needs withSse: true",
        ),
        (
            spec_with("credentials", json!({"mode": "Secret"})),
            "credentials.mode Secret needs credentials.secretRef",
        ),
        (
            spec_with(
                "credentials",
                json!({"mode": "Secret", "secretRef": {"name": ""}}),
            ),
            "secretRef.name must not be empty",
        ),
        (
            spec_with("targets", json!({})),
            "set exactly one of targets.selector and targets.name",
        ),
        (
            spec_with("targets", json!({"name": "dc1"})),
            "targets.name needs targets.kind",
        ),
        (
            spec_with("agent/httpPort", json!(70000)),
            "httpPort must be a port number",
        ),
        (
            spec_with("agent/logFormat", json!("xml")),
            "logFormat must be text or json",
        ),
        (
            spec_with("mode", json!("fast")),
            "Unsupported value: \"fast\"",
        ),
    ];
    let mut wrong = Vec::new();
    for (spec, message) in cases {
        match dry_run_create(&api, spec.clone()).await {
            Ok(_) => wrong.push(format!("accepted {spec}, expected {message:?}")),
            Err((code, text)) if code == 422 && text.contains(message) => {}
            Err((code, text)) => wrong.push(format!(
                "{spec}: expected 422 {message:?}, got {code} {text}"
            )),
        }
    }
    common::drop_namespace(&client, &ns).await;
    assert!(
        wrong.is_empty(),
        "the server's verdicts differ:\n{}",
        wrong.join("\n")
    );
}

/// Small helper to set a second key on a spec in the table above.
trait TapSet {
    fn tap_set(self, key: &str, value: Value) -> Value;
}
impl TapSet for Value {
    fn tap_set(mut self, key: &str, value: Value) -> Value {
        self[key] = value;
        self
    }
}

/// Specs along every field the agent validates, at and beyond its limits.
fn generated_specs(dir: &str) -> Vec<Value> {
    let mut specs = vec![base_spec()];
    let fields: Vec<(&str, Vec<Value>)> = vec![
        (
            "bucket",
            vec![
                json!("ab"),
                json!("abc"),
                json!("a.b-c"),
                json!("-abc"),
                json!("abc-"),
                json!("a_b"),
                json!("file:///"),
                json!("file:///backups"),
                json!("file://x"),
                json!(format!("b{}", "x".repeat(62))),
            ],
        ),
        ("prefix", vec![json!(""), json!("cluster-a"), json!("a/b/")]),
        (
            "endpoint",
            vec![
                json!("http://"),
                json!("https://"),
                json!("http://h"),
                json!("https://s3.example.com:9000"),
                json!("http://:80"),
                json!("http://[::1]:3900"),
                json!("ftp://h"),
                json!("http:// h"),
                json!("http://h:65535"),
                json!("http://h:65536"),
                json!("http://u:p@h/x?y#z"),
            ],
        ),
        (
            "region",
            vec![
                json!(""),
                json!("us-east-1"),
                json!("garage"),
                json!("eu west"),
                json!("a/b"),
                json!("x_y"),
            ],
        ),
        (
            "include",
            vec![
                json!([]),
                json!([".*"]),
                json!(["("]),
                json!(["[a-"]),
                json!(["a{2,1}"]),
                json!(["(?P<n>x)"]),
                json!(["\\d+-Data\\.db$"]),
                json!(["x**"]),
                json!(["\\Qa.b\\E"]),
                json!(["-Data.db$"]),
                json!(["a{1001}"]),
            ],
        ),
        ("exclude", vec![json!(["("]), json!(["tmp$"])]),
        (
            "maxUploadSize",
            vec![
                json!(0),
                json!(1),
                json!(5120),
                json!(5121),
                json!(1_000_000_000_000_i64),
            ],
        ),
        (
            "multipartChunkSize",
            vec![json!(4), json!(5), json!(5120), json!(5121)],
        ),
        ("threads", vec![json!(0), json!(1), json!(256), json!(257)]),
        (
            "keynameSeparator",
            vec![json!(""), json!(":"), json!("/"), json!("--")],
        ),
        ("storageClass", vec![json!("STANDARD_IA"), json!("x")]),
        (
            "paths",
            vec![
                json!([dir]),
                json!([format!("{dir}/")]),
                json!(["relative"]),
            ],
        ),
        (
            "listenEvents",
            vec![json!(["IN_CREATE"]), json!(["IN_OPEN"])],
        ),
        (
            "checksum",
            vec![json!("md5"), json!("crc64nvme"), json!("sha1")],
        ),
        (
            "agent/httpPort",
            vec![json!(0), json!(1), json!(65535), json!(65536)],
        ),
        (
            "agent/logFormat",
            vec![json!("text"), json!("json"), json!("xml")],
        ),
        ("mode", vec![json!("generic"), json!("cassandra")]),
    ];
    for (path, values) in fields {
        for v in values {
            specs.push(spec_with(path, v));
        }
    }
    let mut all = spec_with("mode", json!("generic"));
    for (k, v) in [
        ("endpoint", json!("https://s3.example.com")),
        ("region", json!("eu-west-1")),
        ("include", json!([".*-Data\\.db$"])),
        ("withSse", json!(true)),
        ("sseKmsKeyId", json!("alias/k")),
        ("deleteOnBackup", json!(true)),
        ("virtualHostedStyle", json!(true)),
        ("withoutIndex", json!(true)),
        ("prefix", json!("p")),
        ("keynameSeparator", json!("|")),
    ] {
        all[k] = v;
    }
    specs.push(all);
    specs
}

#[tokio::test]
async fn every_spec_the_server_accepts_the_agent_accepts() {
    let Some(client) = common::client("every_spec_the_server_accepts_the_agent_accepts").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "crd-agent").await;
    let api = tablesnaps(&client, &ns);
    let data = tempfile::tempdir().unwrap();
    let mount = data.path().to_str().unwrap().to_string();
    let (mut accepted, mut refused, mut disagree) = (0, 0, Vec::new());
    for spec in generated_specs(&mount) {
        let created = match dry_run_create(&api, spec.clone()).await {
            Ok(obj) => obj,
            Err((422, _)) => {
                refused += 1;
                continue;
            }
            Err((code, text)) => panic!("{spec}: unexpected {code} {text}"),
        };
        accepted += 1;
        // What the server stored (with its defaults), as the operator would read it.
        let ts: TableSnap = serde_json::from_value(serde_json::to_value(&created).unwrap())
            .unwrap_or_else(|e| {
                panic!("{spec}: the operator cannot read what the server accepted: {e}")
            });
        let args = agent_args(
            &ts,
            &DataVolume {
                volume: "data".into(),
                mount_path: mount.clone(),
            },
        );
        let argv: Vec<String> = std::iter::once("tablesnap".to_string())
            .chain(args.into_iter().map(|a| {
                if a == "$(POD_NAME)" {
                    "cass-0".into()
                } else {
                    a
                }
            }))
            .collect();
        let verdict = tablesnap::cli::Args::try_parse_from(&argv)
            .map_err(|e| e.to_string())
            .and_then(|a| tablesnap::config::Config::try_from(a).map_err(|e| e.to_string()));
        if let Err(e) = verdict {
            disagree.push(format!(
                "server accepted {spec}; the agent refuses: {}",
                e.lines().next().unwrap_or_default()
            ));
        }
    }
    common::drop_namespace(&client, &ns).await;
    assert!(
        accepted > 20 && refused > 10,
        "accepted {accepted}, refused {refused}: the generator lost its edge cases"
    );
    assert!(
        disagree.is_empty(),
        "{} accepted spec(s) the agent refuses:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
}
