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
    Remoted(remoted::cli::RemotedArgs),
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

fn main() -> ExitCode {
    // Installed as (or linked to) pacemaker-remoted, it behaves like that binary.
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    let invoked_as = argv0
        .as_deref()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if matches!(invoked_as, "pacemaker-remoted" | "pacemaker_remoted") {
        return remoted::cli::main();
    }
    match Cli::parse().command {
        Command::Remoted(a) => remoted::cli::run(a),
        Command::Render(a) => cli_cib::render(&a),
        Command::Cib(c) => cli_cib::run(c),
        Command::Crds => print_crds(),
        Command::Controller(a) => run_controller(a),
    }
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
    }
}
