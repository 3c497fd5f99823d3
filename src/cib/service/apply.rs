//! Creating and updating nodes: validate against the live CIB, plan, and write in versioned,
//! batched transactions. Nodes already as desired cost nothing.

use std::collections::BTreeSet;

use tracing::warn;

use crate::cib::desired::DesiredNode;
use crate::cib::live_checks;
use crate::cib::plan::{Plan, plan};
use crate::cib::validate::Problem;
use crate::wire::Element;

use super::write::{ApplyError, ApplyReport, CibService, InvalidNodes, NodeOutcome};

/// Options for [`CibService::apply_nodes`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Nodes per transaction.
    pub batch_size: usize,
    /// Validate on the server (`cib_dryrun`) without committing.
    pub dry_run: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            batch_size: 250,
            dry_run: false,
        }
    }
}

impl CibService<'_> {
    /// Validates `desired` against the live CIB, then writes what differs, `batch_size` nodes per
    /// transaction; each batch is validated and planned again on the CIB it is written to, which
    /// may have moved. `invalid` says what happens to nodes the checks refuse.
    pub async fn apply_nodes(
        &self,
        desired: &[DesiredNode],
        opts: &ApplyOptions,
        invalid: InvalidNodes,
    ) -> Result<ApplyReport, ApplyError> {
        let mut total = ApplyReport {
            nodes: vec![NodeOutcome::Unchanged; desired.len()],
            ..Default::default()
        };
        if invalid == InvalidNodes::RefuseAll {
            // Batches only see themselves: check across the whole request once.
            let live = self.client().query_cib().await?;
            let problems = live_checks::check_against_cib(desired, &live);
            if !problems.is_empty() {
                return Err(ApplyError::Invalid(problems));
            }
            total.warnings = live_checks::warnings(desired, &live);
            for w in &total.warnings {
                warn!(node = w.node(), "{w}");
            }
        }
        let size = opts.batch_size.max(1);
        for (k, batch) in desired.chunks(size).enumerate() {
            let outcomes = &mut total.nodes[k * size..k * size + batch.len()];
            let mut pending: Vec<usize> = (0..batch.len()).collect();
            let mut described: Vec<Vec<String>> = Vec::new();
            let result = self
                .write_with_retry(
                    |live| {
                        match invalid {
                            InvalidNodes::RefuseAll => {
                                let problems = live_checks::check_against_cib(batch, live);
                                if !problems.is_empty() {
                                    return Err(ApplyError::Invalid(problems));
                                }
                            }
                            InvalidNodes::SetAside => {
                                let (ok, refused) = split_valid(batch, &pending, live);
                                for (i, problems) in refused {
                                    outcomes[i] = NodeOutcome::Refused(problems);
                                }
                                pending = ok;
                            }
                        }
                        let nodes: Vec<DesiredNode> =
                            pending.iter().map(|&i| batch[i].clone()).collect();
                        let p = plan(&nodes, live);
                        described = nodes.iter().map(|d| describe(&p, &d.name)).collect();
                        Ok(p)
                    },
                    opts.dry_run,
                )
                .await;
            match result {
                Ok(report) => {
                    let wrote = report.transactions > 0;
                    for (&i, changes) in pending.iter().zip(described) {
                        if wrote && !changes.is_empty() {
                            outcomes[i] = NodeOutcome::Written(changes);
                        }
                    }
                    total.absorb(&report);
                }
                Err(e) if invalid == InvalidNodes::SetAside => {
                    for &i in &pending {
                        outcomes[i] = NodeOutcome::Failed(e.clone());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

/// The changes `plan` makes for node `name`, one line each.
fn describe(plan: &Plan, name: &str) -> Vec<String> {
    plan.nodes
        .iter()
        .filter(|nc| nc.node == name)
        .flat_map(|nc| nc.changes.iter().map(|c| c.describe()))
        .collect()
}

/// Splits the nodes `pending` (indices into `batch`) into those the live CIB checks accept,
/// alone and together, and those they refuse, with the problems of each.
#[allow(clippy::type_complexity)]
fn split_valid(
    batch: &[DesiredNode],
    pending: &[usize],
    live: &Element,
) -> (Vec<usize>, Vec<(usize, Vec<Problem>)>) {
    let mut ok = Vec::with_capacity(pending.len());
    let mut refused = Vec::new();
    for &i in pending {
        let problems = live_checks::check_against_cib(std::slice::from_ref(&batch[i]), live);
        if problems.is_empty() {
            ok.push(i);
        } else {
            refused.push((i, problems));
        }
    }
    // Clashes between nodes of the same batch (two objects naming one Pacemaker node).
    let together: Vec<DesiredNode> = ok.iter().map(|&i| batch[i].clone()).collect();
    let problems = live_checks::check_against_cib(&together, live);
    if !problems.is_empty() {
        let clashing: BTreeSet<usize> = ok
            .iter()
            .copied()
            .filter(|&i| {
                problems
                    .iter()
                    .any(|p| p.node().eq_ignore_ascii_case(&batch[i].name))
            })
            .collect();
        ok.retain(|i| !clashing.contains(i));
        for i in clashing {
            let mine = problems
                .iter()
                .filter(|p| p.node().eq_ignore_ascii_case(&batch[i].name))
                .cloned()
                .collect();
            refused.push((i, mine));
        }
    }
    (ok, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cib::spec::RemoteNodeSpec;

    fn node(name: &str, address: &str) -> DesiredNode {
        let spec = RemoteNodeSpec {
            address: Some(address.into()),
            ..Default::default()
        };
        DesiredNode::from_spec(name, &spec).unwrap()
    }

    #[test]
    fn invalid_nodes_are_set_aside_alone_or_together() {
        let live = Element::parse(r#"<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config/><nodes/><resources><primitive id="taken" class="ocf" provider="pacemaker" type="Dummy"/></resources><constraints/></configuration><status/></cib>"#).unwrap();
        let batch = [
            node("fine", "192.0.2.1"),
            node("taken", "192.0.2.2"),
            node("twice", "192.0.2.3"),
            node("TWICE", "192.0.2.4"),
        ];
        let (ok, refused) = split_valid(&batch, &[0, 1, 2, 3], &live);
        assert_eq!(ok, vec![0]);
        let refused: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
        assert_eq!(refused, vec![1, 2, 3]);
        // Only the pending ones are looked at.
        let (ok, refused) = split_valid(&batch, &[0, 2], &live);
        assert_eq!((ok, refused.len()), (vec![0, 2], 0));
    }
}
