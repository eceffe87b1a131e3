//! `spec.commitlogArchive` against the real API server and a real agent: the StatefulSet's
//! template gets the archive directory of the data volume mounted writable (a `subPath` over the
//! read-only data mount) and the agent's commit log flags, and the target's status shows the
//! recoverable window the pod's agent reports after it shipped an archived segment.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;
use tablesnap_operator::crd::TableSnap;
use tablesnap_operator::render::HASH_ANNOTATION;

const WAIT: Duration = Duration::from_secs(60);

use common::reconciled;

#[tokio::test]
async fn archive_mounted_writable_and_the_window_reported() {
    let Some(client) = common::client("archive_mounted_writable_and_the_window_reported").await
    else {
        return;
    };
    common::install_tablesnap_crd(&client).await;
    let ns = common::namespace(&client, "commitlog").await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "cass", "labels": {"backup": "pitr"}},
        "spec": {
            "replicas": 1, "serviceName": "cass", "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": {"app": "cass"}},
            "template": {"metadata": {"labels": {"app": "cass"}}, "spec": {"containers": [{"name": "cassandra", "image": "cassandra:5.0", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .unwrap();
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    statefulsets
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let port = common::free_port();
    let ts: TableSnap = serde_json::from_value(json!({
        "apiVersion": "tablesnap.io/v1alpha1", "kind": "TableSnap",
        "metadata": {"name": "nightly"},
        "spec": {"bucket": "backups", "region": "garage", "agent": {"httpPort": port},
                 "targets": {"selector": {"matchLabels": {"backup": "pitr"}}},
                 "commitlogArchive": {"spoolMaxMb": 64}}
    }))
    .unwrap();
    Api::<TableSnap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ts)
        .await
        .unwrap();
    let status = reconciled(&client, &ns).await;
    assert!(status.targets[0].injected, "{status:?}");
    assert_eq!(
        status.targets[0].archive_command.as_deref(),
        Some("archive_command=/bin/ln %path /var/lib/cassandra/commitlog_archive/%name"),
        "the status tells what Cassandra needs"
    );
    assert_eq!(status.targets[0].recoverable_window_end, None);

    // What the API server stored: the archive mounted writable over the read-only data.
    let template = statefulsets
        .get("cass")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    let hash = template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[HASH_ANNOTATION]
        .clone();
    let pod_spec = template.spec.unwrap();
    let sidecar = pod_spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "tablesnap")
        .expect("the sidecar");
    let mounts = sidecar.volume_mounts.clone().unwrap();
    let data = mounts
        .iter()
        .find(|m| m.mount_path == "/var/lib/cassandra")
        .unwrap();
    assert_eq!((data.name.as_str(), data.read_only), ("data", Some(true)));
    let archive = mounts
        .iter()
        .find(|m| m.mount_path == "/var/lib/cassandra/commitlog_archive")
        .expect("the archive mount");
    assert_eq!(
        (
            archive.name.as_str(),
            archive.sub_path.as_deref(),
            archive.read_only
        ),
        ("data", Some("commitlog_archive"), None),
        "writable (the server stores no readOnly: false)"
    );
    let args = sidecar.args.clone().unwrap().join(" ");
    assert!(
        args.contains("--commitlog-archive /var/lib/cassandra/commitlog_archive --commitlog-dir /var/lib/cassandra/commitlog --commitlog-spool-max 64"),
        "{args}"
    );

    // The pod's agent ships an archived segment (a hard link of a live one, as /bin/ln makes).
    let dirs = tempfile::tempdir().unwrap();
    let (live, arch) = (dirs.path().join("commitlog"), dirs.path().join("archive"));
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(&arch).unwrap();
    let seg = live.join("CommitLog-7-1796150424209.log");
    std::fs::write(&seg, vec![7u8; 4096]).unwrap();
    std::fs::hard_link(&seg, arch.join("CommitLog-7-1796150424209.log")).unwrap();
    let last_write = std::fs::metadata(&seg).unwrap().mtime();
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());
    let (arch_s, live_s) = (arch.display().to_string(), live.display().to_string());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.delete("cass-0", &Default::default()).await.unwrap();
    let _agent = common::AgentProcess::start(
        "127.0.3.21",
        port,
        &[
            "--commitlog-archive",
            &arch_s,
            "--commitlog-dir",
            &live_s,
            &store_url,
        ],
    )
    .await;
    common::wait_for("the segment shipped", WAIT, || async {
        (std::fs::read_dir(&arch).ok()?.count() == 0).then_some(())
    })
    .await;
    let pod = common::wait_for("cass-0 from the new template", WAIT, || async {
        let p = pods.get_opt("cass-0").await.ok()??;
        (p.annotations().get(HASH_ANNOTATION) == Some(&hash)).then_some(p)
    })
    .await;
    common::kubelet_runs(&client, &ns, &pod, Some("127.0.3.21")).await;
    let status = reconciled(&client, &ns).await;
    let t = &status.targets[0];
    let when = jiff::Timestamp::from_second(last_write)
        .unwrap()
        .to_string();
    assert_eq!(t.pods_protected, 1, "{status:?}");
    assert_eq!(
        (
            t.recoverable_window_start.as_deref(),
            t.recoverable_window_end.as_deref()
        ),
        (Some(when.as_str()), Some(when.as_str())),
        "the window is the shipped segment's last write: {t:?}"
    );
    common::release_finalizer(&client, &ns).await;
}
