//! The scenario a simulated cluster starts from: namespaces, users and their rules, services,
//! workloads, pods with their logs, and a timeline of actions. It is plain data: JSON through
//! serde, or built in Rust with the builder methods. [`Scenario::demo`] is the built-in one.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The JSON text does not match the scenario format (serde's detail is in the message,
    /// so it is not a source as well).
    #[error("scenario is not valid JSON for the kubesim format: {0}")]
    Parse(serde_json::Error),
    /// The scenario parsed but describes something the simulator cannot run.
    #[error("scenario is inconsistent: {0}")]
    Invalid(String),
}

/// A whole simulated cluster: what exists at start and what happens later.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// The namespace kubeconfig contexts point at; pods without a namespace land here.
    #[serde(default = "default_namespace")]
    pub default_namespace: String,
    /// Namespaces that exist besides those the pods and services name.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Size at which a container's current log file is rotated, like the kubelet's
    /// `containerLogMaxSize`.
    #[serde(default = "default_log_max_bytes")]
    pub log_max_bytes: usize,
    /// Human users, each with a bearer token.
    #[serde(default)]
    pub users: Vec<User>,
    /// Service accounts; their tokens carry audiences.
    #[serde(default)]
    pub service_accounts: Vec<ServiceAccount>,
    /// Services that the apiserver proxy can reach.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Deployments, statefulsets, daemonsets, replicasets and jobs, for their selectors.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Pods present at start.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// Actions at times relative to start.
    #[serde(default)]
    pub timeline: Vec<TimedAction>,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn default_log_max_bytes() -> usize {
    1024 * 1024
}

/// A user that authenticates with a static bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// The user name RBAC and error messages show.
    pub name: String,
    /// The bearer token; `<name>-token` when absent.
    #[serde(default)]
    pub token: Option<String>,
    /// Groups the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// What the user may do.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A service account, authenticated as `system:serviceaccount:NAMESPACE:NAME`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccount {
    /// The namespace of the account.
    pub namespace: String,
    /// The account name.
    pub name: String,
    /// The bearer token; `<namespace>-<name>-sa-token` when absent.
    #[serde(default)]
    pub token: Option<String>,
    /// Audiences the token is valid for; empty means the apiserver's own audience.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// What the account may do.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One RBAC policy rule together with where it is bound.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Verbs such as `get`, `list`, `watch`, `create`, or `*`.
    pub verbs: Vec<String>,
    /// API groups; `""` is the core group, `*` any.
    #[serde(default = "core_group")]
    pub api_groups: Vec<String>,
    /// Resources, optionally with a subresource (`pods/log`, `services/proxy`, `*`).
    pub resources: Vec<String>,
    /// When not empty, only these object names match.
    #[serde(default)]
    pub resource_names: Vec<String>,
    /// Namespaces the rule is bound in (a RoleBinding); empty means cluster-wide (a
    /// ClusterRoleBinding).
    #[serde(default)]
    pub namespaces: Vec<String>,
}

fn core_group() -> Vec<String> {
    vec![String::new()]
}

/// A service whose proxy subresource forwards to a backend address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// Namespace of the service.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Ports; the first is used when a proxy id names none.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Where proxied requests go (`127.0.0.1:PORT`); none answers 503 until one is set.
    #[serde(default)]
    pub backend: Option<std::net::SocketAddr>,
}

/// A named service port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port name (may be empty).
    #[serde(default)]
    pub name: String,
    /// Port number.
    pub port: u16,
}

/// A workload object that selects pods by labels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet` or `Job`.
    pub kind: String,
    /// Namespace; the default namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The label selector (`matchLabels`).
    pub selector: BTreeMap<String, String>,
    /// Desired replicas, shown in status.
    #[serde(default = "one")]
    pub replicas: i32,
}

fn one() -> i32 {
    1
}

/// A pod.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    /// Namespace; the default namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Pod name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (e.g. `kubectl.kubernetes.io/default-container`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The node; `null` leaves the pod unscheduled (Pending, logs answer 204).
    #[serde(default = "default_node")]
    pub node: Option<String>,
    /// Seconds relative to start when the pod was created (negative: before start).
    #[serde(default = "default_created")]
    pub created_at: f64,
    /// Containers, in spec order, of every kind.
    pub containers: Vec<Container>,
}

fn default_node() -> Option<String> {
    Some("node-1".to_string())
}

fn default_created() -> f64 {
    -600.0
}

/// Which list of the pod spec a container belongs to.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ContainerKind {
    /// `spec.initContainers`.
    Init,
    /// `spec.containers`.
    #[default]
    Regular,
    /// `spec.ephemeralContainers`.
    Ephemeral,
}

/// The state of a container, as in `status.containerStatuses[].state`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ContainerState {
    /// Running since the pod's creation or last restart.
    Running {},
    /// Waiting with a reason such as `ContainerCreating` or `CrashLoopBackOff`.
    Waiting {
        /// The waiting reason.
        reason: String,
    },
    /// Terminated with an exit code.
    Terminated {
        /// Exit code.
        #[serde(rename = "exitCode")]
        exit_code: i32,
        /// Reason such as `Completed`, `Error`, `OOMKilled`.
        #[serde(default)]
        reason: Option<String>,
    },
}

/// A container with its logs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Which list it belongs to.
    #[serde(default)]
    pub kind: ContainerKind,
    /// Image shown in the spec.
    #[serde(default = "default_image")]
    pub image: String,
    /// Current state; running when absent.
    #[serde(default = "running")]
    pub state: ContainerState,
    /// Restarts before start. With `previousLogs`, the last one left a terminated state.
    #[serde(default)]
    pub restart_count: i32,
    /// The last termination state, reported as `lastState.terminated`.
    #[serde(default)]
    pub last_state: Option<ContainerState>,
    /// Fixed lines of the current instance.
    #[serde(default)]
    pub logs: Vec<LogLine>,
    /// Fixed lines of the previous instance (needs `lastState`).
    #[serde(default)]
    pub previous_logs: Vec<LogLine>,
    /// A generator writing lines while the container runs.
    #[serde(default)]
    pub generator: Option<LogSource>,
}

fn default_image() -> String {
    "registry.example/app:1.0".to_string()
}

fn running() -> ContainerState {
    ContainerState::Running {}
}

/// One fixed log line. Containers may print any bytes, so a line is bytes; in JSON it is
/// `{"at": …, "text": "…"}` for UTF-8 or `{"at": …, "base64": "…"}` for any bytes, and exactly
/// one of `text` and `base64` is given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "LogLineJson", into = "LogLineJson")]
pub struct LogLine {
    /// Seconds relative to start (negative: written before start, so history exists).
    pub at: f64,
    /// The line, without its newline.
    pub bytes: Bytes,
}

impl LogLine {
    /// A line of UTF-8 text.
    pub fn text(at: f64, text: &str) -> Self {
        LogLine {
            at,
            bytes: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    /// A line of any bytes, valid UTF-8 or not.
    pub fn bytes(at: f64, bytes: &[u8]) -> Self {
        LogLine {
            at,
            bytes: Bytes::copy_from_slice(bytes),
        }
    }
}

/// A log line as JSON spells it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LogLineJson {
    at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

impl TryFrom<LogLineJson> for LogLine {
    type Error = String;

    fn try_from(json: LogLineJson) -> Result<Self, String> {
        let bytes = line_bytes(
            json.text,
            json.base64,
            &format!("the log line at {}", json.at),
        )?;
        Ok(LogLine { at: json.at, bytes })
    }
}

impl From<LogLine> for LogLineJson {
    fn from(line: LogLine) -> Self {
        let (text, base64) = line_json(line.bytes);
        LogLineJson {
            at: line.at,
            text,
            base64,
        }
    }
}

/// The bytes of a line given as `text` or `base64` (exactly one); `what` names the line in
/// the error.
fn line_bytes(text: Option<String>, base64: Option<String>, what: &str) -> Result<Bytes, String> {
    use base64::Engine;

    match (text, base64) {
        (Some(text), None) => Ok(Bytes::from(text)),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map(Bytes::from)
            .map_err(|e| {
                format!("{what} has a `base64` field that does not decode ({e}); give standard base64 with padding")
            }),
        (Some(_), Some(_)) => Err(format!(
            "{what} has both `text` and `base64`; give exactly one of them"
        )),
        (None, None) => Err(format!(
            "{what} has neither `text` nor `base64`; give exactly one of them"
        )),
    }
}

/// A line's bytes for JSON: `text` when they are UTF-8, `base64` otherwise.
fn line_json(bytes: Bytes) -> (Option<String>, Option<String>) {
    use base64::Engine;

    match String::from_utf8(Vec::from(bytes)) {
        Ok(text) => (Some(text), None),
        Err(e) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
            (None, Some(encoded))
        }
    }
}

/// A generator of log lines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogSource {
    /// Lines per second.
    pub rate: f64,
    /// Approximate bytes per line (padding is added to reach it).
    #[serde(default = "default_line_size")]
    pub line_size: usize,
    /// Every Nth line looks like a JSON log record; 0 never.
    #[serde(default)]
    pub json_every: u32,
    /// The flavour of text: `web` (access log), `app` (levelled messages) or `plain`.
    #[serde(default = "default_style")]
    pub style: String,
}

fn default_line_size() -> usize {
    80
}

fn default_style() -> String {
    "app".to_string()
}

/// An action at a time relative to start, optionally repeated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimedAction {
    /// Seconds after start.
    pub at: f64,
    /// Repeat every this many seconds after `at`.
    #[serde(default)]
    pub every: Option<f64>,
    /// What happens.
    pub action: Action,
}

/// Which log or watch streams a cut applies to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cut {
    /// How the streams end.
    #[serde(default)]
    pub mode: CutMode,
    /// Only streams of this namespace (all when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only streams of this pod (all when absent).
    #[serde(default)]
    pub pod: Option<String>,
    /// Only streams of this container (all when absent).
    #[serde(default)]
    pub container: Option<String>,
}

/// How a cut stream ends.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CutMode {
    /// The final chunk is sent: a clean end of stream.
    #[default]
    Clean,
    /// The connection is reset without a final chunk.
    Reset,
    /// Half of the next line is written, then the stream ends cleanly.
    MidLine,
}

/// Something that happens on the timeline (or through [`crate::SimHandle`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "do", deny_unknown_fields)]
pub enum Action {
    /// A pod appears.
    AddPod {
        /// The pod.
        pod: Box<Pod>,
    },
    /// A pod is deleted.
    #[serde(rename_all = "camelCase")]
    DeletePod {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
    },
    /// A container exits and starts again with a new container ID: at once, or after a
    /// back-off during which it waits in `CrashLoopBackOff`.
    #[serde(rename_all = "camelCase")]
    RestartContainer {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// Exit code of the instance that ended.
        exit_code: i32,
        /// Termination reason.
        reason: String,
        /// Seconds the container waits in `CrashLoopBackOff` before the new instance
        /// starts; absent (or 0) starts it at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backoff_seconds: Option<f64>,
    },
    /// An unscheduled pod is bound to a node; its containers wait in `ContainerCreating`.
    SchedulePod {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The node.
        node: String,
    },
    /// A waiting container starts running (a new container ID; no restart is counted).
    StartContainer {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
    /// A container exits and stays terminated.
    #[serde(rename_all = "camelCase")]
    TerminateContainer {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// Exit code.
        exit_code: i32,
        /// Termination reason.
        reason: String,
    },
    /// The container's log file is rotated.
    RotateLog {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
    /// A container writes one line now.
    WriteLine(WriteLine),
    /// Open log streams end.
    CutLogStreams {
        /// Which and how.
        cut: Cut,
    },
    /// Open watch streams end.
    CutWatchStreams {
        /// Which and how.
        cut: Cut,
    },
    /// The next requests fail.
    #[serde(rename_all = "camelCase")]
    FailNext {
        /// How many requests.
        count: u32,
        /// HTTP code: 429, 500, 503 or 504.
        code: u16,
        /// `Retry-After` seconds.
        #[serde(default)]
        retry_after: Option<u32>,
    },
    /// Every response is delayed by this many milliseconds (0 ends the delay).
    SetDelay {
        /// Milliseconds.
        millis: u64,
    },
}

/// A line a running container writes: where, and the bytes. In JSON `namespace`, `pod`,
/// `container` and exactly one of `text` (UTF-8) and `base64` (any bytes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "WriteLineJson", into = "WriteLineJson")]
pub struct WriteLine {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The line, without its newline.
    pub bytes: Bytes,
}

/// A written line as JSON spells it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WriteLineJson {
    namespace: String,
    pod: String,
    container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

impl TryFrom<WriteLineJson> for WriteLine {
    type Error = String;

    fn try_from(json: WriteLineJson) -> Result<Self, String> {
        let what = format!(
            "the writeLine for {}/{}/{}",
            json.namespace, json.pod, json.container
        );
        let bytes = line_bytes(json.text, json.base64, &what)?;
        Ok(WriteLine {
            namespace: json.namespace,
            pod: json.pod,
            container: json.container,
            bytes,
        })
    }
}

impl From<WriteLine> for WriteLineJson {
    fn from(line: WriteLine) -> Self {
        let (text, base64) = line_json(line.bytes);
        WriteLineJson {
            namespace: line.namespace,
            pod: line.pod,
            container: line.container,
            text,
            base64,
        }
    }
}

impl Scenario {
    /// An empty scenario whose default namespace is `namespace`.
    pub fn new(namespace: &str) -> Self {
        Scenario {
            default_namespace: namespace.to_string(),
            namespaces: vec![namespace.to_string()],
            log_max_bytes: default_log_max_bytes(),
            users: Vec::new(),
            service_accounts: Vec::new(),
            services: Vec::new(),
            workloads: Vec::new(),
            pods: Vec::new(),
            timeline: Vec::new(),
        }
    }

    /// Parses and checks a scenario in the JSON format documented in the README.
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = serde_json::from_str(text).map_err(ScenarioError::Parse)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The scenario as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks names and references that serde cannot.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let mut seen = std::collections::HashSet::new();
        for pod in &self.pods {
            let ns = pod
                .namespace
                .clone()
                .unwrap_or_else(|| self.default_namespace.clone());
            if !seen.insert((ns.clone(), pod.name.clone())) {
                return Err(ScenarioError::Invalid(format!(
                    "pod {ns}/{} appears twice; give each pod a unique name",
                    pod.name
                )));
            }
            validate_pod(pod)?;
        }
        let mut tokens = std::collections::HashSet::new();
        for user in &self.users {
            if !tokens.insert(user.token()) {
                return Err(ScenarioError::Invalid(format!(
                    "user {} reuses a token; give each user its own",
                    user.name
                )));
            }
        }
        for sa in &self.service_accounts {
            if !tokens.insert(sa.token()) {
                return Err(ScenarioError::Invalid(format!(
                    "service account {}/{} reuses a token; give each its own",
                    sa.namespace, sa.name
                )));
            }
        }
        for timed in &self.timeline {
            if timed.every.is_some_and(|e| e <= 0.0) {
                return Err(ScenarioError::Invalid(
                    "a timeline `every` must be positive".to_string(),
                ));
            }
            if let Action::AddPod { pod } = &timed.action {
                validate_pod(pod)?;
            }
            if let Action::RestartContainer {
                backoff_seconds: Some(secs),
                ..
            } = &timed.action
                && !(secs.is_finite() && *secs >= 0.0)
            {
                return Err(ScenarioError::Invalid(format!(
                    "backoffSeconds {secs} is not a duration; give seconds of 0 or more"
                )));
            }
        }
        Ok(())
    }

    /// Adds a namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        if !self.namespaces.iter().any(|n| n == ns) {
            self.namespaces.push(ns.to_string());
        }
        self
    }

    /// Adds a user.
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Adds a service account.
    pub fn service_account(mut self, sa: ServiceAccount) -> Self {
        self.service_accounts.push(sa);
        self
    }

    /// Adds a service.
    pub fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    /// Adds a workload.
    pub fn workload(mut self, workload: Workload) -> Self {
        self.workloads.push(workload);
        self
    }

    /// Adds a pod.
    pub fn pod(mut self, pod: Pod) -> Self {
        self.pods.push(pod);
        self
    }

    /// Adds an action at `at` seconds after start.
    pub fn at(mut self, at: f64, action: Action) -> Self {
        self.timeline.push(TimedAction {
            at,
            every: None,
            action,
        });
        self
    }

    /// Adds an action at `at` seconds after start, repeated every `every` seconds.
    pub fn every(mut self, at: f64, every: f64, action: Action) -> Self {
        self.timeline.push(TimedAction {
            at,
            every: Some(every),
            action,
        });
        self
    }

    /// Sets the log rotation size.
    pub fn log_max_bytes(mut self, bytes: usize) -> Self {
        self.log_max_bytes = bytes;
        self
    }

    /// The built-in demo: an app `web` in namespace `demo` with three pods of two containers
    /// (`app` and `proxy`) writing realistic lines, one pod restarting every 20 seconds, an
    /// `admin` user who may do everything and a `viewer` who may only list pods.
    pub fn demo() -> Self {
        let mut scenario = Scenario::new("demo")
            .namespace("aether-system")
            .user(User::new("admin").rule(Rule::all()))
            .user(
                User::new("viewer")
                    .rule(Rule::new(&["get", "list", "watch"], &["pods"]).in_namespaces(&["demo"])),
            )
            .workload(
                Workload::new("Deployment", "web")
                    .select("app", "web")
                    .replicas(3),
            );
        let pods = ["web-7d9c4-2xkqp", "web-7d9c4-8fjzn", "web-7d9c4-qw7lt"];
        for (i, name) in pods.iter().enumerate() {
            let app = Container::new("app")
                .line(-30.0, "starting web app v1.4.2")
                .line(-29.5, "listening on :8080")
                .generate(LogSource::new(2.0 + i as f64).style("app").json_every(5));
            let proxy = Container::new("proxy")
                .image("registry.example/envoy:1.30")
                .line(-30.0, "proxy ready, upstream 127.0.0.1:8080")
                .generate(LogSource::new(3.0).style("web").json_every(7));
            let pod = Pod::new(name)
                .label("app", "web")
                .label("pod-template-hash", "7d9c4")
                .annotation("kubectl.kubernetes.io/default-container", "app")
                .node(&format!("node-{}", i + 1))
                .container(app)
                .container(proxy);
            scenario = scenario.pod(pod);
        }
        scenario.every(
            20.0,
            20.0,
            Action::RestartContainer {
                namespace: "demo".to_string(),
                pod: pods[1].to_string(),
                container: "app".to_string(),
                exit_code: 137,
                reason: "OOMKilled".to_string(),
                backoff_seconds: None,
            },
        )
    }
}

/// The fastest a generator may write, in lines per second.
const MAX_RATE: f64 = 1_000_000.0;

/// The longest generated line, in bytes.
const MAX_LINE: usize = 1024 * 1024;

fn validate_pod(pod: &Pod) -> Result<(), ScenarioError> {
    if pod.name.is_empty() {
        return Err(ScenarioError::Invalid(
            "a pod has an empty name".to_string(),
        ));
    }
    if !pod
        .containers
        .iter()
        .any(|c| c.kind == ContainerKind::Regular)
    {
        return Err(ScenarioError::Invalid(format!(
            "pod {} has no regular container; add one with kind `regular`",
            pod.name
        )));
    }
    let mut names = std::collections::HashSet::new();
    for c in &pod.containers {
        if !names.insert(c.name.as_str()) {
            return Err(ScenarioError::Invalid(format!(
                "pod {} has two containers named {}",
                pod.name, c.name
            )));
        }
        if !c.previous_logs.is_empty() && c.last_state.is_none() {
            return Err(ScenarioError::Invalid(format!(
                "container {} of pod {} has previousLogs but no lastState; add lastState",
                c.name, pod.name
            )));
        }
        if let Some(g) = &c.generator {
            if !(g.rate > 0.0 && g.rate <= MAX_RATE) {
                return Err(ScenarioError::Invalid(format!(
                    "container {} of pod {} has a generator rate outside (0, {MAX_RATE}] lines/s",
                    c.name, pod.name
                )));
            }
            if g.line_size > MAX_LINE {
                return Err(ScenarioError::Invalid(format!(
                    "container {} of pod {} has a lineSize above {MAX_LINE} bytes",
                    c.name, pod.name
                )));
            }
        }
    }
    Ok(())
}

impl User {
    /// A user with the token `<name>-token` and no rules.
    pub fn new(name: &str) -> Self {
        User {
            name: name.to_string(),
            token: None,
            groups: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// The bearer token.
    pub fn token(&self) -> String {
        self.token
            .clone()
            .unwrap_or_else(|| format!("{}-token", self.name))
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Adds a group.
    pub fn group(mut self, group: &str) -> Self {
        self.groups.push(group.to_string());
        self
    }

    /// Adds a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}

impl ServiceAccount {
    /// A service account with a token for the given audiences.
    pub fn new(namespace: &str, name: &str, audiences: &[&str]) -> Self {
        ServiceAccount {
            namespace: namespace.to_string(),
            name: name.to_string(),
            token: None,
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            rules: Vec::new(),
        }
    }

    /// The user name the account authenticates as.
    pub fn user_name(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The bearer token.
    pub fn token(&self) -> String {
        self.token
            .clone()
            .unwrap_or_else(|| format!("{}-{}-sa-token", self.namespace, self.name))
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Adds a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}

impl Rule {
    /// A cluster-wide rule in the core group.
    pub fn new(verbs: &[&str], resources: &[&str]) -> Self {
        Rule {
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            api_groups: core_group(),
            resources: resources.iter().map(|r| r.to_string()).collect(),
            resource_names: Vec::new(),
            namespaces: Vec::new(),
        }
    }

    /// Everything everywhere (`cluster-admin`).
    pub fn all() -> Self {
        Rule::new(&["*"], &["*"]).groups(&["*"])
    }

    /// Sets the API groups.
    pub fn groups(mut self, groups: &[&str]) -> Self {
        self.api_groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }

    /// Limits the rule to these object names.
    pub fn names(mut self, names: &[&str]) -> Self {
        self.resource_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Binds the rule in these namespaces only.
    pub fn in_namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = namespaces.iter().map(|n| n.to_string()).collect();
        self
    }
}

impl Service {
    /// A service with one port named `http` on 80 and no backend yet.
    pub fn new(namespace: &str, name: &str) -> Self {
        Service {
            namespace: namespace.to_string(),
            name: name.to_string(),
            ports: vec![ServicePort {
                name: "http".to_string(),
                port: 80,
            }],
            backend: None,
        }
    }

    /// Sets the backend address.
    pub fn backend(mut self, addr: std::net::SocketAddr) -> Self {
        self.backend = Some(addr);
        self
    }

    /// Replaces the ports.
    pub fn ports(mut self, ports: &[(&str, u16)]) -> Self {
        self.ports = ports
            .iter()
            .map(|(n, p)| ServicePort {
                name: n.to_string(),
                port: *p,
            })
            .collect();
        self
    }
}

impl Workload {
    /// A workload of `kind` (`Deployment`, ...) named `name` in the default namespace.
    pub fn new(kind: &str, name: &str) -> Self {
        Workload {
            kind: kind.to_string(),
            namespace: None,
            name: name.to_string(),
            selector: BTreeMap::new(),
            replicas: 1,
        }
    }

    /// Adds a `matchLabels` entry.
    pub fn select(mut self, key: &str, value: &str) -> Self {
        self.selector.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the namespace.
    pub fn in_namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }

    /// Sets the replica count.
    pub fn replicas(mut self, replicas: i32) -> Self {
        self.replicas = replicas;
        self
    }
}

impl Pod {
    /// A scheduled, running pod on `node-1` in the default namespace, created ten minutes
    /// before start.
    pub fn new(name: &str) -> Self {
        Pod {
            namespace: None,
            name: name.to_string(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            node: default_node(),
            created_at: default_created(),
            containers: Vec::new(),
        }
    }

    /// Sets the namespace.
    pub fn in_namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the node.
    pub fn node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// Leaves the pod unscheduled.
    pub fn unscheduled(mut self) -> Self {
        self.node = None;
        self
    }

    /// Sets the creation time, in seconds relative to start.
    pub fn created_at(mut self, at: f64) -> Self {
        self.created_at = at;
        self
    }

    /// Adds a container.
    pub fn container(mut self, container: Container) -> Self {
        self.containers.push(container);
        self
    }
}

impl Container {
    /// A running regular container without logs.
    pub fn new(name: &str) -> Self {
        Container {
            name: name.to_string(),
            kind: ContainerKind::Regular,
            image: default_image(),
            state: running(),
            restart_count: 0,
            last_state: None,
            logs: Vec::new(),
            previous_logs: Vec::new(),
            generator: None,
        }
    }

    /// Sets the kind (init, regular, ephemeral).
    pub fn kind(mut self, kind: ContainerKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the image.
    pub fn image(mut self, image: &str) -> Self {
        self.image = image.to_string();
        self
    }

    /// Sets the state.
    pub fn state(mut self, state: ContainerState) -> Self {
        self.state = state;
        self
    }

    /// Marks the container as having restarted before, with the last run's lines.
    pub fn previous(mut self, exit_code: i32, reason: &str, lines: &[(f64, &str)]) -> Self {
        self.restart_count = self.restart_count.max(1);
        self.last_state = Some(ContainerState::Terminated {
            exit_code,
            reason: Some(reason.to_string()),
        });
        self.previous_logs = lines
            .iter()
            .map(|(at, text)| LogLine::text(*at, text))
            .collect();
        self
    }

    /// Adds a fixed line at `at` seconds relative to start.
    pub fn line(mut self, at: f64, text: &str) -> Self {
        self.logs.push(LogLine::text(at, text));
        self
    }

    /// Adds a fixed line of any bytes (valid UTF-8 or not) at `at` seconds relative to start.
    pub fn line_bytes(mut self, at: f64, bytes: &[u8]) -> Self {
        self.logs.push(LogLine::bytes(at, bytes));
        self
    }

    /// Sets a generator.
    pub fn generate(mut self, source: LogSource) -> Self {
        self.generator = Some(source);
        self
    }
}

impl LogSource {
    /// A generator of `rate` lines per second of about 80 bytes in the `app` style.
    pub fn new(rate: f64) -> Self {
        LogSource {
            rate,
            line_size: default_line_size(),
            json_every: 0,
            style: default_style(),
        }
    }

    /// Sets the line size.
    pub fn line_size(mut self, size: usize) -> Self {
        self.line_size = size;
        self
    }

    /// Makes every Nth line a JSON record.
    pub fn json_every(mut self, n: u32) -> Self {
        self.json_every = n;
        self
    }

    /// Sets the style (`web`, `app`, `plain`).
    pub fn style(mut self, style: &str) -> Self {
        self.style = style.to_string();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_round_trips_through_json() {
        let demo = Scenario::demo();
        let back = Scenario::from_json(&demo.to_json()).expect("demo parses");
        assert_eq!(back, demo);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = Scenario::from_json(r#"{"pods": [], "podz": []}"#).unwrap_err();
        assert!(err.to_string().contains("podz"), "{err}");
    }

    #[test]
    fn pods_without_regular_containers_are_rejected() {
        let text = r#"{"pods":[{"name":"p","containers":[{"name":"i","kind":"init"}]}]}"#;
        let err = Scenario::from_json(text).unwrap_err();
        assert!(err.to_string().contains("no regular container"), "{err}");
    }

    #[test]
    fn the_readme_example_parses() {
        let s = Scenario::from_json(include_str!("../examples/shop.json")).expect("parses");
        assert_eq!(s.pods.len(), 3);
        assert_eq!(s.timeline.len(), 7);
    }

    fn restart_json(backoff: &str) -> String {
        format!(
            r#"{{"timeline":[{{"at":1,"action":{{"do":"restartContainer","namespace":"n",
            "pod":"p","container":"c","exitCode":1,"reason":"Error"{backoff}}}}}]}}"#
        )
    }

    #[test]
    fn a_restart_may_carry_a_backoff_in_seconds() {
        let s = Scenario::from_json(&restart_json(r#","backoffSeconds":1.5"#)).expect("parses");
        assert!(matches!(
            s.timeline[0].action,
            Action::RestartContainer {
                backoff_seconds: Some(secs),
                ..
            } if secs == 1.5
        ));
        let plain = Scenario::from_json(&restart_json("")).expect("parses");
        assert!(!plain.to_json().contains("backoffSeconds"));
    }

    #[test]
    fn a_negative_backoff_is_rejected_naming_the_field() {
        let err = Scenario::from_json(&restart_json(r#","backoffSeconds":-1"#)).unwrap_err();
        assert!(err.to_string().contains("backoffSeconds"), "{err}");
    }

    fn container_json(logs: &str) -> String {
        format!(r#"{{"pods":[{{"name":"p","containers":[{{"name":"c","logs":[{logs}]}}]}}]}}"#)
    }

    #[test]
    fn log_lines_carry_text_or_base64_bytes() {
        let json =
            container_json(r#"{"at": -2, "text": "plain é"}, {"at": -1, "base64": "b2v/Cg=="}"#);
        let s = Scenario::from_json(&json).expect("parses");
        let logs = &s.pods[0].containers[0].logs;
        assert_eq!(&logs[0].bytes[..], "plain é".as_bytes());
        assert_eq!(&logs[1].bytes[..], b"ok\xff\n");
    }

    #[test]
    fn a_log_line_with_both_text_and_base64_is_rejected() {
        let json = container_json(r#"{"at": -1, "text": "a", "base64": "YQ=="}"#);
        let err = Scenario::from_json(&json).unwrap_err().to_string();
        assert!(err.contains("both `text` and `base64`"), "{err}");
    }

    #[test]
    fn a_log_line_without_text_or_base64_is_rejected() {
        let err = Scenario::from_json(&container_json(r#"{"at": -1}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither `text` nor `base64`"), "{err}");
    }

    #[test]
    fn undecodable_base64_is_rejected_naming_the_field() {
        let err = Scenario::from_json(&container_json(r#"{"at": -1, "base64": "not base64!"}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`base64`") && err.contains("at -1"), "{err}");
    }

    #[test]
    fn unknown_log_line_fields_are_rejected_with_their_name() {
        let err = Scenario::from_json(&container_json(r#"{"at": -1, "txt": "a"}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("txt"), "{err}");
    }

    #[test]
    fn invalid_utf8_lines_round_trip_through_json_as_base64() {
        let s = Scenario::new("shop").pod(
            Pod::new("p").container(
                Container::new("c")
                    .line(-2.0, "text")
                    .line_bytes(-1.0, b"bad \xc3 byte"),
            ),
        );
        let json = s.to_json();
        assert!(json.contains(r#""text": "text""#), "{json}");
        assert!(json.contains(r#""base64": "YmFkIMMgYnl0ZQ==""#), "{json}");
        assert_eq!(Scenario::from_json(&json).expect("parses"), s);
    }

    #[test]
    fn write_line_actions_take_text_or_base64() {
        let json = r#"{"timeline": [
            {"at": 1, "action": {"do": "writeLine", "namespace": "n", "pod": "p", "container": "c", "text": "hi"}},
            {"at": 2, "action": {"do": "writeLine", "namespace": "n", "pod": "p", "container": "c", "base64": "/w=="}}
        ]}"#;
        let s = Scenario::from_json(json).expect("parses");
        let bytes: Vec<&[u8]> = s
            .timeline
            .iter()
            .map(|t| match &t.action {
                Action::WriteLine(w) => &w.bytes[..],
                other => panic!("not a writeLine: {other:?}"),
            })
            .collect();
        assert_eq!(bytes, [&b"hi"[..], &b"\xff"[..]]);
        assert_eq!(Scenario::from_json(&s.to_json()).expect("round trip"), s);

        let both = json.replace(r#""text": "hi""#, r#""text": "hi", "base64": "aGk=""#);
        let err = Scenario::from_json(&both).unwrap_err().to_string();
        assert!(err.contains("writeLine for n/p/c has both"), "{err}");
        let unknown = json.replace(r#""text": "hi""#, r#""line": "hi""#);
        let err = Scenario::from_json(&unknown).unwrap_err().to_string();
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn minimal_json_gets_defaults() {
        let s = Scenario::from_json(r#"{"pods":[{"name":"p","containers":[{"name":"c"}]}]}"#)
            .expect("parses");
        assert_eq!(s.default_namespace, "default");
        assert_eq!(s.pods[0].node.as_deref(), Some("node-1"));
        assert_eq!(s.pods[0].containers[0].state, ContainerState::Running {});
    }
}
