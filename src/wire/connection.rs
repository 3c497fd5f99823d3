//! One framed connection: read a message, write a message, over any [`RecordTransport`].
//!
//! The rule every Pacemaker peer depends on lives here once: a message goes out as its header in
//! one write and its payload in the next, never merged (over TLS: separate records; the C peers
//! read one record per call and stall or drop anything else). Reading reassembles messages from
//! whatever chunks the transport returns, with [`FrameReader`].
//!
//! Transports: the GnuTLS stream (`crate::tls` implements [`RecordTransport`] for it), plain TCP
//! (the CIB's clear port), and [`memory_pair`] for tests.

use std::future::Future;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::error::WireError;
use super::frame::{FrameReader, encode};
use super::xml::Element;

/// Bytes asked of the transport per read: one full TLS record's plaintext (16 KiB).
pub const DEFAULT_READ_BUFFER: usize = 16 * 1024;

/// A byte stream that keeps each write on its own: over TLS, each `write_record` becomes its own
/// record(s), never merged with the next write.
pub trait RecordTransport: Send {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Up to `buf.len()` bytes; `Ok(0)` when the peer closed. Must be cancel-safe (data is taken
    /// from the transport only in the step that returns it), so reads can sit in `select!`.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, Self::Error>> + Send;

    /// Sends `data` as a write of its own. Not cancel-safe.
    fn write_record(&mut self, data: &[u8])
    -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Polite close (TLS close_notify, TCP FIN), best effort.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Transport(E),
    /// See [`WireError::stream_in_sync`]: some of these leave the connection usable.
    #[error(transparent)]
    Wire(WireError),
}

/// Messages over one transport.
pub struct Connection<T> {
    transport: T,
    frames: FrameReader,
    buf: Vec<u8>,
}

impl<T: RecordTransport> Connection<T> {
    /// `max_message` bounds one message (header and payload) before it is buffered.
    pub fn new(transport: T, max_message: u32) -> Connection<T> {
        Connection::with_read_buffer(transport, max_message, DEFAULT_READ_BUFFER)
    }

    /// As [`Connection::new`], asking the transport for up to `read_buffer` bytes per read
    /// (plain TCP can return more than one TLS record's worth).
    pub fn with_read_buffer(transport: T, max_message: u32, read_buffer: usize) -> Connection<T> {
        Connection {
            transport,
            frames: FrameReader::new(max_message),
            buf: vec![0; read_buffer.max(1)],
        }
    }

    /// The next message; `Ok(None)` when the peer closed. Cancel-safe: bytes read so far stay
    /// buffered for the next call.
    ///
    /// After `Err(ReadError::Wire(e))` the connection may be read again if
    /// `e.stream_in_sync()`: that message was consumed whole and is lost.
    pub async fn read_message(&mut self) -> Result<Option<Element>, ReadError<T::Error>> {
        loop {
            if let Some(el) = self.frames.next_message().map_err(ReadError::Wire)? {
                return Ok(Some(el));
            }
            let n = self
                .transport
                .read(&mut self.buf)
                .await
                .map_err(ReadError::Transport)?;
            if n == 0 {
                return Ok(None);
            }
            self.frames.push(&self.buf[..n]);
        }
    }

    /// Writes `el` as message number `id` (the header's id, which no Pacemaker reader uses):
    /// the header, then the payload, as two writes. Not cancel-safe.
    pub async fn write_message(&mut self, id: u64, el: &Element) -> Result<(), T::Error> {
        let encoded = encode(id, el);
        self.transport.write_record(&encoded.header).await?;
        self.transport.write_record(&encoded.payload).await
    }

    /// The transport, for raw reads and writes (tests of record boundaries and bad input).
    /// Reading from it directly bypasses messages already buffered here.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Closes the transport politely; the connection is not usable afterwards.
    pub async fn close(&mut self) {
        self.transport.close().await
    }

    pub fn into_transport(self) -> T {
        self.transport
    }
}

/// Plain TCP (the CIB's clear port). TCP has no records: the two writes of a message may reach
/// the peer together, which pacemaker-based's clear port accepts.
impl RecordTransport for tokio::net::TcpStream {
    type Error = io::Error;

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        AsyncReadExt::read(self, buf).await
    }

    async fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data).await
    }

    async fn close(&mut self) {
        let _ = self.shutdown().await;
    }
}

/// One end of an in-memory, record-preserving pipe (see [`memory_pair`]).
pub struct MemoryTransport {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    /// The record being read, and how much of it has been returned.
    current: Vec<u8>,
    offset: usize,
}

/// Two connected in-memory transports for tests. Each `write_record` arrives as one record; a
/// read returns at most the rest of one record (as GnuTLS does), so tests choose the chunking.
pub fn memory_pair() -> (MemoryTransport, MemoryTransport) {
    let (a_tx, b_rx) = mpsc::unbounded_channel();
    let (b_tx, a_rx) = mpsc::unbounded_channel();
    let end = |tx, rx| MemoryTransport {
        tx: Some(tx),
        rx,
        current: Vec::new(),
        offset: 0,
    };
    (end(a_tx, a_rx), end(b_tx, b_rx))
}

impl RecordTransport for MemoryTransport {
    type Error = io::Error;

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.offset == self.current.len() {
            // Cancel-safe: a record is moved out of the channel only in the step that keeps it.
            match self.rx.recv().await {
                Some(record) => {
                    self.current = record;
                    self.offset = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }

    async fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let sent = self.tx.as_ref().map(|tx| tx.send(data.to_vec()).is_ok());
        match sent {
            Some(true) => Ok(()),
            _ => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    async fn close(&mut self) {
        self.tx = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::DEFAULT_MAX_MESSAGE;
    use crate::wire::header::{HEADER_LEN, Header};

    fn sample(n: u32) -> Element {
        Element::new("lrmd_command")
            .with_attr("lrmd_op", "lrmd_rsc_poke")
            .with_attr("n", n)
    }

    fn pair() -> (Connection<MemoryTransport>, Connection<MemoryTransport>) {
        let (a, b) = memory_pair();
        (
            Connection::new(a, DEFAULT_MAX_MESSAGE),
            Connection::new(b, DEFAULT_MAX_MESSAGE),
        )
    }

    #[tokio::test]
    async fn a_message_is_a_header_record_then_a_payload_record() {
        let (mut a, mut b) = pair();
        a.write_message(7, &sample(1)).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = b.transport_mut().read(&mut buf).await.unwrap();
        assert_eq!(n, HEADER_LEN);
        let header = Header::parse(&buf[..HEADER_LEN].try_into().unwrap(), 1 << 20).unwrap();
        assert_eq!(header.id, 7);
        let n = b.transport_mut().read(&mut buf).await.unwrap();
        assert_eq!(n + HEADER_LEN, header.size_total as usize);
        assert_eq!(buf[n - 1], 0, "payload is NUL-terminated");
    }

    #[tokio::test]
    async fn messages_round_trip_and_close_reads_as_end() {
        let (mut a, mut b) = pair();
        for n in 0..3 {
            a.write_message(u64::from(n), &sample(n)).await.unwrap();
        }
        a.close().await;
        for n in 0..3 {
            assert_eq!(b.read_message().await.unwrap(), Some(sample(n)));
        }
        assert_eq!(b.read_message().await.unwrap(), None);
    }

    /// Header split across reads, payload in odd pieces, two messages in one record.
    #[tokio::test]
    async fn partial_records_are_reassembled() {
        let (mut a, mut b) = pair();
        let mut stream = Vec::new();
        for n in 0..2 {
            let m = encode(1, &sample(n));
            stream.extend_from_slice(&m.header);
            stream.extend_from_slice(&m.payload);
        }
        let raw = a.transport_mut();
        raw.write_record(&stream[..3]).await.unwrap();
        raw.write_record(&stream[3..HEADER_LEN + 1]).await.unwrap();
        raw.write_record(&stream[HEADER_LEN + 1..HEADER_LEN + 10])
            .await
            .unwrap();
        raw.write_record(&stream[HEADER_LEN + 10..]).await.unwrap();
        assert_eq!(b.read_message().await.unwrap(), Some(sample(0)));
        assert_eq!(b.read_message().await.unwrap(), Some(sample(1)));
    }

    #[tokio::test]
    async fn small_read_buffer_still_reassembles() {
        let (x, y) = memory_pair();
        let mut a = Connection::new(x, DEFAULT_MAX_MESSAGE);
        let mut b = Connection::with_read_buffer(y, DEFAULT_MAX_MESSAGE, 5);
        a.write_message(1, &sample(9)).await.unwrap();
        assert_eq!(b.read_message().await.unwrap(), Some(sample(9)));
    }

    #[tokio::test]
    async fn oversize_is_refused_from_the_header_alone() {
        let (x, y) = memory_pair();
        let mut a = Connection::new(x, DEFAULT_MAX_MESSAGE);
        let mut b = Connection::new(y, 100);
        a.transport_mut()
            .write_record(&Header::for_payload(1, 10_000).to_bytes())
            .await
            .unwrap();
        let err = b.read_message().await.unwrap_err();
        assert!(
            matches!(&err, ReadError::Wire(w @ WireError::TooLarge { .. }) if !w.stream_in_sync()),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn malformed_payload_is_skipped_and_the_next_message_read() {
        let (mut a, mut b) = pair();
        let garbage = b"<unclosed\0";
        let raw = a.transport_mut();
        raw.write_record(&Header::for_payload(1, garbage.len() as u32).to_bytes())
            .await
            .unwrap();
        raw.write_record(garbage).await.unwrap();
        a.write_message(2, &sample(2)).await.unwrap();
        match b.read_message().await {
            Err(ReadError::Wire(e)) => assert!(e.stream_in_sync(), "{e}"),
            other => panic!("expected a wire error, got {other:?}"),
        }
        assert_eq!(b.read_message().await.unwrap(), Some(sample(2)));
    }

    #[tokio::test]
    async fn bad_magic_ends_the_stream() {
        let (mut a, mut b) = pair();
        a.transport_mut().write_record(&[0u8; 40]).await.unwrap();
        match b.read_message().await {
            Err(ReadError::Wire(e @ WireError::BadMagic(_))) => assert!(!e.stream_in_sync()),
            other => panic!("expected bad magic, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn read_is_cancel_safe() {
        let (mut a, mut b) = pair();
        let m = encode(1, &sample(4));
        a.transport_mut().write_record(&m.header).await.unwrap();
        // The header arrives, the payload does not: the read is cancelled by the timeout.
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), b.read_message()).await;
        assert!(waited.is_err());
        a.transport_mut().write_record(&m.payload).await.unwrap();
        assert_eq!(b.read_message().await.unwrap(), Some(sample(4)));
    }

    #[tokio::test]
    async fn writing_to_a_closed_peer_fails() {
        let (mut a, b) = pair();
        drop(b);
        assert!(a.write_message(1, &sample(0)).await.is_err());
    }

    #[tokio::test]
    async fn plain_tcp_carries_messages() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut a = Connection::new(client, DEFAULT_MAX_MESSAGE);
        let mut b = Connection::new(server, DEFAULT_MAX_MESSAGE);
        a.write_message(1, &sample(5)).await.unwrap();
        a.close().await;
        assert_eq!(b.read_message().await.unwrap(), Some(sample(5)));
        assert_eq!(b.read_message().await.unwrap(), None);
    }
}
