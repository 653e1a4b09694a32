//! The `aether-relay` binary against kubesim: it logs JSON to stderr, serves a follow
//! stream, and on SIGTERM ends that stream with a `closing` event and exits 0.

#![cfg(unix)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use kubesim::{Container, Pod, Rule, Scenario, Sim, SimOptions, User};
use podlogs::{EventKind, LogEvent};

const LIMIT: Duration = Duration::from_secs(20);

/// Kills the child if the test fails before it exits.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn scenario() -> Scenario {
    let relay = User::new("relay")
        .rule(Rule::new(&["get", "list", "watch"], &["pods"]))
        .rule(Rule::new(&["get"], &["pods/log"]));
    Scenario::new("shop").user(relay).pod(
        Pod::new("web-0")
            .label("app", "web")
            .container(Container::new("app").line(-5.0, "hello")),
    )
}

/// Reads stderr until the JSON line announcing the address, returning it and every line.
fn listening_address(stderr: impl std::io::Read + Send + 'static) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + LIMIT;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let json: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        if json["fields"]["message"] == "relay listening" {
            let address = json["fields"]["address"].as_str().expect("address field");
            return address.parse().expect("a socket address");
        }
        seen.push(line);
    }
    panic!("the relay never said where it listens; stderr: {seen:#?}");
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

    let mut child = Command::new(env!("CARGO_BIN_EXE_aether-relay"))
        .args([
            "--namespaces",
            "shop",
            "--auth",
            "service-proxy",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--shutdown-grace", "5s"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the relay starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let pid = child.id();
    let mut guard = Guard(Some(child));
    let address = tokio::task::spawn_blocking(move || listening_address(stderr))
        .await
        .expect("stderr reader");

    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .uri("/apps/web/logs?follow=true")
        .header("host", address.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(LIMIT, sender.send_request(request))
        .await
        .expect("answer in time")
        .expect("answer");
    assert_eq!(response.status(), hyper::StatusCode::OK);
    let mut body = response.into_body();

    let mut text = String::new();
    let mut signalled = false;
    let read = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                text.push_str(std::str::from_utf8(&data).expect("utf-8"));
            }
            if !signalled && text.contains("\"line\":\"hello\"") {
                let status = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
                assert!(status.expect("kill runs").success());
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

    let mut child = guard.0.take().expect("child");
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("waiter");
    let status = waited.expect("the relay exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    sim.shutdown().await;
}
