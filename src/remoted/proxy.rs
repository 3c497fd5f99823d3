//! The IPC proxy, cluster side of the link: `ipc_fwd` messages from the cluster. Shutdown
//! answers are handled here; traffic for local tools goes to [`super::local_ipc`].

use tracing::{info, warn};

use super::Daemon;
use super::local_ipc::ToLocal;
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
        "event" | "response" | "destroy" => daemon.to_local(ToLocal::FromCluster {
            provider: client_id.to_string(),
            msg: msg.clone(),
        }),
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
