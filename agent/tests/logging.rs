//! Logging as in the Python tool: TDEBUG turns on debug lines; TABLESNAP_SYSLOG sends them to
//! syslog with facility DAEMON and tag `tablesnap`; secrets never appear.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use support::*;

const SECRET: &str = "s3cr3t-DO-NOT-LOG-0123456789abcdef0123456789";

fn agent_cmd(store: &std::path::Path, watched: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args([
        "--log-format",
        "json",
        "-n",
        "h",
        "-k",
        "AKIDEXAMPLE",
        "-s",
        SECRET,
    ])
    .arg(format!("file://{}", store.display()))
    .arg(watched);
    cmd
}

#[test]
fn tdebug_turns_on_debug_lines_without_secrets() {
    let d = tempfile::tempdir().unwrap();
    let watched = d.path().join("w");
    std::fs::create_dir(&watched).unwrap();

    let quiet = Agent::spawn(agent_cmd(&d.path().join("s1"), &watched));
    quiet.wait_for(Duration::from_secs(30), |l| {
        l.iter().any(|v| v["message"] == "watching")
    });
    let log = quiet.stop();
    assert!(
        !log.contains("\"level\":\"DEBUG\""),
        "no debug lines without TDEBUG: {log}"
    );
    assert!(
        log.contains("-s/--aws-secret puts the secret on the command line"),
        "warning about -s: {log}"
    );

    let mut cmd = agent_cmd(&d.path().join("s2"), &watched);
    cmd.env("TDEBUG", "1");
    let loud = Agent::spawn(cmd);
    loud.wait_for(Duration::from_secs(30), |l| {
        l.iter().any(|v| v["message"] == "watching")
    });
    let log = loud.stop();
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "debug lines with TDEBUG: {log}"
    );
    assert!(log.contains("configuration"), "{log}");
    assert!(
        !log.contains(SECRET),
        "the secret leaked into the log: {log}"
    );
}

/// Removes /dev/log when the test ends, however it ends.
struct DevLog;
impl Drop for DevLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file("/dev/log");
    }
}

#[test]
fn tablesnap_syslog_sends_to_syslog_daemon_facility() {
    assert!(
        !std::path::Path::new("/dev/log").exists(),
        "/dev/log exists (a syslog daemon runs here): this test needs to own /dev/log"
    );
    let sock = UnixDatagram::bind("/dev/log").expect("bind /dev/log (run as root)");
    let _cleanup = DevLog;
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let watched = d.path().join("w");
    std::fs::create_dir(&watched).unwrap();
    let mut cmd = agent_cmd(&d.path().join("s"), &watched);
    cmd.env("TABLESNAP_SYSLOG", "1");
    let agent = Agent::spawn(cmd);
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while !seen.iter().any(|m: &String| m.contains("watching")) {
        let n = sock.recv(&mut buf).expect("a syslog message within 30 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let watching = seen.iter().find(|m| m.contains("watching")).unwrap();
    // <PRI> = facility * 8 + severity: facility DAEMON (3); an INFO line is sent as notice (5),
    // which every `daemon.info` rule also matches.
    let pri: u32 = watching[1..watching.find('>').unwrap()].parse().unwrap();
    assert_eq!((pri / 8, pri % 8), (3, 5), "{watching}");
    assert!(
        watching.contains(&format!("tablesnap[{}]", agent.child.id())),
        "{watching}"
    );
    assert!(!seen.iter().any(|m| m.contains(SECRET)));
    // Nothing goes to stderr as a log line meanwhile.
    let log = agent.stop();
    assert!(!log.contains("watching"), "logs went to stderr too: {log}");
}
