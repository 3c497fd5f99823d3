//! A throw-away PKI for the X.509 tests, made with GnuTLS's `certtool` in a temporary directory
//! at test time (no private key is ever committed): two CAs, a server and clients of every kind a
//! server must tell apart (good, from the other CA, revoked, expired). Removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use kubemaker::tls::{X509Credentials, X509Files, X509Pem};

/// Where [`TestPki::start_cluster_in_x509_mode`] puts the cluster's certificates on its node.
pub const CLUSTER_PKI: &str = "/etc/pacemaker/x509";

/// The X.509 settings of a daemon (remote node or cluster).
pub fn x509_env(ca: &Path, cert: &Path, key: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PCMK_ca_file", ca.display().to_string()),
        ("PCMK_cert_file", cert.display().to_string()),
        ("PCMK_key_file", key.display().to_string()),
    ]
}

/// The PKI's directory and file names. Every leaf is signed by CA "ca" unless its name says
/// otherwise; `crl.pem` (by "ca") revokes `revoked`.
pub struct TestPki {
    pub dir: PathBuf,
}

/// A certificate and its key.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    /// Makes the PKI with `certtool` (None when it is missing: the caller skips).
    pub fn generate(name: &str) -> Option<TestPki> {
        let certtool = which("certtool")?;
        let dir = std::env::temp_dir().join(format!("kubemaker-pki-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pki dir");
        let pki = TestPki { dir };
        let run = |args: &[&str]| {
            let out = Command::new(&certtool)
                .args(args)
                .current_dir(&pki.dir)
                .output()
                .expect("run certtool");
            assert!(
                out.status.success(),
                "certtool {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let template = |file: &str, body: &str| {
            std::fs::write(pki.dir.join(file), body).expect("template");
        };
        for (ca, cn) in [("ca", "kubemaker test CA"), ("otherca", "another CA")] {
            run(&[
                "--generate-privkey",
                "--key-type=ecdsa",
                "--outfile",
                &format!("{ca}.key"),
            ]);
            template(
                &format!("{ca}.tmpl"),
                &format!(
                    "cn = \"{cn}\"\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 3\n"
                ),
            );
            run(&[
                "--generate-self-signed",
                "--load-privkey",
                &format!("{ca}.key"),
                "--template",
                &format!("{ca}.tmpl"),
                "--outfile",
                &format!("{ca}.pem"),
            ]);
        }
        // (name, signing CA, key type, validity lines)
        let leaves = [
            ("server", "ca", "rsa", "expiration_days = 3\n"),
            ("client", "ca", "ecdsa", "expiration_days = 3\n"),
            ("foreign", "otherca", "ecdsa", "expiration_days = 3\n"),
            ("revoked", "ca", "ecdsa", "expiration_days = 3\n"),
            (
                "expired",
                "ca",
                "ecdsa",
                "activation_date = \"2020-01-01 00:00:00 UTC\"\nexpiration_date = \"2020-01-02 00:00:00 UTC\"\n",
            ),
        ];
        for (leaf, ca, key_type, validity) in leaves {
            run(&[
                "--generate-privkey",
                &format!("--key-type={key_type}"),
                "--outfile",
                &format!("{leaf}.key"),
            ]);
            template(
                &format!("{leaf}.tmpl"),
                &format!(
                    "cn = \"{leaf}\"\ntls_www_client\ntls_www_server\nsigning_key\nencryption_key\n{validity}"
                ),
            );
            run(&[
                "--generate-certificate",
                "--load-privkey",
                &format!("{leaf}.key"),
                "--load-ca-certificate",
                &format!("{ca}.pem"),
                "--load-ca-privkey",
                &format!("{ca}.key"),
                "--template",
                &format!("{leaf}.tmpl"),
                "--outfile",
                &format!("{leaf}.pem"),
            ]);
        }
        template("crl.tmpl", "crl_next_update = 3\ncrl_number = 1\n");
        run(&[
            "--generate-crl",
            "--load-ca-privkey",
            "ca.key",
            "--load-ca-certificate",
            "ca.pem",
            "--load-certificate",
            "revoked.pem",
            "--template",
            "crl.tmpl",
            "--outfile",
            "crl.pem",
        ]);
        Some(pki)
    }

    /// Puts the 3.x test cluster in X.509 mode: the CA and `leaf` (the cluster's client
    /// certificate) under [`CLUSTER_PKI`] on the node, pacemakerd restarted with `PCMK_*_file`
    /// pointing there (what /etc/default/pacemaker gives it on a real node). For a caller that
    /// holds the cluster lock; restarting without them (`cluster::restart_test_cluster`) undoes it.
    pub fn start_cluster_in_x509_mode(&self, leaf: &str) {
        let l = self.leaf(leaf);
        for (file, source) in [
            ("ca.pem", self.ca()),
            ("client.pem", l.cert),
            ("client.key", l.key),
        ] {
            let data = std::fs::read(&source).expect("read the test PKI");
            super::install_cluster_file(&format!("{CLUSTER_PKI}/{file}"), &data);
        }
        let settings = x509_env(
            Path::new(&format!("{CLUSTER_PKI}/ca.pem")),
            Path::new(&format!("{CLUSTER_PKI}/client.pem")),
            Path::new(&format!("{CLUSTER_PKI}/client.key")),
        )
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
        super::cluster::start_test_cluster_with(&settings);
    }

    /// `leaf` as a `kubernetes.io/tls` Secret with the CA beside it, as a cert-manager
    /// Certificate issues one.
    pub fn tls_secret(&self, namespace: &str, name: &str, leaf: &str) -> serde_json::Value {
        let l = self.leaf(leaf);
        let read = |p: &Path| std::fs::read(p).expect("read the test PKI");
        super::operator::secret(
            namespace,
            name,
            "kubernetes.io/tls",
            &[
                ("tls.crt", &read(&l.cert)),
                ("tls.key", &read(&l.key)),
                ("ca.crt", &read(&self.ca())),
            ],
        )
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    pub fn crl(&self) -> PathBuf {
        self.path("crl.pem")
    }

    pub fn leaf(&self, name: &str) -> Leaf {
        Leaf {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        }
    }

    /// The files of `leaf` trusting CA `ca` ("ca" or "otherca"), with the CRL when `crl`.
    pub fn files(&self, leaf: &str, ca: &str, crl: bool) -> X509Files {
        let l = self.leaf(leaf);
        X509Files {
            ca: self.path(&format!("{ca}.pem")),
            cert: l.cert,
            key: l.key,
            crl: crl.then(|| self.crl()),
        }
    }

    pub fn pem(&self, leaf: &str, ca: &str, crl: bool) -> X509Pem {
        self.files(leaf, ca, crl).read().expect("read test PKI")
    }

    pub fn creds(&self, leaf: &str, ca: &str, crl: bool) -> X509Credentials {
        X509Credentials::new(&self.pem(leaf, ca, crl)).expect("load test PKI")
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}
