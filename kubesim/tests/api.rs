//! kubesim on the wire: each test starts a simulator and checks one behaviour of
//! k8s-log-api.md with a raw HTTP/1.1 client (to see codes, headers and chunk boundaries)
//! or with kube-rs over TLS (to prove a real client accepts the answers).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use kubesim::{
    Action, Container, ContainerKind, ContainerState, Cut, CutMode, Pod, Rule, Scenario,
    ServiceAccount, Sim, SimOptions, User,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

fn shop() -> Scenario {
    Scenario::new("shop")
        .user(User::new("alice").rule(Rule::all()))
        .user(
            User::new("bob")
                .rule(Rule::new(&["get", "list", "watch"], &["pods"]).in_namespaces(&["shop"])),
        )
        .service_account(
            ServiceAccount::new("aether-system", "aether-relay", &["aether-relay"])
                .rule(Rule::new(&["create"], &["tokenreviews"]).groups(&["authentication.k8s.io"]))
                .rule(
                    Rule::new(&["create"], &["subjectaccessreviews"])
                        .groups(&["authorization.k8s.io"]),
                ),
        )
        .pod(
            Pod::new("web-0")
                .label("app", "web")
                .container(Container::new("init").kind(ContainerKind::Init).state(
                    ContainerState::Terminated {
                        exit_code: 0,
                        reason: Some("Completed".into()),
                    },
                ))
                .container(
                    Container::new("app")
                        .line(-3.0, "one")
                        .line(-2.0, "two")
                        .line(-1.0, "trois é"),
                )
                .container(Container::new("sidecar")),
        )
        .pod(
            Pod::new("single")
                .label("app", "api")
                .container(Container::new("main").line(-1.0, "hello")),
        )
        .pod(
            Pod::new("pending")
                .label("app", "api")
                .unscheduled()
                .container(Container::new("main")),
        )
        .pod(Pod::new("creating").container(Container::new("main").state(
            ContainerState::Waiting {
                reason: "ContainerCreating".into(),
            },
        )))
        .pod(
            Pod::new("crashing").container(
                Container::new("main")
                    .state(ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                    })
                    .previous(1, "Error", &[(-5.0, "boom")]),
            ),
        )
}

async fn plain(scenario: Scenario) -> Sim {
    let options = SimOptions {
        tls: false,
        truth_endpoint: true,
        ..SimOptions::default()
    };
    Sim::start(scenario, options).await.expect("kubesim starts")
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    frames: Vec<Bytes>,
    clean_end: bool,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.frames.concat()).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.frames.concat()).expect("a JSON body")
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    token: Option<&str>,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Reply {
    let stream = timeout(LIMIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = match body {
        Some((content_type, bytes)) => req
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(bytes)).boxed())
            .expect("request"),
        None => req
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .expect("request"),
    };
    let resp = timeout(LIMIT, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    let clean_end = loop {
        match timeout(LIMIT, body.frame()).await.expect("body in time") {
            None => break true,
            Some(Err(_)) => break false,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    frames.push(data);
                }
            }
        }
    };
    Reply {
        status,
        headers,
        frames,
        clean_end,
    }
}

/// Waits until a request for `path` has reached the simulator. Its handler runs without
/// yielding from the record to the stream's set-up, so the stream exists when this returns.
async fn wait_for_request(sim: &Sim, path: &str) {
    for _ in 0..500 {
        if sim.handle().requests().iter().any(|r| r.path == path) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no request for {path} reached kubesim");
}

async fn get(sim: &Sim, user: &str, path: &str) -> Reply {
    let token = sim.token(user).expect("known user");
    request(sim.addr(), "GET", Some(&token), path, None).await
}

// --- pods -------------------------------------------------------------------------------

#[tokio::test]
async fn pod_list_has_a_resource_version_and_honours_kube_rs_query_strings() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods?&labelSelector=app%3Dapi&limit=500",
    )
    .await;
    assert_eq!(reply.status, 200);
    let list = reply.json();
    assert_eq!(list["kind"], "PodList");
    assert!(
        list["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["pending", "single"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn field_selectors_filter_on_phase_and_node() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/pods?fieldSelector=status.phase%3DPending",
    )
    .await;
    let names: Vec<String> = reply.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    // A crash-looping container keeps its pod Running: it is restarted, not given up.
    assert_eq!(names, ["creating", "pending"]);
    let reply = get(
        &sim,
        "alice",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dnowhere",
    )
    .await;
    assert_eq!(reply.json()["items"], json!([]));
    let reply = get(&sim, "alice", "/api/v1/pods?fieldSelector=spec.bogus%3Dx").await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["message"],
        "field label not supported: spec.bogus"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn pods_serialise_as_k8s_openapi_pods() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/crashing").await;
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_slice(&reply.frames.concat()).expect("a Pod");
    let status = pod.status.expect("status");
    let cs = &status.container_statuses.expect("statuses")[0];
    assert_eq!(cs.restart_count, 1);
    assert_eq!(
        cs.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref()),
        Some("CrashLoopBackOff")
    );
    assert!(
        cs.last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn kubectl_tables_have_the_pod_printer_columns() {
    let sim = plain(shop()).await;
    let token = sim.token("alice").expect("alice");
    let stream = TcpStream::connect(sim.addr()).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get("/api/v1/namespaces/shop/pods")
        .header("authorization", format!("Bearer {token}"))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = timeout(LIMIT, sender.send_request(req))
        .await
        .expect("in time")
        .expect("answer");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let table: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .take(5)
        .collect();
    assert_eq!(columns, ["Name", "Ready", "Status", "Restarts", "Age"]);
    let crashing = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["cells"][0] == "crashing")
        .expect("row");
    assert_eq!(crashing["cells"][1], "0/1");
    assert_eq!(crashing["cells"][2], "CrashLoopBackOff");
    assert!(
        crashing["cells"][3]
            .as_str()
            .is_some_and(|s| s.starts_with("1 (")),
        "{}",
        crashing["cells"][3]
    );
    sim.shutdown().await;
}

// --- logs -------------------------------------------------------------------------------

#[tokio::test]
async fn logs_need_a_container_when_there_are_several() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/web-0/log").await;
    assert_eq!(reply.status, 400);
    let status = reply.json();
    assert_eq!(status["reason"], "BadRequest");
    assert_eq!(
        status["message"],
        "a container name must be specified for pod web-0, choose one of: [app sidecar] or one \
         of the init containers: [init]"
    );
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/web-0/log?container=foo",
    )
    .await;
    assert_eq!(
        reply.json()["message"],
        "container foo is not valid for pod web-0"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_single_container_is_chosen_without_a_name() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/single/log").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain")
    );
    assert!(
        reply.headers.get("content-length").is_none(),
        "log bodies are chunked"
    );
    assert_eq!(reply.text(), "hello\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn kubelet_refusals_are_bad_requests_with_its_words() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/creating/log").await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["message"],
        "container \"main\" in pod \"creating\" is waiting to start: ContainerCreating"
    );
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/single/log?previous=true",
    )
    .await;
    assert_eq!(
        reply.json()["message"],
        "previous terminated container \"main\" in pod \"single\" not found"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn crash_loop_back_off_serves_the_last_run() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/crashing/log").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "boom\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn unscheduled_pods_answer_no_content() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/pending/log").await;
    assert_eq!(reply.status, 204);
    assert!(reply.frames.concat().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn missing_pods_are_not_found_with_the_status_shape() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/x/log").await;
    assert_eq!(reply.status, 404);
    assert!(reply.frames.concat().ends_with(b"\n"));
    let status = reply.json();
    assert_eq!(status["message"], "pods \"x\" not found");
    assert_eq!(status["details"], json!({"name": "x", "kind": "pods"}));
    assert_eq!(status["code"], 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn forbidden_wins_over_not_found() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "bob", "/api/v1/namespaces/shop/pods/x/log").await;
    assert_eq!(reply.status, 403);
    let status = reply.json();
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "pods \"x\" is forbidden: User \"bob\" cannot get resource \"pods/log\" in API group \
         \"\" in the namespace \"shop\""
    );
    assert_eq!(status["details"]["kind"], "pods");
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_tokens_are_unauthorized() {
    let sim = plain(shop()).await;
    let reply = request(sim.addr(), "GET", Some("nope"), "/api/v1/pods", None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["reason"], "Unauthorized");
    sim.shutdown().await;
}

#[tokio::test]
async fn timestamps_have_nine_digits_and_tail_counts_lines() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/web-0/log?container=app&timestamps=true&tailLines=2",
    )
    .await;
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        let (ts, _) = line.split_once(' ').expect("a timestamp prefix");
        assert_eq!(ts.len(), "2026-05-01T12:00:00.120000000Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
    }
    assert!(lines[1].ends_with(" trois é"));
    sim.shutdown().await;
}

#[tokio::test]
async fn chunks_are_split_inside_lines_and_characters() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/web-0/log?container=app",
    )
    .await;
    assert_eq!(reply.text(), "one\ntwo\ntrois é\n");
    assert!(
        reply.frames.len() >= 2,
        "one chunk only: {:?}",
        reply.frames
    );
    assert!(
        reply.frames.iter().any(|f| std::str::from_utf8(f).is_err()),
        "no chunk ends inside a character"
    );
    sim.shutdown().await;
}

/// A line no UTF-8 decoder accepts: a lead byte without its continuation, two bytes that
/// never appear in UTF-8, and a three-byte character cut short.
const INVALID: &[u8] = b"caf\xc3 \xff\xfe mid \xe2\x82 end";

fn raw_pod() -> Scenario {
    Scenario::new("shop")
        .user(User::new("alice").rule(Rule::all()))
        .pod(
            Pod::new("raw").container(
                Container::new("main")
                    .line_bytes(-2.0, INVALID)
                    .line(-1.0, "next é"),
            ),
        )
}

#[tokio::test]
async fn invalid_utf8_comes_back_unchanged() {
    let sim = plain(raw_pod()).await;

    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/raw/log").await;

    assert_eq!(reply.status, 200);
    let want = [INVALID, b"\n", "next é\n".as_bytes()].concat();
    assert_eq!(reply.frames.concat(), want);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_comes_back_unchanged_after_a_timestamp() {
    let sim = plain(raw_pod()).await;
    let truth = sim.handle().truth("shop", "raw", "main");

    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/raw/log?timestamps=true",
    )
    .await;

    assert_eq!(reply.status, 200);
    let mut want = Vec::new();
    for (line, bytes) in truth.iter().zip([INVALID, "next é".as_bytes()]) {
        want.extend_from_slice(kubesim::logs::format_time(line.time).as_bytes());
        want.push(b' ');
        want.extend_from_slice(bytes);
        want.push(b'\n');
    }
    assert_eq!(reply.frames.concat(), want);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_follower_gets_written_bytes_unchanged() {
    let sim = plain(raw_pod()).await;
    let handle = sim.handle();
    let token = sim.token("alice").expect("known user");
    let addr = sim.addr();
    let path = "/api/v1/namespaces/shop/pods/raw/log";
    let follow = tokio::spawn(async move {
        let path = format!("{path}?follow=true&tailLines=0");
        request(addr, "GET", Some(&token), &path, None).await
    });
    wait_for_request(&sim, path).await;

    handle.write_bytes("shop", "raw", "main", INVALID);
    handle.terminate_container("shop", "raw", "main", 0, "Completed");

    let reply = timeout(LIMIT, follow).await.expect("ends").expect("joins");
    assert!(reply.clean_end);
    assert_eq!(reply.frames.concat(), [INVALID, b"\n"].concat());
    sim.shutdown().await;
}

#[tokio::test]
async fn written_bytes_reach_previous_logs_and_the_truth_unchanged() {
    let sim = plain(raw_pod()).await;
    let handle = sim.handle();
    handle.write_bytes("shop", "raw", "main", b"\xff\xfe");
    handle.restart_container("shop", "raw", "main", 1, "Error");

    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/raw/log?previous=true&tailLines=1",
    )
    .await;
    assert_eq!(reply.frames.concat(), b"\xff\xfe\n");

    let truth = handle.truth("shop", "raw", "main");
    let bytes: Vec<&[u8]> = truth.iter().map(|l| &l.bytes[..]).collect();
    assert_eq!(bytes, [INVALID, "next é".as_bytes(), b"\xff\xfe"]);
    assert_eq!(truth[2].text, "\u{fffd}\u{fffd}");

    let reply = request(
        sim.addr(),
        "GET",
        None,
        "/kubesim/truth/shop/raw/main",
        None,
    )
    .await;
    let records: Vec<Value> = reply
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let encoded: Vec<Option<&str>> = records.iter().map(|r| r["bytes"].as_str()).collect();
    assert_eq!(
        encoded,
        [Some("Y2FmwyD//iBtaWQg4oIgZW5k"), None, Some("//4=")]
    );
    assert_eq!(records[2]["text"], "\u{fffd}\u{fffd}");
    sim.shutdown().await;
}

#[tokio::test]
async fn since_time_is_truncated_to_the_second() {
    let sim = plain(Scenario::new("shop").user(User::new("alice").rule(Rule::all()))).await;
    let handle = sim.handle();
    handle.add_pod(Pod::new("p").container(Container::new("c")));
    handle.write_line("shop", "p", "c", "first");
    tokio::time::sleep(Duration::from_millis(20)).await;
    handle.write_line("shop", "p", "c", "second");
    let truth = handle.truth("shop", "p", "c");
    let second = kubesim::logs::format_time(truth[1].time);
    let reply = get(
        &sim,
        "alice",
        &format!("/api/v1/namespaces/shop/pods/p/log?sinceTime={second}"),
    )
    .await;
    // The second's earlier line comes again unless both fall in different seconds.
    let same_second = truth[0].time.timestamp() == truth[1].time.timestamp();
    let want = if same_second {
        "first\nsecond\n"
    } else {
        "second\n"
    };
    assert_eq!(reply.text(), want);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_options_are_unprocessable() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/single/log?limitBytes=0",
    )
    .await;
    assert_eq!(reply.status, 422);
    let status = reply.json();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "PodLogOptions \"single\" is invalid: limitBytes: Invalid value: 0: must be greater than 0"
    );
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/single/log?tailLines=x",
    )
    .await;
    assert_eq!(reply.status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn limit_bytes_cuts_mid_line_and_ends_a_follow() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/web-0/log?container=app&follow=true&limitBytes=6",
    )
    .await;
    assert!(reply.clean_end);
    assert_eq!(reply.text(), "one\ntw");
    sim.shutdown().await;
}

#[tokio::test]
async fn follow_ends_cleanly_when_the_container_terminates() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let follow = tokio::spawn(async move {
        request(
            addr,
            "GET",
            Some(&token),
            "/api/v1/namespaces/shop/pods/single/log?follow=true",
            None,
        )
        .await
    });
    wait_for_request(&sim, "/api/v1/namespaces/shop/pods/single/log").await;
    handle.write_line("shop", "single", "main", "bye");
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.terminate_container("shop", "single", "main", 0, "Completed");
    let reply = timeout(LIMIT, follow).await.expect("ends").expect("joins");
    assert!(reply.clean_end);
    assert_eq!(reply.text(), "hello\nbye\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn previous_gives_the_run_before_a_restart() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let old_id = handle.container_id("shop", "single", "main").expect("id");
    handle.restart_container("shop", "single", "main", 137, "OOMKilled");
    handle.write_line("shop", "single", "main", "again");
    assert_ne!(
        handle.container_id("shop", "single", "main"),
        Some(old_id.clone())
    );
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/single/log?previous=true",
    )
    .await;
    assert_eq!(reply.text(), "hello\n");
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/single/log").await;
    assert_eq!(reply.text(), "again\n");
    let truth = handle.truth("shop", "single", "main");
    assert_eq!(
        truth.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["hello", "again"]
    );
    assert_eq!(truth[0].container_id, old_id);
    sim.shutdown().await;
}

#[tokio::test]
async fn tail_lines_reads_only_the_current_file_after_rotation() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    handle.rotate_log("shop", "single", "main");
    handle.write_line("shop", "single", "main", "after");
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/single/log?tailLines=10",
    )
    .await;
    assert_eq!(reply.text(), "after\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn cut_log_streams_reset_the_connection() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let follow = tokio::spawn(async move {
        request(
            addr,
            "GET",
            Some(&token),
            "/api/v1/namespaces/shop/pods/single/log?follow=true",
            None,
        )
        .await
    });
    wait_for_request(&sim, "/api/v1/namespaces/shop/pods/single/log").await;
    handle.cut_log_streams(Cut {
        mode: CutMode::Reset,
        ..Cut::default()
    });
    let reply = timeout(LIMIT, follow).await.expect("ends").expect("joins");
    assert!(!reply.clean_end, "a reset is not a clean end");
    sim.shutdown().await;
}

// --- watch ------------------------------------------------------------------------------

#[tokio::test]
async fn a_too_old_resource_version_is_an_expired_error_event() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods?watch=true&resourceVersion=1",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.clean_end);
    let text = reply.text();
    let event: Value = serde_json::from_str(text.trim()).expect("one event");
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["reason"], "Expired");
    assert_eq!(event["object"]["code"], 410);
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_ends_cleanly_after_timeout_seconds_with_bookmarks() {
    let options = SimOptions {
        tls: false,
        bookmark_interval: Duration::from_millis(200),
        ..SimOptions::default()
    };
    let sim = Sim::start(shop(), options).await.expect("starts");
    let list = get(&sim, "alice", "/api/v1/namespaces/shop/pods")
        .await
        .json();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let path = format!(
        "/api/v1/namespaces/shop/pods?&watch=true&timeoutSeconds=1&allowWatchBookmarks=true\
         &resourceVersion={rv}&labelSelector=app%3Dweb"
    );
    let watch = tokio::spawn(async move { request(addr, "GET", Some(&token), &path, None).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.restart_container("shop", "web-0", "app", 1, "Error");
    handle.restart_container("shop", "single", "main", 1, "Error");
    let reply = timeout(LIMIT, watch).await.expect("ends").expect("joins");
    assert!(reply.clean_end);
    let events: Vec<Value> = reply
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    let modified: Vec<&Value> = events.iter().filter(|e| e["type"] == "MODIFIED").collect();
    assert_eq!(modified.len(), 1, "only web-0 matches app=web: {events:?}");
    assert_eq!(modified[0]["object"]["kind"], "Pod");
    assert!(modified[0]["object"]["metadata"]["resourceVersion"].is_string());
    assert!(events.iter().any(|e| e["type"] == "BOOKMARK"), "{events:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_from_zero_starts_with_added_events() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods?watch=1&timeoutSeconds=1&labelSelector=app%20in%20(api)",
    )
    .await;
    let added = reply
        .text()
        .lines()
        .filter(|l| l.contains("\"ADDED\""))
        .count();
    assert_eq!(added, 2);
    sim.shutdown().await;
}

// --- crash-loop back-off ------------------------------------------------------------------

/// The status of container `main` of pod `single`, with the pod's phase.
async fn single_status(sim: &Sim) -> (Value, Value) {
    let pod = get(sim, "alice", "/api/v1/namespaces/shop/pods/single")
        .await
        .json();
    (
        pod["status"]["phase"].clone(),
        pod["status"]["containerStatuses"][0].clone(),
    )
}

/// Polls the status of `single`'s `main` until it runs with `restarts` restarts.
async fn wait_running_again(sim: &Sim, restarts: i64) -> Value {
    for _ in 0..500 {
        let (_, status) = single_status(sim).await;
        if status["state"]["running"].is_object() && status["restartCount"] == restarts {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("main never ran again with {restarts} restarts");
}

#[tokio::test]
async fn a_backing_off_container_waits_in_crash_loop_with_its_last_run() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let ran = handle.container_id("shop", "single", "main").expect("id");
    handle.restart_container_after("shop", "single", "main", 1, "Error", LIMIT * 3);

    let (phase, status) = single_status(&sim).await;
    assert_eq!(phase, "Running", "a restarting pod stays Running");
    assert_eq!(status["state"]["waiting"]["reason"], "CrashLoopBackOff");
    let message = status["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("back-off 30s restarting failed container=main pod=single_shop("),
        "{message}"
    );
    let last = &status["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1);
    assert_eq!(last["reason"], "Error");
    assert_eq!(last["containerID"], ran.as_str());
    assert!(last["startedAt"].is_string() && last["finishedAt"].is_string());
    assert_eq!(
        status["containerID"],
        ran.as_str(),
        "the ended run's ID stays"
    );
    assert_eq!(
        status["restartCount"], 0,
        "counted when the next run starts"
    );
    assert_eq!(status["ready"], false);
    assert_eq!(status["started"], false);
    sim.shutdown().await;
}

#[tokio::test]
async fn after_the_backoff_a_new_instance_runs_and_is_counted() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let ran = handle.container_id("shop", "single", "main").expect("id");
    handle.restart_container_after(
        "shop",
        "single",
        "main",
        2,
        "Error",
        Duration::from_millis(200),
    );

    let status = wait_running_again(&sim, 1).await;
    let id = status["containerID"].as_str().expect("a container ID");
    assert_ne!(id, ran);
    assert_eq!(status["ready"], true);
    assert_eq!(status["state"]["waiting"], Value::Null);
    assert_eq!(
        status["lastState"]["terminated"]["containerID"],
        ran.as_str()
    );
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 2);

    handle.write_line("shop", "single", "main", "second run");
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/single/log").await;
    assert_eq!(reply.text(), "second run\n");
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/single/log?previous=true",
    )
    .await;
    assert_eq!(reply.text(), "hello\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn logs_during_a_backoff_serve_the_run_that_ended() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    handle.restart_container("shop", "single", "main", 1, "Error");
    handle.write_line("shop", "single", "main", "second run");
    handle.restart_container_after("shop", "single", "main", 1, "Error", LIMIT * 3);

    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/single/log").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "second run\n");

    // `previous` names lastState.terminated, which during the back-off is the run that
    // just ended, not the one before it.
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/single/log?previous=true",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "second run\n");

    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/single/log?follow=true&timestamps=true",
    )
    .await;
    assert!(
        reply.clean_end,
        "a follow of a run that ended ends after its last line"
    );
    assert!(reply.text().ends_with("Z second run\n"), "{}", reply.text());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_follower_of_a_crashing_run_ends_and_the_next_run_is_served() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let path = "/api/v1/namespaces/shop/pods/single/log";
    let follow = tokio::spawn(async move {
        let path = format!("{path}?follow=true");
        request(addr, "GET", Some(&token), &path, None).await
    });
    wait_for_request(&sim, path).await;
    handle.write_line("shop", "single", "main", "about to fail");
    handle.restart_container_after(
        "shop",
        "single",
        "main",
        1,
        "Error",
        Duration::from_millis(200),
    );
    let reply = timeout(LIMIT, follow).await.expect("ends").expect("joins");
    assert!(reply.clean_end);
    assert_eq!(reply.text(), "hello\nabout to fail\n");

    wait_running_again(&sim, 1).await;
    handle.write_line("shop", "single", "main", "back");
    assert_eq!(get(&sim, "alice", path).await.text(), "back\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn watchers_see_the_exit_the_backoff_and_the_new_run() {
    let sim = plain(shop()).await;
    let list = get(&sim, "alice", "/api/v1/namespaces/shop/pods")
        .await
        .json();
    let rv = list["metadata"]["resourceVersion"].as_str().expect("rv");
    let handle = sim.handle();
    handle.restart_container_after(
        "shop",
        "single",
        "main",
        1,
        "Error",
        Duration::from_millis(100),
    );
    wait_running_again(&sim, 1).await;

    let path = format!(
        "/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=1&resourceVersion={rv}\
         &fieldSelector=metadata.name%3Dsingle"
    );
    let reply = get(&sim, "alice", &path).await;
    assert!(reply.clean_end);
    let events: Vec<Value> = reply
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    let seen: Vec<(String, String, bool, i64)> = events
        .iter()
        .map(|e| {
            let status = &e["object"]["status"]["containerStatuses"][0];
            let state = status["state"]
                .as_object()
                .and_then(|s| s.keys().next().cloned())
                .unwrap_or_default();
            (
                e["type"].as_str().unwrap_or("").to_string(),
                state,
                status["ready"].as_bool().unwrap_or(true),
                status["restartCount"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let want = [
        ("MODIFIED", "terminated", false, 0),
        ("MODIFIED", "waiting", false, 0),
        ("MODIFIED", "running", true, 1),
    ]
    .map(|(t, s, r, n)| (t.to_string(), s.to_string(), r, n));
    assert_eq!(seen, want);
    for event in &events {
        assert_eq!(event["object"]["status"]["phase"], "Running", "{event}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_timeline_restart_may_back_off() {
    let restart = Action::RestartContainer {
        namespace: "shop".into(),
        pod: "single".into(),
        container: "main".into(),
        exit_code: 3,
        reason: "Error".into(),
        backoff_seconds: Some(30.0),
    };
    let sim = plain(shop().at(0.0, restart)).await;
    let mut waiting = Value::Null;
    for _ in 0..500 {
        let (_, status) = single_status(&sim).await;
        waiting = status["state"]["waiting"]["reason"].clone();
        if waiting == "CrashLoopBackOff" {
            assert_eq!(status["lastState"]["terminated"]["exitCode"], 3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(waiting, "CrashLoopBackOff");
    sim.shutdown().await;
}

// --- reviews and RBAC -------------------------------------------------------------------

#[tokio::test]
async fn self_subject_access_reviews_answer_from_the_rules() {
    let sim = plain(shop()).await;
    let token = sim.token("bob").expect("bob");
    for (subresource, want) in [("", true), ("log", false)] {
        let attributes = json!({"namespace": "shop", "verb": "get", "resource": "pods",
            "subresource": subresource});
        let body = json!({"kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "spec": {"resourceAttributes": attributes}});
        let reply = request(
            sim.addr(),
            "POST",
            Some(&token),
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await;
        assert_eq!(reply.status, 201);
        assert_eq!(reply.json()["status"]["allowed"], want, "{subresource}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn token_reviews_check_audiences() {
    let sim = plain(shop()).await;
    let relay = sim
        .token("system:serviceaccount:aether-system:aether-relay")
        .expect("sa");
    let alice = sim.token("alice").expect("alice");
    let review = |token: &str, audiences: Value| {
        json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "spec": {"token": token, "audiences": audiences}})
        .to_string()
        .into_bytes()
    };
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    let reply = request(
        sim.addr(),
        "POST",
        Some(&relay),
        path,
        Some(("application/json", review(&relay, json!(["aether-relay"])))),
    )
    .await;
    let status = &reply.json()["status"];
    assert_eq!(status["authenticated"], true);
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:aether-system:aether-relay"
    );
    assert_eq!(status["audiences"], json!(["aether-relay"]));
    let reply = request(
        sim.addr(),
        "POST",
        Some(&relay),
        path,
        Some(("application/json", review(&alice, json!(["aether-relay"])))),
    )
    .await;
    assert!(reply.json()["status"]["authenticated"].is_null());
    let reply = request(
        sim.addr(),
        "POST",
        Some(&alice),
        path,
        Some(("application/json", review(&alice, json!([])))),
    )
    .await;
    assert_eq!(reply.status, 201, "alice may do everything");
    assert_eq!(reply.json()["status"]["authenticated"], true);
    let bob = sim.token("bob").expect("bob");
    let reply = request(
        sim.addr(),
        "POST",
        Some(&bob),
        path,
        Some(("application/json", review(&alice, json!([])))),
    )
    .await;
    assert_eq!(reply.status, 403);
    sim.shutdown().await;
}

#[tokio::test]
async fn subject_access_reviews_use_the_named_users_rules() {
    let sim = plain(shop()).await;
    let relay = sim
        .token("system:serviceaccount:aether-system:aether-relay")
        .expect("sa");
    let body = json!({"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
        "spec": {"user": "bob", "resourceAttributes": {
            "namespace": "shop", "verb": "list", "resource": "pods"}}});
    let reply = request(
        sim.addr(),
        "POST",
        Some(&relay),
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        Some(("application/json", body.to_string().into_bytes())),
    )
    .await;
    assert_eq!(reply.json()["status"]["allowed"], true);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_bodies_unknown_paths_and_methods_get_status_objects() {
    let sim = plain(shop()).await;
    let token = sim.token("alice").expect("alice");
    let reply = request(
        sim.addr(),
        "POST",
        Some(&token),
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(("application/json", b"{not json".to_vec())),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["kind"], "Status");
    let reply = request(sim.addr(), "GET", Some(&token), "/nothing/here", None).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["reason"], "NotFound");
    let reply = request(
        sim.addr(),
        "DELETE",
        Some(&token),
        "/api/v1/namespaces/shop/pods/web-0/log",
        None,
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.json()["reason"], "MethodNotAllowed");
    let body = b"k8s\0\x0a\x7fshort".to_vec();
    let reply = request(
        sim.addr(),
        "POST",
        Some(&token),
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(("application/vnd.kubernetes.protobuf", body)),
    )
    .await;
    assert_eq!(reply.status, 400);
    sim.shutdown().await;
}

// --- faults, timeline, truth ------------------------------------------------------------

#[tokio::test]
async fn fail_next_answers_429_with_retry_after_then_recovers() {
    let sim = plain(shop()).await;
    sim.handle().fail_next(2, 429, Some(1));
    for _ in 0..2 {
        let reply = get(&sim, "alice", "/api/v1/pods").await;
        assert_eq!(reply.status, 429);
        assert_eq!(
            reply
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert_eq!(reply.json()["reason"], "TooManyRequests");
    }
    assert_eq!(get(&sim, "alice", "/api/v1/pods").await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_timeline_adds_pods_and_the_request_record_shows_parameters() {
    let scenario = shop().at(
        0.1,
        Action::AddPod {
            pod: Box::new(Pod::new("late").container(Container::new("c").line(0.0, "hi"))),
        },
    );
    let sim = plain(scenario).await;
    let mut found = false;
    for _ in 0..50 {
        if get(&sim, "alice", "/api/v1/namespaces/shop/pods/late")
            .await
            .status
            == 200
        {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found, "the timeline added the pod");
    get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods/late/log?&tailLines=5&follow=false",
    )
    .await;
    let record = sim
        .handle()
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/late/log"))
        .expect("recorded");
    assert_eq!(
        record.query,
        vec![
            ("tailLines".to_string(), "5".to_string()),
            ("follow".to_string(), "false".to_string())
        ]
    );
    assert_eq!(record.user.as_deref(), Some("alice"));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_truth_endpoint_serves_ndjson() {
    let sim = plain(shop()).await;
    let reply = request(
        sim.addr(),
        "GET",
        None,
        "/kubesim/truth/shop/web-0/app",
        None,
    )
    .await;
    let texts: Vec<String> = reply
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(texts, ["one", "two", "trois é"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn generators_write_lines_that_truth_and_logs_agree_on() {
    let scenario =
        Scenario::new("shop")
            .user(User::new("alice").rule(Rule::all()))
            .pod(Pod::new("gen").container(
                Container::new("c").generate(kubesim::LogSource::new(200.0).json_every(3)),
            ));
    let sim = plain(scenario).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let truth = sim.handle().truth("shop", "gen", "c");
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/gen/log").await;
    let served: Vec<String> = reply.text().lines().map(str::to_string).collect();
    assert!(!truth.is_empty());
    let truth_texts: Vec<String> = truth.iter().map(|l| l.text.clone()).collect();
    assert_eq!(
        served[..truth_texts.len().min(served.len())],
        truth_texts[..truth_texts.len().min(served.len())]
    );
    assert!(
        served
            .iter()
            .any(|l| serde_json::from_str::<Value>(l).is_ok()),
        "some lines are JSON"
    );
    sim.shutdown().await;
}

// --- service proxy ----------------------------------------------------------------------

async fn backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let Ok(Ok(n)) = timeout(LIMIT, stream.read(&mut buf)).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.to_ascii_lowercase().contains("upgrade: websocket") {
                    let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                                Connection: Upgrade\r\n\r\n";
                    let _ = stream.write_all(head.as_bytes()).await;
                    let Ok(Ok(n)) = timeout(LIMIT, stream.read(&mut buf)).await else {
                        return;
                    };
                    let _ = stream.write_all(&buf[..n]).await;
                    return;
                }
                let body = head.replace("\r\n", "\n");
                let chunk = format!("{:x}\r\n{body}\r\n", body.len());
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(chunk.as_bytes()).await;
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn the_service_proxy_strips_credentials_and_adds_forwarded_headers() {
    let sim = plain(shop()).await;
    let (addr, task) = backend().await;
    sim.handle()
        .set_service_backend("aether-system", "aether-relay", addr);
    for id in ["aether-relay", "aether-relay:http", "http:aether-relay:80"] {
        let reply = get(
            &sim,
            "alice",
            &format!(
                "/api/v1/namespaces/aether-system/services/{id}/proxy/apps/web/logs?follow=true"
            ),
        )
        .await;
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        let seen = reply.text().to_ascii_lowercase();
        assert!(
            seen.starts_with("get /apps/web/logs?follow=true http/1.1"),
            "{seen}"
        );
        assert!(!seen.contains("authorization"), "{seen}");
        assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    }
    task.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn the_service_proxy_passes_websocket_upgrades() {
    let sim = plain(shop()).await;
    let (addr, task) = backend().await;
    sim.handle()
        .set_service_backend("aether-system", "aether-relay", addr);
    let token = sim.token("alice").expect("alice");
    let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
    let head = format!(
        "GET /api/v1/namespaces/aether-system/services/aether-relay/proxy/ws HTTP/1.1\r\n\
         Host: x\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = timeout(LIMIT, stream.read(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    stream.write_all(b"ping").await.expect("write");
    let n = timeout(LIMIT, stream.read(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&buf[..n], b"ping");
    task.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn the_service_proxy_without_backend_is_unavailable_and_rbac_limits_names() {
    let scenario = shop()
        .service(kubesim::Service::new("aether-system", "aether-relay"))
        .user(User::new("carol").rule(Rule::new(&["get"], &["services/proxy"]).names(&["other"])));
    let sim = plain(scenario).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/aether-system/services/aether-relay/proxy/",
    )
    .await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.json()["message"],
        "no endpoints available for service \"aether-relay\""
    );
    let reply = get(
        &sim,
        "carol",
        "/api/v1/namespaces/aether-system/services/http:aether-relay:80/proxy/",
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot get resource \"services/proxy\"")
    );
    sim.shutdown().await;
}

// --- kube-rs over TLS -------------------------------------------------------------------

async fn kube_client(sim: &Sim, user: &str) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&sim.kubeconfig(user)).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn kube_rs_lists_follows_and_watches_over_tls() {
    use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::Pod as KPod;
    use kube::api::{Api, ListParams, LogParams, WatchEvent, WatchParams};

    let sim = Sim::start(shop(), SimOptions::default())
        .await
        .expect("starts");
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let client = kube_client(&sim, "alice").await;
    let pods: Api<KPod> = Api::namespaced(client, "shop");

    let list = timeout(LIMIT, pods.list(&ListParams::default().labels("app=web")))
        .await
        .expect("in time")
        .expect("list");
    assert_eq!(list.items.len(), 1);

    let params = LogParams {
        container: Some("app".into()),
        follow: true,
        ..LogParams::default()
    };
    let mut lines = timeout(LIMIT, pods.log_stream("web-0", &params))
        .await
        .expect("in time")
        .expect("stream")
        .lines();
    assert_eq!(
        timeout(LIMIT, lines.try_next())
            .await
            .expect("in time")
            .expect("line"),
        Some("one".to_string())
    );

    let rv = list.metadata.resource_version.expect("rv");
    let mut events = timeout(LIMIT, pods.watch(&WatchParams::default().timeout(5), &rv))
        .await
        .expect("in time")
        .expect("watch")
        .boxed();
    sim.handle().delete_pod("shop", "single");
    let mut kinds = Vec::new();
    while let Ok(Some(event)) = timeout(LIMIT, events.next()).await {
        match event.expect("event") {
            WatchEvent::Modified(p) => {
                kinds.push(("MODIFIED", p.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Deleted(p) => {
                kinds.push(("DELETED", p.metadata.name.unwrap_or_default()));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        kinds,
        [
            ("MODIFIED", "single".to_string()),
            ("DELETED", "single".to_string())
        ]
    );
    sim.shutdown().await;
}

// --- more faults and lifecycle ------------------------------------------------------------

#[tokio::test]
async fn a_mid_line_cut_sends_half_a_line_then_ends_cleanly() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let follow = tokio::spawn(async move {
        let path = "/api/v1/namespaces/shop/pods/single/log?follow=true&tailLines=0";
        request(addr, "GET", Some(&token), path, None).await
    });
    wait_for_request(&sim, "/api/v1/namespaces/shop/pods/single/log").await;
    let cut = Cut {
        mode: CutMode::MidLine,
        pod: Some("single".into()),
        ..Cut::default()
    };
    handle.cut_log_streams(cut);
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.write_line("shop", "single", "main", "abcdefgh");
    let reply = timeout(LIMIT, follow).await.expect("ends").expect("joins");
    assert!(reply.clean_end);
    assert_eq!(reply.text(), "abcd");
    sim.shutdown().await;
}

#[tokio::test]
async fn cuts_for_other_pods_leave_a_stream_alone() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let follow = tokio::spawn(async move {
        let path = "/api/v1/namespaces/shop/pods/single/log?follow=true";
        request(addr, "GET", Some(&token), path, None).await
    });
    wait_for_request(&sim, "/api/v1/namespaces/shop/pods/single/log").await;
    handle.cut_log_streams(Cut {
        pod: Some("web-0".into()),
        ..Cut::default()
    });
    handle.write_line("shop", "single", "main", "still here");
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.cut_log_streams(Cut {
        pod: Some("single".into()),
        ..Cut::default()
    });
    let reply = timeout(LIMIT, follow).await.expect("ends").expect("joins");
    assert!(reply.clean_end);
    assert_eq!(reply.text(), "hello\nstill here\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_clean_watch_cut_ends_the_stream_with_its_final_chunk() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let watch = tokio::spawn(async move {
        request(addr, "GET", Some(&token), "/api/v1/pods?watch=true", None).await
    });
    wait_for_request(&sim, "/api/v1/pods").await;
    handle.cut_watch_streams(Cut::default());
    let reply = timeout(LIMIT, watch).await.expect("ends").expect("joins");
    assert!(reply.clean_end);
    assert_eq!(
        reply
            .text()
            .lines()
            .filter(|l| l.contains("\"ADDED\""))
            .count(),
        5
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_a_pod_ends_its_follow_and_answers_not_found_after() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let follow = tokio::spawn(async move {
        let path = "/api/v1/namespaces/shop/pods/single/log?follow=true";
        request(addr, "GET", Some(&token), path, None).await
    });
    wait_for_request(&sim, "/api/v1/namespaces/shop/pods/single/log").await;
    handle.delete_pod("shop", "single");
    let reply = timeout(LIMIT, follow).await.expect("ends").expect("joins");
    assert!(reply.clean_end);
    assert_eq!(
        get(&sim, "alice", "/api/v1/namespaces/shop/pods/single")
            .await
            .status,
        404
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_next_500_is_an_internal_error_status() {
    let sim = plain(shop()).await;
    sim.handle().fail_next(1, 500, None);
    let reply = get(&sim, "alice", "/api/v1/pods").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["reason"], "InternalError");
    assert!(reply.headers.get("retry-after").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_delay_still_answers() {
    let sim = plain(shop()).await;
    sim.handle().set_delay(Duration::from_millis(50));
    assert_eq!(get(&sim, "alice", "/api/v1/pods").await.status, 200);
    sim.handle().set_delay(Duration::ZERO);
    sim.shutdown().await;
}

#[tokio::test]
async fn repeated_timeline_actions_keep_restarting() {
    let restart = Action::RestartContainer {
        namespace: "shop".into(),
        pod: "single".into(),
        container: "main".into(),
        exit_code: 2,
        reason: "Error".into(),
        backoff_seconds: None,
    };
    let sim = plain(shop().every(0.05, 0.05, restart)).await;
    let mut restarts = 0;
    for _ in 0..100 {
        let pod = get(&sim, "alice", "/api/v1/namespaces/shop/pods/single")
            .await
            .json();
        restarts = pod["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0);
        if restarts >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(restarts >= 3, "restarted {restarts} times");
    sim.shutdown().await;
}

#[tokio::test]
async fn rules_reviews_list_the_rules_bound_in_the_namespace() {
    let sim = plain(shop()).await;
    let token = sim.token("bob").expect("bob");
    let path = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
    let review = |ns: &str| {
        let body = json!({"kind": "SelfSubjectRulesReview",
            "apiVersion": "authorization.k8s.io/v1", "spec": {"namespace": ns}});
        Some(("application/json", body.to_string().into_bytes()))
    };
    let reply = request(sim.addr(), "POST", Some(&token), path, review("shop")).await;
    assert_eq!(reply.status, 201);
    let rules = reply.json()["status"]["resourceRules"].clone();
    assert!(
        rules
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["resources"] == json!(["pods"]))
    );
    let reply = request(sim.addr(), "POST", Some(&token), path, review("other")).await;
    let rules = reply.json()["status"]["resourceRules"].clone();
    assert!(
        !rules
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["resources"] == json!(["pods"]))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_without_a_token_are_anonymous_and_forbidden() {
    let sim = plain(shop()).await;
    let reply = request(sim.addr(), "GET", None, "/api/v1/pods", None).await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("system:anonymous")
    );
    let reply = request(sim.addr(), "GET", None, "/version", None).await;
    assert_eq!(reply.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_limit_pages_the_list_behind_a_continue_token() {
    let sim = plain(shop()).await;
    let first = get(&sim, "alice", "/api/v1/namespaces/shop/pods?limit=2")
        .await
        .json();
    let names = |list: &Value| -> Vec<String> {
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(&first), ["crashing", "creating"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    let path = format!("/api/v1/namespaces/shop/pods?limit=2&continue={token}");
    let second = get(&sim, "alice", &path).await.json();
    assert_eq!(names(&second), ["pending", "single"]);
    let token = second["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    let path = format!("/api/v1/namespaces/shop/pods?limit=2&continue={token}");
    let third = get(&sim, "alice", &path).await.json();
    assert_eq!(names(&third), ["web-0"]);
    assert!(third["metadata"]["continue"].is_null());
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/pods?continue=garbage",
    )
    .await;
    assert_eq!(reply.status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn since_seconds_skips_older_lines() {
    let sim = plain(shop()).await;
    sim.handle().write_line("shop", "web-0", "app", "fresh");
    let path = "/api/v1/namespaces/shop/pods/web-0/log?container=app&sinceSeconds=2";
    assert_eq!(get(&sim, "alice", path).await.text(), "trois é\nfresh\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_service_proxy_streams_chunks_as_they_come() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = listener.local_addr().expect("addr");
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        let _ = timeout(LIMIT, stream.read(&mut buf)).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
                    Transfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n";
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = timeout(LIMIT, release_rx).await;
        let _ = stream.write_all(b"7\r\nsecond\n\r\n0\r\n\r\n").await;
    });
    let sim = plain(shop()).await;
    sim.handle()
        .set_service_backend("aether-system", "aether-relay", backend);
    let token = sim.token("alice").expect("alice");
    let stream = TcpStream::connect(sim.addr()).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get("/api/v1/namespaces/aether-system/services/aether-relay/proxy/stream")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = timeout(LIMIT, sender.send_request(req))
        .await
        .expect("in time")
        .expect("answer");
    let mut body = resp.into_body();
    let first = timeout(LIMIT, body.frame())
        .await
        .expect("the first chunk before the second");
    let first = first
        .expect("a frame")
        .expect("data")
        .into_data()
        .expect("data");
    assert_eq!(&first[..], b"first\n");
    let _ = release_tx.send(());
    let rest = timeout(LIMIT, body.collect())
        .await
        .expect("in time")
        .expect("rest")
        .to_bytes();
    assert_eq!(&rest[..], b"second\n");
    server.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_backend_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = listener.local_addr().expect("addr");
    drop(listener);
    let sim = plain(shop()).await;
    sim.handle()
        .set_service_backend("aether-system", "aether-relay", closed);
    let path = "/api/v1/namespaces/aether-system/services/aether-relay/proxy/";
    let reply = get(&sim, "alice", path).await;
    assert_eq!(reply.status, 503);
    let message = reply.json()["message"].as_str().unwrap_or("").to_string();
    assert!(
        message.starts_with("error trying to reach service: dial tcp"),
        "{message}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn extreme_numbers_are_served_without_panicking() {
    let sim = plain(shop()).await;
    let max = i64::MAX;
    let path = format!(
        "/api/v1/namespaces/shop/pods/single/log?sinceSeconds={max}&tailLines={max}&limitBytes={max}"
    );
    assert_eq!(get(&sim, "alice", &path).await.text(), "hello\n");
    let handle = sim.handle();
    let addr = sim.addr();
    let token = sim.token("alice").expect("alice");
    let watch = tokio::spawn(async move {
        let path = format!("/api/v1/pods?watch=true&timeoutSeconds={max}&resourceVersion={max}");
        request(addr, "GET", Some(&token), &path, None).await
    });
    wait_for_request(&sim, "/api/v1/pods").await;
    handle.cut_watch_streams(Cut::default());
    let reply = timeout(LIMIT, watch).await.expect("ends").expect("joins");
    assert_eq!(reply.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn scenarios_far_in_time_start() {
    let scenario = shop()
        .pod(
            Pod::new("ancient")
                .created_at(-1e300)
                .container(Container::new("c").line(-1e300, "old")),
        )
        .at(1e300, Action::SetDelay { millis: 1 });
    let sim = plain(scenario).await;
    assert_eq!(
        get(&sim, "alice", "/api/v1/namespaces/shop/pods/ancient")
            .await
            .status,
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_streaming_list_ends_its_initial_events_with_an_annotated_bookmark() {
    let sim = plain(shop()).await;
    let path = "/api/v1/namespaces/shop/pods?watch=true&sendInitialEvents=true\
                &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1\
                &labelSelector=app%3Dapi";
    let reply = get(&sim, "alice", path).await;
    let events: Vec<Value> = reply
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .take(3)
        .collect();
    assert_eq!(kinds, ["ADDED", "ADDED", "BOOKMARK"]);
    let annotations = &events[2]["object"]["metadata"]["annotations"];
    assert_eq!(annotations["k8s.io/initial-events-end"], "true");
    let path = "/api/v1/namespaces/shop/pods?watch=true&sendInitialEvents=true";
    assert_eq!(get(&sim, "alice", path).await.status, 422);
    sim.shutdown().await;
}

#[tokio::test]
async fn responses_carry_an_audit_id() {
    let sim = plain(shop()).await;
    let reply = get(&sim, "alice", "/api/v1/namespaces/shop/pods/x").await;
    assert!(reply.headers.contains_key("audit-id"));
    assert_eq!(
        reply
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-cache, private")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_rs_watchers_see_the_pods_with_lists_and_with_streaming_lists() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod as KPod;
    use kube::api::Api;
    use kube::runtime::{WatchStreamExt, watcher};

    let sim = Sim::start(shop(), SimOptions::default())
        .await
        .expect("starts");
    let client = kube_client(&sim, "alice").await;
    let pods: Api<KPod> = Api::namespaced(client, "shop");
    for config in [
        watcher::Config::default().labels("app=api"),
        watcher::Config::default()
            .labels("app=api")
            .streaming_lists(),
    ] {
        let mut stream = watcher(pods.clone(), config).applied_objects().boxed();
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 2 {
            let next = timeout(LIMIT, stream.next())
                .await
                .expect("an event in time");
            let pod = next.expect("the stream goes on").expect("no error");
            seen.insert(pod.metadata.name.unwrap_or_default());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["pending", "single"]);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_demo_writes_app_and_proxy_lines_with_json_among_them() {
    let sim = plain(Scenario::demo()).await;
    let handle = sim.handle();
    let mut texts = Vec::new();
    for _ in 0..60 {
        texts = ["app", "proxy"]
            .iter()
            .flat_map(|c| handle.truth("demo", "web-7d9c4-2xkqp", c))
            .map(|l| l.text)
            .collect();
        let json = texts
            .iter()
            .filter(|t| serde_json::from_str::<Value>(t).is_ok())
            .count();
        if texts.len() > 12 && json > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        texts.iter().any(|t| t.contains("GET /")),
        "access-log lines: {texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| serde_json::from_str::<Value>(t).is_ok()),
        "{texts:?}"
    );
    let reply = get(
        &sim,
        "admin",
        "/api/v1/namespaces/demo/pods?labelSelector=app%3Dweb",
    )
    .await;
    assert_eq!(reply.json()["items"].as_array().map(Vec::len), Some(3));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_pending_pod_is_scheduled_then_its_container_starts() {
    let sim = plain(shop()).await;
    let handle = sim.handle();
    let log = "/api/v1/namespaces/shop/pods/pending/log";
    assert_eq!(get(&sim, "alice", log).await.status, 204);
    handle.schedule_pod("shop", "pending", "node-2");
    let reply = get(&sim, "alice", log).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["message"],
        "container \"main\" in pod \"pending\" is waiting to start: ContainerCreating"
    );
    handle.start_container("shop", "pending", "main");
    handle.write_line("shop", "pending", "main", "up");
    assert_eq!(get(&sim, "alice", log).await.text(), "up\n");
    let pod = get(&sim, "alice", "/api/v1/namespaces/shop/pods/pending")
        .await
        .json();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["spec"]["nodeName"], "node-2");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn proxy_resource_names_match_the_id_as_written() {
    let rule = Rule::new(&["get"], &["services/proxy"]).names(&["aether-relay"]);
    let scenario = shop()
        .service(kubesim::Service::new("aether-system", "aether-relay"))
        .user(User::new("dave").rule(rule));
    let sim = plain(scenario).await;
    let base = "/api/v1/namespaces/aether-system/services";
    let reply = get(&sim, "dave", &format!("{base}/aether-relay/proxy/")).await;
    assert_eq!(reply.status, 503, "allowed, but there is no backend");
    let reply = get(&sim, "dave", &format!("{base}/http:aether-relay:80/proxy/")).await;
    assert_eq!(reply.status, 403);
    let message = reply.json()["message"].as_str().unwrap_or("").to_string();
    assert!(
        message.starts_with("services \"http:aether-relay:80\" is forbidden"),
        "{message}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn events_are_an_empty_list() {
    let sim = plain(shop()).await;
    let reply = get(
        &sim,
        "alice",
        "/api/v1/namespaces/shop/events?fieldSelector=x%3Dy",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["kind"], "EventList");
    sim.shutdown().await;
}

#[tokio::test]
async fn follow_headers_arrive_before_any_line() {
    let sim = plain(shop()).await;
    let token = sim.token("alice").expect("alice");
    let stream = TcpStream::connect(sim.addr()).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get("/api/v1/namespaces/shop/pods/single/log?follow=true&tailLines=0")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = timeout(LIMIT, sender.send_request(req))
        .await
        .expect("headers without data");
    assert_eq!(resp.expect("answer").status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_rs_retries_through_injected_429s() {
    use k8s_openapi::api::core::v1::Pod as KPod;
    use kube::api::{Api, ListParams};

    let sim = Sim::start(shop(), SimOptions::default())
        .await
        .expect("starts");
    let client = kube_client(&sim, "alice").await;
    let pods: Api<KPod> = Api::namespaced(client, "shop");
    sim.handle().fail_next(2, 429, Some(0));
    let list = timeout(LIMIT, pods.list(&ListParams::default()))
        .await
        .expect("in time");
    assert_eq!(list.expect("retried to success").items.len(), 5);
    let failed = sim
        .handle()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pods"))
        .count();
    assert_eq!(failed, 3, "two refused, one served");
    sim.shutdown().await;
}
