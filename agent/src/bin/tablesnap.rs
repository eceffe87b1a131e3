//! `tablesnap`: watch Cassandra data directories and ship every new file to S3.

use std::process::ExitCode;

use clap::Parser;
use tablesnap::cli::Args;
use tablesnap::config::Config;
use tablesnap::error::Error;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => return clap_exit(e),
    };
    let cfg = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tablesnap: {e}");
            return ExitCode::from(2);
        }
    };
    tablesnap::logging::init(cfg.log_format, c"tablesnap");
    if cfg.secret_on_command_line {
        tracing::warn!(
            "-s/--aws-secret puts the secret on the command line, where `ps` shows it; \
             prefer AWS_SECRET_ACCESS_KEY, a profile, or an instance/pod role"
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tablesnap: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let signals = match signals() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tablesnap: cannot install signal handlers: {e}");
                return ExitCode::from(1);
            }
        };
        match tablesnap::agent::run(cfg, signals).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ Error::InvalidConfig(_)) => {
                eprintln!("tablesnap: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("tablesnap: {e}");
                ExitCode::from(1)
            }
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

/// Prints clap's verdict: help and version as they are, errors as one line with exit code 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("tablesnap: {}", first.trim_start_matches("error: "));
            ExitCode::from(2)
        }
    }
}
