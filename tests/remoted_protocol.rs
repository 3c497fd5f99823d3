//! The daemon binary on loopback, driven by our own Pacemaker Remote client: the message rules of
//! Pacemaker 2.1.5 (see shared docs, remote-transcript-2.1.5.txt), bad input, and graceful stop.
//! The real-cluster tests (tests/remoted_cluster.rs) prove the same against Pacemaker itself.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kubemaker::remoted::client::{LrmdClient, exec_command, rsc};
use kubemaker::wire::Element;
use kubemaker::wire::header::Header;
use support::{Daemon, RemoteHost, free_port, hex};

const T: Duration = Duration::from_secs(10);

/// `kubemaker remoted` on loopback with a `key_len`-byte key, our test agents on its OCF path,
/// and `env` added.
fn start_remoted(name: &str, key_len: usize, env: &[(&str, &str)]) -> RemoteHost {
    let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + 3) as u8).collect();
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/ocf");
    let ocf_path = format!("/usr/lib/ocf/resource.d:{}", agents.display());
    let mut env = env.to_vec();
    env.insert(0, ("OCF_RA_PATH", &ocf_path));
    RemoteHost::start_on_loopback(name, &key, &env)
}

fn attrs(dir: &Path) -> Element {
    Element::new("attributes")
        .with_attr("dir", dir.display())
        .with_attr("CRM_meta_on_node", "remote1")
        .with_attr("CRM_meta_timeout", "20000")
        .with_attr("crm_feature_set", "3.16.2")
}

fn is_op(m: &Element, op: &str) -> bool {
    m.attr("lrmd_op") == Some(op)
}

#[tokio::test]
async fn session_follows_pacemaker_2_1_5() {
    let r = start_remoted("session", 4096, &[]);
    let mut c = LrmdClient::connect_raw(&r.endpoint(), r.key())
        .await
        .unwrap();
    let reg = Element::new("lrmd_command")
        .with_attr("t", "lrmd")
        .with_attr("lrmd_op", "register")
        .with_attr("lrmd_clientname", "pacemaker-remote-127.0.0.1:3121")
        .with_attr("lrmd_protocol_version", "1.1")
        .with_attr("lrmd_is_ipc_provider", "true");
    let reply = c.request(reg, T).await.unwrap();
    assert_eq!(reply.name, "lrmd_reply");
    assert_eq!(reply.attr("lrmd_origin"), Some("process_lrmd_signon"));
    assert_eq!(reply.attr("lrmd_rc"), Some("0"));
    assert_eq!(reply.attr("lrmd_op"), Some("register"));
    assert_eq!(reply.attr("lrmd_protocol_version"), Some("1.1"));
    assert_eq!(reply.attr("lrmd_remote_msg_id"), Some("1"));
    assert_eq!(reply.attr("lrmd_remote_msg_type"), Some("reply"));
    assert_eq!(reply.attr("lrmd_clientid").map(str::len), Some(36));

    // Poke: the reply, then the notify the controller's monitor waits for.
    let poke = LrmdClient::command(
        "lrmd_rsc_poke",
        Some(rsc("").with_attr("lrmd_origin", "lrmd_api_poke_connection")),
    );
    let reply = c.request(poke, T).await.unwrap();
    assert_eq!(reply.attr("lrmd_rc"), Some("0"));
    let n = c
        .wait_notify(T, |m| is_op(m, "lrmd_rsc_poke"))
        .await
        .unwrap();
    assert_eq!(n.attr("lrmd_origin"), Some("send_generic_notify"));
    assert_eq!(n.attr("lrmd_remote_msg_id"), Some("0"));
    assert_eq!(n.attr("lrmd_callid"), reply.attr("lrmd_callid"));
    assert!(n.attr("lrmd_ipc_session").is_none());

    // lrmd_check gets no reply: the next reply is the following request's.
    let check = LrmdClient::command(
        "lrmd_check",
        Some(Element::new("lrmd_op").with_attr("lrmd_origin", "x")),
    );
    let check_id = c.send(check).await.unwrap();
    let after = c
        .request(LrmdClient::command("lrmd_rsc_poke", None), T)
        .await
        .unwrap();
    assert_eq!(
        after.attr("lrmd_remote_msg_id").map(str::to_string),
        Some((check_id + 1).to_string())
    );

    // Register, info, unknown info.
    let reg = rsc("d1")
        .with_attr("lrmd_class", "ocf")
        .with_attr("lrmd_provider", "kubemaker-test")
        .with_attr("lrmd_type", "scripted");
    let mut cmd = LrmdClient::command("lrmd_rsc_register", Some(reg));
    cmd.set_attr("lrmd_callopt", 3);
    assert_eq!(c.request(cmd, T).await.unwrap().attr("lrmd_rc"), Some("0"));
    let n = c
        .wait_notify(T, |m| is_op(m, "lrmd_rsc_register"))
        .await
        .unwrap();
    assert_eq!(n.attr("lrmd_rsc_id"), Some("d1"));
    let info = c
        .request(LrmdClient::command("lrmd_rsc_info", Some(rsc("d1"))), T)
        .await
        .unwrap();
    assert_eq!(info.attr("lrmd_origin"), Some("process_lrmd_get_rsc_info"));
    assert_eq!(
        (
            info.attr("lrmd_class"),
            info.attr("lrmd_provider"),
            info.attr("lrmd_type")
        ),
        (Some("ocf"), Some("kubemaker-test"), Some("scripted"))
    );
    let info = c
        .request(LrmdClient::command("lrmd_rsc_info", Some(rsc("nosuch"))), T)
        .await
        .unwrap();
    assert_eq!(info.attr("lrmd_rc"), Some("-19"));
    assert!(info.attr("lrmd_class").is_none());

    // Exec: reply rc is the call id, the notify carries it and echoes every parameter.
    let dir = r.dir().join("d1");
    std::fs::create_dir_all(&dir).unwrap();
    let reply = c
        .request(exec_command("d1", "start", 0, 20000, attrs(&dir)), T)
        .await
        .unwrap();
    let call_id = reply.attr_i64("lrmd_rc").unwrap();
    assert!(call_id > 0);
    assert_eq!(reply.attr_i64("lrmd_callid"), Some(call_id));
    let n = c
        .wait_notify(T, |m| {
            is_op(m, "lrmd_rsc_exec") && m.attr_i64("lrmd_callid") == Some(call_id)
        })
        .await
        .unwrap();
    assert_eq!(n.attr("lrmd_exec_rc"), Some("0"));
    assert_eq!(
        n.attr("lrmd_rsc_userdata_str"),
        Some("start:0:0:kubemaker-client")
    );
    assert_eq!(n.child("attributes"), Some(&attrs(&dir)));

    // Recurring monitor, listed by get_recurring; cancel sends the Cancelled notify first.
    let reply = c
        .request(exec_command("d1", "monitor", 2000, 20000, attrs(&dir)), T)
        .await
        .unwrap();
    let mon = reply.attr_i64("lrmd_rc").unwrap();
    c.wait_notify(T, |m| m.attr_i64("lrmd_callid") == Some(mon))
        .await
        .unwrap();
    let rec = c
        .request(LrmdClient::command("lrmd_get_recurring", None), T)
        .await
        .unwrap();
    let op = rec.descendant("lrmd_rsc_op").expect("recurring op listed");
    assert_eq!(
        (op.attr("lrmd_rsc_action"), op.attr("lrmd_rsc_interval")),
        (Some("monitor"), Some("2000"))
    );
    let cancel = rsc("d1")
        .with_attr("lrmd_rsc_action", "monitor")
        .with_attr("lrmd_rsc_interval", 2000);
    let cancel_id = c
        .send(LrmdClient::command("lrmd_rsc_cancel", Some(cancel)))
        .await
        .unwrap();
    let first = c
        .next_message(tokio::time::Instant::now() + T, "cancel")
        .await
        .unwrap();
    assert_eq!(
        first.attr("lrmd_exec_op_status"),
        Some("1"),
        "Cancelled notify before the reply: {first:?}"
    );
    assert_eq!(first.attr_i64("lrmd_callid"), Some(mon));
    let second = c
        .next_message(tokio::time::Instant::now() + T, "cancel reply")
        .await
        .unwrap();
    assert_eq!(
        (
            second.attr_i64("lrmd_remote_msg_id"),
            second.attr("lrmd_rc")
        ),
        (Some(cancel_id), Some("0"))
    );

    // Errors: unknown op, metadata, unknown resource, missing id.
    for (msg, want) in [
        (LrmdClient::command("bogus_op", None), "-95"),
        (
            LrmdClient::command("lrmd_rsc_metadata", Some(rsc("d1"))),
            "-95",
        ),
        (
            exec_command("nosuch", "monitor", 0, 1000, Element::new("attributes")),
            "-19",
        ),
        (
            LrmdClient::command("lrmd_rsc_exec", Some(Element::new("lrmd_rsc"))),
            "-22",
        ),
        (
            LrmdClient::command("lrmd_rsc_register", Some(rsc("x"))),
            "-22",
        ),
    ] {
        let op = msg.attr("lrmd_op").unwrap_or_default().to_string();
        assert_eq!(
            c.request(msg, T).await.unwrap().attr("lrmd_rc"),
            Some(want),
            "{op}"
        );
    }

    // Unregister: reply then notify.
    assert_eq!(
        c.request(
            LrmdClient::command("lrmd_rsc_unregister", Some(rsc("d1"))),
            T
        )
        .await
        .unwrap()
        .attr("lrmd_rc"),
        Some("0")
    );
    c.wait_notify(T, |m| is_op(m, "lrmd_rsc_unregister"))
        .await
        .unwrap();
    c.close().await;
}

#[tokio::test]
async fn alert_agents_run_with_their_environment() {
    use std::os::unix::fs::PermissionsExt;
    let r = start_remoted("alert", 256, &[]);
    let mut c = r.lrmd_client("alerts", false).await;
    // Alert agents run as hacluster: keep script and output where that user may go.
    let dir = std::env::temp_dir().join(format!("km-alert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = dir.join("alert.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nenv > {}/out.tmp && id -un >> {}/out.tmp && mv {}/out.tmp {}/out\n",
            dir.display(),
            dir.display(),
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let alert = Element::new("lrmd_alert")
        .with_attr("lrmd_alert_id", "a1")
        .with_attr("lrmd_alert_path", script.display())
        .with_attr("lrmd_timeout", 5000)
        .with_child(
            Element::new("attributes")
                .with_attr("CRM_alert_kind", "node")
                .with_attr("CRM_alert_node", "rn1"),
        );
    let reply = c
        .request(LrmdClient::command("lrmd_alert_exec", Some(alert)), T)
        .await
        .unwrap();
    assert_eq!(reply.attr("lrmd_rc"), Some("0"));
    let deadline = Instant::now() + T;
    let out = loop {
        if let Ok(s) = std::fs::read_to_string(dir.join("out")) {
            break s;
        }
        assert!(Instant::now() < deadline, "alert agent never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(out.lines().any(|l| l == "CRM_alert_kind=node"), "{out}");
    assert!(
        out.lines().any(|l| l == "CRM_alert_node_sequence=1"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("hacluster"));
    let missing = Element::new("lrmd_alert")
        .with_attr("lrmd_alert_id", "a2")
        .with_attr("lrmd_alert_path", "/nonexistent");
    let reply = c
        .request(LrmdClient::command("lrmd_alert_exec", Some(missing)), T)
        .await
        .unwrap();
    assert_eq!(reply.attr("lrmd_rc"), Some("-22"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn too_old_protocol_version_is_refused() {
    let r = start_remoted("version", 256, &[]);
    let mut c = LrmdClient::connect_raw(&r.endpoint(), r.key())
        .await
        .unwrap();
    let reg = Element::new("lrmd_command")
        .with_attr("t", "lrmd")
        .with_attr("lrmd_op", "register")
        .with_attr("lrmd_clientname", "ancient")
        .with_attr("lrmd_protocol_version", "0.9");
    let reply = c.request(reg, T).await.unwrap();
    assert_eq!(
        reply.attr("lrmd_rc"),
        Some("-71"),
        "EPROTO for versions below 1.0"
    );
    assert_eq!(reply.attr("lrmd_op"), Some("register"));
}

#[tokio::test]
async fn every_message_is_a_header_record_then_a_payload_record() {
    let r = start_remoted("records", 256, &[]);
    let mut c = r.lrmd_client("records", false).await;
    c.send(LrmdClient::command("lrmd_rsc_poke", None))
        .await
        .unwrap();
    for _ in 0..2 {
        let header = c.read_chunk(T).await.unwrap();
        assert_eq!(header.len(), 40, "header alone in its record");
        let h = Header::parse(&header.try_into().unwrap(), u32::MAX).unwrap();
        let payload = c.read_chunk(T).await.unwrap();
        assert_eq!(payload.len(), h.payload_uncompressed as usize);
        assert_eq!(payload.last(), Some(&0));
    }
}

#[tokio::test]
async fn new_client_is_announced_to_existing_clients() {
    let r = start_remoted("newclient", 4096, &[]);
    let mut a = r.lrmd_client("controller-a", true).await;
    let b = LrmdClient::connect_raw(&r.endpoint(), r.key())
        .await
        .unwrap();
    let n = a
        .wait_notify(T, |m| is_op(m, "lrmd_rsc_new_client"))
        .await
        .unwrap();
    assert_eq!(n.attr("lrmd_origin"), Some("notify_of_new_client"));
    // Both connections stay usable: migration depends on two coexisting.
    assert_eq!(
        a.request(LrmdClient::command("lrmd_rsc_poke", None), T)
            .await
            .unwrap()
            .attr("lrmd_rc"),
        Some("0")
    );
    drop(b);
}

#[tokio::test]
async fn bad_input_harms_only_its_own_connection() {
    let r = start_remoted("badinput", 4096, &[]);
    let mut good = r.lrmd_client("good", true).await;

    // Wrong key: the handshake fails, the daemon logs it and keeps serving.
    let wrong: Vec<u8> = r.key().iter().map(|b| b ^ 0x55).collect();
    assert!(
        LrmdClient::connect(&r.endpoint(), &wrong, "wrong", false)
            .await
            .is_err()
    );
    // Plaintext client.
    let mut plain = std::net::TcpStream::connect(r.endpoint()).unwrap();
    let _ = plain.write_all(b"<lrmd_command lrmd_op=\"register\"/>\n");
    // Bad magic on an authenticated connection: that connection is closed.
    let mut bad = r.lrmd_client("bad-magic", false).await;
    bad.send_bytes(&[0u8; 40]).await.unwrap();
    assert!(
        bad.read_chunk(T).await.is_err(),
        "bad framing closes the connection"
    );
    // Oversized frame.
    let mut big = r.lrmd_client("big", false).await;
    big.send_bytes(&Header::for_payload(1, u32::MAX - 100).to_bytes())
        .await
        .unwrap();
    assert!(big.read_chunk(T).await.is_err());
    // Malformed XML in a well-framed message: discarded, the connection lives on.
    let mut sloppy = r.lrmd_client("sloppy", false).await;
    let payload = b"<lrmd_command lrmd_op=\0".to_vec();
    sloppy
        .send_bytes(&Header::for_payload(9, payload.len() as u32).to_bytes())
        .await
        .unwrap();
    sloppy.send_bytes(&payload).await.unwrap();
    let garbage = b"not xml at all\0".to_vec();
    sloppy
        .send_bytes(&Header::for_payload(10, garbage.len() as u32).to_bytes())
        .await
        .unwrap();
    sloppy.send_bytes(&garbage).await.unwrap();
    // A message that is not a request is ignored.
    let mut not_request = Element::new("lrmd_command").with_attr("lrmd_op", "lrmd_rsc_poke");
    not_request.set_attr("lrmd_remote_msg_type", "reply");
    sloppy.send_raw_message(&not_request).await.unwrap();
    assert_eq!(
        sloppy
            .request(LrmdClient::command("lrmd_rsc_poke", None), T)
            .await
            .unwrap()
            .attr("lrmd_rc"),
        Some("0")
    );

    // The first client never noticed.
    assert_eq!(
        good.request(LrmdClient::command("lrmd_rsc_poke", None), T)
            .await
            .unwrap()
            .attr("lrmd_rc"),
        Some("0")
    );
    let log = r.daemon().log();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("Discarding malformed message"), "{log}");
    assert!(log.contains("bad magic"), "{log}");
    assert!(!log.contains("panicked"));
    assert!(
        !String::from_utf8_lossy(&r.key()[..32]).is_empty() && !log.contains(&hex(&r.key()[..16])),
        "no key material in logs"
    );
}

/// A poke on `c` is answered within a second (`when` says in what situation, for the message).
async fn assert_responsive(c: &mut LrmdClient, when: &str) {
    let t0 = Instant::now();
    let poke = c
        .request(LrmdClient::command("lrmd_rsc_poke", None), T)
        .await
        .unwrap();
    assert_eq!(poke.attr("lrmd_rc"), Some("0"));
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "poke took {:?} {when}",
        t0.elapsed()
    );
}

/// Unauthenticated peers cost bounded memory and bounded log lines, and do not lock others out:
/// 1000 connections from one address that never start their handshake, and a slow-loris client
/// that sends its ClientHello a byte at a time, while a registered client keeps being answered
/// within a second and a new client from another address gets in.
#[tokio::test]
async fn a_flood_of_unfinished_handshakes_is_bounded_and_quiet() {
    let r = start_remoted("flood", 256, &[]);
    let mut good = r.lrmd_client("good", true).await;
    let pid = r.daemon().pid();
    let rss_before = support::rss_kib(pid);
    let port = r.endpoint().rsplit(':').next().unwrap().to_string();
    let v4: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut flood = Vec::new();
    let flood_start = Instant::now();
    for _ in 0..1000 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&v4, Duration::from_secs(2)) {
            flood.push(s);
        }
    }
    assert!(flood.len() >= 900, "only {} connections made", flood.len());
    eprintln!(
        "[remoted_protocol] {} connections opened in {:.1} s",
        flood.len(),
        flood_start.elapsed().as_secs_f64()
    );
    // The slow-loris client: a TLS record header, then one byte every 500 ms.
    let loris_addr: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mut loris = std::net::TcpStream::connect(loris_addr).unwrap();
    loris
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let loris_start = Instant::now();
    let mut hello = vec![0x16u8, 0x03, 0x01, 0x02, 0x00];
    hello.resize(512, 0x01);
    let mut closed_after = None;
    for byte in hello {
        if loris.write_all(&[byte]).is_err() {
            closed_after = Some(loris_start.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match std::io::Read::read(&mut loris, &mut buf) {
            Ok(0) => {
                closed_after = Some(loris_start.elapsed());
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed_after = Some(loris_start.elapsed());
                break;
            }
        }
        // The registered client is answered within a second all along.
        assert_responsive(&mut good, "during the flood").await;
        if loris_start.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let closed_after = closed_after.expect("the slow-loris client was not cut off within 20 s");
    assert!(
        closed_after < Duration::from_secs(13),
        "slow-loris client cut off after {closed_after:?} (handshake limit 10 s)"
    );
    // Another address is not locked out by the flood from 127.0.0.1.
    let t0 = Instant::now();
    let newcomer = LrmdClient::connect(&format!("[::1]:{port}"), r.key(), "newcomer", false).await;
    assert!(
        newcomer.is_ok(),
        "a client from ::1 during the flood: {:?}",
        newcomer.err()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    let grown = support::rss_kib(pid).saturating_sub(rss_before);
    eprintln!(
        "[remoted_protocol] {} unfinished handshakes: RSS grew {grown} KiB; slow-loris cut off after {:.1} s",
        flood.len(),
        closed_after.as_secs_f64()
    );
    assert!(grown < 3 * 1024, "RSS grew {grown} KiB during the flood");
    drop(flood);

    let log = r.daemon().log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS handshake failed") || l.contains("Connection closed: too many"))
        .collect();
    assert!(
        lines.len() <= 20,
        "{} failure lines logged for the flood:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        log.contains("further ones are counted, not logged"),
        "the log does not say it stopped logging failures:\n{log}"
    );
    // Once the flood is gone (the daemon sees the closes), the address gets in again.
    let mut again = Err(String::new());
    for _ in 0..25 {
        match LrmdClient::connect(&v4.to_string(), r.key(), "again", false).await {
            Ok(_) => {
                again = Ok(());
                break;
            }
            Err(e) => again = Err(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(again.is_ok(), "127.0.0.1 after the flood: {again:?}");
}

/// Children of `pid` that are zombies (exited, not reaped).
fn zombie_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let fields = support::proc_stat(child);
        if fields.first().map(String::as_str) == Some("Z")
            && fields.get(1) == Some(&pid.to_string())
        {
            out.push(child);
        }
    }
    out
}

/// Agents that misbehave harm only their own operation: one that leaves a daemon behind holding
/// its output pipes, one that ignores SIGTERM past its timeout, one that writes 16 MiB to stdout,
/// and 100 operations at once. The daemon answers within a second throughout, its memory stays
/// bounded, and no child is left unreaped.
#[tokio::test]
async fn misbehaving_agents_harm_only_their_own_operation() {
    let r = start_remoted("agents", 256, &[]);
    let mut c = r.lrmd_client("misbehaviour", true).await;
    let pid = r.daemon().pid();
    let dir_of = |name: &str| {
        let d = r.dir().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    async fn register(c: &mut LrmdClient, id: &str) {
        let reg = rsc(id)
            .with_attr("lrmd_class", "ocf")
            .with_attr("lrmd_provider", "kubemaker-test")
            .with_attr("lrmd_type", "scripted");
        let reply = c
            .request(LrmdClient::command("lrmd_rsc_register", Some(reg)), T)
            .await
            .unwrap();
        assert_eq!(reply.attr("lrmd_rc"), Some("0"), "register {id}");
    }
    async fn exec(c: &mut LrmdClient, id: &str, action: &str, timeout_ms: u64, dir: &Path) -> i64 {
        let reply = c
            .request(exec_command(id, action, 0, timeout_ms, attrs(dir)), T)
            .await
            .unwrap();
        let call = reply.attr_i64("lrmd_rc").unwrap_or(-1);
        assert!(call > 0, "exec {id} {action} refused: {reply:?}");
        call
    }
    async fn result(c: &mut LrmdClient, call: i64, within: Duration) -> Element {
        c.wait_notify(within, |m| {
            is_op(m, "lrmd_rsc_exec") && m.attr_i64("lrmd_callid") == Some(call)
        })
        .await
        .unwrap_or_else(|e| panic!("no result for call {call}: {e}"))
    }
    let rss_before = support::rss_kib(pid);

    // 1. A start that leaves `sleep 300` behind, holding the agent's stdout and stderr.
    let forker = dir_of("forker");
    std::fs::write(forker.join("start.spawn"), "").unwrap();
    register(&mut c, "forker").await;
    let call = exec(&mut c, "forker", "start", 20_000, &forker).await;
    assert_responsive(&mut c, "while an agent's daemon holds its pipes").await;
    let t0 = Instant::now();
    let n = result(&mut c, call, Duration::from_secs(5)).await;
    assert_eq!(n.attr("lrmd_exec_rc"), Some("0"));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "the result waited {:?} for the pipes",
        t0.elapsed()
    );
    let left: u32 = std::fs::read_to_string(forker.join("start.child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // 2. A start that ignores SIGTERM and sleeps past its 2 s timeout.
    let stubborn = dir_of("stubborn");
    std::fs::write(stubborn.join("start.ignore_term"), "").unwrap();
    std::fs::write(stubborn.join("start.sleep"), "60").unwrap();
    register(&mut c, "stubborn").await;
    let call = exec(&mut c, "stubborn", "start", 2_000, &stubborn).await;
    assert_responsive(&mut c, "while an agent ignores SIGTERM").await;
    let n = result(&mut c, call, Duration::from_secs(6)).await;
    assert_eq!(n.attr("lrmd_exec_op_status"), Some("2"), "timed out: {n:?}");
    let agent_pid: u32 = std::fs::read_to_string(stubborn.join("log"))
        .unwrap()
        .split_whitespace()
        .nth(3)
        .and_then(|p| p.parse().ok())
        .expect("the agent logged its pid");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !Path::new(&format!("/proc/{agent_pid}")).exists()
            || zombie_children(pid).contains(&agent_pid),
        "the stuck agent {agent_pid} still runs after its timeout"
    );

    // 3. A monitor that writes 16 MiB to stdout: its result comes, cut to the cap.
    let chatty = dir_of("chatty");
    std::fs::write(chatty.join("monitor.stdout"), vec![b'x'; 16 << 20]).unwrap();
    register(&mut c, "chatty").await;
    let call = exec(&mut c, "chatty", "monitor", 20_000, &chatty).await;
    assert_responsive(&mut c, "while an agent writes 16 MiB").await;
    let n = result(&mut c, call, Duration::from_secs(20)).await;
    assert_eq!(n.attr("lrmd_exec_rc"), Some("0"));
    let output = n.attr("lrmd_rsc_output").map(str::len).unwrap_or(0);
    assert!(output <= 10 << 20, "{output} bytes of output passed on");

    // 4. 100 operations at once (each agent sleeps a second).
    let mut calls = Vec::new();
    for i in 0..100 {
        let id = format!("many{i}");
        let d = dir_of(&id);
        std::fs::write(d.join("start.sleep"), "1").unwrap();
        register(&mut c, &id).await;
        calls.push(exec(&mut c, &id, "start", 20_000, &d).await);
    }
    assert_responsive(&mut c, "with 100 operations running").await;
    for call in calls {
        let n = result(&mut c, call, Duration::from_secs(30)).await;
        assert_eq!(n.attr("lrmd_exec_rc"), Some("0"), "{n:?}");
    }
    assert_responsive(&mut c, "after 100 operations").await;

    std::thread::sleep(Duration::from_millis(500));
    let zombies = zombie_children(pid);
    assert!(
        zombies.is_empty(),
        "unreaped children of the daemon: {zombies:?}"
    );
    let grown = support::rss_kib(pid).saturating_sub(rss_before);
    eprintln!("[remoted_protocol] misbehaving agents: daemon RSS grew {grown} KiB");
    assert!(grown < 64 * 1024, "daemon RSS grew {grown} KiB");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(left as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn sigterm_without_cluster_exits_at_once() {
    let mut r = start_remoted("term-alone", 256, &[]);
    r.daemon_mut().signal(nix::sys::signal::Signal::SIGTERM);
    let status = r
        .daemon_mut()
        .wait_exit(Duration::from_secs(3))
        .expect("exited");
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_with_cluster_waits_for_ack_and_disconnect() {
    let mut r = start_remoted("term-ack", 4096, &[]);
    let mut cluster = r.lrmd_client("pacemaker-remote-127.0.0.1", true).await;
    r.daemon_mut().signal(nix::sys::signal::Signal::SIGTERM);
    let req = cluster
        .wait_notify(T, |m| m.attr("lrmd_ipc_op") == Some("shutdown_req"))
        .await
        .unwrap();
    assert_eq!(req.name, "lrmd_ipc_proxy");
    assert_eq!(req.attr("lrmd_ipc_session"), Some("0"));
    // No longer listening.
    let deadline = Instant::now() + T;
    while std::net::TcpStream::connect(r.endpoint()).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections during shutdown"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut ack = Element::new("lrmd_ipc_proxy").with_attr("lrmd_ipc_op", "shutdown_ack");
    ack.set_attr("lrmd_op", "ipc_fwd");
    assert_eq!(
        cluster.request(ack, T).await.unwrap().attr("lrmd_rc"),
        Some("0")
    );
    r.daemon_mut().signal(nix::sys::signal::Signal::SIGTERM);
    // The cluster is still "stopping resources": the daemon must wait.
    assert!(
        r.daemon_mut()
            .wait_exit(Duration::from_millis(1500))
            .is_none(),
        "exited before the cluster disconnected"
    );
    assert_eq!(
        cluster
            .request(LrmdClient::command("lrmd_rsc_poke", None), T)
            .await
            .unwrap()
            .attr("lrmd_rc"),
        Some("0")
    );
    cluster.close().await;
    let status = r
        .daemon_mut()
        .wait_exit(Duration::from_secs(5))
        .expect("exit after disconnect");
    assert!(status.success());
    let log = r.daemon().log();
    assert!(log.contains("acknowledged the shutdown request"), "{log}");
    let ack_at = log.find("acknowledged the shutdown request").unwrap();
    let gone_at = log.rfind("Remote connection ended").unwrap();
    assert!(gone_at > ack_at && log[gone_at..].contains("Exiting"));
}

#[tokio::test]
async fn sigterm_with_nack_exits_at_once() {
    let mut r = start_remoted("term-nack", 256, &[]);
    let mut cluster = r.lrmd_client("cluster", true).await;
    r.daemon_mut().signal(nix::sys::signal::Signal::SIGTERM);
    cluster
        .wait_notify(T, |m| m.attr("lrmd_ipc_op") == Some("shutdown_req"))
        .await
        .unwrap();
    let mut nack = Element::new("lrmd_ipc_proxy").with_attr("lrmd_ipc_op", "shutdown_nack");
    nack.set_attr("lrmd_op", "ipc_fwd");
    let _ = cluster.send(nack).await;
    let status = r
        .daemon_mut()
        .wait_exit(Duration::from_secs(3))
        .expect("exit on nack while the cluster is still connected");
    assert!(status.success());
}

#[tokio::test]
async fn rotated_key_is_picked_up_without_restart() {
    let mut r = start_remoted("rotate", 256, &[]);
    r.lrmd_client("before", false).await;
    let new_key: Vec<u8> = (0..512).map(|i| (i * 13 + 1) as u8).collect();
    let old_key = r.key().to_vec();
    r.set_key(&new_key);
    let deadline = Instant::now() + kubemaker::remoted::authkey::CACHE_FOR + Duration::from_secs(5);
    loop {
        if LrmdClient::connect(&r.endpoint(), &new_key, "after", false)
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "new key never accepted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        LrmdClient::connect(&r.endpoint(), &old_key, "old", false)
            .await
            .is_err(),
        "old key refused after rotation"
    );
}

#[tokio::test]
async fn dual_stack_listener_and_pacemaker_remoted_name() {
    let dir = std::env::temp_dir().join(format!("km-proto-alias-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let alias = dir.join("pacemaker-remoted");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubemaker"), &alias).unwrap();
    let key = vec![7u8; 4096];
    std::fs::write(dir.join("authkey"), &key).unwrap();
    let port = free_port();
    let mut cmd = Command::new(&alias);
    cmd.args(["--no-local-ipc", "-p", &port.to_string(), "-l"])
        .arg(dir.join("log"))
        .env("PCMK_authkey_location", dir.join("authkey"))
        .env_remove("PCMK_remote_address");
    let daemon = Daemon::spawn_logging_itself(cmd, &dir.join("log")).expect("start the alias");
    daemon.wait_log("successfully started", T);
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let c = LrmdClient::connect(&addr, &key, "dual", false).await;
        assert!(c.is_ok(), "{addr}: {:?}", c.err());
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Local IPC without a cluster: `pacemakerd` says "remote node" (EREMOTEIO), proxied names say
/// "not connected" (EREMOTEIO too), and the executor API answers locally. The daemon runs in a
/// network namespace of its own so its IPC names cannot meet a cluster's.
#[test]
fn local_ipc_without_a_cluster() {
    use kubemaker::ipc::IpcClient;
    use kubemaker::wire::ipc::{IpcLayout, decode, encode, flags};
    let dir = std::env::temp_dir().join(format!("km-proto-ipc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("authkey"), [1u8; 256]).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--"])
        .arg(support::kubemaker())
        .args(["remoted", "-l"])
        .arg(dir.join("log"))
        .env("PCMK_authkey_location", dir.join("authkey"));
    let daemon = Daemon::spawn_logging_itself(cmd, &dir.join("log"))
        .expect("unshare --net kubemaker remoted");
    daemon.wait_log("successfully started", T);
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", daemon.pid())).unwrap();
    let result = std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        assert_eq!(IpcClient::connect("pacemakerd", 65536).err(), Some(-121));
        assert_eq!(IpcClient::connect("cib_ro", 65536).err(), Some(-121));
        let register = Element::new("lrmd_command")
            .with_attr("t", "lrmd")
            .with_attr("lrmd_op", "register")
            .with_attr("lrmd_clientname", "local-tool")
            .with_attr("lrmd_protocol_version", "1.1");
        // Tools of Pacemaker 2.1.x/3.0.0 and of 3.0.1+ speak different headers; each is
        // answered in its own.
        for layout in [IpcLayout::Compressing, IpcLayout::Multipart] {
            let ask = |c: &mut IpcClient, id: u32, xml: &Element| {
                let mut parts = encode(layout, id, flags::CLIENT_RESPONSE, xml, 128 * 1024);
                assert_eq!(parts.len(), 1);
                let reply = c.request(&parts.remove(0), 5000).expect("answer");
                assert_eq!(
                    IpcLayout::detect(&reply),
                    Ok(layout),
                    "answered in the same layout"
                );
                decode(&reply).expect("decodable answer")
            };
            let mut lrmd = IpcClient::connect("lrmd", 128 * 1024).expect("local executor API");
            let reply = ask(&mut lrmd, 1, &register);
            assert_eq!(reply.id, 1);
            assert_eq!(reply.xml.attr("lrmd_rc"), Some("0"), "{layout:?}");
            // A local client cannot carry tools' traffic for the cluster.
            let provider = register.clone().with_attr("lrmd_is_ipc_provider", "true");
            assert_eq!(
                ask(&mut lrmd, 2, &provider).xml.attr("lrmd_rc"),
                Some("-13")
            );
            let poke = LrmdClient::command("lrmd_rsc_poke", None);
            let reply = ask(&mut lrmd, 3, &poke);
            assert_eq!((reply.id, reply.xml.attr("lrmd_rc")), (3, Some("0")));
            let event = lrmd.recv_event(5000).expect("poke notify as an IPC event");
            assert_eq!(IpcLayout::detect(&event), Ok(layout));
            let event = decode(&event).unwrap();
            assert_eq!(event.xml.attr("lrmd_op"), Some("lrmd_rsc_poke"));
            assert_ne!(event.flags & flags::SERVER_EVENT, 0);
        }
        // A 3.0.1+ request split into parts, as Pacemaker splits one over its buffer size.
        let mut c = IpcClient::connect("lrmd", 128 * 1024).expect("connect");
        let big = register.clone().with_attr("padding", "p".repeat(10_000));
        let parts = encode(IpcLayout::Multipart, 6, flags::CLIENT_RESPONSE, &big, 4096);
        assert!(parts.len() >= 3);
        for p in &parts {
            c.send(p).expect("send a part");
        }
        let reply = decode(&c.recv(5000).expect("one answer to the whole message")).unwrap();
        assert_eq!((reply.id, reply.xml.attr("lrmd_rc")), (6, Some("0")));
        // A client lying about its message size (libqb passes the claimed size on): the daemon
        // must read no further than the buffer, drop that client, and keep serving.
        let mut liar = IpcClient::connect("lrmd", 128 * 1024).expect("connect");
        let mut msg = vec![0u8; 64];
        msg[8..12].copy_from_slice(&1_000_000i32.to_ne_bytes());
        let _ = liar.send(&msg);
        assert!(liar.recv(2000).is_err());
        // A header of neither layout: dropped at once (the tool fails instead of waiting).
        let mut odd = IpcClient::connect("lrmd", 128 * 1024).expect("connect");
        let mut msg = encode(
            IpcLayout::Compressing,
            7,
            flags::CLIENT_RESPONSE,
            &register,
            1 << 20,
        )
        .remove(0);
        msg[36] = 2;
        let _ = odd.send(&msg);
        assert!(odd.recv(2000).is_err());
        let mut again = IpcClient::connect("lrmd", 128 * 1024).expect("still serving");
        let msg = encode(
            IpcLayout::Compressing,
            4,
            flags::CLIENT_RESPONSE,
            &register,
            1 << 20,
        )
        .remove(0);
        let reply = decode(&again.request(&msg, 5000).unwrap()).unwrap();
        assert_eq!(reply.xml.attr("lrmd_rc"), Some("0"));
    })
    .join();
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    result.expect("local IPC checks");
}
