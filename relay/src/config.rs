//! The resolved configuration the server runs on, built once from flags ([`crate::cli`]) or
//! by tests, and passed down. Nothing below reads a flag or an environment variable.

use std::collections::BTreeSet;

use crate::params::is_dns_label;
use std::time::Duration;

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Trust the apiserver's service proxy (which checked `services/proxy` RBAC) and the
    /// NetworkPolicy that lets only the apiserver in. No token is asked for.
    ServiceProxy,
    /// Every request carries a bearer token, checked with a TokenReview and then a
    /// SubjectAccessReview for `get` on `apps/logs` in group `aether.dev`.
    Token,
}

impl AuthMode {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::ServiceProxy => "service-proxy",
            AuthMode::Token => "token",
        }
    }
}

/// Everything the server needs to know; see `aether-relay --help` for the meaning of each
/// setting as a flag.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The namespaces the relay serves; any other is answered 404.
    pub namespaces: BTreeSet<String>,
    /// The label key that selects an app's pods (`{app_label}={app}`).
    pub app_label: String,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// The audience a caller's token must be bound to in token mode.
    pub audience: String,
    /// How long a positive authorization decision is reused.
    pub auth_cache_ttl: Duration,
    /// How many positive decisions are remembered at most.
    pub auth_cache_size: usize,
    /// A heartbeat event is sent after this much silence.
    pub heartbeat: Duration,
    /// The largest `tail_lines` a caller may ask for, and the tail used when a caller asks
    /// for neither `tail_lines` nor a start time.
    pub max_tail_lines: i64,
    /// How far back a caller may ask to start (`since`, `since_time`).
    pub max_since: Duration,
    /// Streams open at once for one client (user in token mode, address otherwise).
    pub max_streams_per_client: usize,
    /// Streams open at once in total.
    pub max_streams: usize,
    /// Container log streams one client stream may hold open upstream.
    pub max_container_streams: usize,
    /// How long open streams get to end after shutdown begins.
    pub shutdown_grace: Duration,
    /// How long a request to the apiserver made before answering (authentication, the pod
    /// check, readiness) may take before the caller gets 503.
    pub apiserver_timeout: Duration,
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No namespace to serve.
    #[error("no namespaces to serve; pass --namespaces a,b")]
    NoNamespaces,
    /// A namespace name is not a DNS label.
    #[error("namespace {0:?} is not a valid namespace name (lowercase letters, digits and '-')")]
    BadNamespace(String),
    /// The label key is empty or malformed.
    #[error(
        "app label {0:?} is not a valid label key; use a key such as app or app.kubernetes.io/name"
    )]
    BadAppLabel(String),
    /// The audience is empty in token mode.
    #[error("the token audience is empty; pass --audience")]
    EmptyAudience,
    /// A duration or count that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

impl RelayConfig {
    /// Checks the settings once, before serving.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.namespaces.is_empty() {
            return Err(ConfigError::NoNamespaces);
        }
        if let Some(bad) = self.namespaces.iter().find(|ns| !is_dns_label(ns)) {
            return Err(ConfigError::BadNamespace(bad.clone()));
        }
        if !is_label_key(&self.app_label) {
            return Err(ConfigError::BadAppLabel(self.app_label.clone()));
        }
        if self.auth == AuthMode::Token && self.audience.trim().is_empty() {
            return Err(ConfigError::EmptyAudience);
        }
        let zeros: [(&'static str, bool); 6] = [
            ("--heartbeat", self.heartbeat.is_zero()),
            ("--max-streams", self.max_streams == 0),
            ("--max-streams-per-client", self.max_streams_per_client == 0),
            ("--max-container-streams", self.max_container_streams == 0),
            ("--max-since", self.max_since.is_zero()),
            ("--apiserver-timeout", self.apiserver_timeout.is_zero()),
        ];
        if let Some((name, _)) = zeros.iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero(name));
        }
        Ok(())
    }

    /// A configuration serving `namespaces` with every other setting at its default
    /// (token mode, audience `aether-relay`, label `app`, 15 s heartbeat).
    pub fn new<I, S>(namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RelayConfig {
            namespaces: namespaces.into_iter().map(Into::into).collect(),
            app_label: "app".into(),
            auth: AuthMode::Token,
            audience: "aether-relay".into(),
            auth_cache_ttl: Duration::from_secs(30),
            auth_cache_size: 1024,
            heartbeat: Duration::from_secs(15),
            max_tail_lines: 10_000,
            max_since: Duration::from_secs(7 * 86_400),
            max_streams_per_client: 8,
            max_streams: 200,
            max_container_streams: podlogs::query::DEFAULT_MAX_STREAMS,
            shutdown_grace: Duration::from_secs(10),
            apiserver_timeout: Duration::from_secs(10),
        }
    }
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns_label));
    prefix_ok && crate::params::is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(RelayConfig::new(["shop"]).validate(), Ok(()));
    }

    #[test]
    fn refuses_missing_or_malformed_namespaces() {
        let none: [&str; 0] = [];
        assert_eq!(
            RelayConfig::new(none).validate(),
            Err(ConfigError::NoNamespaces)
        );
        assert_eq!(
            RelayConfig::new(["Shop"]).validate(),
            Err(ConfigError::BadNamespace("Shop".into()))
        );
    }

    #[test]
    fn accepts_prefixed_label_keys_only_when_well_formed() {
        assert!(is_label_key("app"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("app.kubernetes.io/"));
        assert!(!is_label_key("/name"));
        assert!(!is_label_key("a b"));
    }

    #[test]
    fn refuses_zero_limits() {
        let mut c = RelayConfig::new(["shop"]);
        c.max_streams = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("--max-streams")));
    }
}
