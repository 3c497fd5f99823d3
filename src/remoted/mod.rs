//! `kubemaker remoted`: a wire-compatible replacement for `pacemaker-remoted`.
