//! Flags and `AETHER_RELAY_*` variables ([`Args`]), turned once into a [`RelayConfig`] and
//! a [`ClusterSource`]; [`connect`] builds the kube client from the source. The server never
//! sees a flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::{AuthMode, ConfigError, RelayConfig};
use podlogs::duration::parse_duration;

/// How callers are authenticated, as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    /// Trust the apiserver's service proxy and the NetworkPolicy; no token asked.
    ServiceProxy,
    /// Every request carries a bearer token (TokenReview, then SubjectAccessReview).
    Token,
}

/// The command line of `aether-relay`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "aether-relay",
    version,
    about = "Serve the merged logs of an app over HTTP from inside the cluster"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "AETHER_RELAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Namespaces served, comma-separated; every other namespace is answered 404.
    #[arg(
        long,
        env = "AETHER_RELAY_NAMESPACES",
        value_delimiter = ',',
        required = true
    )]
    pub namespaces: Vec<String>,

    /// How callers are authenticated: service-proxy trusts the apiserver's service proxy
    /// (RBAC on services/proxy) and the NetworkPolicy; token checks a bearer token on every
    /// request.
    #[arg(long, env = "AETHER_RELAY_AUTH", value_enum, default_value = "token")]
    pub auth: AuthArg,

    /// Audience a caller's token must be bound to (token mode).
    #[arg(long, env = "AETHER_RELAY_AUDIENCE", default_value = "aether-relay")]
    pub audience: String,

    /// Label key selecting an app's pods (`<key>=<app>`).
    #[arg(long, env = "AETHER_RELAY_APP_LABEL", default_value = "app")]
    pub app_label: String,

    /// Silence after which a heartbeat event is sent, such as 15s.
    #[arg(long, env = "AETHER_RELAY_HEARTBEAT", default_value = "15s", value_parser = duration)]
    pub heartbeat: Duration,

    /// Largest tail_lines a caller may ask for; also the tail when a caller bounds nothing.
    #[arg(long, env = "AETHER_RELAY_MAX_TAIL_LINES", default_value_t = 10_000,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub max_tail_lines: i64,

    /// How far back a caller may start (since, since_time), such as 7d.
    #[arg(long, env = "AETHER_RELAY_MAX_SINCE", default_value = "7d", value_parser = duration)]
    pub max_since: Duration,

    /// Streams open at once in total.
    #[arg(long, env = "AETHER_RELAY_MAX_STREAMS", default_value_t = 200)]
    pub max_streams: usize,

    /// Streams open at once per client (per user in token mode, per address otherwise).
    #[arg(long, env = "AETHER_RELAY_MAX_STREAMS_PER_CLIENT", default_value_t = 8)]
    pub max_streams_per_client: usize,

    /// Container log streams one client stream may hold open to the apiserver.
    #[arg(long, env = "AETHER_RELAY_MAX_CONTAINER_STREAMS",
          default_value_t = podlogs::query::DEFAULT_MAX_STREAMS)]
    pub max_container_streams: usize,

    /// How long a positive authorization decision is reused (0s turns the cache off).
    #[arg(long, env = "AETHER_RELAY_AUTH_CACHE_TTL", default_value = "30s",
          value_parser = duration)]
    pub auth_cache_ttl: Duration,

    /// Positive authorization decisions remembered at most.
    #[arg(long, env = "AETHER_RELAY_AUTH_CACHE_SIZE", default_value_t = 1024)]
    pub auth_cache_size: usize,

    /// How long open streams get to end after SIGTERM.
    #[arg(long, env = "AETHER_RELAY_SHUTDOWN_GRACE", default_value = "10s",
          value_parser = duration)]
    pub shutdown_grace: Duration,

    /// How long a check against the apiserver may take before the caller gets 503.
    #[arg(long, env = "AETHER_RELAY_APISERVER_TIMEOUT", default_value = "10s",
          value_parser = duration)]
    pub apiserver_timeout: Duration,

    /// Kubeconfig for local runs; without it: $KUBECONFIG, then the in-cluster service
    /// account, then ~/.kube/config.
    #[arg(long, env = "AETHER_RELAY_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current one.
    #[arg(long, env = "AETHER_RELAY_CONTEXT")]
    pub context: Option<String>,

    /// Log filter for the JSON logs on stderr, such as info or aether_relay=debug.
    #[arg(long, env = "AETHER_RELAY_LOG", default_value = "info")]
    pub log: String,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

impl Args {
    /// The resolved, validated configuration.
    pub fn config(&self) -> Result<RelayConfig, ConfigError> {
        let mut config = RelayConfig::new(
            self.namespaces
                .iter()
                .map(|ns| ns.trim())
                .filter(|ns| !ns.is_empty()),
        );
        config.app_label = self.app_label.clone();
        config.auth = match self.auth {
            AuthArg::ServiceProxy => AuthMode::ServiceProxy,
            AuthArg::Token => AuthMode::Token,
        };
        config.audience = self.audience.clone();
        config.auth_cache_ttl = self.auth_cache_ttl;
        config.auth_cache_size = self.auth_cache_size;
        config.heartbeat = self.heartbeat;
        config.max_tail_lines = self.max_tail_lines;
        config.max_since = self.max_since;
        config.max_streams = self.max_streams;
        config.max_streams_per_client = self.max_streams_per_client;
        config.max_container_streams = self.max_container_streams;
        config.shutdown_grace = self.shutdown_grace;
        config.apiserver_timeout = self.apiserver_timeout;
        config.validate()?;
        Ok(config)
    }

    /// Where the cluster's address and credentials come from, decided once from the flags
    /// and the environment.
    pub fn cluster_source(&self) -> ClusterSource {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let from_env = std::env::var_os("KUBECONFIG")
            .filter(|v| !v.is_empty())
            .is_some();
        let home_config = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".kube").join("config"))
            .filter(|path| path.is_file());
        let context = self.context.clone();
        match (&self.kubeconfig, from_env, in_cluster, home_config) {
            (Some(path), ..) => ClusterSource::Kubeconfig {
                path: Some(path.clone()),
                context,
            },
            (None, true, ..) => ClusterSource::Kubeconfig {
                path: None,
                context,
            },
            (None, false, true, _) => ClusterSource::InCluster { context },
            (None, false, false, Some(path)) => ClusterSource::Kubeconfig {
                path: Some(path),
                context,
            },
            (None, false, false, None) => ClusterSource::Nothing,
        }
    }
}

/// Where the cluster's address and credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterSource {
    /// A kubeconfig file, or `$KUBECONFIG` (which may list several) when `path` is `None`.
    Kubeconfig {
        /// The file.
        path: Option<PathBuf>,
        /// The context to use instead of the current one.
        context: Option<String>,
    },
    /// The pod's service account.
    InCluster {
        /// A context was asked for, which only a kubeconfig has.
        context: Option<String>,
    },
    /// No source was found.
    Nothing,
}

/// Why no kube client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No kubeconfig and not in a pod.
    #[error("no cluster configuration found; run in a pod, pass --kubeconfig or set KUBECONFIG")]
    NoSource,
    /// A context was asked for without a kubeconfig.
    #[error("--context {0} needs a kubeconfig; pass --kubeconfig or set KUBECONFIG")]
    ContextWithoutKubeconfig(String),
    /// The kubeconfig could not be read.
    #[error("failed to read the kubeconfig")]
    ReadKubeconfig(#[source] kube::config::KubeconfigError),
    /// `$KUBECONFIG` names no readable file.
    #[error("KUBECONFIG is set but names no kubeconfig")]
    EmptyKubeconfigEnv,
    /// The kubeconfig does not describe a usable cluster and user.
    #[error("failed to load the kubeconfig's context")]
    LoadKubeconfig(#[source] kube::config::KubeconfigError),
    /// The service account's files could not be read.
    #[error("failed to load the in-cluster service account configuration")]
    InCluster(#[source] kube::config::InClusterError),
    /// The client could not be built from the configuration.
    #[error("failed to build the kube client")]
    Client(#[source] kube::Error),
}

/// Builds the relay's kube client from `source`, never falling back to another source.
pub async fn connect(source: &ClusterSource) -> Result<kube::Client, ConnectError> {
    let config = match source {
        ClusterSource::Kubeconfig { path, context } => {
            let kubeconfig = match path {
                Some(path) => Kubeconfig::read_from(path).map_err(ConnectError::ReadKubeconfig)?,
                None => Kubeconfig::from_env()
                    .map_err(ConnectError::ReadKubeconfig)?
                    .ok_or(ConnectError::EmptyKubeconfigEnv)?,
            };
            let options = KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(ConnectError::LoadKubeconfig)?
        }
        ClusterSource::InCluster {
            context: Some(context),
        } => {
            return Err(ConnectError::ContextWithoutKubeconfig(context.clone()));
        }
        ClusterSource::InCluster { context: None } => {
            kube::Config::incluster().map_err(ConnectError::InCluster)?
        }
        ClusterSource::Nothing => return Err(ConnectError::NoSource),
    };
    kube::Client::try_from(config).map_err(ConnectError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["aether-relay"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn namespaces_are_required() {
        let e = args(&[]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn reads_flags_into_the_config() {
        let a = args(&[
            "--namespaces",
            "shop,pay",
            "--auth",
            "service-proxy",
            "--heartbeat",
            "2s",
            "--max-since",
            "1h30m",
            "--app-label",
            "app.kubernetes.io/name",
        ])
        .unwrap();
        let c = a.config().unwrap();
        assert_eq!(c.namespaces.iter().collect::<Vec<_>>(), ["pay", "shop"]);
        assert_eq!(c.auth, AuthMode::ServiceProxy);
        assert_eq!(c.heartbeat, Duration::from_secs(2));
        assert_eq!(c.max_since, Duration::from_secs(5400));
        assert_eq!(c.app_label, "app.kubernetes.io/name");
    }

    #[test]
    fn token_mode_is_the_default() {
        let c = args(&["--namespaces", "shop"]).unwrap().config().unwrap();
        assert_eq!(c.auth, AuthMode::Token);
        assert_eq!(c.audience, "aether-relay");
    }

    #[test]
    fn refuses_bad_durations_and_modes() {
        assert!(args(&["--namespaces", "shop", "--heartbeat", "15"]).is_err());
        assert!(args(&["--namespaces", "shop", "--auth", "none"]).is_err());
        assert!(args(&["--namespaces", "shop", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn refuses_bad_namespaces_after_parsing() {
        let a = args(&["--namespaces", "shop,Pay"]).unwrap();
        assert_eq!(
            a.config().unwrap_err(),
            ConfigError::BadNamespace("Pay".into())
        );
    }

    #[tokio::test]
    async fn a_context_without_kubeconfig_is_refused() {
        let e = connect(&ClusterSource::InCluster {
            context: Some("dev".into()),
        })
        .await;
        assert!(matches!(e, Err(ConnectError::ContextWithoutKubeconfig(_))));
        let e = connect(&ClusterSource::Nothing).await;
        assert!(matches!(e, Err(ConnectError::NoSource)));
    }
}
