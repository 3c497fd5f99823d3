//! Key and certificate material, from files or from memory, and the rules Pacemaker 3.0 uses to
//! pick a TLS mode from its environment.
//!
//! - [`X509Pem`]: PEM bytes of the CA certificate(s), our certificate, its private key and an
//!   optional CRL; [`X509Files`] names the files and reads them ([`X509Files::from_env`] applies
//!   Pacemaker's variables and rule). [`X509Credentials`] is the loaded, shareable GnuTLS form.
//! - [`PskKey`]: a pre-shared key (raw bytes; [`PskKey::from_hex`] for the hex text of
//!   Pacemaker's CIB key files).
//! - [`SecretBytes`]: bytes that never print and are wiped when dropped.
//!
//! Errors are [`CredentialError`]: which file (or "given in memory"), and what is wrong with it;
//! never key bytes.

#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::TlsError;
use super::session::{CertCreds, Certificate};

/// Bytes that must not leak: `Debug` prints `<redacted>`, there is no `Display`, and the
/// memory is overwritten with zeros when dropped.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(bytes)
    }

    /// The bytes, for the one place that hands them to GnuTLS.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(bytes)
    }
}

/// What is wrong with key or certificate material. `origin` is the file's path, or
/// `"(given in memory)"`. Never holds key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the {what} file {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the {what} {origin} is empty")]
    Empty { what: &'static str, origin: String },
    #[error("invalid {what} in {origin}: {message}")]
    Invalid {
        what: &'static str,
        origin: String,
        message: String,
    },
    #[error(
        "the PSK key in {origin} must be hexadecimal digits only (as in Pacemaker's cib-credentials), {problem}"
    )]
    NotHex { origin: String, problem: String },
    #[error("refusing to use the key file {path}: {reason}")]
    UnsafeFile { path: PathBuf, reason: String },
}

/// Where material given as bytes came from, for error messages.
const IN_MEMORY: &str = "(given in memory)";

/// A pre-shared key, the raw bytes GnuTLS is given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PskKey(SecretBytes);

impl PskKey {
    /// Raw key bytes (Pacemaker Remote's authkey is used this way).
    pub fn from_raw(bytes: Vec<u8>) -> Result<PskKey, CredentialError> {
        if bytes.is_empty() {
            return Err(CredentialError::Empty {
                what: "PSK key",
                origin: IN_MEMORY.into(),
            });
        }
        Ok(PskKey(SecretBytes::new(bytes)))
    }

    /// The text form of Pacemaker's remote-CIB keys (3.0.2: `CIB_key_file` on the client, the
    /// `username:key` lines of `/etc/pacemaker/cib-credentials` on the server): hexadecimal
    /// digits, surrounding white space ignored; decoded to the raw key.
    pub fn from_hex(text: &str) -> Result<PskKey, CredentialError> {
        Self::from_hex_in(text, IN_MEMORY)
    }

    fn from_hex_in(text: &str, source: &str) -> Result<PskKey, CredentialError> {
        let not_hex = |problem: String| CredentialError::NotHex {
            origin: source.to_string(),
            problem,
        };
        let digits = text.trim().as_bytes();
        if digits.is_empty() {
            return Err(CredentialError::Empty {
                what: "PSK key",
                origin: source.to_string(),
            });
        }
        if let Some(at) = digits.iter().position(|c| !c.is_ascii_hexdigit()) {
            return Err(not_hex(format!("but character {} is not one", at + 1)));
        }
        if !digits.len().is_multiple_of(2) {
            return Err(not_hex(format!(
                "and an even number of them, not {}",
                digits.len()
            )));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        };
        let bytes = digits
            .chunks(2)
            .map(|p| (nibble(p[0]) << 4) | nibble(p[1]))
            .collect();
        Ok(PskKey(SecretBytes::new(bytes)))
    }

    /// Reads a hex key file (`CIB_key_file`) with Pacemaker 3.0.2's checks: a regular file
    /// owned by the effective user, without group or other permissions.
    pub fn from_hex_file(path: &Path) -> Result<PskKey, CredentialError> {
        check_private_file(path)?;
        let text = read_file("PSK key", path)?;
        let text =
            String::from_utf8(text.expose().to_vec()).map_err(|_| CredentialError::NotHex {
                origin: path.display().to_string(),
                problem: "but it is not text".into(),
            })?;
        let key = Self::from_hex_in(&text, &path.display().to_string());
        drop(SecretBytes::new(text.into_bytes()));
        key
    }

    pub fn expose(&self) -> &[u8] {
        self.0.expose()
    }
}

/// Pacemaker's `pcmk__cred_file_useable`: regular file, owned by us, mode `0?00`.
fn check_private_file(path: &Path) -> Result<(), CredentialError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| CredentialError::Read {
        what: "PSK key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let unsafe_file = |reason: String| CredentialError::UnsafeFile {
        path: path.to_path_buf(),
        reason,
    };
    if !meta.is_file() {
        return Err(unsafe_file("not a regular file".into()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(unsafe_file(format!(
            "owned by UID {}, not by this process's UID {euid}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_file(format!(
            "mode {:04o} gives group or other access (chmod 600 it)",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

fn read_file(what: &'static str, path: &Path) -> Result<SecretBytes, CredentialError> {
    let bytes = std::fs::read(path).map_err(|e| CredentialError::Read {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if bytes.is_empty() {
        return Err(CredentialError::Empty {
            what,
            origin: path.display().to_string(),
        });
    }
    Ok(SecretBytes::new(bytes))
}

/// The files of X.509 mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub crl: Option<PathBuf>,
}

impl X509Files {
    /// Pacemaker 3.0's rule (`pcmk__x509_enabled`, `pcmk__init_tls`), for servers and CIB
    /// clients alike: each file is `PCMK_ca_file`/`PCMK_cert_file`/`PCMK_key_file`/
    /// `PCMK_crl_file`, or when that is unset or empty `CIB_ca_file`/`CIB_cert_file`/
    /// `CIB_key_file`/`CIB_crl_file`; X.509 is on only when the CA, certificate and key are all
    /// set (`None` otherwise: PSK or anonymous as before). The CRL is optional.
    pub fn from_env() -> Option<X509Files> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`X509Files::from_env`] over any variable lookup (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<X509Files> {
        let get = |what: &str| {
            [format!("PCMK_{what}_file"), format!("CIB_{what}_file")]
                .iter()
                .find_map(|name| lookup(name).filter(|v| !v.is_empty()))
                .map(PathBuf::from)
        };
        Some(X509Files {
            ca: get("ca")?,
            cert: get("cert")?,
            key: get("key")?,
            crl: get("crl"),
        })
    }

    /// Reads the files (no parsing yet: [`X509Credentials::new`] does that).
    pub fn read(&self) -> Result<X509Pem, CredentialError> {
        let mut pem = X509Pem::new(
            read_file("CA certificate", &self.ca)?.expose().to_vec(),
            read_file("certificate", &self.cert)?.expose().to_vec(),
            read_file("private key", &self.key)?,
            match &self.crl {
                Some(p) => Some(read_file("CRL", p)?.expose().to_vec()),
                None => None,
            },
        );
        pem.sources = Some(self.clone());
        Ok(pem)
    }
}

/// PEM material of X.509 mode: the CA certificate(s) peers must chain to (the only trust
/// anchors), our certificate (optionally followed by intermediates), its unencrypted private
/// key (PKCS#1, SEC1 or PKCS#8), and optionally a CRL. This is what a `kubernetes.io/tls`
/// Secret with `ca.crt` holds (`ca.crt`, `tls.crt`, `tls.key`). `Debug` hides the key.
#[derive(Clone)]
pub struct X509Pem {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: SecretBytes,
    pub crl: Option<Vec<u8>>,
    /// The files it was read from, for error messages.
    sources: Option<X509Files>,
}

impl fmt::Debug for X509Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Pem")
            .field("ca_bytes", &self.ca.len())
            .field("cert_bytes", &self.cert.len())
            .field("key", &self.key)
            .field("crl_bytes", &self.crl.as_ref().map(Vec::len))
            .field("files", &self.sources)
            .finish()
    }
}

/// Equal when the material is (where it was read from does not count).
impl PartialEq for X509Pem {
    fn eq(&self, other: &Self) -> bool {
        (&self.ca, &self.cert, &self.key, &self.crl)
            == (&other.ca, &other.cert, &other.key, &other.crl)
    }
}

impl Eq for X509Pem {}

impl std::hash::Hash for X509Pem {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.ca, &self.cert, &self.key, &self.crl).hash(state);
    }
}

impl X509Pem {
    pub fn new(
        ca: Vec<u8>,
        cert: Vec<u8>,
        key: impl Into<SecretBytes>,
        crl: Option<Vec<u8>>,
    ) -> X509Pem {
        X509Pem {
            ca,
            cert,
            key: key.into(),
            crl,
            sources: None,
        }
    }

    fn source(&self, pick: impl Fn(&X509Files) -> Option<&PathBuf>) -> String {
        self.sources
            .as_ref()
            .and_then(pick)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| IN_MEMORY.to_string())
    }

    /// The subject of our certificate, e.g. `CN=node1`.
    pub fn cert_subject(&self) -> Result<Option<String>, CredentialError> {
        Ok(self.own_certificate()?.subject())
    }

    /// Seconds since the epoch at which our certificate expires.
    pub fn cert_expiration(&self) -> Result<Option<i64>, CredentialError> {
        Ok(self.own_certificate()?.expiration())
    }

    fn own_certificate(&self) -> Result<Certificate, CredentialError> {
        Certificate::from_pem(&self.cert).map_err(|e| CredentialError::Invalid {
            what: "certificate",
            origin: self.source(|f| Some(&f.cert)),
            message: tls_message(e),
        })
    }
}

fn tls_message(e: TlsError) -> String {
    match e {
        TlsError::Credentials { message, .. } => message,
        other => other.to_string(),
    }
}

/// Loaded X.509 credentials (GnuTLS's certificate credentials), cheap to clone and share
/// between connections. Peers are verified against the CA (and CRL) only; no host-name check.
#[derive(Clone)]
pub struct X509Credentials {
    pub(super) creds: Arc<CertCreds>,
}

impl fmt::Debug for X509Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X509Credentials")
    }
}

impl X509Credentials {
    /// Parses and loads `pem`; errors name the part (and file) GnuTLS refused.
    pub fn new(pem: &X509Pem) -> Result<X509Credentials, CredentialError> {
        if pem.ca.is_empty() {
            return Err(CredentialError::Empty {
                what: "CA certificate",
                origin: pem.source(|f| Some(&f.ca)),
            });
        }
        if pem.cert.is_empty() {
            return Err(CredentialError::Empty {
                what: "certificate",
                origin: pem.source(|f| Some(&f.cert)),
            });
        }
        if pem.key.is_empty() {
            return Err(CredentialError::Empty {
                what: "private key",
                origin: pem.source(|f| Some(&f.key)),
            });
        }
        let creds = CertCreds::new(&pem.ca, pem.crl.as_deref(), &pem.cert, pem.key.expose())
            .map_err(|e| {
                let (what, message) = match e {
                    TlsError::Credentials { what, message } => (what, message),
                    other => ("X.509 credentials", other.to_string()),
                };
                let source = match what {
                    "CA certificates" => pem.source(|f| Some(&f.ca)),
                    "CRL" => pem.source(|f| f.crl.as_ref()),
                    _ => match &pem.sources {
                        Some(f) => format!("{} / {}", f.cert.display(), f.key.display()),
                        None => IN_MEMORY.to_string(),
                    },
                };
                CredentialError::Invalid {
                    what,
                    origin: source,
                    message,
                }
            })?;
        Ok(X509Credentials {
            creds: Arc::new(creds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "<redacted>");
        let k = PskKey::from_hex("68756e74657232").unwrap();
        assert_eq!(k.expose(), b"hunter2");
        assert!(!format!("{k:?}").contains("hunter2"));
        let pem = X509Pem::new(b"ca".to_vec(), b"cert".to_vec(), b"KEYBYTES".to_vec(), None);
        let dbg = format!("{pem:?}");
        assert!(!dbg.contains("KEYBYTES"), "{dbg}");
    }

    #[test]
    fn hex_keys() {
        assert_eq!(PskKey::from_hex(" 0aFf\n").unwrap().expose(), &[0x0a, 0xff]);
        let e = PskKey::from_hex("0g").unwrap_err();
        assert!(e.to_string().contains("character 2"), "{e}");
        assert!(
            PskKey::from_hex("abc")
                .unwrap_err()
                .to_string()
                .contains("even")
        );
        assert!(matches!(
            PskKey::from_hex(" \n").unwrap_err(),
            CredentialError::Empty { .. }
        ));
        assert!(PskKey::from_raw(Vec::new()).is_err());
    }

    #[test]
    fn hex_key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("km-pskfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "00112233\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = PskKey::from_hex_file(&path).unwrap_err();
        assert!(matches!(e, CredentialError::UnsafeFile { .. }), "{e}");
        assert!(e.to_string().contains("0640"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            PskKey::from_hex_file(&path).unwrap().expose(),
            &[0x00, 0x11, 0x22, 0x33]
        );
        let e = PskKey::from_hex_file(&dir.join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn x509_env_rule() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        // All three needed.
        assert_eq!(
            X509Files::from_lookup(env(&[("PCMK_ca_file", "/ca"), ("PCMK_cert_file", "/c")])),
            None
        );
        // PCMK_ first, CIB_ when PCMK_ is unset or empty; CRL optional.
        let f = X509Files::from_lookup(env(&[
            ("PCMK_ca_file", ""),
            ("CIB_ca_file", "/cib-ca"),
            ("PCMK_cert_file", "/c"),
            ("CIB_cert_file", "/cib-c"),
            ("CIB_key_file", "/k"),
        ]))
        .unwrap();
        assert_eq!(f.ca, PathBuf::from("/cib-ca"));
        assert_eq!(f.cert, PathBuf::from("/c"));
        assert_eq!(f.key, PathBuf::from("/k"));
        assert_eq!(f.crl, None);
    }

    #[test]
    fn unreadable_and_garbage_material_is_named() {
        let files = X509Files {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/c.pem".into(),
            key: "/nonexistent/k.pem".into(),
            crl: None,
        };
        let e = files.read().unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let pem = X509Pem::new(b"not pem".to_vec(), b"x".to_vec(), b"y".to_vec(), None);
        let e = X509Credentials::new(&pem).unwrap_err();
        assert!(e.to_string().contains("CA certificates"), "{e}");
        assert!(e.to_string().contains(IN_MEMORY), "{e}");
    }
}
