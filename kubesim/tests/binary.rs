//! The `kubesim` binary: it prints its URL once ready, writes a kubeconfig, serves the truth
//! endpoint when asked, and runs the demo without a scenario.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the child when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubesim starts");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a URL line in time");
    (running, line.trim().to_string())
}

async fn get(url: &str, path: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://").to_string();
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", addr)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("in time")
        .expect("answer");
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_demo_prints_its_url_and_writes_a_kubeconfig() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let path = kubeconfig.to_str().expect("utf-8 path");
    let (_child, url) = start(&["--kubeconfig", path]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig written");
    assert!(text.contains(&url));
    assert!(text.contains("certificate-authority-data"));
    assert!(text.contains("current-context: admin"));
    assert!(text.contains("namespace: demo"));
}

#[tokio::test]
async fn plain_http_serves_the_user_and_the_truth_endpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = dir.path().join("scenario.json");
    std::fs::write(
        &scenario,
        r#"{"defaultNamespace": "shop",
            "users": [{"name": "dev", "rules": [
                {"verbs": ["get", "list"], "resources": ["pods", "pods/log"]}]}],
            "pods": [{"name": "p", "containers": [
                {"name": "c", "logs": [{"at": -1, "text": "hi"}]}]}]}"#,
    )
    .expect("scenario written");
    let (_child, url) = start(&[
        "--scenario",
        scenario.to_str().expect("utf-8"),
        "--plain-http",
        "--truth-endpoint",
        "--user",
        "dev",
    ]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, body) = get(&url, "/api/v1/namespaces/shop/pods/p/log").await;
    assert_eq!((status, body.as_str()), (200, "hi\n"));
    let (status, body) = get(&url, "/kubesim/truth/shop/p/c").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"text\":\"hi\""), "{body}");
    let (_, body) = get(&url, "/kubesim/requests").await;
    assert!(body.contains("\"user\":\"dev\""), "{body}");
}

#[test]
fn a_bad_scenario_fails_with_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = dir.path().join("bad.json");
    std::fs::write(&scenario, r#"{"podz": []}"#).expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["--scenario", scenario.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: loading "), "{stderr}");
    assert!(stderr.contains("podz"), "{stderr}");
    assert_eq!(
        stderr.matches("podz").count(),
        1,
        "the cause is said once: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
