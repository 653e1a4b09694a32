//! Validated settings, resolved once from the command line and the environment: [`Config`].
//!
//! Every flag is checked here and turned into the values the rest of the plugin runs on;
//! nothing downstream reads a flag or an environment variable again.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use podlogs::format::{FormatOptions, OutputFormat};
use podlogs::{ContainerFilter, LogQuery, Namespaces, Since};
use regex::Regex;

use crate::cli::{ColorArg, LogsArgs, OutputArg, ViaArg};
use crate::via::{RelayService, Via};

/// Lines of history per container when following and `--tail` is not given.
pub const FOLLOW_DEFAULT_TAIL: i64 = 10;

/// The longest line cap accepted, so a typo cannot ask for gigabytes per line.
const MAX_LINE_CAP: usize = 64 * 1024 * 1024;

/// A flag value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither an app nor a selector.
    #[error("name an app (kubectl aether logs APP) or pass a label selector with -l")]
    NoSelection,
    /// Both an app and a selector.
    #[error("give either an app or -l/--selector, not both (the selector replaces app=APP)")]
    AppAndSelector,
    /// The app is not a valid label value.
    #[error(
        "{0:?} is not a valid app name; a label value has at most 63 letters, digits, '-', '_' \
         or '.', starting and ending with a letter or digit"
    )]
    BadApp(String),
    /// An empty selector.
    #[error("the label selector is empty; pass one such as -l app=web")]
    EmptySelector,
    /// `--tail` below -1.
    #[error("--tail {0} is not allowed; pass a count of lines, or -1 for all")]
    BadTail(i64),
    /// `--since` that is not a duration.
    #[error("--since {value:?} is not a duration: {reason}")]
    BadSince {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--since` under a second.
    #[error("--since {0:?} is under a second; the apiserver counts whole seconds, pass 1s or more")]
    SinceTooShort(String),
    /// `--since-time` that is not RFC 3339.
    #[error("--since-time {0:?} is not an RFC 3339 time; use a form such as 2026-05-01T12:00:00Z")]
    BadSinceTime(String),
    /// A container regex that does not compile.
    #[error("{flag} {value:?} is not a valid regex: {reason}")]
    BadRegex {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// The regex error.
        reason: String,
    },
    /// An empty namespace name.
    #[error("-n needs a namespace name; use -A for all namespaces")]
    EmptyNamespace,
    /// `--request-timeout` that is not a duration.
    #[error("--request-timeout {value:?} is not a duration: {reason}")]
    BadTimeout {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--max-log-requests 0`.
    #[error("--max-log-requests must be at least 1")]
    BadMaxRequests,
    /// `--relay-url` with `--via direct`.
    #[error("--relay-url goes with --via relay or --via auto, not --via direct")]
    RelayUrlWithDirect,
    /// `--relay-service` or `--relay-namespace` that cannot name a service.
    #[error("{flag} {value:?} is not a service name; use a form such as aether-relay:http")]
    BadRelayService {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
    },
    /// `--max-line-bytes` that is not a size in range.
    #[error(
        "--max-line-bytes {0:?} is not a size from 1 to 64Mi; use forms such as 4096, 64Ki or 1Mi"
    )]
    BadLineCap(String),
}

/// How to reach aether-relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// `--relay-url`: the relay itself, not through the apiserver.
    pub url: Option<String>,
    /// `--relay-token`: the bearer token for `url`.
    pub token: Option<String>,
    /// The relay service for the service-proxy path.
    pub service: RelayService,
}

/// How to reach the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `--kubeconfig`: the one file to read instead of KUBECONFIG or ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--cluster`.
    pub cluster: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// How long to wait for the cluster to answer; `None` waits forever.
    pub request_timeout: Option<Duration>,
}

/// What the environment says about the output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    /// stdout is a terminal.
    pub stdout_is_tty: bool,
    /// `NO_COLOR` is set to something.
    pub no_color: bool,
}

/// Everything `logs` runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which path reads the logs.
    pub via: Via,
    /// How to reach the relay.
    pub relay: RelayOptions,
    /// How to reach the cluster.
    pub cluster: ClusterOptions,
    /// Where to look; `None` for the kubeconfig context's namespace.
    pub namespaces: Option<Namespaces>,
    /// The app, when named (a relay serves apps by name); `None` with `-l`.
    pub app: Option<String>,
    /// The label selector.
    pub selector: String,
    /// Which containers.
    pub containers: ContainerFilter,
    /// Keep streaming.
    pub follow: bool,
    /// History per container; `None` for all.
    pub tail_lines: Option<i64>,
    /// Where history starts.
    pub since: Option<Since>,
    /// Read previous instances.
    pub previous: bool,
    /// Line cap in bytes.
    pub max_line_bytes: usize,
    /// Most streams at once.
    pub max_streams: usize,
    /// How to print.
    pub format: FormatOptions,
    /// Verbosity: 0 quiet, 1 info, 2 and more debug.
    pub verbose: u8,
}

impl Config {
    /// Validates the `logs` flags.
    pub fn from_args(args: &LogsArgs, terminal: Terminal) -> Result<Config, ConfigError> {
        let selector = match (&args.app, &args.selector) {
            (None, None) => return Err(ConfigError::NoSelection),
            (Some(_), Some(_)) => return Err(ConfigError::AppAndSelector),
            (Some(app), None) => {
                if !valid_label_value(app) {
                    return Err(ConfigError::BadApp(app.clone()));
                }
                format!("app={app}")
            }
            (None, Some(selector)) => {
                let selector = selector.trim();
                if selector.is_empty() {
                    return Err(ConfigError::EmptySelector);
                }
                selector.to_string()
            }
        };

        let tail_lines = match args.tail {
            Some(n) if n < -1 => return Err(ConfigError::BadTail(n)),
            Some(-1) => None,
            Some(n) => Some(n),
            None if args.follow => Some(FOLLOW_DEFAULT_TAIL),
            None => None,
        };

        let since = match (&args.since, &args.since_time) {
            (Some(text), _) => {
                let duration = parse_duration(text).map_err(|reason| ConfigError::BadSince {
                    value: text.clone(),
                    reason,
                })?;
                if duration.as_secs() == 0 {
                    return Err(ConfigError::SinceTooShort(text.clone()));
                }
                Some(Since::Seconds(
                    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
                ))
            }
            (None, Some(text)) => {
                let time = DateTime::parse_from_rfc3339(text.trim())
                    .map_err(|_| ConfigError::BadSinceTime(text.clone()))?;
                Some(Since::Time(time.with_timezone(&Utc)))
            }
            (None, None) => None,
        };

        let containers = ContainerFilter {
            include: compile("--container", args.container.as_deref())?,
            exclude: compile("--exclude-container", args.exclude_container.as_deref())?,
            init: args.init_containers,
            ephemeral: args.ephemeral_containers,
        };

        let namespaces = if args.all_namespaces {
            Some(Namespaces::All)
        } else {
            let list: Vec<String> = args
                .namespace
                .iter()
                .map(|n| n.trim().to_string())
                .collect();
            if list.iter().any(String::is_empty) {
                return Err(ConfigError::EmptyNamespace);
            }
            let mut unique: Vec<String> = Vec::new();
            for ns in list {
                if !unique.contains(&ns) {
                    unique.push(ns);
                }
            }
            match unique.len() {
                0 => None,
                1 => unique.pop().map(Namespaces::One),
                _ => Some(Namespaces::Some(unique)),
            }
        };

        let timeout =
            parse_duration(&args.request_timeout).map_err(|reason| ConfigError::BadTimeout {
                value: args.request_timeout.clone(),
                reason,
            })?;
        let cluster = ClusterOptions {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            cluster: args.cluster.clone(),
            user: args.user.clone(),
            request_timeout: (!timeout.is_zero()).then_some(timeout),
        };

        if args.max_log_requests == 0 {
            return Err(ConfigError::BadMaxRequests);
        }
        let max_line_bytes = parse_size(&args.max_line_bytes)
            .filter(|n| (1..=MAX_LINE_CAP).contains(n))
            .ok_or_else(|| ConfigError::BadLineCap(args.max_line_bytes.clone()))?;

        let format = FormatOptions {
            format: match args.output {
                OutputArg::Text => OutputFormat::Text,
                OutputArg::Raw => OutputFormat::Raw,
                OutputArg::Json => OutputFormat::Json,
            },
            color: match args.color {
                ColorArg::Always => true,
                ColorArg::Never => false,
                ColorArg::Auto => terminal.stdout_is_tty && !terminal.no_color,
            },
            timestamps: args.timestamps,
            escape: terminal.stdout_is_tty,
        };

        let via = match args.via {
            ViaArg::Auto => Via::Auto,
            ViaArg::Direct => Via::Direct,
            ViaArg::Relay => Via::Relay,
        };
        let relay_url = args
            .relay_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        if relay_url.is_some() && via == Via::Direct {
            return Err(ConfigError::RelayUrlWithDirect);
        }
        let relay = RelayOptions {
            url: relay_url.map(str::to_string),
            token: args.relay_token.clone().filter(|t| !t.trim().is_empty()),
            service: relay_service(&args.relay_namespace, &args.relay_service)?,
        };

        Ok(Config {
            via,
            relay,
            cluster,
            namespaces,
            app: args.app.clone(),
            selector,
            containers,
            follow: args.follow,
            tail_lines,
            since,
            previous: args.previous,
            max_line_bytes,
            max_streams: args.max_log_requests,
            format,
            verbose: args.verbose,
        })
    }

    /// The engine's query, with `default_namespace` (the context's) when no -n/-A was given.
    pub fn query(&self, default_namespace: &str) -> LogQuery {
        let mut query = LogQuery::new(default_namespace, self.selector.clone());
        if let Some(namespaces) = &self.namespaces {
            query.namespaces = namespaces.clone();
        }
        query.containers = self.containers.clone();
        query.follow = self.follow;
        query.tail_lines = self.tail_lines;
        query.since = self.since;
        query.previous = self.previous;
        query.max_line_bytes = self.max_line_bytes;
        query.max_streams = self.max_streams;
        query
    }
}

/// The relay service from `--relay-namespace` and `--relay-service NAME[:PORT]`.
fn relay_service(namespace: &str, service: &str) -> Result<RelayService, ConfigError> {
    let bad = |flag, value: &str| ConfigError::BadRelayService {
        flag,
        value: value.to_string(),
    };
    let namespace = namespace.trim();
    if !valid_label_value(namespace) {
        return Err(bad("--relay-namespace", namespace));
    }
    let (name, port) = service
        .trim()
        .split_once(':')
        .unwrap_or((service.trim(), "http"));
    if !valid_label_value(name) || !valid_label_value(port) {
        return Err(bad("--relay-service", service));
    }
    Ok(RelayService {
        namespace: namespace.to_string(),
        name: name.to_string(),
        port: port.to_string(),
    })
}

fn compile(flag: &'static str, value: Option<&str>) -> Result<Option<Regex>, ConfigError> {
    value
        .map(|v| {
            Regex::new(v).map_err(|e| ConfigError::BadRegex {
                flag,
                value: v.to_string(),
                reason: e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string(),
            })
        })
        .transpose()
}

/// Whether `value` is a valid Kubernetes label value (and not empty).
pub fn valid_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_alphanumeric();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(edge_ok)
        && bytes.last().is_some_and(edge_ok)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses `30s`, `5m`, `1h30m`, `2d` (units may combine) as the relay does; a bare number
/// is seconds, as kubectl reads `--request-timeout`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => podlogs::duration::parse_duration(text).map_err(|e| e.to_string()),
    }
}

/// Parses a byte size: `4096`, `64Ki`, `1Mi` (also `KiB`, `MiB`, `K`, `M` as powers of 1024).
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: usize = number.parse().ok()?;
    let factor = match unit {
        "" | "B" => 1,
        "K" | "Ki" | "KiB" => 1024,
        "M" | "Mi" | "MiB" => 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        config_on(args, Terminal::default())
    }

    fn config_on(args: &[&str], terminal: Terminal) -> Result<Config, ConfigError> {
        let mut argv = vec!["kubectl-aether", "logs"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        let Command::Logs(logs) = cli.command else {
            panic!("not logs")
        };
        Config::from_args(&logs, terminal)
    }

    #[test]
    fn durations_parse_in_every_form() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn bad_durations_say_why() {
        let unknown = parse_duration("5x").unwrap_err();
        assert!(unknown.contains("unknown unit \"x\""), "{unknown}");
        let missing = parse_duration("1h30").unwrap_err();
        assert!(missing.contains("missing unit after 30"), "{missing}");
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64Ki"), Some(65_536));
        assert_eq!(parse_size("1Mi"), Some(1_048_576));
        assert_eq!(parse_size("1Gb"), None);
    }

    #[test]
    fn app_selects_by_label() {
        assert_eq!(config(&["web"]).unwrap().selector, "app=web");
        assert_eq!(config(&["web"]).unwrap().app.as_deref(), Some("web"));
        assert_eq!(config(&["-l", "tier=web"]).unwrap().app, None);
        assert_eq!(config(&["-l", "tier=web"]).unwrap().selector, "tier=web");
    }

    #[test]
    fn app_must_be_a_label_value() {
        assert!(matches!(config(&["web shop"]), Err(ConfigError::BadApp(_))));
        assert!(matches!(config(&[]), Err(ConfigError::NoSelection)));
        assert!(matches!(
            config(&["web", "-l", "a=b"]),
            Err(ConfigError::AppAndSelector)
        ));
    }

    #[test]
    fn tail_defaults_depend_on_follow() {
        assert_eq!(config(&["web"]).unwrap().tail_lines, None);
        assert_eq!(
            config(&["web", "-f"]).unwrap().tail_lines,
            Some(FOLLOW_DEFAULT_TAIL)
        );
        assert_eq!(
            config(&["web", "-f", "--tail", "-1"]).unwrap().tail_lines,
            None
        );
        assert_eq!(config(&["web", "--tail", "3"]).unwrap().tail_lines, Some(3));
        assert!(matches!(
            config(&["web", "--tail", "-2"]),
            Err(ConfigError::BadTail(-2))
        ));
    }

    #[test]
    fn since_becomes_seconds_and_since_time_a_time() {
        assert_eq!(
            config(&["web", "--since", "1h30m"]).unwrap().since,
            Some(Since::Seconds(5400))
        );
        let since = config(&["web", "--since-time", "2026-05-01T12:00:00Z"])
            .unwrap()
            .since;
        assert_eq!(since.map(|s| matches!(s, Since::Time(_))), Some(true));
        assert!(matches!(
            config(&["web", "--since", "0s"]),
            Err(ConfigError::SinceTooShort(_))
        ));
        assert!(matches!(
            config(&["web", "--since-time", "yesterday"]),
            Err(ConfigError::BadSinceTime(_))
        ));
    }

    #[test]
    fn namespaces_resolve_to_one_some_or_all() {
        assert_eq!(config(&["web"]).unwrap().namespaces, None);
        assert_eq!(
            config(&["web", "-n", "shop"]).unwrap().namespaces,
            Some(Namespaces::One("shop".into()))
        );
        assert_eq!(
            config(&["web", "-n", "a,b", "-n", "a"]).unwrap().namespaces,
            Some(Namespaces::Some(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            config(&["web", "-A"]).unwrap().namespaces,
            Some(Namespaces::All)
        );
        assert!(matches!(
            config(&["web", "-n", "a,,b"]),
            Err(ConfigError::EmptyNamespace)
        ));
    }

    #[test]
    fn context_namespace_fills_in_when_none_is_given() {
        let query = config(&["web"]).unwrap().query("team");
        assert_eq!(query.namespaces, Namespaces::One("team".into()));
    }

    #[test]
    fn container_regexes_are_checked() {
        let cfg = config(&["web", "-c", "^app$", "-E", "side"]).unwrap();
        assert!(cfg.containers.include.is_some_and(|r| r.is_match("app")));
        assert!(matches!(
            config(&["web", "-c", "("]),
            Err(ConfigError::BadRegex { .. })
        ));
    }

    #[test]
    fn color_follows_the_terminal_and_no_color() {
        let tty = Terminal {
            stdout_is_tty: true,
            no_color: false,
        };
        assert!(config_on(&["web"], tty).unwrap().format.color);
        assert!(config_on(&["web"], tty).unwrap().format.escape);
        let no_color = Terminal {
            stdout_is_tty: true,
            no_color: true,
        };
        assert!(!config_on(&["web"], no_color).unwrap().format.color);
        assert!(
            config_on(&["web", "--color", "always"], no_color)
                .unwrap()
                .format
                .color
        );
        assert!(!config(&["web"]).unwrap().format.color);
    }

    #[test]
    fn limits_are_checked() {
        assert!(matches!(
            config(&["web", "--max-log-requests", "0"]),
            Err(ConfigError::BadMaxRequests)
        ));
        assert!(matches!(
            config(&["web", "--max-line-bytes", "0"]),
            Err(ConfigError::BadLineCap(_))
        ));
        assert_eq!(
            config(&["web", "--max-line-bytes", "64Ki"])
                .unwrap()
                .max_line_bytes,
            65_536
        );
        assert_eq!(
            config(&["web", "--request-timeout", "10s"])
                .unwrap()
                .cluster
                .request_timeout,
            Some(Duration::from_secs(10))
        );
    }
}
