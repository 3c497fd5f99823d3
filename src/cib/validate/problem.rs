//! What a validation finds: one [`Problem`] per broken thing, saying what clashes with what and
//! what to do about it.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "{what} {value:?} of node {node:?} is not a name Pacemaker accepts: {reason}; use letters, digits, '-', '_' and '.', starting with a letter or '_' (a lowercase DNS label is safest)"
    )]
    InvalidName {
        node: String,
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "node name {node:?} clashes with {other} (Pacemaker compares names case-insensitively, so the node would not appear or would merge with it); choose another node name"
    )]
    NameClash { node: String, other: String },
    #[error(
        "guest node {node:?} has the same name as its own resource {resource:?}; Pacemaker would create a bogus node; name the resource differently (e.g. vm-{node})"
    )]
    GuestNameIsResourceId { node: String, resource: String },
    #[error(
        "resource id {resource:?} wanted for node {node:?} is already used by {other}; pick another guest.resourceId or remove that resource"
    )]
    ResourceIdTaken {
        node: String,
        resource: String,
        other: String,
    },
    #[error(
        "{what} {resource:?} of node {node:?} is inside {parent_tag} {parent_id:?}; Pacemaker only makes nodes from {allowed}; move it out (e.g. `pcs resource ungroup {parent_id}`) or remove the {parent_tag}"
    )]
    Nested {
        node: String,
        what: &'static str,
        resource: String,
        parent_tag: String,
        parent_id: String,
        allowed: &'static str,
    },
    #[error(
        "constraint {constraint:?} ({tag}) involves {resource:?}, the connection of node {node:?}: {reason}; remove the constraint (`pcs constraint remove {constraint}`)"
    )]
    Constraint {
        node: String,
        constraint: String,
        tag: String,
        resource: String,
        reason: &'static str,
    },
    #[error(
        "address {address:?} of node {node:?} is already used by {other}; two nodes on one address would fight over one pacemaker-remoted; give each node its own address"
    )]
    AddressClash {
        node: String,
        address: String,
        other: String,
    },
    #[error(
        "{field} of node {node:?} is {value:?}: Pacemaker 2.1 rewrites values of the form `name++` and `name+=N` as score arithmetic; choose another value"
    )]
    ScoreArithmetic {
        node: String,
        field: String,
        value: String,
    },
    #[error("port of node {node:?} is {value}; use a TCP port between 1 and 65535 (default 3121)")]
    Port { node: String, value: i64 },
    #[error(
        "{field} of node {node:?} is {value:?}, which is not a duration; write e.g. 30s, 500ms, 2min, 1h or PT1M"
    )]
    Duration {
        node: String,
        field: &'static str,
        value: String,
    },
    #[error("{field} of node {node:?}: {reason}")]
    Spec {
        node: String,
        field: &'static str,
        reason: String,
    },
    #[error(
        "node name {node:?} still has state from an earlier node of that name ({leftover}); purge it first (`kubemaker cib remove {node}` or `crm_node --force --remove {node}`), or choose another name"
    )]
    Leftover { node: String, leftover: String },
    #[error("node {node:?} is listed twice; each node must appear once")]
    Duplicate { node: String },
    #[error(
        "fencing is enabled but {reason}, so if node {node:?} fails, recovery of its resources blocks until it is fenced by hand; configure a fence device that can target {node:?} (pcmk_host_list or pcmk_host_map) or make sure the node's resources may wait"
    )]
    Fencing { node: String, reason: String },
}

impl Problem {
    /// The node the problem is about.
    pub fn node(&self) -> &str {
        match self {
            Problem::InvalidName { node, .. }
            | Problem::NameClash { node, .. }
            | Problem::GuestNameIsResourceId { node, .. }
            | Problem::ResourceIdTaken { node, .. }
            | Problem::Nested { node, .. }
            | Problem::Constraint { node, .. }
            | Problem::AddressClash { node, .. }
            | Problem::ScoreArithmetic { node, .. }
            | Problem::Port { node, .. }
            | Problem::Duration { node, .. }
            | Problem::Spec { node, .. }
            | Problem::Leftover { node, .. }
            | Problem::Duplicate { node }
            | Problem::Fencing { node, .. } => node,
        }
    }
}
