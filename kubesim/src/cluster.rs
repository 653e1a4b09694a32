//! The simulated cluster's state: pods and their containers, the watch history, services,
//! workloads, identities, faults and the request record. The HTTP layer reads it; the
//! timeline, the log generators and [`crate::SimHandle`] change it through [`Cluster::apply`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::logs::{LogBox, TimedLine, TruthLine};
use crate::rbac::{API_AUDIENCE, Identity};
use crate::scenario::{
    Action, Container, ContainerKind, ContainerState, Cut, LogSource, Pod, Scenario, Service,
    ServicePort, Workload, WriteLine,
};
use crate::{RequestRecord, objects};

/// Injected failures and delays.
#[derive(Debug, Clone)]
pub(crate) struct Faults {
    pub fail_remaining: u32,
    pub fail_code: u16,
    pub retry_after: Option<u32>,
    pub delay: Duration,
}

/// One container's runtime record.
#[derive(Debug)]
pub(crate) struct ContainerRec {
    pub name: String,
    pub kind: ContainerKind,
    pub image: String,
    pub state: CState,
    pub last: Option<Terminated>,
    pub restarts: i32,
    pub id: String,
    pub logs: Arc<LogBox>,
    pub generator: Option<GenState>,
    pub pending: VecDeque<(f64, Bytes)>,
    /// Set while the kubelet holds a restart back: the next instance starts at its end.
    pub backoff: Option<BackOff>,
}

/// A restart held back after a failed run, as the kubelet's crash-loop back-off does.
#[derive(Debug, Clone)]
pub(crate) struct BackOff {
    /// When the next instance starts.
    pub until: DateTime<Utc>,
    /// The waiting state's message: `back-off 10s restarting failed container=...`.
    pub message: String,
}

/// How a container stops.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// It stays terminated.
    Terminate,
    /// A new instance starts at once.
    Restart,
    /// It waits in `CrashLoopBackOff` for this long, then a new instance starts.
    RestartAfter(Duration),
}

/// A terminated state.
#[derive(Debug, Clone)]
pub(crate) struct Terminated {
    pub exit_code: i32,
    pub reason: Option<String>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub id: String,
}

/// The state of a container.
#[derive(Debug, Clone)]
pub(crate) enum CState {
    Running { started: DateTime<Utc> },
    Waiting { reason: String },
    Terminated(Terminated),
}

/// A generator's progress.
#[derive(Debug)]
pub(crate) struct GenState {
    source: LogSource,
    origin: DateTime<Utc>,
    emitted: u64,
    rng: u64,
}

/// One pod's runtime record.
#[derive(Debug)]
pub(crate) struct PodRec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node: Option<String>,
    pub ip: String,
    pub created: DateTime<Utc>,
    pub resource_version: u64,
    pub deleting: Option<DateTime<Utc>>,
    pub containers: Vec<ContainerRec>,
}

impl PodRec {
    /// The value of a field-selector field.
    pub fn field(&self, field: &str) -> String {
        match field {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.namespace.clone(),
            "spec.nodeName" => self.node.clone().unwrap_or_default(),
            "status.phase" => self.phase().to_string(),
            _ => String::new(),
        }
    }

    /// The pod phase, derived from its containers like the kubelet does. A container that
    /// exited and will be started again (the pods here restart always) keeps the pod
    /// Running.
    pub fn phase(&self) -> &'static str {
        if self.node.is_none() {
            return "Pending";
        }
        let regular: Vec<&ContainerRec> = self
            .containers
            .iter()
            .filter(|c| c.kind == ContainerKind::Regular)
            .collect();
        if regular.iter().any(|c| c.runs_or_restarts()) {
            return "Running";
        }
        if !regular.is_empty()
            && regular
                .iter()
                .all(|c| matches!(c.state, CState::Terminated(_)))
        {
            let ok = regular
                .iter()
                .all(|c| matches!(&c.state, CState::Terminated(t) if t.exit_code == 0));
            return if ok { "Succeeded" } else { "Failed" };
        }
        "Pending"
    }

    /// The container with this name.
    pub fn container(&self, name: &str) -> Option<&ContainerRec> {
        self.containers.iter().find(|c| c.name == name)
    }
}

impl ContainerRec {
    /// Running, or between runs: exited and due to start again (waiting with a last
    /// terminated state, or held in a back-off).
    fn runs_or_restarts(&self) -> bool {
        match &self.state {
            CState::Running { .. } => true,
            CState::Waiting { .. } => self.last.is_some() || self.backoff.is_some(),
            CState::Terminated(_) => self.backoff.is_some(),
        }
    }
}

/// A watch event with what selectors need to filter it.
#[derive(Debug)]
pub(crate) struct WatchEvent {
    pub resource_version: u64,
    pub kind: &'static str,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub fields: HashMap<&'static str, String>,
    pub object: Value,
    /// The pod's Table row at the time of the event, for `as=Table` watches.
    pub row: Value,
}

/// A service's runtime record.
#[derive(Debug, Clone)]
pub(crate) struct ServiceRec {
    pub ports: Vec<ServicePort>,
    pub backend: Option<SocketAddr>,
    pub created: DateTime<Utc>,
    pub uid: String,
}

/// Settings the state needs from the options.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub watch_history: usize,
    pub truth_lines: usize,
    pub request_log: usize,
}

pub(crate) struct State {
    pub resource_version: u64,
    pub compacted_resource_version: u64,
    pub namespaces: BTreeSet<String>,
    pub pods: BTreeMap<(String, String), PodRec>,
    pub history: VecDeque<Arc<WatchEvent>>,
    pub logs: HashMap<(String, String, String), Arc<LogBox>>,
    pub services: BTreeMap<(String, String), ServiceRec>,
    pub workloads: Vec<Workload>,
    pub identities: HashMap<String, Identity>,
    pub next_ip: u32,
    /// Containers held in a back-off: (namespace, pod, container).
    pub backing_off: BTreeSet<(String, String, String)>,
}

/// The whole simulated cluster.
pub(crate) struct Cluster {
    pub start: DateTime<Utc>,
    pub default_namespace: String,
    log_max_bytes: usize,
    limits: Limits,
    state: Mutex<State>,
    pub watch_tx: broadcast::Sender<Arc<WatchEvent>>,
    pub log_cuts: broadcast::Sender<Cut>,
    pub watch_cuts: broadcast::Sender<Cut>,
    requests: Mutex<VecDeque<RequestRecord>>,
    faults: Mutex<Faults>,
    /// Lines written by generators, fixed future lines and WriteLine, since start.
    pub lines_written: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A random container ID in the containerd form.
pub(crate) fn new_container_id() -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("containerd://{hex}")
}

/// A random UID in the UUID form.
pub(crate) fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `start` plus `secs` seconds, clamped to what a time can hold.
fn at(start: DateTime<Utc>, secs: f64) -> DateTime<Utc> {
    // About 290 years either way: as far as nanoseconds in an i64 reach.
    let nanos = (secs.clamp(-9.0e9, 9.0e9) * 1e9).round() as i64;
    start
        .checked_add_signed(chrono::Duration::nanoseconds(nanos))
        .unwrap_or(if secs < 0.0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

impl Cluster {
    /// Builds the cluster from a scenario, with history written before `start`.
    pub fn new(scenario: &Scenario, limits: Limits) -> Arc<Self> {
        let start = Utc::now();
        let mut identities = HashMap::new();
        for user in &scenario.users {
            let mut groups = user.groups.clone();
            groups.push("system:authenticated".to_string());
            identities.insert(
                user.token(),
                Identity {
                    name: user.name.clone(),
                    groups,
                    rules: user.rules.clone(),
                    audiences: vec![API_AUDIENCE.to_string()],
                    uid: new_uid(),
                },
            );
        }
        for sa in &scenario.service_accounts {
            let audiences = if sa.audiences.is_empty() {
                vec![API_AUDIENCE.to_string()]
            } else {
                sa.audiences.clone()
            };
            identities.insert(
                sa.token(),
                Identity {
                    name: sa.user_name(),
                    groups: vec![
                        "system:serviceaccounts".to_string(),
                        format!("system:serviceaccounts:{}", sa.namespace),
                        "system:authenticated".to_string(),
                    ],
                    rules: sa.rules.clone(),
                    audiences,
                    uid: new_uid(),
                },
            );
        }
        let mut namespaces: BTreeSet<String> = scenario.namespaces.iter().cloned().collect();
        namespaces.insert(scenario.default_namespace.clone());
        let mut services = BTreeMap::new();
        for svc in &scenario.services {
            namespaces.insert(svc.namespace.clone());
            services.insert(
                (svc.namespace.clone(), svc.name.clone()),
                service_rec(svc, start),
            );
        }
        let workloads = scenario
            .workloads
            .iter()
            .map(|w| {
                let mut w = w.clone();
                w.namespace
                    .get_or_insert_with(|| scenario.default_namespace.clone());
                w
            })
            .collect();

        let state = State {
            resource_version: 1000,
            compacted_resource_version: 1000,
            namespaces,
            pods: BTreeMap::new(),
            history: VecDeque::new(),
            logs: HashMap::new(),
            services,
            workloads,
            identities,
            next_ip: 10,
            backing_off: BTreeSet::new(),
        };
        let (watch_tx, _) = broadcast::channel(8192);
        let (log_cuts, _) = broadcast::channel(64);
        let (watch_cuts, _) = broadcast::channel(64);
        let cluster = Arc::new(Cluster {
            start,
            default_namespace: scenario.default_namespace.clone(),
            log_max_bytes: scenario.log_max_bytes,
            limits,
            state: Mutex::new(state),
            watch_tx,
            log_cuts,
            watch_cuts,
            requests: Mutex::new(VecDeque::new()),
            faults: Mutex::new(Faults {
                fail_remaining: 0,
                fail_code: 500,
                retry_after: None,
                delay: Duration::ZERO,
            }),
            lines_written: std::sync::atomic::AtomicU64::new(0),
        });
        for pod in &scenario.pods {
            cluster.add_pod(pod);
        }
        cluster
    }

    /// Locks the state.
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Seconds since start as a time.
    pub fn at(&self, secs: f64) -> DateTime<Utc> {
        at(self.start, secs)
    }

    /// Records a request.
    pub fn record(&self, record: RequestRecord) {
        let mut requests = lock(&self.requests);
        if requests.len() >= self.limits.request_log {
            requests.pop_front();
        }
        requests.push_back(record);
    }

    /// Every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.requests).iter().cloned().collect()
    }

    /// Consumes one injected failure, if any: (code, retry-after).
    pub fn take_failure(&self) -> Option<(u16, Option<u32>)> {
        let mut faults = lock(&self.faults);
        if faults.fail_remaining == 0 {
            return None;
        }
        faults.fail_remaining -= 1;
        Some((faults.fail_code, faults.retry_after))
    }

    /// The injected response delay.
    pub fn delay(&self) -> Duration {
        lock(&self.faults).delay
    }

    /// Ground truth of one container, across instances.
    pub fn truth(&self, ns: &str, pod: &str, container: &str) -> Vec<TruthLine> {
        let state = self.state();
        state
            .logs
            .get(&(ns.to_string(), pod.to_string(), container.to_string()))
            .map(|b| b.truth())
            .unwrap_or_default()
    }

    fn bump(state: &mut State) -> u64 {
        state.resource_version += 1;
        state.resource_version
    }

    fn emit(&self, state: &mut State, kind: &'static str, key: &(String, String)) {
        let Some(pod) = state.pods.get(key) else {
            return;
        };
        let event = Arc::new(pod_event(pod, kind));
        self.push_event(state, event);
    }

    fn push_event(&self, state: &mut State, event: Arc<WatchEvent>) {
        if state.history.len() >= self.limits.watch_history
            && let Some(dropped) = state.history.pop_front()
        {
            state.compacted_resource_version = dropped.resource_version;
        }
        state.history.push_back(event.clone());
        // No receivers is fine: nobody watches.
        let _ = self.watch_tx.send(event);
    }

    /// Adds a pod (replacing nothing: an existing pod of that name is left alone).
    pub fn add_pod(&self, pod: &Pod) {
        let ns = pod
            .namespace
            .clone()
            .unwrap_or_else(|| self.default_namespace.clone());
        let key = (ns.clone(), pod.name.clone());
        let mut state = self.state();
        if state.pods.contains_key(&key) {
            tracing::warn!(namespace = %ns, pod = %pod.name, "pod exists already; not added");
            return;
        }
        state.namespaces.insert(ns.clone());
        let created = self.at(pod.created_at).min(Utc::now());
        let scheduled = pod.node.is_some();
        let mut containers = Vec::new();
        for c in &pod.containers {
            let logs = state
                .logs
                .entry((ns.clone(), pod.name.clone(), c.name.clone()))
                .or_insert_with(|| {
                    Arc::new(LogBox::new(self.log_max_bytes, self.limits.truth_lines))
                })
                .clone();
            containers.push(self.container_rec(c, &logs, created, scheduled));
        }
        state.next_ip += 1;
        let ip = format!("10.244.{}.{}", state.next_ip / 250, state.next_ip % 250 + 2);
        let rv = Self::bump(&mut state);
        state.pods.insert(
            key.clone(),
            PodRec {
                namespace: ns,
                name: pod.name.clone(),
                uid: new_uid(),
                labels: pod.labels.clone(),
                annotations: pod.annotations.clone(),
                node: pod.node.clone(),
                ip: if scheduled { ip } else { String::new() },
                created,
                resource_version: rv,
                deleting: None,
                containers,
            },
        );
        self.emit(&mut state, "ADDED", &key);
    }

    fn container_rec(
        &self,
        c: &Container,
        logs: &Arc<LogBox>,
        created: DateTime<Utc>,
        scheduled: bool,
    ) -> ContainerRec {
        let now = Utc::now();
        let started = created.max(self.at(-60.0)).min(now);
        let id = new_container_id();
        let last = c.last_state.as_ref().and_then(|s| match s {
            ContainerState::Terminated { exit_code, reason } => Some(Terminated {
                exit_code: *exit_code,
                reason: reason.clone(),
                started: created,
                finished: started,
                id: new_container_id(),
            }),
            _ => None,
        });
        if let Some(last) = &last {
            let lines: Vec<_> = c
                .previous_logs
                .iter()
                .map(|l| (self.at(l.at), l.bytes.clone()))
                .collect();
            logs.set_previous(&last.id, &lines);
        }
        let state = if !scheduled {
            CState::Waiting {
                reason: "ContainerCreating".to_string(),
            }
        } else {
            match &c.state {
                ContainerState::Running {} => CState::Running { started },
                ContainerState::Waiting { reason } => CState::Waiting {
                    reason: reason.clone(),
                },
                ContainerState::Terminated { exit_code, reason } => {
                    CState::Terminated(Terminated {
                        exit_code: *exit_code,
                        reason: reason.clone(),
                        started,
                        finished: now,
                        id: id.clone(),
                    })
                }
            }
        };
        let has_instance = !matches!(state, CState::Waiting { .. });
        let mut pending = VecDeque::new();
        if has_instance {
            logs.start_instance(&id);
            let mut lines: Vec<_> = c.logs.clone();
            lines.sort_by(|a, b| a.at.total_cmp(&b.at));
            let now_secs = (now - self.start).num_nanoseconds().unwrap_or(0) as f64 / 1e9;
            let past: Vec<_> = lines
                .iter()
                .filter(|l| l.at <= now_secs)
                .map(|l| (self.at(l.at), l.bytes.clone()))
                .collect();
            logs.write(&past);
            pending = lines
                .into_iter()
                .filter(|l| l.at > now_secs)
                .map(|l| (l.at, l.bytes))
                .collect();
            if matches!(state, CState::Terminated(_)) {
                logs.end_instance();
            }
        }
        ContainerRec {
            name: c.name.clone(),
            kind: c.kind,
            image: c.image.clone(),
            state,
            last,
            restarts: c.restart_count,
            id: if has_instance { id } else { String::new() },
            logs: logs.clone(),
            generator: c.generator.clone().map(|source| GenState {
                rng: seed(&c.name, &source),
                source,
                origin: now,
                emitted: 0,
            }),
            pending,
            backoff: None,
        }
    }

    /// Applies an action now. Unknown targets are logged and ignored.
    pub fn apply(&self, action: &Action) {
        match action {
            Action::AddPod { pod } => self.add_pod(pod),
            Action::DeletePod { namespace, name } => self.delete_pod(namespace, name),
            Action::RestartContainer {
                namespace,
                pod,
                container,
                exit_code,
                reason,
                backoff_seconds,
            } => {
                let stop = match backoff_seconds {
                    Some(secs) if secs.is_finite() && *secs > 0.0 => {
                        Stop::RestartAfter(Duration::from_secs_f64(secs.min(1e9)))
                    }
                    _ => Stop::Restart,
                };
                self.stop_container(namespace, pod, container, *exit_code, reason, stop)
            }
            Action::TerminateContainer {
                namespace,
                pod,
                container,
                exit_code,
                reason,
            } => self.stop_container(
                namespace,
                pod,
                container,
                *exit_code,
                reason,
                Stop::Terminate,
            ),
            Action::SchedulePod {
                namespace,
                name,
                node,
            } => self.schedule_pod(namespace, name, node),
            Action::StartContainer {
                namespace,
                pod,
                container,
            } => self.start_container(namespace, pod, container),
            Action::RotateLog {
                namespace,
                pod,
                container,
            } => {
                if let Some(logs) = self.log_box(namespace, pod, container) {
                    logs.rotate();
                }
            }
            Action::WriteLine(WriteLine {
                namespace,
                pod,
                container,
                bytes,
            }) => {
                let running = self
                    .state()
                    .pods
                    .get(&(namespace.clone(), pod.clone()))
                    .and_then(|p| p.container(container))
                    .is_some_and(|c| matches!(c.state, CState::Running { .. }));
                match self.log_box(namespace, pod, container) {
                    Some(logs) if running => {
                        logs.write(&[(Utc::now(), bytes.clone())]);
                        self.lines_written
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => tracing::warn!(
                        namespace = %namespace, pod = %pod, container = %container,
                        "no running container to write to; line dropped"
                    ),
                }
            }
            Action::CutLogStreams { cut } => {
                let _ = self.log_cuts.send(cut.clone());
            }
            Action::CutWatchStreams { cut } => {
                let _ = self.watch_cuts.send(cut.clone());
            }
            Action::FailNext {
                count,
                code,
                retry_after,
            } => {
                let mut faults = lock(&self.faults);
                faults.fail_remaining = *count;
                faults.fail_code = *code;
                faults.retry_after = *retry_after;
            }
            Action::SetDelay { millis } => {
                lock(&self.faults).delay = Duration::from_millis(*millis);
            }
        }
    }

    fn log_box(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<LogBox>> {
        let found = self
            .state()
            .logs
            .get(&(ns.to_string(), pod.to_string(), container.to_string()))
            .cloned();
        if found.is_none() {
            tracing::warn!(namespace = %ns, pod = %pod, container = %container, "not found");
        }
        found
    }

    /// Deletes a pod: its containers stop, watchers see MODIFIED then DELETED.
    pub fn delete_pod(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        let mut state = self.state();
        let now = Utc::now();
        let Some(pod) = state.pods.get_mut(&key) else {
            tracing::warn!(namespace = %ns, pod = %name, "no such pod to delete");
            return;
        };
        pod.deleting = Some(now);
        for c in &mut pod.containers {
            if let CState::Running { started } = c.state {
                c.logs.end_instance();
                c.state = CState::Terminated(Terminated {
                    exit_code: 0,
                    reason: Some("Completed".to_string()),
                    started,
                    finished: now,
                    id: c.id.clone(),
                });
            }
        }
        let rv = Self::bump(&mut state);
        if let Some(pod) = state.pods.get_mut(&key) {
            pod.resource_version = rv;
        }
        self.emit(&mut state, "MODIFIED", &key);
        let rv = Self::bump(&mut state);
        if let Some(pod) = state.pods.get_mut(&key) {
            pod.resource_version = rv;
        }
        self.emit(&mut state, "DELETED", &key);
        state.pods.remove(&key);
    }

    /// Binds an unscheduled pod to a node.
    pub fn schedule_pod(&self, ns: &str, name: &str, node: &str) {
        let key = (ns.to_string(), name.to_string());
        let mut state = self.state();
        state.next_ip += 1;
        let ip = format!("10.244.{}.{}", state.next_ip / 250, state.next_ip % 250 + 2);
        let rv = Self::bump(&mut state);
        let Some(pod) = state.pods.get_mut(&key) else {
            tracing::warn!(namespace = %ns, pod = %name, "no such pod to schedule");
            return;
        };
        if pod.node.is_some() {
            tracing::warn!(namespace = %ns, pod = %name, "pod is scheduled already");
            return;
        }
        pod.node = Some(node.to_string());
        pod.ip = ip;
        pod.resource_version = rv;
        self.emit(&mut state, "MODIFIED", &key);
    }

    /// Starts a waiting container with a new instance.
    pub fn start_container(&self, ns: &str, pod: &str, container: &str) {
        let key = (ns.to_string(), pod.to_string());
        let mut state = self.state();
        let rv = Self::bump(&mut state);
        let Some(rec) = state.pods.get_mut(&key) else {
            tracing::warn!(namespace = %ns, pod = %pod, "no such pod to start a container of");
            return;
        };
        if rec.node.is_none() {
            tracing::warn!(namespace = %ns, pod = %pod, "pod is not scheduled; schedule it first");
            return;
        }
        let Some(c) = rec.containers.iter_mut().find(|c| c.name == container) else {
            tracing::warn!(namespace = %ns, pod = %pod, %container, "not found");
            return;
        };
        if !matches!(c.state, CState::Waiting { .. }) {
            tracing::warn!(namespace = %ns, pod = %pod, %container, "container is not waiting");
            return;
        }
        let id = new_container_id();
        c.logs.start_instance(&id);
        c.id = id;
        c.state = CState::Running {
            started: Utc::now(),
        };
        rec.resource_version = rv;
        self.emit(&mut state, "MODIFIED", &key);
    }

    fn stop_container(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        exit_code: i32,
        reason: &str,
        stop: Stop,
    ) {
        let key = (ns.to_string(), pod.to_string());
        let mut state = self.state();
        let now = Utc::now();
        let Some(rec) = state.pods.get_mut(&key) else {
            tracing::warn!(namespace = %ns, pod = %pod, "no such pod to stop a container of");
            return;
        };
        let pod_label = format!("{pod}_{ns}({})", rec.uid);
        let Some(c) = rec.containers.iter_mut().find(|c| c.name == container) else {
            tracing::warn!(namespace = %ns, pod = %pod, container = %container, "not found");
            return;
        };
        if c.backoff.is_some() {
            tracing::warn!(
                namespace = %ns, pod = %pod, container = %container,
                "container is backing off, not running; nothing to stop"
            );
            return;
        }
        if matches!(stop, Stop::RestartAfter(_)) && !matches!(c.state, CState::Running { .. }) {
            tracing::warn!(
                namespace = %ns, pod = %pod, container = %container,
                "only a running container can crash into a back-off; start it first"
            );
            return;
        }
        let started = match &c.state {
            CState::Running { started } => *started,
            CState::Terminated(t) if stop != Stop::Terminate => t.started,
            _ => now,
        };
        let ended = Terminated {
            exit_code,
            reason: Some(reason.to_string()),
            started,
            finished: now,
            id: c.id.clone(),
        };
        match stop {
            Stop::Restart => {
                let id = new_container_id();
                c.logs.start_instance(&id);
                c.last = Some(ended);
                c.restarts += 1;
                c.id = id;
                c.state = CState::Running { started: now };
            }
            Stop::Terminate => {
                c.logs.end_instance();
                c.state = CState::Terminated(ended);
            }
            Stop::RestartAfter(delay) => {
                // The run ends: followers drain it and finish. The pod first reports the
                // exit, then the wait; the container ID stays the ended run's until the next
                // instance starts, and so does the restart count.
                c.logs.end_instance();
                c.state = CState::Terminated(ended.clone());
                c.backoff = Some(BackOff {
                    until: chrono::Duration::from_std(delay)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                    message: format!(
                        "back-off {} restarting failed container={container} pod={pod_label}",
                        go_duration(delay)
                    ),
                });
                let rv = Self::bump(&mut state);
                if let Some(rec) = state.pods.get_mut(&key) {
                    rec.resource_version = rv;
                }
                self.emit(&mut state, "MODIFIED", &key);
                if let Some(c) = state
                    .pods
                    .get_mut(&key)
                    .and_then(|rec| rec.containers.iter_mut().find(|c| c.name == container))
                {
                    c.last = Some(ended);
                    c.state = CState::Waiting {
                        reason: "CrashLoopBackOff".to_string(),
                    };
                }
                state
                    .backing_off
                    .insert((ns.to_string(), pod.to_string(), container.to_string()));
            }
        }
        let rv = Self::bump(&mut state);
        if let Some(rec) = state.pods.get_mut(&key) {
            rec.resource_version = rv;
        }
        self.emit(&mut state, "MODIFIED", &key);
    }

    /// Starts the next instance of every container whose back-off is over: a new container
    /// ID, running and counted as a restart.
    pub fn end_backoffs(&self) {
        let mut state = self.state();
        if state.backing_off.is_empty() {
            return;
        }
        let now = Utc::now();
        let waiting: Vec<(String, String, String)> = state.backing_off.iter().cloned().collect();
        for entry in waiting {
            let (ns, pod, container) = &entry;
            let key = (ns.clone(), pod.clone());
            let due = state
                .pods
                .get(&key)
                .and_then(|rec| rec.container(container))
                .and_then(|c| c.backoff.as_ref())
                .map(|b| b.until <= now);
            match due {
                // Gone with its pod, or a new pod of that name: nothing to start.
                None => {
                    state.backing_off.remove(&entry);
                }
                Some(false) => {}
                Some(true) => {
                    state.backing_off.remove(&entry);
                    let rv = Self::bump(&mut state);
                    let Some(rec) = state.pods.get_mut(&key) else {
                        continue;
                    };
                    rec.resource_version = rv;
                    if let Some(c) = rec.containers.iter_mut().find(|c| c.name == *container) {
                        let id = new_container_id();
                        c.logs.start_instance(&id);
                        c.id = id;
                        c.restarts += 1;
                        c.backoff = None;
                        c.state = CState::Running { started: now };
                    }
                    tracing::debug!(namespace = %ns, pod = %pod, %container, "back-off over");
                    self.emit(&mut state, "MODIFIED", &key);
                }
            }
        }
    }

    /// Brings the cluster up to now: writes the lines owed so far, then starts the
    /// containers whose back-off is over (lines owed before a start are not theirs).
    pub fn advance(&self) {
        self.generate();
        self.end_backoffs();
    }

    /// Writes the lines that generators and fixed future lines owe by now.
    pub fn generate(&self) {
        let now = Utc::now();
        let elapsed = (now - self.start).num_nanoseconds().unwrap_or(0) as f64 / 1e9;
        let mut batches: Vec<(Arc<LogBox>, Vec<TimedLine>)> = Vec::new();
        {
            let mut state = self.state();
            for pod in state.pods.values_mut() {
                for c in &mut pod.containers {
                    let running = matches!(c.state, CState::Running { .. });
                    let mut lines = Vec::new();
                    while c.pending.front().is_some_and(|(at, _)| *at <= elapsed) {
                        if let Some((at, bytes)) = c.pending.pop_front()
                            && running
                        {
                            lines.push((self.at(at), bytes));
                        }
                    }
                    if let Some(g) = c.generator.as_mut() {
                        let since = (now - g.origin).num_nanoseconds().unwrap_or(0) as f64 / 1e9;
                        let due = (since * g.source.rate).floor().max(0.0) as u64;
                        while g.emitted < due {
                            let offset = g.emitted as f64 / g.source.rate;
                            let time = at(g.origin, offset);
                            let text = g.line(time);
                            g.emitted += 1;
                            if running {
                                lines.push((time, Bytes::from(text)));
                            }
                        }
                    }
                    if !lines.is_empty() {
                        batches.push((c.logs.clone(), lines));
                    }
                }
            }
        }
        let mut count = 0;
        for (logs, lines) in batches {
            count += lines.len() as u64;
            logs.write(&lines);
        }
        self.lines_written
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
    }

    /// The service with this name.
    pub fn service(&self, ns: &str, name: &str) -> Option<ServiceRec> {
        self.state()
            .services
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Sets (or adds a service with) a backend.
    pub fn set_service_backend(&self, ns: &str, name: &str, addr: SocketAddr) {
        let mut state = self.state();
        let start = self.start;
        state.namespaces.insert(ns.to_string());
        state
            .services
            .entry((ns.to_string(), name.to_string()))
            .or_insert_with(|| service_rec(&Service::new(ns, name), start))
            .backend = Some(addr);
    }
}

/// A duration the way the kubelet prints one: `10s`, `1.5s`, `1m20s`, `5m0s`, `250ms`.
fn go_duration(d: Duration) -> String {
    fn trimmed(whole: u128, frac: u128, digits: usize) -> String {
        let frac = format!("{frac:0digits$}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{frac}")
        }
    }
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trimmed(nanos / 1_000, nanos % 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trimmed(nanos / 1_000_000, nanos % 1_000_000, 6));
    }
    let secs = nanos / 1_000_000_000;
    let seconds = trimmed(secs % 60, nanos % 1_000_000_000, 9);
    let (minutes, hours) = ((secs / 60) % 60, secs / 3600);
    match (hours, secs / 60) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

fn service_rec(svc: &Service, created: DateTime<Utc>) -> ServiceRec {
    ServiceRec {
        ports: svc.ports.clone(),
        backend: svc.backend,
        created: created - chrono::Duration::hours(1),
        uid: new_uid(),
    }
}

fn pod_event(pod: &PodRec, kind: &'static str) -> WatchEvent {
    let mut fields = HashMap::new();
    for f in crate::select::POD_FIELDS {
        fields.insert(f, pod.field(f));
    }
    WatchEvent {
        resource_version: pod.resource_version,
        kind,
        namespace: pod.namespace.clone(),
        labels: pod.labels.clone(),
        fields,
        object: objects::pod_json(pod),
        row: objects::pod_row(pod, Utc::now()),
    }
}

fn seed(name: &str, source: &LogSource) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ (source.rate.to_bits());
    for b in name.bytes().chain(rand::random::<[u8; 8]>()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01B3);
    }
    h | 1
}

const PATHS: [&str; 8] = [
    "/",
    "/api/items",
    "/api/items/42",
    "/api/cart",
    "/healthz",
    "/static/app.js",
    "/api/orders",
    "/api/search?q=caf%C3%A9",
];
const MESSAGES: [&str; 8] = [
    "handled request",
    "cache miss, fetching from upstream",
    "order placed",
    "payment authorised",
    "slow query detected",
    "connection pool resized",
    "user session refreshed",
    "rendered café menu ✓",
];
const LEVELS: [&str; 6] = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];

impl GenState {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn line(&mut self, time: DateTime<Utc>) -> String {
        let r = self.next();
        let seq = self.emitted;
        let json = self.source.json_every > 0 && seq.is_multiple_of(self.source.json_every as u64);
        let path = PATHS[(r % 8) as usize];
        let msg = MESSAGES[((r >> 8) % 8) as usize];
        let level = LEVELS[((r >> 16) % 6) as usize];
        let status = [200, 200, 200, 201, 304, 404, 500][((r >> 24) % 7) as usize];
        let took = (r >> 32) % 900 + 1;
        let mut line = if json {
            format!(
                "{{\"level\":\"{}\",\"ts\":\"{}\",\"msg\":\"{msg}\",\"seq\":{seq},\
                 \"path\":\"{path}\",\"took_ms\":{took}}}",
                level.to_lowercase(),
                time.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            )
        } else {
            match self.source.style.as_str() {
                "web" => format!(
                    "10.0.{}.{} - - [{}] \"GET {path} HTTP/1.1\" {status} {} \"-\" \
                     \"Mozilla/5.0\" seq={seq}",
                    (r >> 40) % 4,
                    (r >> 44) % 250 + 2,
                    time.format("%d/%b/%Y:%H:%M:%S +0000"),
                    (r >> 48) % 20000 + 120
                ),
                "plain" => format!("line {seq}"),
                _ => format!(
                    "{} {level:<5} {msg} path={path} took={took}ms seq={seq}",
                    time.format("%Y-%m-%dT%H:%M:%S%.3fZ")
                ),
            }
        };
        if json {
            // Pad inside the object so the line stays valid JSON.
            if line.len() < self.source.line_size {
                let pad = "x".repeat(self.source.line_size.saturating_sub(line.len() + 10));
                line.insert_str(line.len() - 1, &format!(",\"pad\":\"{pad}\""));
            }
        } else if line.len() + 5 < self.source.line_size {
            line.push_str(" pad=");
            line.push_str(&"x".repeat(self.source.line_size - line.len()));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            watch_history: 100,
            truth_lines: 1000,
            request_log: 100,
        }
    }

    #[test]
    fn a_restart_keeps_the_previous_instance_and_counts() {
        let scenario = Scenario::new("shop")
            .pod(Pod::new("web-0").container(Container::new("app").line(-1.0, "hello")));
        let cluster = Cluster::new(&scenario, limits());
        cluster.stop_container("shop", "web-0", "app", 137, "OOMKilled", Stop::Restart);
        let state = cluster.state();
        let pod = state
            .pods
            .get(&("shop".to_string(), "web-0".to_string()))
            .expect("pod");
        let c = pod.container("app").expect("container");
        assert_eq!(c.restarts, 1);
        let last = c.last.as_ref().expect("last state");
        assert_eq!(last.exit_code, 137);
        assert_ne!(last.id, c.id);
        assert_eq!(
            c.logs.instance_ids(),
            (Some(c.id.clone()), Some(last.id.clone()))
        );
    }

    #[test]
    fn back_off_delays_print_like_the_kubelet_prints_them() {
        let cases = [
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ];
        for (delay, printed) in cases {
            assert_eq!(go_duration(delay), printed);
        }
    }

    #[test]
    fn a_backed_off_restart_counts_only_when_the_next_run_starts() {
        let scenario = Scenario::new("shop")
            .pod(Pod::new("web-0").container(Container::new("app").line(-1.0, "hello")));
        let cluster = Cluster::new(&scenario, limits());
        let key = ("shop".to_string(), "web-0".to_string());
        let ran = cluster.state().pods[&key].containers[0].id.clone();
        let stop = Stop::RestartAfter(Duration::ZERO);
        cluster.stop_container("shop", "web-0", "app", 1, "Error", stop);
        {
            let state = cluster.state();
            let c = &state.pods[&key].containers[0];
            assert!(matches!(&c.state, CState::Waiting { reason } if reason == "CrashLoopBackOff"));
            assert_eq!((c.restarts, c.id.as_str()), (0, ran.as_str()));
            assert_eq!(state.pods[&key].phase(), "Running");
        }
        cluster.end_backoffs();
        let state = cluster.state();
        let c = &state.pods[&key].containers[0];
        assert!(matches!(c.state, CState::Running { .. }));
        assert_eq!(c.restarts, 1);
        assert_ne!(c.id, ran);
        assert_eq!(c.last.as_ref().map(|t| t.id.as_str()), Some(ran.as_str()));
        assert!(state.backing_off.is_empty());
    }

    #[test]
    fn a_pod_deleted_during_its_backoff_starts_nothing() {
        let pod = Pod::new("web-0").container(Container::new("app").line(-1.0, "hello"));
        let cluster = Cluster::new(&Scenario::new("shop").pod(pod.clone()), limits());
        let stop = Stop::RestartAfter(Duration::ZERO);
        cluster.stop_container("shop", "web-0", "app", 1, "Error", stop);
        cluster.delete_pod("shop", "web-0");
        cluster.add_pod(&pod);
        let key = ("shop".to_string(), "web-0".to_string());
        let fresh = cluster.state().pods[&key].containers[0].id.clone();

        cluster.end_backoffs();
        let state = cluster.state();
        let c = &state.pods[&key].containers[0];
        assert_eq!(
            (c.restarts, &c.id),
            (0, &fresh),
            "the new pod is left alone"
        );
        assert!(state.backing_off.is_empty());
    }

    #[test]
    fn generated_json_lines_stay_valid_json_at_any_size() {
        let mut g = GenState {
            source: LogSource::new(10.0).json_every(1).line_size(200),
            origin: Utc::now(),
            emitted: 0,
            rng: 7,
        };
        for _ in 0..20 {
            let line = g.line(Utc::now());
            g.emitted += 1;
            let v: Value = serde_json::from_str(&line).expect(&line);
            assert!(v.get("msg").is_some());
        }
    }

    #[test]
    fn phase_follows_the_regular_containers() {
        let scenario = Scenario::new("shop").pod(Pod::new("job-0").container(
            Container::new("main").state(ContainerState::Terminated {
                exit_code: 0,
                reason: None,
            }),
        ));
        let cluster = Cluster::new(&scenario, limits());
        let state = cluster.state();
        let pod = state.pods.values().next().expect("pod");
        assert_eq!(pod.phase(), "Succeeded");
    }
}
