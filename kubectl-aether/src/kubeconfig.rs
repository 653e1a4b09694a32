//! Building a kube client from kubeconfig files the way kubectl finds them: [`connect`].
//!
//! `--kubeconfig` names one file; otherwise every file in `KUBECONFIG` is merged (first
//! value wins, missing files skipped, as kubectl does); otherwise `~/.kube/config`. The
//! in-cluster fallback of `Config::infer` is deliberately not used: a CLI that silently talks
//! to another cluster is worse than one that says it found no kubeconfig.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::config::ClusterOptions;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `--kubeconfig` names a file that cannot be read.
    #[error("cannot read kubeconfig {}; check the --kubeconfig path", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KubeconfigError,
    },
    /// None of the files in KUBECONFIG exist.
    #[error("none of the files in KUBECONFIG exist ({0}); set it to your kubeconfig")]
    NoFileInEnv(String),
    /// No KUBECONFIG and no ~/.kube/config.
    #[error("no kubeconfig found at {}; pass --kubeconfig or set KUBECONFIG", path.display())]
    NoDefaultFile {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Merging the KUBECONFIG files failed.
    #[error("cannot merge the kubeconfig files in KUBECONFIG")]
    Merge(#[source] KubeconfigError),
    /// The context, cluster or user cannot be used.
    #[error("cannot use the kubeconfig (check --context, --cluster and --user)")]
    Resolve(#[source] KubeconfigError),
    /// The client could not be built (bad certificates and the like).
    #[error("cannot build a client for the cluster")]
    Client(#[source] kube::Error),
}

/// A client for the chosen context.
pub struct Connection {
    /// The client.
    pub client: Client,
    /// The namespace of the context (`default` when it names none).
    pub namespace: String,
    /// The server URL, for messages.
    pub url: String,
}

/// Builds a client from the kubeconfig the options choose.
pub async fn connect(options: &ClusterOptions) -> Result<Connection, ConnectError> {
    let kubeconfig = load(options)?;
    let kube_options = KubeConfigOptions {
        context: options.context.clone(),
        cluster: options.cluster.clone(),
        user: options.user.clone(),
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &kube_options)
        .await
        .map_err(ConnectError::Resolve)?;
    if let Some(timeout) = options.request_timeout {
        config.connect_timeout = Some(timeout);
    }
    let namespace = config.default_namespace.clone();
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(ConnectError::Client)?;
    Ok(Connection {
        client,
        namespace,
        url,
    })
}

fn load(options: &ClusterOptions) -> Result<Kubeconfig, ConnectError> {
    if let Some(path) = &options.kubeconfig {
        return Kubeconfig::read_from(path).map_err(|source| ConnectError::ReadFile {
            path: path.clone(),
            source,
        });
    }
    if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        return merge_files(&paths);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = home.join(".kube").join("config");
    if !path.exists() {
        return Err(ConnectError::NoDefaultFile { path });
    }
    Kubeconfig::read_from(&path).map_err(|source| ConnectError::ReadFile { path, source })
}

/// Merges kubeconfig files in order, skipping the ones that do not exist.
pub fn merge_files(paths: &[PathBuf]) -> Result<Kubeconfig, ConnectError> {
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| Path::new(p).exists()).collect();
    if existing.is_empty() {
        let listed: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ConnectError::NoFileInEnv(listed.join(", ")));
    }
    let mut merged = Kubeconfig::default();
    for path in existing {
        let next = Kubeconfig::read_from(path).map_err(|source| ConnectError::ReadFile {
            path: path.clone(),
            source,
        })?;
        merged = merged.merge(next).map_err(ConnectError::Merge)?;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const FIRST: &str = "apiVersion: v1
kind: Config
current-context: one
contexts:
- name: one
  context: {cluster: c1, user: u1, namespace: shop}
clusters:
- name: c1
  cluster: {server: 'https://127.0.0.1:1'}
users:
- name: u1
  user: {token: t1}
";

    const SECOND: &str = "apiVersion: v1
kind: Config
current-context: two
contexts:
- name: two
  context: {cluster: c2, user: u1}
clusters:
- name: c1
  cluster: {server: 'https://127.0.0.1:9'}
- name: c2
  cluster: {server: 'https://127.0.0.1:2'}
";

    #[test]
    fn merging_skips_missing_files_and_first_value_wins() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), "first", FIRST);
        let second = write(dir.path(), "second", SECOND);
        let missing = dir.path().join("missing");
        let merged = merge_files(&[missing, first, second]).unwrap();
        assert_eq!(merged.current_context.as_deref(), Some("one"));
        let c1 = merged.clusters.iter().find(|c| c.name == "c1").unwrap();
        assert_eq!(
            c1.cluster.as_ref().and_then(|c| c.server.as_deref()),
            Some("https://127.0.0.1:1")
        );
        assert!(merged.contexts.iter().any(|c| c.name == "two"));
    }

    #[test]
    fn all_files_missing_is_an_error_naming_them() {
        let err = merge_files(&[PathBuf::from("/nonexistent/a")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/a"), "{err}");
    }

    #[tokio::test]
    async fn context_namespace_comes_back_with_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), "first", FIRST);
        let options = ClusterOptions {
            kubeconfig: Some(first),
            ..Default::default()
        };
        let connection = connect(&options).await.unwrap();
        assert_eq!(connection.namespace, "shop");
        assert_eq!(connection.url, "https://127.0.0.1:1/");
    }

    #[tokio::test]
    async fn unknown_context_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), "first", FIRST);
        let options = ClusterOptions {
            kubeconfig: Some(first),
            context: Some("nope".into()),
            ..Default::default()
        };
        assert!(matches!(
            connect(&options).await,
            Err(ConnectError::Resolve(_))
        ));
    }
}
