//! kubemaker: Pacemaker remote nodes, the Kubernetes way.
//!
//! Layers (arrows point down only; no two modules import each other):
//!
//! ```text
//!   remoted ──► wire, tls, ipc        (tls builds on wire: its stream is a record transport)
//!   operator ──► cib ──► wire, tls
//! ```
//!
//! - [`wire`]: Pacemaker's remote message framing, one framed connection over any record
//!   transport, and a small owned XML type.
//! - [`tls`]: GnuTLS through a small FFI module (PSK server/client, anonymous-DH client).
//! - [`ipc`]: libqb IPC through a small FFI module, for Pacemaker's tools on the node.
//! - [`remoted`]: the `pacemaker-remoted`-compatible daemon (sessions, request handlers,
//!   executor, CIB/attrd proxy, local IPC, shutdown).
//! - [`cib`]: RemoteNode specs, their validation and plans, the remote CIB client, and the one
//!   apply/removal service that `kubemaker cib` and the controller share.
//! - [`operator`]: the Kubernetes custom resources and the controller.
//! - [`logging`]: `tracing` set-up shared by the subcommands.

pub mod cib;
pub mod ipc;
pub mod logging;
pub mod operator;
pub mod remoted;
pub mod tls;
pub mod wire;
