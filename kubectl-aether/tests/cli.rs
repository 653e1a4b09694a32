//! The command line on its own: help, version, completion and flag errors, without a cluster.

use std::process::{Command, Output};

fn aether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-aether"))
        .args(args)
        .env_remove("AETHER_LOGS_FORMAT")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_prints_the_package_version() {
    let out = aether(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("kubectl-aether {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_the_commands() {
    let out = aether(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["logs", "version", "completion"] {
        assert!(text.contains(command), "{command} missing from:\n{text}");
    }
    assert!(text.contains("kubectl aether"), "{text}");
}

#[test]
fn logs_help_explains_the_tail_default() {
    let out = aether(&["logs", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("last 10 lines when following"), "{text}");
    assert!(text.contains("AETHER_LOGS_FORMAT"), "{text}");
}

#[test]
fn missing_app_says_what_to_pass() {
    let out = aether(&["logs"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: name an app (kubectl aether logs APP) or pass a label selector with -l\n"
    );
}

#[test]
fn bad_since_names_the_value_and_the_forms() {
    let out = aether(&["logs", "web", "--since", "5 minutes"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(
        text.contains("--since \"5 minutes\" is not a duration"),
        "{text}"
    );
    assert!(text.contains("1h30m"), "{text}");
}

#[test]
fn since_and_since_time_conflict() {
    let out = aether(&[
        "logs",
        "web",
        "--since",
        "5m",
        "--since-time",
        "2026-05-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_output_format_lists_the_choices() {
    let out = aether(&["logs", "web", "-o", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(
        text.contains("text") && text.contains("json") && text.contains("raw"),
        "{text}"
    );
}

#[test]
fn bad_format_in_the_environment_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-aether"))
        .args(["logs", "web"])
        .env("AETHER_LOGS_FORMAT", "xml")
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("xml"), "{}", stderr(&out));
}

#[test]
fn bad_regex_is_reported() {
    let out = aether(&["logs", "web", "-c", "app("]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--container \"app(\" is not a valid regex"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn namespace_and_all_namespaces_conflict() {
    let out = aether(&["logs", "web", "-n", "shop", "-A"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_kubeconfig_says_where_it_looked() {
    let out = aether(&["logs", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/kubeconfig"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completion_scripts_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = aether(&["completion", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("kubectl-aether"),
            "{shell}"
        );
    }
}
