//! libqb's IPC API, declared by hand (Debian 12: libqb 2.0.6, `<qb/qbipcs.h>`, `<qb/qbipcc.h>`).
//! Only what the servers and the test client use. The safe wrapper is `super::server`.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

/// `qb_ipcs_service_t` and `qb_ipcs_connection_t` / `qb_ipcc_connection_t` are opaque.
#[repr(C)]
pub struct qb_ipcs_service {
    _private: [u8; 0],
}
#[repr(C)]
pub struct qb_ipcs_connection {
    _private: [u8; 0],
}
#[repr(C)]
pub struct qb_ipcc_connection {
    _private: [u8; 0],
}

/// `enum qb_ipc_type`.
pub const QB_IPC_SOCKET: c_int = 0;
pub const QB_IPC_SHM: c_int = 1;

/// `qb_ipcs_dispatch_fn_t`: libqb's handler for readiness on one of its descriptors.
pub type qb_ipcs_dispatch_fn_t =
    Option<unsafe extern "C" fn(fd: i32, revents: i32, data: *mut c_void) -> i32>;
/// `qb_loop_job_dispatch_fn`: deferred work libqb queues for the next loop turn.
pub type qb_loop_job_dispatch_fn = Option<unsafe extern "C" fn(data: *mut c_void)>;

/// `struct qb_ipcs_poll_handlers`: how libqb asks the host event loop to watch its descriptors.
#[repr(C)]
pub struct qb_ipcs_poll_handlers {
    pub job_add: Option<
        unsafe extern "C" fn(prio: c_int, data: *mut c_void, f: qb_loop_job_dispatch_fn) -> i32,
    >,
    pub dispatch_add: Option<
        unsafe extern "C" fn(
            prio: c_int,
            fd: i32,
            events: i32,
            data: *mut c_void,
            f: qb_ipcs_dispatch_fn_t,
        ) -> i32,
    >,
    pub dispatch_mod: Option<
        unsafe extern "C" fn(
            prio: c_int,
            fd: i32,
            events: i32,
            data: *mut c_void,
            f: qb_ipcs_dispatch_fn_t,
        ) -> i32,
    >,
    pub dispatch_del: Option<unsafe extern "C" fn(fd: i32) -> i32>,
}

/// `struct qb_ipcs_service_handlers`: the per-service callbacks.
#[repr(C)]
pub struct qb_ipcs_service_handlers {
    pub connection_accept:
        Option<unsafe extern "C" fn(c: *mut qb_ipcs_connection, uid: u32, gid: u32) -> i32>,
    pub connection_created: Option<unsafe extern "C" fn(c: *mut qb_ipcs_connection)>,
    pub msg_process: Option<
        unsafe extern "C" fn(c: *mut qb_ipcs_connection, data: *mut c_void, size: usize) -> i32,
    >,
    pub connection_closed: Option<unsafe extern "C" fn(c: *mut qb_ipcs_connection) -> i32>,
    pub connection_destroyed: Option<unsafe extern "C" fn(c: *mut qb_ipcs_connection)>,
}

/// `struct qb_ipcs_connection_stats` (only `client_pid` is read).
#[repr(C)]
#[derive(Default)]
pub struct qb_ipcs_connection_stats {
    pub client_pid: i32,
    pub requests: u64,
    pub responses: u64,
    pub events: u64,
    pub send_retries: u64,
    pub recv_retries: u64,
    pub flow_control_state: i32,
    pub flow_control_count: u64,
}

#[link(name = "qb")]
unsafe extern "C" {
    pub fn qb_ipcs_create(
        name: *const c_char,
        service_id: i32,
        kind: c_int,
        handlers: *mut qb_ipcs_service_handlers,
    ) -> *mut qb_ipcs_service;
    pub fn qb_ipcs_poll_handlers_set(s: *mut qb_ipcs_service, handlers: *mut qb_ipcs_poll_handlers);
    pub fn qb_ipcs_service_context_set(s: *mut qb_ipcs_service, context: *mut c_void);
    pub fn qb_ipcs_connection_service_context_get(c: *mut qb_ipcs_connection) -> *mut c_void;
    pub fn qb_ipcs_run(s: *mut qb_ipcs_service) -> i32;
    pub fn qb_ipcs_destroy(s: *mut qb_ipcs_service);
    pub fn qb_ipcs_enforce_buffer_size(s: *mut qb_ipcs_service, max_buf_size: u32);
    pub fn qb_ipcs_response_send(
        c: *mut qb_ipcs_connection,
        data: *const c_void,
        size: usize,
    ) -> isize;
    pub fn qb_ipcs_event_send(
        c: *mut qb_ipcs_connection,
        data: *const c_void,
        size: usize,
    ) -> isize;
    pub fn qb_ipcs_disconnect(c: *mut qb_ipcs_connection);
    pub fn qb_ipcs_connection_get_buffer_size(c: *mut qb_ipcs_connection) -> i32;
    pub fn qb_ipcs_connection_stats_get(
        c: *mut qb_ipcs_connection,
        stats: *mut qb_ipcs_connection_stats,
        clear_after_read: i32,
    ) -> i32;

    pub fn qb_ipcc_connect(name: *const c_char, max_msg_size: usize) -> *mut qb_ipcc_connection;
    pub fn qb_ipcc_disconnect(c: *mut qb_ipcc_connection);
    pub fn qb_ipcc_send(c: *mut qb_ipcc_connection, msg: *const c_void, len: usize) -> isize;
    pub fn qb_ipcc_recv(
        c: *mut qb_ipcc_connection,
        msg: *mut c_void,
        len: usize,
        ms_timeout: i32,
    ) -> isize;
    pub fn qb_ipcc_event_recv(
        c: *mut qb_ipcc_connection,
        msg: *mut c_void,
        len: usize,
        ms_timeout: i32,
    ) -> isize;
}
