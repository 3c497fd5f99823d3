//! `kubemaker render` and `kubemaker cib …`: the CIB layer from the command line. Connection
//! settings follow Pacemaker's own tools (`CIB_server`, `CIB_port`, `CIB_user`, `CIB_passwd`,
//! `CIB_encrypted`, and for TLS authentication `CIB_ca_file`, `CIB_cert_file`, `CIB_key_file`,
//! `CIB_crl_file` with Pacemaker 3.0's rule, see `TlsAuth::from_env`); the password is read from
//! the environment or a file, never from argv.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::logging::{self, LogFormat};

use super::client::{
    self, CibClient, CibError, ClientConfig, Query, Secret, TlsAuth, Transport, WatchEvent,
};
use super::desired::DesiredNode;
use super::render::{BootstrapError, bootstrap_commands, node_table, pretty_xml};
use super::service::{
    ApplyError, ApplyOptions, CibService, DEFAULT_STOP_TIMEOUT, InvalidNodes, RemovalError,
    RemovalOptions,
};
use super::spec::{ManifestError, RemoteNodeManifest};
use super::status::read_status;
use super::validate::Problem;

/// Why a `kubemaker render` or `kubemaker cib` command failed, as printed after the command's name.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read password file {}: {source}", path.display())]
    PasswordFile { path: PathBuf, source: io::Error },
    #[error("no password: set CIB_passwd or pass --password-file")]
    NoPassword,
    #[error("cannot read stdin: {0}")]
    Stdin(io::Error),
    #[error("cannot read {}: {source}", path.display())]
    ReadManifest { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("invalid RemoteNode:\n{}", problem_lines(.0))]
    InvalidNodes(Vec<Problem>),
    #[error(transparent)]
    Cib(#[from] CibError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The node's resource did not stop in time; the hint names the way out.
    #[error("{0}, or remove with --force")]
    StillActive(RemovalError),
    #[error(transparent)]
    Removal(RemovalError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
}

fn problem_lines(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
    lines.join("\n")
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// RemoteNode manifest(s), YAML; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Print instead the command that joins the (first) remote node by hand, to run once on one
    /// cluster node (`pcs resource create`, or the same with `cibadmin`), so that a
    /// `via: remoteNodes` PacemakerCluster has a connected node to reach the CIB through. The
    /// controller then manages that resource as its own.
    #[arg(long)]
    pub bootstrap: bool,
    /// Address the cluster connects to, instead of the manifest's `address` (for a RemoteNode
    /// whose address comes from its Kubernetes Node: that Node's InternalIP).
    #[arg(long)]
    pub address: Option<String>,
}

#[derive(Args, Debug)]
pub struct ConnectionArgs {
    /// Cluster node(s) with the remote CIB port, comma-separated (tried in order, with failover).
    #[arg(long, env = "CIB_server", default_value = "localhost")]
    pub server: String,
    /// remote-tls-port (or remote-clear-port with --encrypted=false).
    #[arg(long, env = "CIB_port")]
    pub port: String,
    #[arg(long, env = "CIB_user", default_value = client::DEFAULT_USER)]
    pub user: String,
    /// TLS or plaintext. TLS is anonymous DH (Pacemaker 2.1), X.509 when CIB_ca_file,
    /// CIB_cert_file and CIB_key_file are set, or PSK (3.0.2+, identity CIB_user) when only
    /// CIB_key_file is.
    #[arg(long, env = "CIB_encrypted", default_value = "true", action = clap::ArgAction::Set)]
    pub encrypted: String,
    /// Read the password from this file instead of CIB_passwd.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

impl ConnectionArgs {
    fn config(&self) -> Result<ClientConfig, CliError> {
        let password = match &self.password_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|source| CliError::PasswordFile {
                    path: p.clone(),
                    source,
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            None => std::env::var("CIB_passwd").map_err(|_| CliError::NoPassword)?,
        };
        let endpoints = client::parse_endpoints(&self.server, &self.port)?;
        let transport = if super::model::is_true(&self.encrypted) {
            Transport::Tls
        } else {
            Transport::Plain
        };
        let mut cfg = ClientConfig::new(endpoints, transport, Secret::new(password));
        if transport == Transport::Tls {
            cfg.tls_auth = TlsAuth::from_env().map_err(CibError::from)?;
        }
        cfg.user = self.user.clone();
        cfg.request_timeout = Duration::from_secs(self.timeout.max(1));
        cfg.client_name = "kubemaker-cli".into();
        Ok(cfg)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum CibCommand {
    /// State of every remote and guest node.
    Status {
        #[command(flatten)]
        conn: ConnectionArgs,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Create or update the nodes of RemoteNode manifest(s), in batched transactions.
    Apply {
        #[command(flatten)]
        conn: ConnectionArgs,
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Let the cluster validate the change without committing it.
        #[arg(long)]
        dry_run: bool,
        /// Nodes per transaction.
        #[arg(long, default_value_t = 250)]
        batch_size: usize,
    },
    /// Stop, delete and purge a node.
    Remove {
        #[command(flatten)]
        conn: ConnectionArgs,
        name: String,
        /// Delete even if the resource does not stop in time.
        #[arg(long)]
        force: bool,
        /// Seconds to wait for the resource to stop.
        #[arg(long, default_value_t = DEFAULT_STOP_TIMEOUT.as_secs())]
        stop_timeout: u64,
    },
    /// Print CIB changes as they happen, one line each (Ctrl-C to stop).
    Watch {
        #[command(flatten)]
        conn: ConnectionArgs,
        /// Only changes to the configuration (not status updates).
        #[arg(long)]
        config_only: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Print (part of) the CIB.
    Query {
        #[command(flatten)]
        conn: ConnectionArgs,
        #[arg(long, conflicts_with = "xpath")]
        section: Option<String>,
        #[arg(long)]
        xpath: Option<String>,
    },
}

fn read_manifests(file: &PathBuf) -> Result<Vec<DesiredNode>, CliError> {
    read_manifests_with(file, None)
}

/// [`read_manifests`], with every node's address replaced by `address` when given.
fn read_manifests_with(
    file: &PathBuf,
    address: Option<&str>,
) -> Result<Vec<DesiredNode>, CliError> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(CliError::Stdin)?
    } else {
        std::fs::read_to_string(file).map_err(|source| CliError::ReadManifest {
            path: file.clone(),
            source,
        })?
    };
    let mut manifests = RemoteNodeManifest::all_from_yaml(&text)?;
    if let Some(a) = address {
        for m in &mut manifests {
            m.spec.address = Some(a.to_string());
        }
    }
    let mut nodes = Vec::new();
    let mut problems = Vec::new();
    for m in &manifests {
        match DesiredNode::from_manifest(m) {
            Ok(d) => nodes.push(d),
            Err(p) => problems.extend(p),
        }
    }
    if !problems.is_empty() {
        return Err(CliError::InvalidNodes(problems));
    }
    Ok(nodes)
}

/// `kubemaker render -f FILE [--bootstrap] [--address ADDR]`.
pub fn render(args: &RenderArgs) -> ExitCode {
    match render_text(args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubemaker render: {e}");
            ExitCode::from(1)
        }
    }
}

fn render_text(args: &RenderArgs) -> Result<String, CliError> {
    let nodes = read_manifests_with(&args.file, args.address.as_deref())?;
    let mut out = String::new();
    for d in nodes {
        if args.bootstrap {
            if args.address.is_none() && d.address == d.name {
                // The controller would use the bound Node's InternalIP, which a file cannot tell.
                eprintln!(
                    "kubemaker render: note: {} connects to its node name; if its address comes from its Kubernetes Node, pass --address with that Node's InternalIP",
                    d.name
                );
            }
            out.push_str(&bootstrap_commands(&d)?);
        } else {
            out.push_str(&pretty_xml(&d.render()));
        }
    }
    Ok(out)
}

/// `kubemaker cib …`.
pub fn run(cmd: CibCommand) -> ExitCode {
    if let Err(e) = logging::init(0, LogFormat::Text, None) {
        eprintln!("kubemaker cib: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubemaker cib: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run_async(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubemaker cib: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_async(cmd: CibCommand) -> Result<(), CliError> {
    match cmd {
        CibCommand::Status { conn, output } => {
            let client = CibClient::connect(conn.config()?).await?;
            let cib = client.query_cib().await?;
            client.close().await;
            let nodes = read_status(&cib);
            let text = match output {
                OutputFormat::Table => node_table(&nodes),
                OutputFormat::Json => serde_json::to_string_pretty(&nodes)? + "\n",
                OutputFormat::Yaml => serde_yaml::to_string(&nodes)?,
            };
            print!("{text}");
            Ok(())
        }
        CibCommand::Apply {
            conn,
            file,
            dry_run,
            batch_size,
        } => {
            let nodes = read_manifests(&file)?;
            let client = CibClient::connect(conn.config()?).await?;
            let report = CibService::new(&client)
                .apply_nodes(
                    &nodes,
                    &ApplyOptions {
                        batch_size,
                        dry_run,
                    },
                    InvalidNodes::RefuseAll,
                )
                .await?;
            client.close().await;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            if dry_run {
                println!(
                    "dry run: the cluster accepted the change for {} node(s)",
                    nodes.len()
                );
            } else {
                println!(
                    "{} node(s): {} change(s) in {} transaction(s), {} retried after concurrent changes",
                    nodes.len(),
                    report.changes,
                    report.transactions,
                    report.conflicts
                );
            }
            Ok(())
        }
        CibCommand::Remove {
            conn,
            name,
            force,
            stop_timeout,
        } => {
            let client = CibClient::connect(conn.config()?).await?;
            let opts = RemovalOptions {
                stop_timeout: Duration::from_secs(stop_timeout),
                force,
                ..Default::default()
            };
            let removed = CibService::new(&client)
                .remove_node(&name, &opts)
                .await
                .map_err(|e| match e {
                    RemovalError::StillActive { .. } => CliError::StillActive(e),
                    e => CliError::Removal(e),
                })?;
            client.close().await;
            match removed.resource {
                Some(r) => println!("removed node {name} (resource {r})"),
                None => println!("node {name}: no resource defined it; purged what was left"),
            }
            Ok(())
        }
        CibCommand::Watch {
            conn,
            config_only,
            count,
        } => {
            let client = CibClient::connect(conn.config()?).await?;
            let mut watch = client.watch().await?;
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                let Some(event) = watch.next().await else {
                    break;
                };
                let line = match event {
                    WatchEvent::Resync { reason } => format!("resync: {reason}"),
                    WatchEvent::Lost { error } => {
                        println!("lost: {error}");
                        break;
                    }
                    WatchEvent::Diff(d) => {
                        if config_only && !d.touches_configuration() {
                            continue;
                        }
                        let paths: Vec<String> = d
                            .changes
                            .iter()
                            .map(|(op, p)| format!("{op} {p}"))
                            .collect();
                        format!(
                            "{} {} -> {}: {}",
                            d.op,
                            d.source,
                            d.target,
                            paths.join("; ")
                        )
                    }
                };
                println!("{line}");
                seen += 1;
            }
            Ok(())
        }
        CibCommand::Query {
            conn,
            section,
            xpath,
        } => {
            let q = match (section, xpath) {
                (Some(s), _) => Query::Section(s),
                (None, Some(x)) => Query::XPath(x),
                (None, None) => Query::All,
            };
            let client = CibClient::connect(conn.config()?).await?;
            let el = client.query(&q).await?;
            client.close().await;
            print!("{}", pretty_xml(&el));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_bootstrap_uses_the_given_address() {
        let path =
            std::env::temp_dir().join(format!("kubemaker-render-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            "apiVersion: kubemaker.io/v1alpha1\nkind: RemoteNode\nmetadata: {name: worker1}\nspec: {kubernetesNode: worker1, clusterRef: {name: prod}}\n",
        )
        .unwrap();
        let args = |bootstrap, address: Option<&str>| RenderArgs {
            file: path.clone(),
            bootstrap,
            address: address.map(str::to_string),
        };
        let out = render_text(&args(true, Some("192.0.2.11"))).unwrap();
        assert!(
            out.contains(
                "\npcs resource create worker1 ocf:pacemaker:remote server=192.0.2.11 op "
            ),
            "{out}"
        );
        assert!(
            out.contains("\ncibadmin --create -o resources --xml-text '<primitive id=\"worker1\"")
        );
        // Without --bootstrap: the XML, as before.
        let xml = render_text(&args(false, None)).unwrap();
        assert!(xml.starts_with("<configuration>\n"), "{xml}");
        assert!(
            xml.contains("value=\"worker1\""),
            "server is the node name: {xml}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
