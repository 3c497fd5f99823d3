//! Checks Pacemaker itself does not make. Two kinds, in two files:
//!
//! - [`spec`]: a node spec on its own (names, ports, durations, values), before any cluster is
//!   asked;
//! - [`live`]: desired nodes against each other and against the live CIB (name and address
//!   clashes, nesting, constraints, leftovers), plus advice that does not block a write.
//!
//! Both report [`Problem`]s, each saying what clashes with what and what to do about it.

pub mod live;
pub mod problem;
pub mod spec;

pub use live::{check_against_cib, warnings};
pub use problem::Problem;
pub use spec::{MAX_NAME_LEN, check_spec, is_duration};
