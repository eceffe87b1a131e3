//! `tablechop`: delete backups that no index younger than AGE days (nor any directory's newest
//! index) references.

use std::process::ExitCode;

use clap::Parser;
use tablesnap::cli::LogFormat;
use tablesnap::exit::{clap_exit, error_exit, runtime};
use tablesnap::retention::args::{ChopArgs, ChopConfig};

const NAME: &str = "tablechop";

fn main() -> ExitCode {
    let args = match ChopArgs::try_parse() {
        Ok(a) => a,
        Err(e) => return clap_exit(e, NAME),
    };
    let cfg = match ChopConfig::try_from(args) {
        Ok(c) => c,
        Err(e) => return error_exit(&e, NAME),
    };
    tablesnap::logging::init(LogFormat::Text, c"tablechop");
    let rt = match runtime(NAME) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(tablesnap::retention::run(cfg)) {
        Ok(summary) => {
            println!("{summary}");
            if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => error_exit(&e, NAME),
    }
}
