//! Pacemaker 3.0's X.509 mode, our server against our client over 127.0.0.1, with certificates
//! made at test time by `certtool` (support::certs): the handshake succeeds with a client
//! certificate signed by the configured CA, and is refused for a client without a certificate
//! (one from another CA is not even offered), with a revoked one (CRL) and with an expired one;
//! a client refuses a server from another CA. Also the
//! credential loading errors (which file, what is wrong).

mod support;

use std::time::Duration;

use kubemaker::tls::{
    CredentialError, TlsError, TlsStream, X509Credentials, X509Files, X509Pem, X509Server,
    connect_anon, connect_x509,
};
use support::certs::TestPki;
use support::env::require_tools;

/// Pacemaker 3.0's X.509 priorities with the default base.
const PRIO: &str = "NORMAL";
const HS: Duration = Duration::from_secs(10);
const TEST_LIMIT: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, fut)
        .await
        .expect("test exceeded its time limit")
}

fn pki(name: &str) -> Option<TestPki> {
    if !require_tools(&["certtool"]) {
        return None;
    }
    TestPki::generate(name)
}

enum Client<'a> {
    X509(&'a X509Credentials, &'a str),
    Anonymous,
}

/// One loopback connection handshaken by `server` and the client concurrently.
async fn handshake_pair(
    server: &X509Server,
    client: Client<'_>,
) -> (Result<TlsStream, TlsError>, Result<TlsStream, TlsError>) {
    support::tls_pair::loopback_pair(
        |tcp| server.accept(tcp, HS),
        |tcp| async move {
            match client {
                Client::X509(creds, prio) => connect_x509(tcp, creds, prio, HS).await,
                Client::Anonymous => connect_anon(tcp, "NORMAL:+ANON-DH", HS).await,
            }
        },
    )
    .await
}

/// In TLS 1.3 the client finishes its handshake before the server has checked the client's
/// certificate; the refusal then arrives as an alert on the first read.
async fn assert_client_refused(client: Result<TlsStream, TlsError>) {
    if let Ok(mut c) = client {
        let mut buf = [0u8; 16];
        match c.read(&mut buf).await {
            Err(_) | Ok(0) => {}
            Ok(n) => panic!("client read {n} bytes from a server that refused it"),
        }
    }
}

async fn exchange(a: &mut TlsStream, b: &mut TlsStream) {
    a.write_record(b"ping").await.expect("write");
    let mut buf = [0u8; 16];
    let n = b.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"ping");
}

#[tokio::test]
async fn ca_signed_client_is_accepted_both_ways_verified() {
    let Some(pki) = pki("ok") else { return };
    bounded(async {
        let server = X509Server::new(pki.creds("server", "ca", true), PRIO).expect("server");
        for prio in ["NORMAL", "NORMAL:-VERS-TLS1.3"] {
            let client = pki.creds("client", "ca", false);
            let (s, c) = handshake_pair(&server, Client::X509(&client, prio)).await;
            let (mut s, mut c) = (s.expect("server handshake"), c.expect("client handshake"));
            assert_eq!(s.peer_certificate_subject().as_deref(), Some("CN=client"));
            assert_eq!(c.peer_certificate_subject().as_deref(), Some("CN=server"));
            let desc = s.description();
            if prio.contains("-VERS-TLS1.3") {
                assert!(desc.starts_with("(TLS1.2)"), "{desc}");
            } else {
                assert!(desc.starts_with("(TLS1.3)"), "{desc}");
            }
            exchange(&mut c, &mut s).await;
            exchange(&mut s, &mut c).await;
        }
    })
    .await;
}

#[tokio::test]
async fn clients_without_a_valid_certificate_are_refused() {
    let Some(pki) = pki("refused") else { return };
    bounded(async {
        let server = X509Server::new(pki.creds("server", "ca", true), PRIO).expect("server");

        // Anonymous client: no certificate at all (and no common key exchange).
        let (s, c) = handshake_pair(&server, Client::Anonymous).await;
        assert!(s.is_err() && c.is_err());

        // A certificate from another CA (the client trusts our CA, so only the server refuses).
        // The server names its CA in the certificate request, and a GnuTLS client sends only
        // a certificate issued by a named CA: so this client presents none, which is also the
        // "client without a certificate" case. (gnutls-cli presenting one anyway is in
        // tls_interop.rs.)
        let foreign = X509Credentials::new(&X509Pem::new(
            std::fs::read(pki.ca()).unwrap(),
            std::fs::read(pki.leaf("foreign").cert).unwrap(),
            std::fs::read(pki.leaf("foreign").key).unwrap(),
            None,
        ))
        .expect("foreign creds");
        let (s, c) = handshake_pair(&server, Client::X509(&foreign, PRIO)).await;
        match s {
            Err(e @ TlsError::NoPeerCertificate { .. }) => {
                assert!(e.to_string().contains("no certificate"), "{e}")
            }
            other => panic!("foreign certificate: {:?}", other.map(|_| ())),
        }
        assert_client_refused(c).await;

        // Revoked by the CRL.
        let revoked = pki.creds("revoked", "ca", false);
        let (s, c) = handshake_pair(&server, Client::X509(&revoked, PRIO)).await;
        match s {
            Err(TlsError::CertificateRejected { status, .. }) => {
                assert!(
                    status & kubemaker::tls::ffi::GNUTLS_CERT_REVOKED != 0,
                    "{status:#x}"
                )
            }
            other => panic!("revoked certificate: {:?}", other.map(|_| ())),
        }
        assert_client_refused(c).await;
        // Without the CRL the same certificate is accepted: the CRL is what refused it.
        let server_no_crl =
            X509Server::new(pki.creds("server", "ca", false), PRIO).expect("server");
        let (s, c) = handshake_pair(&server_no_crl, Client::X509(&revoked, PRIO)).await;
        assert!(s.is_ok() && c.is_ok());

        // Expired.
        let expired = pki.creds("expired", "ca", false);
        let (s, c) = handshake_pair(&server, Client::X509(&expired, PRIO)).await;
        match s {
            Err(TlsError::CertificateRejected { status, .. }) => {
                assert!(
                    status & kubemaker::tls::ffi::GNUTLS_CERT_EXPIRED != 0,
                    "{status:#x}"
                )
            }
            other => panic!("expired certificate: {:?}", other.map(|_| ())),
        }
        assert_client_refused(c).await;
    })
    .await;
}

#[tokio::test]
async fn client_refuses_a_server_from_another_ca() {
    let Some(pki) = pki("client-side") else {
        return;
    };
    bounded(async {
        // The server's certificate is signed by "ca"; this client trusts only "otherca".
        let server = X509Server::new(pki.creds("server", "ca", false), PRIO).expect("server");
        let client = pki.creds("foreign", "otherca", false);
        let (s, c) = handshake_pair(&server, Client::X509(&client, PRIO)).await;
        match c {
            Err(TlsError::CertificateRejected { subject, .. }) => {
                assert_eq!(subject.as_deref(), Some("CN=server"))
            }
            other => panic!(
                "client accepted an untrusted server: {:?}",
                other.map(|_| ())
            ),
        }
        assert!(s.is_err());
    })
    .await;
}

#[tokio::test]
async fn credential_errors_name_the_file() {
    let Some(pki) = pki("errors") else { return };
    // A key that does not belong to the certificate.
    let files = X509Files {
        key: pki.leaf("client").key,
        ..pki.files("server", "ca", false)
    };
    let e = X509Credentials::new(&files.read().unwrap()).unwrap_err();
    assert!(matches!(e, CredentialError::Invalid { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("server.pem") && text.contains("client.key"),
        "{text}"
    );
    // A CA file without a certificate in it.
    let files = X509Files {
        ca: pki.leaf("client").key,
        ..pki.files("server", "ca", false)
    };
    let text = X509Credentials::new(&files.read().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("CA certificates") && text.contains("client.key"),
        "{text}"
    );
    // A certificate given as the CRL.
    let files = X509Files {
        crl: Some(pki.ca()),
        ..pki.files("server", "ca", false)
    };
    let text = X509Credentials::new(&files.read().unwrap())
        .unwrap_err()
        .to_string();
    assert!(text.contains("CRL") && text.contains("ca.pem"), "{text}");
    // Missing file.
    let files = X509Files {
        cert: pki.path("nope.pem"),
        ..pki.files("server", "ca", false)
    };
    let text = files.read().unwrap_err().to_string();
    assert!(
        text.contains("nope.pem") && text.contains("certificate"),
        "{text}"
    );
    // Error texts never carry key material.
    let key = std::fs::read_to_string(pki.leaf("client").key).unwrap();
    let body: String = key.lines().nth(1).unwrap_or_default().to_string();
    assert!(!text.contains(&body));
    // Subject and expiry of our own certificate.
    let pem = pki.pem("server", "ca", false);
    assert_eq!(pem.cert_subject().unwrap().as_deref(), Some("CN=server"));
    let expires = pem.cert_expiration().unwrap().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(expires > now && expires < now + 4 * 86400, "{expires}");
}

/// `kubemaker remoted` with `PCMK_ca_file`, `PCMK_cert_file`, `PCMK_key_file`, `PCMK_crl_file`:
/// a cluster node with a CA-signed certificate registers; the authkey no longer opens the door;
/// a revoked client is refused with a log line naming the peer and the reason; no key material
/// in the log.
#[tokio::test]
async fn remoted_serves_x509_when_configured() {
    use kubemaker::remoted::client::LrmdClient;
    use support::{RemoteHost, assert_key_not_logged, random_bytes};

    let Some(pki) = pki("remoted") else { return };
    let authkey = random_bytes(64);
    let paths = |p: std::path::PathBuf| p.display().to_string();
    let server = pki.leaf("server");
    let env = [
        ("PCMK_ca_file", paths(pki.ca())),
        ("PCMK_cert_file", paths(server.cert.clone())),
        ("PCMK_key_file", paths(server.key.clone())),
        ("PCMK_crl_file", paths(pki.crl())),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let host = RemoteHost::start_on_loopback("x509", &authkey, &env);
    bounded(async {
        let ok = LrmdClient::connect_x509(
            &host.endpoint(),
            &pki.creds("client", "ca", false),
            "x509-test",
            false,
        )
        .await
        .expect("CA-signed client registers");
        assert_eq!(ok.client_id.len(), 36);

        // PSK with the right authkey: not this server's mode.
        assert!(
            LrmdClient::connect(&host.endpoint(), &authkey, "psk", false)
                .await
                .is_err()
        );

        // Revoked: refused (in TLS 1.3 possibly after the client's side of the handshake).
        let revoked = LrmdClient::connect_x509(
            &host.endpoint(),
            &pki.creds("revoked", "ca", false),
            "revoked",
            false,
        )
        .await;
        assert!(revoked.is_err(), "a revoked certificate registered");
        drop(ok);
    })
    .await;
    let log = support::wait_for("the refusal in the log", Duration::from_secs(10), || {
        let log = host.daemon().log();
        if log.contains("CN=revoked") {
            Ok(log)
        } else {
            Err("no refusal yet".to_string())
        }
    });
    assert!(log.contains("uses X.509 certificates"), "{log}");
    assert!(
        log.contains("certificate=CN=client") || log.contains("certificate\":\"CN=client"),
        "{log}"
    );
    let refusal = log
        .lines()
        .find(|l| l.contains("TLS handshake failed (X.509") && l.contains("CN=revoked"))
        .unwrap_or_else(|| panic!("no refusal line naming the reason:\n{log}"));
    assert!(
        refusal.contains("127.0.0.1"),
        "the refusal must name the peer: {refusal}"
    );
    assert!(refusal.contains("chain is revoked"), "{refusal}");
    assert_key_not_logged(&log, &authkey, "authkey");
    for key in ["server", "client", "revoked"] {
        let pem = std::fs::read_to_string(pki.leaf(key).key).unwrap();
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
        {
            assert!(!log.contains(line), "{key}'s private key in the log");
        }
    }
}

/// A bad X.509 file stops the daemon at start-up with a message naming it.
#[test]
fn remoted_refuses_to_start_with_a_bad_certificate_file() {
    use support::{kubemaker, run_with_timeout, text};

    let Some(pki) = pki("remoted-bad") else {
        return;
    };
    let mut cmd = std::process::Command::new(kubemaker());
    cmd.args([
        "remoted",
        "--no-local-ipc",
        "-p",
        &support::free_port().to_string(),
    ])
    .env("PCMK_ca_file", pki.ca())
    .env("PCMK_cert_file", pki.path("missing-cert.pem"))
    .env("PCMK_key_file", pki.leaf("server").key)
    .env_remove("PCMK_logfile");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(20));
    assert!(!out.status.success(), "started with a missing certificate");
    let all = text(&out);
    assert!(all.contains("missing-cert.pem"), "{all}");
}

/// The private key formats a cert-manager Secret (or openssl) carries: PKCS#1 (RSA), SEC1 (EC)
/// and PKCS#8, all unencrypted, load the way Pacemaker loads them (GNUTLS_PKCS_PLAIN).
#[test]
fn private_key_formats_load() {
    use std::process::Command;
    if !require_tools(&["certtool", "openssl"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("kubemaker-keyfmt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sh = |cmd: &str| {
        let out = Command::new("sh")
            .args(["-ec", cmd])
            .current_dir(&dir)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh("openssl genrsa -traditional -out pkcs1.key 2048 2>/dev/null");
    sh("openssl ecparam -name prime256v1 -genkey -noout -out sec1.key");
    sh("openssl pkcs8 -topk8 -nocrypt -in pkcs1.key -out pkcs8.key");
    std::fs::write(
        dir.join("t"),
        "cn = \"fmt\"\nca\ncert_signing_key\nexpiration_days = 2\n",
    )
    .unwrap();
    for (key, header) in [
        ("pkcs1.key", "BEGIN RSA PRIVATE KEY"),
        ("sec1.key", "BEGIN EC PRIVATE KEY"),
        ("pkcs8.key", "BEGIN PRIVATE KEY"),
    ] {
        let text = std::fs::read_to_string(dir.join(key)).unwrap();
        assert!(text.contains(header), "{key} is not {header}");
        sh(&format!(
            "certtool --generate-self-signed --load-privkey {key} --template t --outfile {key}.pem 2>/dev/null"
        ));
        let cert = std::fs::read(dir.join(format!("{key}.pem"))).unwrap();
        let pem = X509Pem::new(cert.clone(), cert, text.into_bytes(), None);
        X509Credentials::new(&pem).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
