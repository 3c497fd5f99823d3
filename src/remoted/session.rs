//! One cluster (or tool) connection after its TLS handshake: reads requests over a
//! `wire::Connection`, answers them in order, sends what others queue for this client (notifies,
//! proxy traffic), and when the connection ends tells each subsystem in one place (`end`).

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::clients::{MAX_QUEUED_MESSAGES, Outbox, RemoteOutbox};
use super::daemon::Daemon;
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
    let (outbox, mut outgoing, stalled) = RemoteOutbox::new(MAX_QUEUED_MESSAGES);
    daemon
        .clients
        .add(&client_id, Outbox::Remote(outbox.clone()));
    let mut conn = Connection::new(transport, daemon.max_message);
    let stalled_reason =
        || format!("the peer stopped reading: {MAX_QUEUED_MESSAGES} messages queued for it");
    let reason = loop {
        tokio::select! {
            biased;
            _ = stalled.notified() => break stalled_reason(),
            Some(msg) = outgoing.recv() => {
                // A write blocks while the peer does not read; the queue filling up ends it.
                tokio::select! {
                    sent = send(&daemon, &mut conn, msg) => if let Err(e) = sent {
                        break format!("write failed: {e}");
                    },
                    _ = stalled.notified() => break stalled_reason(),
                }
            }
            read = conn.read_message() => match read {
                Ok(Some(msg)) => {
                    let outcome = requests::handle(&daemon, &client_id, &msg);
                    routes.deliver(outcome, |reply| {
                        outbox.push(reply);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::mpsc::{self, UnboundedReceiver};

    use super::*;
    use crate::remoted::agents::AgentPaths;
    use crate::remoted::clients::Clients;
    use crate::remoted::executor::Executor;
    use crate::wire::frame::DEFAULT_MAX_MESSAGE;
    use crate::wire::{MsgType, memory_pair};

    type Inboxes = (UnboundedReceiver<Control>, UnboundedReceiver<ToLocal>);

    fn daemon() -> (Arc<Daemon>, Routes, Inboxes) {
        let clients = Arc::new(Clients::default());
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let gateway = super::super::cib_gateway::GatewaySessions::new(Default::default());
        let routes = Routes::new(clients.clone(), control_tx, local_tx, gateway);
        let daemon = Daemon::new(
            clients.clone(),
            Executor::new(AgentPaths::default(), clients),
            DEFAULT_MAX_MESSAGE,
        );
        (Arc::new(daemon), routes, (control_rx, local_rx))
    }

    #[tokio::test]
    async fn register_reports_the_node_start_state() {
        let (daemon, routes, _inboxes) = daemon();
        let mut daemon = Arc::into_inner(daemon).expect("sole owner");
        daemon.node_start_state = Some("standby".into());
        let (ours, theirs) = memory_pair();
        let session = tokio::spawn(serve(
            Arc::new(daemon),
            routes,
            theirs,
            "c2".into(),
            "test".into(),
        ));
        let mut conn = Connection::new(ours, DEFAULT_MAX_MESSAGE);
        let register = request(1, "register").with_attr("lrmd_protocol_version", "1.2");
        conn.write_message(1, &register).await.unwrap();
        let reply = conn_next(&mut conn).await;
        assert_eq!(reply.attr("lrmd_rc"), Some("0"), "a 1.2 cluster is served");
        assert_eq!(reply.attr("node_start_state"), Some("standby"));
        conn.close().await;
        session.await.unwrap();
    }

    fn request(id: i64, op: &str) -> Element {
        let mut el = Element::new("lrmd_command")
            .with_attr("t", "lrmd")
            .with_attr("lrmd_op", op);
        set_envelope(&mut el, id, MsgType::Request);
        el
    }

    /// Reply before notify on the sender's own connection; effects reach their subsystem; the
    /// end of the connection is told to the local IPC driver and the shutdown state machine.
    #[tokio::test]
    async fn outcomes_and_the_end_are_routed() {
        let (daemon, routes, (mut control, mut local)) = daemon();
        let (ours, theirs) = memory_pair();
        let session = tokio::spawn(serve(
            daemon.clone(),
            routes,
            theirs,
            "c1".into(),
            "test".into(),
        ));
        let mut conn = Connection::new(ours, DEFAULT_MAX_MESSAGE);

        let register = request(1, "register")
            .with_attr("lrmd_clientname", "crmd")
            .with_attr("lrmd_protocol_version", "1.1")
            .with_attr("lrmd_is_ipc_provider", "true");
        conn.write_message(1, &register).await.unwrap();
        let reply = conn_next(&mut conn).await;
        assert_eq!(reply.attr("lrmd_origin"), Some("process_lrmd_signon"));
        assert_eq!(reply.attr("lrmd_clientid"), Some("c1"));
        // 2.1.6+ keeps transient attributes over a reconnect when `uptime` shows no restart.
        assert_eq!(reply.attr("uptime"), Some("0"));
        assert_eq!(reply.attr("node_start_state"), None, "only when configured");
        assert_eq!(daemon.clients.newest_provider().as_deref(), Some("c1"));

        conn.write_message(2, &request(2, "lrmd_rsc_poke"))
            .await
            .unwrap();
        let reply = conn_next(&mut conn).await;
        assert_eq!(MsgType::of(&reply), Some(MsgType::Reply));
        assert_eq!(reply.attr("lrmd_remote_msg_id"), Some("2"));
        let notify = conn_next(&mut conn).await;
        assert_eq!(MsgType::of(&notify), Some(MsgType::Notify));
        assert_eq!(notify.attr("lrmd_op"), Some("lrmd_rsc_poke"));

        let ack = request(3, "ipc_fwd").with_attr("lrmd_ipc_op", "shutdown_ack");
        conn.write_message(3, &ack).await.unwrap();
        assert_eq!(conn_next(&mut conn).await.attr("lrmd_rc"), Some("0"));
        assert_eq!(control.recv().await, Some(Control::ShutdownAck));

        conn.close().await;
        session.await.unwrap();
        assert_eq!(
            control.recv().await,
            Some(Control::ClientGone {
                remaining_providers: 0
            })
        );
        assert!(matches!(
            local.recv().await,
            Some(ToLocal::ProviderGone { provider }) if provider == "c1"
        ));
        assert_eq!(daemon.clients.count(), 0);
    }

    /// A transport whose writes never complete once `blocked` is set: a peer that stopped reading
    /// and whose socket buffers are full.
    struct StallingTransport {
        inner: crate::wire::MemoryTransport,
        blocked: Arc<AtomicBool>,
    }

    impl RecordTransport for StallingTransport {
        type Error = std::io::Error;

        async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.inner.read(buf).await
        }

        async fn write_record(&mut self, data: &[u8]) -> std::io::Result<()> {
            if self.blocked.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.inner.write_record(data).await
        }

        async fn close(&mut self) {
            self.inner.close().await
        }
    }

    /// A peer that stops reading while notifies keep coming is disconnected once its queue is
    /// full, instead of the daemon holding them without bound; other clients are unaffected.
    #[tokio::test]
    async fn a_peer_that_stops_reading_is_disconnected_at_the_queue_bound() {
        let (daemon, routes, _inboxes) = daemon();
        let (ours, theirs) = memory_pair();
        let blocked = Arc::new(AtomicBool::new(false));
        let transport = StallingTransport {
            inner: theirs,
            blocked: Arc::clone(&blocked),
        };
        let session = tokio::spawn(serve(
            daemon.clone(),
            routes,
            transport,
            "slow".into(),
            "test".into(),
        ));
        let mut conn = Connection::new(ours, DEFAULT_MAX_MESSAGE);
        let register = request(1, "register")
            .with_attr("lrmd_clientname", "crmd")
            .with_attr("lrmd_protocol_version", "1.1");
        conn.write_message(1, &register).await.unwrap();
        conn_next(&mut conn).await;
        blocked.store(true, Ordering::SeqCst);
        let notify = Element::new("lrmd_notify").with_attr("lrmd_op", "lrmd_rsc_exec");
        // One to block the writer, the queue's worth, and one that finds it full.
        for _ in 0..MAX_QUEUED_MESSAGES + 2 {
            daemon.clients.broadcast(&notify);
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), session)
            .await
            .expect("the stalled session ends")
            .unwrap();
        assert_eq!(daemon.clients.count(), 0, "the stalled client is gone");
    }

    async fn conn_next(conn: &mut Connection<crate::wire::MemoryTransport>) -> Element {
        tokio::time::timeout(std::time::Duration::from_secs(5), conn.read_message())
            .await
            .expect("a message in time")
            .unwrap()
            .expect("the session is still there")
    }
}
