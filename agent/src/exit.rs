//! Exit codes shared by the binaries: 0 done, 1 failed (the summary says
//! what), 2 bad input (one line naming the bad value).

use std::process::ExitCode;

use crate::error::Error;

/// Bad input.
pub const USAGE: u8 = 2;

/// Prints clap's verdict: help and version as they are, errors as one line with exit code 2.
pub fn clap_exit(e: clap::Error, name: &str) -> ExitCode {
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
            eprintln!("{name}: {}", first.trim_start_matches("error: "));
            ExitCode::from(USAGE)
        }
    }
}

/// Prints an error as one line; 2 for bad input, else 1.
pub fn error_exit(e: &Error, name: &str) -> ExitCode {
    eprintln!("{name}: {e}");
    match e {
        Error::InvalidConfig(_) => ExitCode::from(USAGE),
        _ => ExitCode::FAILURE,
    }
}

/// A multi-threaded runtime, or the exit code saying why there is none.
pub fn runtime(name: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{name}: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}
