//! Finding the pods of an app and starting and stopping their tails: [`Discovery`].
//!
//! The initial list decides what the history covers; when following, a kube-runtime watcher
//! per namespace (with its default backoff) picks up new pods, restarts and deletions. Each
//! selected container gets a tail once it has logs to give. This module does not read logs
//! itself and does not order them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::event::{EventKind, LogEvent, StatusEvent};
use crate::query::{LogQuery, Namespaces};
use crate::select::{self, Selected};
use crate::tail::{self, TailMsg, TailSpec};

/// Lines buffered per container before its tail waits for the consumer.
const TAIL_BUFFER: usize = 64;

/// First and longest delay between attempts to reopen a log stream.
pub(crate) const STREAM_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(30));

/// The tail currently reading one container of one pod.
struct TailEntry {
    instance: String,
    /// Resolves when that tail has finished.
    done: Option<oneshot::Receiver<()>>,
}

/// A pod being followed.
struct PodEntry {
    namespace: String,
    name: String,
    /// Which watch found it.
    scope: usize,
    /// Turns true when the pod is deleted.
    deleted: watch::Sender<bool>,
}

/// Owns every tail and the knowledge of which pods and containers are followed.
pub(crate) struct Discovery {
    client: Client,
    query: Arc<LogQuery>,
    tails: HashMap<(String, String), TailEntry>,
    pods: HashMap<String, PodEntry>,
    announced_waiting: HashSet<(String, String)>,
    /// A `waiting` event for "no pods yet" went out and no pod came since.
    announced_no_pods: bool,
    tasks: JoinSet<()>,
    /// Where tails started after the initial list go.
    later: Option<mpsc::UnboundedSender<mpsc::Receiver<TailMsg>>>,
    /// Discovery's own status events.
    status: Option<mpsc::Sender<TailMsg>>,
    backoff: (Duration, Duration),
}

impl Discovery {
    pub(crate) fn new(client: Client, query: Arc<LogQuery>) -> Self {
        Discovery {
            client,
            query,
            tails: HashMap::new(),
            pods: HashMap::new(),
            announced_waiting: HashSet::new(),
            announced_no_pods: false,
            tasks: JoinSet::new(),
            later: None,
            status: None,
            backoff: STREAM_BACKOFF,
        }
    }

    /// How many containers of `pods` have logs to give now.
    pub(crate) fn readable_count<'a>(&self, pods: impl Iterator<Item = &'a Pod>) -> usize {
        pods.map(|p| {
            self.selected(p)
                .iter()
                .filter(|s| s.instance.is_some())
                .count()
        })
        .sum()
    }

    /// Starts the tails of a pod from the initial list and returns their receivers, plus
    /// status events for containers that cannot be read yet.
    pub(crate) fn start_initial(
        &mut self,
        pod: &Pod,
        scope: usize,
        events: &mut Vec<LogEvent>,
    ) -> Vec<mpsc::Receiver<TailMsg>> {
        let mut receivers = Vec::new();
        self.reconcile(pod, scope, true, events, &mut receivers);
        receivers
    }

    /// Waits for every tail to finish (history only, no watch).
    pub(crate) async fn drain(mut self) {
        self.later = None;
        self.status = None;
        while self.tasks.join_next().await.is_some() {}
    }

    /// Follows the pods: watches every scope but the `forbidden` ones and reconciles tails
    /// until dropped.
    pub(crate) async fn watch(
        mut self,
        later: mpsc::UnboundedSender<mpsc::Receiver<TailMsg>>,
        status: mpsc::Sender<TailMsg>,
        forbidden: HashSet<usize>,
    ) {
        self.later = Some(later);
        self.status = Some(status);
        let scopes = scopes(&self.client, &self.query.namespaces);
        let selector = self.query.selector.clone();
        // Scopes that may not be listed were reported already; watching them would only fail.
        let allowed = scopes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !forbidden.contains(i));
        let watches = allowed.map(|(i, api)| {
            let config = watcher::Config::default().labels(&selector);
            watcher(api, config)
                .default_backoff()
                .map(move |ev| (i, ev))
                .boxed()
        });
        let mut events = stream::select_all(watches);
        let mut init_seen: HashMap<usize, HashSet<String>> = HashMap::new();
        let mut failing: HashSet<usize> = HashSet::new();

        while let Some((scope, event)) = events.next().await {
            self.reap();
            let event = match event {
                Ok(event) => {
                    failing.remove(&scope);
                    event
                }
                Err(err) => {
                    self.watch_failed(scope, &err, &mut failing).await;
                    continue;
                }
            };
            match event {
                watcher::Event::Init => {
                    init_seen.insert(scope, HashSet::new());
                }
                watcher::Event::InitApply(pod) => {
                    init_seen
                        .entry(scope)
                        .or_default()
                        .insert(pod.uid().unwrap_or_default());
                    self.reconcile_later(&pod, scope).await;
                }
                watcher::Event::InitDone => {
                    let seen = init_seen.remove(&scope).unwrap_or_default();
                    let gone: Vec<String> = self
                        .pods
                        .iter()
                        .filter(|(uid, p)| p.scope == scope && !seen.contains(*uid))
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in gone {
                        self.pod_deleted(&uid).await;
                    }
                    if self.pods.is_empty() && self.tails.is_empty() {
                        self.send_waiting().await;
                    }
                }
                watcher::Event::Apply(pod) => self.reconcile_later(&pod, scope).await,
                watcher::Event::Delete(pod) => {
                    self.pod_deleted(&pod.uid().unwrap_or_default()).await;
                }
            }
        }
    }

    async fn watch_failed(
        &mut self,
        scope: usize,
        err: &watcher::Error,
        failing: &mut HashSet<usize>,
    ) {
        let forbidden = watch_error_code(err) == Some(403);
        if forbidden {
            tracing::warn!(scope, error = %err, "watching pods is forbidden");
        } else {
            tracing::debug!(scope, error = %err, "watching pods failed; retrying");
        }
        if failing.insert(scope) {
            let message = match forbidden {
                true => format!(
                    "watching pods is forbidden in {}; ask for list and watch on pods",
                    describe_scope(&self.query.namespaces, scope)
                ),
                false => format!("watching pods failed, retrying: {err}"),
            };
            self.send_status(
                String::new(),
                String::new(),
                None,
                EventKind::Error,
                message,
            )
            .await;
        }
    }

    async fn reconcile_later(&mut self, pod: &Pod, scope: usize) {
        let mut events = Vec::new();
        let mut receivers = Vec::new();
        self.reconcile(pod, scope, false, &mut events, &mut receivers);
        for ev in events {
            if let Some(status) = &self.status {
                let _ = status.send(TailMsg::Event(ev)).await;
            }
        }
        if let Some(later) = &self.later {
            for rx in receivers {
                let _ = later.send(rx);
            }
        }
    }

    fn selected(&self, pod: &Pod) -> Vec<Selected> {
        select::select(pod, &self.query.containers, self.query.previous)
    }

    /// Starts a tail for every selected container with a new instance to read.
    fn reconcile(
        &mut self,
        pod: &Pod,
        scope: usize,
        initial: bool,
        events: &mut Vec<LogEvent>,
        receivers: &mut Vec<mpsc::Receiver<TailMsg>>,
    ) {
        let uid = pod.uid().unwrap_or_default();
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        self.announced_no_pods = false;
        let deleted = self
            .pods
            .entry(uid.clone())
            .or_insert_with(|| PodEntry {
                namespace: namespace.clone(),
                name: name.clone(),
                scope,
                deleted: watch::channel(false).0,
            })
            .deleted
            .clone();

        for container in self.selected(pod) {
            let key = (uid.clone(), container.name.clone());
            let Some(instance) = container.instance.clone() else {
                if let Some(reason) = &container.waiting
                    && self.announced_waiting.insert(key)
                {
                    events.push(status_event(
                        &namespace,
                        &name,
                        Some(&container.name),
                        EventKind::Waiting,
                        reason.clone(),
                    ));
                }
                continue;
            };
            if self.tails.get(&key).is_some_and(|t| t.instance == instance) {
                continue;
            }
            self.announced_waiting.remove(&key);
            let previous = self.tails.remove(&key);
            if !initial && self.live_tails() >= self.query.max_streams {
                events.push(status_event(
                    &namespace,
                    &name,
                    Some(&container.name),
                    EventKind::Error,
                    format!(
                        "not reading this container: {} log streams are open, the most allowed",
                        self.query.max_streams
                    ),
                ));
                // Remember the instance so the refusal is said once, not on every update.
                self.tails.insert(
                    key,
                    TailEntry {
                        instance,
                        done: None,
                    },
                );
                continue;
            }
            let restarted = previous.as_ref().map(|_| {
                container
                    .last_termination
                    .as_ref()
                    .map(|t| t.describe())
                    .unwrap_or_else(|| "new container instance".to_string())
            });
            let spec = TailSpec {
                api: Api::namespaced(self.client.clone(), &namespace),
                namespace: namespace.clone(),
                pod: name.clone(),
                container: container.name.clone(),
                instance: instance.clone(),
                follow: self.query.follow && container.running && !self.query.previous,
                previous: self.query.previous,
                tail_lines: if initial { self.query.tail_lines } else { None },
                since: if initial { self.query.since } else { None },
                max_line_bytes: self.query.max_line_bytes,
                restarted,
                backoff: self.backoff,
            };
            let after = previous.and_then(|p| p.done);
            let (tx, rx) = mpsc::channel(TAIL_BUFFER);
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let stop = deleted.subscribe();
            self.tasks.spawn(async move {
                let _done = done_tx;
                let _ = tail::run(spec, tx, stop, after).await;
            });
            self.tails.insert(
                key,
                TailEntry {
                    instance,
                    done: Some(done_rx),
                },
            );
            receivers.push(rx);
        }
    }

    async fn pod_deleted(&mut self, uid: &str) {
        let Some(pod) = self.pods.remove(uid) else {
            return;
        };
        let _ = pod.deleted.send(true);
        self.tails.retain(|(tail_uid, _), _| tail_uid != uid);
        self.announced_waiting
            .retain(|(tail_uid, _)| tail_uid != uid);
        self.send_status(
            pod.namespace,
            pod.name,
            None,
            EventKind::PodDeleted,
            String::new(),
        )
        .await;
    }

    /// Records that the caller already said no pods match.
    pub(crate) fn no_pods_announced(&mut self) {
        self.announced_no_pods = true;
    }

    async fn send_waiting(&mut self) {
        if std::mem::replace(&mut self.announced_no_pods, true) {
            return;
        }
        let message = format!(
            "no pods match {} in {} yet; waiting for them",
            self.query.selector,
            describe_namespaces(&self.query.namespaces)
        );
        self.send_status(
            String::new(),
            String::new(),
            None,
            EventKind::Waiting,
            message,
        )
        .await;
    }

    async fn send_status(
        &self,
        namespace: String,
        pod: String,
        container: Option<&str>,
        kind: EventKind,
        message: String,
    ) {
        if let Some(status) = &self.status {
            let ev = status_event(&namespace, &pod, container, kind, message);
            let _ = status.send(TailMsg::Event(ev)).await;
        }
    }

    fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    fn live_tails(&self) -> usize {
        self.tasks.len()
    }
}

/// A status event about a pod or container, stamped now.
pub(crate) fn status_event(
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    event: EventKind,
    message: String,
) -> LogEvent {
    LogEvent::Event(StatusEvent {
        time: Utc::now(),
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: container.map(str::to_string),
        event,
        message,
    })
}

/// One pods API per place to look.
pub(crate) fn scopes(client: &Client, namespaces: &Namespaces) -> Vec<Api<Pod>> {
    match namespaces {
        Namespaces::One(ns) => vec![Api::namespaced(client.clone(), ns)],
        Namespaces::Some(list) => list
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect(),
        Namespaces::All => vec![Api::all(client.clone())],
    }
}

/// `namespace shop`, `namespaces a, b` or `all namespaces`.
pub(crate) fn describe_namespaces(namespaces: &Namespaces) -> String {
    match namespaces {
        Namespaces::One(ns) => format!("namespace {ns}"),
        Namespaces::Some(list) if list.len() == 1 => format!("namespace {}", list[0]),
        Namespaces::Some(list) => format!("namespaces {}", list.join(", ")),
        Namespaces::All => "all namespaces".to_string(),
    }
}

/// The namespace a scope index stands for, for messages.
pub(crate) fn describe_scope(namespaces: &Namespaces, scope: usize) -> String {
    match namespaces {
        Namespaces::One(ns) => format!("namespace {ns}"),
        Namespaces::Some(list) => match list.get(scope) {
            Some(ns) => format!("namespace {ns}"),
            None => describe_namespaces(namespaces),
        },
        Namespaces::All => "all namespaces".to_string(),
    }
}

fn watch_error_code(err: &watcher::Error) -> Option<u16> {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_described_for_messages() {
        assert_eq!(
            describe_namespaces(&Namespaces::One("shop".into())),
            "namespace shop"
        );
        assert_eq!(
            describe_namespaces(&Namespaces::Some(vec!["a".into(), "b".into()])),
            "namespaces a, b"
        );
        assert_eq!(describe_namespaces(&Namespaces::All), "all namespaces");
        assert_eq!(
            describe_scope(&Namespaces::Some(vec!["a".into(), "b".into()]), 1),
            "namespace b"
        );
    }
}
