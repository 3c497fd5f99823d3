//! The vocabulary the server side's halves (`service`, `server`) and the daemon share: the
//! transport choice, connection ids, peers, the events a service reports, the accept policy.

/// Which libqb transport a server offers (clients follow the server's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcTransport {
    SharedMemory,
    Socket,
}

impl IpcTransport {
    /// Pacemaker's `PCMK_ipc_type`: `socket`, or shared memory (the default).
    pub fn from_env() -> IpcTransport {
        match std::env::var("PCMK_ipc_type").as_deref() {
            Ok("socket") => IpcTransport::Socket,
            _ => IpcTransport::SharedMemory,
        }
    }
}

/// One local client connection, unique for the life of the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ipc#{}", self.0)
    }
}

impl From<ConnId> for u64 {
    fn from(c: ConnId) -> u64 {
        c.0
    }
}

impl From<u64> for ConnId {
    fn from(v: u64) -> ConnId {
        ConnId(v)
    }
}

/// Who is on the other end (from the kernel, via libqb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug)]
pub enum IpcEvent {
    Connected {
        service: String,
        conn: ConnId,
        peer: Peer,
    },
    /// The whole message as libqb delivered it (libqb's header included).
    Request {
        service: String,
        conn: ConnId,
        data: Vec<u8>,
    },
    Closed {
        service: String,
        conn: ConnId,
    },
}

/// Decides at accept time: `Ok(())`, or `Err(errno)` which the client's connect returns negated.
pub type AcceptPolicy = Box<dyn Fn(&str, u32, u32) -> Result<(), i32>>;
