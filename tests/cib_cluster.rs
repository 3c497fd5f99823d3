//! The CIB layer against the real one-node Pacemaker test cluster (2.1.5, or the 3.0.x that
//! KUBEMAKER_PACEMAKER names: tests/support/generation.rs), through its remote CIB port: login (TLS and plaintext), queries, errors, versioned writes with conflict retry,
//! batching, notifications, a remote node that really comes online, the validator on real
//! misconfigurations, and removal without a trace.

mod support;

use std::time::{Duration, Instant};

use kubemaker::cib::client::{CibClient, CibError, Query, Secret, Transport, WatchEvent};
use kubemaker::cib::live_checks;
use kubemaker::cib::model::Cib;
use kubemaker::cib::plan;
use kubemaker::cib::service::removal;
use kubemaker::cib::spec::{GuestSpec, NodeType, RemoteNodeSpec};
use kubemaker::cib::status::{NodeState, read_status};
use kubemaker::cib::validate::Problem;
use kubemaker::cib::{ApplyOptions, CibService, DesiredNode, InvalidNodes, RemovalOptions};
use kubemaker::wire::Element;
use support::cib_port::{self, RemoteCib};
use support::{Cluster, NetnsHost, RemoteHost, kubemaker, step};

const TOOLS: &[&str] = &[
    "crm_mon",
    "cibadmin",
    "crm_resource",
    "crm_node",
    "ip",
    "corosync",
    "pacemakerd",
    "chpasswd",
];

/// The test cluster, its remote CIB port open; None (a skip, outside CI) when the machine lacks
/// the tools or root.
fn cluster_with_cib_port() -> Option<(Cluster, RemoteCib)> {
    if !support::require_tools(TOOLS) || !support::require_root() {
        return None;
    }
    let cluster = Cluster::acquire();
    let remote = cib_port::enable_remote_cib(&cluster);
    Some((cluster, remote))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Tells the harness a remote connection exists (its key-cache bookkeeping watches cibadmin
/// arguments for "remote-node").
fn note_remote_connection(cluster: &Cluster) {
    let _ = cluster.cibadmin(&["--query", "--xpath", "//nvpair[@name='remote-node']"]);
}

fn no_trace(cib_xml: &str, name: &str) -> bool {
    !cib_xml.contains(&format!("\"{name}\"")) && !cib_xml.contains(&format!("'{name}'"))
}

/// Waits (30 s at most) until `cibadmin -Q` mentions none of `names`; Pacemaker cleans up the
/// orphaned history of a removed connection itself, a little later. On 3.x the one trace allowed
/// is the empty `<node_state>` its DC writes back, which the admin's `crm_node --force --remove`
/// must then clear ([`Cluster::clear_removed_remote_states`]).
async fn wait_no_trace(cluster: &Cluster, names: &[&str]) {
    let allow_bare = !cluster.generation().is_host();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let xml = cluster.cib_xml();
        let mut cib = Element::parse(&xml).expect("cibadmin -Q prints XML");
        if allow_bare {
            let bare: Vec<&str> = names
                .iter()
                .filter(|n| support::cluster::bare_remote_state(&cib, n))
                .copied()
                .collect();
            if let Some(status) = cib.child_mut("status") {
                status.children.retain(|c| {
                    !(c.name == "node_state" && bare.contains(&c.attr("id").unwrap_or("")))
                });
            }
        }
        let rest = cib.to_xml();
        if names.iter().all(|name| no_trace(&rest, name)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{names:?} left a trace in cibadmin -Q:\n{xml}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.clear_removed_remote_states(names);
    let xml = cluster.cib_xml();
    assert!(
        names.iter().all(|name| no_trace(&xml, name)),
        "{names:?} left a trace in cibadmin -Q:\n{xml}"
    );
}

#[test]
fn login_queries_and_clear_errors() {
    let Some((cluster, remote)) = cluster_with_cib_port() else {
        return;
    };
    let node1 = cluster.node1().to_string();
    let rt = runtime();
    rt.block_on(async {
        for transport in [Transport::Tls, Transport::Plain] {
            step(&format!("login and queries over {transport:?}"));
            let client = CibClient::connect(remote.config(transport)).await.expect("login");
            let cib = client.query_cib().await.unwrap();
            assert_eq!(cib.name, "cib");
            assert!(cib.child("status").is_some());
            let v = client.version().await.unwrap();
            assert_eq!(v, Cib::new(&cib).version().max(v), "version only moves forward");
            let nodes = client.query(&Query::Section("nodes".into())).await.unwrap();
            assert_eq!(nodes.name, "nodes");
            let node = client
                .query(&Query::XPath(format!("//nodes/node[@uname='{node1}']")))
                .await
                .unwrap();
            assert_eq!(node.attr("uname"), Some(node1.as_str()));
            let missing = client.query(&Query::XPath("//primitive[@id='nope']".into())).await;
            assert!(matches!(missing, Err(CibError::Rejected { rc: -6, .. })), "{missing:?}");
            client.close().await;
        }

        step("an unknown operation gets no reply: the request times out");
        let mut cfg = remote.config(Transport::Tls);
        cfg.request_timeout = Duration::from_secs(2);
        let client = CibClient::connect(cfg).await.unwrap();
        let t0 = Instant::now();
        let e = client.request_raw("cib_noop", None, 0, None).await.unwrap_err();
        assert!(matches!(e, CibError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        // The client reconnects for the next request.
        client.version().await.expect("usable after a timeout");

        step("wrong password");
        let mut cfg = remote.config(Transport::Tls);
        cfg.password = Secret::new("definitely-wrong");
        let e = CibClient::connect(cfg).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, CibError::LoginRefused { .. }), "{text}");
        assert_eq!(
            text,
            format!(
                "login refused for user hacluster by {}:5989 (wrong password, or user not in haclient)",
                remote.host
            )
        );
        assert!(!text.contains("definitely-wrong"));

        step("unreachable endpoints are all named");
        let dead = NetnsHost::create("cib-dead");
        let mut cfg = remote.config(Transport::Tls);
        cfg.endpoints = kubemaker::cib::client::parse_endpoints(&format!("127.0.0.1:1,{}:5989", dead.addr()), "5989").unwrap();
        cfg.connect_timeout = Duration::from_secs(1);
        cfg.retry.connect_rounds = 2;
        let t0 = Instant::now();
        let e = CibClient::connect(cfg).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, CibError::Unreachable { .. }), "{text}");
        assert!(text.contains("127.0.0.1:1: Connection refused"), "{text}");
        assert!(text.contains(&format!("{}:5989", dead.addr())), "{text}");
        assert!(t0.elapsed() < Duration::from_secs(15));

        step("failover: a dead endpoint first, then the cluster");
        let mut cfg = remote.config(Transport::Plain);
        cfg.endpoints = kubemaker::cib::client::parse_endpoints(&format!("127.0.0.1:1,{}:1,{}:5990", dead.addr(), remote.host), "5990").unwrap();
        cfg.connect_timeout = Duration::from_secs(1);
        let client = CibClient::connect(cfg).await.expect("failover to the live endpoint");
        client.version().await.unwrap();
    });
}

#[test]
fn remote_node_lifecycle_with_watch_and_removal() {
    let Some((cluster, remote)) = cluster_with_cib_port() else {
        return;
    };
    let key = support::current_cluster_authkey();
    let host = RemoteHost::start_in_netns("cib-rn1", &key);
    let rt = runtime();
    rt.block_on(async {
        let client = CibClient::connect(remote.config(Transport::Tls))
            .await
            .unwrap();
        let mut watch = client.watch().await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
            Ok(Some(WatchEvent::Resync { .. })) => {}
            other => panic!("first watch event should be a resync, got {other:?}"),
        }

        step("create the remote node through the client");
        let mut spec = support::remote_node_spec(&host.addr());
        spec.attributes.insert("rack".into(), "r1".into());
        let d = DesiredNode::from_spec("cib-rn1", &spec).unwrap();
        let before = client.version().await.unwrap();
        let t_write = Instant::now();
        let report = CibService::new(&client)
            .apply_nodes(
                std::slice::from_ref(&d),
                &ApplyOptions::default(),
                InvalidNodes::RefuseAll,
            )
            .await
            .unwrap();
        assert_eq!(report.transactions, 1);
        note_remote_connection(&cluster);

        step("the change notification arrives within 1 s");
        let deadline = t_write + Duration::from_secs(1);
        let mut seen = false;
        while Instant::now() < deadline && !seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(Some(WatchEvent::Diff(diff))) = tokio::time::timeout(left, watch.next()).await
                && diff.touches_configuration()
                && diff
                    .changes
                    .iter()
                    .any(|(_, p)| p == "/cib/configuration/resources")
            {
                assert!(diff.target > before);
                seen = true;
            }
        }
        assert!(seen, "no configuration diff within 1 s of the write");

        step("planning again writes nothing");
        let again = CibService::new(&client)
            .apply_nodes(
                std::slice::from_ref(&d),
                &ApplyOptions::default(),
                InvalidNodes::RefuseAll,
            )
            .await
            .unwrap();
        assert_eq!(again.transactions, 0);

        step("the node comes online (crm_mon) and the status reader agrees");
        cluster.wait_until("cib-rn1 online", Duration::from_secs(90), |v| {
            v.remote_node_up("cib-rn1")
        });
        let cib = client.query_cib().await.unwrap();
        let st = read_status(&cib);
        let n = st
            .iter()
            .find(|n| n.name == "cib-rn1")
            .expect("status of cib-rn1");
        assert_eq!(n.state, NodeState::Online, "{n:?}");
        assert_eq!(n.host.as_deref(), Some(cluster.node1()));
        let attr = cluster.run_ok(
            "crm_attribute",
            &["-N", "cib-rn1", "-n", "rack", "-G", "-q"],
        );
        assert_eq!(String::from_utf8_lossy(&attr.stdout).trim(), "r1");

        step("standby through the spec");
        spec.standby = true;
        let d2 = DesiredNode::from_spec("cib-rn1", &spec).unwrap();
        CibService::new(&client)
            .apply_nodes(
                std::slice::from_ref(&d2),
                &ApplyOptions::default(),
                InvalidNodes::RefuseAll,
            )
            .await
            .unwrap();
        cluster.wait_until("cib-rn1 in standby", Duration::from_secs(30), |v| {
            v.node("cib-rn1").is_some_and(|n| n.online && n.standby)
        });

        step("removal: stop, wait, delete, purge");
        let report = removal::remove_node(&client, "cib-rn1", &RemovalOptions::default())
            .await
            .unwrap();
        assert!(report.stopped);
        assert_eq!(report.resource.as_deref(), Some("cib-rn1"));
        cluster.wait_until("cib-rn1 gone from crm_mon", Duration::from_secs(30), |v| {
            v.node("cib-rn1").is_none()
        });
        // The connection's history on node1 is an orphan now; Pacemaker cleans it up itself.
        wait_no_trace(&cluster, &["cib-rn1"]).await;
        // For the record: how often the diff chain broke during all this.
        let (mut diffs, mut gaps) = (0, 0);
        while let Ok(ev) = watch.receiver().try_recv() {
            match ev {
                WatchEvent::Diff(_) => diffs += 1,
                WatchEvent::Resync { reason } => {
                    gaps += 1;
                    step(&format!("resync: {reason}"));
                }
                WatchEvent::Lost { error } => panic!("watch lost: {error}"),
            }
        }
        step(&format!("watch saw {diffs} more diffs and {gaps} gaps"));
        drop(watch);
        client.close().await;
    });
    drop(host);
}

#[test]
fn concurrent_change_is_detected_and_retried() {
    let Some((cluster, remote)) = cluster_with_cib_port() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let client = CibClient::connect(remote.config(Transport::Plain)).await.unwrap();
        let mut spec = support::remote_node_spec("10.250.200.2");
        spec.reconnect_interval = None;
        let d = DesiredNode::from_spec("cib-cc1", &spec).unwrap();
        let mut calls = 0;
        let report = CibService::new(&client)
            .write_with_retry(
                |live| {
                    calls += 1;
                    if calls == 1 {
                        // Someone else writes between our read and our write.
                        let out = cluster.cibadmin(&[
                            "--create",
                            "-o",
                            "resources",
                            "--xml-text",
                            r#"<primitive id="cib-cc-other" class="ocf" provider="pacemaker" type="Dummy"><meta_attributes id="cib-cc-other-meta_attributes"><nvpair id="cib-cc-other-meta_attributes-target-role" name="target-role" value="Stopped"/></meta_attributes></primitive>"#,
                        ]);
                        assert!(out.status.success());
                    }
                    let mut d = d.clone();
                    // Stopped, so nothing tries to reach the made-up address.
                    d.primitive.meta_attributes.push("target-role", "Stopped");
                    Ok(plan::plan(&[d], live))
                },
                false,
            )
            .await
            .unwrap();
        assert_eq!(calls, 2, "one conflict, one re-plan");
        assert_eq!(report.conflicts, 1);
        assert_eq!(report.transactions, 1);
        let xml = cluster.cib_xml();
        assert!(xml.contains(r#"id="cib-cc-other""#), "the concurrent change survived");
        assert!(xml.contains(r#"id="cib-cc1""#), "our change landed");
    });
}

#[test]
fn batched_writes_use_one_transaction() {
    let Some((cluster, remote)) = cluster_with_cib_port() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let client = CibClient::connect(remote.config(Transport::Tls))
            .await
            .unwrap();
        let nodes: Vec<DesiredNode> = (0..30)
            .map(|i| {
                let mut d = DesiredNode::from_spec(
                    &format!("cib-b{i}"),
                    &support::remote_node_spec(&format!("10.250.201.{}", i + 2)),
                )
                .unwrap();
                d.primitive.meta_attributes.push("target-role", "Stopped");
                d
            })
            .collect();
        let before = client.version().await.unwrap();
        let r = CibService::new(&client)
            .apply_nodes(
                &nodes,
                &ApplyOptions {
                    batch_size: 10,
                    dry_run: false,
                },
                InvalidNodes::RefuseAll,
            )
            .await
            .unwrap();
        assert_eq!(r.transactions, 3, "{r:?}");
        let after = client.version().await.unwrap();
        assert_eq!(after.epoch, before.epoch + 3, "one epoch per batch");
        assert!(
            CibService::new(&client)
                .apply_nodes(&nodes, &ApplyOptions::default(), InvalidNodes::RefuseAll)
                .await
                .unwrap()
                .transactions
                == 0
        );
        step("cib_dryrun: the server validates without committing");
        let dry = DesiredNode::from_spec("cib-dry", &support::remote_node_spec("10.250.201.200"))
            .unwrap();
        let r = CibService::new(&client)
            .apply_nodes(
                &[dry],
                &ApplyOptions {
                    batch_size: 10,
                    dry_run: true,
                },
                InvalidNodes::RefuseAll,
            )
            .await
            .unwrap();
        assert_eq!(r.transactions, 0);
        assert!(!cluster.cib_xml().contains("cib-dry"));
        // A patch the schema refuses is reported, not committed. The patch names the version it
        // was planned against; a status update in between makes the server answer -205 first
        // (what the service's retry handles), so this raw apply re-reads, a few times at most.
        let mut bad =
            DesiredNode::from_spec("cib-bad", &support::remote_node_spec("10.250.201.201"))
                .unwrap();
        bad.primitive.operations[0].name = String::new();
        bad.primitive.agent.class = "no such class".into();
        let mut refused = None;
        for _ in 0..5 {
            let live = client.query_cib().await.unwrap();
            let p = plan::plan(std::slice::from_ref(&bad), &live);
            match client
                .apply_patch(&p.to_patch(Cib::new(&live).version()), true)
                .await
            {
                Err(CibError::Rejected { rc: -205, .. }) => continue,
                other => {
                    refused = Some(other.unwrap_err());
                    break;
                }
            }
        }
        let e = refused.expect("the CIB kept moving for five attempts");
        assert!(matches!(e, CibError::Rejected { rc: -203, .. }), "{e}");
        client.close().await;
        cluster.reset();
    });
}

/// Each validator rule, triggered by a real misconfiguration made with cibadmin.
#[test]
fn validator_catches_real_misconfigurations() {
    let Some((cluster, remote)) = cluster_with_cib_port() else {
        return;
    };
    let stopped = |id: &str| {
        format!(
            r#"<meta_attributes id="{id}-meta_attributes"><nvpair id="{id}-meta_attributes-target-role" name="target-role" value="Stopped"/></meta_attributes>"#
        )
    };
    let remote_xml = |id: &str, addr: &str| {
        format!(
            r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="remote"><instance_attributes id="{id}-instance_attributes"><nvpair id="{id}-instance_attributes-server" name="server" value="{addr}"/></instance_attributes>{}</primitive>"#,
            stopped(id)
        )
    };
    let dummy = |id: &str| {
        format!(
            r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
            stopped(id)
        )
    };
    // A guest (stopped) named v-guest on address 10.250.202.9.
    cluster.create_resource_xml(
        r#"<primitive id="v-vm" class="ocf" provider="pacemaker" type="Dummy"><meta_attributes id="v-vm-meta_attributes"><nvpair id="v-vm-meta_attributes-remote-node" name="remote-node" value="v-guest"/><nvpair id="v-vm-meta_attributes-remote-addr" name="remote-addr" value="10.250.202.9"/><nvpair id="v-vm-meta_attributes-target-role" name="target-role" value="Stopped"/></meta_attributes></primitive>"#,
    );
    note_remote_connection(&cluster);
    cluster.create_resource_xml(&dummy("v-app"));
    cluster.create_resource_xml(&format!(
        r#"<group id="v-grp">{}</group>"#,
        remote_xml("v-ingroup", "10.250.202.3")
    ));
    cluster.create_resource_xml(&format!(
        r#"<clone id="v-cln">{}</clone>"#,
        remote_xml("v-inclone", "10.250.202.4")
    ));
    cluster.create_resource_xml(&remote_xml("v-pinned", "10.250.202.5"));
    cluster.create_resource_xml(&remote_xml("v-coloc", "10.250.202.6"));
    cluster.create_constraint_xml(
        r#"<rsc_location id="v-loc" rsc="v-pinned" node="v-guest" score="INFINITY"/>"#,
    );
    cluster.create_constraint_xml(
        r#"<rsc_colocation id="v-col" rsc="v-coloc" with-rsc="v-app" score="INFINITY"/>"#,
    );

    let rt = runtime();
    let live = rt.block_on(async {
        let client = CibClient::connect(remote.config(Transport::Tls))
            .await
            .unwrap();
        client.query_cib().await.unwrap()
    });
    let check = |name: &str, spec: RemoteNodeSpec| -> Vec<Problem> {
        let d = DesiredNode::from_spec(name, &spec).unwrap();
        live_checks::check_against_cib(&[d], &live)
    };
    let guest = |rid: &str| RemoteNodeSpec {
        node_type: NodeType::Guest,
        address: Some("10.250.202.77".into()),
        guest: Some(GuestSpec {
            resource_id: Some(rid.into()),
            agent: Some("ocf:pacemaker:Dummy".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    type Kind = fn(&Problem) -> bool;
    let name_clash: Kind = |p| matches!(p, Problem::NameClash { .. });
    let resource_id_taken: Kind = |p| matches!(p, Problem::ResourceIdTaken { .. });
    let nested: Kind = |p| matches!(p, Problem::Nested { .. });
    let constraint: Kind = |p| matches!(p, Problem::Constraint { .. });
    let address_clash: Kind = |p| matches!(p, Problem::AddressClash { .. });
    // (rule, node name, its spec, the problem expected, text the problem must mention)
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, RemoteNodeSpec, Kind, &str)> = vec![
        ("name clashes, case-insensitive", "V-APP", support::remote_node_spec("10.250.202.20"), name_clash,
            "resource \"v-app\" (ocf:pacemaker:Dummy)"),
        ("name clashes, case-insensitive", "NODE1", support::remote_node_spec("10.250.202.21"), name_clash,
            "cluster node \"node1\""),
        ("name clashes, case-insensitive", "v-Guest", support::remote_node_spec("10.250.202.22"), name_clash,
            "guest node \"v-guest\" defined by resource \"v-vm\""),
        ("name clashes, case-insensitive", "v-ingroup", guest("v-ingroup-vm"), name_clash,
            "existing remote node"),
        ("guest resource id taken", "v-new", guest("v-app"), resource_id_taken,
            "already used by resource \"v-app\""),
        ("connections in groups and clones", "v-ingroup", support::remote_node_spec("10.250.202.3"), nested,
            "inside group \"v-grp\""),
        ("connections in groups and clones", "v-inclone", support::remote_node_spec("10.250.202.4"), nested,
            "inside clone \"v-cln\""),
        ("constraints on connections", "v-pinned", support::remote_node_spec("10.250.202.5"), constraint,
            "never on a remote or guest node"),
        ("constraints on connections", "v-coloc", support::remote_node_spec("10.250.202.6"), constraint,
            "constraint \"v-col\""),
        ("address clashes", "v-new2", support::remote_node_spec("10.250.202.9"), address_clash,
            "guest node \"v-guest\""),
        ("address clashes", "v-new3", support::remote_node_spec("10.250.202.5"), address_clash,
            "remote node \"v-pinned\""),
    ];
    let mut rule_shown = "";
    for (rule, name, spec, kind, needle) in cases {
        if rule != rule_shown {
            step(rule);
            rule_shown = rule;
        }
        let problems = check(name, spec);
        assert!(
            problems
                .iter()
                .any(|p| kind(p) && p.to_string().contains(needle)),
            "{rule}: {name}: expected a problem mentioning {needle:?}, got {problems:#?}"
        );
    }
    step("a guest named like its own resource");
    let e = DesiredNode::from_spec("v-same", &guest("v-same")).unwrap_err();
    assert!(
        e.iter()
            .any(|p| matches!(p, Problem::GuestNameIsResourceId { .. })),
        "{e:?}"
    );
    step("names, values, ports and durations Pacemaker would not take");
    let bad = RemoteNodeSpec {
        port: Some(0),
        start_timeout: Some("forever".into()),
        attributes: [("score".to_string(), "score++".to_string())].into(),
        ..support::remote_node_spec("10.250.202.30")
    };
    let e = DesiredNode::from_spec("bad name", &bad).unwrap_err();
    let text: Vec<String> = e.iter().map(ToString::to_string).collect();
    for needle in [
        "not a name Pacemaker accepts",
        "between 1 and 65535",
        "\"forever\", which is not a duration",
        "score arithmetic",
    ] {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "expected {needle:?} in {text:#?}"
        );
    }
    // And the server itself refuses such a name (what the validator saves us from).
    let bad_id = r#"<primitive id="bad name" class="ocf" provider="pacemaker" type="Dummy"/>"#;
    assert!(
        !cluster
            .cibadmin(&["--create", "-o", "resources", "--xml-text", bad_id])
            .status
            .success()
    );

    step("a clean spec passes");
    assert_eq!(
        check("v-fine", support::remote_node_spec("10.250.202.40")),
        vec![]
    );
    cluster.reset();
}

/// The CLI, end to end: render (no cluster) and status/apply/remove through the remote port.
#[test]
fn cli_status_apply_remove() {
    let Some((cluster, remote)) = cluster_with_cib_port() else {
        return;
    };
    let dir = std::env::temp_dir().join("km-cib-cli");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("n.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: kubemaker.io/v1alpha1\nkind: RemoteNode\nmetadata: {name: cib-cli1}\nspec:\n  address: 10.250.203.2\n  standby: true\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(kubemaker());
        cmd.args(args).envs(remote.env(Transport::Tls));
        support::run_with_timeout(&mut cmd, Duration::from_secs(60))
    };
    let out = run(&["cib", "apply", "-f", manifest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 transaction(s)"));
    let out = run(&["cib", "status"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cib-cli1") && l.contains("remote")),
        "{table}"
    );
    let out = run(&["cib", "status", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(json[0]["name"], "cib-cli1");
    assert_eq!(json[0]["standby_configured"], true);
    let out = run(&["cib", "status", "-o", "yaml"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("name: cib-cli1"));
    let out = run(&["cib", "remove", "cib-cli1", "--stop-timeout", "60"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    runtime().block_on(wait_no_trace(&cluster, &["cib-cli1"]));
    // Secrets stay out of output, including on failure.
    let mut cmd = std::process::Command::new(kubemaker());
    cmd.args(["cib", "status"])
        .envs(remote.env(Transport::Tls))
        .env("CIB_passwd", "wrong-pw-123");
    let out = support::run_with_timeout(&mut cmd, Duration::from_secs(60));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(all.contains("login refused for user hacluster"), "{all}");
    assert!(
        !all.contains("wrong-pw-123") && !all.contains(remote.password.expose()),
        "{all}"
    );
}

/// A guest node: its "VM" is a Dummy on node1, its pacemaker-remoted a `kubemaker remoted` in a
/// network namespace. It comes online, and removal stops the VM and leaves no trace.
#[test]
fn guest_node_lifecycle_and_removal() {
    let Some((cluster, remote)) = cluster_with_cib_port() else {
        return;
    };
    let key = support::current_cluster_authkey();
    let host = RemoteHost::start_in_netns("cib-gn1", &key);
    let state_file = "/run/resource-agents/km-cib-gvm1.state";
    let _ = std::fs::remove_file(cluster.node_path(state_file));
    let rt = runtime();
    rt.block_on(async {
        let client = CibClient::connect(remote.config(Transport::Tls))
            .await
            .unwrap();
        let spec = RemoteNodeSpec {
            node_type: NodeType::Guest,
            address: Some(host.addr()),
            attributes: [("kind".to_string(), "vm".to_string())].into(),
            guest: Some(GuestSpec {
                resource_id: Some("cib-gvm1".into()),
                agent: Some("ocf:pacemaker:Dummy".into()),
                parameters: [("state".to_string(), state_file.to_string())].into(),
                connect_timeout: Some("30s".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = DesiredNode::from_spec("cib-gn1", &spec).unwrap();
        let r = CibService::new(&client)
            .apply_nodes(
                std::slice::from_ref(&d),
                &ApplyOptions::default(),
                InvalidNodes::RefuseAll,
            )
            .await
            .unwrap();
        assert_eq!(r.transactions, 1);
        note_remote_connection(&cluster);
        cluster.wait_until("guest cib-gn1 online", Duration::from_secs(90), |v| {
            v.remote_node_up("cib-gn1")
        });
        let st = read_status(&client.query_cib().await.unwrap());
        let n = st
            .iter()
            .find(|n| n.name == "cib-gn1")
            .expect("status of cib-gn1");
        assert_eq!(n.state, NodeState::Online, "{n:?}");
        assert_eq!(n.guest_resource.as_deref(), Some("cib-gvm1"));
        assert!(
            cluster.node_path(state_file).exists(),
            "the VM (Dummy) runs on the cluster node"
        );
        assert_eq!(n.host.as_deref(), Some(cluster.node1()));

        step("guest removal: the VM stops, then every trace goes");
        let report = removal::remove_node(&client, "cib-gn1", &RemovalOptions::default())
            .await
            .unwrap();
        assert_eq!(report.resource.as_deref(), Some("cib-gvm1"));
        assert!(report.stopped);
        // The "VM" ran on the cluster node: its state file is in the node's /run.
        assert!(
            !cluster.node_path(state_file).exists(),
            "the VM (Dummy) was stopped before deletion"
        );
        wait_no_trace(&cluster, &["cib-gn1", "cib-gvm1"]).await;
        client.close().await;
    });
    drop(host);
}
