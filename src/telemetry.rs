//! Logging through tracing to stderr. `RUST_LOG`, when set, overrides `log.level`.

use crate::config::{LogConfig, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(log: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        // rustls warns about its peers' quirks (an IP address in SNI, as lftp sends) on
        // every connection; those are not ftpgate's to report. RUST_LOG can still ask.
        .unwrap_or_else(|| {
            EnvFilter::new(format!(
                "{},rustls=error,libunftp=warn,rustables=warn",
                log.level
            ))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never in files or journald.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
