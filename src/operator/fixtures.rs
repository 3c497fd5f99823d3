//! Test doubles for the reconcilers' unit tests: a mocked Kubernetes API server (kube's client
//! over a `tower-test` mock service) that answers from a routing function and records every
//! request, a [`Context`] around it, and [`FakeCib`], a [`CibConnection`] over an in-memory CIB
//! that applies the same plans the real writer would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use http::{Request, Response};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::cib::patch::apply_change;
use crate::cib::plan::{self, removal_plan};
use crate::cib::{ApplyError, CibError, DesiredNode, RemovalError};
use crate::wire::Element;

use super::cluster_connection::{ConnectionError, Snapshot, WriteOutcome};
use super::context::{CibConnection, ClusterSlot, Context};
use super::crd::{PacemakerCluster, RemoteNode};
use super::metrics::Metrics;

/// The controller's namespace in the tests.
pub const NAMESPACE: &str = "kubemaker";

/// One request the mocked API server received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path and query, e.g. `/apis/kubemaker.io/v1alpha1/remotenodes/a/status?`.
    pub path: String,
    /// The JSON body (`Null` when there is none).
    pub body: Value,
}

impl Call {
    /// Whether this is `method` on a path containing `fragment`.
    pub fn is(&self, method: &str, fragment: &str) -> bool {
        self.method == method && self.path.contains(fragment)
    }

    /// The reason of an Event this call creates or updates.
    pub fn event_reason(&self) -> Option<&str> {
        if !self.path.contains("/events") {
            return None;
        }
        self.body["reason"].as_str()
    }
}

/// What the mocked API server answers: status code and JSON body.
pub type Route = Box<dyn Fn(&Call) -> (u16, Value) + Send + Sync>;

/// A mocked API server: every request is recorded, then answered by the route. Events are
/// accepted (echoed back) without asking the route.
pub struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    pub fn start(route: Route) -> (kube::Client, ApiServer) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        let task = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (code, answer) = if call.path.contains("/events") {
                    (201, call.body.clone())
                } else {
                    route(&call)
                };
                recorded.lock().unwrap().push(call);
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap();
                respond.send_response(response);
            }
        });
        let client = kube::Client::new(service, NAMESPACE);
        (client, ApiServer { calls, _task: task })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls other than Events.
    pub fn api_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.event_reason().is_none())
            .collect()
    }

    /// The reasons of the Events published, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.calls()
            .iter()
            .filter_map(|c| c.event_reason().map(str::to_string))
            .collect()
    }
}

/// A Kubernetes `Status` answer, e.g. 404 NotFound.
pub fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": reason, "reason": reason, "code": code,
        }),
    )
}

fn store_of<K>(objects: &[K]) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store::<K>();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o.clone()));
    }
    store
}

/// A Context whose client talks to `server`'s route, with these objects in its caches.
pub fn context(
    client: kube::Client,
    clusters: &[PacemakerCluster],
    remote_nodes: &[RemoteNode],
) -> Arc<Context> {
    context_with_nodes(client, clusters, remote_nodes, &[])
}

/// [`context`] with these Kubernetes Nodes in its cache too.
pub fn context_with_nodes(
    client: kube::Client,
    clusters: &[PacemakerCluster],
    remote_nodes: &[RemoteNode],
    nodes: &[Node],
) -> Arc<Context> {
    context_with_pods(client, clusters, remote_nodes, nodes, &[])
}

/// [`context_with_nodes`] with these remoted pods in its cache too.
pub fn context_with_pods(
    client: kube::Client,
    clusters: &[PacemakerCluster],
    remote_nodes: &[RemoteNode],
    nodes: &[Node],
    remoted_pods: &[Pod],
) -> Arc<Context> {
    let (triggers, _) = broadcast::channel(64);
    Arc::new(Context {
        client: client.clone(),
        namespace: NAMESPACE.into(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "kubemaker-controller".into(),
                instance: Some("test".into()),
            },
        ),
        metrics: Arc::new(Metrics::default()),
        clusters: tokio::sync::Mutex::new(HashMap::new()),
        triggers,
        nodes: store_of(nodes),
        remoted_pods: store_of(remoted_pods),
        remote_nodes: store_of(remote_nodes),
        pacemaker_clusters: store_of(clusters),
        removed_at_once: Default::default(),
        failures: Default::default(),
    })
}

/// Puts `conn` in `ctx` as cluster `name`'s open connection.
pub async fn connect(ctx: &Context, name: &str, fingerprint: u64, conn: Arc<dyn CibConnection>) {
    ctx.clusters
        .lock()
        .await
        .insert(name.to_string(), ClusterSlot { fingerprint, conn });
}

/// A CIB with one cluster node, quorate, and whatever `resources` (XML) holds.
pub fn cib_with(resources: &str) -> Element {
    Element::parse(&format!(
        r#"<cib admin_epoch="0" epoch="5" num_updates="3" dc-uuid="1" have-quorum="1"><configuration><crm_config><cluster_property_set id="cib-bootstrap-options"><nvpair id="o1" name="dc-version" value="2.1.5-a3f44794f94"/></cluster_property_set></crm_config><nodes><node id="1" uname="node1"/></nodes><resources>{resources}</resources><constraints/></configuration><status><node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member"/></status></cib>"#
    ))
    .unwrap()
}

/// An in-memory CIB connection: writes and removals change its CIB as the real writer's
/// transactions would; `fail_with` makes every write and removal fail with that message.
pub struct FakeCib {
    snapshot: Mutex<Arc<Snapshot>>,
    pub fail_with: Option<String>,
    /// Names of the nodes written, one entry per call.
    pub writes: Mutex<Vec<String>>,
    /// Names of the nodes removed, one entry per call.
    pub removals: Mutex<Vec<String>>,
    /// Names of the nodes removed in one write, one entry per call.
    pub removed_at_once: Mutex<Vec<Vec<String>>>,
}

impl FakeCib {
    pub fn new(cib: Element) -> FakeCib {
        FakeCib {
            snapshot: Mutex::new(Arc::new(Snapshot::new(cib))),
            fail_with: None,
            writes: Mutex::default(),
            removals: Mutex::default(),
            removed_at_once: Mutex::default(),
        }
    }

    pub fn failing(cib: Element, message: &str) -> FakeCib {
        FakeCib {
            fail_with: Some(message.into()),
            ..FakeCib::new(cib)
        }
    }

    /// A change made outside kubemaker (an administrator's `pcs`/`crm`).
    pub fn edit(&self, change: impl FnOnce(&mut Element)) {
        let mut snapshot = self.snapshot.lock().unwrap();
        let mut cib = snapshot.cib.clone();
        change(&mut cib);
        *snapshot = Arc::new(Snapshot::new(cib));
    }

    fn apply(&self, plan: plan::Plan) -> Vec<String> {
        let mut snapshot = self.snapshot.lock().unwrap();
        let mut cib = snapshot.cib.clone();
        let described = plan.changes().map(|c| c.describe()).collect();
        for change in plan.changes() {
            apply_change(&mut cib, change).unwrap();
        }
        *snapshot = Arc::new(Snapshot::new(cib));
        described
    }
}

/// The error of a CIB that cannot be reached, naming `what` as the endpoint tried.
fn unreachable(what: &str) -> ApplyError {
    ApplyError::Cib(CibError::Unreachable {
        tried: vec![what.to_string()],
    })
}

impl CibConnection for FakeCib {
    fn is_alive(&self) -> bool {
        true
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.lock().unwrap().clone()
    }

    fn write(&self, desired: DesiredNode) -> BoxFuture<'_, Result<WriteOutcome, ConnectionError>> {
        Box::pin(async move {
            self.writes.lock().unwrap().push(desired.name.clone());
            if let Some(m) = &self.fail_with {
                return Err(ConnectionError::Write(unreachable(m)));
            }
            let plan = plan::plan(std::slice::from_ref(&desired), &self.snapshot().cib);
            if plan.is_empty() {
                return Ok(WriteOutcome::Unchanged);
            }
            Ok(WriteOutcome::Written(self.apply(plan)))
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<usize, ConnectionError>> {
        Box::pin(async move {
            self.removals.lock().unwrap().push(name.to_string());
            if let Some(m) = &self.fail_with {
                return Err(ConnectionError::Removal(RemovalError::Stop(unreachable(m))));
            }
            let plan = removal_plan(&self.snapshot().cib, name);
            self.apply(plan);
            Ok(1)
        })
    }

    fn remove_at_once<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<usize, ConnectionError>> {
        Box::pin(async move {
            self.removed_at_once.lock().unwrap().push(names.to_vec());
            if let Some(m) = &self.fail_with {
                return Err(ConnectionError::Removal(RemovalError::Delete(unreachable(
                    m,
                ))));
            }
            for name in names {
                let plan = removal_plan(&self.snapshot().cib, name);
                self.apply(plan);
            }
            Ok(1)
        })
    }
}

/// A Ready remoted pod of the chart on Kubernetes Node `node`, host-network address `ip`.
pub fn remoted_pod(node: &str, ip: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("remoted-{node}"), "namespace": NAMESPACE,
                     "uid": format!("uid-{node}"),
                     "labels": {"app.kubernetes.io/component": "remoted"}},
        "spec": {"nodeName": node, "containers": []},
        "status": {"podIP": ip, "hostIP": ip,
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("a valid Pod")
}
