//! The CIB gateway of `kubemaker remoted` against the real test cluster, with no remote CIB port
//! in the client's hands: one node joined by hand (the bootstrap), then reads, change
//! notifications, a second RemoteNode applied, brought online and removed, all through the
//! gateway on the first node. And what it must refuse: a wrong key, the cluster's PSK identity
//! on the gateway port, the gateway's identity on the cluster port, operations other than CIB
//! ones, and clients while the node has no cluster connection.
//!
//! Run: `cargo test --test cib_gateway` (root; the harness starts the test cluster).

mod support;

use std::time::Duration;

use kubemaker::cib::client::{
    CibClient, CibError, ClientConfig, Endpoint, Secret, TlsAuth, Transport, WatchEvent,
};
use kubemaker::cib::service::removal;
use kubemaker::cib::{ApplyOptions, CibService, DesiredNode, InvalidNodes, RemovalOptions};
use kubemaker::tls;
use kubemaker::wire::cib_gateway::{DEFAULT_PORT, IDENTITY};
use kubemaker::wire::{Connection, Element};
use support::{Cluster, RemoteHost, step};
use tokio::net::TcpStream;

const JOIN: Duration = Duration::from_secs(90);
const GATEWAY_PORT: &str = "3122";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn gateway_config(host: &RemoteHost, key: &[u8]) -> ClientConfig {
    let mut cfg = ClientConfig::new(
        vec![Endpoint {
            host: host.addr(),
            port: DEFAULT_PORT,
        }],
        Transport::Tls,
        Secret::default(),
    );
    cfg.tls_auth = TlsAuth::gateway(key.to_vec()).expect("authkey");
    cfg.client_name = "kubemaker-gateway-test".into();
    cfg.request_timeout = Duration::from_secs(20);
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.retry.connect_rounds = 1;
    cfg
}

/// A raw gateway session: TLS-PSK under `identity` with `key` to `host:port`, then the login;
/// the connection and the login's answer.
async fn raw_login(
    addr: &str,
    port: u16,
    identity: &str,
    key: &[u8],
) -> Result<(Connection<tls::TlsStream>, Option<Element>), String> {
    let tcp = TcpStream::connect((addr, port))
        .await
        .map_err(|e| e.to_string())?;
    let stream = tls::connect_psk_as(
        tcp,
        identity,
        key,
        &tls::priorities_psk(),
        Duration::from_secs(5),
    )
    .await
    .map_err(|e| format!("handshake: {e}"))?;
    let mut conn = Connection::new(stream, kubemaker::wire::frame::DEFAULT_MAX_MESSAGE);
    let login = Element::new("cib_command")
        .with_attr("op", "authenticate")
        .with_attr("user", "hacluster")
        .with_attr("name", "raw-test");
    conn.write_message(1, &login)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let answer = tokio::time::timeout(Duration::from_secs(15), conn.read_message())
        .await
        .map_err(|_| "no answer to the login within 15 s".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    Ok((conn, answer))
}

/// Sends `msg` on a logged-in raw session; the next message (None: closed).
async fn raw_call(conn: &mut Connection<tls::TlsStream>, msg: &Element) -> Option<Element> {
    conn.write_message(2, msg).await.ok()?;
    tokio::time::timeout(Duration::from_secs(20), conn.read_message())
        .await
        .expect("an answer within 20 s")
        .ok()?
}

#[test]
fn cib_gateway_carries_the_controllers_work_and_refuses_the_rest() {
    if !support::require_tools(&["cibadmin", "crm_mon", "ip"]) {
        return;
    }
    let cluster = Cluster::acquire();
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);
    let host = RemoteHost::in_netns("gw1")
        .with_key(&key)
        .with_env(&[("KUBEMAKER_CIB_GATEWAY_PORT", GATEWAY_PORT)])
        .started();
    let second = RemoteHost::start_in_netns("gw2", &key);
    let rt = runtime();
    rt.block_on(async {
        step("before the cluster connects, the gateway refuses with the reason");
        let Err(e) = CibClient::connect(gateway_config(&host, &key)).await else {
            panic!("the gateway served a client before the cluster connected");
        };
        let text = e.to_string();
        assert!(matches!(e, CibError::Unreachable { .. }), "{text}");
        assert!(text.contains("no cluster connection"), "{text}");

        step("bootstrap: the first node joined by hand on the cluster");
        cluster.create_resource_xml(&format!(
            r#"<primitive class="ocf" id="gw1" provider="pacemaker" type="remote"><instance_attributes id="gw1-instance_attributes"><nvpair id="gw1-instance_attributes-server" name="server" value="{}"/></instance_attributes><operations><op id="gw1-monitor-interval-5s" interval="5s" name="monitor" timeout="15s"/></operations></primitive>"#,
            host.addr()
        ));
        cluster.wait_until("gw1 up", JOIN, |v| v.remote_node_up("gw1"));

        step("reads and the notification stream through the gateway");
        let client = CibClient::connect(gateway_config(&host, &key))
            .await
            .expect("connect through the gateway");
        let cib = client.query_cib().await.expect("query");
        let text = cib.to_xml();
        assert!(text.contains(r#"id="gw1""#), "the bootstrap primitive is in the CIB read through the gateway");
        let mut watch = client.watch().await.expect("watch");
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
            Ok(Some(WatchEvent::Resync { .. })) => {}
            other => panic!("first watch event should be a resync, got {other:?}"),
        }

        step("a second RemoteNode applied through the gateway comes online");
        let d = DesiredNode::from_spec("gw2", &support::remote_node_spec(&second.addr())).expect("spec");
        let report = CibService::new(&client)
            .apply_nodes(std::slice::from_ref(&d), &ApplyOptions::default(), InvalidNodes::RefuseAll)
            .await
            .expect("apply through the gateway");
        assert_eq!(report.transactions, 1);
        let mut saw_diff = false;
        for _ in 0..50 {
            match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
                Ok(Some(WatchEvent::Diff(diff))) if diff.touches_configuration() => {
                    saw_diff = diff.changes.iter().any(|(_, p)| p.contains("resources"));
                    if saw_diff {
                        break;
                    }
                }
                Ok(Some(WatchEvent::Diff(_) | WatchEvent::Resync { .. })) => {}
                other => panic!("watch ended: {other:?}"),
            }
        }
        assert!(saw_diff, "the write's change notification arrived through the gateway");
        cluster.wait_until("gw2 up", JOIN, |v| v.remote_node_up("gw2"));

        step("a change made on the cluster reaches the watch through the gateway");
        cluster.run_ok("crm_attribute", &["-t", "crm_config", "-n", "km-gateway-probe", "-v", "1"]);
        let mut saw_probe = false;
        for _ in 0..50 {
            match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
                Ok(Some(WatchEvent::Diff(diff))) => {
                    if diff.diff.to_xml().contains("km-gateway-probe") {
                        saw_probe = true;
                        break;
                    }
                }
                Ok(Some(WatchEvent::Resync { .. })) => {}
                other => panic!("watch ended: {other:?}"),
            }
        }
        assert!(saw_probe, "the cluster-side change was notified");
        cluster.run_ok("crm_attribute", &["-t", "crm_config", "-n", "km-gateway-probe", "-D"]);

        step("removal through the gateway: stopped, deleted, purged");
        removal::remove_node(&client, "gw2", &RemovalOptions::default())
            .await
            .expect("remove gw2 through the gateway");
        cluster.wait_until("gw2 gone", JOIN, |v| v.node("gw2").is_none());
        drop(watch);
        client.close().await;

        step("a wrong key fails the handshake");
        let wrong = support::random_bytes(key.len());
        let Err(e) = CibClient::connect(gateway_config(&host, &wrong)).await else {
            panic!("the gateway took a wrong key");
        };
        assert!(matches!(e, CibError::Unreachable { .. }), "{e}");

        step("the cluster's PSK identity is refused on the gateway port");
        let refused = raw_login(&host.addr(), DEFAULT_PORT, "lrmd", &key).await;
        assert!(
            !matches!(&refused, Ok((_, Some(m))) if m.name == "cib_result"),
            "the gateway took the identity lrmd: {:?}",
            refused.map(|(_, m)| m)
        );

        step("the gateway's identity is refused on the cluster port");
        let refused = raw_login(&host.addr(), 3121, IDENTITY, &key).await;
        assert!(
            !matches!(&refused, Ok((_, Some(_)))),
            "the cluster port answered a gateway client: {:?}",
            refused.map(|(_, m)| m)
        );

        step("operations other than CIB ones are refused");
        let (mut conn, answer) = raw_login(&host.addr(), DEFAULT_PORT, IDENTITY, &key)
            .await
            .expect("raw gateway login");
        let answer = answer.expect("login answer");
        assert_eq!(answer.name, "cib_result", "{answer:?}");
        assert_eq!(answer.attr_i64("cib_rc").unwrap_or(0), 0, "{answer:?}");
        let erase = Element::new("cib_command")
            .with_attr("t", "cib")
            .with_attr("cib_op", "cib_erase")
            .with_attr("cib_callid", "9")
            .with_attr("cib_callopt", 0x1000);
        let reply = raw_call(&mut conn, &erase).await.expect("a refusal");
        assert_eq!(reply.attr_i64("cib_rc"), Some(-95), "{reply:?}");
        assert!(cluster.cib_xml().contains(r#"id="gw1""#), "the configuration is intact");
        let exec = Element::new("lrmd_command")
            .with_attr("lrmd_op", "lrmd_rsc_exec")
            .with_attr("lrmd_rsc_id", "gw-never")
            .with_attr("lrmd_rsc_action", "start");
        let reply = raw_call(&mut conn, &exec).await.expect("a refusal");
        assert_eq!(reply.attr_i64("cib_rc"), Some(-95), "{reply:?}");
        let after = tokio::time::timeout(Duration::from_secs(5), conn.read_message()).await;
        assert!(
            matches!(after, Ok(Ok(None)) | Ok(Err(_))),
            "the gateway closes a connection that sent a non-CIB request: {after:?}"
        );

        step("the daemon logged each client, and never the key");
        let log = std::fs::read_to_string(host.log_path()).unwrap_or_default();
        assert!(log.contains("CIB gateway client connected"), "{log}");
        assert!(log.contains("CIB gateway client refused: no cluster connection"), "{log}");
        assert!(!log.contains(&support::hex(&key)), "the key is in the log");

        step("the cluster port still serves the cluster: gw1 stays online");
        cluster.wait_until("gw1 still up", JOIN, |v| v.remote_node_up("gw1"));
    });
    cluster.reset();
}
