//! `kubectl aether demo`: a simulated cluster with a sample app, followed through the real
//! client path (kube-rs over TLS, the same code as `logs`): [`run`].
//!
//! This is the one place where shipped code starts kubesim.

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::{Config, Terminal};

/// The app of the demo scenario and the user whose kubeconfig context is used.
const DEMO_APP: &str = "web";
const DEMO_USER: &str = "admin";

/// Starts the simulator, follows `web` with `extra` logs flags until Ctrl-C, then stops it.
pub async fn run(extra: Vec<String>, terminal: Terminal) -> ExitCode {
    let sim = match kubesim::Sim::start(kubesim::Scenario::demo(), kubesim::SimOptions::default())
        .await
    {
        Ok(sim) => sim,
        Err(err) => {
            eprintln!("error: cannot start the simulated cluster: {err}");
            return ExitCode::from(crate::EXIT_ERROR);
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("error: cannot create a directory for the demo kubeconfig: {err}");
            return ExitCode::from(crate::EXIT_ERROR);
        }
    };
    let kubeconfig = dir.path().join("kubeconfig");
    if let Err(err) = sim.write_kubeconfig(&kubeconfig, DEMO_USER) {
        eprintln!("error: cannot write the demo kubeconfig: {err}");
        return ExitCode::from(crate::EXIT_ERROR);
    }

    let mut argv: Vec<String> = ["kubectl-aether", "logs", DEMO_APP, "-f", "--kubeconfig"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.push(kubeconfig.display().to_string());
    argv.extend(extra);
    let args = match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Logs(args),
        }) => args,
        Ok(_) => {
            eprintln!("error: the demo passes its flags to logs; give logs flags only");
            return ExitCode::from(crate::EXIT_USAGE);
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    let config = match Config::from_args(&args, terminal) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    crate::init_tracing(config.verbose);
    eprintln!(
        "* demo: a simulated cluster at {} runs the app {DEMO_APP} (3 pods); following its \
         logs with `kubectl aether logs {DEMO_APP} -f`; Ctrl-C ends",
        sim.url()
    );

    let code = crate::run_logs(&config, true).await;
    sim.shutdown().await;
    code
}
