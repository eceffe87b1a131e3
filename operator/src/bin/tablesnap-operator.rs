//! `tablesnap-operator`: reconciles TableSnap resources into tablesnap sidecars.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tablesnap_operator::run::{Settings, run};
use tracing_subscriber::EnvFilter;

/// Reconcile TableSnap resources into tablesnap sidecars next to Cassandra pods.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address of the `/healthz` and `/metrics` endpoints.
    #[arg(long, env = "HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Name of the Lease for leader election.
    #[arg(long, env = "LEASE_NAME", default_value = "tablesnap-operator")]
    lease_name: String,
    /// Namespace of the Lease; the operator's own namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Watch only this namespace instead of the whole cluster.
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let identity = args
        .identity
        .unwrap_or_else(|| format!("tablesnap-operator-{}", std::process::id()));
    let settings = Settings {
        http_listen: args.http_listen,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        identity,
        namespace: args.watch_namespace.filter(|n| !n.is_empty()),
    };
    match start(settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line that says what failed and why.
            tracing::error!(error = format!("{error:#}"), "the operator stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start(settings: Settings) -> anyhow::Result<()> {
    tablesnap_operator::install_tls_provider();
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes API: set KUBECONFIG or run in a pod")?;
    run(client, settings).await?;
    Ok(())
}
