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
            eprintln!("{name}: {}", one_line(&e.render().to_string()));
            ExitCode::from(USAGE)
        }
    }
}

/// clap's message as one line: its lines before the usage, joined (a missing argument is named on
/// the line after "the following required arguments were not provided:").
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let line = joined.trim_start_matches("error: ");
    if line.is_empty() {
        "invalid arguments".into()
    } else {
        line.into()
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

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn clap_messages_become_one_line_naming_the_argument() {
        assert_eq!(
            one_line(
                "error: the following required arguments were not provided:\n  --as-of <TIME>\n\nUsage: tableslurp --as-of <TIME>\n\nFor more information, try '--help'.\n"
            ),
            "the following required arguments were not provided: --as-of <TIME>"
        );
        assert_eq!(
            one_line("error: unexpected argument '--x' found\n\nUsage: t\n"),
            "unexpected argument '--x' found"
        );
        assert_eq!(one_line("\n"), "invalid arguments");
    }
}
