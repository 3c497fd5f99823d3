//! A minimal Pacemaker Remote client (what the cluster's controller does on its side): for tests,
//! the benchmark, and diagnosing a node by hand.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::tls::{
    TlsError, TlsStream, X509Credentials, connect_psk, connect_x509, priorities_psk,
    priorities_x509,
};
use crate::wire::envelope::{MsgType, msg_id, set_envelope};
use crate::wire::{Connection, Element, ReadError, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("connection closed by the daemon")]
    Closed,
    #[error("no {0} within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("register refused with rc {0}")]
    Refused(i64),
}

pub struct LrmdClient {
    conn: Connection<TlsStream>,
    next_id: i64,
    /// Notifies that arrived while waiting for a reply.
    pending: VecDeque<Element>,
    pub client_id: String,
}

impl LrmdClient {
    /// TLS-PSK connect (identity `lrmd`), without registering.
    pub async fn connect_raw(addr: &str, key: &[u8]) -> Result<LrmdClient, ClientError> {
        let tcp = Self::tcp(addr).await?;
        let stream = connect_psk(tcp, key, &priorities_psk(), Duration::from_secs(5)).await?;
        Ok(Self::over(stream))
    }

    /// X.509 connect (Pacemaker 3.0's certificate mode: what a cluster node with
    /// `PCMK_ca_file`/`PCMK_cert_file`/`PCMK_key_file` does), without registering.
    pub async fn connect_raw_x509(
        addr: &str,
        creds: &X509Credentials,
    ) -> Result<LrmdClient, ClientError> {
        let tcp = Self::tcp(addr).await?;
        let stream = connect_x509(tcp, creds, &priorities_x509(), Duration::from_secs(5)).await?;
        Ok(Self::over(stream))
    }

    async fn tcp(addr: &str) -> Result<TcpStream, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    fn over(stream: TlsStream) -> LrmdClient {
        LrmdClient {
            conn: Connection::new(stream, crate::wire::frame::DEFAULT_MAX_MESSAGE),
            next_id: 0,
            pending: VecDeque::new(),
            client_id: String::new(),
        }
    }

    /// Connects and registers like the controller (as IPC provider when `provider`).
    pub async fn connect(
        addr: &str,
        key: &[u8],
        name: &str,
        provider: bool,
    ) -> Result<LrmdClient, ClientError> {
        Self::connect_raw(addr, key)
            .await?
            .register(name, provider)
            .await
    }

    /// [`LrmdClient::connect`] in X.509 mode.
    pub async fn connect_x509(
        addr: &str,
        creds: &X509Credentials,
        name: &str,
        provider: bool,
    ) -> Result<LrmdClient, ClientError> {
        Self::connect_raw_x509(addr, creds)
            .await?
            .register(name, provider)
            .await
    }

    /// Registers like the controller (as IPC provider when `provider`).
    pub async fn register(mut self, name: &str, provider: bool) -> Result<LrmdClient, ClientError> {
        let mut reg = Element::new("lrmd_command")
            .with_attr("t", "lrmd")
            .with_attr("lrmd_op", "register")
            .with_attr("lrmd_clientname", name)
            .with_attr("lrmd_protocol_version", "1.1");
        if provider {
            reg.set_attr("lrmd_is_ipc_provider", "true");
        }
        let reply = self.request(reg, Duration::from_secs(10)).await?;
        match reply.attr_i64("lrmd_rc") {
            Some(0) => {}
            rc => return Err(ClientError::Refused(rc.unwrap_or(i64::MIN))),
        }
        self.client_id = reply.attr("lrmd_clientid").unwrap_or_default().to_string();
        Ok(self)
    }

    /// Sends a request (stamping id and type) without waiting; returns its message id.
    pub async fn send(&mut self, mut msg: Element) -> Result<i64, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        set_envelope(&mut msg, id, MsgType::Request);
        self.send_raw_message(&msg).await?;
        Ok(id)
    }

    /// Writes an already-enveloped message, as two records.
    pub async fn send_raw_message(&mut self, msg: &Element) -> Result<(), ClientError> {
        Ok(self
            .conn
            .write_message(self.next_id.max(0) as u64, msg)
            .await?)
    }

    /// Writes arbitrary bytes as one record (for bad-input tests).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        Ok(self.conn.transport_mut().write_record(bytes).await?)
    }

    /// Sends a request and waits for the reply carrying its id; notifies are queued meanwhile.
    pub async fn request(
        &mut self,
        msg: Element,
        timeout: Duration,
    ) -> Result<Element, ClientError> {
        let id = self.send(msg).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = self.next_message(deadline, "reply").await?;
            if MsgType::of(&m) == Some(MsgType::Reply) && msg_id(&m) == id {
                return Ok(m);
            }
            if MsgType::of(&m) != Some(MsgType::Reply) {
                self.pending.push_back(m);
            }
        }
    }

    /// Builds an `lrmd_command` for `op` with optional calldata child.
    pub fn command(op: &str, calldata: Option<Element>) -> Element {
        let mut c = Element::new("lrmd_command")
            .with_attr("t", "lrmd")
            .with_attr("lrmd_op", op)
            .with_attr("lrmd_timeout", 0)
            .with_attr("lrmd_callopt", 0);
        if let Some(d) = calldata {
            c.children.push(Element::new("lrmd_calldata").with_child(d));
        }
        c
    }

    /// Next notify (or any non-reply message) matching `pred`, within `timeout`.
    pub async fn wait_notify(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Element) -> bool,
    ) -> Result<Element, ClientError> {
        if let Some(i) = self.pending.iter().position(&pred) {
            return Ok(self.pending.remove(i).unwrap_or_default());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = self.next_message(deadline, "notify").await?;
            if MsgType::of(&m) == Some(MsgType::Reply) {
                continue;
            }
            if pred(&m) {
                return Ok(m);
            }
            self.pending.push_back(m);
        }
    }

    /// Everything received so far that nobody waited for.
    pub fn drain_pending(&mut self) -> Vec<Element> {
        self.pending.drain(..).collect()
    }

    /// Reads until a message arrives, the deadline passes, or the stream ends.
    pub async fn next_message(
        &mut self,
        deadline: tokio::time::Instant,
        what: &'static str,
    ) -> Result<Element, ClientError> {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, self.conn.read_message()).await {
            Err(_) => Err(ClientError::Timeout(what, remaining)),
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(ClientError::Closed),
            Ok(Err(ReadError::Transport(e))) => Err(e.into()),
            Ok(Err(ReadError::Wire(e))) => Err(e.into()),
        }
    }

    /// Reads one TLS record's worth of plaintext (for tests of the daemon's record boundaries).
    pub async fn read_chunk(&mut self, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::time::timeout(timeout, self.conn.transport_mut().read(&mut buf)).await {
            Err(_) => Err(ClientError::Timeout("data", timeout)),
            Ok(Ok(0)) => Err(ClientError::Closed),
            Ok(Ok(n)) => Ok(buf[..n].to_vec()),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    pub async fn close(mut self) {
        self.conn.close().await;
    }
}

/// `<lrmd_rsc .../>` calldata for resource ops.
pub fn rsc(id: &str) -> Element {
    Element::new("lrmd_rsc").with_attr("lrmd_rsc_id", id)
}

/// An exec request like the controller's (callopt 4 = notify changes only).
pub fn exec_command(
    rsc_id: &str,
    action: &str,
    interval_ms: u64,
    timeout_ms: u64,
    params: Element,
) -> Element {
    let calldata = rsc(rsc_id)
        .with_attr("lrmd_rsc_action", action)
        .with_attr(
            "lrmd_rsc_userdata_str",
            format!("{action}:{interval_ms}:0:kubemaker-client"),
        )
        .with_attr("lrmd_rsc_interval", interval_ms)
        .with_attr("lrmd_timeout", timeout_ms)
        .with_attr("lrmd_rsc_start_delay", 0)
        .with_child(params);
    let mut c = LrmdClient::command("lrmd_rsc_exec", Some(calldata));
    c.set_attr("lrmd_timeout", timeout_ms);
    c.set_attr("lrmd_callopt", 4);
    c
}
