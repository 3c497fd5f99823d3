//! Pacemaker's remote message framing, shared by Pacemaker Remote (port 3121) and the remote CIB
//! port: a 40-byte header, then a NUL-terminated XML document.
//!
//! - [`header`], [`frame`]: the bytes, and a sans-I/O reassembler ([`FrameReader`])
//! - [`connection`]: one framed [`Connection`] (read a message, write a message) over any
//!   [`RecordTransport`]: TLS, plain TCP, or an in-memory pair for tests
//! - [`envelope`], [`xml`]: the message envelope and a small owned XML element
//! - [`ipc`]: the same XML inside libqb IPC messages
//! - [`cib_gateway`]: what kubemaker's CIB gateway and its clients agree on (identity, port)
//! - [`WireError`] (`error.rs`): what can be wrong with a message, and whether the stream survives it

pub mod cib_gateway;
pub mod connection;
pub mod envelope;
mod error;
pub mod frame;
pub mod header;
pub mod ipc;
pub mod xml;

pub use connection::{Connection, MemoryTransport, ReadError, RecordTransport, memory_pair};
pub use envelope::MsgType;
pub use error::WireError;
pub use frame::{EncodedMessage, FrameReader, encode};
pub use xml::Element;
