//! The local side of the IPC proxy: libqb IPC servers under Pacemaker's names, so `crm_mon`,
//! `cibadmin`, `crm_attribute`, `attrd_updater` and friends work on this node.
//!
//! - `cib_ro`, `cib_rw`, `cib_shm` (announced as `cib_rw`), `attrd`, `stonith-ng`, `crmd`: each
//!   local client becomes a proxy session carried over the newest cluster connection;
//! - `pacemakerd` refuses with `-EREMOTEIO`, which is how tools learn they run on a remote node;
//! - `lrmd` serves the executor API locally.
//!
//! Each tool speaks the IPC header of its Pacemaker generation (`wire::ipc::IpcLayout`: 2.1.x and
//! 3.0.0, or 3.0.1+); its connection learns which from the first message and answers in it.
//!
//! libqb is single-threaded, so all of this lives in the daemon's main task; sessions reach it
//! through [`ToLocal`] messages. Requests from local executor clients go through the same
//! handlers as the cluster's, and their outcomes through the same [`Routes`].

use std::collections::HashMap;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::clients::Outbox;
use super::daemon::Daemon;
use super::requests::{self, Origin};
use super::routing::{Routes, ToLocal};
use crate::ipc::{AcceptPolicy, ConnId, IpcEvent, IpcServers, IpcTransport, Peer};
use crate::wire::Element;
use crate::wire::ipc::{self as ipcwire, IpcLayout, IpcReader, flags};

/// `EREMOTEIO`: "this is a remote node" (pacemakerd) or "no cluster connection" (the others).
pub const EREMOTEIO: i32 = 121;
/// `PCMK_ipc_buffer` default.
const DEFAULT_BUFFER: usize = 128 * 1024;

const PROXIED: [&str; 6] = ["cib_ro", "cib_rw", "cib_shm", "attrd", "stonith-ng", "crmd"];

struct LocalClient {
    kind: Kind,
    peer: Peer,
    /// The header layout this tool speaks (learnt from its first message) and its unfinished
    /// multipart message; replies go out in the same layout.
    reader: IpcReader,
}

enum Kind {
    Proxied {
        session: String,
        provider: String,
        /// `proxy-<channel>-<pid>-<8 chars of session>`, the name the cluster logs.
        name: String,
        user: String,
    },
    Executor {
        client_id: String,
    },
}

pub struct LocalIpc {
    servers: Option<IpcServers>,
    clients: HashMap<ConnId, LocalClient>,
    sessions: HashMap<String, ConnId>,
    buffer_size: usize,
    /// Notifies for local executor clients, queued by the shared client registry.
    outbox_tx: mpsc::UnboundedSender<(u64, Element)>,
    outbox_rx: mpsc::UnboundedReceiver<(u64, Element)>,
}

impl LocalIpc {
    /// Starts every server. Failures are logged and leave that name unserved: the cluster link
    /// matters more than local tools.
    pub fn start(daemon: &Daemon, enabled: bool) -> LocalIpc {
        let buffer_size = std::env::var("PCMK_ipc_buffer")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&b| b >= 1024)
            .unwrap_or(DEFAULT_BUFFER);
        let servers = if enabled {
            start_servers(daemon, buffer_size)
        } else {
            None
        };
        let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
        LocalIpc {
            servers,
            clients: HashMap::new(),
            sessions: HashMap::new(),
            buffer_size,
            outbox_tx,
            outbox_rx,
        }
    }

    /// Waits for something to do and does it.
    pub async fn turn(
        &mut self,
        daemon: &Daemon,
        routes: &Routes,
        commands: &mut mpsc::UnboundedReceiver<ToLocal>,
    ) {
        tokio::select! {
            Some(ev) = next_event(&mut self.servers) => self.on_event(daemon, routes, ev),
            Some(cmd) = commands.recv() => self.on_command(daemon, cmd),
            Some((conn, msg)) = self.outbox_rx.recv() => {
                self.send(ConnId::from(conn), 0, flags::SERVER_EVENT, &msg);
            }
        }
    }

    fn on_event(&mut self, daemon: &Daemon, routes: &Routes, ev: IpcEvent) {
        match ev {
            IpcEvent::Connected {
                service,
                conn,
                peer,
            } => self.connected(daemon, &service, conn, peer),
            IpcEvent::Request { conn, data, .. } => self.request(daemon, routes, conn, &data),
            IpcEvent::Closed { conn, .. } => self.closed(daemon, conn),
        }
    }

    fn connected(&mut self, daemon: &Daemon, service: &str, conn: ConnId, peer: Peer) {
        let session = uuid::Uuid::new_v4().to_string();
        if service == "lrmd" {
            daemon
                .clients
                .add(&session, Outbox::Local(self.outbox_tx.clone(), conn.into()));
            debug!(conn = %conn, pid = peer.pid, "Local executor client connected");
            self.clients.insert(
                conn,
                LocalClient {
                    kind: Kind::Executor { client_id: session },
                    peer,
                    reader: IpcReader::default(),
                },
            );
            return;
        }
        let Some(provider) = daemon.clients.newest_provider() else {
            // The cluster went away between accept and now.
            self.disconnect(conn);
            return;
        };
        let channel = if service == "cib_shm" {
            "cib_rw"
        } else {
            service
        };
        let name = format!("proxy-{channel}-{}-{}", peer.pid, &session[..8]);
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| peer.uid.to_string());
        let new = Element::new("lrmd_ipc_proxy")
            .with_attr("lrmd_ipc_op", "new")
            .with_attr("lrmd_ipc_server", channel)
            .with_attr("lrmd_ipc_session", &session);
        daemon.clients.send(&provider, new);
        info!(client = %name, user = %user, uid = peer.uid, "Proxying local IPC client to the cluster");
        self.sessions.insert(session.clone(), conn);
        self.clients.insert(
            conn,
            LocalClient {
                kind: Kind::Proxied {
                    session,
                    provider,
                    name,
                    user,
                },
                peer,
                reader: IpcReader::default(),
            },
        );
    }

    fn request(&mut self, daemon: &Daemon, routes: &Routes, conn: ConnId, data: &[u8]) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let msg = match client.reader.push(data) {
            Ok(Some(m)) => m,
            Ok(None) => return, // a part; the rest follows
            Err(e) => {
                warn!(conn = %conn, pid = client.peer.pid, error = %e, "Dropping local IPC client after an unreadable message");
                self.disconnect(conn);
                return;
            }
        };
        match &client.kind {
            Kind::Executor { client_id } => {
                let outcome = requests::handle_request(daemon, client_id, &msg.xml, Origin::Local);
                routes.deliver(outcome, |reply| self.send(conn, msg.id, 0, &reply));
            }
            Kind::Proxied {
                session,
                provider,
                name,
                user,
            } => {
                let request = Element::new("lrmd_ipc_proxy")
                    .with_attr("lrmd_ipc_op", "request")
                    .with_attr("lrmd_ipc_session", session)
                    .with_attr("lrmd_ipc_client", name)
                    .with_attr("lrmd_ipc_user", user)
                    .with_attr("lrmd_ipc_msg_id", msg.id)
                    .with_attr("lrmd_ipc_msg_flags", msg.flags | flags::PROXIED)
                    .with_child(Element::new("lrmd_ipc_msg").with_child(msg.xml));
                if !daemon.clients.send(provider, request) {
                    warn!(client = %name, "Cluster connection gone; dropping local IPC client");
                    self.disconnect(conn);
                }
            }
        }
    }

    fn closed(&mut self, daemon: &Daemon, conn: ConnId) {
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        match client.kind {
            Kind::Executor { client_id } => {
                daemon.clients.remove(&client_id);
            }
            Kind::Proxied {
                session,
                provider,
                name,
                ..
            } => {
                self.sessions.remove(&session);
                debug!(client = %name, "Local IPC client disconnected");
                let destroy = Element::new("lrmd_ipc_proxy")
                    .with_attr("lrmd_ipc_op", "destroy")
                    .with_attr("lrmd_ipc_session", session);
                daemon.clients.send(&provider, destroy);
            }
        }
    }

    fn on_command(&mut self, daemon: &Daemon, cmd: ToLocal) {
        match cmd {
            ToLocal::ProviderGone { provider } => {
                let bound: Vec<ConnId> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| matches!(&c.kind, Kind::Proxied { provider: p, .. } if *p == provider))
                    .map(|(conn, _)| *conn)
                    .collect();
                for conn in bound {
                    self.disconnect(conn);
                }
            }
            ToLocal::FromCluster { provider, msg } => {
                self.deliver_from_cluster(daemon, &provider, &msg)
            }
        }
    }

    /// `event`, `response` or `destroy` for one local session.
    fn deliver_from_cluster(&mut self, daemon: &Daemon, provider: &str, msg: &Element) {
        let op = msg.attr("lrmd_ipc_op").unwrap_or_default();
        let session = msg.attr("lrmd_ipc_session").unwrap_or_default();
        let Some(&conn) = self.sessions.get(session) else {
            if op != "destroy" {
                let destroy = Element::new("lrmd_ipc_proxy")
                    .with_attr("lrmd_ipc_op", "destroy")
                    .with_attr("lrmd_ipc_session", session);
                daemon.clients.send(provider, destroy);
            }
            return;
        };
        let inner = msg.child("lrmd_ipc_msg").and_then(|m| m.children.first());
        match (op, inner) {
            ("destroy", _) => self.disconnect(conn),
            ("event", Some(inner)) => self.send(conn, 0, flags::SERVER_EVENT, inner),
            ("response", Some(inner)) => {
                let id = msg
                    .attr_i64("lrmd_ipc_msg_id")
                    .unwrap_or(0)
                    .clamp(0, i64::from(u32::MAX)) as u32;
                self.send(conn, id, 0, inner);
            }
            (other, _) => warn!(
                op = other,
                session, "Malformed IPC proxy message from the cluster"
            ),
        }
    }

    fn disconnect(&mut self, conn: ConnId) {
        if let Some(s) = self.servers.as_mut() {
            s.disconnect(conn);
        }
    }

    fn send(&mut self, conn: ConnId, id: u32, msg_flags: u32, xml: &Element) {
        let Some(servers) = self.servers.as_mut() else {
            return;
        };
        let layout = self
            .clients
            .get(&conn)
            .map(|c| c.reader.layout())
            .unwrap_or_default();
        // 3.0.1+ tools read into a fixed 128 KiB buffer whatever PCMK_ipc_buffer says.
        let max = match layout {
            IpcLayout::Compressing => self.buffer_size,
            IpcLayout::Multipart => self.buffer_size.min(DEFAULT_BUFFER),
        };
        for bytes in ipcwire::encode(layout, id, msg_flags, xml, max) {
            let result = if msg_flags & flags::SERVER_EVENT != 0 {
                servers.send_event(conn, &bytes)
            } else {
                servers.send_response(conn, &bytes)
            };
            if let Err(e) = result {
                debug!(conn = %conn, error = %e, "Could not deliver to local IPC client");
                return;
            }
        }
    }
}

fn start_servers(daemon: &Daemon, buffer_size: usize) -> Option<IpcServers> {
    let clients = daemon.clients.clone();
    let accept: AcceptPolicy = Box::new(move |service: &str, uid: u32, gid: u32| match service {
        "pacemakerd" => Err(EREMOTEIO),
        "lrmd" => Ok(()),
        _ if clients.provider_count() == 0 => {
            warn!(
                service,
                uid, gid, "Cannot proxy IPC connection because not connected to cluster"
            );
            Err(EREMOTEIO)
        }
        _ => Ok(()),
    });
    let mut servers = match IpcServers::new(accept) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Local IPC unavailable; Pacemaker tools on this node will not work");
            return None;
        }
    };
    let transport = IpcTransport::from_env();
    let mut failed = Vec::new();
    for name in PROXIED.iter().copied().chain(["pacemakerd", "lrmd"]) {
        let t = if name == "cib_shm" {
            IpcTransport::SharedMemory
        } else {
            transport
        };
        if let Err(e) = servers.add(name, t, buffer_size) {
            debug!(service = name, error = %e, "Local IPC server failed");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        warn!(
            services = ?failed,
            "Local IPC names already taken (Pacemaker cluster daemons in this network namespace?); Pacemaker tools here will talk to those instead"
        );
    }
    Some(servers)
}

/// The next IPC event, or never when local IPC could not start.
async fn next_event(servers: &mut Option<IpcServers>) -> Option<IpcEvent> {
    match servers {
        Some(s) => Some(s.next_event().await),
        None => std::future::pending().await,
    }
}
