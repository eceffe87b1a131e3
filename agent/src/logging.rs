//! Log setup: readable lines (or JSON) on stderr; syslog (facility DAEMON, tag `tablesnap`) when
//! TABLESNAP_SYSLOG is set; debug level when TDEBUG is set, as in the Python tool.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the level when set.
pub fn init(format: LogFormat, tag: &'static std::ffi::CStr) {
    let level = if env_set("TDEBUG") { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},aws_smithy_runtime=warn,aws_config=warn,hyper=warn"
        ))
    });
    if env_set("TABLESNAP_SYSLOG")
        && let Some(syslog) = syslog_tracing::Syslog::new(
            tag,
            syslog_tracing::Options::LOG_PID,
            syslog_tracing::Facility::Daemon,
        )
    {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(syslog)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}
