//! The facts both ends of kubemaker's CIB gateway agree on (`kubemaker remoted`'s optional
//! listener that carries remote-CIB-port traffic over the node's cluster connection, and the CIB
//! client that uses it). The gateway speaks the remote CIB port's protocol, except that TLS is
//! PSK with the Pacemaker Remote authkey under [`IDENTITY`] and the login carries no password.

/// The PSK identity of a gateway client. The cluster's connections present another one
/// (Pacemaker's "lrmd"), so neither listener can take one for the other.
pub const IDENTITY: &str = "kubemaker-cib-gateway";

/// The gateway's default TCP port (Pacemaker Remote's 3121, plus one).
pub const DEFAULT_PORT: u16 = 3122;

/// The login reply's `cib_rc` when this node has no cluster connection to carry requests over
/// (`-EREMOTEIO`, what local tools are told in the same case); the client then tries another node.
pub const RC_NO_CLUSTER: i64 = -121;
