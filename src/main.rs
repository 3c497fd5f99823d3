//! The `kubemaker` binary: one image, several roles.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kubemaker::logging::{self, LogFormat};
use kubemaker::remoted;

use kubemaker::cib::cli as cli_cib;

#[derive(Parser)]
#[command(
    name = "kubemaker",
    version,
    about = "Pacemaker remote nodes, the Kubernetes way"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Pacemaker Remote daemon (a drop-in for pacemaker-remoted).
    Remoted(RemotedArgs),
    /// Print the CIB XML kubemaker would write for RemoteNode manifests (no cluster needed).
    Render(cli_cib::RenderArgs),
    /// Talk to a cluster's CIB through its remote CIB port.
    #[command(subcommand)]
    Cib(cli_cib::CibCommand),
    /// Print the CustomResourceDefinitions (PacemakerCluster, RemoteNode) as YAML; `crds/` holds
    /// this output.
    Crds,
    /// Run the operator: reconcile PacemakerCluster and RemoteNode objects into the CIB.
    Controller(ControllerArgs),
}

#[derive(Args, Debug)]
struct ControllerArgs {
    /// Namespace of the credentials and authkey Secrets and of the leader Lease (default: the
    /// kubeconfig's namespace, in a pod its own).
    #[arg(long, env = "KUBEMAKER_NAMESPACE")]
    namespace: Option<String>,
    /// Identity in the leader Lease (default: host name and process id).
    #[arg(long, env = "KUBEMAKER_POD_NAME")]
    identity: Option<String>,
    /// Elect a leader through a Lease, so that several replicas are safe.
    #[arg(long, env = "KUBEMAKER_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "kubemaker-controller")]
    lease_name: String,
    /// Seconds a leader's Lease lasts without renewal before a standby takes over.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_duration: u64,
    /// Seconds between renewals (and between a standby's attempts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    lease_renew: u64,
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "KUBEMAKER_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Log line format.
    #[arg(long, value_enum, env = "KUBEMAKER_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More detail in the logs (repeat for more); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The flags of `pacemaker-remoted`, plus kubemaker's own log format switch.
#[derive(Args, Debug)]
struct RemotedArgs {
    /// Listen on this port (overrides PCMK_remote_port; default 3121).
    #[arg(short = 'p', long = "port", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Also append logs to this file (overrides PCMK_logfile).
    #[arg(short = 'l', long = "logfile")]
    logfile: Option<PathBuf>,
    /// More detail in the logs (repeat for more); PCMK_debug=yes does the same.
    #[arg(short = 'V', long = "verbose", action = clap::ArgAction::Count)]
    verbose: u8,
    /// Do not serve local IPC for Pacemaker tools (for hosts that run cluster daemons themselves).
    #[arg(long, env = "KUBEMAKER_NO_LOCAL_IPC")]
    no_local_ipc: bool,
    /// Log line format.
    #[arg(long, value_enum, env = "KUBEMAKER_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Under the name `pacemaker-remoted`, `-V` means verbose as in Pacemaker; the version is `--version`.
#[derive(Parser)]
#[command(
    name = "pacemaker-remoted",
    about = "Pacemaker Remote daemon (kubemaker implementation)"
)]
struct RemotedCli {
    #[command(flatten)]
    args: RemotedArgs,
    /// Print version information and exit.
    #[arg(long = "version")]
    version: bool,
}

fn main() -> ExitCode {
    // Installed as (or linked to) pacemaker-remoted, it behaves like that binary.
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    let invoked_as = argv0
        .as_deref()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let args = if matches!(invoked_as, "pacemaker-remoted" | "pacemaker_remoted") {
        let cli = RemotedCli::parse();
        if cli.version {
            println!(
                "pacemaker-remoted (kubemaker {}), Pacemaker Remote protocol {}",
                env!("CARGO_PKG_VERSION"),
                remoted::requests::PROTOCOL_VERSION
            );
            return ExitCode::SUCCESS;
        }
        cli.args
    } else {
        match Cli::parse().command {
            Command::Remoted(a) => a,
            Command::Render(a) => return cli_cib::render(&a),
            Command::Cib(c) => return cli_cib::run(c),
            Command::Crds => return print_crds(),
            Command::Controller(a) => return run_controller(a),
        }
    };
    run_remoted(args)
}

/// `kubemaker crds`: the generated CRD YAML on stdout, nothing else, so that redirecting it
/// reproduces the checked-in files byte for byte.
fn print_crds() -> ExitCode {
    match kubemaker::operator::crds_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubemaker crds: cannot serialize the CRDs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_remoted(args: RemotedArgs) -> ExitCode {
    let mut config = remoted::Config::from_env(args.port, args.logfile);
    config.local_ipc = !args.no_local_ipc;
    let verbosity = args
        .verbose
        .max(u8::from(remoted::config::debug_from_env()));
    if let Err(e) = logging::init(verbosity, args.log_format, config.logfile.as_deref()) {
        eprintln!("kubemaker remoted: {e}");
        return ExitCode::from(2);
    }
    let paths = remoted::agents::AgentPaths {
        extra_env: agent_log_env(&config, verbosity > 0),
        ..Default::default()
    };
    // One thread: requests are cheap, agents are separate processes, and a single thread keeps
    // message order (reply before notify) trivially true.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubemaker remoted: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(remoted::run(config, paths)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// What pacemaker-remoted exports to agents so their own logging follows the daemon's.
fn agent_log_env(config: &remoted::Config, debug: bool) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Ok(f) = std::env::var("PCMK_logfacility") {
        env.push(("HA_LOGFACILITY".into(), f));
    }
    if let Some(f) = &config.logfile {
        env.push(("HA_LOGFILE".into(), f.display().to_string()));
        if debug {
            env.push(("HA_DEBUGLOG".into(), f.display().to_string()));
        }
    }
    env
}

fn run_controller(a: ControllerArgs) -> ExitCode {
    use kubemaker::operator::controller::{self, Exit, Options};
    if let Err(e) = logging::init(a.verbose, a.log_format, None) {
        eprintln!("kubemaker controller: {e}");
        return ExitCode::FAILURE;
    }
    if a.lease_renew >= a.lease_duration {
        eprintln!("kubemaker controller: --lease-renew must be shorter than --lease-duration");
        return ExitCode::from(2);
    }
    let identity = a.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "kubemaker".into());
        format!("{host}-{}", std::process::id())
    });
    let opts = Options {
        namespace: a.namespace,
        identity,
        leader_election: a.leader_election,
        lease_name: a.lease_name,
        lease_duration: std::time::Duration::from_secs(a.lease_duration),
        lease_renew: std::time::Duration::from_secs(a.lease_renew),
        metrics_addr: a.metrics_addr,
    };
    // One thread: the controller waits on the network, and a single malloc arena keeps its
    // memory from fragmenting across worker threads.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubemaker controller: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(controller::run(opts)) {
        Ok(Exit::Signalled) => ExitCode::SUCCESS,
        Ok(Exit::LostLeadership) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kubemaker controller: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_lines_are_consistent() {
        super::Cli::command().debug_assert();
        super::RemotedCli::command().debug_assert();
    }
}
