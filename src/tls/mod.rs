//! GnuTLS-backed TLS for the Pacemaker-facing links.
