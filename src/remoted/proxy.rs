//! The IPC proxy, cluster side of the link: what an `ipc_fwd` message from the cluster asks for
//! (shutdown answers for the main loop, traffic for local tools for the local IPC driver or, by
//! its session's prefix, for a CIB gateway client), and the
//! `shutdown_req` the daemon sends when it is asked to stop.

use tracing::{info, warn};

use super::cib_gateway;
use super::clients::Clients;
use super::routing::{Effect, ToLocal};
use super::shutdown::Control;
use crate::wire::Element;

/// What one `ipc_fwd` request from cluster connection `client_id` asks for; `None` for an
/// operation we do not know (logged).
pub fn from_cluster(client_id: &str, msg: &Element) -> Option<Effect> {
    let op = msg.attr("lrmd_ipc_op").unwrap_or_default();
    match op {
        "shutdown_ack" => {
            info!(
                client = client_id,
                "Cluster acknowledged the shutdown request; waiting for it to stop resources and disconnect"
            );
            Some(Effect::Control(Control::ShutdownAck))
        }
        "shutdown_nack" => {
            info!(
                client = client_id,
                "Cluster refused the shutdown request (maintenance or unmanaged); exiting now"
            );
            Some(Effect::Control(Control::ShutdownNack))
        }
        "event" | "response" | "destroy" => {
            let from_cluster = ToLocal::FromCluster {
                provider: client_id.to_string(),
                msg: msg.clone(),
            };
            let session = msg.attr("lrmd_ipc_session").unwrap_or_default();
            Some(if session.starts_with(cib_gateway::SESSION_PREFIX) {
                Effect::Gateway(from_cluster)
            } else {
                Effect::Local(from_cluster)
            })
        }
        other => {
            warn!(
                client = client_id,
                op = other,
                "Unknown IPC proxy operation"
            );
            None
        }
    }
}

/// Sends `shutdown_req` to the newest cluster connection; false when there is none.
pub fn request_shutdown(clients: &Clients) -> bool {
    let Some(provider) = clients.newest_provider() else {
        return false;
    };
    let req = Element::new("lrmd_ipc_proxy")
        .with_attr("lrmd_ipc_op", "shutdown_req")
        .with_attr("lrmd_ipc_session", "0");
    clients.send(&provider, req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(op: &str) -> Element {
        Element::new("lrmd_command")
            .with_attr("lrmd_op", "ipc_fwd")
            .with_attr("lrmd_ipc_op", op)
    }

    #[test]
    fn each_proxy_operation_has_one_destination() {
        assert!(matches!(
            from_cluster("c", &fwd("shutdown_ack")),
            Some(Effect::Control(Control::ShutdownAck))
        ));
        assert!(matches!(
            from_cluster("c", &fwd("shutdown_nack")),
            Some(Effect::Control(Control::ShutdownNack))
        ));
        for op in ["event", "response", "destroy"] {
            assert!(matches!(
                from_cluster("c", &fwd(op)),
                Some(Effect::Local(ToLocal::FromCluster { provider, .. })) if provider == "c"
            ));
        }
        assert!(from_cluster("c", &fwd("bogus")).is_none());
        let gateway = fwd("response").with_attr(
            "lrmd_ipc_session",
            format!("{}x", cib_gateway::SESSION_PREFIX),
        );
        assert!(matches!(
            from_cluster("c", &gateway),
            Some(Effect::Gateway(ToLocal::FromCluster { provider, .. })) if provider == "c"
        ));
    }
}
