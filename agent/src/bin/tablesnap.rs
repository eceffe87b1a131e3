//! `tablesnap`: watch Cassandra data directories and ship every new file to S3.

use std::process::ExitCode;

use clap::Parser;
use tablesnap::cli::Args;
use tablesnap::config::Config;
use tablesnap::exit::{clap_exit, error_exit, runtime};

const NAME: &str = "tablesnap";

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => return clap_exit(e, NAME),
    };
    let cfg = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => return error_exit(&e, NAME),
    };
    tablesnap::logging::init(cfg.log_format, c"tablesnap");
    if cfg.secret_on_command_line {
        tracing::warn!(
            "-s/--aws-secret puts the secret on the command line, where `ps` shows it; \
             prefer AWS_SECRET_ACCESS_KEY, a profile, or an instance/pod role"
        );
    }
    let rt = match runtime(NAME) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let signals = match signals() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{NAME}: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        match tablesnap::agent::run(cfg, signals).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => error_exit(&e, NAME),
        }
    })
}

/// SIGTERM and SIGINT as one stream of notifications.
fn signals() -> std::io::Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
