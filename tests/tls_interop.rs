//! Second opinion from GnuTLS's own command-line tools (package gnutls-bin):
//! `gnutls-cli` against our `PskServer` and `X509Server`; our `connect_psk`, `connect_psk_as`
//! (a `user:hexkey` password file, the way Pacemaker 3.0.2's pacemaker-based reads
//! cib-credentials), `connect_x509` and `connect_anon` against `gnutls-serv`. Certificates are
//! made at test time by `certtool` (support::certs).
//!
//! Missing tools fail the test when CI=true and skip (with a message) otherwise.
//! All traffic stays on 127.0.0.1; every child is killed by its handle (pid).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kubemaker::tls::{
    PskKey, PskKeySource, PskServer, TlsError, TlsStream, X509Server, connect_anon, connect_psk,
    connect_psk_key, connect_x509,
};
use support::certs::TestPki;
use support::{hex, random_bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const PRIO: &str = "NORMAL:+DHE-PSK:+PSK";
const STEP: Duration = Duration::from_secs(10);

struct FixedKey(Vec<u8>);

impl PskKeySource for FixedKey {
    fn current_key(&self) -> Option<Vec<u8>> {
        Some(self.0.clone())
    }
}

/// The tool's path; None (the test skips) when it is missing outside CI, a failure in CI.
fn require_tool(name: &str) -> Option<PathBuf> {
    support::require_tools(&[name])
        .then(|| support::find_tool(name))
        .flatten()
}

async fn step<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn read_exact(stream: &mut TlsStream, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    while out.len() < len {
        let n = step("TLS read", stream.read(&mut buf)).await.expect("read");
        assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn spawn_gnutls_cli(tool: &Path, priority: &str, key: &[u8], port: u16) -> Child {
    Command::new(tool)
        .args(["--priority", priority, "--pskusername", "lrmd", "--pskkey"])
        .arg(hex(key))
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gnutls-cli")
}

/// gnutls-cli connects to our server with a 4096-byte key; data flows both ways.
/// Returns our server-side description.
async fn gnutls_cli_session(cli_priority: &str) -> Option<String> {
    let tool = require_tool("gnutls-cli")?;
    let key = random_bytes(4096);
    let server = PskServer::new(Arc::new(FixedKey(key.clone())), PRIO).expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut child = spawn_gnutls_cli(&tool, cli_priority, &key, port);
    let mut stdin = child.stdin.take().expect("stdin");

    let (tcp, _) = step("accept", listener.accept()).await.expect("accept");
    let mut tls = server
        .accept(tcp, STEP)
        .await
        .expect("handshake with gnutls-cli");
    let desc = tls.description();

    tls.write_record(b"hello from kubemaker\n")
        .await
        .expect("write");
    stdin
        .write_all(b"ping from gnutls-cli\n")
        .await
        .expect("feed gnutls-cli");
    stdin.flush().await.expect("flush");
    assert_eq!(read_exact(&mut tls, 21).await, b"ping from gnutls-cli\n");

    // EOF on its stdin makes gnutls-cli send close_notify.
    drop(stdin);
    let mut buf = [0u8; 64];
    assert_eq!(step("read EOF", tls.read(&mut buf)).await.expect("read"), 0);
    tls.shutdown().await;
    drop(tls);

    let out = step("gnutls-cli exit", child.wait_with_output())
        .await
        .expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello from kubemaker"),
        "gnutls-cli did not print our data:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "server: {desc}; gnutls-cli: {:?}",
        stdout.lines().find(|l| l.contains("Description"))
    );
    Some(desc)
}

#[tokio::test]
async fn gnutls_cli_psk_tls13_against_our_server() {
    let Some(desc) = gnutls_cli_session(PRIO).await else {
        return;
    };
    // External PSKs are SHA-256 bound: CHACHA20-POLY1305 or AES-128-{GCM,CCM}.
    assert!(desc.starts_with("(TLS1.3"), "{desc}");
    assert!(
        desc.contains("CHACHA20") || desc.contains("AES-128"),
        "{desc}"
    );
}

/// TLS 1.2 against our server: DHE-PSK, using the RFC 7919 group set by
/// `gnutls_psk_set_server_known_dh_params`.
///
/// `-KX-ALL`: with plain `NORMAL`, gnutls-cli (which also holds certificate
/// credentials) offers ECDHE-ECDSA/RSA suites first, and a GnuTLS 3.7 server
/// holding only PSK credentials picks one and fails with "Insufficient
/// credentials". pacemaker-remoted's GnuTLS set-up behaves the same; real
/// Pacemaker clients hold only PSK credentials and never offer those suites.
///
/// Only the handshake is checked: right after it, gnutls-cli 3.7.9 crashes
/// (SIGSEGV in gnutls_psk_server_get_username, which it calls on its client
/// session while printing TLS 1.2 PSK session info). TLS 1.2 data exchange
/// with a GnuTLS peer is covered by `connect_psk_against_gnutls_serv`.
#[tokio::test]
async fn gnutls_cli_psk_tls12_uses_dhe_psk() {
    let Some(tool) = require_tool("gnutls-cli") else {
        return;
    };
    let key = random_bytes(4096);
    let server = PskServer::new(Arc::new(FixedKey(key.clone())), PRIO).expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut child = spawn_gnutls_cli(
        &tool,
        "NORMAL:-VERS-TLS1.3:-KX-ALL:+DHE-PSK:+PSK",
        &key,
        port,
    );
    let (tcp, _) = step("accept", listener.accept()).await.expect("accept");
    let tls = server
        .accept(tcp, STEP)
        .await
        .expect("TLS 1.2 handshake with gnutls-cli");
    let desc = tls.description();
    eprintln!("server: {desc}");
    // "(TLS1.2)-(DHE-FFDHE2048)-(...)": DHE-PSK with the RFC 7919 group.
    assert!(
        desc.starts_with("(TLS1.2") && desc.contains("(DHE-FFDHE"),
        "{desc}"
    );
    drop(tls);
    child.kill().await.expect("kill gnutls-cli");
}

#[tokio::test]
async fn gnutls_cli_with_wrong_key_is_refused() {
    let Some(tool) = require_tool("gnutls-cli") else {
        return;
    };
    let server = PskServer::new(Arc::new(FixedKey(random_bytes(256))), PRIO).expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let child = spawn_gnutls_cli(&tool, PRIO, &random_bytes(256), port);
    let (tcp, _) = step("accept", listener.accept()).await.expect("accept");
    let err = server
        .accept(tcp, STEP)
        .await
        .expect_err("wrong key must fail");
    eprintln!("server: {err}");
    let out = step("gnutls-cli exit", child.wait_with_output())
        .await
        .expect("wait");
    assert!(
        !out.status.success(),
        "gnutls-cli should report the failed handshake"
    );
}

/// A scratch directory holding an RFC 7919 DH group from `certtool`
/// (instant, unlike generating a prime); removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    async fn with_dh_params(certtool: &Path, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kubemaker-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let scratch = Self { dir };
        let status = step(
            "certtool",
            Command::new(certtool)
                .args(["--get-dh-params", "--sec-param", "medium", "--outfile"])
                .arg(scratch.dh())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status(),
        )
        .await
        .expect("run certtool");
        assert!(status.success(), "certtool --get-dh-params failed");
        scratch
    }

    fn dh(&self) -> PathBuf {
        self.dir.join("dh.pem")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `gnutls-serv --echo` on a free loopback port; returns it and the port.
/// (gnutls-serv has no listen-address option and binds the wildcard address;
/// we only ever connect to 127.0.0.1.)
async fn start_gnutls_serv(tool: &Path, args: &[&std::ffi::OsStr]) -> (Child, u16) {
    let port = support::free_port();
    let mut child = Command::new(tool)
        .arg("--echo")
        .args(args)
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gnutls-serv");
    // Bounded wait until it accepts; the probe connection is simply closed.
    step("gnutls-serv to listen", async {
        loop {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("gnutls-serv exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Someone else's listener on the port would have answered the probe too: ours must still
    // be running once its bind has had time to fail.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Ok(Some(status)) = child.try_wait() {
        panic!("gnutls-serv exited after the port answered (port {port} taken?): {status}");
    }
    (child, port)
}

/// gnutls-serv and a scratch directory with DH parameters for it; None (the test returns) when
/// a tool is missing outside CI.
async fn gnutls_serv_with_dh_params(name: &str) -> Option<(PathBuf, Scratch)> {
    let (Some(serv), Some(certtool)) = (require_tool("gnutls-serv"), require_tool("certtool"))
    else {
        return None;
    };
    Some((serv, Scratch::with_dh_params(&certtool, name).await))
}

/// gnutls-serv in PSK mode with the `user:hexkey` lines of `passwd`, as Pacemaker's servers
/// use GnuTLS's password file.
async fn start_gnutls_psk_serv(serv: &Path, scratch: &Scratch, passwd: &Path) -> (Child, u16) {
    let (dh, prio) = (scratch.dh(), std::ffi::OsString::from(PRIO));
    let args: [&std::ffi::OsStr; 6] = [
        "--priority".as_ref(),
        &prio,
        "--pskpasswd".as_ref(),
        passwd.as_os_str(),
        "--dhparams".as_ref(),
        dh.as_os_str(),
    ];
    start_gnutls_serv(serv, &args).await
}

async fn connect_local(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect")
}

/// One echo round trip per message, each sent with `write_record`.
async fn echo_roundtrips(tls: &mut TlsStream) {
    for msg in [&b"echo me\n"[..], b"and me too\n"] {
        step("write", tls.write_record(msg)).await.expect("write");
        assert_eq!(read_exact(tls, msg.len()).await, msg);
    }
}

#[tokio::test]
async fn connect_psk_against_gnutls_serv() {
    let Some((serv, scratch)) = gnutls_serv_with_dh_params("psk").await else {
        return;
    };
    let key = random_bytes(4096);
    let passwd = scratch.dir.join("psk.passwd");
    std::fs::write(&passwd, format!("lrmd:{}\n", hex(&key))).expect("write psk passwd");
    let (mut child, port) = start_gnutls_psk_serv(&serv, &scratch, &passwd).await;

    for (client_prio, version) in [
        (PRIO, "(TLS1.3"),
        ("NORMAL:-VERS-TLS1.3:+DHE-PSK:+PSK", "(TLS1.2"),
    ] {
        let tcp = connect_local(port).await;
        let mut tls = connect_psk(tcp, &key, client_prio, STEP)
            .await
            .expect("PSK handshake with gnutls-serv");
        let desc = tls.description();
        eprintln!("psk client: {desc}");
        assert!(desc.starts_with(version), "{desc}");
        echo_roundtrips(&mut tls).await;
        tls.shutdown().await;
    }

    // A wrong key is refused by gnutls-serv too.
    let tcp = connect_local(port).await;
    let err = connect_psk(tcp, &random_bytes(4096), PRIO, STEP)
        .await
        .expect_err("wrong key");
    eprintln!("psk client, wrong key: {err}");
    assert!(matches!(err, TlsError::Gnutls { .. }), "{err:?}");

    child.kill().await.expect("kill gnutls-serv");
}

#[tokio::test]
async fn connect_anon_against_gnutls_serv() {
    let Some((serv, scratch)) = gnutls_serv_with_dh_params("anon").await else {
        return;
    };
    let dh = scratch.dh();
    let (mut child, port) = start_gnutls_serv(
        &serv,
        &[
            "--priority".as_ref(),
            "NORMAL:+ANON-DH".as_ref(),
            "--dhparams".as_ref(),
            dh.as_os_str(),
        ],
    )
    .await;

    let tcp = connect_local(port).await;
    let mut tls = connect_anon(tcp, "NORMAL:+ANON-DH", STEP)
        .await
        .expect("anon handshake");
    let desc = tls.description();
    eprintln!("anon client: {desc}");
    // A GnuTLS client holding only anonymous credentials does not offer TLS 1.3.
    assert!(
        desc.starts_with("(TLS1.2") && desc.contains("(ANON-DH)"),
        "{desc}"
    );
    echo_roundtrips(&mut tls).await;
    tls.shutdown().await;

    child.kill().await.expect("kill gnutls-serv");
}

/// gnutls-cli with the given X.509 arguments against our X.509 server (Pacemaker 3.0's
/// priorities, the CRL loaded): the server's result and the peer's subject.
async fn gnutls_cli_x509(
    pki: &TestPki,
    tool: &Path,
    cli_args: &[String],
) -> Result<Option<String>, TlsError> {
    let server = X509Server::new(pki.creds("server", "ca", true), "NORMAL").expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut child = Command::new(tool)
        .args(["--priority", "NORMAL", "--verify-hostname", "server"])
        .arg(format!("--x509cafile={}", pki.ca().display()))
        .args(cli_args)
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gnutls-cli");
    let (tcp, _) = step("accept", listener.accept()).await.expect("accept");
    let result = server.accept(tcp, STEP).await;
    let out = match result {
        Ok(mut tls) => {
            let subject = tls.peer_certificate_subject();
            tls.write_record(b"hello over X.509\n")
                .await
                .expect("write");
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"ping\n").await.expect("feed");
            stdin.flush().await.expect("flush");
            assert_eq!(read_exact(&mut tls, 5).await, b"ping\n");
            drop(stdin);
            let mut buf = [0u8; 64];
            assert_eq!(step("read EOF", tls.read(&mut buf)).await.expect("read"), 0);
            tls.shutdown().await;
            let out = step("gnutls-cli exit", child.wait_with_output())
                .await
                .expect("wait");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("hello over X.509"),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(subject)
        }
        Err(e) => {
            child.kill().await.expect("kill gnutls-cli");
            Err(e)
        }
    };
    eprintln!(
        "gnutls-cli {cli_args:?}: {:?}",
        out.as_ref().map_err(|e| e.to_string())
    );
    out
}

#[tokio::test]
async fn gnutls_cli_x509_against_our_server() {
    let (Some(tool), true) = (
        require_tool("gnutls-cli"),
        support::require_tools(&["certtool"]),
    ) else {
        return;
    };
    let pki = TestPki::generate("interop-cli").expect("pki");
    let leaf = |name: &str| {
        let l = pki.leaf(name);
        vec![
            format!("--x509certfile={}", l.cert.display()),
            format!("--x509keyfile={}", l.key.display()),
        ]
    };
    // A CA-signed client certificate: accepted, and its subject seen.
    assert_eq!(
        gnutls_cli_x509(&pki, &tool, &leaf("client"))
            .await
            .expect("CA-signed client"),
        Some("CN=client".into())
    );
    // TLS 1.2 too.
    let mut tls12 = leaf("client");
    tls12.push("--priority=NORMAL:-VERS-TLS1.3".into());
    assert!(gnutls_cli_x509(&pki, &tool, &tls12).await.is_ok());
    // No client certificate.
    match gnutls_cli_x509(&pki, &tool, &[]).await {
        Err(TlsError::NoPeerCertificate { .. }) => {}
        other => panic!("client without a certificate: {other:?}"),
    }
    // Revoked.
    match gnutls_cli_x509(&pki, &tool, &leaf("revoked")).await {
        Err(TlsError::CertificateRejected { status, .. }) => {
            assert!(status & kubemaker::tls::ffi::GNUTLS_CERT_REVOKED != 0)
        }
        other => panic!("revoked client: {other:?}"),
    }
    // Expired.
    match gnutls_cli_x509(&pki, &tool, &leaf("expired")).await {
        Err(TlsError::CertificateRejected { status, .. }) => {
            assert!(status & kubemaker::tls::ffi::GNUTLS_CERT_EXPIRED != 0)
        }
        other => panic!("expired client: {other:?}"),
    }
    // Another CA's certificate (gnutls-cli presents it although our CA is not its issuer).
    match gnutls_cli_x509(&pki, &tool, &leaf("foreign")).await {
        Err(TlsError::CertificateRejected {
            status, subject, ..
        }) => {
            assert!(status & kubemaker::tls::ffi::GNUTLS_CERT_SIGNER_NOT_FOUND != 0);
            assert_eq!(subject.as_deref(), Some("CN=foreign"));
        }
        other => panic!("client of another CA: {other:?}"),
    }
}

#[tokio::test]
async fn connect_x509_against_gnutls_serv() {
    let (Some(serv), true) = (
        require_tool("gnutls-serv"),
        support::require_tools(&["certtool"]),
    ) else {
        return;
    };
    let pki = TestPki::generate("interop-serv").expect("pki");
    let server = pki.leaf("server");
    let args: Vec<std::ffi::OsString> = vec![
        "--priority=NORMAL".into(),
        "--require-client-cert".into(),
        "--verify-client-cert".into(),
        format!("--x509cafile={}", pki.ca().display()).into(),
        format!("--x509certfile={}", server.cert.display()).into(),
        format!("--x509keyfile={}", server.key.display()).into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (mut child, port) = start_gnutls_serv(&serv, &args).await;

    for prio in ["NORMAL", "NORMAL:-VERS-TLS1.3"] {
        let tcp = connect_local(port).await;
        let mut tls = connect_x509(tcp, &pki.creds("client", "ca", false), prio, STEP)
            .await
            .expect("X.509 handshake with gnutls-serv");
        eprintln!("x509 client: {}", tls.description());
        assert_eq!(tls.peer_certificate_subject().as_deref(), Some("CN=server"));
        echo_roundtrips(&mut tls).await;
        tls.shutdown().await;
    }

    // A client that trusts only another CA refuses gnutls-serv's certificate.
    let tcp = connect_local(port).await;
    let err = connect_x509(tcp, &pki.creds("foreign", "otherca", false), "NORMAL", STEP)
        .await
        .expect_err("untrusted server");
    eprintln!("x509 client, other CA: {err}");
    assert!(
        matches!(err, TlsError::CertificateRejected { .. }),
        "{err:?}"
    );

    child.kill().await.expect("kill gnutls-serv");
}

/// The remote CIB's PSK mode (Pacemaker 3.0.2): pacemaker-based hands GnuTLS its
/// `cib-credentials` file (`gnutls_psk_set_server_credentials_file`), whose `user:hexkey` lines
/// are what `gnutls-serv --pskpasswd` reads; the client presents the CIB user as identity.
#[tokio::test]
async fn connect_psk_as_cib_user_against_gnutls_serv() {
    let Some((serv, scratch)) = gnutls_serv_with_dh_params("cibpsk").await else {
        return;
    };
    let hacluster = hex(&random_bytes(32));
    let alice = hex(&random_bytes(32));
    let passwd = scratch.dir.join("cib-credentials");
    std::fs::write(&passwd, format!("hacluster:{hacluster}\nalice:{alice}\n")).expect("write");
    let (mut child, port) = start_gnutls_psk_serv(&serv, &scratch, &passwd).await;
    for (user, key) in [("hacluster", &hacluster), ("alice", &alice)] {
        let tcp = connect_local(port).await;
        let key = PskKey::from_hex(&format!("{}\n", key.to_uppercase())).expect("hex key");
        let mut tls = connect_psk_key(tcp, user, &key, PRIO, STEP)
            .await
            .expect("PSK handshake as the CIB user");
        echo_roundtrips(&mut tls).await;
        tls.shutdown().await;
    }
    // hacluster's key under alice's name: refused.
    let tcp = connect_local(port).await;
    let key = PskKey::from_hex(&hacluster).unwrap();
    assert!(
        connect_psk_key(tcp, "alice", &key, PRIO, STEP)
            .await
            .is_err()
    );
    child.kill().await.expect("kill gnutls-serv");
}
