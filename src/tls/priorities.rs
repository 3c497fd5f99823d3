//! GnuTLS priority strings the way Pacemaker builds them: a base from the environment plus the
//! key exchange each link needs.

/// Environment variable Pacemaker reads for the base priority string.
pub const PRIORITIES_ENV: &str = "PCMK_tls_priorities";
/// Base priority string when [`PRIORITIES_ENV`] is unset (Pacemaker's default).
pub const DEFAULT_PRIORITIES: &str = "NORMAL";

/// Pacemaker Remote priorities: `$PCMK_tls_priorities` (or `NORMAL`) + `:+DHE-PSK:+PSK`.
pub fn priorities_psk() -> String {
    with_suffix(env_base().as_deref(), ":+DHE-PSK:+PSK")
}

/// Remote CIB priorities: `$PCMK_tls_priorities` (or `NORMAL`) + `:+ANON-DH`.
pub fn priorities_anon() -> String {
    with_suffix(env_base().as_deref(), ":+ANON-DH")
}

/// X.509 priorities (Pacemaker 3.0): `$PCMK_tls_priorities` (or `NORMAL`) alone.
pub fn priorities_x509() -> String {
    with_suffix(env_base().as_deref(), "")
}

fn env_base() -> Option<String> {
    std::env::var(PRIORITIES_ENV).ok()
}

/// An empty value falls back to the default too: Pacemaker would pass
/// `":+DHE-PSK:+PSK"` (or `""` for X.509) to GnuTLS, which is always rejected.
fn with_suffix(base: Option<&str>, suffix: &str) -> String {
    let base = base.filter(|b| !b.is_empty()).unwrap_or(DEFAULT_PRIORITIES);
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_strings() {
        assert_eq!(with_suffix(None, ":+DHE-PSK:+PSK"), "NORMAL:+DHE-PSK:+PSK");
        assert_eq!(with_suffix(Some(""), ":+ANON-DH"), "NORMAL:+ANON-DH");
        assert_eq!(
            with_suffix(Some("SECURE128:+SECURE192"), ":+DHE-PSK:+PSK"),
            "SECURE128:+SECURE192:+DHE-PSK:+PSK"
        );
        // Whatever the environment holds, the suffixes are appended.
        assert!(priorities_psk().ends_with(":+DHE-PSK:+PSK"));
        assert!(priorities_anon().ends_with(":+ANON-DH"));
        assert_eq!(with_suffix(None, ""), "NORMAL");
        assert!(!priorities_x509().contains("PSK"));
    }
}
