//! One cluster (or tool) connection after its TLS handshake: reads requests, answers them in
//! order, and writes every outgoing message as a header record followed by payload record(s).

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Daemon;
use super::clients::Outbox;
use super::local_ipc::ToLocal;
use super::requests;
use super::shutdown::Control;
use crate::wire::envelope::{MSG_TYPE, MsgType, set_envelope};
use crate::wire::{Element, FrameReader, WireError, encode};

/// A record-preserving, encrypted byte stream.
pub trait Transport: Send {
    /// Cancel-safe read; `Ok(0)` means the peer closed.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = std::io::Result<usize>> + Send;
    /// Sends `data` as record(s) of its own.
    fn write_record(&mut self, data: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

impl Transport for crate::tls::TlsStream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::tls::TlsStream::read(self, buf)
            .await
            .map_err(std::io::Error::other)
    }
    async fn write_record(&mut self, data: &[u8]) -> std::io::Result<()> {
        crate::tls::TlsStream::write_record(self, data)
            .await
            .map_err(std::io::Error::other)
    }
    async fn close(&mut self) {
        self.shutdown().await
    }
}

/// Serves one connection until the peer goes, the stream breaks, or a message cannot be framed.
pub async fn serve<T: Transport>(
    daemon: Arc<Daemon>,
    mut transport: T,
    client_id: String,
    peer: String,
) {
    let (tx, mut outgoing) = mpsc::unbounded_channel::<Element>();
    daemon.clients.add(&client_id, Outbox::Remote(tx.clone()));
    let mut reader = FrameReader::new(daemon.max_message);
    let mut buf = vec![0u8; 16 * 1024];
    let reason = 'conn: loop {
        tokio::select! {
            biased;
            Some(msg) = outgoing.recv() => {
                if let Err(e) = send(&daemon, &mut transport, msg).await {
                    break 'conn format!("write failed: {e}");
                }
            }
            read = transport.read(&mut buf) => {
                let n = match read {
                    Ok(0) => break 'conn "closed by peer".to_string(),
                    Ok(n) => n,
                    Err(e) => break 'conn format!("read failed: {e}"),
                };
                reader.push(&buf[..n]);
                loop {
                    match reader.next_message() {
                        Ok(Some(msg)) => dispatch(&daemon, &client_id, &tx, &msg),
                        Ok(None) => break,
                        // The frame was consumed whole: log it and keep the connection.
                        Err(e @ (WireError::Xml(_) | WireError::MissingNul)) => {
                            warn!(client = %client_id, peer = %peer, error = %e, "Discarding malformed message");
                        }
                        Err(e) => break 'conn format!("unreadable message: {e}"),
                    }
                }
            }
        }
    };
    let name = daemon.clients.name(&client_id).unwrap_or_default();
    let departure = daemon.clients.remove(&client_id);
    info!(client = %client_id, name = %name, peer = %peer, reason = %reason, "Remote connection ended");
    if departure.remaining_clients == 0 {
        daemon.executor.last_client_gone();
    }
    if departure.was_provider {
        daemon.to_local(ToLocal::ProviderGone {
            provider: client_id.clone(),
        });
    }
    daemon.control(Control::ClientGone {
        remaining_providers: departure.remaining_providers,
    });
    transport.close().await;
}

fn dispatch(daemon: &Daemon, client_id: &str, own: &mpsc::UnboundedSender<Element>, msg: &Element) {
    let outcome = requests::handle(daemon, client_id, msg);
    if let Some(reply) = outcome.reply {
        let _ = own.send(reply);
    }
    if let Some(notify) = outcome.notify {
        daemon.clients.broadcast(&notify);
    }
}

async fn send<T: Transport>(
    daemon: &Daemon,
    transport: &mut T,
    mut msg: Element,
) -> std::io::Result<()> {
    if msg.attr(MSG_TYPE).is_none() {
        set_envelope(&mut msg, 0, MsgType::Notify);
    }
    let encoded = encode(daemon.next_msg_id(), &msg);
    debug!(element = %msg.name, bytes = encoded.payload.len(), "Sending");
    transport.write_record(&encoded.header).await?;
    transport.write_record(&encoded.payload).await
}
