//! The daemon's command line and start-up, shared by `kubemaker remoted` and the slim
//! `kubemaker-remoted` binary (which also answers to the name `pacemaker-remoted`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};

use crate::logging::{self, LogFormat};

/// The flags of `pacemaker-remoted`, plus kubemaker's own log format switch.
#[derive(Args, Debug)]
pub struct RemotedArgs {
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

/// The command line of the daemon's own binary: `pacemaker-remoted`'s flags, where `-V` means
/// verbose as in Pacemaker and the version is `--version`.
#[derive(Parser)]
#[command(
    name = "pacemaker-remoted",
    about = "Pacemaker Remote daemon (kubemaker implementation)"
)]
pub struct RemotedCli {
    #[command(flatten)]
    pub args: RemotedArgs,
    /// Print version information and exit.
    #[arg(long = "version")]
    pub version: bool,
}

/// The daemon binary's whole job: parse `pacemaker-remoted`'s command line and run.
pub fn main() -> ExitCode {
    let cli = RemotedCli::parse();
    if cli.version {
        println!(
            "pacemaker-remoted (kubemaker {}), Pacemaker Remote protocol {}",
            env!("CARGO_PKG_VERSION"),
            super::requests::PROTOCOL_VERSION
        );
        return ExitCode::SUCCESS;
    }
    run(cli.args)
}

/// Sets up logging and runs the daemon until it stops; the exit code is the daemon's.
pub fn run(args: RemotedArgs) -> ExitCode {
    let mut config = super::Config::from_env(args.port, args.logfile);
    config.local_ipc = !args.no_local_ipc;
    let verbosity = args.verbose.max(u8::from(super::config::debug_from_env()));
    if let Err(e) = logging::init(verbosity, args.log_format, config.logfile.as_deref()) {
        eprintln!("kubemaker remoted: {e}");
        return ExitCode::from(2);
    }
    let paths = super::agents::AgentPaths {
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
    match runtime.block_on(super::run(config, paths)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// What pacemaker-remoted exports to agents so their own logging follows the daemon's.
fn agent_log_env(config: &super::Config, debug: bool) -> Vec<(String, String)> {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::RemotedCli::command().debug_assert();
    }
}
