//! Executor rules, exercised with the project's own test agents (tests/agents) as real processes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::remoted::agents::{AgentPaths, AgentSpec};

#[derive(Default)]
struct Collect {
    seen: Mutex<Vec<(NotifyTarget, Element)>>,
}

impl NotifySink for Collect {
    fn notify(&self, target: NotifyTarget, msg: Element) {
        self.seen.lock().unwrap().push((target, msg));
    }
}

impl Collect {
    fn all(&self) -> Vec<Element> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Waits (bounded) for a notify matching `pred` among those not yet returned by earlier waits.
    async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Element) -> bool,
    ) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.all().into_iter().find(|m| pred(m)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; notifies: {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn count(&self, pred: impl Fn(&Element) -> bool) -> usize {
        self.all().iter().filter(|m| pred(m)).count()
    }
}

struct Fixture {
    ex: Executor,
    sink: Arc<Collect>,
    dir: PathBuf,
    next_call: std::cell::Cell<i64>,
}

fn agents_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/ocf")
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("km-exec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sink = Arc::new(Collect::default());
        let paths = AgentPaths {
            ocf_ra_path: vec![agents_dir()],
            lsb_dir: dir.join("init.d"),
            systemctl: dir.join("systemctl"),
            ..AgentPaths::default()
        };
        Fixture {
            ex: Executor::new(paths, sink.clone()),
            sink,
            dir,
            next_call: std::cell::Cell::new(100),
        }
    }

    fn register(&self, rsc: &str, agent: &str, call_opts: i64) {
        let spec = AgentSpec {
            class: "ocf".into(),
            provider: Some("kubemaker-test".into()),
            agent_type: agent.into(),
        };
        assert_eq!(self.ex.register(rsc, spec, call_opts), 0);
    }

    /// Control directory of one resource's scripted agent.
    fn rdir(&self, rsc: &str) -> PathBuf {
        let d = self.dir.join(rsc);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn set(&self, rsc: &str, file: &str, content: &str) {
        std::fs::write(self.rdir(rsc).join(file), content).unwrap();
    }

    fn exec(
        &self,
        rsc: &str,
        action: &str,
        interval_ms: u64,
        timeout_ms: u64,
        call_opts: i64,
    ) -> i64 {
        self.exec_with(rsc, action, interval_ms, timeout_ms, call_opts, 0, vec![])
    }

    #[allow(clippy::too_many_arguments)]
    fn exec_with(
        &self,
        rsc: &str,
        action: &str,
        interval_ms: u64,
        timeout_ms: u64,
        call_opts: i64,
        start_delay_ms: u64,
        extra: Vec<(&str, &str)>,
    ) -> i64 {
        let call_id = self.next_call.get() + 1;
        self.next_call.set(call_id);
        let mut attrs = Element::new("attributes")
            .with_attr("dir", self.rdir(rsc).display())
            .with_attr("CRM_meta_timeout", timeout_ms)
            .with_attr("crm_feature_set", "3.16.2");
        for (k, v) in extra {
            if k.starts_with(|c: char| c.is_ascii_digit()) {
                attrs.children.push(
                    Element::new("param")
                        .with_attr("name", k)
                        .with_attr("value", v),
                );
            } else {
                attrs.set_attr(k, v);
            }
        }
        self.ex.exec(ExecRequest {
            call_id,
            client_id: "c1".into(),
            rsc_id: rsc.into(),
            action: action.into(),
            interval_ms,
            timeout_ms,
            start_delay_ms,
            call_opts,
            userdata: Some(format!("{call_id}:5:0:transition")),
            params_xml: Some(attrs),
        })
    }

    fn log(&self, rsc: &str) -> Vec<(String, String, u128)> {
        std::fs::read_to_string(self.rdir(rsc).join("log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.to_string(),
                    f.get(2)?.parse().ok()?,
                ))
            })
            .collect()
    }
}

impl Fixture {
    async fn rc_of(&self, id: i64) -> Option<String> {
        self.sink
            .wait("op result", WAIT, |m| call(m) == id)
            .await
            .attr("lrmd_exec_rc")
            .map(str::to_string)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_exec(m: &Element, action: &str) -> bool {
    m.attr("lrmd_op") == Some("lrmd_rsc_exec") && m.attr("lrmd_rsc_action") == Some(action)
}
fn call(m: &Element) -> i64 {
    m.attr_i64("lrmd_callid").unwrap_or(-1)
}
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn exec_notify_echoes_request_and_reports_result() {
    let f = Fixture::new("echo");
    f.register("d1", "scripted", 0);
    let id = f.exec_with(
        "d1",
        "start",
        0,
        20_000,
        4,
        0,
        vec![("state", "a<b&\"c\""), ("1digit", "x")],
    );
    assert_eq!(id, 101, "reply rc is the call id");
    let n = f
        .sink
        .wait("start notify", WAIT, |m| is_exec(m, "start"))
        .await;
    assert_eq!(n.attr("lrmd_origin"), Some("send_cmd_complete_notify"));
    assert_eq!(call(&n), id);
    assert_eq!(n.attr("lrmd_exec_rc"), Some("0"));
    assert_eq!(n.attr("lrmd_exec_op_status"), Some("0"));
    assert_eq!(n.attr("lrmd_rsc_userdata_str"), Some("101:5:0:transition"));
    assert_eq!(n.attr("lrmd_timeout"), Some("20000"));
    assert_eq!(n.attr("lrmd_rsc_deleted"), Some("0"));
    assert!(n.attr_i64("lrmd_run_time").unwrap() > 1_700_000_000);
    let attrs = n.child("attributes").expect("parameters echoed");
    assert_eq!(attrs.attr("state"), Some("a<b&\"c\""));
    assert_eq!(
        attrs.children.len(),
        1,
        "digit-named parameters stay <param> children"
    );
    // The agent saw the parameters and the OCF environment.
    let env = std::fs::read_to_string(f.rdir("d1").join("start.env")).unwrap();
    for line in [
        "OCF_RESKEY_state=a<b&\"c\"",
        "OCF_RESKEY_1digit=x",
        "OCF_RESKEY_CRM_meta_timeout=20000",
        "OCF_RESKEY_crm_feature_set=3.16.2",
        "OCF_RESOURCE_INSTANCE=d1",
        "OCF_RESOURCE_TYPE=scripted",
        "OCF_RESOURCE_PROVIDER=kubemaker-test",
        "OCF_RA_VERSION_MAJOR=1",
        "OCF_ROOT=/usr/lib/ocf",
        "OCF_EXIT_REASON_PREFIX=ocf-exit-reason:",
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "missing {line} in agent env:\n{env}"
        );
    }
}

#[tokio::test]
async fn unknown_resource_and_not_installed_agent() {
    let f = Fixture::new("missing");
    assert_eq!(
        f.exec("nosuch", "monitor", 0, 1000, 0),
        i64::from(rc::ENODEV)
    );
    f.register("ghost", "does-not-exist", 0);
    let id = f.exec("ghost", "start", 0, 1000, 0);
    let n = f.sink.wait("not installed", WAIT, |m| call(m) == id).await;
    assert_eq!(n.attr("lrmd_exec_rc"), Some("5"));
    assert_eq!(n.attr("lrmd_exec_op_status"), Some("7"));
    assert_eq!(
        n.attr("lrmd_rsc_exit_reason"),
        Some("does-not-exist: No such file or directory")
    );
}

#[tokio::test]
async fn exit_reason_and_output() {
    let f = Fixture::new("reason");
    f.register("d1", "scripted", 0);
    f.set("d1", "start.rc", "6");
    f.set(
        "d1",
        "start.stderr",
        "noise\nocf-exit-reason:config file missing\n",
    );
    f.set("d1", "start.stdout", "ignored because stderr has text");
    let id = f.exec("d1", "start", 0, 5000, 0);
    let n = f.sink.wait("failed start", WAIT, |m| call(m) == id).await;
    assert_eq!(n.attr("lrmd_exec_rc"), Some("6"));
    assert_eq!(n.attr("lrmd_exec_op_status"), Some("0"));
    assert_eq!(n.attr("lrmd_rsc_exit_reason"), Some("config file missing"));
    assert_eq!(
        n.attr("lrmd_rsc_output"),
        Some("noise\nocf-exit-reason:config file missing\n")
    );
    // Exit codes outside the OCF range become generic errors.
    f.set("d1", "monitor.rc", "42");
    let id = f.exec("d1", "monitor", 0, 5000, 0);
    let n = f.sink.wait("odd exit", WAIT, |m| call(m) == id).await;
    assert_eq!(n.attr("lrmd_exec_rc"), Some("1"));
}

/// An agent's most output (10 MiB) of characters that escape to four bytes each must still make
/// a notify the cluster accepts (20 MiB cap): the output is cut where its escaped form fits.
#[tokio::test]
async fn output_that_escapes_beyond_the_cap_is_cut_to_fit() {
    use super::notify::OUTPUT_ESCAPED_BUDGET;
    use crate::remoted::agents::OUTPUT_LIMIT;
    use crate::wire::frame::{DEFAULT_MAX_MESSAGE, encode};
    let f = Fixture::new("bigout");
    f.register("d1", "scripted", 0);
    f.set("d1", "monitor.stdout", &"<".repeat(OUTPUT_LIMIT));
    let id = f.exec("d1", "monitor", 0, 20_000, 0);
    let n = f
        .sink
        .wait("monitor with big output", WAIT, |m| call(m) == id)
        .await;
    let out = n.attr("lrmd_rsc_output").unwrap_or_default();
    assert_eq!(out.len(), OUTPUT_ESCAPED_BUDGET / "&lt;".len());
    assert!(out.bytes().all(|b| b == b'<'));
    let encoded = encode(1, &n);
    assert!(
        encoded.header.len() + encoded.payload.len() <= DEFAULT_MAX_MESSAGE as usize,
        "{} bytes",
        encoded.payload.len()
    );
}

#[tokio::test]
async fn one_op_at_a_time_per_resource_resources_in_parallel() {
    let f = Fixture::new("serial");
    for r in ["a", "b"] {
        f.register(r, "scripted", 0);
        f.set(r, "start.sleep", "0.4");
        f.set(r, "monitor.sleep", "0.4");
    }
    let t0 = Instant::now();
    let ids = [
        f.exec("a", "start", 0, 5000, 0),
        f.exec("a", "monitor", 0, 5000, 0),
        f.exec("b", "start", 0, 5000, 0),
    ];
    for id in ids {
        f.sink.wait("all three", WAIT, |m| call(m) == id).await;
    }
    let log = f.log("a");
    let order: Vec<String> = log.iter().map(|(a, e, _)| format!("{a} {e}")).collect();
    assert_eq!(
        order,
        ["start begin", "start end", "monitor begin", "monitor end"],
        "FIFO per resource"
    );
    let b_begin = f.log("b")[0].2;
    assert!(b_begin < log[1].2, "resource b ran while a was busy");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn start_delay_is_honoured() {
    let f = Fixture::new("delay");
    f.register("d1", "scripted", 0);
    let t0 = Instant::now();
    let id = f.exec_with("d1", "start", 0, 5000, 0, 400, vec![]);
    let n = f.sink.wait("delayed start", WAIT, |m| call(m) == id).await;
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert_eq!(n.attr("lrmd_rsc_start_delay"), Some("400"));
}

#[tokio::test]
async fn recurring_notifies_changes_only() {
    let f = Fixture::new("recurring");
    f.register("d1", "scripted", 0);
    let id = f.exec("d1", "monitor", 100, 5000, callopt::NOTIFY_CHANGES_ONLY);
    f.sink.wait("first monitor", WAIT, |m| call(m) == id).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let runs = f.log("d1").iter().filter(|(_, e, _)| e == "end").count();
    assert!(runs >= 4, "monitor re-ran every 100 ms ({runs} runs)");
    assert_eq!(
        f.sink.count(|m| call(m) == id),
        1,
        "unchanged results are not notified"
    );
    f.set("d1", "monitor.rc", "7");
    let n = f
        .sink
        .wait("changed result", WAIT, |m| {
            call(m) == id && m.attr("lrmd_exec_rc") == Some("7")
        })
        .await;
    assert!(
        n.attr_i64("lrmd_rcchange_time").unwrap() > 0,
        "rc change time set"
    );
    let recurring = f.ex.recurring(Some("d1")).unwrap();
    assert_eq!(
        recurring[0].1,
        vec![RecurringOp {
            action: "monitor".into(),
            interval_ms: 100,
            timeout_ms: 5000
        }]
    );
}

#[tokio::test]
async fn recurring_without_changes_only_notifies_every_run() {
    let f = Fixture::new("every");
    f.register("d1", "scripted", 0);
    let id = f.exec("d1", "monitor", 100, 5000, 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(f.sink.count(|m| call(m) == id) >= 3);
}

#[tokio::test]
async fn duplicate_recurring_is_merged_and_runs_now() {
    let f = Fixture::new("merge");
    f.register("d1", "scripted", 0);
    let first = f.exec("d1", "monitor", 60_000, 5000, callopt::NOTIFY_CHANGES_ONLY);
    f.sink.wait("first", WAIT, |m| call(m) == first).await;
    let second = f.exec("d1", "monitor", 60_000, 5000, callopt::NOTIFY_CHANGES_ONLY);
    assert_ne!(first, second);
    let n = f
        .sink
        .wait(
            "merged op runs at once under the new call id",
            Duration::from_secs(5),
            |m| call(m) == second,
        )
        .await;
    assert_eq!(
        n.attr("lrmd_rsc_userdata_str").map(str::to_string),
        Some(format!("{second}:5:0:transition"))
    );
    assert_eq!(
        f.ex.recurring(Some("d1")).unwrap()[0].1.len(),
        1,
        "still one recurring op"
    );
}

#[tokio::test]
async fn stop_cancels_recurring_ops_first() {
    let f = Fixture::new("stop");
    f.register("d1", "scripted", 0);
    let mon = f.exec("d1", "monitor", 60_000, 5000, callopt::NOTIFY_CHANGES_ONLY);
    f.sink.wait("monitor", WAIT, |m| call(m) == mon).await;
    let stop = f.exec("d1", "stop", 0, 5000, 0);
    let all_before_stop = f.sink.all();
    let cancelled = all_before_stop
        .iter()
        .find(|m| call(m) == mon && m.attr("lrmd_exec_op_status") == Some("1"))
        .expect("Cancelled notify sent before the stop is even queued");
    assert_eq!(cancelled.attr("lrmd_run_time"), Some("0"));
    f.sink.wait("stop", WAIT, |m| call(m) == stop).await;
    assert!(f.ex.recurring(Some("d1")).unwrap().is_empty());
}

#[tokio::test]
async fn timeout_kills_the_process_group() {
    let f = Fixture::new("timeout");
    f.register("d1", "scripted", 0);
    f.set("d1", "start.sleep", "30");
    f.set("d1", "start.spawn", "");
    let t0 = Instant::now();
    let id = f.exec("d1", "start", 0, 500, 0);
    let n = f.sink.wait("timeout", WAIT, |m| call(m) == id).await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(n.attr("lrmd_exec_op_status"), Some("2"));
    assert_eq!(n.attr("lrmd_exec_rc"), Some("1"));
    assert_eq!(
        n.attr("lrmd_rsc_exit_reason"),
        Some("Resource agent did not complete within 500ms")
    );
    let child: i32 = std::fs::read_to_string(f.rdir("d1").join("start.child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(child) {
        assert!(
            Instant::now() < deadline,
            "agent's child {child} survived the timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_executable(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn process_alive(pid: i32) -> bool {
    // A zombie has been killed already; only count live processes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or_default()
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn cancel_rules() {
    let f = Fixture::new("cancel");
    f.register("d1", "scripted", 0);
    assert_eq!(f.ex.cancel("nosuch", "monitor", 1000), rc::ENODEV);
    assert_eq!(f.ex.cancel("d1", "monitor", 1000), rc::EOPNOTSUPP);
    let mon = f.exec("d1", "monitor", 60_000, 5000, callopt::NOTIFY_CHANGES_ONLY);
    f.sink.wait("monitor", WAIT, |m| call(m) == mon).await;
    assert_eq!(f.ex.cancel("d1", "monitor", 60_000), 0);
    let n = f
        .sink
        .wait("cancelled", WAIT, |m| {
            call(m) == mon && m.attr("lrmd_exec_op_status") == Some("1")
        })
        .await;
    assert_eq!(n.attr("lrmd_exec_time"), Some("0"));
    assert!(f.ex.recurring(None).unwrap().is_empty());
    // A running op is killed and reported Cancelled.
    f.set("d1", "monitor.sleep", "30");
    let slow = f.exec("d1", "monitor", 50_000, 60_000, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.ex.cancel("d1", "monitor", 50_000), 0);
    f.sink
        .wait("running op cancelled", WAIT, |m| {
            call(m) == slow && m.attr("lrmd_exec_op_status") == Some("1")
        })
        .await;
}

#[tokio::test]
async fn unregister_while_busy() {
    let f = Fixture::new("unreg");
    f.register("d1", "scripted", 0);
    f.set("d1", "start.sleep", "0.5");
    let running = f.exec("d1", "start", 0, 5000, 0);
    let queued = f.exec("d1", "monitor", 0, 5000, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f.ex.unregister("d1"), rc::EINPROGRESS);
    assert!(f.ex.info("d1").is_none(), "removed anyway");
    let q = f
        .sink
        .wait("queued op cancelled", WAIT, |m| call(m) == queued)
        .await;
    assert_eq!(
        (q.attr("lrmd_exec_op_status"), q.attr("lrmd_rsc_deleted")),
        (Some("1"), Some("1"))
    );
    let r = f
        .sink
        .wait("running op finishes as deleted", WAIT, |m| {
            call(m) == running
        })
        .await;
    assert_eq!(r.attr("lrmd_rsc_deleted"), Some("1"));
    assert_eq!(
        f.ex.unregister("d1"),
        0,
        "unregistering an unknown resource is fine"
    );
}

#[tokio::test]
async fn drop_recurring_when_last_client_goes() {
    let f = Fixture::new("drop");
    f.register("drop", "scripted", callopt::DROP_RECURRING);
    f.register("keep", "scripted", 0);
    let a = f.exec(
        "drop",
        "monitor",
        60_000,
        5000,
        callopt::NOTIFY_CHANGES_ONLY,
    );
    let b = f.exec(
        "keep",
        "monitor",
        60_000,
        5000,
        callopt::NOTIFY_CHANGES_ONLY,
    );
    for id in [a, b] {
        f.sink.wait("monitors", WAIT, |m| call(m) == id).await;
    }
    f.ex.last_client_gone();
    let left: Vec<String> =
        f.ex.recurring(None)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    assert_eq!(left, ["keep"]);
}

#[tokio::test]
async fn notify_orig_only_targets_the_caller() {
    let f = Fixture::new("orig");
    f.register("d1", "scripted", 0);
    let id = f.exec("d1", "start", 0, 5000, callopt::NOTIFY_ORIG_ONLY);
    f.sink.wait("start", WAIT, |m| call(m) == id).await;
    let target = f
        .sink
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|(_, m)| call(m) == id)
        .map(|(t, _)| t.clone());
    assert_eq!(target, Some(NotifyTarget::Client("c1".into())));
}

#[tokio::test]
async fn lsb_and_systemd_classes() {
    let f = Fixture::new("classes");
    let state = f.dir.join("svc-state");
    std::fs::create_dir_all(f.dir.join("init.d")).unwrap();
    let script = f.dir.join("init.d/km-svc");
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\ncase \"$1\" in\n start) touch {s};;\n stop) rm -f {s};;\n status) [ -f {s} ] && exit 0; exit 3;;\n *) exit 3;;\nesac\n",
            s = state.display()
        ),
    );
    let spec = |class: &str, t: &str| AgentSpec {
        class: class.into(),
        provider: None,
        agent_type: t.into(),
    };
    assert_eq!(f.ex.register("svc", spec("lsb", "km-svc"), 0), 0);
    let run = |action: &str| f.exec("svc", action, 0, 5000, 0);
    assert_eq!(
        f.rc_of(run("monitor")).await.as_deref(),
        Some("7"),
        "status 3 maps to not running"
    );
    assert_eq!(f.rc_of(run("start")).await.as_deref(), Some("0"));
    let id = run("monitor");
    let n = f.sink.wait("monitor", WAIT, |m| call(m) == id).await;
    assert_eq!(n.attr("lrmd_exec_rc"), Some("0"));
    assert_eq!(
        n.attr("lrmd_rsc_action"),
        Some("monitor"),
        "reported under the requested name"
    );

    // "service" resolves to lsb when an init script exists.
    assert_eq!(f.ex.register("svc2", spec("service", "km-svc"), 0), 0);
    let id = f.exec("svc2", "monitor", 0, 5000, 0);
    assert_eq!(
        f.sink
            .wait("service", WAIT, |m| call(m) == id)
            .await
            .attr("lrmd_exec_rc"),
        Some("0")
    );

    // systemd through a stand-in systemctl that keeps unit state in files.
    let units = f.dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("web.service"), "inactive").unwrap();
    let fake = f.dir.join("systemctl");
    write_executable(
        &fake,
        &format!(
            "#!/bin/sh\nu={u}\ncase \"$1\" in\n show) unit=\"$6\"; if [ -f \"$u/$unit\" ]; then echo LoadState=loaded; echo ActiveState=$(cat \"$u/$unit\"); else echo LoadState=not-found; echo ActiveState=inactive; fi;;\n start) echo active > \"$u/$3\";;\n stop) echo inactive > \"$u/$3\";;\n *) exit 1;;\nesac\n",
            u = units.display()
        ),
    );
    assert_eq!(f.ex.register("web", spec("systemd", "web"), 0), 0);
    let run = |action: &str| f.exec("web", action, 0, 5000, 0);
    assert_eq!(f.rc_of(run("monitor")).await.as_deref(), Some("7"));
    assert_eq!(f.rc_of(run("start")).await.as_deref(), Some("0"));
    assert_eq!(
        std::fs::read_to_string(units.join("web.service"))
            .unwrap()
            .trim(),
        "active"
    );
    assert_eq!(f.rc_of(run("monitor")).await.as_deref(), Some("0"));
    assert_eq!(f.rc_of(run("stop")).await.as_deref(), Some("0"));
    assert_eq!(f.ex.register("nounit", spec("systemd", "absent"), 0), 0);
    let id = f.exec("nounit", "start", 0, 5000, 0);
    assert_eq!(
        f.sink
            .wait("missing unit", WAIT, |m| call(m) == id)
            .await
            .attr("lrmd_exec_rc"),
        Some("5")
    );
}
