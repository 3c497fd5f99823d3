//! Our PSK server against our PSK client over 127.0.0.1.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kubemaker::tls::{PskKeySource, PskServer, TlsError, TlsStream, connect_psk};
use support::random_bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const PRIO: &str = "NORMAL:+DHE-PSK:+PSK";
const PRIO_TLS12: &str = "NORMAL:-VERS-TLS1.3:+DHE-PSK:+PSK";
const HS: Duration = Duration::from_secs(10);
/// Upper bound for every test body.
const TEST_LIMIT: Duration = Duration::from_secs(60);

struct FixedKey(Option<Vec<u8>>, AtomicUsize);

impl FixedKey {
    fn new(key: Option<Vec<u8>>) -> Arc<Self> {
        Arc::new(Self(key, AtomicUsize::new(0)))
    }
}

impl PskKeySource for FixedKey {
    fn current_key(&self) -> Option<Vec<u8>> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.clone()
    }
}

async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, fut)
        .await
        .expect("test exceeded its time limit")
}

/// One TCP connection on loopback, handshaken by `server` and `connect_psk` concurrently.
async fn handshake_pair(
    server: &PskServer,
    client_key: &[u8],
    client_prio: &str,
) -> (Result<TlsStream, TlsError>, Result<TlsStream, TlsError>) {
    support::tls_pair::loopback_pair(
        |tcp| server.accept(tcp, HS),
        |tcp| connect_psk(tcp, client_key, client_prio, HS),
    )
    .await
}

/// Reads exactly `len` bytes (possibly over several records).
async fn read_exact(stream: &mut TlsStream, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut buf = vec![0u8; 65536];
    while out.len() < len {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "unexpected EOF after {} of {len} bytes", out.len());
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len(), len, "read past the expected message");
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Two writes queued before the reader looks must come back as two reads.
async fn assert_separate_records(writer: &mut TlsStream, reader: &mut TlsStream) {
    let first = pattern(40, 1);
    let second = pattern(300, 2);
    writer.write_record(&first).await.expect("write 40");
    writer.write_record(&second).await.expect("write 300");
    // Let both records reach the reader's socket before it reads.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut buf = vec![0u8; 65536];
    let n = reader.read(&mut buf).await.expect("read first");
    assert_eq!(n, 40, "first read must return exactly the first record");
    assert_eq!(&buf[..n], &first[..]);
    let n = reader.read(&mut buf).await.expect("read second");
    assert_eq!(n, 300);
    assert_eq!(&buf[..n], &second[..]);
}

async fn exercise(key_len: usize) {
    let key = random_bytes(key_len);
    let server = PskServer::new(FixedKey::new(Some(key.clone())), PRIO).expect("server");
    let (srv, cli) = handshake_pair(&server, &key, PRIO).await;
    let mut srv = srv.expect("server handshake");
    let mut cli = cli.expect("client handshake");

    // GnuTLS 3.7 describes TLS 1.3 PSK sessions as e.g. "(TLS1.3)--(CHACHA20-POLY1305)":
    // the key-exchange field stays empty. External PSKs are SHA-256 bound, so
    // only SHA-256 suites (CHACHA20-POLY1305, AES-128-*) can be chosen.
    for desc in [srv.description(), cli.description()] {
        assert!(desc.starts_with("(TLS1.3"), "{desc}");
        assert!(
            desc.contains("CHACHA20") || desc.contains("AES-128"),
            "{desc}"
        );
    }
    assert_eq!(srv.description(), cli.description());
    let peer = srv.peer_addr().expect("server knows peer");
    assert!(peer.ip().is_loopback());

    assert_separate_records(&mut cli, &mut srv).await;
    assert_separate_records(&mut srv, &mut cli).await;

    // Ping-pong of assorted sizes.
    for i in 0..20u8 {
        let msg = pattern(1 + usize::from(i) * 97, i);
        cli.write_record(&msg).await.expect("client write");
        assert_eq!(read_exact(&mut srv, msg.len()).await, msg);
        let reply = pattern(5 + usize::from(i), i.wrapping_add(100));
        srv.write_record(&reply).await.expect("server write");
        assert_eq!(read_exact(&mut cli, reply.len()).await, reply);
    }

    // Larger than one record: split over several, none larger than 16 KiB.
    let big = pattern(100_000, 7);
    cli.write_record(&big).await.expect("big write");
    let mut buf = vec![0u8; 65536];
    let n = srv.read(&mut buf).await.expect("big read");
    assert!(n > 0 && n <= 16384, "one read returns one record, got {n}");
    let mut got = buf[..n].to_vec();
    got.extend(read_exact(&mut srv, big.len() - n).await);
    assert_eq!(got, big);

    // close_notify reads as EOF.
    cli.shutdown().await;
    assert_eq!(srv.read(&mut buf).await.expect("read after close"), 0);
    srv.shutdown().await;
    assert_eq!(
        cli.read(&mut buf).await.expect("client read after close"),
        0
    );
}

#[tokio::test]
async fn psk_4096_byte_key_roundtrip() {
    bounded(exercise(4096)).await;
}

#[tokio::test]
async fn psk_256_byte_key_roundtrip() {
    bounded(exercise(256)).await;
}

#[tokio::test]
async fn small_buffer_reads_drain_gnutls_without_waiting() {
    bounded(async {
        let key = random_bytes(256);
        let server = PskServer::new(FixedKey::new(Some(key.clone())), PRIO).unwrap();
        let (srv, cli) = handshake_pair(&server, &key, PRIO).await;
        let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
        let msg = pattern(300, 9);
        srv.write_record(&msg).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 100];
        for _ in 0..3 {
            // The 2nd and 3rd parts sit inside GnuTLS, not in the socket: these
            // reads must not wait for socket readiness.
            let n = tokio::time::timeout(Duration::from_secs(2), cli.read(&mut buf))
                .await
                .expect("buffered data returned without waiting")
                .unwrap();
            assert_eq!(n, 100);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, msg);
    })
    .await;
}

#[tokio::test]
async fn wrong_key_fails_on_both_sides_and_server_keeps_accepting() {
    bounded(async {
        let good = random_bytes(256);
        let keys = FixedKey::new(Some(good.clone()));
        let server = PskServer::new(keys.clone(), PRIO).unwrap();

        let (srv, cli) = handshake_pair(&server, &random_bytes(256), PRIO).await;
        let srv_err = srv.expect_err("server must reject a wrong key");
        let cli_err = cli.expect_err("client must fail with a wrong key");
        eprintln!("wrong key: server error: {srv_err}; client error: {cli_err}");
        assert!(
            matches!(
                srv_err,
                TlsError::Gnutls {
                    op: "gnutls_handshake",
                    ..
                }
            ),
            "{srv_err:?}"
        );
        assert!(matches!(cli_err, TlsError::Gnutls { .. }), "{cli_err:?}");
        assert!(
            keys.1.load(Ordering::Relaxed) >= 1,
            "key source was consulted"
        );

        let (srv, cli) = handshake_pair(&server, &good, PRIO).await;
        let (mut srv, mut cli) = (
            srv.expect("server after bad client"),
            cli.expect("good client"),
        );
        cli.write_record(b"still serving").await.unwrap();
        assert_eq!(read_exact(&mut srv, 13).await, b"still serving");
    })
    .await;
}

#[tokio::test]
async fn missing_server_key_is_no_key() {
    bounded(async {
        let server = PskServer::new(FixedKey::new(None), PRIO).unwrap();
        let (srv, cli) = handshake_pair(&server, &random_bytes(64), PRIO).await;
        assert!(matches!(srv, Err(TlsError::NoKey)), "{srv:?}");
        assert!(cli.is_err());
    })
    .await;
}

#[tokio::test]
async fn plaintext_client_is_rejected_quickly() {
    bounded(async {
        let server = PskServer::new(FixedKey::new(Some(random_bytes(256))), PRIO).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(b"hello\n").await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let start = Instant::now();
        let result = server.accept(tcp, Duration::from_secs(5)).await;
        let err = result.expect_err("plaintext must not handshake");
        eprintln!("plaintext client: {err}");
        assert!(
            !matches!(err, TlsError::HandshakeTimeout),
            "should fail on the garbage, not time out"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        drop(raw);
    })
    .await;
}

#[tokio::test]
async fn silent_client_hits_handshake_timeout() {
    bounded(async {
        let server = PskServer::new(FixedKey::new(Some(random_bytes(256))), PRIO).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let start = Instant::now();
        let result = server.accept(tcp, Duration::from_millis(300)).await;
        let elapsed = start.elapsed();
        assert!(
            matches!(result, Err(TlsError::HandshakeTimeout)),
            "{result:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        drop(raw);
    })
    .await;
}

#[tokio::test]
async fn tls12_dhe_psk_between_our_ends() {
    bounded(async {
        let key = random_bytes(4096);
        let server = PskServer::new(FixedKey::new(Some(key.clone())), PRIO).unwrap();
        let (srv, cli) = handshake_pair(&server, &key, PRIO_TLS12).await;
        let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
        let desc = srv.description();
        // DHE-PSK with the RFC 7919 group from gnutls_psk_set_server_known_dh_params.
        assert!(
            desc.starts_with("(TLS1.2") && desc.contains("(DHE-FFDHE"),
            "{desc}"
        );
        assert_separate_records(&mut cli, &mut srv).await;
    })
    .await;
}

#[tokio::test]
async fn read_is_cancel_safe_in_select() {
    bounded(async {
        let key = random_bytes(256);
        let server = PskServer::new(FixedKey::new(Some(key.clone())), PRIO).unwrap();
        let (srv, cli) = handshake_pair(&server, &key, PRIO).await;
        let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
        const COUNT: u8 = 60;
        let sender = tokio::spawn(async move {
            for i in 0..COUNT {
                srv.write_record(&pattern(10 + usize::from(i) * 50, i))
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            srv
        });
        let mut buf = vec![0u8; 65536];
        let mut cancelled = 0u32;
        for i in 0..COUNT {
            let expected = pattern(10 + usize::from(i) * 50, i);
            let n = loop {
                tokio::select! {
                    r = cli.read(&mut buf) => break r.unwrap(),
                    _ = tokio::time::sleep(Duration::from_micros(200)) => cancelled += 1,
                }
            };
            assert_eq!(&buf[..n], &expected[..], "message {i}");
        }
        eprintln!("reads cancelled by select: {cancelled}");
        sender.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn concurrent_clients_share_one_server() {
    bounded(async {
        let key = random_bytes(256);
        let server = Arc::new(PskServer::new(FixedKey::new(Some(key.clone())), PRIO).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        const CLIENTS: usize = 4;
        let acceptor = {
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for _ in 0..CLIENTS {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let server = Arc::clone(&server);
                    tasks.push(tokio::spawn(async move {
                        let mut s = server.accept(tcp, HS).await.unwrap();
                        let mut buf = [0u8; 64];
                        let n = s.read(&mut buf).await.unwrap();
                        s.write_record(&buf[..n]).await.unwrap();
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        };
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let key = key.clone();
            clients.push(tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let mut c = connect_psk(tcp, &key, PRIO, HS).await.unwrap();
                let msg = format!("client {i}");
                c.write_record(msg.as_bytes()).await.unwrap();
                let mut buf = [0u8; 64];
                let n = c.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], msg.as_bytes());
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        acceptor.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn cancelled_write_poisons_further_writes() {
    bounded(async {
        let key = random_bytes(256);
        let server = PskServer::new(FixedKey::new(Some(key.clone())), PRIO).unwrap();
        let (srv, cli) = handshake_pair(&server, &key, PRIO).await;
        let (_srv, mut cli) = (srv.unwrap(), cli.unwrap());
        // The server never reads, so 64 MiB cannot fit in the socket buffers.
        let huge = vec![0x5au8; 64 << 20];
        let r = tokio::time::timeout(Duration::from_millis(300), cli.write_record(&huge)).await;
        assert!(r.is_err(), "write should still be blocked");
        let err = cli.write_record(b"x").await.expect_err("poisoned");
        assert!(matches!(err, TlsError::WriteInterrupted), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn bad_inputs_are_rejected_up_front() {
    let err = PskServer::new(FixedKey::new(Some(vec![1])), "NORMAL:+BOGUS-KX")
        .expect_err("bad priorities");
    assert!(matches!(err, TlsError::InvalidPriority { .. }), "{err:?}");
    eprintln!("{err}");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let err = connect_psk(tcp, &[], PRIO, HS)
        .await
        .expect_err("empty key");
    assert!(matches!(err, TlsError::NoKey), "{err:?}");
}

#[test]
fn thread_safety_contract() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<TlsStream>();
    send_sync::<PskServer>();
    send_sync::<Arc<PskServer>>();
}
