//! The two streaming endpoints: pod logs (PodLogOptions, kubelet container checks, chunks
//! split mid-line and mid-character, follow, limitBytes, cuts) and pod watches
//! (resourceVersion, bookmarks, timeoutSeconds, Expired, cuts).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use futures::SinkExt;
use futures::channel::mpsc;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::cluster::{CState, ContainerRec, WatchEvent};
use crate::http::{ApiError, Body, Ctx, Query, full};
use crate::logs::{Cursor, LogBox, ReadStatus, Render};
use crate::objects;
use crate::scenario::{ContainerKind, Cut, CutMode};
use crate::select::{FieldSelector, LabelSelector};

type Tx = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

fn channel_body() -> (Tx, Body) {
    let (tx, rx) = mpsc::channel(8);
    (tx, StreamBody::new(rx).boxed_unsync())
}

fn streaming_response(content_type: &'static str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// Validated PodLogOptions.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since: Option<DateTime<Utc>>,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
}

/// Parses and validates PodLogOptions: 400 for values that do not parse, 422 for values the
/// validation rejects.
pub(crate) fn log_options(pod: &str, query: &Query) -> Result<LogOptions, ApiError> {
    let follow = query.bool("follow")?;
    let previous = query.bool("previous")?;
    let timestamps = query.bool("timestamps")?;
    query.bool("insecureSkipTLSVerifyBackend")?;
    let since_seconds = query.int("sinceSeconds")?;
    let since_time = query.time("sinceTime")?;
    let tail_lines = query.int("tailLines")?;
    let limit_bytes = query.int("limitBytes")?;

    let mut errors: Vec<(String, String)> = Vec::new();
    if let Some(n) = tail_lines
        && n < 0
    {
        errors.push((
            "tailLines".into(),
            format!("Invalid value: {n}: must be greater than or equal to 0"),
        ));
    }
    if let Some(n) = limit_bytes
        && n < 1
    {
        errors.push((
            "limitBytes".into(),
            format!("Invalid value: {n}: must be greater than 0"),
        ));
    }
    if since_seconds.is_some() && since_time.is_some() {
        errors.push((
            "".into(),
            "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
        ));
    }
    if let Some(n) = since_seconds
        && n < 1
    {
        errors.push((
            "sinceSeconds".into(),
            format!("Invalid value: {n}: must be greater than 0"),
        ));
    }
    if !errors.is_empty() {
        return Err(invalid(pod, &errors));
    }

    let since = match (since_seconds, since_time) {
        (Some(secs), _) => Some(
            chrono::Duration::try_seconds(secs)
                .and_then(|d| Utc::now().checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        ),
        // The apiserver passes sinceTime on to the kubelet in whole seconds.
        (None, Some(t)) => Some(t.trunc_subsecs(0)),
        (None, None) => None,
    };
    Ok(LogOptions {
        container: query.get("container").unwrap_or("").to_string(),
        follow,
        previous,
        timestamps,
        since,
        tail_lines: tail_lines.map(|n| n as usize),
        limit_bytes: limit_bytes.map(|n| n as usize),
    })
}

fn invalid(pod: &str, errors: &[(String, String)]) -> ApiError {
    // A field error prints as `<path>: <body>`; the path of the since conflict is empty.
    let rendered: Vec<String> = errors
        .iter()
        .map(|(field, msg)| format!("{field}: {msg}"))
        .collect();
    let joined = if rendered.len() == 1 {
        rendered[0].clone()
    } else {
        format!("[{}]", rendered.join(", "))
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|(field, msg)| {
            let reason = if msg.starts_with("Forbidden") {
                "FieldValueForbidden"
            } else {
                "FieldValueInvalid"
            };
            json!({"reason": reason, "message": msg, "field": field})
        })
        .collect();
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("PodLogOptions \"{pod}\" is invalid: {joined}"),
        details: Some(json!({"name": pod, "kind": "PodLogOptions", "causes": causes})),
    }
}

/// A kubelet refusal: 400 BadRequest carrying the kubelet's text.
fn kubelet_refusal(pod: &str, message: String) -> ApiError {
    ApiError {
        code: 400,
        reason: "BadRequest",
        message,
        details: Some(json!({"name": pod, "kind": "pods/log"})),
    }
    .without_details()
}

impl ApiError {
    fn without_details(mut self) -> Self {
        self.details = None;
        self
    }
}

/// Picks the container instance to read, like the apiserver and then the kubelet do.
fn choose_instance(
    pod: &crate::cluster::PodRec,
    opts: &LogOptions,
) -> Result<(String, String), ApiError> {
    let name = if opts.container.is_empty() {
        let regular: Vec<&ContainerRec> = pod
            .containers
            .iter()
            .filter(|c| c.kind == ContainerKind::Regular)
            .collect();
        match regular.as_slice() {
            [only] => only.name.clone(),
            [] => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {}",
                    pod.name
                )));
            }
            _ => {
                let names = |kind| {
                    pod.containers
                        .iter()
                        .filter(|c| c.kind == kind)
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let mut message = format!(
                    "a container name must be specified for pod {}, choose one of: [{}]",
                    pod.name,
                    names(ContainerKind::Regular)
                );
                let init = names(ContainerKind::Init);
                if !init.is_empty() {
                    message.push_str(&format!(" or one of the init containers: [{init}]"));
                }
                return Err(ApiError::bad_request(message));
            }
        }
    } else {
        if pod.container(&opts.container).is_none() {
            return Err(ApiError::bad_request(format!(
                "container {} is not valid for pod {}",
                opts.container, pod.name
            )));
        }
        opts.container.clone()
    };
    Ok((name, String::new()))
}

fn kubelet_container_id(pod: &str, c: &ContainerRec, previous: bool) -> Result<String, ApiError> {
    let name = &c.name;
    let last = c.last.as_ref().filter(|t| !t.id.is_empty());
    if previous {
        return last.map(|t| t.id.clone()).ok_or_else(|| {
            kubelet_refusal(
                pod,
                format!("previous terminated container \"{name}\" in pod \"{pod}\" not found"),
            )
        });
    }
    match &c.state {
        CState::Running { .. } => Ok(c.id.clone()),
        CState::Terminated(t) if !t.id.is_empty() => Ok(t.id.clone()),
        CState::Terminated(_) => last.map(|t| t.id.clone()).ok_or_else(|| {
            kubelet_refusal(
                pod,
                format!("container \"{name}\" in pod \"{pod}\" is terminated"),
            )
        }),
        CState::Waiting { reason } => match last {
            Some(t) => Ok(t.id.clone()),
            None => {
                let why = match reason.as_str() {
                    "ErrImagePull" => "image can't be pulled".to_string(),
                    "ImagePullBackOff" => "trying and failing to pull image".to_string(),
                    other => other.to_string(),
                };
                Err(kubelet_refusal(
                    pod,
                    format!("container \"{name}\" in pod \"{pod}\" is waiting to start: {why}"),
                ))
            }
        },
    }
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`, after authorization.
pub(crate) fn pod_logs(
    ctx: &Arc<Ctx>,
    ns: &str,
    name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let opts = log_options(name, query)?;
    let (logs, id, container) = {
        let state = ctx.cluster.state();
        let pod = state
            .pods
            .get(&(ns.to_string(), name.to_string()))
            .ok_or_else(|| ApiError::not_found("pods", name))?;
        let (container, _) = choose_instance(pod, &opts)?;
        if pod.node.is_none() {
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            return Ok(resp);
        }
        let c = pod.container(&container).ok_or_else(|| {
            kubelet_refusal(
                name,
                format!("container \"{container}\" in pod \"{name}\" is not available"),
            )
        })?;
        let id = kubelet_container_id(name, c, opts.previous)?;
        (c.logs.clone(), id, container)
    };

    let render = Render {
        timestamps: opts.timestamps,
        since: opts.since,
    };
    let mut first = Vec::new();
    let cursor = logs
        .open(&id, opts.tail_lines, &render, &mut first)
        .ok_or_else(|| {
            kubelet_refusal(
                name,
                format!("container \"{container}\" in pod \"{name}\" is not available"),
            )
        })?;
    tracing::debug!(namespace = %ns, pod = %name, %container, follow = opts.follow, "log stream");

    let (tx, body) = channel_body();
    let job = LogStream {
        // Subscribed before the answer leaves, so that no later cut is missed.
        cuts: ctx.cluster.log_cuts.subscribe(),
        ctx: ctx.clone(),
        logs,
        cursor,
        render,
        follow: opts.follow,
        remaining: opts.limit_bytes,
        target: (ns.to_string(), name.to_string(), container),
        tx,
    };
    tokio::spawn(job.run(first));
    Ok(streaming_response("text/plain", body))
}

struct LogStream {
    ctx: Arc<Ctx>,
    logs: Arc<LogBox>,
    cursor: Cursor,
    render: Render,
    follow: bool,
    remaining: Option<usize>,
    target: (String, String, String),
    tx: Tx,
    cuts: tokio::sync::broadcast::Receiver<Cut>,
}

enum Next {
    Woken,
    Cut(Result<Cut, RecvError>),
    Shutdown,
}

fn cut_applies(cut: &Cut, ns: &str, pod: &str, container: Option<&str>) -> bool {
    cut.namespace.as_deref().is_none_or(|n| n == ns)
        && cut.pod.as_deref().is_none_or(|p| p == pod)
        && cut
            .container
            .as_deref()
            .is_none_or(|c| container.is_none_or(|mine| mine == c))
}

/// Splits a piece of output into two chunks: inside the first multi-byte character when
/// there is one, otherwise inside the first line.
pub(crate) fn split_point(data: &[u8]) -> Option<usize> {
    if data.len() < 2 {
        return None;
    }
    if let Some(i) = data.iter().position(|b| *b >= 0xC0)
        && i + 1 < data.len()
    {
        return Some(i + 1);
    }
    let line_end = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    Some((line_end / 2).max(1))
}

impl LogStream {
    async fn send(&mut self, mut data: Vec<u8>) -> bool {
        if let Some(left) = self.remaining.as_mut() {
            if data.len() >= *left {
                data.truncate(*left);
                *left = 0;
            } else {
                *left -= data.len();
            }
        }
        if data.is_empty() {
            return true;
        }
        let data = Bytes::from(data);
        let pieces = match split_point(&data) {
            Some(at) => vec![data.slice(..at), data.slice(at..)],
            None => vec![data],
        };
        // An empty chunk would read as the end of a chunked body: never send one.
        for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
            if self.tx.send(Ok(Frame::data(piece))).await.is_err() {
                return false;
            }
        }
        true
    }

    fn limit_reached(&self) -> bool {
        self.remaining == Some(0)
    }

    async fn run(mut self, first: Vec<u8>) {
        let mut shutdown = self.ctx.shutdown.clone();
        if !self.send(first).await || self.limit_reached() || !self.follow {
            // Not following: the first read is the whole answer, unless more arrived since
            // `open`; the kubelet reads the file to its end.
            if !self.follow && !self.limit_reached() {
                let mut rest = Vec::new();
                while self
                    .logs
                    .read(&mut self.cursor, &self.render, &mut rest, 64 * 1024)
                    == ReadStatus::Data
                {}
                self.send(rest).await;
            }
            return;
        }
        let (ns, pod, container) = self.target.clone();
        let mut mid_line = false;
        loop {
            let logs = self.logs.clone();
            let woken = logs.armed();
            let mut out = Vec::new();
            let status = self
                .logs
                .read(&mut self.cursor, &self.render, &mut out, 64 * 1024);
            if mid_line && !out.is_empty() {
                let end = out.iter().position(|b| *b == b'\n').unwrap_or(out.len());
                out.truncate((end / 2).max(1));
                self.send(out).await;
                return;
            }
            if !out.is_empty() && (!self.send(out).await || self.limit_reached()) {
                return;
            }
            match status {
                ReadStatus::Ended => return,
                ReadStatus::Data => continue,
                ReadStatus::Pending => {}
            }
            // Cuts first: a cut that arrives with data applies before the data.
            let next = tokio::select! {
                biased;
                cut = self.cuts.recv() => Next::Cut(cut),
                _ = woken => Next::Woken,
                _ = shutdown.changed() => Next::Shutdown,
            };
            match next {
                Next::Woken => {}
                Next::Shutdown | Next::Cut(Err(RecvError::Closed)) => return,
                Next::Cut(Err(RecvError::Lagged(_))) => {}
                Next::Cut(Ok(cut)) if cut_applies(&cut, &ns, &pod, Some(&container)) => {
                    if apply_cut(cut.mode, &mut self.tx, &mut mid_line).await == CutEffect::End {
                        return;
                    }
                }
                Next::Cut(Ok(_)) => {}
            }
        }
    }
}

/// `GET .../pods?watch=true`, after authorization.
pub(crate) fn watch_pods(
    ctx: &Arc<Ctx>,
    ns: &str,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &Query,
    table: bool,
) -> Result<Response<Body>, ApiError> {
    let timeout = query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .unwrap_or(1800) as u64;
    let bookmarks = query.bool("allowWatchBookmarks")?;
    let send_initial = query.bool("sendInitialEvents")?;
    if send_initial && query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError {
            code: 422,
            reason: "Invalid",
            message: "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: \
                      sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                .to_string(),
            details: Some(json!({"group": "meta.k8s.io", "kind": "ListOptions"})),
        });
    }
    let rv = match query.get("resourceVersion") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{v}\"")))?,
        ),
    };
    let filter = Filter {
        ns: ns.to_string(),
        labels,
        fields,
    };

    // Snapshot and subscribe under one lock so that no event falls between them.
    let (initial, since, rx, expired) = {
        let state = ctx.cluster.state();
        let rx = ctx.cluster.watch_tx.subscribe();
        let compacted = state.compacted_resource_version;
        match rv {
            Some(v) if v != 0 && v < compacted && !send_initial => (
                Vec::new(),
                v,
                rx,
                Some(format!("too old resource version: {v} ({compacted})")),
            ),
            Some(v) if v != 0 && !send_initial => {
                let replay: Vec<Initial> = state
                    .history
                    .iter()
                    .filter(|e| e.resource_version > v && filter.event(e))
                    .map(|e| (e.kind, e.object.clone(), e.row.clone(), e.resource_version))
                    .collect();
                (replay, state.resource_version.max(v), rx, None)
            }
            _ => {
                let now = Utc::now();
                let added: Vec<Initial> = state
                    .pods
                    .values()
                    .filter(|p| filter.pod(p))
                    .map(|p| (p, objects::pod_json(p)))
                    .map(|(p, o)| ("ADDED", o, objects::pod_row(p, now), p.resource_version))
                    .collect();
                (added, state.resource_version, rx, None)
            }
        }
    };

    let (tx, body) = channel_body();
    let job = WatchStream {
        cuts: ctx.cluster.watch_cuts.subscribe(),
        ctx: ctx.clone(),
        ns: ns.to_string(),
        rx,
        tx,
        since,
        bookmarks,
        initial_end: send_initial && bookmarks,
        table,
        columns_sent: false,
        deadline: far_or(Duration::from_secs(timeout)),
    };
    tokio::spawn(job.run(initial, expired, filter));
    Ok(streaming_response("application/json", body))
}

/// Now plus `after`, or a year from now when that does not fit in an instant.
fn far_or(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after)
        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600))
}

/// Which pods a watch selects.
struct Filter {
    ns: String,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn event(&self, e: &WatchEvent) -> bool {
        (self.ns.is_empty() || e.namespace == self.ns)
            && self.labels.matches(&e.labels)
            && self
                .fields
                .matches(&|f| e.fields.get(f).cloned().unwrap_or_default())
    }

    fn pod(&self, p: &crate::cluster::PodRec) -> bool {
        (self.ns.is_empty() || p.namespace == self.ns)
            && self.labels.matches(&p.labels)
            && self.fields.matches(&|f| p.field(f))
    }
}

struct WatchStream {
    ctx: Arc<Ctx>,
    ns: String,
    rx: tokio::sync::broadcast::Receiver<Arc<WatchEvent>>,
    cuts: tokio::sync::broadcast::Receiver<Cut>,
    tx: Tx,
    since: u64,
    bookmarks: bool,
    initial_end: bool,
    table: bool,
    columns_sent: bool,
    deadline: tokio::time::Instant,
}

/// An event to send first: type, object, Table row, resource version.
type Initial = (&'static str, Value, Value, u64);

enum WatchNext {
    Event(Result<Arc<WatchEvent>, RecvError>),
    Cut(Result<Cut, RecvError>),
    Bookmark,
    Done,
}

impl WatchStream {
    /// The event as sent: the object itself, or a one-row Table for `as=Table` watches
    /// (column definitions only in the first).
    fn event(&mut self, kind: &str, object: &Value, row: &Value, rv: u64) -> Value {
        if !self.table {
            return json!({"type": kind, "object": object});
        }
        let columns = if self.columns_sent {
            json!([])
        } else {
            objects::pod_columns()
        };
        self.columns_sent = true;
        json!({"type": kind, "object": {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv.to_string()},
            "columnDefinitions": columns,
            "rows": [row],
        }})
    }

    async fn line(&mut self, value: &Value) -> bool {
        let mut text = serde_json::to_vec(value).unwrap_or_default();
        text.push(b'\n');
        self.tx
            .send(Ok(Frame::data(Bytes::from(text))))
            .await
            .is_ok()
    }

    async fn run(mut self, initial: Vec<Initial>, expired: Option<String>, filter: Filter) {
        if let Some(message) = expired {
            let status = objects::status(410, "Expired", &message, None);
            self.line(&json!({"type": "ERROR", "object": status})).await;
            return;
        }
        for (kind, object, row, rv) in initial {
            let event = self.event(kind, &object, &row, rv);
            if !self.line(&event).await {
                return;
            }
        }
        if self.initial_end {
            // A streaming list ends its initial events with an annotated bookmark.
            let value = json!({"type": "BOOKMARK", "object": {
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {
                    "resourceVersion": self.since.to_string(),
                    "creationTimestamp": null,
                    "annotations": {"k8s.io/initial-events-end": "true"}}}});
            if !self.line(&value).await {
                return;
            }
        }
        let mut shutdown = self.ctx.shutdown.clone();
        let interval = self.ctx.bookmark_interval;
        let mut bookmark =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut mid_line = false;
        loop {
            let deadline = self.deadline;
            let next = tokio::select! {
                biased;
                cut = self.cuts.recv() => WatchNext::Cut(cut),
                event = self.rx.recv() => WatchNext::Event(event),
                _ = bookmark.tick(), if self.bookmarks => WatchNext::Bookmark,
                _ = tokio::time::sleep_until(deadline) => WatchNext::Done,
                _ = shutdown.changed() => WatchNext::Done,
            };
            match next {
                WatchNext::Event(Ok(event)) => {
                    if event.resource_version <= self.since || !filter.event(&event) {
                        continue;
                    }
                    let value = self.event(
                        event.kind,
                        &event.object,
                        &event.row,
                        event.resource_version,
                    );
                    if mid_line {
                        let text = value.to_string();
                        let half = Bytes::from(text.into_bytes());
                        let cut = half.slice(..half.len() / 2);
                        let _ = self.tx.send(Ok(Frame::data(cut))).await;
                        return;
                    }
                    if !self.line(&value).await {
                        return;
                    }
                }
                // A watcher that falls behind is closed, like a slow watcher of the
                // apiserver's cache; the client watches again from its last version.
                WatchNext::Event(Err(_)) | WatchNext::Done => return,
                WatchNext::Bookmark => {
                    let rv = self.ctx.cluster.state().resource_version;
                    let value = json!({"type": "BOOKMARK", "object": {
                        "kind": "Pod", "apiVersion": "v1",
                        "metadata": {
                            "resourceVersion": rv.to_string(), "creationTimestamp": null}}});
                    if !self.line(&value).await {
                        return;
                    }
                }
                WatchNext::Cut(Ok(cut)) if cut_applies(&cut, &self.ns_or(&cut), "", None) => {
                    if apply_cut(cut.mode, &mut self.tx, &mut mid_line).await == CutEffect::End {
                        return;
                    }
                }
                WatchNext::Cut(Err(RecvError::Closed)) => return,
                WatchNext::Cut(_) => {}
            }
        }
    }

    /// The namespace a cut is compared with: an all-namespaces watch is hit by any cut.
    fn ns_or(&self, cut: &Cut) -> String {
        if self.ns.is_empty() {
            cut.namespace.clone().unwrap_or_default()
        } else {
            self.ns.clone()
        }
    }
}

/// Whether a stream goes on after a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutEffect {
    /// The stream ends now (cleanly, or reset).
    End,
    /// The stream goes on; `mid_line` says the next line is sent half and then it ends.
    GoOn,
}

/// Applies a cut to a stream: a clean end, a connection reset, or half of the next line.
async fn apply_cut(mode: CutMode, tx: &mut Tx, mid_line: &mut bool) -> CutEffect {
    match mode {
        CutMode::Clean => CutEffect::End,
        CutMode::Reset => {
            let reset = io::Error::new(io::ErrorKind::ConnectionReset, "stream cut");
            let _ = tx.send(Err(reset)).await;
            CutEffect::End
        }
        CutMode::MidLine => {
            *mid_line = true;
            CutEffect::GoOn
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_query;

    fn opts(q: &str) -> Result<LogOptions, ApiError> {
        log_options("web-0", &Query(parse_query(q)))
    }

    #[test]
    fn negative_tail_lines_is_invalid_with_the_apiserver_message() {
        let e = opts("tailLines=-1").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodLogOptions \"web-0\" is invalid: tailLines: Invalid value: -1: must be greater \
             than or equal to 0"
        );
    }

    #[test]
    fn limit_bytes_and_since_seconds_must_be_positive() {
        assert_eq!(opts("limitBytes=0").unwrap_err().code, 422);
        assert_eq!(opts("sinceSeconds=0").unwrap_err().code, 422);
    }

    #[test]
    fn since_seconds_with_since_time_is_forbidden() {
        let e = opts("sinceSeconds=5&sinceTime=2026-05-01T12:00:00Z").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodLogOptions \"web-0\" is invalid: : Forbidden: at most one of `sinceTime` or \
             `sinceSeconds` may be specified"
        );
    }

    #[test]
    fn since_time_is_truncated_to_the_second() {
        let o = opts("sinceTime=2026-05-01T12:00:00.750000000Z").expect("valid");
        assert_eq!(
            o.since.map(|t| t.to_rfc3339()),
            Some("2026-05-01T12:00:00+00:00".to_string())
        );
    }

    #[test]
    fn unparsable_values_are_bad_requests() {
        assert_eq!(opts("tailLines=ten").unwrap_err().code, 400);
        assert_eq!(opts("sinceTime=yesterday").unwrap_err().code, 400);
    }

    #[test]
    fn chunks_split_inside_characters_and_lines() {
        let text = "abc é\n".as_bytes();
        let at = split_point(text).expect("split");
        assert!(
            std::str::from_utf8(&text[..at]).is_err(),
            "split falls inside é"
        );
        assert_eq!(split_point(b"hello\nworld\n"), Some(2));
    }
}
