//! `--checksum crc64nvme` against both store backends: what the agent writes (S3's full-object
//! CRC64NVME field, checked by the server, and no `md5sum`), tableslurp verifying it, and a
//! corrupt copy refused by name.

#[macro_use]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use support::*;
use tablesnap::checksum::{Digest, crc64, crc64_to_base64};
use tablesnap::meta::ObjectMeta;
use tablesnap::store::Source;

both_backends!(
    crc64nvme_backups_are_written_and_verified,
    crc64nvme_corruption_is_refused_by_name,
    md5_on_start_compares_the_crc,
);

/// Issue 13: with the default `--checksum md5`, a multipart upload's parts each carry a CRC64NVME
/// that the server checks (before, they carried no checksum and their bodies were unsigned), and
/// the object keeps the Python tool's `md5sum`.
#[tokio::test(flavor = "multi_thread")]
async fn md5_mode_multipart_parts_carry_a_server_checked_crc() {
    let b = Backend::garage().await;
    let d = tempfile::tempdir().unwrap();
    let body = data(11 * MIB + 5, 9);
    let agent = Agent::start(
        &b,
        &[
            "--max-upload-size",
            "5",
            "--multipart-chunk-size",
            "5",
            "--without-index",
        ],
        &[d.path()],
    );
    let p = write_rename(d.path(), "nb-3-big-Data.db", &body);
    let key = format!("testhost:{}", p.display());
    let store = b.store().await;
    wait_object(&store, &key, body.len() as u64).await;
    let log = agent.stop();
    assert!(log.contains("Multipart(3)"), "three parts:\n{log}");
    let h = store.head(&key).await.unwrap().unwrap();
    assert_eq!(h.meta.md5sum(), Some(md5_hex(&body).as_str()));
    assert_eq!(
        s3_checksum(&b, &key).await,
        (
            Some(crc64_to_base64(crc64(&body))),
            Some("FULL_OBJECT".to_string())
        ),
        "the server checked each part's CRC and the whole object's"
    );
}

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

fn slurp(b: &Backend, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tableslurp"))
        .args(["-n", "testhost"])
        .args(b.args())
        .args(args)
        .output()
        .expect("run tableslurp")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What an independent S3 client (not the agent's store code) sees of `key`'s checksum:
/// the CRC64NVME value and the checksum type.
async fn s3_checksum(b: &Backend, key: &str) -> (Option<String>, Option<String>) {
    let Backend::Garage { endpoint, bucket } = b else {
        unreachable!("S3 only")
    };
    let h = s3_client(endpoint)
        .await
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("head");
    (
        h.checksum_crc64_nvme().map(str::to_string),
        h.checksum_type().map(|t| t.as_str().to_string()),
    )
}

async fn crc64nvme_backups_are_written_and_verified(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let watched = d.path().join("ks").join("t-1");
    std::fs::create_dir_all(&watched).unwrap();
    // A small file (sent from memory), one streamed in a single PUT (2 MiB), and one in three
    // multipart parts of 5 MiB (12 MiB + 3 bytes, the last part short).
    let files = [
        ("nb-1-big-Index.db", data(3000, 1)),
        ("nb-1-big-Summary.db", data(2 * MIB, 2)),
        ("nb-1-big-Data.db", data(12 * MIB + 3, 3)),
    ];
    let agent = Agent::start(
        &b,
        &[
            "-r",
            "--checksum",
            "crc64nvme",
            "--max-upload-size",
            "5",
            "--multipart-chunk-size",
            "5",
        ],
        &[d.path()],
    );
    for (name, bytes) in &files {
        write_rename(&watched, name, bytes);
    }
    let store = b.store().await;
    let index = format!(
        "testhost:{}-listdir.json",
        watched.join("nb-1-big-Data.db").display()
    );
    wait_key(&store, &index).await;
    let log = agent.stop();

    for (name, bytes) in &files {
        let key = format!("testhost:{}", watched.join(name).display());
        let h = store.head(&key).await.unwrap().expect("object written");
        assert_eq!(h.size, bytes.len() as u64, "{key}");
        assert_eq!(h.meta.crc64nvme(), Some(crc64(bytes)), "{key}");
        assert_eq!(h.meta.md5sum(), None, "{key}: no md5sum with crc64nvme");
        assert!(h.meta.user.contains_key("stat"), "{key}");
        if b.is_s3() {
            // The server's own full-object checksum, through an independent client: it checked
            // each part's CRC and the whole object's when the upload completed.
            assert_eq!(
                s3_checksum(&b, &key).await,
                (
                    Some(crc64_to_base64(crc64(bytes))),
                    Some("FULL_OBJECT".to_string())
                ),
                "{key}"
            );
        }
    }
    if b.is_s3() {
        assert!(
            log.contains("Multipart(3)"),
            "the Data.db went in 3 parts:\n{log}"
        );
    }

    // tableslurp verifies every file by its CRC, ranged parts combined (1 MiB parts).
    let out = d.path().join("out");
    let o = slurp(
        &b,
        &[
            "--part-size",
            "1",
            watched.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 downloaded")
            && String::from_utf8_lossy(&o.stdout).contains("0 checked by size only"),
        "{t}"
    );
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(out.join(name)).unwrap(), bytes, "{name}");
    }
}

async fn crc64nvme_corruption_is_refused_by_name(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = Path::new("/var/lib/cassandra/data/ks/t-2");
    let store = b.store().await;
    let good = data(3 * MIB + 7, 9);
    let mut bad = good.clone();
    bad[MIB + 5] ^= 0x01;
    let key = format!("testhost:{}", dir.join("nb-1-big-Data.db").display());
    let digest = Digest::Crc64Nvme {
        whole: crc64(&good),
        parts: vec![],
    };
    // Other bytes sent with the good bytes' CRC.
    let put = store
        .put(
            &key,
            Source::Memory(Bytes::from(bad.clone())),
            &ObjectMeta::default(),
            Some(&digest),
        )
        .await;
    if b.is_s3() {
        // The server checks the CRC and keeps nothing.
        let err = put.expect_err("Garage accepted bytes that do not match their CRC64NVME");
        assert!(
            matches!(
                err,
                tablesnap::Error::Integrity(_) | tablesnap::Error::Storage(_)
            ),
            "{err}"
        );
        assert_eq!(store.head(&key).await.unwrap(), None);
        return;
    }
    // A directory store keeps what it is given: the restore must catch it.
    put.unwrap();
    let index = format!("{key}-listdir.json");
    let body = serde_json::json!({ dir.to_str().unwrap(): ["nb-1-big-Data.db"] });
    store
        .put(
            &index,
            Source::Memory(Bytes::from(serde_json::to_vec(&body).unwrap())),
            &ObjectMeta::json(),
            None,
        )
        .await
        .unwrap();
    let out = d.path().join("out");
    for part_size in ["1", "64"] {
        let o = slurp(
            &b,
            &[
                "--part-size",
                part_size,
                dir.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&key) && err.contains("CRC64NVME"), "{t}");
        // Nothing under the final name, no temporary left.
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "{t}");
    }
}

async fn md5_on_start_compares_the_crc(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("same-size.db");
    std::fs::write(&p, b"local content").unwrap();
    let store = b.store().await;
    let key = format!("testhost:{}", p.display());
    let other = b"other content";
    // The bucket holds other bytes of the same size, with their CRC.
    store
        .put(
            &key,
            Source::Memory(Bytes::from_static(other)),
            &ObjectMeta::default(),
            Some(&Digest::Crc64Nvme {
                whole: crc64(other),
                parts: vec![],
            }),
        )
        .await
        .unwrap();
    let agent = Agent::start(
        &b,
        &["-B", "--md5-on-start", "--checksum", "crc64nvme"],
        &[d.path()],
    );
    let scan = agent.first_scan(T);
    assert_eq!(
        (scan["present"].as_u64(), scan["queued"].as_u64()),
        (Some(0), Some(1)),
        "{scan}"
    );
    eventually(T, "local content shipped", || async {
        store
            .head(&key)
            .await
            .ok()
            .flatten()
            .and_then(|h| h.meta.crc64nvme())
            == Some(crc64(b"local content"))
    })
    .await;
    agent.stop();

    // Now the same content: present, nothing queued.
    let agent = Agent::start(
        &b,
        &["-B", "--md5-on-start", "--checksum", "crc64nvme"],
        &[d.path()],
    );
    let scan = agent.first_scan(T);
    assert_eq!(
        (scan["present"].as_u64(), scan["queued"].as_u64()),
        (Some(1), Some(0)),
        "{scan}"
    );
    agent.stop();
}

/// Issue 13: indexes honour `--storage-class` and SSE like data objects. A recording proxy in
/// front of the real Garage (which accepts both headers and reports neither) keeps every request
/// head: every PUT and every multipart initiation, of files and of indexes, carries
/// `x-amz-storage-class` and `x-amz-server-side-encryption`.
#[tokio::test(flavor = "multi_thread")]
async fn storage_class_and_sse_reach_every_put_indexes_included() {
    use support::fault::{Plan, Proxy};
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let proxy = Proxy::start(
        endpoint.trim_start_matches("http://").into(),
        Plan {
            record: true,
            ..Plan::clean(None)
        },
        1,
    )
    .await;
    let via = Backend::Garage {
        endpoint: proxy.endpoint(),
        bucket: bucket.clone(),
    };
    let d = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        &via,
        &[
            "--storage-class",
            "STANDARD_IA",
            "--with-sse",
            "--max-upload-size",
            "5",
            "--multipart-chunk-size",
            "5",
        ],
        &[d.path()],
    );
    let small = write_rename(d.path(), "s-Data.db", &data(1000, 1));
    let big = write_rename(d.path(), "b-Data.db", &data(6 * MIB, 2));
    let store = b.store().await;
    for f in [&small, &big] {
        wait_key(&store, &format!("testhost:{}-listdir.json", f.display())).await;
    }
    agent.stop();
    let heads = proxy.injected.heads.lock().unwrap().clone();
    // Object writes: a PUT without partNumber (single objects, indexes) or a POST ?uploads.
    let writes: Vec<&String> = heads
        .iter()
        .filter(|h| {
            let line = h.lines().next().unwrap_or("");
            (line.starts_with("put ") && !line.contains("partnumber="))
                || (line.starts_with("post ") && line.contains("?uploads"))
        })
        .collect();
    let index_puts = writes
        .iter()
        .filter(|h| h.contains("-listdir.json"))
        .count();
    assert!(index_puts >= 2, "the indexes' PUTs: {writes:#?}");
    assert!(
        writes.iter().any(|h| h.starts_with("post ")),
        "the multipart upload's initiation: {writes:#?}"
    );
    for h in &writes {
        let line = h.lines().next().unwrap();
        assert!(
            h.contains("x-amz-storage-class: standard_ia"),
            "no storage class on {line}"
        );
        assert!(
            h.contains("x-amz-server-side-encryption: aes256"),
            "no SSE on {line}"
        );
    }
}
