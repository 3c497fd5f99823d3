//! Bounded polling: a check called until it holds, with what it last saw on a timeout.

use std::thread;
use std::time::{Duration, Instant};

/// Calls `check` every `every` until it returns Ok, at most `timeout`. Err(last state) on timeout;
/// `check` returns Err with a description of what it saw.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(state) => {
                if Instant::now() + every > deadline {
                    return Err(state);
                }
            }
        }
        thread::sleep(every);
    }
}

/// [`poll`] every 250 ms, panicking with `what` and the last state on timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    poll(timeout, Duration::from_millis(250), check).unwrap_or_else(|last| {
        panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
    })
}
