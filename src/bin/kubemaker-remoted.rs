//! `kubemaker-remoted`: the Pacemaker Remote daemon alone, what the image's DaemonSet runs and what
//! replaces `pacemaker-remoted` in a guest. A binary of its own, so that the daemon on every worker
//! maps none of the controller's code (Kubernetes client, rustls, HTTP server).

fn main() -> std::process::ExitCode {
    kubemaker::remoted::cli::main()
}
