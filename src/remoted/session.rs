//! One cluster (or tool) connection after its TLS handshake: reads requests over a
//! `wire::Connection`, answers them in order, sends what others queue for this client (notifies,
//! proxy traffic), and when the connection ends tells each subsystem in one place ([`end`]).

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::daemon::Daemon;
use super::clients::Outbox;
use super::requests;
use super::routing::{Effect, Routes, ToLocal};
use super::shutdown::Control;
use crate::wire::envelope::{MSG_TYPE, MsgType, set_envelope};
use crate::wire::{Connection, Element, ReadError, RecordTransport};

/// Serves one connection until the peer goes, the stream breaks, or a message cannot be framed.
pub async fn serve<T: RecordTransport>(
    daemon: Arc<Daemon>,
    routes: Routes,
    transport: T,
    client_id: String,
    peer: String,
) {
    let (tx, mut outgoing) = mpsc::unbounded_channel::<Element>();
    daemon.clients.add(&client_id, Outbox::Remote(tx.clone()));
    let mut conn = Connection::new(transport, daemon.max_message);
    let reason = loop {
        tokio::select! {
            biased;
            Some(msg) = outgoing.recv() => {
                if let Err(e) = send(&daemon, &mut conn, msg).await {
                    break format!("write failed: {e}");
                }
            }
            read = conn.read_message() => match read {
                Ok(Some(msg)) => {
                    let outcome = requests::handle(&daemon, &client_id, &msg);
                    routes.deliver(outcome, |reply| {
                        let _ = tx.send(reply);
                    });
                }
                Ok(None) => break "closed by peer".to_string(),
                // The bad message was consumed whole: log it and keep the connection.
                Err(ReadError::Wire(e)) if e.stream_in_sync() => {
                    warn!(client = %client_id, peer = %peer, error = %e, "Discarding malformed message");
                }
                Err(ReadError::Wire(e)) => break format!("unreadable message: {e}"),
                Err(ReadError::Transport(e)) => break format!("read failed: {e}"),
            }
        }
    };
    end(&daemon, &routes, &client_id, &peer, &reason);
    conn.close().await;
}

/// The one teardown of a remote client: the registry forgets it, the executor drops what only
/// it wanted, its proxied local tools go, and the shutdown state machine counts what is left.
fn end(daemon: &Daemon, routes: &Routes, client_id: &str, peer: &str, reason: &str) {
    let name = daemon.clients.name(client_id).unwrap_or_default();
    let departure = daemon.clients.remove(client_id);
    info!(client = %client_id, name = %name, peer = %peer, reason = %reason, "Remote connection ended");
    if departure.remaining_clients == 0 {
        daemon.executor.last_client_gone();
    }
    if departure.was_provider {
        routes.apply(Effect::Local(ToLocal::ProviderGone {
            provider: client_id.to_string(),
        }));
    }
    routes.apply(Effect::Control(Control::ClientGone {
        remaining_providers: departure.remaining_providers,
    }));
}

/// Messages queued without an envelope are notifies.
async fn send<T: RecordTransport>(
    daemon: &Daemon,
    conn: &mut Connection<T>,
    mut msg: Element,
) -> Result<(), T::Error> {
    if msg.attr(MSG_TYPE).is_none() {
        set_envelope(&mut msg, 0, MsgType::Notify);
    }
    debug!(element = %msg.name, "Sending");
    conn.write_message(daemon.next_msg_id(), &msg).await
}
