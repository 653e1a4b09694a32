//! `kubectl aether logs`: choose where events come from, then print them: [`run`].

use std::io::Write;

use podlogs::format::Formatter;

use crate::config::{Config, Source};
use crate::direct;
use crate::output::{self, Outcome};

/// Exit status of a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything printed (or stdout closed).
    Success,
    /// Some streams failed.
    StreamErrors,
    /// Ctrl-C.
    Interrupted,
}

/// Runs `logs` with `config`, writing lines to `out` and status to `status`.
pub async fn run(
    config: &Config,
    out: &mut dyn Write,
    status: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let mut events = match config.source {
        Source::Direct => direct::events(config).await?,
    };
    let mut formatter = Formatter::new(config.format);
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: never interrupted from here.
            std::future::pending::<()>().await;
        }
    };
    let outcome = output::print(&mut events, &mut formatter, out, status, interrupt).await?;
    Ok(match outcome {
        Outcome::Done { errors } if errors > 0 && !config.follow => Exit::StreamErrors,
        Outcome::Done { .. } | Outcome::Closed => Exit::Success,
        Outcome::Interrupted => Exit::Interrupted,
    })
}
