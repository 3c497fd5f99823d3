//! Log set-up shared by all subcommands: human-readable or JSON lines, to stderr and optionally
//! appended to a log file as well (Pacemaker's `PCMK_logfile`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

/// `verbosity`: 0 = info, 1 = debug, 2+ = trace. `RUST_LOG` overrides it when set to
/// `target=level` directives (e.g. `kubemaker=debug,info`); one it cannot parse is ignored.
/// (`Targets` rather than `EnvFilter`: no span or field filters, and no regex engine mapped into
/// the daemon on every worker.)
pub fn init(verbosity: u8, format: LogFormat, logfile: Option<&Path>) -> Result<(), LogInitError> {
    let level = match verbosity {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(level));
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
    // Colours only on a terminal-bound stderr, never into the log file.
    let ansi = file.is_none();
    let writer = match file {
        Some(f) => BoxMakeWriter::new(std::io::stderr.and(f)),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let layer = tracing_subscriber::fmt::layer().with_target(false);
    let layer = match format {
        LogFormat::Text => layer.with_ansi(ansi).with_writer(writer).boxed(),
        LogFormat::Json => layer.json().with_writer(writer).boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|e| LogInitError::Install(Box::new(e)))
}
