//! Errors from the IPC servers.

use super::types::ConnId;

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("only one set of IPC servers can run per thread")]
    AlreadyActive,
    #[error("invalid IPC service name {0:?}")]
    BadName(String),
    #[error("cannot create IPC service {0}: {1}")]
    Create(String, std::io::Error),
    #[error(
        "cannot start IPC service {0} (another daemon in this network namespace serves it?): {1}"
    )]
    Run(String, std::io::Error),
    #[error("no IPC connection {0}")]
    NoSuchConnection(ConnId),
    #[error("cannot send to IPC connection {0}: {1}")]
    Send(ConnId, std::io::Error),
}
