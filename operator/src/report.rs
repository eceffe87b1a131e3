//! Each agent's own report: `GET http://<pod IP>:<agent port>/status`, the JSON the agent serves
//! (`agent/src/http.rs`, `Report`). "Protected" in the status is what the agent says it did,
//! as Medusa's operator asks each pod, not only that its container runs.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// How long one pod's report may take.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Reports fetched at once.
pub const CONCURRENCY: usize = 16;
/// The largest report read (it is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// What an agent says about itself. Unknown fields are ignored and missing ones default, so
/// that agents of another version still report.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentReport {
    /// The agent's version.
    pub version: String,
    /// Unix time of the report, by the agent's clock.
    pub time: i64,
    /// The start-up bucket check passed.
    pub storage_ready: bool,
    /// Both of its loops turn.
    pub healthy: bool,
    /// Files waiting.
    pub queue_depth: u64,
    /// Every file seen before this unix time is in the bucket; `None` while it waits for the bucket.
    pub recovery_point: Option<i64>,
    /// Unix time of its last successful upload.
    pub last_success: Option<i64>,
    /// Its commit log archive, when it ships one.
    pub commitlog: Option<CommitlogReport>,
}

/// The commit log part of an agent's report.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct CommitlogReport {
    /// Unix time since which its shipped segments are continuous.
    pub window_start: Option<i64>,
    /// Unix time of the last write of its newest shipped segment.
    pub window_end: Option<i64>,
    /// Segments its spool cap dropped since it started.
    pub segments_dropped: u64,
}

/// A client for reports; one per reconcile is cheap.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Fetch the report of the agent at `ip:port`; the error is a sentence for the status.
pub async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    ip: &str,
    port: i32,
) -> Result<AgentReport, String> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let uri: hyper::Uri = format!("http://{host}:{port}/status")
        .parse()
        .map_err(|e| format!("bad pod address {ip}: {e}"))?;
    let get = async {
        let response = client
            .get(uri.clone())
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        let code = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("{uri}: {e}"))?
            .to_bytes();
        if !code.is_success() {
            return Err(format!("{uri}: HTTP {code}"));
        }
        serde_json::from_slice::<AgentReport>(&body)
            .map_err(|e| format!("{uri}: not an agent report ({e})"))
    };
    tokio::time::timeout(TIMEOUT, get)
        .await
        .unwrap_or_else(|_| Err(format!("{uri}: no answer within {}s", TIMEOUT.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_agents_wire_format_and_tolerates_other_versions() {
        let r: AgentReport = serde_json::from_str(
            r#"{"version":"0.1.0","time":100,"storageReady":true,"healthy":true,"queueDepth":2,
                "oldestUnshipped":40,"recoveryPoint":40,"lastSuccess":90,"filesShipped":7,"future":1,
                "commitlog":{"windowStart":10,"windowEnd":20,"archiveLagSeconds":0,"segmentsShipped":3,"segmentsDropped":1}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            AgentReport {
                version: "0.1.0".into(),
                time: 100,
                storage_ready: true,
                healthy: true,
                queue_depth: 2,
                recovery_point: Some(40),
                last_success: Some(90),
                commitlog: Some(CommitlogReport {
                    window_start: Some(10),
                    window_end: Some(20),
                    segments_dropped: 1,
                }),
            }
        );
        let old: AgentReport = serde_json::from_str(r#"{"time":5}"#).unwrap();
        assert!(!old.storage_ready && old.recovery_point.is_none());
    }
}
