//! Shared helpers for the end-to-end suites: where the built binaries are and how to run the
//! real `kubectl`. The suites start kubesim in-process and run the binaries against it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory cargo put this workspace's binaries in (`target/debug` for `cargo test`).
///
/// Test executables live in `target/<profile>/deps`; the binaries one level up. `cargo test
/// --workspace` builds them before any suite runs, because each binary crate has tests of its
/// own.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("the test executable is in a directory");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// The path of a workspace binary, such as `kubectl-aether`, panicking with what to run when
/// it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built; run the suites with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// The real kubectl: `$KUBECTL` if set, otherwise `kubectl` on PATH.
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// A `kubectl` command that reads only the given kubeconfig, finds the workspace's binaries
/// as plugins, and keeps its cache out of the user's home.
pub fn kubectl(kubeconfig: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(kubectl_path());
    cmd.env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("KUBECACHEDIR", home.join("kube-cache"))
        .env("PATH", path_with_bins())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .arg("--request-timeout=20s");
    cmd
}

/// PATH with the workspace's binaries first, so `kubectl aether` finds this build.
pub fn path_with_bins() -> std::ffi::OsString {
    let mut paths = vec![bin_dir()];
    if let Some(old) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).expect("PATH entries contain no separator")
}

/// Runs a command to completion within `limit`, killing it if it overruns; the error says
/// which command hung.
pub async fn output_within(
    cmd: Command,
    limit: std::time::Duration,
) -> std::io::Result<std::process::Output> {
    let shown = format!("{cmd:?}");
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(output) => output,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{shown} did not finish within {limit:?}"),
        )),
    }
}

/// `kubectl-aether logs ARGS` reading only `kubeconfig`, with a private HOME and none of the
/// environment variables that change its output or its path (format, color, relay, log
/// level), killed when dropped.
pub fn aether_logs(kubeconfig: &Path, home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin("kubectl-aether"));
    cmd.arg("logs")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env_remove("AETHER_LOGS_FORMAT")
        .env_remove("AETHER_RELAY_URL")
        .env_remove("AETHER_API_BASE")
        .env_remove("AETHER_RELAY_TOKEN")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    cmd
}

/// The user aether-relay runs as: it reads pods and their logs everywhere and may create
/// TokenReviews and SubjectAccessReviews, as `manifests/base` grants its ServiceAccount.
pub fn relay_user() -> kubesim::User {
    kubesim::User::new("relay")
        .rule(kubesim::Rule::new(&["get", "list", "watch"], &["pods"]))
        .rule(kubesim::Rule::new(&["get"], &["pods/log"]))
        .rule(kubesim::Rule::new(&["create"], &["tokenreviews"]).groups(&["authentication.k8s.io"]))
        .rule(
            kubesim::Rule::new(&["create"], &["subjectaccessreviews"])
                .groups(&["authorization.k8s.io"]),
        )
}

/// A simulated cluster for one test, with its kubeconfig and a private HOME in a temp dir
/// that lives as long as the cluster.
pub struct Cluster {
    /// The simulated apiserver.
    pub sim: kubesim::Sim,
    /// A kubeconfig with one context per scenario user.
    pub kubeconfig: PathBuf,
    /// A HOME for the commands under test.
    pub home: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `scenario` over TLS and writes a kubeconfig whose current context is `user`.
    pub async fn start(scenario: kubesim::Scenario, user: &str) -> Cluster {
        let sim = kubesim::Sim::start(scenario, kubesim::SimOptions::default())
            .await
            .expect("kubesim starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, user)
            .expect("kubeconfig written");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home dir");
        Cluster {
            sim,
            kubeconfig,
            home,
            _dir: dir,
        }
    }
}
