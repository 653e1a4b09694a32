//! `kubectl aether logs` on the direct path, end to end: the built binary (and the real
//! kubectl launching it as a plugin) against kubesim over TLS.

use std::process::{Output, Stdio};
use std::time::Duration;

use aether_tests::Cluster;
use chrono::{DateTime, SecondsFormat, Utc};
use kubesim::{
    Container, ContainerKind, ContainerState, Cut, CutMode, LogSource, Pod, Rule, Scenario, Sim,
    SimOptions, User,
};
use podlogs::{EventKind, LogEvent};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// Longest wait for anything in these tests; they stop by themselves well before.
const WAIT: Duration = Duration::from_secs(40);

fn admin(scenario: Scenario) -> Scenario {
    scenario.user(User::new("admin").rule(Rule::all()))
}

async fn cluster(scenario: Scenario) -> Cluster {
    Cluster::start(scenario, "admin").await
}

fn aether(c: &Cluster, args: &[&str]) -> Command {
    aether_tests::aether_logs(&c.kubeconfig, &c.home, args)
}

async fn run(c: &Cluster, args: &[&str]) -> Output {
    tokio::time::timeout(WAIT, aether(c, args).output())
        .await
        .expect("the command finishes in time")
        .expect("the command runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn web_pod(name: &str, lines: &[(f64, &str)]) -> Pod {
    let mut app = Container::new("app");
    for (at, text) in lines {
        app = app.line(*at, text);
    }
    Pod::new(name).label("app", "web").container(app)
}

fn log_events(text: &str) -> Vec<LogEvent> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is no event: {e}")))
        .collect()
}

/// A following command whose stdout and stderr are read line by line.
struct Follow {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
    err: Lines<BufReader<ChildStderr>>,
    seen_out: Vec<String>,
    seen_err: Vec<String>,
}

impl Follow {
    fn start(mut cmd: Command) -> Follow {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let out = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let err = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
        Follow {
            child,
            out,
            err,
            seen_out: Vec::new(),
            seen_err: Vec::new(),
        }
    }

    /// Reads stdout until a line satisfies `pred`; panics with what was seen on timeout.
    async fn stdout_until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.out.next_line()).await;
            match next {
                Ok(Ok(Some(line))) => {
                    self.seen_out.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                other => panic!(
                    "stdout ended or timed out ({other:?}); seen:\n{}\nstderr:\n{}",
                    self.seen_out.join("\n"),
                    self.seen_err.join("\n")
                ),
            }
        }
    }

    /// Reads stderr until a line satisfies `pred`.
    async fn stderr_until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.err.next_line()).await;
            match next {
                Ok(Ok(Some(line))) => {
                    self.seen_err.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                other => panic!(
                    "stderr ended or timed out ({other:?}); seen:\n{}",
                    self.seen_err.join("\n")
                ),
            }
        }
    }

    /// Reads stdout until `count` JSON log lines have been seen.
    async fn until_log_lines(&mut self, count: usize) {
        while count_log_lines(&self.seen_out) < count {
            self.stdout_until(|_| true).await;
        }
    }

    /// Ends the command and hands back the stdout lines seen.
    async fn stop(mut self) -> Vec<String> {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
        self.seen_out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_are_merged_and_tagged() {
    let scenario = admin(Scenario::new("shop"))
        .pod(web_pod("web-a", &[(-20.0, "a1"), (-10.0, "a2")]))
        .pod(web_pod("web-b", &[(-15.0, "b1"), (-5.0, "b2")]))
        .pod(
            Pod::new("db-0")
                .label("app", "db")
                .container(Container::new("db").line(-12.0, "x")),
        );
    let c = cluster(scenario).await;

    let out = run(&c, &["web"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "web-a app a1\nweb-b app b1\nweb-a app a2\nweb-b app b2\n"
    );
    let err = stderr(&out);
    assert!(
        err.contains("+ web-a › app\n") && err.contains("+ web-b › app\n"),
        "{err}"
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_comes_out_in_time_order_across_pods() {
    let mut scenario = admin(Scenario::new("shop"));
    for pod in 0..3 {
        let lines: Vec<(f64, String)> = (0..40)
            .map(|i| {
                (
                    -100.0 + f64::from(i) * 2.0 + f64::from(pod) * 0.7,
                    format!("p{pod} l{i}"),
                )
            })
            .collect();
        let refs: Vec<(f64, &str)> = lines.iter().map(|(t, s)| (*t, s.as_str())).collect();
        scenario = scenario.pod(web_pod(&format!("web-{pod}"), &refs));
    }
    let c = cluster(scenario).await;

    let out = run(&c, &["web", "-o", "json"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    let times: Vec<DateTime<Utc>> = log_events(&stdout(&out))
        .into_iter()
        .filter_map(|e| match e {
            LogEvent::Log(l) => Some(l.time),
            _ => None,
        })
        .collect();
    assert_eq!(times.len(), 120);
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_container_pod_tags_each_container() {
    let pod = Pod::new("web-0")
        .label("app", "web")
        .container(Container::new("app").line(-10.0, "from app"))
        .container(Container::new("sidecar").line(-5.0, "from sidecar"));
    let c = cluster(admin(Scenario::new("shop")).pod(pod)).await;

    let out = run(&c, &["web"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "web-0 app from app\nweb-0 sidecar from sidecar\n"
    );
    c.sim.shutdown().await;
}

fn three_container_pod() -> Pod {
    Pod::new("web-0")
        .label("app", "web")
        .container(
            Container::new("migrate")
                .kind(ContainerKind::Init)
                .state(ContainerState::Terminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                })
                .line(-30.0, "migrated"),
        )
        .container(Container::new("app").line(-10.0, "from app"))
        .container(Container::new("sidecar").line(-5.0, "from sidecar"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_filters_apply_end_to_end() {
    let c = cluster(admin(Scenario::new("shop")).pod(three_container_pod())).await;

    let only_app = run(&c, &["web", "-c", "^app$"]).await;
    assert_eq!(
        stdout(&only_app),
        "web-0 app from app\n",
        "{}",
        stderr(&only_app)
    );

    let no_sidecar = run(&c, &["web", "-E", "side"]).await;
    assert_eq!(stdout(&no_sidecar), "web-0 app from app\n");

    let with_init = run(&c, &["web", "--init-containers"]).await;
    assert_eq!(
        stdout(&with_init),
        "web-0 migrate migrated\nweb-0 app from app\nweb-0 sidecar from sidecar\n"
    );
    c.sim.shutdown().await;
}

fn log_queries(c: &Cluster) -> Vec<Vec<(String, String)>> {
    c.sim
        .handle()
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/log"))
        .map(|r| r.query)
        .collect()
}

/// Waits until `n` log requests with follow have reached the API.
async fn wait_for_follow_requests(c: &Cluster, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let follows = log_queries(c)
            .iter()
            .filter(|q| param(q, "follow") == Some("true"))
            .count();
        if follows >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{follows} follow requests, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_reaches_the_api_as_since_seconds() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-20.0, "a1")]))).await;

    let out = run(&c, &["web", "--since", "1h30m"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    let queries = log_queries(&c);
    assert!(!queries.is_empty());
    for query in &queries {
        assert_eq!(param(query, "sinceSeconds"), Some("5400"), "{query:?}");
        assert_eq!(param(query, "sinceTime"), None, "{query:?}");
        assert_eq!(param(query, "timestamps"), Some("true"), "{query:?}");
    }
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_time_reaches_the_api_in_whole_seconds_and_is_exact_in_output() {
    let lines = [
        (-20.0, "old"),
        (-12.4, "same second, before"),
        (-11.9, "after"),
        (-5.0, "new"),
    ];
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &lines))).await;
    let since = c.sim.handle().start_time() - chrono::Duration::milliseconds(12_200);

    let since_text = since.to_rfc3339_opts(SecondsFormat::Millis, true);
    let out = run(&c, &["web", "--since-time", &since_text]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web-a app after\nweb-a app new\n");
    let whole = DateTime::from_timestamp(since.timestamp(), 0).expect("valid time");
    let expected = whole.to_rfc3339_opts(SecondsFormat::Secs, true);
    for query in log_queries(&c) {
        assert_eq!(
            param(&query, "sinceTime"),
            Some(expected.as_str()),
            "{query:?}"
        );
    }
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_limits_lines_per_container() {
    let scenario = admin(Scenario::new("shop"))
        .pod(web_pod(
            "web-a",
            &[(-20.0, "a1"), (-10.0, "a2"), (-8.0, "a3")],
        ))
        .pod(web_pod("web-b", &[(-15.0, "b1"), (-5.0, "b2")]));
    let c = cluster(scenario).await;

    let out = run(&c, &["web", "--tail", "1"]).await;

    assert_eq!(
        stdout(&out),
        "web-a app a3\nweb-b app b2\n",
        "{}",
        stderr(&out)
    );
    for query in log_queries(&c) {
        assert_eq!(param(&query, "tailLines"), Some("1"), "{query:?}");
    }
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_picks_up_a_new_pod() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-20.0, "a1")]))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f"]));
    follow.stdout_until(|l| l == "web-a app a1").await;

    c.sim
        .handle()
        .add_pod(web_pod("web-new", &[(0.0, "hello from the new pod")]));
    follow
        .stdout_until(|l| l == "web-new app hello from the new pod")
        .await;
    c.sim
        .handle()
        .write_line("shop", "web-new", "app", "live line");
    follow.stdout_until(|l| l == "web-new app live line").await;

    follow.stop().await;
    c.sim.shutdown().await;
}

fn namespaced_pods() -> Scenario {
    admin(Scenario::new("shop"))
        .pod(web_pod("web-shop", &[(-20.0, "in shop")]))
        .pod(web_pod("web-staging", &[(-15.0, "in staging")]).in_namespace("staging"))
        .pod(web_pod("web-other", &[(-10.0, "in other")]).in_namespace("other"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_namespaces_are_read_together() {
    let c = cluster(namespaced_pods()).await;

    let out = run(&c, &["web", "-n", "shop,staging"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "web-shop app in shop\nweb-staging app in staging\n"
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_namespaces_reads_every_namespace() {
    let c = cluster(namespaced_pods()).await;

    let out = run(&c, &["web", "-A", "-o", "json"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen: Vec<(String, String)> = log_events(&stdout(&out))
        .into_iter()
        .filter_map(|e| match e {
            LogEvent::Log(l) => Some((l.namespace, l.line)),
            _ => None,
        })
        .collect();
    seen.sort();
    let expected = [
        ("other", "in other"),
        ("shop", "in shop"),
        ("staging", "in staging"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(seen, expected);
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_line_is_cut_and_marked() {
    let huge = "x".repeat(3 * 1024 * 1024);
    let scenario = admin(Scenario::new("shop"))
        .log_max_bytes(64 * 1024 * 1024)
        .pod(web_pod(
            "web-a",
            &[(-20.0, &huge), (-10.0, "after the huge line")],
        ));
    let c = cluster(scenario).await;

    let out = run(&c, &["web", "-o", "raw", "--max-line-bytes", "64Ki"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], format!("{} [truncated]", "x".repeat(64 * 1024)));
    assert_eq!(lines[1], "after the huge line");

    let json = run(&c, &["web", "-o", "json"]).await;
    let events = log_events(&stdout(&json));
    let first = events.iter().find_map(|e| match e {
        LogEvent::Log(l) => Some(l),
        _ => None,
    });
    let first = first.expect("a log line");
    assert!(first.truncated);
    assert_eq!(first.line.len(), 1024 * 1024);
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_pass_through_to_a_pipe_unchanged() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-5.0, "\u{1b}[31mred")])))
        .await;

    let out = run(&c, &["web", "-o", "raw"]).await;

    // Not a terminal: the bytes are the pod's own (escaping is for terminals only).
    assert_eq!(stdout(&out), "\u{1b}[31mred\n");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_replaced_not_dropped() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-5.0, "before")]))).await;
    let handle = c.sim.handle();
    // A lead byte without its continuation, two bytes never found in UTF-8, and a
    // three-byte character cut short: each invalid sequence becomes one U+FFFD.
    handle.write_bytes("shop", "web-a", "app", b"caf\xc3 \xff\xfe mid \xe2\x82 end");
    handle.write_line("shop", "web-a", "app", "next line é");
    let replaced = "caf\u{fffd} \u{fffd}\u{fffd} mid \u{fffd} end";

    let text = run(&c, &["web"]).await;
    assert!(text.status.success(), "{}", stderr(&text));
    let printed = String::from_utf8(text.stdout).expect("the plugin prints UTF-8");
    assert_eq!(
        printed,
        format!("web-a app before\nweb-a app {replaced}\nweb-a app next line é\n")
    );

    let json = run(&c, &["web", "-o", "json"]).await;
    assert!(json.status.success(), "{}", stderr(&json));
    let printed = String::from_utf8(json.stdout).expect("the plugin prints UTF-8");
    let lines: Vec<String> = log_events(&printed)
        .into_iter()
        .filter_map(|e| match e {
            LogEvent::Log(l) => Some(l.line),
            _ => None,
        })
        .collect();
    assert_eq!(lines, ["before", replaced, "next line é"]);
    c.sim.shutdown().await;
}

fn with_limited_users(scenario: Scenario) -> Scenario {
    scenario.user(User::new("nobody")).user(
        User::new("lister")
            .rule(Rule::new(&["get", "list", "watch"], &["pods"]).in_namespaces(&["shop"])),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_listing_names_the_missing_permission() {
    let scenario =
        with_limited_users(admin(Scenario::new("shop"))).pod(web_pod("web-a", &[(-5.0, "a1")]));
    let c = cluster(scenario).await;

    let out = run(&c, &["web", "--context", "nobody", "--via", "direct"]).await;

    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.starts_with("error: not allowed to list pods in namespace shop"),
        "{err}"
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_log_reading_is_an_error_per_container() {
    let scenario =
        with_limited_users(admin(Scenario::new("shop"))).pod(web_pod("web-a", &[(-5.0, "a1")]));
    let c = cluster(scenario).await;

    let out = run(&c, &["web", "--context", "lister", "--via", "direct"]).await;

    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("! web-a › app error: pods \"web-a\" is forbidden"),
        "{err}"
    );
    assert!(err.contains("pods/log"), "{err}");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pods_is_an_error_that_names_selector_and_namespace() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-5.0, "a1")]))).await;

    let out = run(&c, &["nothing"]).await;

    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: no pods match app=nothing in namespace shop"),
        "{err}"
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pods_with_follow_waits_for_them() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-5.0, "a1")]))).await;
    let mut follow = Follow::start(aether(&c, &["late", "-f"]));

    let waiting = follow.stderr_until(|l| l.starts_with("* waiting")).await;
    assert!(
        waiting.contains("no pods match app=late in namespace shop"),
        "{waiting}"
    );
    let pod = Pod::new("late-0")
        .label("app", "late")
        .container(Container::new("app").line(0.0, "here"));
    c.sim.handle().add_pod(pod);
    follow.stdout_until(|l| l == "late-0 app here").await;

    follow.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_parses_back_into_events() {
    let c = cluster(admin(Scenario::new("shop")).pod(three_container_pod())).await;

    let out = run(&c, &["web", "-o", "json"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let events = log_events(&stdout(&out));
    let started = events
        .iter()
        .filter(|e| matches!(e, LogEvent::Event(s) if s.event == EventKind::Started))
        .count();
    assert_eq!(started, 2);
    let lines: Vec<(String, String, String)> = events
        .into_iter()
        .filter_map(|e| match e {
            LogEvent::Log(l) => Some((l.pod, l.container, l.line)),
            _ => None,
        })
        .collect();
    let expected = [
        ("web-0", "app", "from app"),
        ("web-0", "sidecar", "from sidecar"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(lines, expected);
    c.sim.shutdown().await;
}

fn generating_pod(rate: f64) -> Pod {
    Pod::new("web-0")
        .label("app", "web")
        .container(Container::new("app").generate(LogSource::new(rate).style("plain")))
}

/// The log lines of one container in a JSON output, in order.
fn json_lines(lines: &[String]) -> Vec<(DateTime<Utc>, String)> {
    lines
        .iter()
        .filter_map(|l| match serde_json::from_str::<LogEvent>(l) {
            Ok(LogEvent::Log(l)) => Some((l.time, l.line)),
            _ => None,
        })
        .collect()
}

fn count_log_lines(lines: &[String]) -> usize {
    json_lines(lines).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_cut_streams_without_loss_or_duplicates() {
    let c = cluster(admin(Scenario::new("shop")).pod(generating_pod(40.0))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f", "--tail", "-1", "-o", "json"]));

    let modes = [
        CutMode::Clean,
        CutMode::Reset,
        CutMode::MidLine,
        CutMode::Clean,
    ];
    for (cuts, mode) in modes.into_iter().enumerate() {
        wait_for_follow_requests(&c, cuts + 1).await;
        follow
            .until_log_lines(count_log_lines(&follow.seen_out) + 20)
            .await;
        c.sim.handle().cut_log_streams(Cut {
            mode,
            ..Cut::default()
        });
    }
    follow
        .until_log_lines(count_log_lines(&follow.seen_out) + 40)
        .await;
    let seen = follow.stop().await;

    let got = json_lines(&seen);
    let truth: Vec<(DateTime<Utc>, String)> = c
        .sim
        .handle()
        .truth("shop", "web-0", "app")
        .into_iter()
        .map(|t| (t.time, t.text))
        .collect();
    assert!(truth.len() >= got.len(), "more lines than were written");
    assert_eq!(got, truth[..got.len()].to_vec());
    let reconnects = seen
        .iter()
        .filter(|l| l.contains("\"event\":\"reconnected\""))
        .count();
    assert_eq!(reconnects, 4);
    assert!(!seen.iter().any(|l| l.contains("\"event\":\"gap\"")));
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_follow_reads_the_new_instance_from_its_beginning() {
    let c = cluster(admin(Scenario::new("shop")).pod(generating_pod(20.0))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f", "--tail", "-1", "-o", "json"]));
    follow.until_log_lines(10).await;
    let old_id = c.sim.handle().container_id("shop", "web-0", "app");

    c.sim
        .handle()
        .restart_container("shop", "web-0", "app", 137, "OOMKilled");
    let restarted = follow
        .stdout_until(|l| l.contains("\"event\":\"restarted\""))
        .await;
    assert!(
        restarted.contains("exit code 137 (OOMKilled)"),
        "{restarted}"
    );
    follow
        .until_log_lines(count_log_lines(&follow.seen_out) + 20)
        .await;
    let seen = follow.stop().await;

    let new_id = c.sim.handle().container_id("shop", "web-0", "app");
    assert_ne!(old_id, new_id);
    let truth = c.sim.handle().truth("shop", "web-0", "app");
    assert!(
        truth
            .iter()
            .any(|t| Some(&t.container_id) == new_id.as_ref())
    );
    let truth: Vec<(DateTime<Utc>, String)> = truth.into_iter().map(|t| (t.time, t.text)).collect();
    let got = json_lines(&seen);
    assert_eq!(got, truth[..got.len()].to_vec());
    c.sim.shutdown().await;
}

/// The real kubectl, finding only this build's `kubectl-aether` as a plugin.
///
/// A directory of its own holds a link to the binary: the build directory also holds
/// `kubectl-aether.d` (cargo's dependency file), which kubectl would list as a broken plugin.
/// Flags go after the plugin name: kubectl refuses its own flags before a plugin.
fn kubectl(c: &Cluster) -> Command {
    let plugins = c.home.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    let link = plugins.join("kubectl-aether");
    if !link.exists() {
        std::os::unix::fs::symlink(aether_tests::bin("kubectl-aether"), &link).expect("link");
    }
    let mut paths = vec![plugins];
    if let Some(old) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    let mut cmd = Command::new(aether_tests::kubectl_path());
    cmd.env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", &c.home)
        .env("KUBECACHEDIR", c.home.join("kube-cache"))
        .env("PATH", std::env::join_paths(paths).expect("PATH entries"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("AETHER_LOGS_FORMAT")
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_the_plugin() {
    let scenario = admin(Scenario::new("shop"))
        .pod(web_pod("web-a", &[(-20.0, "a1"), (-10.0, "a2")]))
        .pod(web_pod("web-b", &[(-15.0, "b1")]));
    let c = cluster(scenario).await;

    let mut kubectl = kubectl(&c);
    kubectl.args(["aether", "logs", "web", "--request-timeout", "20s"]);
    let out = tokio::time::timeout(WAIT, kubectl.output())
        .await
        .expect("in time")
        .expect("runs");

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web-a app a1\nweb-b app b1\nweb-a app a2\n");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_the_plugin_without_warnings() {
    let c = cluster(admin(Scenario::new("shop"))).await;

    let mut kubectl = kubectl(&c);
    kubectl.args(["plugin", "list"]);
    let out = tokio::time::timeout(WAIT, kubectl.output())
        .await
        .expect("in time")
        .expect("runs");

    let listed = stdout(&out);
    let err = stderr(&out);
    assert!(
        listed.contains("/plugins/kubectl-aether"),
        "{listed}\n{err}"
    );
    let aether_warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("kubectl-aether") && l.contains("warning"))
        .collect();
    assert!(aether_warnings.is_empty(), "{err}");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_are_printed_when_asked() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-5.0, "a1")]))).await;
    let at = c.sim.handle().start_time() - chrono::Duration::seconds(5);

    let out = run(&c, &["web", "--timestamps"]).await;

    let stamp = at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    assert_eq!(
        stdout(&out),
        format!("web-a app {stamp} a1\n"),
        "{}",
        stderr(&out)
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_is_reported() {
    let scenario = admin(Scenario::new("shop"))
        .pod(web_pod("web-a", &[(-5.0, "a1")]))
        .pod(web_pod("web-b", &[(-4.0, "b1")]));
    let c = cluster(scenario).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f"]));
    follow.stdout_until(|l| l == "web-b app b1").await;

    c.sim.handle().delete_pod("shop", "web-a");
    follow.stderr_until(|l| l == "- web-a pod_deleted").await;
    c.sim
        .handle()
        .write_line("shop", "web-b", "app", "still here");
    follow.stdout_until(|l| l == "web-b app still here").await;

    follow.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_container_ends_its_stream_with_the_exit_code() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-5.0, "a1")]))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f"]));
    follow.stdout_until(|l| l == "web-a app a1").await;

    c.sim
        .handle()
        .write_line("shop", "web-a", "app", "last words");
    c.sim
        .handle()
        .terminate_container("shop", "web-a", "app", 3, "Error");
    follow.stdout_until(|l| l == "web-a app last words").await;
    follow
        .stderr_until(|l| l == "- web-a › app ended: exit code 3 (Error)")
        .await;

    follow.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_reads_the_instance_before_the_restart() {
    let pod = Pod::new("web-0").label("app", "web").container(
        Container::new("app")
            .previous(137, "OOMKilled", &[(-60.0, "before the crash")])
            .line(-5.0, "after the restart"),
    );
    let c = cluster(admin(Scenario::new("shop")).pod(pod)).await;

    let out = run(&c, &["web", "--previous"]).await;

    assert_eq!(
        stdout(&out),
        "web-0 app before the crash\n",
        "{}",
        stderr(&out)
    );
    for query in log_queries(&c) {
        assert_eq!(param(&query, "previous"), Some("true"), "{query:?}");
    }
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_streams_is_refused_with_the_limit() {
    let c = cluster(admin(Scenario::new("shop")).pod(three_container_pod())).await;

    let out = run(&c, &["web", "--max-log-requests", "1"]).await;

    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("2 containers match, more than the 1 log streams"),
        "{err}"
    );
    assert!(err.contains("--max-log-requests"), "{err}");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_server_errors_are_retried() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-5.0, "a1")]))).await;
    c.sim.handle().fail_next(2, 503, Some(1));

    let out = run(&c, &["web"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web-a app a1\n");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_says_where_it_looked() {
    let sim = Sim::start(admin(Scenario::new("shop")), SimOptions::default())
        .await
        .expect("starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "admin")
        .expect("kubeconfig written");
    let url = sim.url();
    // Once shut down, the address in the kubeconfig refuses connections.
    sim.shutdown().await;

    let mut cmd = Command::new(aether_tests::bin("kubectl-aether"));
    cmd.args(["logs", "web", "--kubeconfig"])
        .arg(&kubeconfig)
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("in time")
        .expect("runs");

    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: cannot reach the cluster at {url}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly() {
    let c = cluster(admin(Scenario::new("shop")).pod(generating_pod(200.0))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f"]));
    follow.stdout_until(|_| true).await;

    let Follow {
        mut child,
        out,
        err,
        ..
    } = follow;
    drop(out);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits")
        .expect("status");

    assert_eq!(status.code(), Some(0));
    let mut err = err;
    let mut rest = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(WAIT, err.next_line()).await {
        rest.push(line);
    }
    assert!(!rest.iter().any(|l| l.starts_with("error")), "{rest:?}");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_exits_with_130() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-5.0, "a1")]))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f"]));
    follow.stdout_until(|l| l == "web-a app a1").await;

    let pid = follow.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, follow.child.wait())
        .await
        .expect("exits")
        .expect("status");

    assert_eq!(status.code(), Some(130));
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_survives_a_cut_watch() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-20.0, "a1")]))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f"]));
    follow.stdout_until(|l| l == "web-a app a1").await;

    c.sim.handle().cut_watch_streams(Cut::default());
    c.sim
        .handle()
        .add_pod(web_pod("web-b", &[(0.0, "after the cut")]));
    follow
        .stdout_until(|l| l == "web-b app after the cut")
        .await;

    follow.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_follows_the_sample_app_until_ctrl_c() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(aether_tests::bin("kubectl-aether"));
    cmd.args(["demo", "-o", "json"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("AETHER_LOGS_FORMAT")
        .kill_on_drop(true);
    let mut follow = Follow::start(cmd);

    let line = follow
        .stdout_until(|l| l.contains("\"type\":\"log\""))
        .await;
    let event: LogEvent = serde_json::from_str(&line).expect("an event");
    let LogEvent::Log(log) = event else {
        panic!("not a log line: {line}")
    };
    assert!(log.pod.starts_with("web-"), "{line}");
    assert_eq!(log.namespace, "demo");

    let pid = follow.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, follow.child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_cannot_find_its_last_line_reports_a_possible_gap() {
    let c = cluster(admin(Scenario::new("shop")).pod(web_pod("web-a", &[(-20.0, "a1")]))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f"]));
    follow.stdout_until(|l| l == "web-a app a1").await;
    c.sim.handle().write_line("shop", "web-a", "app", "live");
    follow.stdout_until(|l| l == "web-a app live").await;

    // The kubelet reads only the current file when a stream is reopened: after a rotation,
    // the last line seen is not there to prove that nothing came between.
    c.sim.handle().rotate_log("shop", "web-a", "app");
    c.sim.handle().cut_log_streams(Cut::default());
    follow
        .stderr_until(|l| l.starts_with("~ web-a › app reconnected"))
        .await;
    c.sim
        .handle()
        .write_line("shop", "web-a", "app", "after the rotation");

    follow
        .stdout_until(|l| l == "web-a app after the rotation")
        .await;
    let gap = follow
        .stderr_until(|l| l.starts_with("! web-a › app gap"))
        .await;
    assert!(gap.contains("may be missing"), "{gap}");
    follow.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_namespace_is_reported_while_the_others_are_read() {
    let reader = User::new("shop-reader")
        .rule(Rule::new(&["get", "list", "watch"], &["pods", "pods/log"]).in_namespaces(&["shop"]));
    let c = cluster(namespaced_pods().user(reader)).await;

    let out = run(
        &c,
        &["web", "-n", "shop,staging", "--context", "shop-reader"],
    )
    .await;

    assert_eq!(stdout(&out), "web-shop app in shop\n");
    let err = stderr(&out);
    assert!(
        err.contains("! error: not allowed to list pods in namespace staging"),
        "{err}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "some of the logs could not be read"
    );

    let mut follow = Follow::start(aether(
        &c,
        &[
            "web",
            "-n",
            "shop,staging",
            "--context",
            "shop-reader",
            "-f",
        ],
    ));
    follow.stdout_until(|l| l == "web-shop app in shop").await;
    c.sim
        .handle()
        .write_line("shop", "web-shop", "app", "live in shop");
    follow
        .stdout_until(|l| l == "web-shop app live in shop")
        .await;
    follow.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_namespaces_with_follow_picks_up_pods_anywhere() {
    let c = cluster(namespaced_pods()).await;
    let mut follow = Follow::start(aether(&c, &["web", "-A", "-f"]));
    follow.stdout_until(|l| l == "web-other app in other").await;

    let pod = web_pod("web-late", &[(0.0, "late in staging")]).in_namespace("staging");
    c.sim.handle().add_pod(pod);
    follow
        .stdout_until(|l| l == "web-late app late in staging")
        .await;

    follow.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_container_is_followed_through_each_restart() {
    let c =
        cluster(admin(Scenario::new("shop")).pod(web_pod("web-0", &[(-5.0, "run 1 up")]))).await;
    let mut follow = Follow::start(aether(&c, &["web", "-f", "--tail", "-1", "-o", "json"]));
    follow.until_log_lines(1).await;
    let handle = c.sim.handle();

    let crashes = [11, 12, 13];
    let mut want = vec!["run 1 up".to_string()];
    for (i, exit_code) in crashes.into_iter().enumerate() {
        let run = i + 1;
        for n in 0..3 {
            let text = format!("run {run} line {n}");
            handle.write_line("shop", "web-0", "app", &text);
            want.push(text);
        }
        follow.until_log_lines(want.len()).await;

        // Last words right before the crash: the end of the run must still be read.
        let text = format!("run {run} last words");
        handle.write_line("shop", "web-0", "app", &text);
        want.push(text);
        handle.restart_container_after(
            "shop",
            "web-0",
            "app",
            exit_code,
            "Error",
            Duration::from_secs(1),
        );
        let restarted = follow
            .stdout_until(|l| l.contains("\"event\":\"restarted\""))
            .await;
        assert!(
            restarted.contains(&format!("exit code {exit_code} (Error)")),
            "{restarted}"
        );
        let text = format!("run {} up", run + 1);
        handle.write_line("shop", "web-0", "app", &text);
        want.push(text);
    }
    follow.until_log_lines(want.len()).await;
    let seen = follow.stop().await;

    let got: Vec<String> = json_lines(&seen)
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    assert_eq!(got, want, "each run's lines once, in order");
    let truth: Vec<String> = handle
        .truth("shop", "web-0", "app")
        .into_iter()
        .map(|t| t.text)
        .collect();
    assert_eq!(truth, want);

    let events: Vec<(EventKind, String)> = seen
        .iter()
        .filter_map(|l| match serde_json::from_str::<LogEvent>(l) {
            Ok(LogEvent::Event(e)) => Some((e.event, e.message)),
            _ => None,
        })
        .collect();
    let restarts: Vec<&str> = events
        .iter()
        .filter(|(kind, _)| *kind == EventKind::Restarted)
        .map(|(_, message)| message.as_str())
        .collect();
    assert_eq!(
        restarts,
        crashes.map(|code| format!("exit code {code} (Error)")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(kind, _)| matches!(kind, EventKind::Error | EventKind::Gap)),
        "{events:?}"
    );
    c.sim.shutdown().await;
}
