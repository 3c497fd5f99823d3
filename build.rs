// Links the system GnuTLS that Pacemaker itself uses (see src/tls/ffi.rs for why not rustls/OpenSSL).
fn main() {
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("3.6.5")
        .probe("gnutls")
    {
        panic!("GnuTLS development files not found ({e}); install libgnutls28-dev and pkg-config");
    }
    // libqb: the IPC transport of Pacemaker's command-line tools (src/ipc/ffi.rs).
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("2.0")
        .probe("libqb")
    {
        panic!("libqb development files not found ({e}); install libqb-dev and pkg-config");
    }
}
