//! Checks of a node spec on its own, before any cluster is asked: names Pacemaker accepts,
//! ports, durations, values Pacemaker 2.1 would rewrite.

use super::problem::Problem;
use crate::cib::model::{Agent, is_valid_id};
use crate::cib::spec::{DEFAULT_GUEST_AGENT, NodeType, RemoteNodeSpec};

/// Longest node name accepted: a DNS subdomain (Kubernetes node names) fits; Pacemaker's own
/// buffers are 256 bytes.
pub const MAX_NAME_LEN: usize = 253;

/// Why `text` cannot be an id, or `None` when it can.
fn name_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("it is empty".into());
    }
    if text.len() > MAX_NAME_LEN {
        return Some(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if !is_valid_id(text) {
        let bad: String = text
            .chars()
            .enumerate()
            .filter(|(i, c)| {
                !(c.is_ascii_alphanumeric() || *c == '_' || (*i > 0 && matches!(c, '-' | '.')))
            })
            .map(|(_, c)| c)
            .take(5)
            .collect();
        return Some(format!("it contains or starts with {bad:?}"));
    }
    None
}

/// Pacemaker's interval syntax: a number with an optional unit, or an ISO 8601 duration.
pub fn is_duration(text: &str) -> bool {
    let t = text.trim();
    if let Some(iso) = t.strip_prefix('P') {
        return is_iso_duration(iso);
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    matches!(
        t[digits..].trim(),
        "" | "ms" | "msec" | "us" | "usec" | "s" | "sec" | "m" | "min" | "h" | "hr"
    )
}

fn is_iso_duration(rest: &str) -> bool {
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let fields_ok = |part: &str, units: &str| {
        let mut num = false;
        let mut order = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                num = true;
            } else if let Some(i) = units.find(c) {
                if !num || i < order {
                    return false;
                }
                order = i + 1;
                num = false;
            } else {
                return false;
            }
        }
        !num
    };
    let any = !date.is_empty() || time.is_some_and(|t| !t.is_empty());
    any && fields_ok(date, "YMWD") && time.is_none_or(|t| !t.is_empty() && fields_ok(t, "HMS"))
}

fn has_score_arithmetic(value: &str) -> bool {
    let v = value.trim_end();
    v.ends_with("++") || v.contains("+=")
}

/// Checks a spec on its own, without looking at any cluster.
pub fn check_spec(name: &str, spec: &RemoteNodeSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    let node = || name.to_string();
    if let Some(reason) = name_problem(name) {
        out.push(Problem::InvalidName {
            node: node(),
            what: "node name",
            value: name.into(),
            reason,
        });
    }
    if let Some(port) = spec.port
        && !(1..=65535).contains(&port)
    {
        out.push(Problem::Port {
            node: node(),
            value: port,
        });
    }
    if let Some(addr) = &spec.address
        && (addr.trim().is_empty() || addr.chars().any(|c| c.is_whitespace() || c == '/'))
    {
        out.push(Problem::Spec {
            node: node(),
            field: "address",
            reason: format!("{addr:?} is not a host name or IP address"),
        });
    }
    let monitor = spec.monitor.clone().unwrap_or_default();
    let mut durations: Vec<(&'static str, Option<&String>)> = vec![
        ("reconnectInterval", spec.reconnect_interval.as_ref()),
        ("monitor.interval", monitor.interval.as_ref()),
        ("monitor.timeout", monitor.timeout.as_ref()),
        ("startTimeout", spec.start_timeout.as_ref()),
        ("stopTimeout", spec.stop_timeout.as_ref()),
    ];
    if let Some(g) = &spec.guest {
        durations.push(("guest.connectTimeout", g.connect_timeout.as_ref()));
    }
    for (field, value) in durations {
        if let Some(v) = value
            && !is_duration(v)
        {
            out.push(Problem::Duration {
                node: node(),
                field,
                value: v.clone(),
            });
        }
    }
    if let Some(i) = &monitor.interval
        && is_duration(i)
        && i.trim_start_matches('0')
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_digit())
    {
        out.push(Problem::Spec {
            node: node(),
            field: "monitor.interval",
            reason: format!("{i:?} disables monitoring; Pacemaker would never notice the node failing; use a non-zero interval such as 30s"),
        });
    }
    for (k, v) in &spec.attributes {
        if let Some(reason) = name_problem(k) {
            out.push(Problem::InvalidName {
                node: node(),
                what: "attribute name",
                value: k.clone(),
                reason,
            });
        }
        if matches!(k.as_str(), "standby" | "maintenance") {
            out.push(Problem::Spec {
                node: node(),
                field: "attributes",
                reason: format!("{k:?} is controlled by spec.{k}; set that instead"),
            });
        }
        if has_score_arithmetic(v) {
            out.push(Problem::ScoreArithmetic {
                node: node(),
                field: format!("attribute {k:?}"),
                value: v.clone(),
            });
        }
    }
    match (spec.node_type, &spec.guest) {
        (NodeType::Remote, Some(_)) => out.push(Problem::Spec {
            node: node(),
            field: "guest",
            reason: "is only for `type: guest`; remove it or set the type to guest".into(),
        }),
        (NodeType::Guest, None) => out.push(Problem::Spec {
            node: node(),
            field: "guest",
            reason: "`type: guest` needs a guest section (at least guest.parameters.config for VirtualDomain)".into(),
        }),
        (NodeType::Guest, Some(g)) => {
            if spec.reconnect_interval.is_some() {
                out.push(Problem::Spec {
                    node: node(),
                    field: "reconnectInterval",
                    reason: "applies to remote nodes only; guests reconnect when their resource restarts".into(),
                });
            }
            let rid = g.resource_id.clone().unwrap_or_else(|| format!("vm-{name}"));
            if let Some(reason) = name_problem(&rid) {
                out.push(Problem::InvalidName {
                    node: node(),
                    what: "guest.resourceId",
                    value: rid.clone(),
                    reason,
                });
            }
            if rid.eq_ignore_ascii_case(name) {
                out.push(Problem::GuestNameIsResourceId {
                    node: node(),
                    resource: rid,
                });
            }
            let agent_text = g.agent.as_deref().unwrap_or(DEFAULT_GUEST_AGENT);
            match Agent::parse(agent_text) {
                None => out.push(Problem::Spec {
                    node: node(),
                    field: "guest.agent",
                    reason: format!("{agent_text:?} is not an agent; write class:provider:type (ocf:heartbeat:VirtualDomain) or class:type (systemd:foo)"),
                }),
                Some(a) if a.is_pacemaker_remote() => out.push(Problem::Spec {
                    node: node(),
                    field: "guest.agent",
                    reason: "ocf:pacemaker:remote is a connection, not a guest; use `type: remote`".into(),
                }),
                Some(a) if a.to_string() == DEFAULT_GUEST_AGENT => {
                    if !g.parameters.contains_key("config") {
                        out.push(Problem::Spec {
                            node: node(),
                            field: "guest.parameters",
                            reason: "VirtualDomain needs `config` (the path of the libvirt domain XML on the cluster nodes)".into(),
                        });
                    }
                }
                Some(_) => {}
            }
            for (k, v) in &g.parameters {
                if let Some(reason) = name_problem(k) {
                    out.push(Problem::InvalidName {
                        node: node(),
                        what: "guest parameter name",
                        value: k.clone(),
                        reason,
                    });
                }
                if has_score_arithmetic(v) {
                    out.push(Problem::ScoreArithmetic {
                        node: node(),
                        field: format!("guest parameter {k:?}"),
                        value: v.clone(),
                    });
                }
            }
        }
        (NodeType::Remote, None) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for ok in [
            "30s", "0", "500ms", "2min", "1h", "10", "PT1M", "P1DT2H", "5 s",
        ] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "s", "30x", "-5s", "P", "PT", "1.5s", "PT1H1H2"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn spec_problems_are_reported_together() {
        let spec = RemoteNodeSpec {
            port: Some(70000),
            reconnect_interval: Some("soon".into()),
            attributes: [
                ("rack".into(), "r1++".into()),
                ("bad name".into(), "x".into()),
            ]
            .into(),
            ..Default::default()
        };
        let problems = check_spec("1node", &spec);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 5, "{text:#?}");
        assert!(text.iter().any(|t| t.contains("between 1 and 65535")));
        assert!(
            text.iter()
                .any(|t| t.contains("\"soon\", which is not a duration"))
        );
        assert!(text.iter().any(|t| t.contains("score arithmetic")));
    }
}
