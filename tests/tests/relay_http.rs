//! aether-relay end to end: the relay runs in-process against kubesim and is spoken to over
//! raw HTTP, WebSocket and kubesim's service proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aether_relay::{AuthMode, ClusterSource, RelayConfig};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kubesim::{Container, Pod, Rule, Scenario, Service, ServiceAccount, Sim, SimOptions, User};
use podlogs::{EventKind, LogEvent};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every wait in these tests ends by itself after this long.
const LIMIT: Duration = Duration::from_secs(20);

const CI_SA: (&str, &str) = ("ci", "deployer");
const CI_TOKEN: &str = "ci-deployer-token";
const OTHER_AUDIENCE_TOKEN: &str = "ci-vault-token";
const DEV_TOKEN: &str = "dev-token";

fn scenario() -> Scenario {
    let relay = aether_tests::relay_user();
    let app_logs = Rule::new(&["get"], &["apps/logs"])
        .groups(&["aether.dev"])
        .names(&["web"])
        .in_namespaces(&["shop"]);
    let ci = ServiceAccount::new(CI_SA.0, CI_SA.1, &["aether-relay"])
        .with_token(CI_TOKEN)
        .rule(app_logs.clone());
    let vault = ServiceAccount::new("ci", "vault", &["vault"])
        .with_token(OTHER_AUDIENCE_TOKEN)
        .rule(app_logs);
    let dev = User::new("dev").with_token(DEV_TOKEN).rule(
        Rule::new(&["get"], &["services/proxy"])
            .names(&[
                "aether-relay",
                "aether-relay:http",
                "http:aether-relay:http",
            ])
            .in_namespaces(&["aether-system"]),
    );

    let pod = |ns: &str, name: &str, app: &str| {
        Pod::new(name).in_namespace(ns).label("app", app).container(
            Container::new("app")
                .line(-30.0, &format!("{name} started"))
                .line(-20.0, &format!("{name} ready")),
        )
    };
    Scenario::new("shop")
        .namespace("pay")
        .namespace("other")
        .namespace("ci")
        .namespace("aether-system")
        .user(relay)
        .user(dev)
        .service_account(ci)
        .service_account(vault)
        .service(Service::new("aether-system", "aether-relay"))
        .pod(pod("shop", "web-0", "web"))
        .pod(pod("shop", "web-1", "web"))
        .pod(pod("shop", "db-0", "db"))
        .pod(pod("other", "web-9", "web"))
}

/// A simulated cluster and a relay serving `shop` and `pay` against it.
struct Env {
    sim: Sim,
    relay: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<Result<(), aether_relay::ServeError>>>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start(auth: AuthMode, tweak: impl FnOnce(&mut RelayConfig)) -> Env {
        Env::start_with(scenario(), auth, tweak).await
    }

    async fn start_with(
        scenario: Scenario,
        auth: AuthMode,
        tweak: impl FnOnce(&mut RelayConfig),
    ) -> Env {
        let sim = Sim::start(scenario, SimOptions::default())
            .await
            .expect("kubesim starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        sim.write_kubeconfig(&kubeconfig, "relay")
            .expect("kubeconfig written");
        let client = aether_relay::connect(&ClusterSource::Kubeconfig {
            path: Some(kubeconfig.clone()),
            context: None,
        })
        .await
        .expect("client for kubesim");

        let mut config = RelayConfig::new(["shop", "pay"]);
        config.auth = auth;
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let relay = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(aether_relay::serve(config, client, listener, async move {
            let _ = stopped.await;
        }));
        sim.handle()
            .set_service_backend("aether-system", "aether-relay", relay);
        Env {
            sim,
            relay,
            stop: Some(stop),
            served: Some(served),
            kubeconfig,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        get(self.relay, path, headers).await
    }

    /// Stops the relay and waits for `serve` to return.
    async fn shutdown_relay(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let result = tokio::time::timeout(LIMIT, served)
                .await
                .expect("serve returns");
            result.expect("serve task").expect("serve ends cleanly");
        }
    }

    async fn finish(mut self) {
        self.shutdown_relay().await;
        self.sim.shutdown().await;
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
    let stream = tokio::time::timeout(LIMIT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    tokio::time::timeout(LIMIT, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer")
}

/// The data chunks of a body until it ends.
async fn chunks(response: Response<Incoming>) -> Vec<Bytes> {
    let mut body = response.into_body();
    let mut out = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("body frame").into_data() {
                out.push(data);
            }
        }
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("body ends in time");
    out
}

async fn text(response: Response<Incoming>) -> String {
    let bytes: Vec<u8> = chunks(response).await.concat();
    String::from_utf8(bytes).expect("utf-8 body")
}

fn events(body: &str) -> Vec<LogEvent> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is no event: {e}")))
        .collect()
}

fn log_lines(events: &[LogEvent]) -> Vec<String> {
    let mut lines: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            LogEvent::Log(l) => Some(format!("{}/{}: {}", l.pod, l.container, l.line)),
            _ => None,
        })
        .collect();
    lines.sort();
    lines
}

/// Reads events from a streaming body until `done` says so.
struct EventReader {
    body: Incoming,
    pending: Vec<u8>,
}

impl EventReader {
    fn new(response: Response<Incoming>) -> Self {
        EventReader {
            body: response.into_body(),
            pending: Vec::new(),
        }
    }

    /// The next event, or `None` at the end of the body.
    async fn next(&mut self) -> Option<LogEvent> {
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                let text = String::from_utf8(line).expect("utf-8 line");
                return Some(serde_json::from_str(text.trim_end()).expect("an event per line"));
            }
            let frame = tokio::time::timeout(LIMIT, self.body.frame())
                .await
                .expect("in time")?;
            if let Ok(data) = frame.expect("body frame").into_data() {
                self.pending.extend_from_slice(&data);
            }
        }
    }

    async fn until(&mut self, mut done: impl FnMut(&LogEvent) -> bool) -> Vec<LogEvent> {
        let mut seen = Vec::new();
        while let Some(event) = self.next().await {
            let stop = done(&event);
            seen.push(event);
            if stop {
                return seen;
            }
        }
        panic!("stream ended before the awaited event; saw {seen:?}");
    }
}

fn error_body(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const WEB_LINES: [&str; 4] = [
    "web-0/app: web-0 ready",
    "web-0/app: web-0 started",
    "web-1/app: web-1 ready",
    "web-1/app: web-1 started",
];

#[tokio::test]
async fn ci_service_account_reads_an_allowed_app_with_its_token() {
    let env = Env::start(AuthMode::Token, |_| {}).await;
    let auth = bearer(CI_TOKEN);
    let response = env
        .get("/apps/web/logs?namespace=shop", &[("authorization", &auth)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let events = events(&text(response).await);
    assert_eq!(log_lines(&events), WEB_LINES);
    env.finish().await;
}

#[tokio::test]
async fn ci_service_account_is_denied_an_app_it_was_not_granted() {
    let env = Env::start(AuthMode::Token, |_| {}).await;
    let auth = bearer(CI_TOKEN);
    let response = env
        .get("/apps/db/logs?namespace=shop", &[("authorization", &auth)])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = error_body(&text(response).await);
    assert_eq!(body["code"], 403);
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("system:serviceaccount:ci:deployer"),
        "{message}"
    );
    assert!(message.contains("apps/logs"), "{message}");
    env.finish().await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_unauthenticated() {
    let env = Env::start(AuthMode::Token, |_| {}).await;
    let auth = bearer(OTHER_AUDIENCE_TOKEN);
    let response = env
        .get("/apps/web/logs?namespace=shop", &[("authorization", &auth)])
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = error_body(&text(response).await);
    assert_eq!(body["code"], 401);
    assert!(
        body["error"].as_str().unwrap().contains("aether-relay"),
        "{body}"
    );
    env.finish().await;
}

#[tokio::test]
async fn a_request_without_a_token_is_unauthenticated() {
    let env = Env::start(AuthMode::Token, |_| {}).await;
    let response = env.get("/apps/web/logs?namespace=shop", &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let body = error_body(&text(response).await);
    assert_eq!(body["code"], 401);
    env.finish().await;
}

#[tokio::test]
async fn a_positive_decision_is_reused_for_the_next_request() {
    let env = Env::start(AuthMode::Token, |_| {}).await;
    let auth = bearer(CI_TOKEN);
    for _ in 0..2 {
        let response = env
            .get("/apps/web/logs?namespace=shop", &[("authorization", &auth)])
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        text(response).await;
    }
    let reviews = env
        .sim
        .handle()
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/tokenreviews"))
        .count();
    assert_eq!(reviews, 1);
    let metrics = text(env.get("/metrics", &[]).await).await;
    assert!(metrics.contains("aether_relay_auth_decisions_total{outcome=\"allowed_cached\"} 1"));
    env.finish().await;
}

#[tokio::test]
async fn ndjson_is_chunked_with_one_event_per_line_and_stream_headers() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let response = env
        .get("/apps/web/logs?namespace=shop&tail_lines=10", &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(
        headers["x-aether-schema-version"],
        podlogs::SCHEMA_VERSION.to_string().as_str()
    );
    assert_eq!(headers["transfer-encoding"], "chunked");
    assert!(!headers.contains_key("content-length"));

    let chunks = chunks(response).await;
    for chunk in &chunks {
        assert!(chunk.ends_with(b"\n"), "a chunk ends mid-event: {chunk:?}");
    }
    let body = String::from_utf8(chunks.concat()).unwrap();
    for line in body.lines() {
        let event: LogEvent = serde_json::from_str(line).expect("every line is a LogEvent");
        assert_eq!(
            event.to_ndjson(),
            format!("{line}\n"),
            "not the canonical encoding"
        );
    }
    assert_eq!(log_lines(&events(&body)), WEB_LINES);
    env.finish().await;
}

#[tokio::test]
async fn text_format_writes_the_plugin_text_lines() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let response = env
        .get("/apps/web/logs?namespace=shop", &[("accept", "text/plain")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = text(response).await;
    assert!(
        body.lines().any(|l| l == "web-0 app web-0 started"),
        "{body}"
    );
    assert!(!body.contains('\x1b'), "text is colored: {body:?}");

    let response = env
        .get(
            "/apps/web/logs?namespace=shop&format=text&timestamps=true",
            &[],
        )
        .await;
    let body = text(response).await;
    let line = body
        .lines()
        .find(|l| l.ends_with("web-1 ready"))
        .expect("web-1's line");
    let stamp = line
        .strip_prefix("web-1 app ")
        .expect("pod and container first");
    let time = stamp.split(' ').next().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{line}");
    env.finish().await;
}

#[tokio::test]
async fn websocket_sends_one_message_per_event() {
    use tokio_tungstenite::tungstenite::Message;
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let url = format!("ws://{}/apps/web/logs?namespace=shop", env.relay);
    let (mut socket, response) =
        tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .expect("handshake in time")
            .expect("websocket handshake");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);

    let mut events = Vec::new();
    let read = async {
        while let Some(message) = socket.next().await {
            match message.expect("websocket message") {
                Message::Text(text) => {
                    assert!(!text.contains('\n'), "one event per message: {text:?}");
                    events.push(serde_json::from_str::<LogEvent>(&text).expect("an event"));
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("websocket ends in time");
    assert_eq!(log_lines(&events), WEB_LINES);
    env.finish().await;
}

#[tokio::test]
async fn a_silent_follow_stream_gets_heartbeats() {
    let env = Env::start(AuthMode::ServiceProxy, |c| {
        c.heartbeat = Duration::from_millis(200)
    })
    .await;
    let response = env
        .get(
            "/apps/web/logs?namespace=shop&follow=true&tail_lines=0",
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = EventReader::new(response);
    reader
        .until(|e| matches!(e, LogEvent::Heartbeat { .. }))
        .await;
    reader
        .until(|e| matches!(e, LogEvent::Heartbeat { .. }))
        .await;

    env.sim
        .handle()
        .write_line("shop", "web-0", "app", "after the silence");
    let seen = reader
        .until(|e| matches!(e, LogEvent::Log(l) if l.line == "after the silence"))
        .await;
    assert!(!seen.is_empty());
    drop(reader);
    env.finish().await;
}

#[tokio::test]
async fn streams_past_the_per_client_limit_get_429() {
    let env = Env::start(AuthMode::ServiceProxy, |c| c.max_streams_per_client = 1).await;
    let first = env
        .get("/apps/web/logs?namespace=shop&follow=true", &[])
        .await;
    assert_eq!(first.status(), StatusCode::OK);

    let second = env
        .get("/apps/web/logs?namespace=shop&follow=true", &[])
        .await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(second.headers().contains_key("retry-after"));
    let body = error_body(&text(second).await);
    assert_eq!(body["code"], 429);

    // Another client (as the apiserver's proxy reports it) still gets in.
    let other = env
        .get(
            "/apps/web/logs?namespace=shop",
            &[("x-forwarded-for", "192.0.2.1, 10.1.2.3")],
        )
        .await;
    assert_eq!(other.status(), StatusCode::OK);
    text(other).await;
    drop(first);
    env.finish().await;
}

#[tokio::test]
async fn streams_past_the_total_limit_get_429() {
    let env = Env::start(AuthMode::ServiceProxy, |c| c.max_streams = 1).await;
    let first = env
        .get("/apps/web/logs?namespace=shop&follow=true", &[])
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = env
        .get(
            "/apps/web/logs?namespace=shop&follow=true",
            &[("x-forwarded-for", "10.9.9.9")],
        )
        .await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = error_body(&text(second).await);
    assert!(
        body["error"].as_str().unwrap().contains("limit of 1"),
        "{body}"
    );
    drop(first);
    env.finish().await;
}

#[tokio::test]
async fn bad_parameters_get_400_naming_the_parameter() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let cases = [
        ("/apps/web/logs?namespace=shop&tail_lines=-1", "tail_lines"),
        (
            "/apps/web/logs?namespace=shop&tail_lines=99999999",
            "tail_lines",
        ),
        ("/apps/web/logs?namespace=shop&since=5x", "since"),
        ("/apps/web/logs?namespace=shop&since=30d", "since"),
        (
            "/apps/web/logs?namespace=shop&since_time=noon",
            "since_time",
        ),
        ("/apps/web/logs?namespace=shop&follow=perhaps", "follow"),
        ("/apps/web/logs?namespace=shop&container=(", "container"),
        (
            "/apps/web/logs?namespace=shop&labelSelector=app%3Ddb",
            "labelSelector",
        ),
        ("/apps/web/logs?namespace=Shop", "namespace"),
        ("/apps/web/logs", "namespace"),
        ("/apps/-web/logs?namespace=shop", "app"),
    ];
    for (path, parameter) in cases {
        let response = env.get(path, &[]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let body = error_body(&text(response).await);
        assert_eq!(body["code"], 400, "{path}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(parameter),
            "{path}: {body}"
        );
    }
    env.finish().await;
}

#[tokio::test]
async fn an_unserved_namespace_and_an_unknown_app_get_the_same_404() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    // web has pods in `other`, which is not served; `pay` is served and has no web pods.
    let unserved = env
        .get("/apps/web/logs?namespace=other&follow=true", &[])
        .await;
    let unknown = env
        .get("/apps/web/logs?namespace=pay&follow=true", &[])
        .await;
    assert_eq!(unserved.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let unserved_headers: Vec<_> = names(unserved.headers());
    assert_eq!(unserved_headers, names(unknown.headers()));
    let unserved = text(unserved).await.replace("other", "NS");
    let unknown = text(unknown).await.replace("pay", "NS");
    assert_eq!(unserved, unknown);
    assert_eq!(error_body(&unknown)["code"], 404);

    let missing = env.get("/apps/nothing/logs?namespace=shop", &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    env.finish().await;
}

fn names(headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = headers
        .keys()
        .filter(|k| *k != "date")
        .map(|k| k.as_str().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let env = Env::start(AuthMode::Token, |_| {}).await;
    assert_eq!(env.get("/healthz", &[]).await.status(), StatusCode::OK);
    assert_eq!(env.get("/readyz", &[]).await.status(), StatusCode::OK);
    env.finish().await;
}

#[tokio::test]
async fn readiness_fails_when_the_apiserver_is_gone() {
    let env = Env::start(AuthMode::ServiceProxy, |c| {
        c.apiserver_timeout = Duration::from_secs(3)
    })
    .await;
    let Env {
        sim,
        relay,
        stop,
        served,
        _dir,
        ..
    } = env;
    sim.shutdown().await;
    let response = get(relay, "/readyz", &[]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = get(relay, "/apps/web/logs?namespace=shop", &[]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_body(&text(response).await)["code"], 503);
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    if let Some(served) = served {
        let _ = tokio::time::timeout(LIMIT, served).await;
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let env = Env::start(AuthMode::Token, |_| {}).await;
    let auth = bearer(CI_TOKEN);
    text(
        env.get("/apps/web/logs?namespace=shop", &[("authorization", &auth)])
            .await,
    )
    .await;
    text(
        env.get("/apps/db/logs?namespace=shop", &[("authorization", &auth)])
            .await,
    )
    .await;
    text(env.get("/apps/web/logs?namespace=shop", &[]).await).await;

    let response = env.get("/metrics", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let samples = prometheus::parse(&text(response).await).expect("strict exposition format");
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .unwrap_or(f64::NAN)
    };
    assert_eq!(value("aether_relay_lines_sent_total"), 4.0);
    assert!(value("aether_relay_bytes_sent_total") > 0.0);
    assert_eq!(value("aether_relay_client_streams_total"), 1.0);
    let auth_count = |outcome: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == "aether_relay_auth_decisions_total"
                    && s.labels == [("outcome".to_string(), outcome.to_string())]
            })
            .map(|s| s.value)
    };
    assert_eq!(auth_count("allowed"), Some(1.0));
    assert_eq!(auth_count("denied"), Some(1.0));
    assert_eq!(auth_count("unauthenticated"), Some(1.0));
    env.finish().await;
}

#[tokio::test]
async fn openapi_lists_every_route_the_server_answers() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let response = env.get("/openapi.json", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&text(response).await).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();

    // Every documented route answers with something other than "no route".
    for path in &paths {
        let concrete = path.replace("{app}", "web");
        let url = if concrete.contains("/logs") {
            format!("{concrete}?namespace=shop")
        } else {
            concrete
        };
        let response = env.get(&url, &[]).await;
        let status = response.status();
        let body = text(response).await;
        assert!(status.is_success(), "{path} answered {status}: {body}");
    }

    // Every route the server answers is documented.
    let candidates = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/apps/web/logs",
    ];
    for candidate in candidates {
        let response = env.get(&format!("{candidate}?namespace=shop"), &[]).await;
        if response.status() != StatusCode::NOT_FOUND {
            let documented = paths.iter().any(|p| p.replace("{app}", "web") == candidate);
            assert!(documented, "{candidate} is served but not documented");
        }
        text(response).await;
    }
    let nothing = env.get("/apps", &[]).await;
    assert_eq!(nothing.status(), StatusCode::NOT_FOUND);

    let parameters: Vec<&str> = doc["paths"]["/apps/{app}/logs"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in aether_relay::params::PARAMETERS {
        assert!(parameters.contains(name), "{name} undocumented");
    }
    assert!(doc["components"]["schemas"]["LogEvent"]["oneOf"].is_array());
    env.finish().await;
}

#[tokio::test]
async fn shutdown_ends_a_follow_stream_with_a_closing_event() {
    let mut env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let response = env
        .get("/apps/web/logs?namespace=shop&follow=true", &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = EventReader::new(response);
    let mut lines = 0;
    reader
        .until(|e| {
            lines += usize::from(matches!(e, LogEvent::Log(_)));
            lines == WEB_LINES.len()
        })
        .await;

    env.shutdown_relay().await;
    let rest = reader
        .until(|e| matches!(e, LogEvent::Event(s) if s.event == EventKind::Closing))
        .await;
    assert!(!rest.is_empty());
    assert!(
        reader.next().await.is_none(),
        "the stream goes on after closing"
    );
    env.finish().await;
}

#[tokio::test]
async fn a_user_with_only_services_proxy_reads_logs_through_the_apiserver() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let dev = aether_relay::connect(&ClusterSource::Kubeconfig {
        path: Some(env.kubeconfig.clone()),
        context: Some("dev".into()),
    })
    .await
    .expect("client for dev");

    let path = "/api/v1/namespaces/aether-system/services/aether-relay:http/proxy/apps/web/logs\
                ?namespace=shop&tail_lines=5";
    let request = Request::builder()
        .uri(path)
        .body(Vec::new())
        .expect("request");
    let body = tokio::time::timeout(LIMIT, dev.request_text(request))
        .await
        .expect("answer in time")
        .expect("the proxy answers 200");
    assert_eq!(log_lines(&events(&body)), WEB_LINES);

    // The same user may not read pod logs directly.
    let direct = Request::builder()
        .uri("/api/v1/namespaces/shop/pods/web-0/log")
        .body(Vec::new())
        .expect("request");
    let refused = tokio::time::timeout(LIMIT, dev.request_text(direct))
        .await
        .expect("in time");
    assert!(
        refused.is_err(),
        "dev may read pod logs directly: {refused:?}"
    );
    env.finish().await;
}

#[tokio::test]
async fn a_departed_client_gives_its_slot_back() {
    let env = Env::start(AuthMode::ServiceProxy, |c| c.max_streams_per_client = 1).await;
    let first = env
        .get("/apps/web/logs?namespace=shop&follow=true", &[])
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    drop(first);

    // The slot comes back once the relay notices the closed connection.
    let mut status = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..100 {
        let again = env.get("/apps/web/logs?namespace=shop", &[]).await;
        status = again.status();
        text(again).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK);
    let metrics = text(env.get("/metrics", &[]).await).await;
    assert!(
        metrics.contains("aether_relay_client_streams_open 0\n"),
        "{metrics}"
    );
    env.finish().await;
}

#[tokio::test]
async fn only_the_apps_pods_in_the_asked_namespace_are_read() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let path = "/apps/web/logs?namespace=shop&tail_lines=1&timestamps=true&container=%5Eapp%24";
    let body = text(env.get(path, &[]).await).await;
    assert_eq!(
        log_lines(&events(&body)),
        ["web-0/app: web-0 ready", "web-1/app: web-1 ready"]
    );

    let requests = env.sim.handle().requests();
    assert!(!requests.is_empty());
    for r in &requests {
        let authorization = r.path.starts_with("/apis/authorization.k8s.io/")
            || r.path.starts_with("/apis/authentication.k8s.io/");
        if authorization {
            continue;
        }
        assert!(
            r.path.starts_with("/api/v1/namespaces/shop/pods"),
            "read outside shop: {r:?}"
        );
        for (key, value) in &r.query {
            assert_ne!(key, "insecureSkipTLSVerifyBackend", "{r:?}");
            if key == "labelSelector" {
                assert_eq!(value, "app=web", "{r:?}");
            }
        }
        if let Some(pod) = r.path.strip_suffix("/log") {
            assert!(pod.ends_with("/web-0") || pod.ends_with("/web-1"), "{r:?}");
            assert!(r.query.contains(&("tailLines".into(), "1".into())), "{r:?}");
        }
    }
    env.finish().await;
}

#[tokio::test]
async fn since_time_reaches_the_apiserver() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let from = env.sim.handle().start_time() - chrono::Duration::seconds(25);
    let from = from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = text(
        env.get(
            &format!("/apps/web/logs?namespace=shop&since_time={from}"),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        log_lines(&events(&body)),
        ["web-0/app: web-0 ready", "web-1/app: web-1 ready"]
    );
    env.finish().await;
}

#[tokio::test]
async fn websocket_in_token_mode_needs_the_token() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::{Error, Message};
    let env = Env::start(AuthMode::Token, |_| {}).await;
    let url = format!("ws://{}/apps/web/logs?namespace=shop", env.relay);

    let refused = tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .expect("answer in time");
    match refused {
        Err(Error::Http(response)) => assert_eq!(response.status(), StatusCode::UNAUTHORIZED),
        other => panic!("expected 401, got {other:?}"),
    }

    let mut request = url.as_str().into_client_request().expect("request");
    let auth = bearer(CI_TOKEN).parse().expect("header value");
    request.headers_mut().insert("authorization", auth);
    let (mut socket, _) = tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let mut lines = 0;
    let read = async {
        while let Some(message) = socket.next().await {
            match message.expect("message") {
                Message::Text(text) => {
                    let event: LogEvent = serde_json::from_str(&text).expect("an event");
                    lines += usize::from(matches!(event, LogEvent::Log(_)));
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("websocket ends in time");
    assert_eq!(lines, WEB_LINES.len());
    env.finish().await;
}

#[tokio::test]
async fn a_follow_stream_picks_up_new_pods_and_reports_restarts() {
    let env = Env::start(AuthMode::ServiceProxy, |_| {}).await;
    let response = env
        .get(
            "/apps/web/logs?namespace=shop&follow=true&tail_lines=0",
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = EventReader::new(response);
    let mut started = 0;
    reader
        .until(|e| {
            started +=
                usize::from(matches!(e, LogEvent::Event(s) if s.event == EventKind::Started));
            started == 2
        })
        .await;

    let handle = env.sim.handle();
    handle.add_pod(
        Pod::new("web-2")
            .in_namespace("shop")
            .label("app", "web")
            .container(Container::new("app")),
    );
    handle.add_pod(
        Pod::new("db-1")
            .in_namespace("shop")
            .label("app", "db")
            .container(Container::new("app")),
    );
    reader.until(|e| matches!(e, LogEvent::Event(s) if s.event == EventKind::Started && s.pod == "web-2")).await;
    handle.write_line("shop", "db-1", "app", "not for web");
    handle.write_line("shop", "web-2", "app", "new pod speaks");
    let seen = reader
        .until(|e| matches!(e, LogEvent::Log(l) if l.line == "new pod speaks"))
        .await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, LogEvent::Log(l) if l.pod == "db-1")),
        "another app's pod leaked in: {seen:?}"
    );

    handle.restart_container("shop", "web-0", "app", 137, "OOMKilled");
    let seen = reader
        .until(|e| matches!(e, LogEvent::Event(s) if s.event == EventKind::Restarted && s.pod == "web-0"))
        .await;
    assert!(!seen.is_empty());
    drop(reader);
    env.finish().await;
}

#[tokio::test]
async fn missing_rbac_for_the_relay_itself_is_a_500_that_says_so() {
    let mut scenario = scenario();
    let relay = scenario
        .users
        .iter_mut()
        .find(|u| u.name == "relay")
        .expect("relay user");
    relay.rules = vec![
        Rule::new(&["get", "list", "watch"], &["pods"]).in_namespaces(&["shop"]),
        Rule::new(&["get"], &["pods/log"]).in_namespaces(&["shop"]),
    ];
    scenario = scenario.pod(
        Pod::new("web-5")
            .in_namespace("pay")
            .label("app", "web")
            .container(Container::new("app").line(-1.0, "paid")),
    );
    let env = Env::start_with(scenario, AuthMode::ServiceProxy, |_| {}).await;
    let response = env.get("/apps/web/logs?namespace=pay", &[]).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = error_body(&text(response).await);
    assert_eq!(body["code"], 500);
    assert!(body["error"].as_str().unwrap().contains("RBAC"), "{body}");

    let fine = env.get("/apps/web/logs?namespace=shop", &[]).await;
    assert_eq!(fine.status(), StatusCode::OK);
    text(fine).await;
    env.finish().await;
}

/// A strict reader of the Prometheus text exposition format, as far as the relay uses it.
mod prometheus {
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug)]
    pub struct Sample {
        pub name: String,
        pub labels: Vec<(String, String)>,
        pub value: f64,
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
        if !text.ends_with('\n') {
            return Err("exposition does not end with a newline".into());
        }
        let mut help = BTreeSet::new();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut samples = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest
                    .split_once(' ')
                    .ok_or_else(|| at("HELP without text"))?;
                if !valid_name(name) || doc.is_empty() || !help.insert(name.to_string()) {
                    return Err(at("bad or repeated HELP"));
                }
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| at("TYPE without kind"))?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(at("unknown type"));
                }
                if kind == "counter" && !name.ends_with("_total") {
                    return Err(at("counter without _total"));
                }
                if types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(at("repeated TYPE"));
                }
            } else if line.starts_with('#') || line.is_empty() {
                return Err(at("stray comment or blank line"));
            } else {
                let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
                let value: f64 = value.parse().map_err(|_| at("value is not a number"))?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => {
                        let body = rest
                            .strip_suffix('}')
                            .ok_or_else(|| at("unclosed labels"))?;
                        (name, parse_labels(body).map_err(|e| at(&e))?)
                    }
                    None => (series, Vec::new()),
                };
                if !valid_name(name) {
                    return Err(at("bad metric name"));
                }
                if !types.contains_key(name) || !help.contains(name) {
                    return Err(at("sample before its HELP and TYPE"));
                }
                if !seen.insert(series.to_string()) {
                    return Err(at("repeated series"));
                }
                samples.push(Sample {
                    name: name.to_string(),
                    labels,
                    value,
                });
            }
        }
        if samples.is_empty() {
            return Err("no samples".into());
        }
        Ok(samples)
    }

    fn parse_labels(body: &str) -> Result<Vec<(String, String)>, String> {
        let mut labels = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (name, after) = rest.split_once("=\"").ok_or("label without =\"")?;
            if !valid_name(name) || name.contains(':') {
                return Err(format!("bad label name {name:?}"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err("bad escape in label value".into()),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            };
            labels.push((name.to_string(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        Ok(labels)
    }
}
