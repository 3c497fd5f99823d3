//! Where the CIB is and how to log in: endpoints (one per cluster node), transport, user and
//! password, timeouts, retry policy; read from Pacemaker's own `CIB_*` variables.

use std::fmt;
use std::time::Duration;

use super::error::CibError;
use crate::cib::model::is_true;

/// A password. Never printed: `Debug` shows `<redacted>` and there is no `Display`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The clear text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `remote-tls-port`: anonymous Diffie-Hellman TLS (Pacemaker 2.1.x).
    Tls,
    /// `remote-clear-port`: no encryption; the password crosses the network in clear. Tests only.
    Plain,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts of one write when the CIB keeps changing underneath (-205).
    pub write_attempts: u32,
    /// Rounds over all endpoints before giving up on connecting.
    pub connect_rounds: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            write_attempts: 10,
            connect_rounds: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with a little jitter so several writers do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 4000.0); // up to +25%
        base + jitter
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoints: Vec<Endpoint>,
    pub transport: Transport,
    pub user: String,
    pub password: Secret,
    /// Shown in Pacemaker's logs and in the CIB's `update-client`.
    pub client_name: String,
    /// TCP connect plus TLS handshake, per endpoint.
    pub connect_timeout: Duration,
    /// Login reply; PAM can delay a refusal by 3 s on Debian.
    pub login_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

pub const DEFAULT_USER: &str = "hacluster";

impl ClientConfig {
    pub fn new(endpoints: Vec<Endpoint>, transport: Transport, password: Secret) -> ClientConfig {
        ClientConfig {
            endpoints,
            transport,
            user: DEFAULT_USER.into(),
            password,
            client_name: "kubemaker".into(),
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }

    /// Settings from the variables Pacemaker's own tools read: `CIB_server` (here also a
    /// comma-separated list, one per cluster node), `CIB_port`, `CIB_user`, `CIB_passwd`,
    /// `CIB_encrypted` (default true).
    pub fn from_env() -> Result<ClientConfig, CibError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let servers = var("CIB_server").unwrap_or_else(|| "localhost".into());
        let port = var("CIB_port").ok_or_else(|| {
            CibError::Config("CIB_port is not set; set it to the cluster's remote-tls-port (or remote-clear-port)".into())
        })?;
        let encrypted = var("CIB_encrypted").is_none_or(|v| is_true(&v));
        let password = var("CIB_passwd").ok_or_else(|| {
            CibError::Config("CIB_passwd is not set; set it to the password of the CIB user".into())
        })?;
        let mut cfg = ClientConfig::new(
            parse_endpoints(&servers, &port)?,
            if encrypted {
                Transport::Tls
            } else {
                Transport::Plain
            },
            Secret::new(password),
        );
        if let Some(u) = var("CIB_user") {
            cfg.user = u;
        }
        Ok(cfg)
    }
}

/// `host1,host2:5990,[::1]:5989` with `default_port` for entries without one.
pub fn parse_endpoints(servers: &str, default_port: &str) -> Result<Vec<Endpoint>, CibError> {
    let port: u16 = default_port
        .trim()
        .parse()
        .map_err(|_| CibError::Config(format!("port {default_port:?} is not a TCP port number")))?;
    let mut out = Vec::new();
    for s in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, p) = if let Some(rest) = s.strip_prefix('[') {
            match rest.split_once(']') {
                Some((h, tail)) => (h.to_string(), tail.strip_prefix(':')),
                None => return Err(CibError::Config(format!("bad server {s:?}"))),
            }
        } else if s.matches(':').count() == 1 {
            let (h, p) = s.split_once(':').unwrap_or((s, ""));
            (h.to_string(), Some(p))
        } else {
            (s.to_string(), None)
        };
        let port = match p {
            Some(p) => p
                .parse()
                .map_err(|_| CibError::Config(format!("bad port in server {s:?}")))?,
            None => port,
        };
        out.push(Endpoint { host, port });
    }
    if out.is_empty() {
        return Err(CibError::Config("no CIB server given".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let cfg = ClientConfig::new(
            vec![Endpoint {
                host: "node1".into(),
                port: 5989,
            }],
            Transport::Tls,
            Secret::new("hunter2"),
        );
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn endpoints_parse() {
        let eps = parse_endpoints("node1, node2:5990,[::1]:7,[fe80::1]", "5989").unwrap();
        assert_eq!(
            eps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["node1:5989", "node2:5990", "[::1]:7", "[fe80::1]:5989"]
        );
        assert!(parse_endpoints("a:xx", "5989").is_err());
        assert!(parse_endpoints("a", "99999").is_err());
        assert!(parse_endpoints(" , ", "1").is_err());
    }

    #[test]
    fn backoff_grows_within_bounds() {
        let p = RetryPolicy::default();
        assert!(p.backoff(0) >= Duration::from_millis(50));
        assert!(p.backoff(30) <= Duration::from_millis(2500));
    }
}
