//! JSON shapes the apiserver sends: pods, lists, the pod Table kubectl prints, workloads,
//! services, Status objects and discovery documents.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::cluster::{CState, ContainerRec, PodRec, ServiceRec, Terminated};
use crate::scenario::{ContainerKind, Workload};

/// Metadata timestamps: whole seconds, UTC.
pub fn meta_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A failure Status object.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    });
    if let (Some(details), Some(map)) = (details, v.as_object_mut()) {
        map.insert("details".to_string(), details);
    }
    if let Some(map) = v.as_object_mut() {
        map.insert("code".to_string(), json!(code));
    }
    v
}

fn labels_json(labels: &BTreeMap<String, String>) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "startedAt": meta_time(t.started),
        "finishedAt": meta_time(t.finished),
        "containerID": t.id,
    });
    if let (Some(reason), Some(map)) = (&t.reason, v.as_object_mut()) {
        map.insert("reason".to_string(), json!(reason));
    }
    v
}

fn container_status(c: &ContainerRec) -> Value {
    let state = match &c.state {
        CState::Running { started } => json!({"running": {"startedAt": meta_time(*started)}}),
        CState::Waiting { reason } => match &c.backoff {
            Some(backoff) => json!({"waiting": {"reason": reason, "message": backoff.message}}),
            None => json!({"waiting": {"reason": reason}}),
        },
        CState::Terminated(t) => json!({"terminated": terminated_json(t)}),
    };
    let last = match &c.last {
        Some(t) => json!({"terminated": terminated_json(t)}),
        None => json!({}),
    };
    let running = matches!(c.state, CState::Running { .. });
    let mut v = json!({
        "name": c.name,
        "state": state,
        "lastState": last,
        "ready": running,
        "restartCount": c.restarts,
        "image": c.image,
        "imageID": format!("{}@sha256:{}", c.image.split(':').next().unwrap_or(""), "0".repeat(64)),
        "started": running,
    });
    if !c.id.is_empty()
        && let Some(map) = v.as_object_mut()
    {
        map.insert("containerID".to_string(), json!(c.id));
    }
    v
}

fn container_spec(c: &ContainerRec) -> Value {
    json!({
        "name": c.name,
        "image": c.image,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

/// Object metadata of a pod.
pub fn pod_metadata(pod: &PodRec) -> Value {
    let mut meta = json!({
        "name": pod.name,
        "namespace": pod.namespace,
        "uid": pod.uid,
        "resourceVersion": pod.resource_version.to_string(),
        "creationTimestamp": meta_time(pod.created),
    });
    let Some(map) = meta.as_object_mut() else {
        return meta;
    };
    if !pod.labels.is_empty() {
        map.insert("labels".to_string(), labels_json(&pod.labels));
    }
    if !pod.annotations.is_empty() {
        map.insert("annotations".to_string(), labels_json(&pod.annotations));
    }
    if let Some(deleting) = pod.deleting {
        map.insert("deletionTimestamp".to_string(), json!(meta_time(deleting)));
        map.insert("deletionGracePeriodSeconds".to_string(), json!(30));
    }
    meta
}

/// A full Pod object as `GET /api/v1/namespaces/{ns}/pods/{name}` returns it.
pub fn pod_json(pod: &PodRec) -> Value {
    let of = |kind: ContainerKind| -> Vec<&ContainerRec> {
        pod.containers.iter().filter(|c| c.kind == kind).collect()
    };
    let (init, regular, ephemeral) = (
        of(ContainerKind::Init),
        of(ContainerKind::Regular),
        of(ContainerKind::Ephemeral),
    );

    let mut spec = Map::new();
    spec.insert(
        "containers".to_string(),
        Value::Array(regular.iter().map(|c| container_spec(c)).collect()),
    );
    if !init.is_empty() {
        spec.insert(
            "initContainers".to_string(),
            Value::Array(init.iter().map(|c| container_spec(c)).collect()),
        );
    }
    if !ephemeral.is_empty() {
        spec.insert(
            "ephemeralContainers".to_string(),
            Value::Array(ephemeral.iter().map(|c| container_spec(c)).collect()),
        );
    }
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("serviceAccountName", json!("default")),
        ("serviceAccount", json!("default")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
        ("priority", json!(0)),
        ("enableServiceLinks", json!(true)),
    ] {
        spec.insert(k.to_string(), v);
    }
    if let Some(node) = &pod.node {
        spec.insert("nodeName".to_string(), json!(node));
    }

    let mut status = Map::new();
    let phase = pod.phase();
    status.insert("phase".to_string(), json!(phase));
    let scheduled_at = meta_time(pod.created);
    let all_ready = regular
        .iter()
        .all(|c| matches!(c.state, CState::Running { .. }));
    let cond = |t: &str, ok: bool| {
        json!({"type": t, "status": if ok { "True" } else { "False" },
               "lastProbeTime": null, "lastTransitionTime": scheduled_at})
    };
    if pod.node.is_some() {
        status.insert(
            "conditions".to_string(),
            json!([
                cond("PodReadyToStartContainers", true),
                cond("Initialized", true),
                cond("Ready", all_ready),
                cond("ContainersReady", all_ready),
                cond("PodScheduled", true),
            ]),
        );
        status.insert("hostIP".to_string(), json!("172.18.0.2"));
        status.insert("hostIPs".to_string(), json!([{"ip": "172.18.0.2"}]));
        status.insert("podIP".to_string(), json!(pod.ip));
        status.insert("podIPs".to_string(), json!([{"ip": pod.ip}]));
        status.insert("startTime".to_string(), json!(meta_time(pod.created)));
        if !init.is_empty() {
            status.insert(
                "initContainerStatuses".to_string(),
                Value::Array(init.iter().map(|c| container_status(c)).collect()),
            );
        }
        status.insert(
            "containerStatuses".to_string(),
            Value::Array(regular.iter().map(|c| container_status(c)).collect()),
        );
        if !ephemeral.is_empty() {
            status.insert(
                "ephemeralContainerStatuses".to_string(),
                Value::Array(ephemeral.iter().map(|c| container_status(c)).collect()),
            );
        }
    } else {
        let mut c = cond("PodScheduled", false);
        if let Some(map) = c.as_object_mut() {
            map.insert("reason".to_string(), json!("Unschedulable"));
            map.insert(
                "message".to_string(),
                json!(
                    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
                ),
            );
        }
        status.insert("conditions".to_string(), json!([c]));
    }
    status.insert("qosClass".to_string(), json!("BestEffort"));

    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": pod_metadata(pod),
        "spec": Value::Object(spec),
        "status": Value::Object(status),
    })
}

/// A list object; item kind and apiVersion are dropped, as the apiserver does.
pub fn list(kind: &str, api_version: &str, resource_version: u64, items: Vec<Value>) -> Value {
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut item| {
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": resource_version.to_string()},
        "items": items,
    })
}

/// A duration the way kubectl prints ages: `42s`, `5m3s`, `3h10m`, `12d`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let mins = secs / 60;
    if mins < 10 {
        return match secs % 60 {
            0 => format!("{mins}m"),
            s => format!("{mins}m{s}s"),
        };
    }
    if mins < 180 {
        return format!("{mins}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return match mins % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            dy => format!("{years}y{dy}d"),
        };
    }
    format!("{years}y")
}

/// The STATUS column kubectl shows for a pod.
pub fn pod_display_status(pod: &PodRec) -> String {
    if pod.node.is_none() {
        return if pod.deleting.is_some() {
            "Terminating"
        } else {
            "Pending"
        }
        .to_string();
    }
    let mut reason = pod.phase().to_string();
    let init: Vec<&ContainerRec> = pod
        .containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Init)
        .collect();
    let mut initializing = false;
    for (i, c) in init.iter().enumerate() {
        match &c.state {
            CState::Terminated(t) if t.exit_code == 0 => continue,
            CState::Terminated(t) => {
                reason = match &t.reason {
                    Some(r) if !r.is_empty() => format!("Init:{r}"),
                    _ => format!("Init:ExitCode:{}", t.exit_code),
                };
            }
            CState::Waiting { reason: r } if r != "PodInitializing" && !r.is_empty() => {
                reason = format!("Init:{r}");
            }
            _ => reason = format!("Init:{i}/{}", init.len()),
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in pod
            .containers
            .iter()
            .filter(|c| c.kind == ContainerKind::Regular)
            .rev()
        {
            match &c.state {
                CState::Waiting { reason: r } if !r.is_empty() => reason = r.clone(),
                CState::Terminated(t) => {
                    reason = match &t.reason {
                        Some(r) if !r.is_empty() => r.clone(),
                        _ => format!("ExitCode:{}", t.exit_code),
                    };
                }
                CState::Running { .. } => has_running = true,
                _ => {}
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".to_string();
        }
    }
    if pod.deleting.is_some() {
        reason = "Terminating".to_string();
    }
    reason
}

const POD_COLUMNS: [(&str, &str, &str, u8); 9] = [
    ("Name", "name", "Name must be unique within a namespace.", 0),
    (
        "Ready",
        "",
        "The aggregate readiness state of this pod for accepting traffic.",
        0,
    ),
    (
        "Status",
        "",
        "The aggregate status of the containers in this pod.",
        0,
    ),
    (
        "Restarts",
        "",
        "The number of times the containers in this pod have been restarted.",
        0,
    ),
    ("Age", "", "Time since the pod was created.", 0),
    ("IP", "", "IP address allocated to the pod.", 1),
    ("Node", "", "Name of the node the pod is scheduled on.", 1),
    (
        "Nominated Node",
        "",
        "Node the scheduler nominated for the pod.",
        1,
    ),
    ("Readiness Gates", "", "Readiness gates of the pod.", 1),
];

/// The column definitions of the pod Table.
pub fn pod_columns() -> Value {
    Value::Array(
        POD_COLUMNS
            .iter()
            .map(|(name, format, description, priority)| {
                json!({"name": name, "type": "string", "format": format,
                       "description": description, "priority": priority})
            })
            .collect(),
    )
}

/// One row of the pod Table: its cells and the pod's metadata.
pub fn pod_row(pod: &PodRec, now: DateTime<Utc>) -> Value {
    let regular: Vec<&ContainerRec> = pod
        .containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Regular)
        .collect();
    let ready = regular
        .iter()
        .filter(|c| matches!(c.state, CState::Running { .. }))
        .count();
    let restarts: i32 = regular.iter().map(|c| c.restarts).sum();
    let last_restart = regular
        .iter()
        .filter_map(|c| c.last.as_ref())
        .map(|t| t.finished)
        .max();
    let restarts = match last_restart {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    let ip = if pod.ip.is_empty() {
        "<none>".to_string()
    } else {
        pod.ip.clone()
    };
    json!({
        "cells": [
            pod.name,
            format!("{ready}/{}", regular.len()),
            pod_display_status(pod),
            restarts,
            human_duration(now - pod.created),
            ip,
            pod.node.clone().unwrap_or_else(|| "<none>".to_string()),
            "<none>",
            "<none>",
        ],
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": pod_metadata(pod),
        },
    })
}

/// A `meta.k8s.io/v1` Table of pods, with the columns the apiserver's pod printer has.
pub fn pod_table(pods: &[&PodRec], resource_version: u64, now: DateTime<Utc>) -> Value {
    let columns = pod_columns();
    let rows: Vec<Value> = pods.iter().map(|pod| pod_row(pod, now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Group, version and plural of a workload kind.
pub fn workload_resource(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "Deployment" => Some(("apps/v1", "deployments")),
        "StatefulSet" => Some(("apps/v1", "statefulsets")),
        "DaemonSet" => Some(("apps/v1", "daemonsets")),
        "ReplicaSet" => Some(("apps/v1", "replicasets")),
        "Job" => Some(("batch/v1", "jobs")),
        _ => None,
    }
}

/// A workload object with its selector and a pod template that carries its labels.
pub fn workload_json(w: &Workload, created: DateTime<Utc>, uid: &str, ready: i32) -> Value {
    let api_version = workload_resource(&w.kind)
        .map(|(v, _)| v)
        .unwrap_or("apps/v1");
    let labels = labels_json(&w.selector);
    let mut spec = json!({
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]},
        },
    });
    if w.kind != "DaemonSet"
        && let Some(map) = spec.as_object_mut()
    {
        let key = if w.kind == "Job" {
            "parallelism"
        } else {
            "replicas"
        };
        map.insert(key.to_string(), json!(w.replicas));
    }
    json!({
        "kind": w.kind,
        "apiVersion": api_version,
        "metadata": {
            "name": w.name,
            "namespace": w.namespace,
            "uid": uid,
            "resourceVersion": "900",
            "generation": 1,
            "creationTimestamp": meta_time(created),
            "labels": labels,
        },
        "spec": spec,
        "status": {"replicas": w.replicas, "readyReplicas": ready, "availableReplicas": ready},
    })
}

/// A Table of workloads of one kind, with the columns kubectl shows for that kind.
pub fn workload_table(
    kind: &str,
    items: &[Value],
    resource_version: u64,
    now: DateTime<Utc>,
) -> Value {
    let names: &[&str] = match kind {
        "Deployment" => &["Name", "Ready", "Up-to-date", "Available", "Age"],
        "StatefulSet" => &["Name", "Ready", "Age"],
        "ReplicaSet" => &["Name", "Desired", "Current", "Ready", "Age"],
        "DaemonSet" => &[
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age",
        ],
        _ => &["Name", "Status", "Completions", "Duration", "Age"],
    };
    let columns: Vec<Value> = names
        .iter()
        .map(|n| {
            let format = if *n == "Name" { "name" } else { "" };
            json!({"name": n, "type": "string", "format": format, "description": "", "priority": 0})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let name = item["metadata"]["name"].clone();
            let want = item["status"]["replicas"].as_i64().unwrap_or(0);
            let ready = item["status"]["readyReplicas"].as_i64().unwrap_or(0);
            let age = item["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| human_duration(now - t.with_timezone(&Utc)))
                .unwrap_or_else(|| "<unknown>".to_string());
            let cells = match kind {
                "Deployment" => json!([name, format!("{ready}/{want}"), want, ready, age]),
                "StatefulSet" => json!([name, format!("{ready}/{want}"), age]),
                "ReplicaSet" => json!([name, want, want, ready, age]),
                "DaemonSet" => json!([name, want, want, ready, want, ready, "<none>", age]),
                _ => json!([name, "Running", format!("0/{want}"), age, age]),
            };
            let mut metadata = item["metadata"].clone();
            if let Some(map) = metadata.as_object_mut() {
                map.remove("labels");
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                   "apiVersion": "meta.k8s.io/v1", "metadata": metadata}})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A Service object.
pub fn service_json(ns: &str, name: &str, svc: &ServiceRec) -> Value {
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|p| json!({"name": p.name, "protocol": "TCP", "port": p.port, "targetPort": p.port}))
        .collect();
    json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": svc.uid,
            "resourceVersion": "800",
            "creationTimestamp": meta_time(svc.created),
        },
        "spec": {"ports": ports, "type": "ClusterIP", "clusterIP": "10.96.0.20"},
        "status": {"loadBalancer": {}},
    })
}

/// The answer to `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.4",
        "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
        "gitTreeState": "clean",
        "buildDate": "2025-04-22T16:00:00Z",
        "goVersion": "go1.23.8",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// The answer to `GET /api`.
pub fn api_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

/// Groups served besides the core group: (group, version).
pub const GROUPS: [(&str, &str); 4] = [
    ("apps", "v1"),
    ("batch", "v1"),
    ("authentication.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
];

/// The answer to `GET /apis`.
pub fn api_groups() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(g, v)| {
            let gv = format!("{g}/{v}");
            json!({"name": g, "versions": [{"groupVersion": gv, "version": v}],
                   "preferredVersion": {"groupVersion": gv, "version": v}})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The answer to `GET /apis/{group}`.
pub fn api_group(group: &str) -> Option<Value> {
    let (g, v) = GROUPS.iter().find(|(g, _)| *g == group)?;
    let gv = format!("{g}/{v}");
    Some(json!({"kind": "APIGroup", "apiVersion": "v1", "name": g,
                "versions": [{"groupVersion": gv, "version": v}],
                "preferredVersion": {"groupVersion": gv, "version": v}}))
}

fn resource(
    name: &str,
    singular: &str,
    namespaced: bool,
    kind: &str,
    verbs: &[&str],
    short: &[&str],
) -> Value {
    let mut v = json!({"name": name, "singularName": singular, "namespaced": namespaced,
                       "kind": kind, "verbs": verbs});
    if let Some(map) = v.as_object_mut() {
        if !short.is_empty() {
            map.insert("shortNames".to_string(), json!(short));
        }
        if !name.contains('/') && verbs.contains(&"list") && namespaced {
            map.insert("categories".to_string(), json!(["all"]));
        }
    }
    v
}

const RW: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The answer to `GET /api/v1` or `GET /apis/{group}/{version}`.
pub fn resource_list(group_version: &str) -> Option<Value> {
    let resources = match group_version {
        "v1" => vec![
            resource("events", "event", true, "Event", &RW, &["ev"]),
            resource(
                "namespaces",
                "namespace",
                false,
                "Namespace",
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["ns"],
            ),
            resource("pods", "pod", true, "Pod", &RW, &["po"]),
            resource("pods/log", "", true, "Pod", &["get"], &[]),
            resource(
                "pods/status",
                "",
                true,
                "Pod",
                &["get", "patch", "update"],
                &[],
            ),
            resource(
                "serviceaccounts",
                "serviceaccount",
                true,
                "ServiceAccount",
                &RW,
                &["sa"],
            ),
            resource(
                "services",
                "service",
                true,
                "Service",
                &[
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ],
                &["svc"],
            ),
            resource(
                "services/proxy",
                "",
                true,
                "ServiceProxyOptions",
                &["create", "delete", "get", "patch", "update"],
                &[],
            ),
        ],
        "apps/v1" => vec![
            resource("daemonsets", "daemonset", true, "DaemonSet", &RW, &["ds"]),
            resource(
                "deployments",
                "deployment",
                true,
                "Deployment",
                &RW,
                &["deploy"],
            ),
            resource(
                "replicasets",
                "replicaset",
                true,
                "ReplicaSet",
                &RW,
                &["rs"],
            ),
            resource(
                "statefulsets",
                "statefulset",
                true,
                "StatefulSet",
                &RW,
                &["sts"],
            ),
        ],
        "batch/v1" => vec![resource("jobs", "job", true, "Job", &RW, &[])],
        "authentication.k8s.io/v1" => vec![
            resource(
                "selfsubjectreviews",
                "selfsubjectreview",
                false,
                "SelfSubjectReview",
                &["create"],
                &[],
            ),
            resource(
                "tokenreviews",
                "tokenreview",
                false,
                "TokenReview",
                &["create"],
                &[],
            ),
        ],
        "authorization.k8s.io/v1" => vec![
            resource(
                "localsubjectaccessreviews",
                "localsubjectaccessreview",
                true,
                "LocalSubjectAccessReview",
                &["create"],
                &[],
            ),
            resource(
                "selfsubjectaccessreviews",
                "selfsubjectaccessreview",
                false,
                "SelfSubjectAccessReview",
                &["create"],
                &[],
            ),
            resource(
                "selfsubjectrulesreviews",
                "selfsubjectrulesreview",
                false,
                "SelfSubjectRulesReview",
                &["create"],
                &[],
            ),
            resource(
                "subjectaccessreviews",
                "subjectaccessreview",
                false,
                "SubjectAccessReview",
                &["create"],
                &[],
            ),
        ],
        _ => return None,
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_kubectl_ages() {
        let d = chrono::Duration::seconds;
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 600, "3h10m"),
            (10 * 3600, "10h"),
            (3 * 86400 + 3600, "3d1h"),
            (20 * 86400, "20d"),
        ] {
            assert_eq!(human_duration(d(secs)), want, "{secs}");
        }
    }

    #[test]
    fn status_carries_code_reason_and_details() {
        let details = json!({"name": "x", "kind": "pods"});
        let v = status(404, "NotFound", "pods \"x\" not found", Some(details));
        let want: Value = serde_json::from_str(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"pods \"x\" not found","reason":"NotFound",
                "details":{"name":"x","kind":"pods"},"code":404}"#,
        )
        .expect("valid json");
        assert_eq!(v, want);
    }
}
