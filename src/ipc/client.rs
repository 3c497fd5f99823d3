//! A blocking libqb client: what Pacemaker's tools do, for tests and diagnostics.

use std::ffi::CString;

use super::ffi;

pub struct IpcClient {
    conn: *mut ffi::qb_ipcc_connection,
    max: usize,
}

impl IpcClient {
    /// Connects to the service `name`; the error is libqb's negative errno.
    pub fn connect(name: &str, max_msg: usize) -> Result<IpcClient, i32> {
        let cname = CString::new(name).map_err(|_| -nix::libc::EINVAL)?;
        // SAFETY: `cname` is a valid C string for the call.
        let conn = unsafe { ffi::qb_ipcc_connect(cname.as_ptr(), max_msg) };
        if conn.is_null() {
            return Err(-std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(nix::libc::EIO));
        }
        Ok(IpcClient { conn, max: max_msg })
    }

    /// Sends one message (it must start with libqb's request header: id, then size at offset 8).
    pub fn send(&mut self, data: &[u8]) -> Result<(), i32> {
        // SAFETY: live connection; `data` valid for its length.
        let rc = unsafe { ffi::qb_ipcc_send(self.conn, data.as_ptr().cast(), data.len()) };
        if rc < 0 { Err(rc as i32) } else { Ok(()) }
    }

    /// Sends and waits for the response.
    pub fn request(&mut self, data: &[u8], timeout_ms: i32) -> Result<Vec<u8>, i32> {
        self.send(data)?;
        self.recv(timeout_ms)
    }

    pub fn recv(&mut self, timeout_ms: i32) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; self.max];
        // SAFETY: live connection; `buf` is writable for its length.
        let rc =
            unsafe { ffi::qb_ipcc_recv(self.conn, buf.as_mut_ptr().cast(), buf.len(), timeout_ms) };
        if rc < 0 {
            return Err(rc as i32);
        }
        buf.truncate(rc as usize);
        Ok(buf)
    }

    pub fn recv_event(&mut self, timeout_ms: i32) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; self.max];
        // SAFETY: as in `recv`.
        let rc = unsafe {
            ffi::qb_ipcc_event_recv(self.conn, buf.as_mut_ptr().cast(), buf.len(), timeout_ms)
        };
        if rc < 0 {
            return Err(rc as i32);
        }
        buf.truncate(rc as usize);
        Ok(buf)
    }
}

impl Drop for IpcClient {
    fn drop(&mut self) {
        // SAFETY: the connection is live and disconnected exactly once.
        unsafe { ffi::qb_ipcc_disconnect(self.conn) };
    }
}
