//! The sidecar's command line, as the operator renders it, parses and validates with the agent's
//! own CLI (the real clap types and the real `Config` validation), for the example TableSnap and
//! one using most options.

use clap::Parser;
use tablesnap_operator::render::agent_args;
use tablesnap_operator::resolve::DataVolume;
use tablesnap_operator::samples;

#[test]
fn rendered_agent_arguments_are_accepted_by_the_agent() {
    let data = tempfile::tempdir().unwrap();
    let mount = data.path().to_str().unwrap().to_string();
    // Cassandra's commit log and the archive beside the data, as in the images' /var/lib/cassandra.
    std::fs::create_dir(data.path().join("commitlog")).unwrap();
    std::fs::create_dir(data.path().join("commitlog_archive")).unwrap();
    for ts in [
        samples::tablesnap(),
        samples::tablesnap_all_options(),
        samples::tablesnap_point_in_time(),
    ] {
        let args = agent_args(
            &ts,
            &DataVolume {
                volume: "server-data".into(),
                mount_path: mount.clone(),
            },
        );
        assert!(
            args.iter().any(|a| a == &mount),
            "the data path is watched: {args:?}"
        );
        let argv: Vec<String> = std::iter::once("tablesnap".to_string())
            .chain(args.iter().map(|a| {
                if a == "$(POD_NAME)" {
                    "cassandra-dc1-rack1-sts-0".into()
                } else {
                    a.clone()
                }
            }))
            .collect();
        let parsed =
            tablesnap::cli::Args::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let cfg =
            tablesnap::config::Config::try_from(parsed).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert_eq!(cfg.keys.name(), "cassandra-dc1-rack1-sts-0");
        assert!(
            cfg.http_listen.is_some(),
            "liveness needs the health endpoint: {argv:?}"
        );
        assert!(
            cfg.wait_for_bucket,
            "a sidecar never exits over a bucket problem: {argv:?}"
        );
        assert_eq!(
            cfg.mode == tablesnap::cli::Mode::Cassandra,
            ts.spec.mode.as_str() == "cassandra",
            "{argv:?}"
        );
        match &ts.spec.commitlog_archive {
            None => assert_eq!(cfg.commitlog, None, "{argv:?}"),
            Some(_) => {
                let cl = cfg.commitlog.expect("the archive is shipped");
                assert_eq!(cl.archive, data.path().join("commitlog_archive"));
                assert_eq!(cl.live, Some(data.path().join("commitlog")));
                assert_eq!(cl.spool_max, Some(4096 << 20));
                // Inside the watched mount: left out of its watch, not refused.
                assert!(
                    cfg.paths.iter().any(|p| cl.archive.starts_with(p)),
                    "{argv:?}"
                );
            }
        }
    }
}
