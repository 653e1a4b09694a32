//! The deployment in `manifests/` parses, every kustomization names files that exist, and the
//! objects carry the settings the relay's security depends on.

use std::path::{Path, PathBuf};

use aether_relay::cli::Args;
use clap::Parser as _;
use serde::Deserialize as _;
use serde_yaml::Value;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("manifests")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("manifests directory is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("manifest is readable");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn all_objects() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&manifests_dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .flat_map(|f| documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

fn find(kind: &str, name: &str) -> Value {
    all_objects()
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in manifests/"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_manifest_parses_with_api_version_and_kind() {
    let objects = all_objects();
    assert!(objects.len() >= 12, "only {} objects found", objects.len());
    for (path, object) in objects {
        assert!(
            object["apiVersion"].is_string(),
            "{} lacks apiVersion",
            path.display()
        );
        assert!(object["kind"].is_string(), "{} lacks kind", path.display());
    }
}

#[test]
fn kustomizations_name_files_that_exist() {
    let mut files = Vec::new();
    yaml_files(&manifests_dir(), &mut files);
    let kustomizations: Vec<_> = files
        .iter()
        .filter(|f| f.ends_with("kustomization.yaml"))
        .collect();
    assert!(kustomizations.len() >= 3);
    for k in kustomizations {
        let doc = &documents(k)[0];
        for resource in strings(&doc["resources"]) {
            let target = k.parent().unwrap().join(&resource);
            assert!(target.exists(), "{} names missing {resource}", k.display());
        }
    }
}

#[test]
fn deployment_runs_locked_down_with_probes_and_its_own_token() {
    let deployment = find("Deployment", "aether-relay");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "aether-relay");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["resources"]["limits"]["memory"].is_string());

    let projected = &pod["volumes"][0]["projected"]["sources"];
    assert!(
        projected
            .as_sequence()
            .unwrap()
            .iter()
            .any(|s| s["serviceAccountToken"].is_mapping()),
        "the relay's token is not projected"
    );
}

#[test]
fn deployment_args_are_accepted_by_the_relay() {
    let deployment = find("Deployment", "aether-relay");
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    let mut argv = vec!["aether-relay".to_string()];
    argv.extend(args);
    let parsed = Args::try_parse_from(&argv).expect("deployment args parse");
    let config = parsed
        .config()
        .expect("deployment args make a valid configuration");
    assert_eq!(config.auth, aether_relay::AuthMode::ServiceProxy);
}

#[test]
fn service_maps_port_80_to_the_named_http_port() {
    let service = find("Service", "aether-relay");
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["name"], "http");
    assert_eq!(port["port"], 80);
    assert_eq!(port["targetPort"], "http");
}

#[test]
fn relay_roles_grant_reading_pods_and_reviewing_callers_only() {
    let logs = find("ClusterRole", "aether-relay-logs");
    let rules = logs["rules"].as_sequence().unwrap();
    assert!(rules.iter().any(|r| strings(&r["resources"]) == ["pods"]
        && strings(&r["verbs"]) == ["get", "list", "watch"]));
    assert!(
        rules
            .iter()
            .any(|r| strings(&r["resources"]) == ["pods/log"] && strings(&r["verbs"]) == ["get"])
    );

    let auth = find("ClusterRole", "aether-relay-auth");
    let resources: Vec<String> = auth["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| strings(&r["resources"]))
        .collect();
    assert_eq!(resources, ["tokenreviews", "subjectaccessreviews"]);
    for rule in auth["rules"].as_sequence().unwrap() {
        assert_eq!(strings(&rule["verbs"]), ["create"]);
    }
}

#[test]
fn network_policy_admits_only_listed_sources() {
    let policy = find("NetworkPolicy", "aether-relay");
    assert_eq!(strings(&policy["spec"]["policyTypes"]), ["Ingress"]);
    let from = policy["spec"]["ingress"][0]["from"].as_sequence().unwrap();
    assert!(!from.is_empty());
    for source in from {
        assert!(
            source["ipBlock"].is_mapping() || source["namespaceSelector"].is_mapping(),
            "unexpected source {source:?}"
        );
    }
}

#[test]
fn example_rbac_grants_proxy_access_and_per_app_logs() {
    let proxy = find("Role", "aether-relay-proxy");
    let rule = &proxy["rules"][0];
    assert_eq!(strings(&rule["resources"]), ["services/proxy"]);
    assert!(strings(&rule["resourceNames"]).contains(&"aether-relay".to_string()));

    let ci = find("Role", "aether-app-logs-web");
    let rule = &ci["rules"][0];
    assert_eq!(strings(&rule["apiGroups"]), ["aether.dev"]);
    assert_eq!(strings(&rule["resources"]), ["apps/logs"]);
    assert_eq!(strings(&rule["resourceNames"]), ["web"]);
    assert_eq!(strings(&rule["verbs"]), ["get"]);
}
