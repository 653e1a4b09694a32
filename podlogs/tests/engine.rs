//! The engine against an apiserver faked at the HTTP layer, for what a simulated cluster
//! cannot easily produce: bytes that are not UTF-8, chunks split inside characters, a
//! namespace that is forbidden while another is not, a failing first request.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use http_body_util::StreamBody;
use podlogs::{EventKind, LogEvent, LogQuery, Namespaces};
use serde_json::json;

/// What the fake apiserver answers: status and body chunks.
struct Answer {
    status: u16,
    chunks: Vec<Vec<u8>>,
    /// Keep the body open after the chunks (a watch with nothing to say).
    hold_open: bool,
}

impl Answer {
    fn json(status: u16, value: serde_json::Value) -> Answer {
        Answer {
            status,
            chunks: vec![value.to_string().into_bytes()],
            hold_open: false,
        }
    }

    fn log(chunks: Vec<Vec<u8>>) -> Answer {
        Answer {
            status: 200,
            chunks,
            hold_open: false,
        }
    }

    fn silent_watch() -> Answer {
        Answer {
            status: 200,
            chunks: Vec::new(),
            hold_open: true,
        }
    }
}

type Handler = dyn Fn(&str, &str) -> Answer + Send + Sync;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client whose every request is answered by `handler(path, query)`.
fn fake_client(handler: Arc<Handler>, requests: Arc<Mutex<Vec<String>>>) -> kube::Client {
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let handler = handler.clone();
        let requests = requests.clone();
        async move {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            if let Ok(mut seen) = requests.lock() {
                seen.push(format!("{path}?{query}"));
            }
            let answer = handler(&path, &query);
            let frames: Vec<Result<Frame<Bytes>, Infallible>> = answer
                .chunks
                .into_iter()
                .map(|c| Ok(Frame::data(Bytes::from(c))))
                .collect();
            let frames = futures::stream::iter(frames);
            let body = match answer.hold_open {
                true => StreamBody::new(frames.chain(futures::stream::pending()).boxed()),
                false => StreamBody::new(frames.boxed()),
            };
            let content_type = match answer.status {
                200 if path.ends_with("/log") => "text/plain",
                _ => "application/json",
            };
            let response = http::Response::builder()
                .status(answer.status)
                .header("content-type", content_type)
                .body(body)
                .map_err(|e| Box::new(e) as BoxError)?;
            Ok::<_, BoxError>(response)
        }
    });
    kube::Client::new(service, "default")
}

fn pod(namespace: &str, name: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
            "labels": {"app": "web"}, "resourceVersion": "1"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "image": "i",
            "imageID": "", "ready": true, "restartCount": 0,
            "containerID": format!("containerd://{name}"),
            "state": {"running": {"startedAt": "2026-05-01T11:00:00Z"}}}]}
    })
}

fn pod_list(items: Vec<serde_json::Value>) -> Answer {
    Answer::json(
        200,
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
            "items": items}),
    )
}

fn forbidden(namespace: &str) -> Answer {
    let message = format!(
        "pods is forbidden: User \"u\" cannot list resource \"pods\" in API group \"\" in the \
         namespace \"{namespace}\""
    );
    Answer::json(
        403,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403}),
    )
}

async fn collect(client: kube::Client, query: LogQuery) -> Vec<LogEvent> {
    let stream = podlogs::open(client, query).await.expect("the query opens");
    tokio::time::timeout(Duration::from_secs(20), stream.collect::<Vec<_>>())
        .await
        .expect("the history ends")
}

fn lines(events: &[LogEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            LogEvent::Log(l) => Some(format!("{} {}", l.pod, l.line)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn bytes_that_are_not_utf8_are_replaced_even_when_split_across_chunks() {
    let handler: Arc<Handler> = Arc::new(|path, _query| {
        if path.ends_with("/log") {
            Answer::log(vec![
                b"2026-05-01T12:00:00.000000000Z caf\xc3".to_vec(),
                b"\xa9 \xff\xfe end\n2026-05-01T12:00:01.000".to_vec(),
                b"000000Z next\n".to_vec(),
            ])
        } else {
            pod_list(vec![pod("shop", "web-0")])
        }
    });
    let client = fake_client(handler, Arc::default());

    let events = collect(client, LogQuery::new("shop", "app=web")).await;

    assert_eq!(
        lines(&events),
        ["web-0 café \u{fffd}\u{fffd} end", "web-0 next"]
    );
}

#[tokio::test]
async fn a_forbidden_namespace_is_an_error_event_while_the_others_go_on() {
    let handler: Arc<Handler> = Arc::new(|path, _query| {
        if path.ends_with("/log") {
            Answer::log(vec![b"2026-05-01T12:00:00.000000000Z hello\n".to_vec()])
        } else if path.contains("/namespaces/secret/") {
            forbidden("secret")
        } else {
            pod_list(vec![pod("shop", "web-0")])
        }
    });
    let client = fake_client(handler, Arc::default());
    let mut query = LogQuery::new("shop", "app=web");
    query.namespaces = Namespaces::Some(vec!["shop".into(), "secret".into()]);

    let events = collect(client, query).await;

    assert_eq!(lines(&events), ["web-0 hello"]);
    let error = events.iter().find_map(|e| match e {
        LogEvent::Event(s) if s.event == EventKind::Error => Some(s.message.clone()),
        _ => None,
    });
    let error = error.expect("an error event");
    assert!(
        error.starts_with("not allowed to list pods in namespace secret"),
        "{error}"
    );
}

#[tokio::test]
async fn every_namespace_forbidden_fails_before_streaming() {
    let handler: Arc<Handler> = Arc::new(|_path, _query| forbidden("shop"));
    let client = fake_client(handler, Arc::default());

    let err = podlogs::open(client, LogQuery::new("shop", "app=web"))
        .await
        .unwrap_err();

    match err {
        podlogs::Error::Forbidden {
            verb,
            resource,
            namespace,
            ..
        } => {
            assert_eq!((verb.as_str(), resource.as_str()), ("list", "pods"));
            assert_eq!(namespace.as_deref(), Some("shop"));
        }
        other => panic!("not forbidden: {other}"),
    }
}

#[tokio::test]
async fn no_pods_without_follow_fails_before_streaming() {
    let handler: Arc<Handler> = Arc::new(|_path, _query| pod_list(vec![]));
    let client = fake_client(handler, Arc::default());

    let err = podlogs::open(client, LogQuery::new("shop", "app=web"))
        .await
        .unwrap_err();

    assert!(matches!(err, podlogs::Error::NoPods { .. }), "{err}");
}

#[tokio::test]
async fn a_failing_log_request_is_retried() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let handler: Arc<Handler> = Arc::new(move |path, _query| {
        if !path.ends_with("/log") {
            return pod_list(vec![pod("shop", "web-0")]);
        }
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            return Answer::json(
                500,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "etcd is slow", "reason": "InternalError", "code": 500}),
            );
        }
        Answer::log(vec![
            b"2026-05-01T12:00:00.000000000Z after a retry\n".to_vec(),
        ])
    });
    let client = fake_client(handler, Arc::default());

    let events = collect(client, LogQuery::new("shop", "app=web")).await;

    assert_eq!(lines(&events), ["web-0 after a retry"]);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn log_requests_always_ask_for_timestamps_and_name_the_container() {
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler: Arc<Handler> = Arc::new(|path, _query| {
        if path.ends_with("/log") {
            Answer::log(vec![])
        } else {
            pod_list(vec![pod("shop", "web-0")])
        }
    });
    let client = fake_client(handler, requests.clone());
    let mut query = LogQuery::new("shop", "app=web");
    query.tail_lines = Some(5);

    collect(client, query).await;

    let seen = requests.lock().map(|r| r.clone()).unwrap_or_default();
    let log = seen
        .iter()
        .find(|r| r.contains("/log?"))
        .expect("a log request");
    assert!(log.contains("container=app"), "{log}");
    assert!(log.contains("timestamps=true"), "{log}");
    assert!(log.contains("tailLines=5"), "{log}");
    assert!(!log.contains("follow"), "{log}");
}

fn pod_terminated(namespace: &str, name: &str) -> serde_json::Value {
    let mut value = pod(namespace, name);
    value["status"]["containerStatuses"][0]["state"] = json!({"terminated": {
        "exitCode": 0, "reason": "Completed", "containerID": format!("containerd://{name}")}});
    value
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

#[tokio::test]
async fn follow_resumes_from_the_whole_second_and_skips_what_it_saw() {
    let log_requests = Arc::new(AtomicUsize::new(0));
    let counter = log_requests.clone();
    let handler: Arc<Handler> = Arc::new(move |path, query| {
        if path.ends_with("/log") {
            let line = |t: &str, text: &str| format!("2026-05-01T12:00:{t}Z {text}\n").into_bytes();
            return match counter.fetch_add(1, Ordering::SeqCst) {
                // History.
                0 => Answer::log(vec![line("01.100000000", "a"), line("01.500000000", "b")]),
                // Follow from 12:00:01: the second again, one new line at the same time, more.
                1 => Answer::log(vec![
                    line("01.100000000", "a"),
                    line("01.500000000", "b"),
                    line("01.500000000", "b2"),
                    line("02.000000000", "c"),
                ]),
                // Reopened from 12:00:02 after a clean end; the last run of the container.
                _ => Answer::log(vec![line("02.000000000", "c"), line("03.000000000", "d")]),
            };
        }
        if query.contains("watch=true") {
            return Answer::silent_watch();
        }
        if path.ends_with("/pods/web-0") {
            // Asked after a stream ends: running after the first follow, done after the next.
            return match counter.load(Ordering::SeqCst) {
                0..=2 => Answer::json(200, pod("shop", "web-0")),
                _ => Answer::json(200, pod_terminated("shop", "web-0")),
            };
        }
        pod_list(vec![pod("shop", "web-0")])
    });
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = fake_client(handler, requests.clone());
    let mut query = LogQuery::new("shop", "app=web");
    query.follow = true;

    let mut stream = podlogs::open(client, query).await.expect("the query opens");
    let mut events = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
        let ended = matches!(&ev, LogEvent::Event(s) if s.event == EventKind::Ended);
        events.push(ev);
        if ended {
            break;
        }
    }

    assert_eq!(
        lines(&events),
        ["web-0 a", "web-0 b", "web-0 b2", "web-0 c", "web-0 d"]
    );
    let kinds: Vec<EventKind> = events
        .iter()
        .filter_map(|e| match e {
            LogEvent::Event(s) => Some(s.event),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [EventKind::Started, EventKind::Reconnected, EventKind::Ended]
    );
    let seen = requests.lock().map(|r| r.clone()).unwrap_or_default();
    let since: Vec<Option<&str>> = seen
        .iter()
        .filter(|r| r.contains("/log?"))
        .map(|r| query_param(r, "sinceTime"))
        .collect();
    // The last request reads what the stopped container left after the last stream.
    assert_eq!(
        since,
        [
            None,
            Some("2026-05-01T12%3A00%3A01Z"),
            Some("2026-05-01T12%3A00%3A02Z"),
            Some("2026-05-01T12%3A00%3A03Z")
        ]
    );
}

fn pod_restarted(namespace: &str, name: &str) -> serde_json::Value {
    let mut value = pod(namespace, name);
    let status = &mut value["status"]["containerStatuses"][0];
    status["restartCount"] = json!(1);
    status["containerID"] = json!(format!("containerd://{name}-2"));
    status["lastState"] = json!({"terminated": {
        "exitCode": 137, "reason": "OOMKilled", "containerID": format!("containerd://{name}")}});
    value
}

#[tokio::test]
async fn a_restart_while_the_stream_is_down_finishes_the_old_instance_through_previous() {
    let log_requests = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (counter, flag) = (log_requests.clone(), restarted.clone());
    let handler: Arc<Handler> = Arc::new(move |path, query| {
        let line = |t: &str, text: &str| format!("2026-05-01T12:00:{t}Z {text}\n").into_bytes();
        if path.ends_with("/log") && query.contains("previous=true") {
            // The old instance from 12:00:01: what it wrote while the stream was down is there.
            return Answer::log(vec![
                line("01.100000000", "a"),
                line("01.500000000", "b"),
                line("02.000000000", "c"),
            ]);
        }
        if path.ends_with("/log") {
            return match counter.fetch_add(1, Ordering::SeqCst) {
                0 => Answer::log(vec![line("01.100000000", "a")]),
                // Following from 12:00:01; the stream is cut after one new line.
                1 => Answer::log(vec![line("01.100000000", "a"), line("01.500000000", "b")]),
                // Reopened after the container restarted: the kubelet serves the new instance.
                _ => {
                    flag.store(true, Ordering::SeqCst);
                    Answer::log(vec![line("05.000000000", "new instance")])
                }
            };
        }
        if query.contains("watch=true") {
            return Answer::silent_watch();
        }
        if path.ends_with("/pods/web-0") {
            return match flag.load(Ordering::SeqCst) {
                false => Answer::json(200, pod("shop", "web-0")),
                true => Answer::json(200, pod_restarted("shop", "web-0")),
            };
        }
        pod_list(vec![pod("shop", "web-0")])
    });
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = fake_client(handler, requests.clone());
    let mut query = LogQuery::new("shop", "app=web");
    query.follow = true;

    let mut stream = podlogs::open(client, query).await.expect("the query opens");
    let mut events = Vec::new();
    // The old instance's tail ends after its last line; nothing else comes from it.
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(3), stream.next()).await {
        events.push(ev);
    }

    assert_eq!(lines(&events), ["web-0 a", "web-0 b", "web-0 c"]);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, LogEvent::Event(s) if s.event == EventKind::Gap)),
        "{events:?}"
    );
    let seen = requests.lock().map(|r| r.clone()).unwrap_or_default();
    let previous = seen.iter().find(|r| r.contains("previous=true"));
    assert_eq!(
        previous.and_then(|r| query_param(r, "sinceTime")),
        Some("2026-05-01T12%3A00%3A01Z"),
        "{seen:#?}"
    );
}

#[tokio::test]
async fn a_pod_deleted_before_its_log_was_read_is_reported_as_a_possible_gap() {
    let handler: Arc<Handler> = Arc::new(move |path, query| {
        if path.ends_with("/log") {
            return Answer::json(
                404,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "pods \"web-0\" not found",
                    "reason": "NotFound", "details": {"name": "web-0", "kind": "pods"},
                    "code": 404}),
            );
        }
        if query.contains("watch=true") {
            return Answer::silent_watch();
        }
        pod_list(vec![pod("shop", "web-0")])
    });
    let client = fake_client(handler, Arc::default());
    let mut query = LogQuery::new("shop", "app=web");
    query.follow = true;

    let mut stream = podlogs::open(client, query).await.expect("the query opens");
    let mut gap = None;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        if let LogEvent::Event(s) = ev
            && s.event == EventKind::Gap
        {
            gap = Some(s.message);
            break;
        }
    }

    assert_eq!(
        gap.as_deref(),
        Some("lines may be missing: the pod was deleted before its log could be read")
    );
}

#[tokio::test]
async fn a_stream_cut_before_its_first_line_with_tail_zero_resumes_from_the_start_not_the_beginning()
 {
    let log_requests = Arc::new(AtomicUsize::new(0));
    let counter = log_requests.clone();
    let handler: Arc<Handler> = Arc::new(move |path, query| {
        if path.ends_with("/log") {
            return match counter.fetch_add(1, Ordering::SeqCst) {
                // Following with tailLines=0: cut before anything was written.
                0 => Answer::log(Vec::new()),
                // Reopened: the server gives what the request asks for.
                _ => {
                    let new = chrono::Utc::now() + chrono::Duration::seconds(1);
                    let mut chunks = Vec::new();
                    if query_param(query, "sinceTime").is_none() {
                        chunks.push(b"2020-01-01T00:00:00.000000000Z old\n".to_vec());
                    }
                    chunks.push(
                        format!("{} new\n", new.format("%Y-%m-%dT%H:%M:%S%.9fZ")).into_bytes(),
                    );
                    Answer {
                        status: 200,
                        chunks,
                        hold_open: true,
                    }
                }
            };
        }
        if query.contains("watch=true") {
            return Answer::silent_watch();
        }
        if path.ends_with("/pods/web-0") {
            return Answer::json(200, pod("shop", "web-0"));
        }
        pod_list(vec![pod("shop", "web-0")])
    });
    let client = fake_client(handler, Arc::default());
    let mut query = LogQuery::new("shop", "app=web");
    query.follow = true;
    query.tail_lines = Some(0);

    let mut stream = podlogs::open(client, query).await.expect("the query opens");
    let mut events = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        let new = matches!(&ev, LogEvent::Log(l) if l.line == "new");
        events.push(ev);
        if new {
            break;
        }
    }

    assert_eq!(lines(&events), ["web-0 new"]);
}
