//! Checks Pacemaker itself does not make, of a node spec on its own ([`spec`]: names, ports,
//! durations, values), before any cluster is asked; and the [`Problem`] every check reports, each
//! saying what clashes with what and what to do about it. The checks of desired nodes against
//! the live CIB build on desired nodes, so they live above them, in `cib::live_checks`.

pub mod problem;
pub mod spec;

pub use problem::Problem;
pub use spec::{MAX_NAME_LEN, check_spec, is_duration};
