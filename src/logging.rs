//! Log set-up shared by all subcommands: human-readable or JSON lines, to stderr and optionally
//! appended to a log file as well (Pacemaker's `PCMK_logfile`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("cannot open log file {}: {source}", path.display())]
    OpenLogFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A global subscriber was already installed.
    #[error("{0}")]
    Install(Box<dyn std::error::Error + Send + Sync>),
}

/// `verbosity`: 0 = info, 1 = debug, 2+ = trace. `RUST_LOG` overrides it when set.
pub fn init(verbosity: u8, format: LogFormat, logfile: Option<&Path>) -> Result<(), LogInitError> {
    let level = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let file = match logfile {
        Some(p) => Some(Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| LogInitError::OpenLogFile {
                    path: p.to_path_buf(),
                    source,
                })?,
        )),
        None => None,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match (format, file) {
        (LogFormat::Text, None) => builder.with_writer(std::io::stderr).try_init(),
        (LogFormat::Text, Some(f)) => builder
            .with_writer(std::io::stderr.and(f))
            .with_ansi(false)
            .try_init(),
        (LogFormat::Json, None) => builder.json().with_writer(std::io::stderr).try_init(),
        (LogFormat::Json, Some(f)) => builder
            .json()
            .with_writer(std::io::stderr.and(f))
            .try_init(),
    };
    result.map_err(LogInitError::Install)
}
