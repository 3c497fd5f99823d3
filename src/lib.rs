//! kubemaker: Pacemaker remote nodes, the Kubernetes way.
//!
//! Layers (each talks only to the one below):
//! - [`wire`]: Pacemaker's remote message framing and a small owned XML type.
//! - [`tls`]: GnuTLS through a small FFI module (PSK server/client, anonymous-DH client).
//! - [`remoted`]: the `pacemaker-remoted`-compatible daemon (sessions, executor, shutdown).
//! - [`operator`]: the Kubernetes custom resources (and, later, the controller).

pub mod cib;
pub mod ipc;
pub mod logging;
pub mod operator;
pub mod remoted;
pub mod tls;
pub mod wire;
