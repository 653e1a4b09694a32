//! A simulated Kubernetes API server for tests, demos and benchmarks: an HTTP/1.1 server on
//! loopback that answers like kube-apiserver with kubelets behind it for everything a log
//! tailer touches. Start one with [`Sim::start`] from a [`Scenario`]; act on it at runtime
//! with a [`SimHandle`]; ask it what each container really wrote with [`SimHandle::truth`].
//!
//! It is not a general apiserver: no writes besides reviews, no other resources than the
//! ones a log tailer reads.
//!
//! ```no_run
//! use kubesim::{Container, LogSource, Pod, Rule, Scenario, Sim, SimOptions, User};
//!
//! # async fn example() -> Result<(), kubesim::Error> {
//! let scenario = Scenario::new("shop")
//!     .user(User::new("alice").rule(Rule::all()))
//!     .pod(
//!         Pod::new("web-0")
//!             .label("app", "web")
//!             .container(Container::new("app").line(-5.0, "started").generate(LogSource::new(10.0))),
//!     );
//! let sim = Sim::start(scenario, SimOptions::default()).await?;
//! sim.write_kubeconfig("/tmp/kubeconfig", "alice").ok();
//! let handle = sim.handle();
//! handle.restart_container("shop", "web-0", "app", 137, "OOMKilled");
//! let written = handle.truth("shop", "web-0", "app");
//! assert!(!written.is_empty());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod cluster;
mod http;
pub mod logs;
mod objects;
pub mod proto;
mod proxy;
pub mod rbac;
mod review;
pub mod scenario;
pub mod select;
mod stream;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use logs::TruthLine;
pub use scenario::{
    Action, Container, ContainerKind, ContainerState, Cut, CutMode, LogLine, LogSource, Pod, Rule,
    Scenario, ScenarioError, Service, ServiceAccount, ServicePort, TimedAction, User, Workload,
    WriteLine,
};

use cluster::{Cluster, Limits};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario is inconsistent.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The TLS material could not be generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listening socket could not be bound.
    #[error("binding 127.0.0.1:{port} failed; choose another port or 0 for any: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The socket error.
        source: std::io::Error,
    },
}

/// How the simulator runs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Serve HTTPS with a generated CA (default); plain HTTP when false.
    pub tls: bool,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Requests without a token are this user; without it they are `system:anonymous`.
    pub anonymous_user: Option<String>,
    /// Serve `GET /kubesim/truth/{ns}/{pod}/{container}` and `GET /kubesim/requests`.
    pub truth_endpoint: bool,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Watch events kept for resuming; older resource versions are Expired.
    pub watch_history: usize,
    /// Truth lines kept per container (oldest dropped first); 0 keeps none.
    pub truth_lines: usize,
    /// Requests kept in the request record.
    pub request_log: usize,
    /// How often generators write their due lines.
    pub generate_interval: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tls: true,
            port: 0,
            anonymous_user: None,
            truth_endpoint: false,
            bookmark_interval: Duration::from_secs(5),
            watch_history: 10_000,
            truth_lines: 200_000,
            request_log: 100_000,
            generate_interval: Duration::from_millis(10),
        }
    }
}

/// A request that reached the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Decoded query pairs, in order, without the empty pair of `?&`.
    pub query: Vec<(String, String)>,
    /// The authenticated user, if any.
    pub user: Option<String>,
}

/// A running simulator.
pub struct Sim {
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    namespace: String,
    users: Vec<(String, String)>,
    handle: SimHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Acts on a running simulator; cheap to clone and usable from any thread.
#[derive(Clone)]
pub struct SimHandle {
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("start", &self.cluster.start)
            .finish()
    }
}

impl Sim {
    /// Starts the simulator on 127.0.0.1: binds, then serves until [`Sim::shutdown`].
    pub async fn start(scenario: Scenario, options: SimOptions) -> Result<Sim, Error> {
        scenario.validate()?;
        let certs = if options.tls {
            Some(tls::generate()?)
        } else {
            None
        };
        let listener = TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|source| Error::Bind {
                port: options.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            port: options.port,
            source,
        })?;

        let cluster = Cluster::new(
            &scenario,
            Limits {
                watch_history: options.watch_history.max(1),
                truth_lines: options.truth_lines,
                request_log: options.request_log.max(1),
            },
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(http::Ctx {
            cluster: cluster.clone(),
            server_address: addr.to_string(),
            anonymous_user: options.anonymous_user.clone(),
            truth_endpoint: options.truth_endpoint,
            bookmark_interval: options.bookmark_interval.max(Duration::from_millis(10)),
            tls: options.tls,
            shutdown: shutdown_rx.clone(),
        });

        let mut tasks = Vec::new();
        let acceptor = certs
            .as_ref()
            .map(|c| tokio_rustls::TlsAcceptor::from(c.server_config.clone()));
        tasks.push(tokio::spawn(accept_loop(
            listener,
            acceptor,
            ctx,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(generate_loop(
            cluster.clone(),
            options.generate_interval.max(Duration::from_millis(1)),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(timeline_loop(
            cluster.clone(),
            scenario.timeline.clone(),
            shutdown_rx,
        )));

        let mut users: Vec<(String, String)> = scenario
            .users
            .iter()
            .map(|u| (u.name.clone(), u.token()))
            .collect();
        users.extend(
            scenario
                .service_accounts
                .iter()
                .map(|s| (s.user_name(), s.token())),
        );
        tracing::info!(%addr, tls = options.tls, "kubesim listening");
        Ok(Sim {
            addr,
            tls: options.tls,
            ca_pem: certs.map(|c| c.ca_pem),
            namespace: scenario.default_namespace.clone(),
            users,
            handle: SimHandle { cluster },
            shutdown,
            tasks,
        })
    }

    /// The server URL, `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) clients must trust; `None` without TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The bearer token of a scenario user or service account (by user name).
    pub fn token(&self, user: &str) -> Option<String> {
        self.users
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, token)| token.clone())
    }

    /// A kubeconfig (YAML) with one context per user (named like the user), the CA, and
    /// `default_user`'s context current; every context points at the default namespace.
    pub fn kubeconfig(&self, default_user: &str) -> String {
        use base64::Engine;
        let mut cluster = serde_json::json!({"server": self.url()});
        if let (Some(ca), Some(map)) = (&self.ca_pem, cluster.as_object_mut()) {
            let data = base64::engine::general_purpose::STANDARD.encode(ca);
            map.insert(
                "certificate-authority-data".to_string(),
                serde_json::json!(data),
            );
        }
        let contexts: Vec<serde_json::Value> = self
            .users
            .iter()
            .map(|(name, _)| {
                serde_json::json!({"name": name, "context": {
                    "cluster": "kubesim", "user": name, "namespace": self.namespace}})
            })
            .collect();
        let users: Vec<serde_json::Value> = self
            .users
            .iter()
            .map(|(name, token)| serde_json::json!({"name": name, "user": {"token": token}}))
            .collect();
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubesim", "cluster": cluster}],
            "contexts": contexts,
            "users": users,
            "current-context": default_user,
            "preferences": {},
        });
        serde_yaml::to_string(&config).unwrap_or_default()
    }

    /// Writes [`Sim::kubeconfig`] to `path`.
    pub fn write_kubeconfig(
        &self,
        path: impl AsRef<std::path::Path>,
        default_user: &str,
    ) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig(default_user))
    }

    /// A handle to act on the running simulator.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops serving: open streams end and the port is released.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Dropping a simulator stops it too, without waiting for its tasks.
impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl SimHandle {
    /// Applies any timeline action now.
    pub fn apply(&self, action: Action) {
        self.cluster.apply(&action);
    }

    /// Adds a pod.
    pub fn add_pod(&self, pod: Pod) {
        self.cluster.add_pod(&pod);
    }

    /// Deletes a pod.
    pub fn delete_pod(&self, ns: &str, name: &str) {
        self.cluster.delete_pod(ns, name);
    }

    /// Restarts a container: a new container ID, the old run kept for `previous`.
    pub fn restart_container(&self, ns: &str, pod: &str, c: &str, exit_code: i32, reason: &str) {
        self.apply(Action::RestartContainer {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            container: c.to_string(),
            exit_code,
            reason: reason.to_string(),
            backoff_seconds: None,
        });
    }

    /// Ends a container's run and restarts it after `backoff`, as the kubelet does with a
    /// container that keeps failing. Watchers see the exit, then the container waiting in
    /// `CrashLoopBackOff` with the run in `lastState.terminated` (same container ID and
    /// restart count, not ready, the pod still Running); log reads then serve that run and
    /// a follow of it ends. When the back-off is over a new instance runs (new container ID,
    /// restart count one higher, ready), announced by one more MODIFIED event. The start
    /// happens on the simulator's generate tick. A zero `backoff` is
    /// [`SimHandle::restart_container`].
    pub fn restart_container_after(
        &self,
        ns: &str,
        pod: &str,
        c: &str,
        exit_code: i32,
        reason: &str,
        backoff: Duration,
    ) {
        self.apply(Action::RestartContainer {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            container: c.to_string(),
            exit_code,
            reason: reason.to_string(),
            backoff_seconds: Some(backoff.as_secs_f64()),
        });
    }

    /// Binds an unscheduled pod to a node.
    pub fn schedule_pod(&self, ns: &str, pod: &str, node: &str) {
        self.apply(Action::SchedulePod {
            namespace: ns.to_string(),
            name: pod.to_string(),
            node: node.to_string(),
        });
    }

    /// Starts a waiting container.
    pub fn start_container(&self, ns: &str, pod: &str, c: &str) {
        self.apply(Action::StartContainer {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            container: c.to_string(),
        });
    }

    /// Terminates a container; following streams end cleanly.
    pub fn terminate_container(&self, ns: &str, pod: &str, c: &str, exit_code: i32, reason: &str) {
        self.apply(Action::TerminateContainer {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            container: c.to_string(),
            exit_code,
            reason: reason.to_string(),
        });
    }

    /// Rotates a container's log file.
    pub fn rotate_log(&self, ns: &str, pod: &str, c: &str) {
        self.apply(Action::RotateLog {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            container: c.to_string(),
        });
    }

    /// Makes a running container write one line of text now.
    pub fn write_line(&self, ns: &str, pod: &str, c: &str, text: &str) {
        self.write_bytes(ns, pod, c, text.as_bytes());
    }

    /// Makes a running container write one line of any bytes now, valid UTF-8 or not, as a
    /// real container may; they reach log readers unchanged. `bytes` is the line without its
    /// newline.
    pub fn write_bytes(&self, ns: &str, pod: &str, c: &str, bytes: &[u8]) {
        self.apply(Action::WriteLine(WriteLine {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            container: c.to_string(),
            bytes: bytes::Bytes::copy_from_slice(bytes),
        }));
    }

    /// Ends the open log streams the cut selects.
    pub fn cut_log_streams(&self, cut: Cut) {
        self.apply(Action::CutLogStreams { cut });
    }

    /// Ends the open watch streams the cut selects.
    pub fn cut_watch_streams(&self, cut: Cut) {
        self.apply(Action::CutWatchStreams { cut });
    }

    /// Fails the next `n` API requests with `status_code` (429, 500, 503, 504).
    pub fn fail_next(&self, n: u32, status_code: u16, retry_after: Option<u32>) {
        self.apply(Action::FailNext {
            count: n,
            code: status_code,
            retry_after,
        });
    }

    /// Delays every response by `delay` (zero ends it).
    pub fn set_delay(&self, delay: Duration) {
        self.apply(Action::SetDelay {
            millis: delay.as_millis() as u64,
        });
    }

    /// Points a service's proxy at a backend (adding the service if needed).
    pub fn set_service_backend(&self, ns: &str, svc: &str, addr: SocketAddr) {
        self.cluster.set_service_backend(ns, svc, addr);
    }

    /// Every line the container wrote, across restarts, oldest first.
    pub fn truth(&self, ns: &str, pod: &str, c: &str) -> Vec<TruthLine> {
        self.cluster.truth(ns, pod, c)
    }

    /// Every request that reached the API, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.cluster.requests()
    }

    /// The current container ID of a container, if it has one.
    pub fn container_id(&self, ns: &str, pod: &str, c: &str) -> Option<String> {
        let state = self.cluster.state();
        let pod = state.pods.get(&(ns.to_string(), pod.to_string()))?;
        pod.container(c)
            .map(|c| c.id.clone())
            .filter(|id| !id.is_empty())
    }

    /// How many lines containers have written since start (history lines not counted).
    pub fn lines_written(&self) -> u64 {
        self.cluster
            .lines_written
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// When the simulator started; scenario times are relative to it.
    pub fn start_time(&self) -> chrono::DateTime<chrono::Utc> {
        self.cluster.start
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    ctx: Arc<http::Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            serve_connection(TokioIo::new(tls), ctx, remote, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %remote, "tls handshake failed"),
                        Err(_) => tracing::debug!(%remote, "tls handshake timed out"),
                    }
                }
                None => serve_connection(TokioIo::new(stream), ctx, remote, shutdown).await,
            }
        });
    }
}

async fn serve_connection<I>(
    io: I,
    ctx: Arc<http::Ctx>,
    remote: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| http::serve(ctx.clone(), req, remote));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.changed() => Ok(()),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %remote, "connection ended with an error");
    }
}

async fn generate_loop(
    cluster: Arc<Cluster>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => cluster.advance(),
            _ = shutdown.changed() => return,
        }
    }
}

async fn timeline_loop(
    cluster: Arc<Cluster>,
    timeline: Vec<TimedAction>,
    mut shutdown: watch::Receiver<bool>,
) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    let origin = tokio::time::Instant::now();
    let mut queue: BinaryHeap<Reverse<(u64, usize)>> = timeline
        .iter()
        .enumerate()
        .map(|(i, t)| Reverse(((t.at.max(0.0) * 1e3) as u64, i)))
        .collect();
    while let Some(Reverse((millis, index))) = queue.pop() {
        let Some(due) = origin.checked_add(Duration::from_millis(millis)) else {
            // Beyond what an instant can hold: it never comes.
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = shutdown.changed() => return,
        }
        let Some(timed) = timeline.get(index) else {
            continue;
        };
        tracing::debug!(at = timed.at, action = ?timed.action, "timeline action");
        cluster.apply(&timed.action);
        if let Some(every) = timed.every.filter(|e| *e > 0.0) {
            let next = millis.saturating_add((every * 1e3).max(1.0) as u64);
            queue.push(Reverse((next, index)));
        }
    }
}
