//! The real kubectl against kubesim: what it prints must be what it prints for a real
//! cluster with the same pods. Each test starts kubesim over TLS, writes its kubeconfig and
//! runs kubectl with it.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use aether_tests::Cluster;
use kubesim::{
    Container, ContainerKind, ContainerState, Pod, Rule, Scenario, Service, User, Workload,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest wait for one kubectl run; they finish well before.
const WAIT: Duration = Duration::from_secs(40);

fn scenario() -> Scenario {
    Scenario::new("shop")
        .namespace("other")
        .user(User::new("alice").rule(Rule::all()))
        .user(
            User::new("bob").rule(Rule::new(&["get", "list"], &["pods"]).in_namespaces(&["other"])),
        )
        .user(
            User::new("carol").rule(
                // The apiserver checks the proxy id as written, port and scheme included.
                Rule::new(&["get"], &["services/proxy"])
                    .names(&["aether-relay", "http:aether-relay:80"])
                    .in_namespaces(&["aether-system"]),
            ),
        )
        .workload(
            Workload::new("Deployment", "web")
                .select("app", "web")
                .replicas(2),
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
                        .line(-30.0, "one")
                        .line(-20.0, "two")
                        .line(-10.0, "three")
                        .line(-5.0, "four"),
                )
                .container(Container::new("sidecar").line(-15.0, "side one")),
        )
        .pod(
            Pod::new("web-1")
                .label("app", "web")
                .annotation("kubectl.kubernetes.io/default-container", "sidecar")
                .container(Container::new("app").line(-9.0, "web-1 app"))
                .container(Container::new("sidecar").line(-8.0, "web-1 sidecar")),
        )
        .pod(
            Pod::new("api-0")
                .in_namespace("other")
                .label("app", "api")
                .container(Container::new("main").line(-1.0, "api up")),
        )
        .pod(Pod::new("creating").container(Container::new("main").state(
            ContainerState::Waiting {
                reason: "ContainerCreating".into(),
            },
        )))
        .pod(Pod::new("single").container(Container::new("main").line(-2.0, "hello")))
}

async fn cluster() -> Cluster {
    cluster_with(scenario()).await
}

async fn cluster_with(scenario: Scenario) -> Cluster {
    Cluster::start(scenario, "alice").await
}

async fn kubectl(c: &Cluster, args: &[&str]) -> Output {
    let mut cmd = aether_tests::kubectl(&c.kubeconfig, &c.home);
    cmd.args(args);
    aether_tests::output_within(cmd, WAIT)
        .await
        .expect("kubectl runs and finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Rows of a kubectl table with runs of spaces collapsed, so the comparison does not depend
/// on column widths.
fn rows(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_with_a_selector_prints_the_apiserver_columns() {
    let c = cluster().await;
    let out = kubectl(&c, &["get", "pods", "-l", "app=web"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        rows(&stdout(&out)),
        [
            "NAME READY STATUS RESTARTS AGE",
            "web-0 2/2 Running 0 10m",
            "web-1 2/2 Running 0 10m"
        ]
    );
    // Columns are aligned the way kubectl's printer aligns a real table.
    assert!(
        stdout(&out).starts_with("NAME    READY   STATUS    RESTARTS   AGE\n"),
        "{}",
        stdout(&out)
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_in_all_namespaces_adds_the_namespace_column() {
    let c = cluster().await;
    let out = kubectl(&c, &["get", "pods", "-A"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        rows(&stdout(&out)),
        [
            "NAMESPACE NAME READY STATUS RESTARTS AGE",
            "other api-0 1/1 Running 0 10m",
            "shop creating 0/1 ContainerCreating 0 10m",
            "shop single 1/1 Running 0 10m",
            "shop web-0 2/2 Running 0 10m",
            "shop web-1 2/2 Running 0 10m",
        ]
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_in_chunks_follows_continue_tokens() {
    let c = cluster().await;
    let out = kubectl(&c, &["get", "pods", "--chunk-size=2", "-o", "name"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "pod/creating\npod/single\npod/web-0\npod/web-1\n"
    );
    let limits = c
        .sim
        .handle()
        .requests()
        .iter()
        .filter(|r| r.query.iter().any(|(k, v)| k == "limit" && v == "2"))
        .count();
    assert_eq!(limits, 2);
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_with_timestamps_and_tail_print_the_last_lines() {
    let c = cluster().await;
    let out = kubectl(
        &c,
        &["logs", "web-0", "-c", "app", "--timestamps", "--tail=3"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = c.sim.handle().truth("shop", "web-0", "app");
    let want: String = truth[1..]
        .iter()
        .map(|l| format!("{} {}\n", kubesim::logs::format_time(l.time), l.text))
        .collect();
    assert_eq!(stdout(&out), want);
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_since_time_starts_at_the_whole_second() {
    let c = cluster().await;
    let truth = c.sim.handle().truth("shop", "web-0", "app");
    // A time inside the second of "three": the apiserver truncates it, so "three" is included.
    let inside = truth[2].time + chrono::Duration::milliseconds(1);
    let since = inside.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let out = kubectl(
        &c,
        &[
            "logs",
            "web-0",
            "-c",
            "app",
            &format!("--since-time={since}"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let same_second = truth[2].time.timestamp() == inside.timestamp();
    let want = if same_second {
        "three\nfour\n"
    } else {
        "four\n"
    };
    assert_eq!(stdout(&out), want);
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_two_container_pod_default_to_the_first_container() {
    let c = cluster().await;
    let out = kubectl(&c, &["logs", "web-0"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "one\ntwo\nthree\nfour\n");
    assert!(
        stderr(&out).contains("Defaulted container \"app\" out of: app, sidecar, init (init)"),
        "{}",
        stderr(&out)
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_honour_the_default_container_annotation() {
    let c = cluster().await;
    let out = kubectl(&c, &["logs", "web-1"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web-1 sidecar\n");
    assert!(
        !stderr(&out).contains("Defaulted container"),
        "{}",
        stderr(&out)
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_by_selector_with_prefix_cover_every_container() {
    let c = cluster().await;
    let out = kubectl(
        &c,
        &["logs", "-l", "app=web", "--prefix", "--all-containers"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    got.sort();
    let mut want = vec![
        "[pod/web-0/app] one",
        "[pod/web-0/app] two",
        "[pod/web-0/app] three",
        "[pod/web-0/app] four",
        "[pod/web-0/sidecar] side one",
        "[pod/web-1/app] web-1 app",
        "[pod/web-1/sidecar] web-1 sidecar",
    ];
    want.sort();
    assert_eq!(got, want);
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_deployment_use_its_selector() {
    let c = cluster().await;
    let out = kubectl(&c, &["logs", "deploy/web", "-c", "app"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out) == "one\ntwo\nthree\nfour\n" || stdout(&out) == "web-1 app\n",
        "{}",
        stdout(&out)
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_ends_when_the_container_terminates() {
    let c = cluster().await;
    let mut cmd = aether_tests::kubectl(&c.kubeconfig, &c.home);
    cmd.args(["logs", "-f", "single"]);
    let follow = tokio::spawn(aether_tests::output_within(cmd, WAIT));
    let handle = c.sim.handle();
    // Wait until kubectl's follow request has reached the server.
    for _ in 0..200 {
        if handle
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/single/log"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.write_line("shop", "single", "main", "last words");
    handle.terminate_container("shop", "single", "main", 0, "Completed");
    let out = follow
        .await
        .expect("joins")
        .expect("kubectl finishes by itself");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\nlast words\n");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_previous_after_a_restart_prints_the_old_run() {
    let c = cluster().await;
    let handle = c.sim.handle();
    handle.restart_container("shop", "single", "main", 1, "Error");
    handle.write_line("shop", "single", "main", "second run");
    let out = kubectl(&c, &["logs", "single", "--previous"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    let out = kubectl(&c, &["logs", "single"]).await;
    assert_eq!(stdout(&out), "second run\n");
    let out = kubectl(&c, &["get", "pod", "single"]).await;
    let table = rows(&stdout(&out));
    assert!(table[1].starts_with("single 1/1 Running 1 ("), "{table:?}");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_can_i_answers_per_user() {
    let c = cluster().await;
    let out = kubectl(&c, &["auth", "can-i", "get", "pods", "--subresource=log"]).await;
    assert_eq!(stdout(&out), "yes\n");
    assert!(out.status.success());
    let out = kubectl(
        &c,
        &[
            "--context",
            "bob",
            "auth",
            "can-i",
            "get",
            "pods",
            "--subresource=log",
        ],
    )
    .await;
    assert_eq!(stdout(&out), "no\n");
    assert_eq!(out.status.code(), Some(1));
    let out = kubectl(
        &c,
        &[
            "--context",
            "bob",
            "auth",
            "can-i",
            "list",
            "pods",
            "-n",
            "other",
        ],
    )
    .await;
    assert_eq!(stdout(&out), "yes\n");
    let served_protobuf = c
        .sim
        .handle()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/selfsubjectaccessreviews"))
        .count();
    assert_eq!(served_protobuf, 3);
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_and_forbidden_print_the_apiserver_error_lines() {
    let c = cluster().await;
    let out = kubectl(&c, &["get", "pod", "x"]).await;
    assert_eq!(
        stderr(&out).trim_end(),
        "Error from server (NotFound): pods \"x\" not found"
    );
    assert!(!out.status.success());
    let out = kubectl(&c, &["--context", "bob", "get", "pod", "x"]).await;
    assert_eq!(
        stderr(&out).trim_end(),
        "Error from server (Forbidden): pods \"x\" is forbidden: User \"bob\" cannot get \
         resource \"pods\" in API group \"\" in the namespace \"shop\""
    );
    let out = kubectl(&c, &["logs", "creating"]).await;
    assert_eq!(
        stderr(&out).trim_end(),
        "Error from server (BadRequest): container \"main\" in pod \"creating\" is waiting to \
         start: ContainerCreating"
    );
    c.sim.shutdown().await;
}

async fn echo_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let Ok(Ok(n)) = tokio::time::timeout(WAIT, stream.read(&mut buf)).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            let line = head.lines().next().unwrap_or("").to_string();
            let leaked = head.contains("authorization:");
            let body = format!("backend saw {line} (credentials leaked: {leaked})\n");
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_raw_through_the_service_proxy_reaches_the_backend() {
    let c = cluster().await;
    let (addr, task) = echo_backend().await;
    c.sim
        .handle()
        .set_service_backend("aether-system", "aether-relay", addr);
    let path = "/api/v1/namespaces/aether-system/services/http:aether-relay:80/proxy/apps/web/logs";
    let out = kubectl(&c, &["--context", "carol", "get", "--raw", path]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "backend saw get /apps/web/logs?timeout=20s http/1.1 (credentials leaked: false)\n"
    );
    let out = kubectl(&c, &["--context", "bob", "get", "--raw", path]).await;
    assert!(
        stderr(&out).contains("Error from server (Forbidden)"),
        "{}",
        stderr(&out)
    );
    task.abort();
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_raw_without_a_backend_reports_no_endpoints() {
    let c = cluster_with(scenario().service(Service::new("aether-system", "idle"))).await;
    let out = kubectl(
        &c,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/aether-system/services/idle/proxy/",
        ],
    )
    .await;
    assert_eq!(
        stderr(&out).trim_end(),
        "Error from server (ServiceUnavailable): no endpoints available for service \"idle\""
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_watch_prints_a_row_per_change() {
    let c = cluster().await;
    let mut cmd = aether_tests::kubectl(&c.kubeconfig, &c.home);
    cmd.args(["get", "pods", "-l", "app=web", "-w"]);
    let watch = tokio::spawn(aether_tests::output_within(cmd, WAIT));
    let handle = c.sim.handle();
    for _ in 0..200 {
        let watching = handle
            .requests()
            .iter()
            .any(|r| r.query.iter().any(|(k, v)| k == "watch" && v == "true"));
        if watching {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.restart_container("shop", "web-0", "app", 137, "OOMKilled");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Cut until kubectl has gone: a cut only ends watches open at that moment.
    for _ in 0..100 {
        handle.cut_watch_streams(kubesim::Cut::default());
        if watch.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = watch
        .await
        .expect("joins")
        .expect("kubectl ends with the watch");
    let table = rows(&stdout(&out));
    assert_eq!(
        table[0],
        "NAME READY STATUS RESTARTS AGE",
        "{}",
        stderr(&out)
    );
    assert_eq!(table[1], "web-0 2/2 Running 0 10m");
    assert_eq!(table[2], "web-1 2/2 Running 0 10m");
    assert!(table[3].starts_with("web-0 2/2 Running 1 ("), "{table:?}");
    assert_eq!(table.len(), 4, "{table:?}");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_whoami_and_can_i_list_describe_the_user() {
    let c = cluster().await;
    let out = kubectl(&c, &["--context", "bob", "auth", "whoami"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = rows(&stdout(&out));
    assert_eq!(table[1], "Username bob");
    let out = kubectl(
        &c,
        &["--context", "bob", "auth", "can-i", "--list", "-n", "other"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        rows(&stdout(&out))
            .iter()
            .any(|r| r == "pods [] [] [get list]"),
        "{}",
        stdout(&out)
    );
    c.sim.shutdown().await;
}
