// Links the system GnuTLS that Pacemaker itself uses (see src/tls/ffi.rs for why not rustls/OpenSSL).
fn main() {
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("3.6.5")
        .probe("gnutls")
    {
        panic!("GnuTLS development files not found ({e}); install libgnutls28-dev and pkg-config");
    }
}
