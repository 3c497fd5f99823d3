//! Thin safe wrappers over [`super::ffi`]: credential and session ownership,
//! the PSK key callback, the socket bridge, and error-text helpers. All of
//! kubemaker's `unsafe` calls into GnuTLS live here; the async logic in
//! `stream.rs` has none.
//!
//! Ownership rules that make these wrappers sound:
//! - A [`Session`] owns (or shares via `Arc`) the credentials it was given, so
//!   they are freed only after `gnutls_deinit`.
//! - The PSK callback context and the transport bridge are leaked `Box`es
//!   freed in `Session::drop` after `gnutls_deinit`, so the pointers GnuTLS
//!   hands back to our callbacks are valid whenever a callback can run.
//!
//! Why our own pull/push functions instead of handing GnuTLS the fd: GnuTLS
//! also returns GNUTLS_E_AGAIN when it merely consumed a TLS 1.3
//! post-handshake message (e.g. a NewSessionTicket) while more data is already
//! waiting in the socket. With edge-triggered readiness, treating that as
//! "socket drained" would wait forever. Our callbacks use tokio's
//! `try_read`/`try_write`, which clear readiness only on a real EAGAIN, and
//! record that it happened, so the caller knows whether to wait or retry.

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use nix::errno::Errno;
use tokio::net::TcpStream;

use super::error::TlsError;
use super::ffi;
use super::key_source::PskKeySource;

/// `gnutls_global_init` exactly once per process; its result is remembered.
pub(crate) fn global_init() -> Result<(), TlsError> {
    static INIT: OnceLock<c_int> = OnceLock::new();
    let rc = *INIT.get_or_init(|| ffi::gnutls_global_init());
    check("gnutls_global_init", rc)
}

/// `gnutls_strerror` as an owned string.
pub(crate) fn error_text(code: c_int) -> String {
    let text = ffi::gnutls_strerror(code);
    if text.is_null() {
        return format!("unknown GnuTLS error {code}");
    }
    // SAFETY: non-NULL results of gnutls_strerror are static NUL-terminated strings.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// Whether GnuTLS considers `code` the end of the session.
pub(crate) fn is_fatal(code: c_int) -> bool {
    ffi::gnutls_error_is_fatal(code) != 0
}

fn gnutls_error(op: &'static str, code: c_int) -> TlsError {
    TlsError::Gnutls {
        op,
        code,
        message: error_text(code),
    }
}

fn check(op: &'static str, rc: c_int) -> Result<(), TlsError> {
    if rc < 0 {
        Err(gnutls_error(op, rc))
    } else {
        Ok(())
    }
}

/// PSK server credentials, shared by all sessions of one `PskServer`.
pub(crate) struct PskServerCreds {
    raw: NonNull<ffi::gnutls_psk_server_credentials_st>,
}

// SAFETY: after `new` the credentials are only read by GnuTLS; GnuTLS documents
// credentials as shareable between sessions in different threads.
unsafe impl Send for PskServerCreds {}
// SAFETY: as above; no method mutates the credentials after construction.
unsafe impl Sync for PskServerCreds {}

impl PskServerCreds {
    pub(crate) fn new() -> Result<Self, TlsError> {
        global_init()?;
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer.
        let rc = unsafe { ffi::gnutls_psk_allocate_server_credentials(&mut raw) };
        check("gnutls_psk_allocate_server_credentials", rc)?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            gnutls_error(
                "gnutls_psk_allocate_server_credentials",
                ffi::GNUTLS_E_MEMORY_ERROR,
            )
        })?;
        let creds = Self { raw };
        // SAFETY: `raw` is live; the callback matches the C typedef and never unwinds.
        unsafe {
            ffi::gnutls_psk_set_server_credentials_function(creds.raw.as_ptr(), psk_server_key_cb)
        };
        // TLS 1.2 DHE-PSK needs a DH group; an RFC 7919 one avoids generating primes.
        // SAFETY: `raw` is live.
        let rc = unsafe {
            ffi::gnutls_psk_set_server_known_dh_params(
                creds.raw.as_ptr(),
                ffi::GNUTLS_SEC_PARAM_MEDIUM,
            )
        };
        check("gnutls_psk_set_server_known_dh_params", rc)?;
        Ok(creds)
    }
}

impl Drop for PskServerCreds {
    fn drop(&mut self) {
        // SAFETY: every session using these credentials holds an `Arc` to them,
        // so none is left when the last reference goes.
        unsafe { ffi::gnutls_psk_free_server_credentials(self.raw.as_ptr()) }
    }
}

/// Per-connection PSK client credentials (an identity plus a copy of the key).
struct PskClientCreds {
    raw: NonNull<ffi::gnutls_psk_client_credentials_st>,
}

impl PskClientCreds {
    fn new(identity: &CStr, key: &[u8]) -> Result<Self, TlsError> {
        let size = u32::try_from(key.len()).map_err(|_| TlsError::NoKey)?;
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer.
        let rc = unsafe { ffi::gnutls_psk_allocate_client_credentials(&mut raw) };
        check("gnutls_psk_allocate_client_credentials", rc)?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            gnutls_error(
                "gnutls_psk_allocate_client_credentials",
                ffi::GNUTLS_E_MEMORY_ERROR,
            )
        })?;
        let creds = Self { raw };
        // GnuTLS copies the key and only reads through `data`, so the cast to *mut is harmless.
        let datum = ffi::gnutls_datum_t {
            data: key.as_ptr().cast_mut(),
            size,
        };
        // SAFETY: `raw` is live, the identity is NUL-terminated, `datum` describes `key`.
        let rc = unsafe {
            ffi::gnutls_psk_set_client_credentials(
                creds.raw.as_ptr(),
                identity.as_ptr(),
                &datum,
                ffi::GNUTLS_PSK_KEY_RAW,
            )
        };
        check("gnutls_psk_set_client_credentials", rc)?;
        Ok(creds)
    }
}

impl Drop for PskClientCreds {
    fn drop(&mut self) {
        // SAFETY: owned by exactly one `Session`, which deinits itself first.
        unsafe { ffi::gnutls_psk_free_client_credentials(self.raw.as_ptr()) }
    }
}

/// Per-connection anonymous-DH client credentials.
struct AnonClientCreds {
    raw: NonNull<ffi::gnutls_anon_client_credentials_st>,
}

impl AnonClientCreds {
    fn new() -> Result<Self, TlsError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer.
        let rc = unsafe { ffi::gnutls_anon_allocate_client_credentials(&mut raw) };
        check("gnutls_anon_allocate_client_credentials", rc)?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            gnutls_error(
                "gnutls_anon_allocate_client_credentials",
                ffi::GNUTLS_E_MEMORY_ERROR,
            )
        })?;
        Ok(Self { raw })
    }
}

impl Drop for AnonClientCreds {
    fn drop(&mut self) {
        // SAFETY: owned by exactly one `Session`, which deinits itself first.
        unsafe { ffi::gnutls_anon_free_client_credentials(self.raw.as_ptr()) }
    }
}

/// A `gnutls_datum_t` describing `bytes`, for calls that only read (and copy) through it.
fn borrowed_datum(bytes: &[u8]) -> Option<ffi::gnutls_datum_t> {
    Some(ffi::gnutls_datum_t {
        // GnuTLS only reads through `data` in every call this is passed to.
        data: bytes.as_ptr().cast_mut(),
        size: u32::try_from(bytes.len()).ok()?,
    })
}

/// X.509 certificate credentials: the trusted CA certificates, optional CRLs, and our own
/// certificate chain with its private key (GnuTLS keeps copies of all of them). Shared through
/// an `Arc` by every session of one server or client configuration.
pub(crate) struct CertCreds {
    raw: NonNull<ffi::gnutls_certificate_credentials_st>,
}

// SAFETY: after `new` the credentials are only read by GnuTLS; GnuTLS documents
// credentials as shareable between sessions in different threads.
unsafe impl Send for CertCreds {}
// SAFETY: as above; no method mutates the credentials after construction.
unsafe impl Sync for CertCreds {}

impl CertCreds {
    /// Loads PEM data: `ca` (one or more CA certificates, the only trust anchors: the system's
    /// store is never consulted), `crl` (optional, one or more CRLs), `cert` (our certificate,
    /// possibly followed by intermediates) and `key` (its unencrypted private key).
    pub(crate) fn new(
        ca: &[u8],
        crl: Option<&[u8]>,
        cert: &[u8],
        key: &[u8],
    ) -> Result<Self, TlsError> {
        global_init()?;
        let invalid = |what: &'static str, message: String| TlsError::Credentials { what, message };
        let too_big = |what| invalid(what, "larger than 4 GiB".into());
        let ca_datum = borrowed_datum(ca).ok_or_else(|| too_big("CA certificates"))?;
        let cert_datum = borrowed_datum(cert).ok_or_else(|| too_big("certificate"))?;
        let key_datum = borrowed_datum(key).ok_or_else(|| too_big("private key"))?;
        let crl_datum = match crl {
            Some(c) => Some(borrowed_datum(c).ok_or_else(|| too_big("CRL"))?),
            None => None,
        };
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer.
        let rc = unsafe { ffi::gnutls_certificate_allocate_credentials(&mut raw) };
        check("gnutls_certificate_allocate_credentials", rc)?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            gnutls_error(
                "gnutls_certificate_allocate_credentials",
                ffi::GNUTLS_E_MEMORY_ERROR,
            )
        })?;
        // From here `creds` frees the credentials on every early return.
        let creds = Self { raw };
        // SAFETY: `raw` is live; `ca_datum` describes `ca`, which outlives the call (GnuTLS copies).
        let rc = unsafe {
            ffi::gnutls_certificate_set_x509_trust_mem(
                creds.raw.as_ptr(),
                &ca_datum,
                ffi::GNUTLS_X509_FMT_PEM,
            )
        };
        // Like Pacemaker: a CA file without a single certificate is an error too.
        match rc {
            0 => {
                return Err(invalid(
                    "CA certificates",
                    "no PEM certificate found".into(),
                ));
            }
            rc if rc < 0 => return Err(invalid("CA certificates", error_text(rc))),
            _ => {}
        }
        if let Some(crl_datum) = crl_datum {
            // SAFETY: as above, for the CRL.
            let rc = unsafe {
                ffi::gnutls_certificate_set_x509_crl_mem(
                    creds.raw.as_ptr(),
                    &crl_datum,
                    ffi::GNUTLS_X509_FMT_PEM,
                )
            };
            match rc {
                0 => return Err(invalid("CRL", "no PEM CRL found".into())),
                rc if rc < 0 => return Err(invalid("CRL", error_text(rc))),
                _ => {}
            }
        }
        // SAFETY: as above; `pass` NULL with GNUTLS_PKCS_PLAIN: an unencrypted key, as Pacemaker loads it.
        let rc = unsafe {
            ffi::gnutls_certificate_set_x509_key_mem2(
                creds.raw.as_ptr(),
                &cert_datum,
                &key_datum,
                ffi::GNUTLS_X509_FMT_PEM,
                ptr::null(),
                ffi::GNUTLS_PKCS_PLAIN,
            )
        };
        if rc < 0 {
            return Err(invalid("certificate and private key", error_text(rc)));
        }
        // TLS 1.2 DHE needs a DH group; an RFC 7919 one avoids generating primes.
        // SAFETY: `raw` is live.
        let rc = unsafe {
            ffi::gnutls_certificate_set_known_dh_params(
                creds.raw.as_ptr(),
                ffi::GNUTLS_SEC_PARAM_MEDIUM,
            )
        };
        check("gnutls_certificate_set_known_dh_params", rc)?;
        Ok(creds)
    }
}

impl Drop for CertCreds {
    fn drop(&mut self) {
        // SAFETY: every session using these credentials holds an `Arc` to them,
        // so none is left when the last reference goes.
        unsafe { ffi::gnutls_certificate_free_credentials(self.raw.as_ptr()) }
    }
}

/// One parsed X.509 certificate (for its subject and expiry; never for trust decisions,
/// which GnuTLS makes during the handshake).
pub(crate) struct Certificate {
    raw: NonNull<ffi::gnutls_x509_crt_int>,
}

impl Certificate {
    /// The first certificate in PEM `pem`, or in DER `der`.
    fn import(data: &[u8], format: c_int) -> Result<Self, TlsError> {
        global_init()?;
        let datum = borrowed_datum(data).ok_or_else(|| TlsError::Credentials {
            what: "certificate",
            message: "larger than 4 GiB".into(),
        })?;
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer.
        let rc = unsafe { ffi::gnutls_x509_crt_init(&mut raw) };
        check("gnutls_x509_crt_init", rc)?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| gnutls_error("gnutls_x509_crt_init", ffi::GNUTLS_E_MEMORY_ERROR))?;
        let crt = Self { raw };
        // SAFETY: `raw` is live; `datum` describes `data`, which outlives the call (copied).
        let rc = unsafe { ffi::gnutls_x509_crt_import(crt.raw.as_ptr(), &datum, format) };
        if rc < 0 {
            return Err(TlsError::Credentials {
                what: "certificate",
                message: error_text(rc),
            });
        }
        Ok(crt)
    }

    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::import(pem, ffi::GNUTLS_X509_FMT_PEM)
    }

    fn from_der(der: &[u8]) -> Result<Self, TlsError> {
        Self::import(der, ffi::GNUTLS_X509_FMT_DER)
    }

    /// The subject DN in RFC 4514 form, e.g. `CN=node1,O=example`.
    pub(crate) fn subject(&self) -> Option<String> {
        let mut dn = ffi::gnutls_datum_t {
            data: ptr::null_mut(),
            size: 0,
        };
        // SAFETY: the certificate is live; `dn` is a valid out-datum.
        let rc = unsafe { ffi::gnutls_x509_crt_get_dn2(self.raw.as_ptr(), &mut dn) };
        if rc < 0 || dn.data.is_null() {
            return None;
        }
        Some(take_gnutls_datum(dn))
    }

    /// notAfter, in seconds since the epoch.
    pub(crate) fn expiration(&self) -> Option<i64> {
        // SAFETY: the certificate is live.
        let t = unsafe { ffi::gnutls_x509_crt_get_expiration_time(self.raw.as_ptr()) };
        // `time_t` is `c_long`: i64 on LP64, narrower elsewhere.
        #[allow(clippy::useless_conversion)]
        (t != -1).then_some(i64::from(t))
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        // SAFETY: owned here and never used again.
        unsafe { ffi::gnutls_x509_crt_deinit(self.raw.as_ptr()) }
    }
}

/// Copies a gnutls_malloc'd text datum into a `String` and frees it.
fn take_gnutls_datum(datum: ffi::gnutls_datum_t) -> String {
    let size = usize::try_from(datum.size).unwrap_or(0);
    // SAFETY: GnuTLS filled `datum` with `size` readable bytes at `data` (non-NULL, checked by callers).
    let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(datum.data, size) })
        .trim_end_matches('\0')
        .to_owned();
    // SAFETY: the memory came from gnutls_malloc and is freed exactly once.
    if let Some(free) = unsafe { ffi::gnutls_free } {
        unsafe { free(datum.data.cast()) };
    }
    text
}

/// Keeps a session's credentials alive until after `gnutls_deinit`.
enum Creds {
    PskServer(#[allow(dead_code)] Arc<PskServerCreds>),
    PskClient(#[allow(dead_code)] PskClientCreds),
    AnonClient(#[allow(dead_code)] AnonClientCreds),
    Certificate(#[allow(dead_code)] Arc<CertCreds>),
    /// Only for [`check_priorities`], which never handshakes.
    None,
}

/// What the PSK callback reaches through `gnutls_session_get_ptr`.
struct PskCallbackCtx {
    keys: Arc<dyn PskKeySource>,
    /// Set when the key source had no key, to report `TlsError::NoKey`.
    key_missing: AtomicBool,
}

/// GnuTLS's PSK server callback: asks the key source for the key of the identity the client
/// presented (Pacemaker Remote's sources ignore it, as Pacemaker does).
///
/// Never unwinds: a panicking key source is treated as "no key".
unsafe extern "C" fn psk_server_key_cb(
    session: ffi::gnutls_session_t,
    username: *const c_char,
    key: *mut ffi::gnutls_datum_t,
) -> c_int {
    if session.is_null() || key.is_null() {
        return -1;
    }
    // SAFETY: `session` is the live session GnuTLS is handshaking on.
    let ctx = unsafe { ffi::gnutls_session_get_ptr(session) }.cast::<PskCallbackCtx>();
    if ctx.is_null() {
        return -1;
    }
    // SAFETY: the pointer was set by `Session::new_psk_server` from a leaked Box
    // that is freed only after gnutls_deinit, so it is valid here; only shared
    // access happens through it.
    let ctx = unsafe { &*ctx };
    let identity = if username.is_null() {
        String::new()
    } else {
        // SAFETY: GnuTLS passes the client's identity as a NUL-terminated string, valid for
        // the duration of the callback.
        unsafe { CStr::from_ptr(username) }
            .to_string_lossy()
            .into_owned()
    };
    let Ok(Some(mut bytes)) =
        catch_unwind(AssertUnwindSafe(|| ctx.keys.key_for_identity(&identity)))
    else {
        ctx.key_missing.store(true, Ordering::Relaxed);
        return -1;
    };
    let rc = copy_key_for_gnutls(&bytes, key);
    wipe(&mut bytes);
    if rc != 0 {
        ctx.key_missing.store(true, Ordering::Relaxed);
    }
    rc
}

/// Copies `bytes` into `gnutls_malloc` memory and points `out` at it (GnuTLS frees it).
fn copy_key_for_gnutls(bytes: &[u8], out: *mut ffi::gnutls_datum_t) -> c_int {
    let Ok(size) = u32::try_from(bytes.len()) else {
        return -1;
    };
    if size == 0 {
        return -1;
    }
    // SAFETY: reading an immutable-after-init function pointer exported by GnuTLS.
    let Some(alloc) = (unsafe { ffi::gnutls_malloc }) else {
        return -1;
    };
    // SAFETY: gnutls_malloc behaves like malloc.
    let mem = unsafe { alloc(bytes.len()) }.cast::<u8>();
    if mem.is_null() {
        return -1;
    }
    // SAFETY: `mem` has room for `bytes.len()` bytes and cannot overlap `bytes`;
    // `out` is the non-NULL datum GnuTLS passed to the callback.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), mem, bytes.len());
        (*out).data = mem;
        (*out).size = size;
    }
    0
}

/// Best-effort scrub of a key copy before its memory is released.
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

/// Which way the socket last refused I/O (a real EAGAIN from the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blocked {
    Read,
    Write,
}

/// What GnuTLS's pull/push callbacks reach through the transport pointer.
struct Transport {
    tcp: Arc<TcpStream>,
    session: ffi::gnutls_session_t,
    blocked: Cell<Option<Blocked>>,
}

impl Transport {
    /// Converts a socket result into GnuTLS's pull/push convention.
    fn finish(&self, result: io::Result<usize>, direction: Blocked) -> isize {
        let err = match result {
            Ok(n) => return isize::try_from(n).unwrap_or(isize::MAX),
            Err(e) => e,
        };
        let errno = match err.kind() {
            io::ErrorKind::WouldBlock => {
                self.blocked.set(Some(direction));
                Errno::EAGAIN as c_int
            }
            io::ErrorKind::Interrupted => Errno::EINTR as c_int,
            _ => err.raw_os_error().unwrap_or(Errno::EIO as c_int),
        };
        // SAFETY: `session` is the live session whose callback is running.
        unsafe { ffi::gnutls_transport_set_errno(self.session, errno) };
        -1
    }
}

/// # Safety
/// Called by GnuTLS with the pointer set in `Session::attach` and a writable buffer.
unsafe extern "C" fn pull_cb(ptr: *mut c_void, data: *mut c_void, size: usize) -> isize {
    // SAFETY: `ptr` is the session's leaked Transport (freed only after
    // gnutls_deinit); `data` is valid for `size` bytes of writes.
    let (transport, buf) = unsafe {
        (
            &*ptr.cast::<Transport>(),
            std::slice::from_raw_parts_mut(data.cast::<u8>(), size),
        )
    };
    let result = catch_unwind(AssertUnwindSafe(|| transport.tcp.try_read(buf)))
        .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::Other)));
    transport.finish(result, Blocked::Read)
}

/// # Safety
/// Called by GnuTLS with the pointer set in `Session::attach` and a readable buffer.
unsafe extern "C" fn push_cb(ptr: *mut c_void, data: *const c_void, size: usize) -> isize {
    // SAFETY: as in `pull_cb`; `data` is valid for `size` bytes of reads.
    let (transport, buf) = unsafe {
        (
            &*ptr.cast::<Transport>(),
            std::slice::from_raw_parts(data.cast::<u8>(), size),
        )
    };
    let result = catch_unwind(AssertUnwindSafe(|| transport.tcp.try_write(buf)))
        .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::Other)));
    transport.finish(result, Blocked::Write)
}

/// Checks a priority string by setting it on a throw-away session.
pub(crate) fn check_priorities(priorities: &CStr, server: bool) -> Result<(), TlsError> {
    let session = Session::init(
        if server {
            ffi::GNUTLS_SERVER
        } else {
            ffi::GNUTLS_CLIENT
        },
        Creds::None,
    )?;
    session.set_priorities(priorities)
}

/// One GnuTLS session. Not `Sync`: GnuTLS sessions must not be used concurrently.
pub(crate) struct Session {
    raw: NonNull<ffi::gnutls_session_int>,
    /// Leaked `Box<PskCallbackCtx>` (server sessions only), freed in `drop`.
    psk_ctx: *mut PskCallbackCtx,
    /// Leaked `Box<Transport>` (null until `attach`), freed in `drop`.
    transport: *mut Transport,
    _creds: Creds,
}

// SAFETY: a GnuTLS session may move between threads as long as it is used by
// one at a time, which `&mut self` on every operation guarantees. The callback
// context holds `Send + Sync` data; the transport's `Cell` is only touched by
// callbacks running inside those `&mut self` operations, or by `take_blocked`.
unsafe impl Send for Session {}

impl Session {
    fn init(flags: std::ffi::c_uint, creds: Creds) -> Result<Self, TlsError> {
        global_init()?;
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer.
        let rc = unsafe { ffi::gnutls_init(&mut raw, flags | ffi::GNUTLS_NO_SIGNAL) };
        check("gnutls_init", rc)?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| gnutls_error("gnutls_init", ffi::GNUTLS_E_MEMORY_ERROR))?;
        let session = Self {
            raw,
            psk_ctx: ptr::null_mut(),
            transport: ptr::null_mut(),
            _creds: creds,
        };
        // Our caller enforces its own deadline with a timer.
        // SAFETY: `raw` is live.
        unsafe {
            ffi::gnutls_handshake_set_timeout(session.raw.as_ptr(), ffi::GNUTLS_INDEFINITE_TIMEOUT)
        };
        Ok(session)
    }

    fn set_priorities(&self, priorities: &CStr) -> Result<(), TlsError> {
        let mut err_pos: *const c_char = ptr::null();
        // SAFETY: the session is live, `priorities` is NUL-terminated, `err_pos` a valid out-pointer.
        let rc = unsafe {
            ffi::gnutls_priority_set_direct(self.raw.as_ptr(), priorities.as_ptr(), &mut err_pos)
        };
        if rc >= 0 {
            return Ok(());
        }
        let text = priorities.to_string_lossy().into_owned();
        // `err_pos` points into `priorities` on a syntax error; compare addresses only.
        let offset = (err_pos as usize).checked_sub(priorities.as_ptr() as usize);
        let rest = offset
            .filter(|_| !err_pos.is_null())
            .and_then(|at| text.get(at..));
        let message = match rest {
            Some(rest) => format!("{} (at {rest:?})", error_text(rc)),
            None => error_text(rc),
        };
        Err(TlsError::InvalidPriority {
            priorities: text,
            message,
        })
    }

    fn set_credentials(&self, cred_type: c_int, cred: *mut c_void) -> Result<(), TlsError> {
        // SAFETY: the session is live; `cred` is owned by `self._creds` and so outlives it.
        let rc = unsafe { ffi::gnutls_credentials_set(self.raw.as_ptr(), cred_type, cred) };
        check("gnutls_credentials_set", rc)
    }

    /// Routes the session's I/O through `tcp` via our pull/push callbacks.
    fn attach(&mut self, tcp: Arc<TcpStream>) {
        self.transport = Box::into_raw(Box::new(Transport {
            tcp,
            session: self.raw.as_ptr(),
            blocked: Cell::new(None),
        }));
        // SAFETY: the session is live; the transport stays allocated until
        // after gnutls_deinit; the callbacks match the C typedefs and never unwind.
        unsafe {
            ffi::gnutls_transport_set_ptr(self.raw.as_ptr(), self.transport.cast());
            ffi::gnutls_transport_set_pull_function(self.raw.as_ptr(), pull_cb);
            ffi::gnutls_transport_set_push_function(self.raw.as_ptr(), push_cb);
        }
    }

    /// Server session using the shared PSK credentials; `keys` is asked for the key during the handshake.
    pub(crate) fn new_psk_server(
        creds: Arc<PskServerCreds>,
        keys: Arc<dyn PskKeySource>,
        priorities: &CStr,
        tcp: Arc<TcpStream>,
    ) -> Result<Self, TlsError> {
        let cred_ptr = creds.raw.as_ptr().cast::<c_void>();
        let mut session = Self::init(ffi::GNUTLS_SERVER, Creds::PskServer(creds))?;
        session.psk_ctx = Box::into_raw(Box::new(PskCallbackCtx {
            keys,
            key_missing: AtomicBool::new(false),
        }));
        // SAFETY: the session is live; the context stays allocated until after gnutls_deinit.
        unsafe {
            ffi::gnutls_session_set_ptr(session.raw.as_ptr(), session.psk_ctx.cast::<c_void>())
        };
        session.set_priorities(priorities)?;
        session.set_credentials(ffi::GNUTLS_CRD_PSK, cred_ptr)?;
        session.attach(tcp);
        Ok(session)
    }

    /// Client session presenting `identity` (Pacemaker Remote: "lrmd") with a raw `key`.
    pub(crate) fn new_psk_client(
        identity: &CStr,
        key: &[u8],
        priorities: &CStr,
        tcp: Arc<TcpStream>,
    ) -> Result<Self, TlsError> {
        global_init()?;
        let creds = PskClientCreds::new(identity, key)?;
        let cred_ptr = creds.raw.as_ptr().cast::<c_void>();
        let mut session = Self::init(ffi::GNUTLS_CLIENT, Creds::PskClient(creds))?;
        session.set_priorities(priorities)?;
        session.set_credentials(ffi::GNUTLS_CRD_PSK, cred_ptr)?;
        session.attach(tcp);
        Ok(session)
    }

    /// Client session with anonymous DH credentials.
    pub(crate) fn new_anon_client(
        priorities: &CStr,
        tcp: Arc<TcpStream>,
    ) -> Result<Self, TlsError> {
        global_init()?;
        let creds = AnonClientCreds::new()?;
        let cred_ptr = creds.raw.as_ptr().cast::<c_void>();
        let mut session = Self::init(ffi::GNUTLS_CLIENT, Creds::AnonClient(creds))?;
        session.set_priorities(priorities)?;
        session.set_credentials(ffi::GNUTLS_CRD_ANON, cred_ptr)?;
        session.attach(tcp);
        Ok(session)
    }

    /// Session with X.509 credentials. Both sides present their certificate and verify the
    /// peer's against the credentials' CAs (and CRLs), without a host-name check; a server
    /// requires the client's certificate.
    pub(crate) fn new_x509(
        server: bool,
        creds: Arc<CertCreds>,
        priorities: &CStr,
        tcp: Arc<TcpStream>,
    ) -> Result<Self, TlsError> {
        let cred_ptr = creds.raw.as_ptr().cast::<c_void>();
        let flags = if server {
            ffi::GNUTLS_SERVER
        } else {
            ffi::GNUTLS_CLIENT
        };
        let mut session = Self::init(flags, Creds::Certificate(creds))?;
        session.set_priorities(priorities)?;
        session.set_credentials(ffi::GNUTLS_CRD_CERTIFICATE, cred_ptr)?;
        // SAFETY: the session is live; a NULL host name is documented as "no host-name check".
        unsafe {
            if server {
                ffi::gnutls_certificate_server_set_request(
                    session.raw.as_ptr(),
                    ffi::GNUTLS_CERT_REQUIRE,
                );
            }
            ffi::gnutls_session_set_verify_cert(session.raw.as_ptr(), ptr::null(), 0);
        }
        session.attach(tcp);
        Ok(session)
    }

    /// The subject of the certificate the peer presented, if any.
    pub(crate) fn peer_subject(&self) -> Option<String> {
        let mut count: std::ffi::c_uint = 0;
        // SAFETY: the session is live; the returned list is owned by the session and only
        // read before the next call on it.
        let list = unsafe { ffi::gnutls_certificate_get_peers(self.raw.as_ptr(), &mut count) };
        if list.is_null() || count == 0 {
            return None;
        }
        // SAFETY: non-NULL with count >= 1: the first element is a valid datum.
        let first = unsafe { &*list };
        if first.data.is_null() {
            return None;
        }
        // SAFETY: the datum describes `size` bytes of DER owned by the session.
        let der = unsafe { std::slice::from_raw_parts(first.data, first.size as usize) };
        Certificate::from_der(der).ok()?.subject()
    }

    /// Why certificate verification failed, in GnuTLS's words (after
    /// GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR).
    fn verify_failure(&self) -> (std::ffi::c_uint, String) {
        // SAFETY: the session is live.
        let status = unsafe { ffi::gnutls_session_get_verify_cert_status(self.raw.as_ptr()) };
        let mut out = ffi::gnutls_datum_t {
            data: ptr::null_mut(),
            size: 0,
        };
        // SAFETY: `out` is a valid out-datum.
        let rc = unsafe {
            ffi::gnutls_certificate_verification_status_print(
                status,
                ffi::GNUTLS_CRT_X509,
                &mut out,
                0,
            )
        };
        let text = if rc < 0 || out.data.is_null() {
            format!("verification status {status:#x}")
        } else {
            take_gnutls_datum(out).trim_end().to_owned()
        };
        (status, text)
    }

    /// One `gnutls_handshake` step (0, or a GnuTLS error code such as GNUTLS_E_AGAIN).
    pub(crate) fn handshake(&mut self) -> c_int {
        // SAFETY: the session is live.
        unsafe { ffi::gnutls_handshake(self.raw.as_ptr()) }
    }

    /// Which way the socket refused I/O since the last call (and resets it).
    /// `None` after GNUTLS_E_AGAIN means GnuTLS can make progress right away.
    pub(crate) fn take_blocked(&mut self) -> Option<Blocked> {
        if self.transport.is_null() {
            return None;
        }
        // SAFETY: non-NULL `transport` is our leaked Box, alive until drop;
        // no callback runs concurrently (we hold `&mut self`).
        unsafe { &*self.transport }.blocked.take()
    }

    /// One `gnutls_record_send`: bytes consumed (one record at most) or an error code.
    pub(crate) fn send(&mut self, data: &[u8]) -> isize {
        // SAFETY: `data` is valid for reads of its length.
        unsafe { ffi::gnutls_record_send(self.raw.as_ptr(), data.as_ptr().cast(), data.len()) }
    }

    /// One `gnutls_record_recv`: bytes read, 0 on close_notify, or an error code.
    pub(crate) fn recv(&mut self, buf: &mut [u8]) -> isize {
        // SAFETY: `buf` is valid for writes of its length.
        unsafe { ffi::gnutls_record_recv(self.raw.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    }

    /// One `gnutls_bye(GNUTLS_SHUT_WR)` step.
    pub(crate) fn bye(&mut self) -> c_int {
        // SAFETY: the session is live.
        unsafe { ffi::gnutls_bye(self.raw.as_ptr(), ffi::GNUTLS_SHUT_WR) }
    }

    /// Tells the peer why the handshake failed; single non-blocking attempt.
    pub(crate) fn send_alert_for(&mut self, code: c_int) {
        // SAFETY: the session is live.
        let _ = unsafe { ffi::gnutls_alert_send_appropriate(self.raw.as_ptr(), code) };
    }

    /// True if the PSK callback found no key during this session's handshake.
    pub(crate) fn key_missing(&self) -> bool {
        if self.psk_ctx.is_null() {
            return false;
        }
        // SAFETY: non-NULL `psk_ctx` is our leaked Box, alive until drop.
        unsafe { &*self.psk_ctx }
            .key_missing
            .load(Ordering::Relaxed)
    }

    /// `TlsError::Gnutls` for `code`, naming the received alert when there was one; certificate
    /// problems get their own variants.
    pub(crate) fn error(&self, op: &'static str, code: c_int) -> TlsError {
        if code == ffi::GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR {
            let (status, reason) = self.verify_failure();
            return TlsError::CertificateRejected {
                reason,
                status,
                subject: self.peer_subject(),
            };
        }
        if code == ffi::GNUTLS_E_NO_CERTIFICATE_FOUND || code == ffi::GNUTLS_E_CERTIFICATE_REQUIRED
        {
            return TlsError::NoPeerCertificate {
                message: error_text(code),
            };
        }
        let mut message = error_text(code);
        if code == ffi::GNUTLS_E_FATAL_ALERT_RECEIVED {
            // SAFETY: the session is live.
            let alert = unsafe { ffi::gnutls_alert_get(self.raw.as_ptr()) };
            let name = ffi::gnutls_alert_get_name(alert);
            if !name.is_null() {
                // SAFETY: non-NULL alert names are static NUL-terminated strings.
                let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
                message = format!("{message} (alert: {name})");
            }
        }
        TlsError::Gnutls { op, code, message }
    }

    /// `gnutls_session_get_desc`, or an empty string before the handshake.
    pub(crate) fn description(&self) -> String {
        // SAFETY: the session is live.
        let desc = unsafe { ffi::gnutls_session_get_desc(self.raw.as_ptr()) };
        if desc.is_null() {
            return String::new();
        }
        // SAFETY: non-NULL result is a NUL-terminated string we now own.
        let text = unsafe { CStr::from_ptr(desc) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the string came from gnutls_malloc and is freed exactly once.
        if let Some(free) = unsafe { ffi::gnutls_free } {
            unsafe { free(desc.cast()) };
        }
        text
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the session is live and never used again; deinit does no I/O.
        unsafe { ffi::gnutls_deinit(self.raw.as_ptr()) };
        if !self.psk_ctx.is_null() {
            // SAFETY: came from Box::into_raw; GnuTLS no longer holds it after deinit.
            drop(unsafe { Box::from_raw(self.psk_ctx) });
        }
        if !self.transport.is_null() {
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(self.transport) });
        }
        // `_creds` is dropped after this, i.e. after gnutls_deinit.
    }
}

/// Builds a `CString` for a priority string, rejecting interior NULs.
pub(crate) fn priority_cstring(priorities: &str) -> Result<CString, TlsError> {
    CString::new(priorities).map_err(|_| TlsError::InvalidPriority {
        priorities: priorities.replace('\0', "\\0"),
        message: "contains a NUL byte".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_and_fatality() {
        assert!(!error_text(ffi::GNUTLS_E_AGAIN).is_empty());
        assert!(!is_fatal(ffi::GNUTLS_E_AGAIN));
        assert!(!is_fatal(ffi::GNUTLS_E_INTERRUPTED));
        assert!(is_fatal(ffi::GNUTLS_E_PREMATURE_TERMINATION));
        assert_eq!(error_text(ffi::GNUTLS_E_SUCCESS), "Success.");
    }

    #[test]
    fn allocator_symbols_resolve() {
        // SAFETY: reading exported function pointers.
        let (alloc, free) = unsafe { (ffi::gnutls_malloc, ffi::gnutls_free) };
        assert!(alloc.is_some() && free.is_some());
    }

    #[test]
    fn key_copy_goes_to_gnutls_memory() {
        let mut out = ffi::gnutls_datum_t {
            data: ptr::null_mut(),
            size: 0,
        };
        let key: Vec<u8> = (0..=255u8).collect();
        assert_eq!(copy_key_for_gnutls(&key, &mut out), 0);
        assert_eq!(out.size, 256);
        // SAFETY: `out` was just filled with 256 bytes from gnutls_malloc.
        let copied = unsafe { std::slice::from_raw_parts(out.data, 256) }.to_vec();
        assert_eq!(copied, key);
        // SAFETY: freeing what gnutls_malloc returned, once.
        unsafe { ffi::gnutls_free.expect("gnutls_free")(out.data.cast()) };
        assert_eq!(copy_key_for_gnutls(&[], &mut out), -1);
    }

    #[test]
    fn priorities_are_validated() {
        assert!(check_priorities(c"NORMAL:+DHE-PSK:+PSK", true).is_ok());
        assert!(check_priorities(c"NORMAL:+ANON-DH", false).is_ok());
        let err = check_priorities(c"NORMAL:+NO-SUCH-THING", true).unwrap_err();
        match err {
            TlsError::InvalidPriority { message, .. } => {
                assert!(message.contains("NO-SUCH-THING"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(priority_cstring("A\0B").is_err());
    }

    /// A self-signed certificate and its key, plus a second unrelated key, made by `certtool`
    /// in a temporary directory; None when certtool is missing (the X.509 integration tests
    /// require it in CI).
    fn self_signed(tag: &str) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        use std::process::Command;
        let dir = std::env::temp_dir().join(format!("km-session-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(
            dir.join("t"),
            "cn = \"unit\"\nca\ncert_signing_key\nexpiration_days = 2\n",
        )
        .ok()?;
        let run = |args: &[&str]| {
            Command::new("certtool")
                .args(args)
                .current_dir(&dir)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let ok = run(&["--generate-privkey", "--key-type=ecdsa", "--outfile", "k"])
            && run(&["--generate-privkey", "--key-type=ecdsa", "--outfile", "k2"])
            && run(&[
                "--generate-self-signed",
                "--load-privkey",
                "k",
                "--template",
                "t",
                "--outfile",
                "c",
            ]);
        let read = |f: &str| std::fs::read(dir.join(f)).ok();
        let out = if ok {
            Some((read("c")?, read("k")?, read("k2")?))
        } else {
            None
        };
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    #[test]
    fn certificate_credentials_load_and_refuse() {
        // Garbage is refused part by part, with GnuTLS's reason.
        let what = |r: Result<CertCreds, TlsError>| match r {
            Err(TlsError::Credentials { what, .. }) => what,
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => panic!("garbage loaded"),
        };
        assert_eq!(
            what(CertCreds::new(b"junk", None, b"x", b"y")),
            "CA certificates"
        );
        assert!(Certificate::from_pem(b"junk").is_err());
        let Some((cert, key, other_key)) = self_signed("creds") else {
            eprintln!("certtool missing: skipping the valid-material half");
            return;
        };
        // Self-signed: its own CA.
        assert!(CertCreds::new(&cert, None, &cert, &key).is_ok());
        assert_eq!(
            what(CertCreds::new(&cert, None, &cert, &other_key)),
            "certificate and private key"
        );
        assert_eq!(
            what(CertCreds::new(&cert, Some(b"junk"), &cert, &key)),
            "CRL"
        );
        let crt = Certificate::from_pem(&cert).expect("parse");
        assert_eq!(crt.subject().as_deref(), Some("CN=unit"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let expires = crt.expiration().expect("notAfter");
        assert!(expires > now && expires <= now + 3 * 86400, "{expires}");
    }

    #[test]
    fn verification_status_text() {
        // A session that never handshook has no peer and a printable (empty) status.
        let session = Session::init(ffi::GNUTLS_SERVER, Creds::None).unwrap();
        assert_eq!(session.peer_subject(), None);
        let (status, text) = session.verify_failure();
        assert_eq!(status, 0);
        assert!(!text.contains('\0'));
    }
}
