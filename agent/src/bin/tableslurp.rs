//! `tableslurp`: restore a directory backed up by tablesnap, as of an index.

use std::process::ExitCode;

use clap::Parser;
use tablesnap::cli::LogFormat;
use tablesnap::exit::{clap_exit, error_exit, runtime};
use tablesnap::restore::args::{SlurpArgs, SlurpConfig};

const NAME: &str = "tableslurp";

fn main() -> ExitCode {
    let args = match SlurpArgs::try_parse() {
        Ok(a) => a,
        Err(e) => return clap_exit(e, NAME),
    };
    let cfg = match SlurpConfig::try_from(args) {
        Ok(c) => c,
        Err(e) => return error_exit(&e, NAME),
    };
    tablesnap::logging::init(LogFormat::Text, c"tableslurp");
    let rt = match runtime(NAME) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(tablesnap::restore::run(cfg)) {
        Ok(summary) => {
            println!("{summary}");
            if let Some(p) = &summary.properties {
                println!("commitlog_archiving.properties for the restored node:\n{p}");
            }
            if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                for (key, e) in &summary.failed {
                    eprintln!("{NAME}: not restored: {key}: {e}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => error_exit(&e, NAME),
    }
}
