//! The CIB client's TLS modes of Pacemaker 3.0 against a loopback stand-in for pacemaker-based's
//! remote CIB port: PSK (3.0.2: identity = CIB user, key from a `user:hexkey` credentials table)
//! and X.509 (3.0.0: certificates both ways). The stand-in does what the real port does before
//! the CIB proper: the TLS handshake, the `authenticate` login, then answers one version query.
//! The real server is exercised by the Pacemaker 3.0.x cluster tests.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kubemaker::cib::{CibClient, CibError, ClientConfig, Endpoint, Secret, TlsAuth, Transport};
use kubemaker::tls::{PskKey, PskKeySource, PskServer, TlsServer, TlsStream, X509Server};
use kubemaker::wire::{Connection, Element};
use support::certs::TestPki;
use support::env::require_tools;
use tokio::net::TcpListener;

const TEST_LIMIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "not-a-real-password";

async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, fut)
        .await
        .expect("test exceeded its time limit")
}

/// `/etc/pacemaker/cib-credentials` as GnuTLS's PSK password file reads it: `user:hexkey` lines.
struct CibCredentials(HashMap<String, Vec<u8>>);

impl CibCredentials {
    fn parse(text: &str) -> Arc<CibCredentials> {
        let map = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(u, k)| {
                (
                    u.to_string(),
                    PskKey::from_hex(k).unwrap().expose().to_vec(),
                )
            })
            .collect();
        Arc::new(CibCredentials(map))
    }
}

impl PskKeySource for CibCredentials {
    fn current_key(&self) -> Option<Vec<u8>> {
        None
    }

    fn key_for_identity(&self, identity: &str) -> Option<Vec<u8>> {
        self.0.get(identity).cloned()
    }
}

/// Serves one connection like the remote CIB port: handshake, login (checks user and
/// password), one `cib_query` answered with a `<cib>` at epoch 42. Returns what it saw: the
/// login user and the peer certificate's subject, or the handshake error.
async fn serve_one(
    listener: TcpListener,
    tls: TlsServer,
) -> Result<(String, Option<String>), String> {
    let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
    let stream: TlsStream = tls
        .accept(tcp, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let subject = stream.peer_certificate_subject();
    let mut conn = Connection::new(stream, 1 << 20);
    let login = conn
        .read_message()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("closed before login")?;
    assert_eq!(login.attr("op"), Some("authenticate"));
    assert_eq!(login.attr("password"), Some(PASSWORD));
    let user = login.attr("user").unwrap_or_default().to_string();
    let ok = Element::new("cib_result")
        .with_attr("cib_op", "cib_signon")
        .with_attr("cib_clientid", "test-client");
    conn.write_message(1, &ok)
        .await
        .map_err(|e| e.to_string())?;
    let query = conn
        .read_message()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("closed before the query")?;
    assert_eq!(query.attr("cib_op"), Some("cib_query"));
    let reply = Element::new("cib-reply")
        .with_attr("cib_callid", query.attr("cib_callid").unwrap_or_default())
        .with_attr("cib_rc", "0")
        .with_child(
            Element::new("cib_calldata").with_child(
                Element::new("cib")
                    .with_attr("admin_epoch", "0")
                    .with_attr("epoch", "42")
                    .with_attr("num_updates", "7"),
            ),
        );
    conn.write_message(2, &reply)
        .await
        .map_err(|e| e.to_string())?;
    // Wait for the client to go.
    let _ = conn.read_message().await;
    Ok((user, subject))
}

async fn listener() -> (TcpListener, Endpoint) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    (
        l,
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        },
    )
}

fn config(ep: Endpoint, user: &str, auth: TlsAuth) -> ClientConfig {
    let mut cfg =
        ClientConfig::new(vec![ep], Transport::Tls, Secret::new(PASSWORD)).with_tls_auth(auth);
    cfg.user = user.into();
    cfg.retry.connect_rounds = 1;
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

/// Connects, reads the version, closes.
async fn query_epoch(cfg: ClientConfig) -> Result<u64, CibError> {
    let client = CibClient::connect(cfg).await?;
    let v = client.version().await?;
    client.close().await;
    Ok(v.epoch)
}

#[tokio::test]
async fn psk_with_the_user_as_identity() {
    bounded(async {
        // The hex keys of two users, as in cib-credentials.
        let creds =
            CibCredentials::parse("hacluster:00112233445566778899aabbccddeeff\nalice:a1a1a1a1\n");
        for (user, key, prio_note) in [
            ("hacluster", "00112233445566778899AABBCCDDEEFF", "TLS 1.3"),
            ("alice", " a1a1a1a1\n", "key file with white space"),
        ] {
            let (l, ep) = listener().await;
            let server =
                TlsServer::Psk(PskServer::new(creds.clone(), "NORMAL:+DHE-PSK:+PSK").unwrap());
            let srv = tokio::spawn(serve_one(l, server));
            let epoch = query_epoch(config(ep, user, TlsAuth::psk_hex(key).unwrap()))
                .await
                .unwrap_or_else(|e| panic!("{prio_note}: {e}"));
            assert_eq!(epoch, 42);
            let (login_user, _) = srv.await.unwrap().expect("server side");
            assert_eq!(login_user, user);
        }

        // The right key under another user's name is refused (the identity selects the key).
        let (l, ep) = listener().await;
        let server = TlsServer::Psk(PskServer::new(creds.clone(), "NORMAL:+DHE-PSK:+PSK").unwrap());
        let srv = tokio::spawn(serve_one(l, server));
        let err = query_epoch(config(
            ep,
            "alice",
            TlsAuth::psk_hex("00112233445566778899aabbccddeeff").unwrap(),
        ))
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CibError::Unreachable { .. }), "{text}");
        assert!(
            text.contains("TLS handshake (PSK) failed") && text.contains("alice:"),
            "{text}"
        );
        assert!(
            !text.contains("00112233"),
            "key material in an error: {text}"
        );
        assert!(srv.await.unwrap().is_err());

        // An unknown user has no key at all.
        let (l, ep) = listener().await;
        let server = TlsServer::Psk(PskServer::new(creds, "NORMAL:+DHE-PSK:+PSK").unwrap());
        let srv = tokio::spawn(serve_one(l, server));
        assert!(
            query_epoch(config(ep, "mallory", TlsAuth::psk_hex("a1a1a1a1").unwrap()))
                .await
                .is_err()
        );
        assert!(srv.await.unwrap().is_err());
    })
    .await;
}

/// Connects with `auth` to a stand-in serving the PKI's server certificate (trusting "ca", with
/// the CRL); both sides must fail. Returns the client's error.
async fn refused_by_x509_server(pki: &TestPki, auth: TlsAuth) -> CibError {
    let (l, ep) = listener().await;
    let server =
        TlsServer::X509(X509Server::new(pki.creds("server", "ca", true), "NORMAL").unwrap());
    let srv = tokio::spawn(serve_one(l, server));
    let err = query_epoch(config(ep, "hacluster", auth))
        .await
        .expect_err("the connection must fail");
    assert!(srv.await.unwrap().is_err(), "the server side accepted");
    err
}

#[tokio::test]
async fn x509_both_ways() {
    if !require_tools(&["certtool"]) {
        return;
    }
    let pki = TestPki::generate("cib").expect("pki");
    bounded(async {
        let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
        // What the operator does: PEM bytes from a Secret.
        let auth = TlsAuth::x509(
            read(pki.ca()),
            read(pki.leaf("client").cert),
            read(pki.leaf("client").key),
            None,
        )
        .expect("client material");
        assert!(!format!("{auth:?}").contains("PRIVATE"));

        let (l, ep) = listener().await;
        let server =
            TlsServer::X509(X509Server::new(pki.creds("server", "ca", true), "NORMAL").unwrap());
        let srv = tokio::spawn(serve_one(l, server));
        assert_eq!(
            query_epoch(config(ep, "hacluster", auth.clone()))
                .await
                .unwrap(),
            42
        );
        let (_, subject) = srv.await.unwrap().expect("server side");
        assert_eq!(subject.as_deref(), Some("CN=client"));

        // A client trusting another CA refuses our server (and says why).
        let other = TlsAuth::x509(
            read(pki.path("otherca.pem")),
            read(pki.leaf("foreign").cert),
            read(pki.leaf("foreign").key),
            None,
        )
        .unwrap();
        let text = refused_by_x509_server(&pki, other).await.to_string();
        assert!(
            text.contains("TLS handshake (X.509) failed") && text.contains("CN=server"),
            "{text}"
        );

        // The server refuses a client certificate its CA did not sign. Under TLS 1.3 it says so
        // only after our side of the handshake, so the refusal arrives on the login's read: it
        // must still name the credentials, not blame the password.
        let foreign = TlsAuth::x509(
            read(pki.ca()),
            read(pki.leaf("foreign").cert),
            read(pki.leaf("foreign").key),
            None,
        )
        .unwrap();
        let err = refused_by_x509_server(&pki, foreign).await;
        let text = err.to_string();
        assert!(matches!(err, CibError::Unreachable { .. }), "{text}");
        assert!(
            text.contains("X.509") && !text.contains("wrong password"),
            "{text}"
        );

        // Unusable material is a credentials error, before any connection.
        let bad = TlsAuth::x509(
            read(pki.ca()),
            read(pki.leaf("server").cert),
            read(pki.leaf("client").key),
            None,
        )
        .unwrap_err();
        assert!(
            bad.to_string().contains("certificate and private key"),
            "{bad}"
        );
    })
    .await;
}
