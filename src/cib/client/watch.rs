//! Change notifications on a connection of their own: a stream of diffs, with a resync event
//! whenever the version chain has a gap or the connection was re-made.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::cib::model::CibVersion;
use crate::wire::Element;

use super::config::ClientConfig;
use super::connection::Connection;
use super::error::CibError;
use super::failover::connect_any;

/// Connects (starting with endpoint `first`), subscribes, and follows the notifications in a
/// task of their own.
pub(super) async fn start(cfg: ClientConfig, first: usize) -> Result<Watch, CibError> {
    let (i, conn) = connect_and_subscribe(&cfg, first).await?;
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(watch_loop(cfg, i, conn, tx));
    Ok(Watch { rx, task })
}

async fn subscribe(conn: &mut Connection) -> Result<(), CibError> {
    // 2.1.5 sends no reply to this.
    let reg = Element::new("cib_command")
        .with_attr("t", "cib")
        .with_attr("cib_op", "cib_notify")
        .with_attr("cib_notify_type", "cib_diff_notify")
        .with_attr("cib_notify_activate", "1");
    conn.send(&reg).await.map_err(|e| CibError::ConnectionLost {
        op: "cib_notify".into(),
        endpoint: conn.endpoint.to_string(),
        reason: e.to_string(),
    })
}

/// One change notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CibDiff {
    /// The operation that caused it (`cib_apply_diff`, `cib_modify`, …).
    pub op: String,
    pub source: CibVersion,
    pub target: CibVersion,
    /// `(operation, path)` of each change; paths name the elements touched.
    pub changes: Vec<(String, String)>,
    /// The whole v2 `<diff>`.
    pub diff: Element,
}

impl CibDiff {
    /// Parses a `<notify t="cib_notify" subt="cib_diff_notify">`; `None` for other messages
    /// or failed operations (which changed nothing).
    pub fn from_notify(msg: &Element) -> Option<CibDiff> {
        if msg.name != "notify" || msg.attr("subt") != Some("cib_diff_notify") {
            return None;
        }
        if msg.attr_i64("cib_rc").unwrap_or(0) != 0 {
            return None;
        }
        let diff = msg.child("cib_update_result")?.child("diff")?;
        let version = diff.child("version")?;
        let changes = diff
            .children
            .iter()
            .filter(|c| c.name == "change")
            .map(|c| {
                (
                    c.attr("operation").unwrap_or("").to_string(),
                    c.attr("path").unwrap_or("").to_string(),
                )
            })
            .collect();
        Some(CibDiff {
            op: msg.attr("cib_op").unwrap_or("").into(),
            source: CibVersion::from_element(version.child("source")?),
            target: CibVersion::from_element(version.child("target")?),
            changes,
            diff: diff.clone(),
        })
    }

    /// Whether it touched the configuration (not only status).
    pub fn touches_configuration(&self) -> bool {
        self.changes
            .iter()
            .any(|(_, p)| p.starts_with("/cib/configuration") || p == "/cib")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Start again from a full read: sent first (so a read after it misses nothing), after a
    /// reconnect, and when a diff does not continue from the previous one.
    Resync {
        reason: String,
    },
    Diff(CibDiff),
    /// The stream ends: no endpoint could be reached again.
    Lost {
        error: String,
    },
}

/// Follows the version chain of diff notifications: each diff must start where the previous
/// one ended, or some change was missed.
#[derive(Debug, Default)]
pub struct VersionChain {
    last: Option<CibVersion>,
}

impl VersionChain {
    /// Records `diff`; returns why a resync is needed if it does not continue the chain.
    pub fn observe(&mut self, diff: &CibDiff) -> Option<String> {
        let gap = match self.last {
            Some(prev) if diff.source != prev => {
                Some(format!("missed changes between {prev} and {}", diff.source))
            }
            _ => None,
        };
        self.last = Some(diff.target);
        gap
    }
}

/// A stream of CIB changes. Dropping it closes its connection.
pub struct Watch {
    rx: mpsc::Receiver<WatchEvent>,
    task: JoinHandle<()>,
}

impl Watch {
    /// The next event; `None` after [`WatchEvent::Lost`].
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }

    /// The receiving half, for callers that prefer the channel itself.
    pub fn receiver(&mut self) -> &mut mpsc::Receiver<WatchEvent> {
        &mut self.rx
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_loop(
    cfg: ClientConfig,
    mut index: usize,
    mut conn: Connection,
    tx: mpsc::Sender<WatchEvent>,
) {
    let mut reason = "subscribed".to_string();
    loop {
        if tx.send(WatchEvent::Resync { reason }).await.is_err() {
            return;
        }
        let mut chain = VersionChain::default();
        let why = loop {
            match conn.recv().await {
                Ok(Some(msg)) => {
                    let Some(diff) = CibDiff::from_notify(&msg) else {
                        continue;
                    };
                    if let Some(reason) = chain.observe(&diff)
                        && tx.send(WatchEvent::Resync { reason }).await.is_err()
                    {
                        return;
                    }
                    if tx.send(WatchEvent::Diff(diff)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break "closed by the server".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        warn!(endpoint = %conn.endpoint, reason = %why, "CIB notification connection lost; reconnecting");
        let next = (index + 1) % cfg.endpoints.len().max(1);
        match connect_and_subscribe(&cfg, next).await {
            Ok((i, c)) => {
                index = i;
                conn = c;
                reason = format!("reconnected after: {why}");
            }
            Err(e) => {
                let _ = tx
                    .send(WatchEvent::Lost {
                        error: e.to_string(),
                    })
                    .await;
                return;
            }
        }
    }
}

/// A new notification connection, starting with endpoint `first`.
async fn connect_and_subscribe(
    cfg: &ClientConfig,
    first: usize,
) -> Result<(usize, Connection), CibError> {
    let (i, mut conn) = connect_any(cfg, first).await?;
    subscribe(&mut conn).await?;
    Ok((i, conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_chain_reports_gaps() {
        let v = |e, n| CibVersion {
            admin_epoch: 0,
            epoch: e,
            num_updates: n,
        };
        let diff = |s, t| CibDiff {
            op: "cib_modify".into(),
            source: s,
            target: t,
            changes: vec![],
            diff: Element::new("diff"),
        };
        let mut chain = VersionChain::default();
        assert_eq!(chain.observe(&diff(v(3, 1), v(3, 2))), None);
        assert_eq!(chain.observe(&diff(v(3, 2), v(4, 0))), None);
        let gap = chain.observe(&diff(v(4, 5), v(4, 6))).expect("a gap");
        assert_eq!(gap, "missed changes between 0.4.0 and 0.4.5");
        assert_eq!(chain.observe(&diff(v(4, 6), v(4, 7))), None);
    }

    #[test]
    fn notify_parsing() {
        let msg = Element::parse(r#"<notify t="cib_notify" subt="cib_diff_notify" cib_op="cib_apply_diff" cib_rc="0"><cib_update_result><diff format="2"><version><source admin_epoch="0" epoch="3" num_updates="4"/><target admin_epoch="0" epoch="4" num_updates="0"/></version><change operation="create" path="/cib/configuration/resources" position="0"><primitive id="x"/></change></diff></cib_update_result></notify>"#).unwrap();
        let d = CibDiff::from_notify(&msg).unwrap();
        assert_eq!(d.source.to_string(), "0.3.4");
        assert_eq!(d.target.to_string(), "0.4.0");
        assert!(d.touches_configuration());
    }
}
