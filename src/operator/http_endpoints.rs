//! `/healthz`, `/readyz` and `/metrics` over HTTP/1.1 with hyper (the HTTP stack the Kubernetes
//! client already uses): three fixed GET routes for a kubelet probe and a Prometheus scraper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, info};

use super::metrics::Metrics;

const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A client that has not sent its request head by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer: one request, one answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(20);

/// Binds now (so a taken port fails start-up) and serves in the background.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(%bound, "serving /healthz, /readyz and /metrics");
    tokio::spawn(async move {
        loop {
            let Ok((sock, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(route(&req, &metrics)) }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(sock), service);
                // A client that reads its answer too slowly is dropped as well.
                match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(%peer, error = %e, "HTTP connection failed"),
                    Err(_) => debug!(%peer, "HTTP connection timed out"),
                }
            });
        }
    });
    Ok(bound)
}

fn route<B>(req: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n".into());
    }
    match req.uri().path() {
        "/healthz" | "/livez" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if metrics.is_ready() => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "caches not synced yet\n".into(),
        ),
        "/metrics" => reply(StatusCode::OK, OPENMETRICS, metrics.render()),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// The status code and body of a `GET path` sent as HTTP/1.0, as simple probes do.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
        (code, body.unwrap_or_default())
    }

    #[tokio::test]
    async fn routes() {
        let m = Arc::new(Metrics::default());
        let addr = serve("127.0.0.1:0".parse().unwrap(), m.clone())
            .await
            .unwrap();
        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
        assert_eq!(get(addr, "/readyz").await.0, 503);
        m.set_ready(true);
        assert_eq!(get(addr, "/readyz?verbose").await.0, 200);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.lines().any(|l| l == "kubemaker_leader 0"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        // Garbage gets an answer and leaves the server serving.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0xff; 100]).await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(get(addr, "/healthz").await.0, 200);
    }
}
