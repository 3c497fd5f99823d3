//! One TCP connection on loopback whose two ends are handed to a server side and a client side
//! that run concurrently (a TLS handshake needs both): the TLS tests' handshake pairs.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

/// Binds 127.0.0.1, connects, and runs `server` on the accepted end and `client` on the
/// connecting end at the same time; returns both results.
pub async fn loopback_pair<S, C, SF, CF>(server: S, client: C) -> (SF::Output, CF::Output)
where
    S: FnOnce(TcpStream) -> SF,
    C: FnOnce(TcpStream) -> CF,
    SF: Future,
    CF: Future,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server_side = async {
        let (tcp, _) = listener.accept().await.expect("accept");
        server(tcp).await
    };
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        client(tcp).await
    };
    tokio::join!(server_side, client_side)
}
