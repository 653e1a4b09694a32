//! `kubectl aether logs` through aether-relay, end to end: the built plugin chooses its path
//! from the user's RBAC in kubesim, and reads an in-process relay either through kubesim's
//! service proxy or at the relay's own URL with a token.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use aether_relay::{AuthMode, ClusterSource, RelayConfig};
use aether_tests::Cluster;
use kubesim::{Container, Pod, Rule, Scenario, Service, ServiceAccount, User};
use podlogs::{EventKind, LogEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every wait in these tests ends by itself after this long.
const WAIT: Duration = Duration::from_secs(40);

const CI_TOKEN: &str = "ci-deployer-token";

fn scenario() -> Scenario {
    let relay = aether_tests::relay_user();
    let dev = User::new("dev").rule(
        Rule::new(&["get"], &["services/proxy"])
            .names(&["aether-relay:http"])
            .in_namespaces(&["aether-system"]),
    );
    let ci = ServiceAccount::new("ci", "deployer", &["aether-relay"])
        .with_token(CI_TOKEN)
        .rule(
            Rule::new(&["get"], &["apps/logs"])
                .groups(&["aether.dev"])
                .names(&["web"])
                .in_namespaces(&["shop"]),
        );
    let pod = |name: &str, app: &str, at: f64| {
        Pod::new(name).label("app", app).container(
            Container::new("app")
                .line(at, &format!("{name} started"))
                .line(at + 5.0, &format!("{name} ready")),
        )
    };
    Scenario::new("shop")
        .namespace("aether-system")
        .user(User::new("admin").rule(Rule::all()))
        .user(relay)
        .user(dev)
        .user(User::new("nobody"))
        .service_account(ci)
        .service(Service::new("aether-system", "aether-relay"))
        .pod(pod("web-0", "web", -30.0))
        .pod(pod("web-1", "web", -28.0))
        .pod(pod("db-0", "db", -29.0))
}

/// A relay serving `shop`, run in-process against the simulated cluster.
struct Relay {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), aether_relay::ServeError>>,
}

impl Relay {
    async fn start(kubeconfig: &std::path::Path, auth: AuthMode, addr: SocketAddr) -> Relay {
        let client = aether_relay::connect(&ClusterSource::Kubeconfig {
            path: Some(kubeconfig.to_path_buf()),
            context: Some("relay".into()),
        })
        .await
        .expect("client for kubesim");
        let mut config = RelayConfig::new(["shop"]);
        config.auth = auth;
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(aether_relay::serve(config, client, listener, async move {
            let _ = stopped.await;
        }));
        Relay {
            addr,
            stop: Some(stop),
            served,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let ended = tokio::time::timeout(WAIT, self.served).await;
        ended
            .expect("the relay stops in time")
            .expect("serve task")
            .expect("serve ends");
    }
}

async fn cluster() -> Cluster {
    Cluster::start(scenario(), "admin").await
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn events(out: &Output) -> Vec<LogEvent> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is no event: {e}")))
        .collect()
}

fn log_lines(events: &[LogEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            LogEvent::Log(l) => Some(format!("{} {} {}", l.pod, l.container, l.line)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_user_with_only_service_proxy_rights_reads_through_the_relay_as_direct_users_do() {
    let c = cluster().await;
    let relay = Relay::start(&c.kubeconfig, AuthMode::ServiceProxy, localhost()).await;
    c.sim
        .handle()
        .set_service_backend("aether-system", "aether-relay", relay.addr);

    let direct = run(&c, &["web", "--context", "admin", "--color", "never", "-v"]).await;
    let proxied = run(&c, &["web", "--context", "dev", "--color", "never", "-v"]).await;

    assert!(direct.status.success(), "{}", text(&direct.stderr));
    assert!(proxied.status.success(), "{}", text(&proxied.stderr));
    assert!(
        text(&direct.stderr).contains("reading pods directly"),
        "{}",
        text(&direct.stderr)
    );
    let why = text(&proxied.stderr);
    assert!(why.contains("reading through the relay service"), "{why}");
    assert!(why.contains("get pods/log in namespace shop"), "{why}");
    assert_eq!(text(&proxied.stdout), text(&direct.stdout));
    assert_eq!(
        text(&direct.stdout).lines().count(),
        4,
        "two lines from each web pod:\n{}",
        text(&direct.stdout)
    );

    relay.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test]
async fn a_user_with_neither_right_is_told_what_is_missing_and_both_fixes() {
    let c = cluster().await;

    let out = run(&c, &["web", "--context", "nobody"]).await;

    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("list pods in namespace shop"), "{err}");
    assert!(err.contains("get pods/log in namespace shop"), "{err}");
    assert!(
        err.contains("get services/proxy aether-relay:http in namespace aether-system"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    c.sim.shutdown().await;
}

#[tokio::test]
async fn a_ci_token_reads_an_allowed_app_at_the_relay_url_without_a_kubeconfig() {
    let c = cluster().await;
    let relay = Relay::start(&c.kubeconfig, AuthMode::Token, localhost()).await;
    let url = format!("http://{}", relay.addr);

    let out = aether(&c, &["web", "-o", "json"])
        .env("KUBECONFIG", c.home.join("missing"))
        .env("AETHER_RELAY_URL", &url)
        .env("AETHER_RELAY_TOKEN", CI_TOKEN)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("in time")
        .expect("runs");

    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        log_lines(&events(&out)),
        [
            "web-0 app web-0 started",
            "web-1 app web-1 started",
            "web-0 app web-0 ready",
            "web-1 app web-1 ready"
        ]
    );
    relay.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test]
async fn a_token_refused_by_the_relay_says_how_to_pass_one() {
    let c = cluster().await;
    let relay = Relay::start(&c.kubeconfig, AuthMode::Token, localhost()).await;
    let url = format!("http://{}", relay.addr);

    let out = run(&c, &["db", "--relay-url", &url, "--relay-token", CI_TOKEN]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("answered 403"), "{err}");
    assert!(err.contains("apps/logs"), "{err}");

    let out = run(&c, &["web", "--relay-url", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("answered 401"), "{err}");
    assert!(err.contains("--relay-token"), "{err}");
    relay.stop().await;
    c.sim.shutdown().await;
}

#[tokio::test]
async fn a_selector_cannot_go_through_the_relay() {
    let c = cluster().await;
    let out = run(&c, &["-l", "app=web", "--via", "relay"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("serves apps by name"),
        "{}",
        text(&out.stderr)
    );
    c.sim.shutdown().await;
}

#[tokio::test]
async fn a_follow_through_the_relay_survives_a_relay_restart_without_repeating_lines() {
    let c = cluster().await;
    let relay = Relay::start(&c.kubeconfig, AuthMode::Token, localhost()).await;
    let addr = relay.addr;
    let url = format!("http://{addr}");

    let mut child = aether(&c, &["web", "-f", "-o", "json", "--relay-url", &url])
        .env("AETHER_RELAY_TOKEN", CI_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the plugin starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let mut seen: Vec<LogEvent> = Vec::new();
    let mut read_until = async |seen: &mut Vec<LogEvent>, want: &str| {
        let found = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let event: LogEvent = serde_json::from_str(&line).expect("an event");
                let hit = match &event {
                    LogEvent::Log(l) => l.line == want,
                    LogEvent::Event(e) => e.message.contains(want),
                    LogEvent::Heartbeat { .. } => false,
                };
                seen.push(event);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "{want:?} never came; saw {seen:?}");
    };

    read_until(&mut seen, "web-1 ready").await;
    c.sim
        .handle()
        .write_line("shop", "web-0", "app", "before the restart");
    read_until(&mut seen, "before the restart").await;

    // The relay goes away (with a closing event) and comes back on the same address.
    relay.stop().await;
    read_until(&mut seen, "reopening failed").await;
    let relay = Relay::start(&c.kubeconfig, AuthMode::Token, addr).await;
    c.sim
        .handle()
        .write_line("shop", "web-1", "app", "after the restart");
    read_until(&mut seen, "after the restart").await;

    let lines = log_lines(&seen);
    for line in &lines {
        assert_eq!(
            lines.iter().filter(|l| *l == line).count(),
            1,
            "{line} repeated: {lines:?}"
        );
    }
    assert_eq!(lines.len(), 6, "{lines:?}");
    let said = |kind: EventKind| {
        let is_kind = |e: &&LogEvent| matches!(e, LogEvent::Event(s) if s.event == kind);
        seen.iter().filter(is_kind).count()
    };
    assert_eq!(said(EventKind::Reconnected), 1, "{seen:?}");
    assert_eq!(
        said(EventKind::Error),
        1,
        "the outage is reported once: {seen:?}"
    );

    let _ = child.kill().await;
    relay.stop().await;
    c.sim.shutdown().await;
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
