//! The `kubesim` binary: runs a scenario (or the built-in demo) on 127.0.0.1, writes a
//! kubeconfig for it, prints the URL once ready, and serves until killed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kubesim::{Scenario, Sim, SimOptions};

/// A simulated Kubernetes API server for tests, demos and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "kubesim", version)]
struct Args {
    /// Scenario file (JSON, see the README); the built-in demo when absent.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Serve plain HTTP instead of HTTPS. kubectl sends no token over plain HTTP, so
    /// requests without one are served as --user.
    #[arg(long)]
    plain_http: bool,
    /// The user of the kubeconfig's current context (default: the scenario's first user).
    #[arg(long)]
    user: Option<String>,
    /// Serve GET /kubesim/truth/{ns}/{pod}/{container} and GET /kubesim/requests (NDJSON).
    #[arg(long)]
    truth_endpoint: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();

    let scenario = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading scenario {}", path.display()))?;
            Scenario::from_json(&text).with_context(|| format!("loading {}", path.display()))?
        }
        None => Scenario::demo(),
    };
    let user = match &args.user {
        Some(user) => user.clone(),
        None => scenario
            .users
            .first()
            .map(|u| u.name.clone())
            .context("the scenario has no users; add one or pass --user")?,
    };
    let options = SimOptions {
        tls: !args.plain_http,
        port: args.port,
        anonymous_user: args.plain_http.then(|| user.clone()),
        truth_endpoint: args.truth_endpoint,
        ..SimOptions::default()
    };
    let sim = Sim::start(scenario, options)
        .await
        .context("starting kubesim")?;
    if sim.token(&user).is_none() {
        anyhow::bail!("user {user} is not in the scenario; pass one of its users with --user");
    }
    if let Some(path) = &args.kubeconfig {
        sim.write_kubeconfig(path, &user)
            .with_context(|| format!("writing kubeconfig {}", path.display()))?;
    }

    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", sim.url()).context("writing the URL to stdout")?;
    stdout.flush().context("flushing stdout")?;

    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    sim.shutdown().await;
    Ok(())
}
