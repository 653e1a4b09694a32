//! `kubectl-aether`: the kubectl plugin that streams the merged logs of every pod of an app.
//!
//! Flags ([`cli`]) become a validated [`config::Config`]; [`logs`] picks where events come
//! from and [`output`] prints them. The terminal lives here; the engine is `podlogs`.

mod cli;
mod config;
mod demo;
mod direct;
mod kubeconfig;
mod logs;
mod output;
mod relay;
mod via;

use std::io::{BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, LogsArgs};
use crate::config::{Config, Terminal};
use crate::logs::Exit;

/// Exit status for errors at run time.
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit status for bad flags (as clap uses).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit status after Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// Buffer for stdout; flushed whenever the stream is idle.
const STDOUT_BUFFER: usize = 64 * 1024;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    match cli.command {
        Command::Version => {
            println!("kubectl-aether {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(
                shell,
                &mut command,
                "kubectl-aether",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Logs(mut args) => {
            if args.relay_url.is_none() {
                // The older name of AETHER_RELAY_URL, still read.
                args.relay_url = std::env::var("AETHER_API_BASE").ok();
            }
            run_async(|| logs_command(*args))
        }
        Command::Demo(args) => run_async(|| demo::run(args.args, terminal())),
    }
}

fn run_async<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(f()),
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Parses, validates and runs `logs`.
async fn logs_command(args: LogsArgs) -> ExitCode {
    let config = match Config::from_args(&args, terminal()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing(config.verbose);
    run_logs(&config, false).await
}

/// What the environment says about stdout.
fn terminal() -> Terminal {
    Terminal {
        stdout_is_tty: std::io::stdout().is_terminal(),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    }
}

/// Runs `logs` with stdout and stderr, and turns the result into an exit status; Ctrl-C is
/// a success when `interrupt_is_success` (the demo ends that way).
pub(crate) async fn run_logs(config: &Config, interrupt_is_success: bool) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(STDOUT_BUFFER, stdout.lock());
    let mut status = std::io::stderr();
    let result = logs::run(config, &mut out, &mut status).await;
    let _ = out.flush();
    match result {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::StreamErrors) => ExitCode::from(EXIT_ERROR),
        Ok(Exit::Interrupted) if interrupt_is_success => ExitCode::SUCCESS,
        Ok(Exit::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        Err(err) => {
            let _ = writeln!(status, "error: {}", render_error(&err));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The error and its causes on one line, each said once: library errors often repeat their
/// cause in their own message, so a cause already contained in the message before it is
/// left out.
fn render_error(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|prev| prev.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Diagnostics on stderr: nothing by default, more with each -v (`RUST_LOG` overrides).
pub(crate) fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "podlogs=error,kubectl_aether=error",
        1 => "warn,podlogs=info,kubectl_aether=info",
        2 => "warn,podlogs=debug,kubectl_aether=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("ServiceError: client error (Connect)")]
    struct Repeating(#[source] Inner);

    #[test]
    fn causes_already_in_the_message_are_said_once() {
        let err = anyhow::Error::new(Repeating(Inner)).context("cannot reach the cluster");
        assert_eq!(
            render_error(&err),
            "cannot reach the cluster: ServiceError: client error (Connect)"
        );
    }
}
