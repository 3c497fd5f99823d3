//! The IPC proxy, cluster side of the link: `ipc_fwd` messages from the cluster. Local IPC
//! servers (so that crm_mon and friends work on the node) are not built yet; until they are,
//! every proxied session is unknown and the cluster is told to drop it.

use tracing::{info, warn};

use super::Daemon;
use super::shutdown::Control;
use crate::wire::Element;

/// Handles one `ipc_fwd` request from a cluster connection.
pub fn from_cluster(daemon: &Daemon, client_id: &str, msg: &Element) {
    let op = msg.attr("lrmd_ipc_op").unwrap_or_default();
    match op {
        "shutdown_ack" => {
            info!(
                client = client_id,
                "Cluster acknowledged the shutdown request; waiting for it to stop resources and disconnect"
            );
            daemon.control(Control::ShutdownAck);
        }
        "shutdown_nack" => {
            info!(
                client = client_id,
                "Cluster refused the shutdown request (maintenance or unmanaged); exiting now"
            );
            daemon.control(Control::ShutdownNack);
        }
        "event" | "response" | "destroy" => {
            let Some(session) = msg.attr("lrmd_ipc_session") else {
                warn!(client = client_id, op, "Proxy message without a session");
                return;
            };
            if op != "destroy" {
                // No local client holds this session: tell the cluster to forget it.
                let notice = Element::new("lrmd_ipc_proxy")
                    .with_attr("lrmd_ipc_op", "destroy")
                    .with_attr("lrmd_ipc_session", session);
                daemon.clients.send(client_id, notice);
            }
        }
        other => warn!(
            client = client_id,
            op = other,
            "Unknown IPC proxy operation"
        ),
    }
}

/// Sends `shutdown_req` to the newest cluster connection; false when there is none.
pub fn request_shutdown(daemon: &Daemon) -> bool {
    let Some(provider) = daemon.clients.newest_provider() else {
        return false;
    };
    let req = Element::new("lrmd_ipc_proxy")
        .with_attr("lrmd_ipc_op", "shutdown_req")
        .with_attr("lrmd_ipc_session", "0");
    daemon.clients.send(&provider, req)
}
