//! A Kubernetes API server for tests: in memory, plain HTTP on 127.0.0.1:0, no
//! authentication, serving the REST API well enough that production code using a real
//! `kube::Client` (typed `Api`s, `DynamicObject`s, discovery, `kube::runtime::watcher`
//! and reflectors, server-side apply, leader election on a Lease) behaves as against a
//! real server.
//!
//! ```text
//! TestApiServer ── hyper (server.rs) ── route ─> read.rs   get, list
//!                                           ├──> write.rs  create, replace, patch,
//!                                           │              apply (apply.rs)
//!                                           ├──> delete.rs object, collection
//!                                           └──> watch.rs  streaming JSON lines
//!      Shared { RwLock<Store>, gc: Notify }
//!      Store { registry (built-ins + CRDs), objects, rv counter, history, broadcast }
//!      gc task: ownerReferences cascade, foreground deletion, namespace termination
//! ```
//!
//! What it shares with a real server (v1.36), because the operator meets it: list and
//! watch with resourceVersions, bookmarks and 410 Gone for versions older than the
//! retained history ([`TestApiServer::compact`] forces that); create/update/delete
//! with optimistic concurrency; JSON merge, JSON and server-side-apply patches with
//! field-manager conflicts; the status subresource (writes to `.status` through the
//! main resource are ignored, `metadata.generation` moves only on spec changes); label
//! and field selectors; namespaces (writes into a missing one are 404, into a
//! terminating one 403); finalizers; ownerReference garbage collection in the
//! background; CRD registration with schema defaulting, pruning and validation;
//! EndpointSlice addresses in the loopback range rejected.
//!
//! What it does not do: authentication and authorization (RBAC objects are not even
//! served), admission webhooks and ValidatingAdmissionPolicies (stored, not evaluated),
//! CEL rules of CRDs, conversion webhooks, protobuf, controllers (no Deployment makes a
//! Pod, no EndpointSlice controller, no scheduler or kubelet), strategic merge patch
//! semantics (handled as JSON merge patch for built-in kinds), consistent snapshots for
//! paginated lists.

mod admission;
mod apply;
mod delete;
mod discovery;
mod error;
mod fieldset;
mod gc;
mod read;
mod resources;
mod schema;
mod selector;
mod server;
mod store;
mod watch;
mod write;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::{JoinHandle, JoinSet};

pub use error::TestApiServerError;

use read::Scope;
use server::Shared;
use store::Store;
use write::{PatchType, WriteOpts};

/// The field manager of objects applied from files by [`TestApiServer::apply_file`].
pub const APPLY_FIELD_MANAGER: &str = "portico-testkit";

/// Options of a [`TestApiServer`].
#[derive(Debug, Clone)]
pub struct TestApiServerBuilder {
    history: usize,
    bookmark_interval: Duration,
}

impl Default for TestApiServerBuilder {
    fn default() -> Self {
        TestApiServerBuilder {
            history: 10_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

impl TestApiServerBuilder {
    /// How many changes are kept for watches that resume from a resourceVersion; a watch
    /// from before the oldest kept change gets 410 Gone. Default 10000.
    pub fn history(mut self, changes: usize) -> Self {
        self.history = changes;
        self
    }

    /// How often watches that allow bookmarks get one. Default 5 s (a real server: about
    /// a minute).
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Binds 127.0.0.1:0 and serves; namespaces `default`, `kube-system`, `kube-public`
    /// and `kube-node-lease` exist from the start, as in a new cluster.
    pub async fn start(self) -> Result<TestApiServer, TestApiServerError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(TestApiServerError::Bind)?;
        let addr = listener.local_addr().map_err(TestApiServerError::Bind)?;
        let mut store = Store::new(self.history);
        bootstrap(&mut store);
        let shared = Arc::new(Shared::new(store, self.bookmark_interval, addr));
        let (stop, stopped) = signal::channel(false);
        let serving = Serving::spawn(listener, shared.clone(), stopped.clone());
        let gc = tokio::spawn(gc_loop(shared.clone(), stopped));
        tracing::debug!(%addr, "test API server listening");
        Ok(TestApiServer {
            addr,
            shared,
            stop,
            serving: Some(serving),
            tasks: vec![gc],
        })
    }
}

fn bootstrap(store: &mut Store) {
    let Some(rt) = store.registry.get("", "namespaces") else {
        return;
    };
    let scope = Scope {
        rt,
        version: "v1".into(),
        namespace: None,
    };
    let opts = WriteOpts {
        manager: "kube-apiserver".into(),
        ..WriteOpts::default()
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        if let Err(e) = write::create(store, &scope, obj, &opts) {
            tracing::warn!(namespace = ns, error = %e.message, "bootstrap namespace");
        }
    }
}

/// The accept loop of one period of serving (between [`TestApiServer::stop_serving`]
/// and [`TestApiServer::resume_serving`]), ended by the server's stop or its own.
#[derive(Debug)]
struct Serving {
    stop: signal::Sender<bool>,
    task: JoinHandle<()>,
}

impl Serving {
    fn spawn(listener: TcpListener, shared: Arc<Shared>, stopped: signal::Receiver<bool>) -> Self {
        let (stop, paused) = signal::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, stopped, paused));
        Serving { stop, task }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: signal::Receiver<bool>,
    mut paused: signal::Receiver<bool>,
) {
    // Dropping the set at the end aborts every connection, open watches included.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = paused.changed() => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "test API server accept");
                        continue;
                    }
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| server::handle(shared.clone(), req));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "test API server connection");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn gc_loop(shared: Arc<Shared>, mut stopped: signal::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = shared.gc.notified() => {
                let n = gc::collect(&mut shared.write());
                if n > 0 {
                    tracing::debug!(writes = n, "test API server garbage collection");
                }
            }
        }
    }
}

/// A running test API server. Dropping it stops it too; [`TestApiServer::shutdown`]
/// also waits for its tasks.
#[derive(Debug)]
pub struct TestApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: signal::Sender<bool>,
    /// The accept loop while serving; `None` between `stop_serving` and
    /// `resume_serving`.
    serving: Option<Serving>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long [`TestApiServer::resume_serving`] retries binding its old port.
const REBIND_FOR: Duration = Duration::from_secs(5);

impl TestApiServer {
    /// Starts a server with default options.
    pub async fn start() -> Result<TestApiServer, TestApiServerError> {
        TestApiServerBuilder::default().start().await
    }

    /// Options before starting.
    pub fn builder() -> TestApiServerBuilder {
        TestApiServerBuilder::default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address (127.0.0.1 and the port the OS chose).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube config for this server: no auth, default namespace `default`.
    pub fn config(&self) -> Result<kube::Config, TestApiServerError> {
        let uri: http::Uri =
            self.url()
                .parse()
                .map_err(|e: http::uri::InvalidUri| TestApiServerError::Client {
                    url: self.url(),
                    source: Box::new(e),
                })?;
        Ok(kube::Config::new(uri))
    }

    /// A kube client for this server.
    pub fn client(&self) -> Result<kube::Client, TestApiServerError> {
        kube::Client::try_from(self.config()?).map_err(|e| TestApiServerError::Client {
            url: self.url(),
            source: Box::new(e),
        })
    }

    /// The kubeconfig of this server as YAML (context `portico-test`, no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: portico-test\n  cluster:\n    server: {url}\n\
             contexts:\n- name: portico-test\n  context:\n    cluster: portico-test\n    user: portico-test\n    namespace: default\n\
             current-context: portico-test\nusers:\n- name: portico-test\n  user: {{}}\n",
            url = self.url()
        )
    }

    /// Writes the kubeconfig to `path` (atomically), for processes run with
    /// `--kubeconfig`.
    pub fn kubeconfig(&self, path: impl AsRef<Path>) -> Result<PathBuf, TestApiServerError> {
        let path = path.as_ref();
        let io = |source| TestApiServerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io(std::io::Error::other("not a file name")))?;
        crate::write_file(dir, name, self.kubeconfig_yaml()).map_err(io)
    }

    /// Applies every `.yaml`/`.yml` file of `dir` (in name order), as `kubectl apply
    /// --server-side --force-conflicts` would: CRDs register their resources at once,
    /// other kinds are stored. Returns `kind/name` of each object applied.
    pub fn apply_crds_from(
        &self,
        dir: impl AsRef<Path>,
    ) -> Result<Vec<String>, TestApiServerError> {
        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir).map_err(|source| TestApiServerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        // CRDs first: other documents of the folder may be of the kinds they define.
        let mut applied = Vec::new();
        for crds_only in [true, false] {
            for f in &files {
                applied.extend(self.apply_file_filtered(f, Some(crds_only))?);
            }
        }
        Ok(applied)
    }

    /// Applies every document of one YAML file. Returns `kind/name` of each.
    pub fn apply_file(&self, path: impl AsRef<Path>) -> Result<Vec<String>, TestApiServerError> {
        self.apply_file_filtered(path.as_ref(), None)
    }

    fn apply_file_filtered(
        &self,
        path: &Path,
        crds: Option<bool>,
    ) -> Result<Vec<String>, TestApiServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| TestApiServerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut applied = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).map_err(|e| TestApiServerError::Manifest {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            if v.is_null() {
                continue;
            }
            let is_crd = v["kind"] == "CustomResourceDefinition";
            if crds.is_some_and(|want| want != is_crd) {
                continue;
            }
            applied.push(self.apply_value(path, &v)?);
        }
        Ok(applied)
    }

    fn apply_value(&self, path: &Path, v: &Value) -> Result<String, TestApiServerError> {
        let text = |x: &Value| x.as_str().unwrap_or_default().to_string();
        let (api_version, kind, name) = (
            text(&v["apiVersion"]),
            text(&v["kind"]),
            text(&v["metadata"]["name"]),
        );
        let rejected = |message: String| TestApiServerError::Rejected {
            path: path.to_path_buf(),
            kind: kind.clone(),
            name: name.clone(),
            message,
        };
        let mut store = self.shared.write();
        let rt = store
            .registry
            .by_kind(&api_version, &kind)
            .ok_or_else(|| rejected(format!("no resource serves {api_version} {kind}")))?;
        let namespace = rt.namespaced.then(|| {
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        });
        let scope = Scope {
            version: resources::split_api_version(&api_version).1.to_string(),
            rt,
            namespace,
        };
        let opts = WriteOpts {
            manager: APPLY_FIELD_MANAGER.to_string(),
            force: true,
            ..WriteOpts::default()
        };
        write::patch(
            &mut store,
            &scope,
            &name,
            PatchType::Apply,
            v.to_string().as_bytes(),
            &opts,
        )
        .map_err(|e| rejected(e.message))?;
        drop(store);
        self.shared.gc.notify_one();
        Ok(format!("{kind}/{name}"))
    }

    /// Forgets the watch history and ends every open watch, like a real server whose
    /// watch cache lost its window: watchers resuming from any resourceVersion seen so
    /// far get 410 Gone and must relist.
    pub fn compact(&self) {
        self.shared.write().compact();
    }

    /// Ends every open watch (clients resume from their last resourceVersion).
    pub fn close_watches(&self) {
        self.shared.read().close_watches();
    }

    /// The current resourceVersion (the last one handed out).
    pub fn resource_version(&self) -> u64 {
        self.shared.read().current_rv()
    }

    /// Goes away as a crashed or partitioned API server does, keeping its objects: the
    /// port is closed (connecting is refused), open connections and watches end. Waits
    /// (bounded) for the accept loop. [`TestApiServer::resume_serving`] comes back.
    pub async fn stop_serving(&mut self) {
        let Some(serving) = self.serving.take() else {
            return;
        };
        let _ = serving.stop.send(true);
        self.shared.read().close_watches();
        if tokio::time::timeout(Duration::from_secs(5), serving.task)
            .await
            .is_err()
        {
            tracing::warn!("test API server accept loop did not stop within 5s");
        }
        tracing::debug!(addr = %self.addr, "test API server stopped serving");
    }

    /// Serves again on the same address with the same objects and resourceVersions,
    /// after [`TestApiServer::stop_serving`] (nothing to do while serving). Binding
    /// is retried for a few seconds; it fails when another socket took the port.
    pub async fn resume_serving(&mut self) -> Result<(), TestApiServerError> {
        if self.serving.is_some() {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        let listener = loop {
            // tokio sets SO_REUSEADDR: the old connections' TIME_WAIT does not block.
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if started.elapsed() >= REBIND_FOR => {
                    return Err(TestApiServerError::Bind(e));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let stopped = self.stop.subscribe();
        self.serving = Some(Serving::spawn(listener, self.shared.clone(), stopped));
        tracing::debug!(addr = %self.addr, "test API server serving again");
        Ok(())
    }

    /// Stops serving: open connections and watches end; waits (bounded) for the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.shared.read().close_watches();
        self.tasks.extend(self.serving.take().map(|s| s.task));
        for t in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("test API server task did not stop within 5s");
            }
        }
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in self
            .tasks
            .iter()
            .chain(self.serving.iter().map(|s| &s.task))
        {
            t.abort();
        }
    }
}
