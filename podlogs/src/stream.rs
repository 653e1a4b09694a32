//! The engine's entry point: [`open`] a [`LogQuery`] and read a [`LogStream`] of events.
//!
//! `open` lists the pods first, so callers can answer "forbidden" or "no pods" before any
//! output; then it starts a tail per selected container, merges them and, when following,
//! watches for new pods. Dropping the stream stops every task. This module does no
//! formatting.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::ListParams;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::discover::{self, Discovery, describe_namespaces, describe_scope, status_event};
use crate::event::{EventKind, LogEvent};
use crate::query::{LogQuery, Namespaces};
use crate::tail::TailMsg;

/// Events buffered between the merge and the consumer.
const OUT_BUFFER: usize = 256;

/// Why a query could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user may not list pods where the query looks.
    #[error(
        "not allowed to {verb} {resource} in {where_}; ask for {verb} on {resource} there \
         (reading logs needs list and watch on pods and get on pods/log)",
        where_ = scope_text(namespace)
    )]
    Forbidden {
        /// The verb that was refused, such as `list`.
        verb: String,
        /// The resource, such as `pods`.
        resource: String,
        /// The namespace, `None` for a cluster-wide request.
        namespace: Option<String>,
        /// The apiserver's own message.
        message: String,
    },
    /// No pod matches the selector (only without follow).
    #[error(
        "no pods match {selector} in {}; check the selector and the namespace",
        describe_namespaces(namespaces)
    )]
    NoPods {
        /// The label selector.
        selector: String,
        /// Where the query looked.
        namespaces: Namespaces,
    },
    /// More containers match than streams may be open at once.
    #[error(
        "{count} containers match, more than the {max} log streams allowed at once; \
         narrow the selection or raise the limit"
    )]
    TooManyStreams {
        /// Containers that would be read.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Listing the pods failed for another reason (unreachable cluster, bad answer).
    #[error("listing pods failed")]
    Api(#[source] kube::Error),
}

fn scope_text(namespace: &Option<String>) -> String {
    match namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".to_string(),
    }
}

/// The merged events of a query. Ends when all history is out (without follow); dropping it
/// stops every task it started.
pub struct LogStream {
    rx: mpsc::Receiver<LogEvent>,
    tasks: Vec<AbortHandle>,
}

impl Stream for LogStream {
    type Item = LogEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LogEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStream")
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

/// Lists the pods of `query`, starts their tails and returns the merged stream.
///
/// Fails before streaming with [`Error::Forbidden`] when no namespace may be listed,
/// [`Error::NoPods`] when nothing matches and the query does not follow (with follow, a
/// `waiting` event comes instead), [`Error::TooManyStreams`] and [`Error::Api`]. A namespace
/// that is forbidden while others are not becomes an `error` event.
pub async fn open(client: Client, query: LogQuery) -> Result<LogStream, Error> {
    let query = Arc::new(query);
    let Listed {
        pods,
        mut events,
        forbidden,
    } = list_pods(&client, &query).await?;
    if pods.is_empty() && !query.follow {
        return Err(Error::NoPods {
            selector: query.selector.clone(),
            namespaces: query.namespaces.clone(),
        });
    }

    let mut discovery = Discovery::new(client, query.clone());
    let count = discovery.readable_count(pods.iter().map(|(p, _)| p));
    if count > query.max_streams {
        return Err(Error::TooManyStreams {
            count,
            max: query.max_streams,
        });
    }
    if pods.is_empty() {
        discovery.no_pods_announced();
        events.push(status_event(
            "",
            "",
            None,
            EventKind::Waiting,
            format!(
                "no pods match {} in {} yet; waiting for them",
                query.selector,
                describe_namespaces(&query.namespaces)
            ),
        ));
    }

    let mut initial = Vec::new();
    for (pod, scope) in &pods {
        initial.extend(discovery.start_initial(pod, *scope, &mut events));
    }

    // Discovery's own events form one more source, ahead of the tails.
    let (status_tx, status_rx) = mpsc::channel(discover_buffer(events.len()));
    for ev in events {
        let _ = status_tx.try_send(TailMsg::Event(ev));
    }
    let _ = status_tx.try_send(TailMsg::HistoryDone);
    initial.insert(0, status_rx);

    let (later_tx, later_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::channel(OUT_BUFFER);
    let merge = tokio::spawn(crate::merge::run(initial, later_rx, out_tx));
    let discovery = match query.follow {
        true => tokio::spawn(discovery.watch(later_tx, status_tx, forbidden)),
        false => {
            drop((later_tx, status_tx));
            tokio::spawn(discovery.drain())
        }
    };
    Ok(LogStream {
        rx: out_rx,
        tasks: vec![merge.abort_handle(), discovery.abort_handle()],
    })
}

fn discover_buffer(initial_events: usize) -> usize {
    (initial_events + 1).max(64)
}

/// What the initial list found.
struct Listed {
    /// Each pod with the index of the scope it was found in.
    pods: Vec<(Pod, usize)>,
    /// Events to send before anything else.
    events: Vec<LogEvent>,
    /// Scopes that may not be listed.
    forbidden: HashSet<usize>,
}

/// Lists the pods of every scope. A forbidden scope becomes an event unless all are.
async fn list_pods(client: &Client, query: &LogQuery) -> Result<Listed, Error> {
    let params = ListParams::default().labels(&query.selector);
    let scopes = discover::scopes(client, &query.namespaces);
    let total = scopes.len();
    let mut pods = Vec::new();
    let mut events = Vec::new();
    let mut forbidden = Vec::new();

    for (scope, api) in scopes.into_iter().enumerate() {
        match api.list(&params).await {
            Ok(list) => pods.extend(list.items.into_iter().map(|p| (p, scope))),
            Err(kube::Error::Api(status)) if status.code == 403 => {
                tracing::warn!(scope = %describe_scope(&query.namespaces, scope),
                    message = %status.message, "listing pods is forbidden");
                forbidden.push((scope, status.message.clone()));
            }
            Err(err) => return Err(Error::Api(err)),
        }
    }

    if !forbidden.is_empty() && forbidden.len() == total {
        let (scope, message) = forbidden.swap_remove(0);
        return Err(Error::Forbidden {
            verb: "list".into(),
            resource: "pods".into(),
            namespace: namespace_of(&query.namespaces, scope),
            message,
        });
    }
    let forbidden_scopes = forbidden.iter().map(|(scope, _)| *scope).collect();
    for (scope, message) in forbidden {
        let text = format!(
            "not allowed to list pods in {}; skipping it: {message}",
            describe_scope(&query.namespaces, scope)
        );
        events.push(status_event(
            namespace_of(&query.namespaces, scope)
                .as_deref()
                .unwrap_or(""),
            "",
            None,
            EventKind::Error,
            text,
        ));
    }
    Ok(Listed {
        pods,
        events,
        forbidden: forbidden_scopes,
    })
}

fn namespace_of(namespaces: &Namespaces, scope: usize) -> Option<String> {
    match namespaces {
        Namespaces::One(ns) => Some(ns.clone()),
        Namespaces::Some(list) => list.get(scope).cloned(),
        Namespaces::All => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_stream_can_move_between_tasks() {
        fn assert_movable<T: futures::Stream<Item = LogEvent> + Send + Unpin + 'static>() {}
        assert_movable::<LogStream>();
    }

    #[test]
    fn forbidden_names_the_missing_permission() {
        let err = Error::Forbidden {
            verb: "list".into(),
            resource: "pods".into(),
            namespace: Some("shop".into()),
            message: String::new(),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("not allowed to list pods in namespace shop"),
            "{text}"
        );
        assert!(text.contains("get on pods/log"), "{text}");
    }

    #[test]
    fn no_pods_names_selector_and_namespaces() {
        let err = Error::NoPods {
            selector: "app=web".into(),
            namespaces: Namespaces::Some(vec!["a".into(), "b".into()]),
        };
        assert_eq!(
            err.to_string(),
            "no pods match app=web in namespaces a, b; check the selector and the namespace"
        );
    }
}
