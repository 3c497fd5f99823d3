//! What can go wrong talking to the CIB, and Pacemaker's tables the wire carries: legacy return
//! codes with their texts, and call options.

use std::time::Duration;

/// A failure of the transport or a refusal by the CIB; what the procedures on top of it add
/// (conflicts that do not go away, invalid nodes, stops that do not happen) is
/// the service's (`cib::service`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CibError {
    #[error(
        "login refused for user {user} by {endpoint} (wrong password, or user not in haclient)"
    )]
    LoginRefused { user: String, endpoint: String },
    #[error(
        "no CIB endpoint reachable; tried {}; check that pacemaker runs there and that remote-tls-port (or remote-clear-port) is set in the CIB and pacemaker was restarted since",
        .tried.join("; ")
    )]
    Unreachable { tried: Vec<String> },
    #[error(
        "{op} got no reply from {endpoint} within {after:?} (the server does not answer unknown operations; or it is overloaded)"
    )]
    Timeout {
        op: String,
        endpoint: String,
        after: Duration,
    },
    #[error("connection to {endpoint} lost during {op}: {reason}")]
    ConnectionLost {
        op: String,
        endpoint: String,
        reason: String,
    },
    #[error("{op} rejected by the CIB: {message} (rc {rc})")]
    Rejected {
        op: String,
        rc: i64,
        message: String,
    },
    #[error("unexpected reply from the CIB: {0}")]
    Protocol(String),
    #[error("CIB client configuration: {0}")]
    Config(String),
    /// Our own TLS key or certificate material is unusable (which file, what is wrong).
    #[error("CIB client TLS credentials: {0}")]
    Credentials(#[from] crate::tls::CredentialError),
}

impl CibError {
    /// A short stable name of the kind of failure, for an Event reason or a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            CibError::LoginRefused { .. } => "CibLoginRefused",
            CibError::Unreachable { .. } => "CibUnreachable",
            CibError::Timeout { .. } => "CibTimeout",
            CibError::ConnectionLost { .. } => "CibConnectionLost",
            CibError::Rejected { .. } => "CibRejected",
            CibError::Protocol(_) => "CibProtocol",
            CibError::Config(_) => "CibConfig",
            CibError::Credentials(_) => "CibCredentials",
        }
    }
}

/// Pacemaker's texts for the legacy return codes the CIB sends (`pcmk_strerror`).
pub fn rc_message(rc: i64) -> &'static str {
    match rc {
        0 => "OK",
        -6 => "No such device or address (the object does not exist)",
        -13 => "Permission denied",
        -17 => "File exists (an object with that id already exists)",
        -22 => "Invalid argument",
        -201 => "Error",
        -203 => "Update does not conform to the configured schema",
        -205 => "Update was older than existing configuration",
        -206 => "Application of update diff failed",
        -207 => "Application of update diff failed, requesting full refresh",
        _ => "unknown error",
    }
}

pub const RC_OLD_DATA: i64 = -205;
pub const RC_DIFF_FAILED: i64 = -206;
pub const RC_NOT_FOUND: i64 = -6;

/// Call options (`enum cib_call_options`, identical in 2.1.5 and 3.0).
pub mod callopt {
    pub const XPATH: u32 = 0x2;
    pub const NO_CHILDREN: u32 = 0x20;
    pub const DRYRUN: u32 = 0x200;
    pub const SYNC_CALL: u32 = 0x1000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_well() {
        let e = CibError::LoginRefused {
            user: "hacluster".into(),
            endpoint: "127.0.0.1:5989".into(),
        };
        assert!(e.to_string().contains("login refused for user hacluster"));
        assert!(
            e.to_string()
                .contains("wrong password, or user not in haclient")
        );
        let e = CibError::Unreachable {
            tried: vec![
                "10.0.0.1:5989: Connection refused".into(),
                "10.0.0.2:5989: timed out".into(),
            ],
        };
        assert!(
            e.to_string()
                .contains("10.0.0.1:5989: Connection refused; 10.0.0.2:5989")
        );
    }
}
