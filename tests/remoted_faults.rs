//! Partitions of a remote host (issue #12), kubemaker-remoted and the generation's reference side by
//! side on one real cluster: both hosts lose their link (the host side of their veth goes down, so
//! the cluster node gets "no route to host") at the same moment, for less and for more than the
//! connection monitor's timeout, without and with `reconnect_interval`.
//!
//! Neither connection's monitor is in phase with the cut (nor with the other's), so the durations
//! are chosen so that every phase gives the same outcome. The connection's monitor runs every 5 s
//! with a 10 s timeout; its start has a 5 s timeout:
//!
//! - a 3 s cut: a poke sent during it is retransmitted by TCP once the link is back, at most about
//!   6 s after it was sent, well inside the 10 s timeout. Pacemaker records nothing and the node
//!   never goes down.
//! - a 45 s cut: the first poke sent during it times out 10 to 15 s into the cut. Without
//!   `reconnect_interval` the recovery start follows at once; with `reconnect_interval=5s` the
//!   first reconnect comes about 6 s after the failure. Either runs while the link is still down
//!   and fails: on 2.1.5 at once ("no route to host"); on 3.x, whose node reaches the hosts
//!   through the machine, after up to 5 s ("No route to host" or, when the machine's ICMP rate
//!   limit swallowed the answer, "Connection timed out"), and one side's start may wait for the
//!   other's (seen on 3.0.3: 9 s). The last of these ends about 35 s into the cut at the latest,
//!   10 s before the link comes back. Without `reconnect_interval` the failed start is fatal
//!   (`start-failure-is-fatal`): the node stays down until `crm_resource --cleanup`. With it,
//!   Pacemaker retries every 5 s or so and the node rejoins on its own once the link is back.
//!
//! At every look (`crm_mon` and the CIB's status) the test records, per side: whether the node
//! went down, whether it was still down when the link came back, whether it was ever unclean, the
//! connection's fail counts (crm_mon's failed actions show a resource's last failure only, so a
//! failed start hides the monitor failure before it within a second), the failed actions shown at
//! the end (not after a reconnect on its own: those expire at times that depend on the phase), and
//! whether the node was back with its Dummies before any cleanup. These must be equal for both
//! daemons and be the outcome above; at no look may a Dummy be active on two nodes. The timeline
//! of both sides and their operation history (the CIB's `lrm_rsc_op` entries) are printed side by
//! side. After each scenario `crm_resource --cleanup`, and both nodes must rejoin with their
//! Dummies.
//!
//! It takes 3 to 4 minutes per generation, so `.ci/run` runs it on 2.1.5 (`cargo test
//! --all-targets`) and 3.0.3 only (`NEWEST_ONLY_TARGETS` in scripts/test.sh), not on 3.0.0. By
//! hand: `sudo cargo test --test remoted_faults -- --nocapture`, with `KUBEMAKER_PACEMAKER=3.0.3`
//! (or 3.0.0) for another generation.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kubemaker::wire::Element;
use support::{Cluster, MonView, NetnsHost, ReferenceHost, RemoteHost, step};

const JOIN: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(120);
/// The connection's monitor and start (see the module's comment for why these).
const MONITOR_INTERVAL: Duration = Duration::from_secs(5);
const MONITOR_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_INTERVAL: &str = "5s";
const SHORT_CUT: Duration = Duration::from_secs(3);
const LONG_CUT: Duration = Duration::from_secs(45);
/// How long the test watches after the link is back: a poke sent before then has been answered or
/// has timed out 2 s later ...
const WATCH_AFTER_SHORT: Duration = Duration::from_secs(MONITOR_TIMEOUT.as_secs() + 2);
/// ... and a node that Pacemaker leaves down must stay down this long.
const WATCH_STAYS_DOWN: Duration = Duration::from_secs(15);
/// How long a node with `reconnect_interval` may take to rejoin after the link is back.
const RECONNECT_WITHIN: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(500);

fn connection_xml(id: &str, addr: &str) -> String {
    format!(
        r#"<primitive class="ocf" id="{id}" provider="pacemaker" type="remote"><instance_attributes id="{id}-ia"><nvpair id="{id}-ia-server" name="server" value="{addr}"/></instance_attributes><operations><op id="{id}-monitor" interval="{}s" name="monitor" timeout="{}s"/><op id="{id}-start" interval="0s" name="start" timeout="{}s"/></operations></primitive>"#,
        MONITOR_INTERVAL.as_secs(),
        MONITOR_TIMEOUT.as_secs(),
        START_TIMEOUT.as_secs()
    )
}

/// Two Dummies `<node>-d0` and `<node>-d1`, allowed (and probed) only on `node`, WITHOUT a
/// recurring monitor. A recurring monitor of a resource on the remote node is an operation the
/// controller holds pending; when the connection's monitor times out, the controller drops the
/// connection and records those as failed ("Action was pending when executor connection was
/// dropped") right after the connection's failure. Whether the scheduler sees them in the same run
/// is a race inside Pacemaker: if it does, the node is left unclean with its connection failed and
/// nothing scheduled (no fencing here), if not, the connection is recovered (seen on 2.1.5 with a
/// 5 s monitor on each Dummy: one run each way, for both daemons alike). Each connection runs that
/// race on its own, so the two sides could not be compared.
fn pinned_dummies(cluster: &Cluster, node: &str) -> Vec<String> {
    let ids: Vec<String> = (0..2).map(|i| format!("{node}-d{i}")).collect();
    let mut rsc = String::from("<resources>");
    let mut cons = String::from("<constraints>");
    for id in &ids {
        rsc.push_str(&format!(
            r#"<primitive class="ocf" id="{id}" provider="pacemaker" type="Dummy"><instance_attributes id="{id}-ia"><nvpair id="{id}-ia-state" name="state" value="{}"/></instance_attributes></primitive>"#,
            support::dummy_state_file(id)
        ));
        cons.push_str(&format!(
            r#"<rsc_location id="{id}-on-{node}" rsc="{id}" node="{node}" score="INFINITY" resource-discovery="exclusive"/>"#
        ));
    }
    rsc.push_str("</resources>");
    cons.push_str("</constraints>");
    for (section, xml) in [("resources", &rsc), ("constraints", &cons)] {
        cluster.run_ok("cibadmin", &["--create", "-o", section, "--xml-text", xml]);
    }
    ids
}

/// One side: its daemon's name, its node (connection resource), its host and its Dummies.
struct Side<'a> {
    who: &'static str,
    node: &'static str,
    host: &'a NetnsHost,
    dummies: Vec<String>,
}

/// One look at the cluster: `crm_mon` and the CIB's `status` section.
struct Look {
    v: MonView,
    status: Option<Element>,
}

impl Side<'_> {
    /// As `crm_mon` shows it: the node online and its Dummies started there.
    fn shown_up(&self, v: &MonView) -> bool {
        v.remote_node_up(self.node) && support::all_started_on(v, &self.dummies, self.node)
    }

    /// Really up: as shown, and no connection start pending (3.0.3's crm_mon shows a remote node
    /// online, its connection Started, while the start still tries to connect).
    fn up(&self, l: &Look) -> bool {
        self.shown_up(&l.v) && !l.status.as_ref().is_some_and(|s| self.pending(s))
    }

    /// An operation of the connection is pending (`op-status="-1"` in the CIB's status).
    fn pending(&self, status: &Element) -> bool {
        let mut pending = false;
        walk(status, &mut |e| {
            if e.name == "lrm_resource" && e.attr("id") == Some(self.node) {
                pending |= e
                    .children
                    .iter()
                    .any(|op| op.name == "lrm_rsc_op" && op.attr("op-status") == Some("-1"));
            }
        });
        pending
    }

    /// The link of the host's veth, as a cable pulled or plugged back.
    fn link(&self, up: bool) {
        support::run_ok(
            "ip",
            &[
                "link",
                "set",
                self.host.name(),
                if up { "up" } else { "down" },
            ],
        );
    }

    /// `text` with this side's names replaced, so that both sides compare.
    fn neutral(&self, text: &str) -> String {
        text.replace(self.node, "<node>")
    }

    /// Failed actions of this side (connection and Dummies), `<op key> on <node>`.
    fn failed(&self, v: &MonView) -> BTreeSet<String> {
        v.failures()
            .into_iter()
            .filter(|(op, node)| op.starts_with(self.node) || node == self.node)
            .map(|(op, node)| self.neutral(&format!("{op} on {node}")))
            .collect()
    }

    /// What `crm_mon` shows of this side, for the timeline.
    fn state(&self, v: &MonView) -> String {
        let node = v.node(self.node);
        let conn = v.resource(self.node);
        let rsc = |r: Option<support::MonResource>| match r {
            Some(r) => format!(
                "{}{}{}",
                r.role,
                if r.failed { "(failed)" } else { "" },
                if r.nodes.is_empty() {
                    String::new()
                } else {
                    format!("@{}", self.neutral(&r.nodes.join(",")))
                }
            ),
            None => "-".to_string(),
        };
        let dummies: Vec<String> = self.dummies.iter().map(|id| rsc(v.resource(id))).collect();
        format!(
            "node {}{} conn {} dummies {} failed {:?}",
            if node.is_some_and(|n| n.online) {
                "online"
            } else {
                "offline"
            },
            if node.is_some_and(|n| n.unclean) {
                " UNCLEAN"
            } else {
                ""
            },
            rsc(conn),
            dummies.join(" "),
            self.failed(v)
        )
    }

    /// The connection's fail counts in the CIB's `status`, `<node>#<op>_<interval>=<count>`: the
    /// lasting record of its failures (crm_mon shows a resource's last failure only: a failed
    /// start hides the monitor failure that led to it within a second).
    fn fail_counts(&self, status: &Element) -> BTreeSet<String> {
        let prefix = format!("fail-count-{}#", self.node);
        let mut counts = BTreeSet::new();
        walk(status, &mut |e| {
            if e.name == "nvpair"
                && let Some(op) = e.attr("name").and_then(|n| n.strip_prefix(&prefix))
            {
                counts.insert(format!(
                    "<node>#{op}={}",
                    e.attr("value").unwrap_or_default()
                ));
            }
        });
        counts
    }

    /// This side's operation history in the CIB (`lrm_rsc_op`): `op id -> what it recorded`.
    fn op_history(&self, cib: &Element) -> BTreeMap<String, String> {
        let mut ops = BTreeMap::new();
        let Some(status) = cib.child("status") else {
            return ops;
        };
        for state in status.children.iter().filter(|c| c.name == "node_state") {
            let on = state.attr("uname").unwrap_or_default();
            let Some(resources) = state.child("lrm").and_then(|l| l.child("lrm_resources")) else {
                continue;
            };
            for rsc in resources.children.iter().filter(|r| {
                r.attr("id")
                    .is_some_and(|id| id == self.node || self.dummies.iter().any(|d| d == id))
            }) {
                for op in rsc.children.iter().filter(|o| o.name == "lrm_rsc_op") {
                    let a = |n: &str| op.attr(n).unwrap_or_default();
                    let reason = a("exit-reason");
                    ops.insert(
                        self.neutral(&format!("{} on {on}", a("id"))),
                        self.neutral(&format!(
                            "{} rc={} status={}{}",
                            a("operation"),
                            a("rc-code"),
                            a("op-status"),
                            if reason.is_empty() {
                                String::new()
                            } else {
                                format!(" \"{reason}\"")
                            }
                        )),
                    );
                }
            }
        }
        ops
    }
}

/// Calls `f` on `e` and every element below it.
fn walk(e: &Element, f: &mut impl FnMut(&Element)) {
    f(e);
    for c in &e.children {
        walk(c, f);
    }
}

/// No Dummy of either side is active on two nodes in `v`.
fn no_duplicates(v: &MonView, sides: &[&Side]) -> Result<(), String> {
    for side in sides {
        for id in &side.dummies {
            if let Some(r) = v.resource(id)
                && r.nodes.len() > 1
            {
                return Err(format!("{id} active on {:?}", r.nodes));
            }
        }
    }
    Ok(())
}

/// What Pacemaker made of one scenario for one side; compared between the two daemons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Outcome {
    /// The node (or one of its Dummies) was down at some look.
    went_down: bool,
    /// ... and still down at the last look before the link came back.
    down_at_link_up: bool,
    /// The node was shown unclean at some look.
    unclean: bool,
    /// The connection's fail counts seen at any look.
    fail_counts: BTreeSet<String>,
    /// The failed actions `crm_mon` shows at the end of the watch. Not compared when the node
    /// reconnected on its own: each failure then expires `reconnect_interval` after it happened,
    /// a time that depends on the monitor's phase.
    failed_at_end: Option<BTreeSet<String>>,
    /// Up with its Dummies at the end of the watch after the link came back, before any cleanup.
    up_before_cleanup: bool,
}

/// Both sides watched through one scenario: `crm_mon` looks, each checked for duplicates and
/// folded into both sides' [`Outcome`] and the timeline.
struct Watch<'a> {
    cluster: &'a Cluster,
    sides: [&'a Side<'a>; 2],
    label: String,
    t0: Instant,
    link_back: Option<Duration>,
    last: [String; 2],
    timeline: Vec<String>,
    outcome: [Outcome; 2],
    down_at: [Option<Duration>; 2],
    back_at: [Option<Duration>; 2],
}

impl<'a> Watch<'a> {
    fn new(cluster: &'a Cluster, sides: [&'a Side<'a>; 2], label: &str) -> Watch<'a> {
        Watch {
            cluster,
            sides,
            label: label.to_string(),
            t0: Instant::now(),
            link_back: None,
            last: Default::default(),
            timeline: Vec::new(),
            outcome: Default::default(),
            down_at: [None; 2],
            back_at: [None; 2],
        }
    }

    /// One look (None if crm_mon printed no XML); panics on a duplicate.
    fn look(&mut self) -> Option<Look> {
        let out = self.cluster.run("crm_mon", &["-1", "--output-as=xml"]);
        let xml = String::from_utf8_lossy(&out.stdout);
        if !xml.contains("<pacemaker-result") {
            return None;
        }
        let v = MonView::parse(&xml);
        let status = self.cluster.run("cibadmin", &["-Q", "-o", "status"]);
        let l = Look {
            v,
            status: Element::parse(&String::from_utf8_lossy(&status.stdout)).ok(),
        };
        let (v, status) = (&l.v, &l.status);
        let t = self.t0.elapsed();
        if let Err(e) = no_duplicates(v, &self.sides) {
            panic!(
                "{}: {e} {:.1} s after the cut\n{}\n--- crm_mon ---\n{}",
                self.label,
                t.as_secs_f64(),
                self.timeline.join("\n"),
                self.cluster.crm_mon_text()
            );
        }
        for (i, side) in self.sides.iter().enumerate() {
            let counts = status
                .as_ref()
                .map(|s| side.fail_counts(s))
                .unwrap_or_default();
            let pending = if status.as_ref().is_some_and(|s| side.pending(s)) {
                " (start pending)"
            } else {
                ""
            };
            let state = format!("{}{pending} fail-counts {counts:?}", side.state(v));
            if state != self.last[i] {
                self.timeline.push(format!(
                    "   {:>6.1} s  {:<9} {state}",
                    t.as_secs_f64(),
                    side.who
                ));
                self.last[i] = state;
            }
            let o = &mut self.outcome[i];
            let up = side.up(&l);
            if !up {
                o.went_down = true;
                self.down_at[i].get_or_insert(t);
            }
            if let Some(back) = self.link_back
                && up
                && o.went_down
            {
                self.back_at[i].get_or_insert(t - back);
            }
            if self.link_back.is_none() {
                o.down_at_link_up = !up;
            }
            o.unclean |= v.node(side.node).is_some_and(|n| n.unclean);
            o.fail_counts.extend(counts);
        }
        Some(l)
    }

    /// Looks every 500 ms until `until` after the cut, or sooner once `done` holds.
    fn watch(&mut self, until: Duration, done: impl Fn(&Look) -> bool) {
        while self.t0.elapsed() < until {
            if self.look().is_some_and(|l| done(&l)) {
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    fn links(&mut self, up: bool) {
        for side in self.sides {
            side.link(up);
        }
        if up {
            self.link_back = Some(self.t0.elapsed());
        } else {
            self.t0 = Instant::now();
        }
    }

    /// Ends the watch: each side's outcome, after a last look, with the timeline and the
    /// operation history printed side by side.
    fn finish(mut self, compare_failed_at_end: bool) -> [Outcome; 2] {
        let l = self.look();
        for (i, side) in self.sides.iter().enumerate() {
            self.outcome[i].up_before_cleanup = l.as_ref().is_some_and(|l| side.up(l));
            self.outcome[i].failed_at_end = l
                .as_ref()
                .filter(|_| compare_failed_at_end)
                .map(|l| side.failed(&l.v));
        }
        let secs = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
        };
        let cib = Element::parse(&self.cluster.cib_xml()).expect("parse the CIB");
        let [a, b] = self.sides.map(|s| s.op_history(&cib));
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let mut history = vec![format!(
            "   {:<34} {:<48} | {}",
            "op history (CIB)", self.sides[0].who, self.sides[1].who
        )];
        for k in keys {
            let get = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("-".into());
            history.push(format!("   {k:<34} {:<48} | {}", get(&a), get(&b)));
        }
        step(&format!(
            "{}: timeline (seconds after the cut; link back at {}):\n{}\n{}\n   {}: down at {}, back {} after the link\n   {}: down at {}, back {} after the link\n   {}: {:?}\n   {}: {:?}",
            self.label,
            secs(self.link_back),
            self.timeline.join("\n"),
            history.join("\n"),
            self.sides[0].who,
            secs(self.down_at[0]),
            secs(self.back_at[0]),
            self.sides[1].who,
            secs(self.down_at[1]),
            secs(self.back_at[1]),
            self.sides[0].who,
            self.outcome[0],
            self.sides[1].who,
            self.outcome[1],
        ));
        self.outcome
    }
}

/// After `crm_resource --cleanup`: both nodes back with their Dummies, no duplicate at any look,
/// then nothing left to do.
fn cleanup_and_rejoin(cluster: &Cluster, sides: [&Side; 2], label: &str) {
    cluster.run_ok("crm_resource", &["--cleanup"]);
    let mut w = Watch::new(cluster, sides, &format!("{label}, after the cleanup"));
    let deadline = Instant::now() + SETTLE;
    loop {
        if w.look()
            .is_some_and(|l| sides.iter().all(|s| s.up(&l) && s.failed(&l.v).is_empty()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: both nodes not back {SETTLE:?} after the cleanup\n{}\n--- crm_mon ---\n{}",
            w.timeline.join("\n"),
            cluster.crm_mon_text()
        );
        std::thread::sleep(POLL);
    }
    step(&format!(
        "{label}: both back {:.1} s after the cleanup",
        w.t0.elapsed().as_secs_f64()
    ));
    cluster.settle(SETTLE);
}

/// Pacemaker's documented outcome of a cut (see the module's comment), for one side.
fn expected(side: &Side, cut: Duration, reconnect: bool, outcome: &Outcome) -> Result<(), String> {
    let monitor = format!("<node>#monitor_{}=", MONITOR_INTERVAL.as_millis());
    let start = "<node>#start_0=INFINITY";
    let counted = |op: &str| outcome.fail_counts.iter().any(|f| f.starts_with(op));
    let fail = |what: &str| Err(format!("{}: {what}: {outcome:?}", side.who));
    let failed_at_end = outcome.failed_at_end.clone().unwrap_or_default();
    if cut < MONITOR_TIMEOUT {
        if outcome.went_down
            || outcome.unclean
            || !outcome.fail_counts.is_empty()
            || !failed_at_end.is_empty()
        {
            return fail("a cut shorter than the monitor timeout was noticed");
        }
        return Ok(());
    }
    if !outcome.down_at_link_up || !counted(&monitor) {
        return fail("the connection monitor did not fail during a cut longer than its timeout");
    }
    if !counted(start) {
        return fail("no failed (re)connection while the link was down");
    }
    if !reconnect
        && !failed_at_end
            .iter()
            .any(|f| f.starts_with("<node>_start_0"))
    {
        return fail("crm_mon does not show the failed start");
    }
    match (reconnect, outcome.up_before_cleanup) {
        (false, true) => fail("back without reconnect_interval and without a cleanup"),
        (true, false) => fail("not back by itself with reconnect_interval"),
        _ => Ok(()),
    }
}

#[test]
fn partitions_side_by_side_with_the_reference() {
    if !support::require_root() || !support::require_tools(&["ip", "ss", "crm_mon", "crm_resource"])
    {
        return;
    }
    let started = Instant::now();
    let cluster = Cluster::acquire();
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);
    let ours = RemoteHost::start_in_netns("flt-km", &key);
    let reference = ReferenceHost::start("flt-ref", &key);
    cluster.create_resource_xml(&connection_xml("rn-flt-km", &ours.addr()));
    cluster.create_resource_xml(&connection_xml("rn-flt-ref", &reference.addr()));
    let km = Side {
        who: "kubemaker",
        node: "rn-flt-km",
        host: ours.netns(),
        dummies: pinned_dummies(&cluster, "rn-flt-km"),
    };
    let rf = Side {
        who: "reference",
        node: "rn-flt-ref",
        host: &reference.host,
        dummies: pinned_dummies(&cluster, "rn-flt-ref"),
    };
    let both = [&km, &rf];
    let both_up = |v: &MonView| km.shown_up(v) && rf.shown_up(v) && no_duplicates(v, &both).is_ok();
    cluster.wait_until("both nodes online with their Dummies", JOIN, both_up);
    cluster.settle(SETTLE);

    let mut summary = Vec::new();
    for reconnect in [false, true] {
        if reconnect {
            for node in [km.node, rf.node] {
                cluster.run_ok(
                    "crm_resource",
                    &[
                        "--resource",
                        node,
                        "--set-parameter",
                        "reconnect_interval",
                        "--parameter-value",
                        RECONNECT_INTERVAL,
                    ],
                );
            }
            cluster.settle(SETTLE);
            cluster.wait_until("both nodes up with reconnect_interval", JOIN, both_up);
        }
        for cut in [SHORT_CUT, LONG_CUT] {
            let label = format!(
                "{}s cut ({} than the monitor timeout), {}",
                cut.as_secs(),
                if cut < MONITOR_TIMEOUT {
                    "shorter"
                } else {
                    "longer"
                },
                if reconnect {
                    format!("reconnect_interval={RECONNECT_INTERVAL}")
                } else {
                    "no reconnect_interval".to_string()
                }
            );
            step(&format!("partition of both hosts: {label}"));
            let began = Instant::now();
            let mut w = Watch::new(&cluster, both, &label);
            w.look();
            w.links(false);
            w.watch(cut, |_| false);
            w.links(true);
            if cut < MONITOR_TIMEOUT {
                w.watch(cut + WATCH_AFTER_SHORT, |_| false);
            } else if reconnect {
                // Pacemaker reconnects on its own: watch until both are back.
                w.watch(cut + RECONNECT_WITHIN, |l| km.up(l) && rf.up(l));
            } else {
                w.watch(cut + WATCH_STAYS_DOWN, |_| false);
            }
            let [o, r] = w.finish(!(reconnect && cut > MONITOR_TIMEOUT));
            summary.push(format!(
                "{label}: {:.0} s; kubemaker {o:?}; reference {r:?}",
                began.elapsed().as_secs_f64()
            ));
            assert_eq!(
                o, r,
                "{label}: Pacemaker recorded different outcomes for kubemaker-remoted (left) and the reference (right)"
            );
            for (side, outcome) in [(&km, &o), (&rf, &r)] {
                if let Err(e) = expected(side, cut, reconnect, outcome) {
                    panic!("{label}: not Pacemaker's documented outcome: {e}");
                }
            }
            // Back to the start: failures cleaned up, both online with their Dummies.
            cleanup_and_rejoin(&cluster, both, &label);
        }
    }
    drop(ours);
    drop(reference);
    cluster.reset();
    step(&format!(
        "done in {:.0} s:\n   {}",
        started.elapsed().as_secs_f64(),
        summary.join("\n   ")
    ));
}
