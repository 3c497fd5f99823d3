//! `kubemaker remoted`: a wire-compatible replacement for `pacemaker-remoted` (Pacemaker 2.1.x).
//!
//! - [`cli`]: the command line and start-up (`kubemaker remoted`, the `kubemaker-remoted` binary)
//! - [`listener`]: TCP listener and TLS handshake per connection (it owns the TLS server)
//! - [`admission`]: bounds and log budget for peers that have not finished their handshake
//! - [`session`]: one connection over `wire::Connection`: request order, outgoing messages,
//!   and the one teardown that tells every subsystem the client is gone
//! - [`requests`]: the table of `lrmd_op` handlers (register, poke, resource ops, ...)
//! - [`routing`]: what a handled request leads to (reply, notify, effects) and where it goes
//! - [`daemon`]: the state connections share (clients, executor, ids)
//! - [`executor`]: resource table, per-resource queues, recurring ops, cancel
//! - [`agents`]: running OCF/LSB/systemd agents
//! - [`proxy`]: IPC proxy messages from the cluster (shutdown answers, tool traffic)
//! - [`local_ipc`]: libqb servers for local Pacemaker tools, proxied to the cluster
//! - [`cib_gateway`]: the optional CIB gateway listener: remote-CIB-port clients holding the
//!   authkey, proxied to the cluster's CIB like local tools
//! - [`shutdown`]: graceful stop (shutdown_req / ack / disconnect)
//!
//! Who calls whom: `run` (below) accepts connections and drives the shutdown state machine and
//! the local IPC driver; `listener` → `session` → `requests` → (`executor`, `proxy`), each
//! request's [`routing::Outcome`] delivered by `session` or `local_ipc` through
//! [`routing::Routes`]; no handler holds a way to another subsystem.

pub mod admission;
pub mod agents;
mod alerts;
pub mod authkey;
pub mod cib_gateway;
pub mod cli;
pub mod client;
pub mod clients;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod listener;
pub mod local_ipc;
pub mod proxy;
pub mod readiness;
pub mod requests;
pub mod routing;
pub mod session;
pub mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{info, warn};

use self::agents::AgentPaths;
use self::authkey::KeyFiles;
use self::clients::Clients;
pub use self::config::Config;
pub use self::daemon::Daemon;
use self::executor::Executor;
use self::routing::Routes;
use self::shutdown::{Action, Shutdown};
use crate::tls::PskKeySource;

#[derive(Debug, thiserror::Error)]
pub enum RemotedError {
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] listener::TlsSetupError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// Runs the daemon until it decides to exit; returns the process exit code.
pub async fn run(config: Config, paths: AgentPaths) -> Result<i32, RemotedError> {
    prepare_rsc_tmp_dir();
    let keys = Arc::new(KeyFiles::new(config.authkey_paths.clone()));
    let tls = listener::tls_server(&config, keys.clone())?;
    let x509 = matches!(tls, crate::tls::TlsServer::X509(_));
    let clients = Arc::new(Clients::default());
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    let (local_tx, mut local_rx) = mpsc::unbounded_channel();
    let gateway_sessions = cib_gateway::GatewaySessions::new(config.cib_gateway);
    let routes = Routes::new(
        clients.clone(),
        control_tx,
        local_tx,
        gateway_sessions.clone(),
    );
    let mut daemon = Daemon::new(
        clients.clone(),
        Executor::new(paths, clients),
        config.max_message,
    );
    daemon.node_start_state = config.node_start_state.clone();
    let daemon = Arc::new(daemon);
    let handshake = Arc::new(listener::Handshake {
        tls,
        timeout: config.handshake_timeout,
        admission: admission::Admission::new(config.admission),
    });
    let mut log_window = tokio::time::interval(config.admission.log_window);
    let mut local_tools = local_ipc::LocalIpc::start(&daemon, config.local_ipc);

    let mut listener = Some(listener::bind(config.address.as_deref(), config.port).await?);
    let mut gateway = match config.cib_gateway_port {
        None => None,
        Some(port) => {
            let l = listener::bind(config.address.as_deref(), port).await?;
            info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), max_clients = config.cib_gateway.max_clients, "CIB gateway listening (clients need the authkey)");
            let gateway_handshake = Arc::new(listener::Handshake {
                tls: listener::gateway_tls_server(keys.clone())?,
                timeout: config.handshake_timeout,
                admission: handshake.admission.clone(),
            });
            Some((l, gateway_handshake))
        }
    };
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
                        tokio::spawn(listener::handle_connection(daemon.clone(), routes.clone(), handshake.clone(), tcp, peer));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Action::Continue
            }
            (accepted, gateway_handshake) = async {
                let (l, handshake) = gateway.as_ref().expect("guarded");
                (l.accept().await, handshake.clone())
            }, if gateway.is_some() => {
                match accepted {
                    Ok((tcp, peer)) => {
                        let (daemon, sessions) = (daemon.clone(), gateway_sessions.clone());
                        tokio::spawn(async move {
                            if let Some(stream) = listener::authenticate(&gateway_handshake, tcp, peer).await {
                                cib_gateway::serve(daemon, sessions, stream, peer).await;
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "CIB gateway accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Action::Continue
            }
            _ = sigterm.recv() => shutdown.on_sigterm(daemon.clients.provider_count(), std::time::Instant::now()),
            _ = sigint.recv() => shutdown.on_sigterm(daemon.clients.provider_count(), std::time::Instant::now()),
            Some(c) = control_rx.recv() => shutdown.on_control(c),
            _ = local_tools.turn(&daemon, &routes, &mut local_rx) => Action::Continue,
            _ = async { tokio::time::sleep_until(deadline.expect("guarded").into()).await }, if deadline.is_some() => shutdown.on_deadline(),
            _ = log_window.tick() => {
                if let Some(count) = handshake.admission.roll_log(std::time::Instant::now()) {
                    listener::log_unlogged(&handshake.admission, count);
                }
                Action::Continue
            }
            _ = readiness_check.tick(), if ready_file.is_some() => {
                let ready = readiness::is_ready(listener.is_some(), x509 || keys.current_key().is_some());
                if let Some(f) = ready_file.as_mut() {
                    f.update(ready);
                }
                Action::Continue
            }
        };
        match action {
            Action::Continue => {}
            Action::RequestShutdown => {
                if !proxy::request_shutdown(&daemon.clients) {
                    info!("Cluster connection went away before the shutdown request; exiting");
                    return Ok(0);
                }
                // Refuse new connections from now on (a reconnecting cluster would undo the stop).
                listener = None;
                gateway = None;
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
