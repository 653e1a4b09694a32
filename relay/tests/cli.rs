//! The `aether-relay` binary refuses bad flags and missing cluster configuration with clear
//! errors, before it listens on anything.

use std::process::{Command, Output};

fn relay(args: &[&str], home: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aether-relay"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("AETHER_RELAY_NAMESPACES")
        .env_remove("AETHER_RELAY_KUBECONFIG")
        .env("HOME", home)
        .output()
        .expect("the relay binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn missing_namespaces_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = relay(&[], home.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--namespaces"), "{}", stderr(&out));
}

#[test]
fn a_duration_without_unit_names_the_problem() {
    let home = tempfile::tempdir().unwrap();
    let out = relay(&["--namespaces", "shop", "--heartbeat", "15"], home.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--heartbeat") && err.contains("missing unit"),
        "{err}"
    );
}

#[test]
fn an_unknown_auth_mode_lists_the_choices() {
    let home = tempfile::tempdir().unwrap();
    let out = relay(&["--namespaces", "shop", "--auth", "none"], home.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("service-proxy") && err.contains("token"),
        "{err}"
    );
}

#[test]
fn an_invalid_namespace_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let out = relay(&["--namespaces", "shop,Not_A_Namespace"], home.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("\"Not_A_Namespace\" is not a valid namespace"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_cluster_configuration_is_an_error_not_a_fallback() {
    let home = tempfile::tempdir().unwrap();
    let out = relay(
        &["--namespaces", "shop", "--listen", "127.0.0.1:0"],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no cluster configuration found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreadable_kubeconfig_is_reported() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("missing.yaml");
    let out = relay(
        &[
            "--namespaces",
            "shop",
            "--kubeconfig",
            missing.to_str().unwrap(),
        ],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("failed to read the kubeconfig"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_lists_flags_with_their_environment_variables() {
    let home = tempfile::tempdir().unwrap();
    let out = relay(&["--help"], home.path());
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--namespaces",
        "--auth",
        "--heartbeat",
        "AETHER_RELAY_NAMESPACES",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
}
