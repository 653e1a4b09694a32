//! Which containers of a pod to tail, and whether each has logs to give: [`select`].
//!
//! Pure functions over a pod object; no IO. The container filter comes from the query;
//! the state (running, terminated, waiting) decides when a tail can start.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};

use crate::query::ContainerFilter;

/// Where a container is declared in the pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// `spec.initContainers`.
    Init,
    /// `spec.containers`.
    Regular,
    /// `spec.ephemeralContainers`.
    Ephemeral,
}

/// How a container instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The process's exit code.
    pub exit_code: i32,
    /// The kubelet's reason, such as `OOMKilled` or `Completed`.
    pub reason: Option<String>,
}

impl Termination {
    fn from_state(t: &ContainerStateTerminated) -> Self {
        Termination {
            exit_code: t.exit_code,
            reason: t.reason.clone(),
        }
    }

    /// `exit code 137 (OOMKilled)`.
    pub fn describe(&self) -> String {
        match &self.reason {
            Some(reason) if !reason.is_empty() => {
                format!("exit code {} ({reason})", self.exit_code)
            }
            _ => format!("exit code {}", self.exit_code),
        }
    }
}

/// A container chosen by the filter, with what its status says about its logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Container name.
    pub name: String,
    /// Where it is declared.
    pub kind: ContainerKind,
    /// The instance whose logs would be read (a container ID), when there are logs to read.
    pub instance: Option<String>,
    /// The instance is running, so a follow stream can go on.
    pub running: bool,
    /// How the previous instance ended, from `lastState.terminated`.
    pub last_termination: Option<Termination>,
    /// The previous instance (its container ID), which `previous=true` reads.
    pub last_instance: Option<String>,
    /// How the current instance ended, when it has.
    pub termination: Option<Termination>,
    /// Why the container waits, when it waits to start (such as `ContainerCreating`).
    pub waiting: Option<String>,
}

/// Whether the filter keeps a container of this name and kind.
pub fn keeps(filter: &ContainerFilter, name: &str, kind: ContainerKind) -> bool {
    let kind_on = match kind {
        ContainerKind::Regular => true,
        ContainerKind::Init => filter.init,
        ContainerKind::Ephemeral => filter.ephemeral,
    };
    let included = filter.include.as_ref().is_none_or(|re| re.is_match(name));
    let excluded = filter.exclude.as_ref().is_some_and(|re| re.is_match(name));
    kind_on && included && !excluded
}

/// The containers of `pod` the filter keeps, in spec order (init, regular, ephemeral).
///
/// With `previous`, the instance is the one before the current one and only containers that
/// have one are readable.
pub fn select(pod: &Pod, filter: &ContainerFilter, previous: bool) -> Vec<Selected> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let scheduled = spec.node_name.as_deref().is_some_and(|n| !n.is_empty());
    let status = pod.status.as_ref();

    let mut names: Vec<(String, ContainerKind)> = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        names.push((c.name.clone(), ContainerKind::Init));
    }
    for c in &spec.containers {
        names.push((c.name.clone(), ContainerKind::Regular));
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        names.push((c.name.clone(), ContainerKind::Ephemeral));
    }

    names
        .into_iter()
        .filter(|(name, kind)| keeps(filter, name, *kind))
        .map(|(name, kind)| {
            let statuses = status.and_then(|s| match kind {
                ContainerKind::Init => s.init_container_statuses.as_ref(),
                ContainerKind::Regular => s.container_statuses.as_ref(),
                ContainerKind::Ephemeral => s.ephemeral_container_statuses.as_ref(),
            });
            let found = statuses.and_then(|list| list.iter().find(|cs| cs.name == name));
            describe(name, kind, found, scheduled, previous)
        })
        .collect()
}

/// The current state of the container named `name`, whatever its kind.
pub fn find(pod: &Pod, name: &str) -> Option<Selected> {
    let every = ContainerFilter {
        init: true,
        ephemeral: true,
        ..Default::default()
    };
    select(pod, &every, false)
        .into_iter()
        .find(|s| s.name == name)
}

fn describe(
    name: String,
    kind: ContainerKind,
    status: Option<&ContainerStatus>,
    scheduled: bool,
    previous: bool,
) -> Selected {
    let mut selected = Selected {
        name,
        kind,
        instance: None,
        running: false,
        last_termination: None,
        last_instance: None,
        termination: None,
        waiting: None,
    };
    let Some(status) = status else {
        return selected;
    };
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    selected.last_termination = last.map(Termination::from_state);
    if !scheduled {
        return selected;
    }
    let last_id = last
        .and_then(|t| t.container_id.clone())
        .filter(|id| !id.is_empty());
    let current_id = status.container_id.clone().filter(|id| !id.is_empty());
    selected.last_instance = last_id.clone();

    if previous {
        // The previous instance has logs as soon as lastState says it ended.
        selected.instance = last.map(|_| {
            format!(
                "previous:{}",
                last_id.clone().unwrap_or_else(|| restart_key(status))
            )
        });
        return selected;
    }

    let state = status.state.as_ref();
    selected.waiting = state
        .and_then(|s| s.waiting.as_ref())
        .map(|w| w.reason.clone().unwrap_or_else(|| "waiting".to_string()));
    if let Some(running) = state.and_then(|s| s.running.as_ref()) {
        selected.running = true;
        selected.instance = Some(current_id.unwrap_or_else(|| {
            let started = running.started_at.as_ref().map(|t| t.0.to_string());
            format!("{}:{}", restart_key(status), started.unwrap_or_default())
        }));
    } else if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        selected.termination = Some(Termination::from_state(terminated));
        let id = terminated.container_id.clone().filter(|id| !id.is_empty());
        selected.instance = Some(id.or(current_id).unwrap_or_else(|| restart_key(status)));
    } else if last.is_some() {
        // Waiting to start again (CrashLoopBackOff): the kubelet serves the last run's logs.
        selected.termination = selected.last_termination.clone();
        selected.instance = Some(last_id.unwrap_or_else(|| restart_key(status)));
    }
    selected
}

fn restart_key(status: &ContainerStatus) -> String {
    format!("restart-{}", status.restart_count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn web_pod() -> Pod {
        pod(json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {
                "nodeName": "node-1",
                "initContainers": [{"name": "migrate"}],
                "containers": [{"name": "app"}, {"name": "sidecar"}],
                "ephemeralContainers": [{"name": "debugger"}]
            },
            "status": {
                "initContainerStatuses": [{"name": "migrate", "image": "i", "imageID": "",
                    "ready": false, "restartCount": 0, "containerID": "containerd://m1",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                        "containerID": "containerd://m1"}}}],
                "containerStatuses": [
                    {"name": "app", "image": "i", "imageID": "", "ready": true,
                     "restartCount": 1, "containerID": "containerd://a2",
                     "state": {"running": {"startedAt": "2026-05-01T12:00:00Z"}},
                     "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                        "containerID": "containerd://a1"}}},
                    {"name": "sidecar", "image": "i", "imageID": "", "ready": false,
                     "restartCount": 0,
                     "state": {"waiting": {"reason": "ContainerCreating"}}}
                ],
                "ephemeralContainerStatuses": [{"name": "debugger", "image": "i",
                    "imageID": "", "ready": false, "restartCount": 0,
                    "containerID": "containerd://d1",
                    "state": {"running": {}}}]
            }
        }))
    }

    fn names(selected: &[Selected]) -> Vec<&str> {
        selected.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn regular_containers_only_by_default() {
        let selected = select(&web_pod(), &ContainerFilter::default(), false);
        assert_eq!(names(&selected), ["app", "sidecar"]);
    }

    #[test]
    fn init_and_ephemeral_containers_when_asked() {
        let filter = ContainerFilter {
            init: true,
            ephemeral: true,
            ..Default::default()
        };
        let selected = select(&web_pod(), &filter, false);
        assert_eq!(names(&selected), ["migrate", "app", "sidecar", "debugger"]);
    }

    #[test]
    fn exclude_wins_over_include() {
        let filter = ContainerFilter {
            include: Some(Regex::new("a").unwrap()),
            exclude: Some(Regex::new("^side").unwrap()),
            ..Default::default()
        };
        assert_eq!(names(&select(&web_pod(), &filter, false)), ["app"]);
    }

    #[test]
    fn running_container_is_readable_with_its_id() {
        let selected = select(&web_pod(), &ContainerFilter::default(), false);
        assert_eq!(selected[0].instance.as_deref(), Some("containerd://a2"));
        assert!(selected[0].running);
        assert_eq!(
            selected[0]
                .last_termination
                .as_ref()
                .map(Termination::describe)
                .as_deref(),
            Some("exit code 137 (OOMKilled)")
        );
    }

    #[test]
    fn waiting_container_without_a_past_run_has_no_logs() {
        let selected = select(&web_pod(), &ContainerFilter::default(), false);
        assert_eq!(selected[1].instance, None);
        assert_eq!(selected[1].waiting.as_deref(), Some("ContainerCreating"));
    }

    #[test]
    fn terminated_init_container_is_readable_but_not_running() {
        let filter = ContainerFilter {
            init: true,
            ..Default::default()
        };
        let selected = select(&web_pod(), &filter, false);
        assert_eq!(selected[0].instance.as_deref(), Some("containerd://m1"));
        assert!(!selected[0].running);
    }

    #[test]
    fn previous_reads_only_containers_that_restarted() {
        let selected = select(&web_pod(), &ContainerFilter::default(), true);
        assert_eq!(
            selected[0].instance.as_deref(),
            Some("previous:containerd://a1")
        );
        assert_eq!(selected[1].instance, None);
    }

    #[test]
    fn unscheduled_pod_has_no_logs() {
        let mut p = web_pod();
        if let Some(spec) = p.spec.as_mut() {
            spec.node_name = None;
        }
        let selected = select(&p, &ContainerFilter::default(), false);
        assert!(selected.iter().all(|s| s.instance.is_none()));
    }
}
