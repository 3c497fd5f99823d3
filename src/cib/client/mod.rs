//! A client for Pacemaker's remote CIB port (`remote-tls-port`: anonymous-DH TLS on 2.1.x, and
//! on 3.0.x also X.509 or, from 3.0.2, PSK; or plaintext `remote-clear-port`, for tests), or for
//! the CIB gateway of a connected `kubemaker remoted` (the same protocol over PSK with the
//! Pacemaker Remote authkey, no password: [`TlsAuth::Gateway`]): a transport that connects, queries, applies one
//! patch and watches. It knows the CIB protocol, not what kubemaker writes: validating, planning
//! and the versioned write with retry are the service's (`cib::service`), one layer up.
//!
//! - `cib_client`: [`CibClient`], the calls (connect, [`Query`], apply a patch, watch) over the
//!   pieces below.
//! - [`config`]: endpoints, transport and TLS authentication ([`TlsAuth`]), login, timeouts,
//!   retry policy (`CIB_*` variables, or built in memory).
//! - [`error`]: [`CibError`], Pacemaker's return codes and call options.
//! - `connection`: one logged-in connection, one request at a time (the plaintext server drops
//!   pipelined bytes, and reads after writes must wait for the write's reply anyway). Every
//!   request has a timeout: the server does not answer unknown operations at all. The only file
//!   that touches streams and framing.
//! - `failover`: several endpoints (one per cluster node); the client fails over and backs off
//!   between rounds.
//! - [`watch`]: notifications on a separate connection ([`CibClient::watch`]) as a stream of
//!   diffs, with a resync event whenever the version chain has a gap or the connection was
//!   re-made.

mod cib_client;
pub mod config;
mod connection;
pub mod error;
mod failover;
pub mod watch;

/// What can be wrong with TLS credentials given to [`TlsAuth`].
pub use crate::tls::CredentialError;
pub use cib_client::{CibClient, Query};
pub use config::{
    ClientConfig, DEFAULT_USER, Endpoint, RetryPolicy, Secret, TlsAuth, Transport, parse_endpoints,
};
pub use error::{CibError, RC_DIFF_FAILED, RC_NOT_FOUND, RC_OLD_DATA, callopt, rc_message};
pub use watch::{CibDiff, VersionChain, Watch, WatchEvent};
