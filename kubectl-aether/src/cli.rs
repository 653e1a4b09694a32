//! The command line as clap parses it: raw values, checked only for shape.
//!
//! Nothing here decides defaults that depend on other flags or the environment; that is
//! [`crate::config`]'s job.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Stream the merged logs of every pod of a Kubernetes app.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-aether",
    bin_name = "kubectl aether",
    version,
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream the logs of every pod of an app, merged and tagged.
    Logs(Box<LogsArgs>),
    /// Start a simulated cluster with a sample app and follow its logs (ends on Ctrl-C).
    Demo(DemoArgs),
    /// Print the version.
    Version,
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Output formats on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// `pod container line`, colored; status lines on stderr.
    Text,
    /// The line only.
    Raw,
    /// One JSON event per line (lines and status events), for programs.
    Json,
}

/// Which path reads the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
    /// Directly when your RBAC allows it, otherwise through the relay.
    Auto,
    /// Read pods with your own credentials.
    Direct,
    /// Through aether-relay (the service proxy, or --relay-url).
    Relay,
}

/// When to color.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `kubectl aether logs` flags.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Without --tail, each container starts with all of its log when not following (the command \
answers \"what did the app say\"), and with its last 10 lines when following (so joining a \
long-running app shows recent context, not hours of history). New pods and restarted \
containers are always read from their first line.

Log lines go to stdout; status lines to stderr: `+ pod › container` (stream started), `-` (ended, \
pod deleted), `~` (restarted, reconnected), `!` (error, possible gap), `*` (waiting).

Exit status: 0 when done (or stdout was closed), 1 on errors, 2 on bad flags, 130 on Ctrl-C.")]
pub struct LogsArgs {
    /// The app: selects pods labelled app=APP.
    pub app: Option<String>,

    /// Label selector instead of app=APP (for example `tier=web,track!=canary`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,

    /// Keep streaming: new lines, new pods, restarted containers.
    #[arg(short, long)]
    pub follow: bool,

    /// Lines of each container's recent log to start with; -1 for all
    /// [default: -1, or 10 with --follow].
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub tail: Option<i64>,

    /// Only lines newer than this, such as 30s, 5m, 1h30m or 2d.
    #[arg(long, value_name = "DURATION", conflicts_with = "since_time")]
    pub since: Option<String>,

    /// Only lines at or after this RFC 3339 time, such as 2026-05-01T12:00:00Z.
    #[arg(long, value_name = "TIME")]
    pub since_time: Option<String>,

    /// Only containers whose name matches this regex.
    #[arg(short = 'c', long = "container", value_name = "REGEX")]
    pub container: Option<String>,

    /// Never containers whose name matches this regex (wins over -c).
    #[arg(short = 'E', long = "exclude-container", value_name = "REGEX")]
    pub exclude_container: Option<String>,

    /// Include init containers.
    #[arg(long)]
    pub init_containers: bool,

    /// Include ephemeral (debug) containers.
    #[arg(long)]
    pub ephemeral_containers: bool,

    /// Read the previous instance of each container (the one before its last restart).
    #[arg(short = 'p', long, conflicts_with = "follow")]
    pub previous: bool,

    /// Print each line's time (as the kubelet recorded it).
    #[arg(long)]
    pub timestamps: bool,

    /// Output format.
    #[arg(
        short,
        long,
        value_enum,
        env = "AETHER_LOGS_FORMAT",
        default_value = "text"
    )]
    pub output: OutputArg,

    /// When to color pod and container names (NO_COLOR turns auto off).
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorArg,

    /// Namespace to look in; repeat or use commas for several [default: the context's].
    #[arg(short, long, value_delimiter = ',', action = ArgAction::Append)]
    pub namespace: Vec<String>,

    /// Look in every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,

    /// Kubeconfig cluster to use.
    #[arg(long)]
    pub cluster: Option<String>,

    /// Kubeconfig user to use.
    #[arg(long)]
    pub user: Option<String>,

    /// Kubeconfig file (instead of KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// How long to wait for the cluster to answer (such as 10s; 0 waits forever). Does not
    /// limit how long logs stream.
    #[arg(long, value_name = "DURATION", default_value = "0")]
    pub request_timeout: String,

    /// Most log streams open at once.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_log_requests: usize,

    /// Longest line kept, in bytes (suffixes Ki, Mi); the rest of a longer line is dropped.
    #[arg(long, value_name = "SIZE", default_value = "1Mi")]
    pub max_line_bytes: String,

    /// Which path reads the logs: directly, or through aether-relay.
    #[arg(long, value_enum, default_value = "auto")]
    pub via: ViaArg,

    /// Talk to a relay at this URL instead of through the apiserver (AETHER_API_BASE is
    /// read too).
    #[arg(long, value_name = "URL", env = "AETHER_RELAY_URL")]
    pub relay_url: Option<String>,

    /// Bearer token for --relay-url (a token bound to the audience aether-relay).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "AETHER_RELAY_TOKEN",
        hide_env_values = true
    )]
    pub relay_token: Option<String>,

    /// Namespace of the relay service.
    #[arg(long, value_name = "NAMESPACE", default_value = "aether-system")]
    pub relay_namespace: String,

    /// The relay service and its port name, as the service proxy names them.
    #[arg(long, value_name = "NAME[:PORT]", default_value = "aether-relay:http")]
    pub relay_service: String,

    /// More detail on stderr (-v: what happens, -vv: debugging).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}

/// `kubectl aether demo` arguments.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Extra `logs` flags, such as `-o json`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "LOGS FLAGS"
    )]
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn namespaces_repeat_and_split_on_commas() {
        let cli =
            Cli::try_parse_from(["kubectl-aether", "logs", "web", "-n", "a,b", "-n", "c"]).unwrap();
        let Command::Logs(args) = cli.command else {
            panic!("not logs")
        };
        assert_eq!(args.namespace, ["a", "b", "c"]);
    }

    #[test]
    fn demo_passes_flags_through() {
        let cli = Cli::try_parse_from(["kubectl-aether", "demo", "-o", "json"]).unwrap();
        let Command::Demo(args) = cli.command else {
            panic!("not demo")
        };
        assert_eq!(args.args, ["-o", "json"]);
    }

    #[test]
    fn tail_accepts_minus_one() {
        let cli = Cli::try_parse_from(["kubectl-aether", "logs", "web", "--tail", "-1"]).unwrap();
        let Command::Logs(args) = cli.command else {
            panic!("not logs")
        };
        assert_eq!(args.tail, Some(-1));
    }
}
