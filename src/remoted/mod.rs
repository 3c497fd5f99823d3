//! `kubemaker remoted`: a wire-compatible replacement for `pacemaker-remoted` (Pacemaker 2.1.x).
//!
//! - [`listener`]: TCP listener and TLS-PSK handshake per connection
//! - [`session`]: one connection: framing, request order, outgoing records
//! - [`requests`]: the `lrmd_op` handlers (register, poke, resource ops, ...)
//! - [`executor`]: resource table, per-resource queues, recurring ops, cancel
//! - [`agents`]: running OCF/LSB/systemd agents
//! - [`proxy`]: IPC proxy messages from the cluster (shutdown answers, tool traffic)
//! - [`local_ipc`]: libqb servers for local Pacemaker tools, proxied to the cluster
//! - [`shutdown`]: graceful stop (shutdown_req / ack / disconnect)

pub mod agents;
mod alerts;
pub mod authkey;
pub mod client;
pub mod clients;
pub mod config;
pub mod executor;
pub mod listener;
pub mod local_ipc;
pub mod proxy;
pub mod readiness;
pub mod requests;
pub mod session;
pub mod shutdown;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{info, warn};

use self::agents::AgentPaths;
use self::authkey::KeyFiles;
use self::clients::Clients;
pub use self::config::Config;
use self::executor::Executor;
use self::shutdown::{Action, Control, Shutdown};
use crate::tls::PskKeySource;
use crate::tls::PskServer;

/// State shared by every connection.
pub struct Daemon {
    pub clients: Arc<Clients>,
    pub executor: Executor,
    pub tls: PskServer,
    pub handshake_timeout: Duration,
    pub max_message: u32,
    call_id: AtomicI64,
    msg_id: AtomicU64,
    control: mpsc::UnboundedSender<Control>,
    local: mpsc::UnboundedSender<local_ipc::ToLocal>,
}

impl Daemon {
    /// Server-assigned call id, one per request, wrapping to 1 like Pacemaker's.
    pub fn next_call_id(&self) -> i64 {
        let mut id = self.call_id.fetch_add(1, Ordering::Relaxed) + 1;
        if id <= 0 || id > i64::from(i32::MAX) {
            self.call_id.store(1, Ordering::Relaxed);
            id = 1;
        }
        id
    }

    /// Header id: a per-process counter over all connections (nobody reads it).
    pub fn next_msg_id(&self) -> u64 {
        self.msg_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn control(&self, c: Control) {
        let _ = self.control.send(c);
    }

    pub fn to_local(&self, msg: local_ipc::ToLocal) {
        let _ = self.local.send(msg);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemotedError {
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// Runs the daemon until it decides to exit; returns the process exit code.
pub async fn run(config: Config, paths: AgentPaths) -> Result<i32, RemotedError> {
    prepare_rsc_tmp_dir();
    let keys = Arc::new(KeyFiles::new(config.authkey_paths.clone()));
    match keys.load() {
        Some((path, _)) => info!(path = %path.display(), "Pacemaker Remote key found"),
        None => {
            warn!(paths = ?keys.paths(), "No Pacemaker Remote key file yet; connections will be refused until one appears")
        }
    }
    let tls = PskServer::new(keys.clone(), &crate::tls::priorities_psk())?;
    let clients = Arc::new(Clients::default());
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    let (local_tx, mut local_rx) = mpsc::unbounded_channel();
    let daemon = Arc::new(Daemon {
        executor: Executor::new(paths, clients.clone()),
        clients,
        tls,
        handshake_timeout: config.handshake_timeout,
        max_message: config.max_message,
        call_id: AtomicI64::new(0),
        msg_id: AtomicU64::new(0),
        control: control_tx,
        local: local_tx,
    });
    let mut local_tools = local_ipc::LocalIpc::start(&daemon, config.local_ipc);

    let mut listener = Some(listener::bind(config.address.as_deref(), config.port).await?);
    let mut sigterm = signal(SignalKind::terminate()).map_err(RemotedError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RemotedError::Signal)?;
    let local = listener.as_ref().and_then(|l| l.local_addr().ok());
    info!(
        listen = %local.map(|a| a.to_string()).unwrap_or_default(),
        protocol = requests::PROTOCOL_VERSION,
        version = env!("CARGO_PKG_VERSION"),
        "kubemaker remoted successfully started"
    );

    let mut ready_file = config.ready_file.clone().map(readiness::ReadyFile::new);
    let mut readiness_check = tokio::time::interval(readiness::CHECK_EVERY);
    let mut shutdown = Shutdown::new(config.shutdown_ack_timeout);
    loop {
        let deadline = shutdown.deadline();
        let action = tokio::select! {
            accepted = async { listener.as_ref().map(|l| l.accept()).expect("guarded").await }, if listener.is_some() => {
                match accepted {
                    Ok((tcp, peer)) => {
                        tokio::spawn(listener::handle_connection(daemon.clone(), tcp, peer));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Action::Continue
            }
            _ = sigterm.recv() => shutdown.on_sigterm(daemon.clients.provider_count(), std::time::Instant::now()),
            _ = sigint.recv() => shutdown.on_sigterm(daemon.clients.provider_count(), std::time::Instant::now()),
            Some(c) = control_rx.recv() => shutdown.on_control(c),
            _ = local_tools.turn(&daemon, &mut local_rx) => Action::Continue,
            _ = async { tokio::time::sleep_until(deadline.expect("guarded").into()).await }, if deadline.is_some() => shutdown.on_deadline(),
            _ = readiness_check.tick(), if ready_file.is_some() => {
                let ready = readiness::is_ready(listener.is_some(), keys.current_key().is_some());
                if let Some(f) = ready_file.as_mut() {
                    f.update(ready);
                }
                Action::Continue
            }
        };
        match action {
            Action::Continue => {}
            Action::RequestShutdown => {
                if !proxy::request_shutdown(&daemon) {
                    info!("Cluster connection went away before the shutdown request; exiting");
                    return Ok(0);
                }
                // Refuse new connections from now on (a reconnecting cluster would undo the stop).
                listener = None;
                if let Some(f) = ready_file.as_mut() {
                    f.update(false);
                }
            }
            Action::Exit(code) => {
                info!(
                    code,
                    remaining_ops = daemon.executor.active_ops(),
                    "Exiting"
                );
                return Ok(code);
            }
        }
    }
}

fn prepare_rsc_tmp_dir() {
    use std::os::unix::fs::DirBuilderExt;
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(config::RSC_TMP_DIR)
    {
        warn!(dir = config::RSC_TMP_DIR, error = %e, "Cannot create the resource agents' state directory");
    }
}
