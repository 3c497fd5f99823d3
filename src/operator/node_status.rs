//! Pure: what a RemoteNode's status should say, from the outcome of its last reconcile and
//! Pacemaker's view of the node ([`crate::cib::status::NodeStatus`]). No I/O, so golden files pin
//! the mapping down (`tests/golden/operator/status/`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::cib::status::{NodeState, NodeStatus};
use crate::cib::validate::Problem;

use super::crd::RemoteNodeStatus;
use super::node_lifecycle::KubeletView;

pub const CONFIGURED: &str = "Configured";
pub const CONNECTED: &str = "Connected";
pub const READY: &str = "Ready";
pub const KUBELET_READY: &str = "KubeletReady";

/// Why kubemaker asks Pacemaker for standby, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyCause {
    /// `spec.standby` of the RemoteNode.
    Spec,
    /// The bound Kubernetes Node is cordoned (`nodeLifecycle.cordon: Standby`).
    Cordoned,
}

/// Whether the CIB holds what the spec asks for, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The CIB matches the spec (written now or already).
    Configured,
    /// Nothing was written; `reason` is a condition reason (PascalCase), `message` says what to do.
    NotConfigured {
        reason: &'static str,
        message: String,
    },
}

impl Outcome {
    pub fn failed(reason: &'static str, message: impl Into<String>) -> Outcome {
        Outcome::NotConfigured {
            reason,
            message: message.into(),
        }
    }

    /// The condition reason for problems the CIB checks found: the first problem decides.
    pub fn from_problems(problems: &[Problem]) -> Outcome {
        let reason = problems.first().map(problem_reason).unwrap_or("Conflict");
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Outcome::failed(reason, message)
    }
}

/// Condition reason (and Event reason) for a CIB check problem.
pub fn problem_reason(p: &Problem) -> &'static str {
    match p {
        Problem::NameClash { .. } | Problem::GuestNameIsResourceId { .. } => "NameClash",
        Problem::ResourceIdTaken { .. } => "ResourceIdTaken",
        Problem::AddressClash { .. } => "AddressClash",
        Problem::Leftover { .. } => "Leftover",
        Problem::Duplicate { .. } => "NameClash",
        Problem::InvalidName { .. }
        | Problem::ScoreArithmetic { .. }
        | Problem::Port { .. }
        | Problem::Duration { .. }
        | Problem::Spec { .. } => "InvalidSpec",
        Problem::Nested { .. } | Problem::Constraint { .. } | Problem::Fencing { .. } => "Conflict",
    }
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub generation: Option<i64>,
    pub node_name: &'a str,
    pub address: Option<&'a str>,
    pub connection_resource: Option<&'a str>,
    pub outcome: &'a Outcome,
    /// Pacemaker's view; `None` when the CIB has no such node (or was not readable).
    pub pacemaker: Option<&'a NodeStatus>,
    /// Why kubemaker asked for standby; `None` when it did not (a standby Pacemaker reports then
    /// was set by someone else).
    pub standby_cause: Option<StandbyCause>,
    /// The bound Kubernetes Node's kubelet; `None` for a RemoteNode bound to no Node.
    pub kubelet: Option<&'a KubeletView>,
    /// The conditions now in the object, to keep transition times of unchanged conditions.
    pub previous: &'a [Condition],
    pub now: Timestamp,
}

/// The status to write. Equal inputs give an equal status, so an unchanged node costs no write.
pub fn remote_node_status(i: &Inputs<'_>) -> RemoteNodeStatus {
    let configured = matches!(i.outcome, Outcome::Configured);
    let pcmk = i.pacemaker.filter(|_| configured);
    let mut conditions = Vec::with_capacity(4);

    let (c_status, c_reason, c_msg) = match i.outcome {
        Outcome::Configured => (
            true,
            "Configured",
            format!(
                "the CIB holds resource {} for node {}",
                i.connection_resource.unwrap_or("the resource"),
                i.node_name
            ),
        ),
        Outcome::NotConfigured { reason, message } => (false, *reason, message.clone()),
    };
    conditions.push(condition(i, CONFIGURED, c_status, c_reason, c_msg));

    let (n_status, n_reason, n_msg) = connected(pcmk, configured);
    conditions.push(condition(i, CONNECTED, n_status, n_reason, n_msg));

    let (r_status, r_reason, r_msg) = ready(pcmk, configured, i.standby_cause);
    conditions.push(condition(i, READY, r_status, r_reason, r_msg));

    if let Some(k) = i.kubelet {
        conditions.push(condition_with(
            i,
            KUBELET_READY,
            &k.status,
            &k.reason,
            k.message.clone(),
        ));
    }

    RemoteNodeStatus {
        observed_generation: i.generation,
        conditions,
        node_name: Some(i.node_name.to_string()),
        address: i.address.map(str::to_string),
        pacemaker_state: pcmk.map(|p| p.state.as_str().to_string()),
        host: pcmk.and_then(|p| p.host.clone()),
        resources_active: pcmk.map(|p| i32::try_from(p.resources.len()).unwrap_or(i32::MAX)),
        connection_resource: i.connection_resource.map(str::to_string),
    }
}

fn connected(p: Option<&NodeStatus>, configured: bool) -> (bool, &'static str, String) {
    let Some(p) = p else {
        return if configured {
            (
                false,
                "Pending",
                "the cluster has not reported the node yet".into(),
            )
        } else {
            (
                false,
                "NotConfigured",
                "the node is not configured in the CIB".into(),
            )
        };
    };
    let failure = p
        .failed_actions
        .iter()
        .find(|f| f.resource == p.connection || Some(&f.resource) == p.guest_resource.as_ref());
    if p.online {
        let host = p.host.as_deref().unwrap_or("a cluster node");
        return (true, "Connected", format!("connected from {host}"));
    }
    if p.pending {
        return (false, "Pending", format!("{} is starting", p.connection));
    }
    if let Some(f) = failure {
        let why = if f.exit_reason.is_empty() {
            format!("rc={} status={}", f.rc, f.status)
        } else {
            f.exit_reason.clone()
        };
        return (
            false,
            "Failed",
            format!("{} {} failed on {}: {why}", f.resource, f.task, f.node),
        );
    }
    (false, "Offline", format!("{} is not running", p.connection))
}

fn ready(
    p: Option<&NodeStatus>,
    configured: bool,
    cause: Option<StandbyCause>,
) -> (bool, &'static str, String) {
    let Some(p) = p else {
        return if configured {
            (
                false,
                "Pending",
                "waiting for the cluster to report the node".into(),
            )
        } else {
            (
                false,
                "NotConfigured",
                "the node is not configured in the CIB".into(),
            )
        };
    };
    match p.state {
        NodeState::Online => (true, "Online", "online and accepting resources".into()),
        NodeState::Standby => match cause {
            Some(StandbyCause::Cordoned) => (
                false,
                "Cordoned",
                "in standby because its Kubernetes Node is cordoned: no resources run here".into(),
            ),
            Some(StandbyCause::Spec) => (
                false,
                "Standby",
                "in standby (spec.standby): no resources run here".into(),
            ),
            None => (
                false,
                "Standby",
                "in standby, set in Pacemaker outside kubemaker (kubemaker leaves it): no resources run here".into(),
            ),
        },
        NodeState::Maintenance => (
            false,
            "Maintenance",
            "in maintenance: resources are not managed".into(),
        ),
        NodeState::Pending => (false, "Pending", "the connection is starting".into()),
        NodeState::Offline => (false, "Offline", "the node is offline".into()),
        NodeState::Unclean => (
            false,
            "Unclean",
            "the node is unclean and waits to be fenced".into(),
        ),
    }
}

fn condition(
    i: &Inputs<'_>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) -> Condition {
    let status = if status { "True" } else { "False" };
    condition_with(i, type_, status, reason, message)
}

fn condition_with(
    i: &Inputs<'_>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> Condition {
    // The transition time moves only when the status flips.
    let since = i
        .previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(i.now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: i.generation,
        last_transition_time: since,
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let first = remote_node_status(&Inputs {
            generation: Some(1),
            node_name: "n1",
            address: Some("192.0.2.1"),
            connection_resource: Some("n1"),
            outcome: &Outcome::Configured,
            pacemaker: None,
            standby_cause: None,
            kubelet: None,
            previous: &[],
            now: ts("2026-01-01T00:00:00Z"),
        });
        let second = remote_node_status(&Inputs {
            previous: &first.conditions,
            now: ts("2026-01-01T00:05:00Z"),
            ..Inputs {
                generation: Some(1),
                node_name: "n1",
                address: Some("192.0.2.1"),
                connection_resource: Some("n1"),
                outcome: &Outcome::Configured,
                pacemaker: None,
                standby_cause: None,
                kubelet: None,
                previous: &[],
                now: ts("2026-01-01T00:00:00Z"),
            }
        });
        assert_eq!(first, second, "nothing changed, so nothing to write");
        let failed = Outcome::failed("NameClash", "clash");
        let third = remote_node_status(&Inputs {
            outcome: &failed,
            previous: &second.conditions,
            now: ts("2026-01-01T00:06:00Z"),
            generation: Some(2),
            node_name: "n1",
            address: None,
            connection_resource: None,
            pacemaker: None,
            standby_cause: None,
            kubelet: None,
        });
        let c = find(&third.conditions, CONFIGURED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NameClash")
        );
        assert_eq!(c.last_transition_time.0, ts("2026-01-01T00:06:00Z"));
        assert_eq!(
            third.pacemaker_state, None,
            "no Pacemaker view of a node not configured"
        );
    }

    /// Who asked for a standby decides the Ready reason; a bound Node adds `KubeletReady`.
    #[test]
    fn standby_cause_and_kubelet_readiness() {
        let standby = NodeStatus {
            name: "n1".into(),
            kind: crate::cib::status::NodeKind::Remote,
            state: NodeState::Standby,
            online: true,
            standby: true,
            maintenance: false,
            unclean: false,
            pending: false,
            standby_configured: true,
            maintenance_configured: false,
            connection: "n1".into(),
            guest_resource: None,
            address: "192.0.2.1".into(),
            host: Some("node1".into()),
            resources: Vec::new(),
            failed_actions: Vec::new(),
            fenced_at: None,
        };
        let kubelet = KubeletView {
            status: "False".into(),
            reason: "KubeletNotReady".into(),
            message: "PLEG is not healthy".into(),
        };
        let cases = [
            (None, "Standby", "outside kubemaker"),
            (Some(StandbyCause::Spec), "Standby", "spec.standby"),
            (Some(StandbyCause::Cordoned), "Cordoned", "cordoned"),
        ];
        for (cause, reason, says) in cases {
            let s = remote_node_status(&Inputs {
                generation: Some(4),
                node_name: "n1",
                address: None,
                connection_resource: Some("n1"),
                outcome: &Outcome::Configured,
                pacemaker: Some(&standby),
                standby_cause: cause,
                kubelet: Some(&kubelet),
                previous: &[],
                now: ts("2026-01-01T00:00:00Z"),
            });
            let r = find(&s.conditions, READY).unwrap();
            assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", reason));
            assert!(r.message.contains(says), "{cause:?}: {}", r.message);
            let k = find(&s.conditions, KUBELET_READY).unwrap();
            assert_eq!(
                (k.status.as_str(), k.reason.as_str()),
                ("False", "KubeletNotReady")
            );
            assert!(
                s.conditions
                    .iter()
                    .all(|c| c.observed_generation == Some(4)),
                "every condition carries observedGeneration"
            );
        }
    }
}
