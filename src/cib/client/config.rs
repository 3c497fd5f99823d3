//! Where the CIB is and how to log in: endpoints (one per cluster node), transport and its TLS
//! authentication ([`TlsAuth`]: anonymous, PSK or X.509), user and password, timeouts, retry
//! policy; read from Pacemaker's own `CIB_*` variables, or built in memory (the operator, from
//! Kubernetes Secrets).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tracing::warn;

use super::error::CibError;
use crate::cib::model::is_true;
use crate::tls::{CredentialError, PskKey, X509Credentials, X509Files, X509Pem};

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
    /// `remote-tls-port`: TLS, authenticated as [`ClientConfig::tls_auth`] says (anonymous
    /// Diffie-Hellman on Pacemaker 2.1.x).
    Tls,
    /// `remote-clear-port`: no encryption; the password crosses the network in clear. Tests only.
    Plain,
}

/// How the TLS of the remote CIB port (`Transport::Tls`) authenticates. The server decides which
/// mode its port speaks (Pacemaker 3.0's `pacemaker-based`: X.509 when its `PCMK_ca_file`,
/// `PCMK_cert_file` and `PCMK_key_file` are set, else PSK when `/etc/pacemaker/cib-credentials`
/// exists, else anonymous); the client must use the same one.
///
/// `Debug` never shows key material; `Hash`/`PartialEq` cover it (so a changed Secret changes a
/// configuration fingerprint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum TlsAuth {
    /// Anonymous Diffie-Hellman (`NORMAL:+ANON-DH`): encrypted, but the server is not
    /// authenticated. Pacemaker 2.1.x's only mode; deprecated in 3.0.2.
    #[default]
    Anonymous,
    /// Pre-shared key (Pacemaker 3.0.2+, `+DHE-PSK:+PSK`). The identity is the CIB user
    /// ([`ClientConfig::user`]); the key is the one on that user's line of the server's
    /// `/etc/pacemaker/cib-credentials` (`user:hexkey`). Build it with [`TlsAuth::psk_hex`].
    Psk { key: PskKey },
    /// X.509 (Pacemaker 3.0.0+): our certificate and key, and the CA the server's certificate
    /// must chain to (no host-name check); the server requires our certificate to chain to its
    /// CA. Build it with [`TlsAuth::x509`].
    X509(X509Pem),
    /// kubemaker's CIB gateway on a connected remote node (`kubemaker remoted`'s optional
    /// listener, see `wire::cib_gateway`): PSK with the Pacemaker Remote authkey under the
    /// gateway's own identity, and no password. Build it with [`TlsAuth::gateway`].
    Gateway { key: PskKey },
}

impl TlsAuth {
    /// The CIB gateway with the Pacemaker Remote authkey's bytes (the `authkey` of the
    /// cluster's authkey Secret, or `/etc/pacemaker/authkey`).
    pub fn gateway(authkey: Vec<u8>) -> Result<TlsAuth, CredentialError> {
        Ok(TlsAuth::Gateway {
            key: PskKey::from_raw(authkey)?,
        })
    }

    /// Whether the login needs a password (everything but the gateway).
    pub fn needs_password(&self) -> bool {
        !matches!(self, TlsAuth::Gateway { .. })
    }

    /// PSK from the hex text Pacemaker keeps keys in (the `CIB_key_file` content, or the part
    /// after `user:` in `cib-credentials`); white space around it is ignored.
    pub fn psk_hex(hex: &str) -> Result<TlsAuth, CredentialError> {
        Ok(TlsAuth::Psk {
            key: PskKey::from_hex(hex)?,
        })
    }

    /// X.509 from PEM bytes: the CA certificate(s) (`ca.crt` of a cert-manager Secret), our
    /// certificate (`tls.crt`), its unencrypted private key (`tls.key`), optionally a CRL. The
    /// material is parsed here, so a bad Secret fails now, with a message naming the part.
    pub fn x509(
        ca_pem: Vec<u8>,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        crl_pem: Option<Vec<u8>>,
    ) -> Result<TlsAuth, CredentialError> {
        let pem = X509Pem::new(ca_pem, cert_pem, key_pem, crl_pem);
        X509Credentials::new(&pem)?;
        Ok(TlsAuth::X509(pem))
    }

    /// Pacemaker 3.0.2's client rule (`cib_remote.c`): X.509 when the CA, certificate and key
    /// files are all set (`PCMK_*_file`, else `CIB_*_file`, see [`X509Files::from_env`]); else
    /// PSK when `CIB_key_file` names an existing file, which must then be a regular file owned
    /// by us with no group or other permissions and hold a hex key; else anonymous (with a
    /// warning when `CIB_key_file` named a file that does not exist, as Pacemaker does).
    pub fn from_env() -> Result<TlsAuth, CredentialError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`TlsAuth::from_env`] over any variable lookup.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<TlsAuth, CredentialError> {
        if let Some(files) = X509Files::from_lookup(&lookup) {
            let pem = files.read()?;
            X509Credentials::new(&pem)?;
            return Ok(TlsAuth::X509(pem));
        }
        let Some(path) = lookup("CIB_key_file")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
        else {
            return Ok(TlsAuth::Anonymous);
        };
        if std::fs::symlink_metadata(&path).is_err() && std::fs::metadata(&path).is_err() {
            warn!(path = %path.display(), "CIB_key_file does not exist; falling back to anonymous authentication for the remote CIB");
            return Ok(TlsAuth::Anonymous);
        }
        Ok(TlsAuth::Psk {
            key: PskKey::from_hex_file(&path)?,
        })
    }

    /// "anonymous", "PSK" or "X.509", for messages.
    pub fn mode(&self) -> &'static str {
        match self {
            TlsAuth::Anonymous => "anonymous",
            TlsAuth::Psk { .. } => "PSK",
            TlsAuth::X509(_) => "X.509",
            TlsAuth::Gateway { .. } => "CIB gateway",
        }
    }
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
    /// How `Transport::Tls` authenticates; anonymous unless set.
    pub tls_auth: TlsAuth,
    /// The login user; with [`TlsAuth::Psk`] also the PSK identity.
    pub user: String,
    pub password: Secret,
    /// Shown in Pacemaker's logs and in the CIB's `update-client`.
    pub client_name: String,
    /// TCP connect plus TLS handshake, per endpoint.
    pub connect_timeout: Duration,
    /// Login reply; PAM can delay a refusal by 3 s on Debian.
    pub login_timeout: Duration,
    pub request_timeout: Duration,
    /// How long a cluster node may leave our data unacknowledged, or an idle connection's
    /// keepalive probes unanswered, before the connection counts as lost: a node that loses its
    /// power or its link sends no FIN, so without this an idle notification connection would
    /// wait for ever. Zero turns the probes off. See [`super::connection::DeadPeerProbes`].
    pub dead_peer_timeout: Duration,
    pub retry: RetryPolicy,
}

pub const DEFAULT_USER: &str = "hacluster";

impl ClientConfig {
    pub fn new(endpoints: Vec<Endpoint>, transport: Transport, password: Secret) -> ClientConfig {
        ClientConfig {
            endpoints,
            transport,
            tls_auth: TlsAuth::Anonymous,
            user: DEFAULT_USER.into(),
            password,
            client_name: "kubemaker".into(),
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            dead_peer_timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
        }
    }

    /// The same with TLS authenticated by `tls_auth` (the operator's constructor).
    pub fn with_tls_auth(mut self, tls_auth: TlsAuth) -> ClientConfig {
        self.tls_auth = tls_auth;
        self
    }

    /// Settings from the variables Pacemaker's own tools read: `CIB_server` (here also a
    /// comma-separated list, one per cluster node), `CIB_port`, `CIB_user`, `CIB_passwd`,
    /// `CIB_encrypted` (default true), and for the TLS mode (see [`TlsAuth::from_env`])
    /// `CIB_ca_file`, `CIB_cert_file`, `CIB_key_file`, `CIB_crl_file`.
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
        if encrypted {
            cfg.tls_auth = TlsAuth::from_env()?;
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
    fn tls_auth_never_prints_keys() {
        let cfg = ClientConfig::new(vec![], Transport::Tls, Secret::new("pw"))
            .with_tls_auth(TlsAuth::psk_hex("6b65796b65796b6579").unwrap());
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("6b65") && !dbg.contains("keykeykey"), "{dbg}");
        assert_eq!(cfg.tls_auth.mode(), "PSK");
        let pem = TlsAuth::X509(X509Pem::new(
            b"ca".to_vec(),
            b"cert".to_vec(),
            b"SECRETKEY".to_vec(),
            None,
        ));
        assert!(!format!("{pem:?}").contains("SECRETKEY"));
        // A changed key is a changed configuration.
        assert_ne!(
            TlsAuth::psk_hex("00").unwrap(),
            TlsAuth::psk_hex("01").unwrap()
        );
        assert!(matches!(
            TlsAuth::psk_hex("zz"),
            Err(CredentialError::NotHex { .. })
        ));
        assert!(TlsAuth::x509(b"x".to_vec(), b"y".to_vec(), b"z".to_vec(), None).is_err());
    }

    #[test]
    fn tls_auth_env_rule() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("km-cibauth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cib-key");
        std::fs::write(&key, "a1b2c3d4\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let key_s = key.display().to_string();
        let lookup = |pairs: Vec<(&'static str, String)>| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        assert_eq!(
            TlsAuth::from_lookup(lookup(vec![])).unwrap(),
            TlsAuth::Anonymous
        );
        let psk = TlsAuth::from_lookup(lookup(vec![("CIB_key_file", key_s.clone())])).unwrap();
        assert_eq!(psk, TlsAuth::psk_hex("a1b2c3d4").unwrap());
        // A missing key file falls back to anonymous, as Pacemaker does.
        let missing = dir.join("nope").display().to_string();
        assert_eq!(
            TlsAuth::from_lookup(lookup(vec![("CIB_key_file", missing)])).unwrap(),
            TlsAuth::Anonymous
        );
        // An existing one with loose permissions is an error, not a fallback.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            TlsAuth::from_lookup(lookup(vec![("CIB_key_file", key_s.clone())])),
            Err(CredentialError::UnsafeFile { .. })
        ));
        // CA + cert + key: X.509, whose files are read (and here missing: named in the error).
        let e = TlsAuth::from_lookup(lookup(vec![
            ("CIB_key_file", key_s.clone()),
            ("CIB_ca_file", "/nonexistent/ca.pem".into()),
            ("CIB_cert_file", "/nonexistent/cert.pem".into()),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
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
