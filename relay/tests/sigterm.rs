//! The `aether-relay` binary against kubesim: it logs JSON to stderr and never a token,
//! serves a follow stream, and on SIGTERM ends that stream with a `closing` event and exits 0.

#![cfg(unix)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use kubesim::{Container, Pod, Rule, Scenario, ServiceAccount, Sim, SimOptions, User};
use podlogs::{EventKind, LogEvent};

const LIMIT: Duration = Duration::from_secs(20);

const CI_TOKEN: &str = "ci-deployer-secret-token-4f1d";
const VAULT_TOKEN: &str = "ci-vault-secret-token-9b2e";
const UNKNOWN_TOKEN: &str = "never-issued-secret-token-77aa";

fn scenario() -> Scenario {
    let relay = User::new("relay")
        .rule(Rule::new(&["get", "list", "watch"], &["pods"]))
        .rule(Rule::new(&["get"], &["pods/log"]))
        .rule(Rule::new(&["create"], &["tokenreviews"]).groups(&["authentication.k8s.io"]))
        .rule(Rule::new(&["create"], &["subjectaccessreviews"]).groups(&["authorization.k8s.io"]));
    let web_logs = Rule::new(&["get"], &["apps/logs"])
        .groups(&["aether.dev"])
        .names(&["web"]);
    Scenario::new("shop")
        .user(relay)
        .service_account(
            ServiceAccount::new("ci", "deployer", &["aether-relay"])
                .with_token(CI_TOKEN)
                .rule(web_logs.clone()),
        )
        .service_account(
            ServiceAccount::new("ci", "vault", &["vault"])
                .with_token(VAULT_TOKEN)
                .rule(web_logs),
        )
        .namespace("ci")
        .pod(
            Pod::new("web-0")
                .label("app", "web")
                .container(Container::new("app").line(-5.0, "hello")),
        )
}

/// The relay binary, killed if a test fails before it exits.
struct Relay {
    child: Option<Child>,
    address: SocketAddr,
    stderr: Receiver<String>,
    lines: Vec<String>,
}

impl Relay {
    fn start(kubeconfig: &Path, extra: &[&str]) -> Relay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aether-relay"))
            .args([
                "--namespaces",
                "shop",
                "--listen",
                "127.0.0.1:0",
                "--shutdown-grace",
                "5s",
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the relay starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut relay = Relay {
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: rx,
            lines: Vec::new(),
        };
        relay.address = relay.listening_address();
        relay
    }

    /// Reads stderr until the JSON line that says where the relay listens.
    fn listening_address(&mut self) -> SocketAddr {
        let deadline = Instant::now() + LIMIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.stderr.recv_timeout(left) else {
                break;
            };
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
            self.lines.push(line);
            if json["fields"]["message"] == "relay listening" {
                let address = json["fields"]["address"].as_str().expect("address field");
                return address.parse().expect("a socket address");
            }
        }
        panic!(
            "the relay never said where it listens; stderr: {:#?}",
            self.lines
        );
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        let stream = tokio::net::TcpStream::connect(self.address)
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .uri(path)
            .header("host", self.address.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::<Bytes>::new()).expect("request");
        tokio::time::timeout(LIMIT, sender.send_request(request))
            .await
            .expect("answer in time")
            .expect("answer")
    }

    fn terminate(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        assert!(status.expect("kill runs").success());
    }

    /// Waits for the process to exit, then returns its status and every stderr line.
    async fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let status = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + LIMIT;
            loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    return Some(status);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .expect("waiter")
        .expect("the relay exits after SIGTERM");
        // The reader thread ends with the process; take what it read.
        let deadline = Instant::now() + LIMIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(_) => break,
            }
        }
        (status, std::mem::take(&mut self.lines))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn body_text(response: Response<Incoming>) -> String {
    let bytes = tokio::time::timeout(LIMIT, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn sigterm_ends_a_follow_stream_with_closing_and_exits_cleanly() {
    let sim = Sim::start(scenario(), SimOptions::default())
        .await
        .expect("kubesim starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    sim.write_kubeconfig(&kubeconfig, "relay")
        .expect("kubeconfig");
    let relay = Relay::start(&kubeconfig, &["--auth", "service-proxy"]);

    let response = relay.get("/apps/web/logs?follow=true", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut text = String::new();
    let mut signalled = false;
    let read = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                text.push_str(std::str::from_utf8(&data).expect("utf-8"));
            }
            if !signalled && text.contains("\"line\":\"hello\"") {
                relay.terminate();
                signalled = true;
            }
        }
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("the stream ends after SIGTERM");

    let events: Vec<LogEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event per line"))
        .collect();
    let last = events.last().expect("events");
    assert!(
        matches!(last, LogEvent::Event(e) if e.event == EventKind::Closing),
        "last event is {last:?}"
    );
    let (status, _) = relay.wait().await;
    assert!(status.success(), "exit status {status:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn tokens_never_reach_the_logs_even_at_debug_level() {
    let sim = Sim::start(scenario(), SimOptions::default())
        .await
        .expect("kubesim starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    sim.write_kubeconfig(&kubeconfig, "relay")
        .expect("kubeconfig");
    let relay_token = sim.token("relay").expect("the relay's token");
    let relay = Relay::start(&kubeconfig, &["--auth", "token", "--log", "debug"]);

    let cases = [
        (CI_TOKEN, "/apps/web/logs", StatusCode::OK),
        (CI_TOKEN, "/apps/web/logs", StatusCode::OK),
        (CI_TOKEN, "/apps/db/logs", StatusCode::FORBIDDEN),
        (VAULT_TOKEN, "/apps/web/logs", StatusCode::UNAUTHORIZED),
        (UNKNOWN_TOKEN, "/apps/web/logs", StatusCode::UNAUTHORIZED),
    ];
    for (token, path, expected) in cases {
        let auth = format!("Bearer {token}");
        let response = relay.get(path, &[("authorization", &auth)]).await;
        assert_eq!(response.status(), expected, "{path}");
        let body = body_text(response).await;
        assert!(!body.contains(token), "the answer echoes the token: {body}");
    }

    relay.terminate();
    let (status, lines) = relay.wait().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        lines.iter().any(|l| l.contains("access denied")),
        "no decision logged: {lines:#?}"
    );
    for line in &lines {
        for token in [CI_TOKEN, VAULT_TOKEN, UNKNOWN_TOKEN, relay_token.as_str()] {
            assert!(!line.contains(token), "a token reached the logs: {line}");
        }
    }
    sim.shutdown().await;
}
