//! libqb IPC, the transport Pacemaker's command-line tools use to reach local daemons.
//!
//! - [`ffi`] declares the C API;
//! - `service` holds all the server side's `unsafe`: libqb's services and connections, and the C
//!   callbacks (ownership rules in its opening comment, a SAFETY note at each site);
//! - [`IpcServers`] (`server`, no `unsafe`) drives those services from the daemon's tokio thread
//!   and serves named endpoints;
//! - [`IpcClient`] is a small blocking client for tests and diagnostics;
//! - `types` and `error` hold what those share ([`ConnId`], [`IpcEvent`], [`IpcError`], ...).

mod client;
mod error;
pub mod ffi;
mod server;
mod service;
mod types;

pub use client::IpcClient;
pub use error::IpcError;
pub use server::IpcServers;
pub use types::{AcceptPolicy, ConnId, IpcEvent, IpcTransport, Peer};
