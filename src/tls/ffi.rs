//! Hand-written declarations for the small part of GnuTLS that kubemaker uses.
//!
//! Why GnuTLS and not rustls/OpenSSL: Pacemaker's peers speak GnuTLS PSK
//! (`+DHE-PSK:+PSK`), anonymous DH (`+ANON-DH`) and, since 3.0, X.509, and all of them take
//! GnuTLS priority strings (`PCMK_tls_priorities`). rustls has no anonymous DH, no TLS 1.2
//! DHE-PSK (which 2.1.x peers negotiate) and no priority strings; linking the very library
//! Pacemaker uses keeps the negotiation identical. `build.rs` links `libgnutls` via pkg-config.
//!
//! This is the only file with `extern` declarations. Signatures and constant
//! values follow `/usr/include/gnutls/gnutls.h` of GnuTLS 3.7.9 (Debian 12);
//! all symbols used here are exported under the `GNUTLS_3_4` version node, so
//! any GnuTLS >= 3.6.5 (the `build.rs` floor) provides them.
//!
//! C enums are passed as `c_int` (GCC gives these enums the size of `int`); `time_t` is `c_long`
//! (true on the LP64 Linux targets we build for).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_void};
use std::marker::{PhantomData, PhantomPinned};

/// Opaque `struct gnutls_session_int`.
#[repr(C)]
pub struct gnutls_session_int {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}
/// `gnutls_session_t`: one TLS connection's state.
pub type gnutls_session_t = *mut gnutls_session_int;

/// Opaque `struct gnutls_psk_server_credentials_st`.
#[repr(C)]
pub struct gnutls_psk_server_credentials_st {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}
pub type gnutls_psk_server_credentials_t = *mut gnutls_psk_server_credentials_st;

/// Opaque `struct gnutls_psk_client_credentials_st`.
#[repr(C)]
pub struct gnutls_psk_client_credentials_st {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}
pub type gnutls_psk_client_credentials_t = *mut gnutls_psk_client_credentials_st;

/// Opaque `struct gnutls_anon_client_credentials_st`.
#[repr(C)]
pub struct gnutls_anon_client_credentials_st {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}
pub type gnutls_anon_client_credentials_t = *mut gnutls_anon_client_credentials_st;

/// Opaque `struct gnutls_certificate_credentials_st`.
#[repr(C)]
pub struct gnutls_certificate_credentials_st {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}
/// `gnutls_certificate_credentials_t`: X.509 trust (CAs, CRLs) plus our certificate and key.
pub type gnutls_certificate_credentials_t = *mut gnutls_certificate_credentials_st;

/// Opaque `struct gnutls_x509_crt_int`.
#[repr(C)]
pub struct gnutls_x509_crt_int {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}
/// `gnutls_x509_crt_t`: one parsed certificate.
pub type gnutls_x509_crt_t = *mut gnutls_x509_crt_int;

/// `gnutls_datum_t`: a (pointer, length) byte string.
#[repr(C)]
pub struct gnutls_datum_t {
    pub data: *mut u8,
    pub size: c_uint,
}

/// `gnutls_psk_server_credentials_function`: asked for the key of `username`;
/// must fill `key` with memory from `gnutls_malloc` and return 0, or -1.
pub type gnutls_psk_server_credentials_function = unsafe extern "C" fn(
    session: gnutls_session_t,
    username: *const c_char,
    key: *mut gnutls_datum_t,
) -> c_int;

/// `gnutls_pull_func`: read up to `size` bytes into `data`; >0 bytes, 0 EOF, -1 error
/// (reason given with `gnutls_transport_set_errno`).
pub type gnutls_pull_func =
    unsafe extern "C" fn(ptr: *mut c_void, data: *mut c_void, size: usize) -> isize;
/// `gnutls_push_func`: write up to `size` bytes from `data`; bytes written or -1.
pub type gnutls_push_func =
    unsafe extern "C" fn(ptr: *mut c_void, data: *const c_void, size: usize) -> isize;

/// `gnutls_alloc_function` / `gnutls_free_function`.
pub type gnutls_alloc_function = unsafe extern "C" fn(size: usize) -> *mut c_void;
pub type gnutls_free_function = unsafe extern "C" fn(ptr: *mut c_void);

// gnutls_init_flags_t
pub const GNUTLS_SERVER: c_uint = 1;
pub const GNUTLS_CLIENT: c_uint = 1 << 1;
/// Use MSG_NOSIGNAL on send, so a closed peer gives EPIPE rather than SIGPIPE.
pub const GNUTLS_NO_SIGNAL: c_uint = 1 << 6;

// gnutls_credentials_type_t
pub const GNUTLS_CRD_CERTIFICATE: c_int = 1;
pub const GNUTLS_CRD_ANON: c_int = 2;
pub const GNUTLS_CRD_PSK: c_int = 4;

// gnutls_close_request_t
pub const GNUTLS_SHUT_WR: c_int = 1;

// gnutls_sec_param_t
pub const GNUTLS_SEC_PARAM_MEDIUM: c_int = 35;

// gnutls_psk_key_flags
pub const GNUTLS_PSK_KEY_RAW: c_int = 0;

// gnutls_x509_crt_fmt_t
pub const GNUTLS_X509_FMT_DER: c_int = 0;
pub const GNUTLS_X509_FMT_PEM: c_int = 1;

// gnutls_pkcs_encrypt_flags_t: an unencrypted private key.
pub const GNUTLS_PKCS_PLAIN: c_uint = 1;

// gnutls_certificate_request_t
pub const GNUTLS_CERT_REQUIRE: c_int = 2;

// gnutls_certificate_type_t
pub const GNUTLS_CRT_X509: c_int = 1;

// gnutls_certificate_status_t bits (the ones tests and messages look at).
pub const GNUTLS_CERT_INVALID: c_uint = 1 << 1;
pub const GNUTLS_CERT_REVOKED: c_uint = 1 << 5;
pub const GNUTLS_CERT_SIGNER_NOT_FOUND: c_uint = 1 << 6;
pub const GNUTLS_CERT_EXPIRED: c_uint = 1 << 10;

/// For `gnutls_handshake_set_timeout`: no GnuTLS-side limit (we enforce our own).
pub const GNUTLS_INDEFINITE_TIMEOUT: c_uint = (-2i32) as c_uint;

// Error codes used for control flow.
pub const GNUTLS_E_SUCCESS: c_int = 0;
pub const GNUTLS_E_FATAL_ALERT_RECEIVED: c_int = -12;
pub const GNUTLS_E_MEMORY_ERROR: c_int = -25;
pub const GNUTLS_E_AGAIN: c_int = -28;
pub const GNUTLS_E_INTERRUPTED: c_int = -52;
pub const GNUTLS_E_PREMATURE_TERMINATION: c_int = -110;
pub const GNUTLS_E_NO_CERTIFICATE_FOUND: c_int = -49;
pub const GNUTLS_E_CERTIFICATE_REQUIRED: c_int = -112;
pub const GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR: c_int = -348;

// Every function documented below is declared exactly as in gnutls.h.
unsafe extern "C" {
    /// Allocator GnuTLS itself frees with (an exported function-pointer variable).
    /// Memory handed to GnuTLS for it to own (the PSK callback's key) must come from here.
    pub static gnutls_malloc: Option<gnutls_alloc_function>;
    /// Counterpart of `gnutls_malloc`; frees strings GnuTLS returns to us (`gnutls_session_get_desc`).
    pub static gnutls_free: Option<gnutls_free_function>;

    /// Library initialisation; reference counted, thread-safe since 3.3.0. Returns 0 or an error code.
    pub safe fn gnutls_global_init() -> c_int;
    /// Static English text for an error code (never NULL; unknown codes give a generic text).
    pub safe fn gnutls_strerror(error: c_int) -> *const c_char;
    /// Non-zero if `error` ends the session; 0 for warnings/retryable codes.
    pub safe fn gnutls_error_is_fatal(error: c_int) -> c_int;
    /// Static name of an alert description, or NULL if unknown.
    pub safe fn gnutls_alert_get_name(alert: c_int) -> *const c_char;

    /// Allocates a session for `flags` (GNUTLS_SERVER or GNUTLS_CLIENT, plus options).
    pub fn gnutls_init(session: *mut gnutls_session_t, flags: c_uint) -> c_int;
    /// Frees a session and everything it owns. Does not touch the transport fd.
    pub fn gnutls_deinit(session: gnutls_session_t);
    /// Parses and sets a priority string; on syntax error `*err_pos` points at the bad part.
    pub fn gnutls_priority_set_direct(
        session: gnutls_session_t,
        priorities: *const c_char,
        err_pos: *mut *const c_char,
    ) -> c_int;
    /// Attaches credentials (not copied: they must outlive the session).
    pub fn gnutls_credentials_set(
        session: gnutls_session_t,
        cred_type: c_int,
        cred: *mut c_void,
    ) -> c_int;
    /// Sets the opaque pointer passed to the pull/push functions.
    pub fn gnutls_transport_set_ptr(session: gnutls_session_t, ptr: *mut c_void);
    /// Replaces GnuTLS's recv() on an fd with our own read function.
    pub fn gnutls_transport_set_pull_function(
        session: gnutls_session_t,
        pull_func: gnutls_pull_func,
    );
    /// Replaces GnuTLS's send()/writev() on an fd with our own write function.
    pub fn gnutls_transport_set_push_function(
        session: gnutls_session_t,
        push_func: gnutls_push_func,
    );
    /// From a pull/push function: the errno (EAGAIN, EINTR, ...) behind its -1.
    pub fn gnutls_transport_set_errno(session: gnutls_session_t, err: c_int);
    /// Sets GnuTLS's own handshake deadline in ms.
    pub fn gnutls_handshake_set_timeout(session: gnutls_session_t, ms: c_uint);
    /// Drives the handshake; returns GNUTLS_E_AGAIN while the transport would block.
    pub fn gnutls_handshake(session: gnutls_session_t) -> c_int;
    /// Sends at most one record's worth of `data`; returns bytes taken or an error.
    /// After GNUTLS_E_AGAIN the same call must be repeated with the same data.
    pub fn gnutls_record_send(
        session: gnutls_session_t,
        data: *const c_void,
        data_size: usize,
    ) -> isize;
    /// Returns data from (at most) one record; 0 means the peer sent close_notify.
    pub fn gnutls_record_recv(
        session: gnutls_session_t,
        data: *mut c_void,
        data_size: usize,
    ) -> isize;
    /// Sends close_notify (GNUTLS_SHUT_WR: without waiting for the peer's).
    pub fn gnutls_bye(session: gnutls_session_t, how: c_int) -> c_int;
    /// Sends the alert matching a handshake error code, so the peer learns why.
    pub fn gnutls_alert_send_appropriate(session: gnutls_session_t, err: c_int) -> c_int;
    /// Description of the last alert received.
    pub fn gnutls_alert_get(session: gnutls_session_t) -> c_int;
    /// e.g. "(TLS1.3)-(ECDHE-PSK)-(CHACHA20-POLY1305)"; gnutls_malloc'd, or NULL before the handshake.
    pub fn gnutls_session_get_desc(session: gnutls_session_t) -> *mut c_char;
    /// Stores an opaque user pointer in the session (read back in callbacks).
    pub fn gnutls_session_set_ptr(session: gnutls_session_t, ptr: *mut c_void);
    /// Reads back the pointer stored with `gnutls_session_set_ptr`.
    pub fn gnutls_session_get_ptr(session: gnutls_session_t) -> *mut c_void;

    /// Allocates PSK server credentials (shareable by many sessions).
    pub fn gnutls_psk_allocate_server_credentials(
        sc: *mut gnutls_psk_server_credentials_t,
    ) -> c_int;
    /// Frees PSK server credentials; no session may still use them.
    pub fn gnutls_psk_free_server_credentials(sc: gnutls_psk_server_credentials_t);
    /// Installs the callback that supplies the key during each server handshake.
    pub fn gnutls_psk_set_server_credentials_function(
        cred: gnutls_psk_server_credentials_t,
        func: gnutls_psk_server_credentials_function,
    );
    /// Uses an RFC 7919 group for TLS 1.2 DHE-PSK (no prime generation).
    pub fn gnutls_psk_set_server_known_dh_params(
        res: gnutls_psk_server_credentials_t,
        sec_param: c_int,
    ) -> c_int;
    /// Allocates PSK client credentials.
    pub fn gnutls_psk_allocate_client_credentials(
        sc: *mut gnutls_psk_client_credentials_t,
    ) -> c_int;
    /// Frees PSK client credentials.
    pub fn gnutls_psk_free_client_credentials(sc: gnutls_psk_client_credentials_t);
    /// Sets the client identity (NUL-terminated) and key; both are copied.
    pub fn gnutls_psk_set_client_credentials(
        res: gnutls_psk_client_credentials_t,
        username: *const c_char,
        key: *const gnutls_datum_t,
        flags: c_int,
    ) -> c_int;
    /// Allocates anonymous-DH client credentials.
    pub fn gnutls_anon_allocate_client_credentials(
        sc: *mut gnutls_anon_client_credentials_t,
    ) -> c_int;
    /// Frees anonymous-DH client credentials.
    pub fn gnutls_anon_free_client_credentials(sc: gnutls_anon_client_credentials_t);

    /// Allocates empty certificate credentials (no trust, no certificate).
    pub fn gnutls_certificate_allocate_credentials(
        res: *mut gnutls_certificate_credentials_t,
    ) -> c_int;
    /// Frees certificate credentials and everything loaded into them; no session may still use them.
    pub fn gnutls_certificate_free_credentials(sc: gnutls_certificate_credentials_t);
    /// Adds the CA certificates in `ca` (copied) as trust anchors; returns how many, or an error.
    pub fn gnutls_certificate_set_x509_trust_mem(
        res: gnutls_certificate_credentials_t,
        ca: *const gnutls_datum_t,
        cert_type: c_int,
    ) -> c_int;
    /// Adds the CRLs in `crl` (copied); returns how many, or an error.
    pub fn gnutls_certificate_set_x509_crl_mem(
        res: gnutls_certificate_credentials_t,
        crl: *const gnutls_datum_t,
        cert_type: c_int,
    ) -> c_int;
    /// Adds our certificate (chain) and its private key (both copied); `pass` NULL with
    /// GNUTLS_PKCS_PLAIN for an unencrypted key. Returns an index (>= 0) or an error;
    /// fails if the key does not match the certificate.
    pub fn gnutls_certificate_set_x509_key_mem2(
        res: gnutls_certificate_credentials_t,
        cert: *const gnutls_datum_t,
        key: *const gnutls_datum_t,
        cert_type: c_int,
        pass: *const c_char,
        flags: c_uint,
    ) -> c_int;
    /// Uses an RFC 7919 group for TLS 1.2 DHE with certificates (no prime generation).
    pub fn gnutls_certificate_set_known_dh_params(
        res: gnutls_certificate_credentials_t,
        sec_param: c_int,
    ) -> c_int;
    /// Server side: whether to ask the client for a certificate (GNUTLS_CERT_REQUIRE: and fail without one).
    pub fn gnutls_certificate_server_set_request(session: gnutls_session_t, req: c_int);
    /// Verifies the peer's certificate during the handshake against the credentials' trust
    /// (and CRLs); `hostname` NULL means no host-name check. The handshake then fails with
    /// GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR for an untrusted certificate.
    pub fn gnutls_session_set_verify_cert(
        session: gnutls_session_t,
        hostname: *const c_char,
        flags: c_uint,
    );
    /// The verification status bits behind a GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR.
    pub fn gnutls_session_get_verify_cert_status(session: gnutls_session_t) -> c_uint;
    /// Human-readable text for verification status bits; `out` is gnutls_malloc'd (free with gnutls_free).
    pub fn gnutls_certificate_verification_status_print(
        status: c_uint,
        cert_type: c_int,
        out: *mut gnutls_datum_t,
        flags: c_uint,
    ) -> c_int;
    /// The peer's certificate chain (DER, owned by the session), or NULL; `list_size` gets its length.
    pub fn gnutls_certificate_get_peers(
        session: gnutls_session_t,
        list_size: *mut c_uint,
    ) -> *const gnutls_datum_t;

    /// Allocates an empty certificate structure.
    pub fn gnutls_x509_crt_init(cert: *mut gnutls_x509_crt_t) -> c_int;
    /// Frees a certificate structure.
    pub fn gnutls_x509_crt_deinit(cert: gnutls_x509_crt_t);
    /// Parses one certificate (DER or the first PEM block) from `data` (copied).
    pub fn gnutls_x509_crt_import(
        cert: gnutls_x509_crt_t,
        data: *const gnutls_datum_t,
        format: c_int,
    ) -> c_int;
    /// The subject DN as RFC 4514 text; `dn` is gnutls_malloc'd (free with gnutls_free).
    pub fn gnutls_x509_crt_get_dn2(cert: gnutls_x509_crt_t, dn: *mut gnutls_datum_t) -> c_int;
    /// The certificate's notAfter as seconds since the epoch, or -1.
    pub fn gnutls_x509_crt_get_expiration_time(cert: gnutls_x509_crt_t) -> c_long;
}
