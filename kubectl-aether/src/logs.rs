//! `kubectl aether logs`: choose where events come from, then print them: [`run`].

use std::io::Write;

use std::future::Future;

use anyhow::Context as _;
use futures::stream::BoxStream;
use podlogs::LogEvent;
use podlogs::format::Formatter;

use crate::config::Config;
use crate::output::{self, Outcome};
use crate::relay::{Endpoint, RelayRequest};
use crate::via::{ChooseError, Path, Via};
use crate::{direct, kubeconfig, relay, via};

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
    let mut events = open_events(config, status).await?;
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

/// Picks the path (`--relay-url`, `--via`, or what the user may do) and opens its events.
async fn open_events(
    config: &Config,
    status: &mut dyn Write,
) -> anyhow::Result<BoxStream<'static, LogEvent>> {
    if let Some(url) = &config.relay.url {
        say(
            config,
            status,
            &format!("reading through the relay at {url} (--relay-url)"),
        );
        let endpoint = Endpoint::Url {
            client: relay::url_client(url, config.relay.token.as_deref())?,
            url: url.clone(),
        };
        let request = RelayRequest::from_config(config, None)?;
        return limited(
            config,
            relay::events(endpoint, request, config.max_line_bytes),
        )
        .await;
    }

    let connection = kubeconfig::connect(&config.cluster).await?;
    let path = match config.via {
        Via::Direct => {
            say(config, status, "reading pods directly (--via direct)");
            Path::Direct
        }
        Via::Relay => {
            say(
                config,
                status,
                "reading through the relay service (--via relay)",
            );
            Path::RelayProxy
        }
        Via::Auto => {
            let namespaces = config
                .namespaces
                .clone()
                .unwrap_or_else(|| podlogs::Namespaces::One(connection.namespace.clone()));
            let choosing = via::choose(
                &connection.client,
                &namespaces,
                config.follow,
                &config.relay.service,
                relay::possible(config),
            );
            let (path, why) = match limited(config, async { Ok(choosing.await) }).await? {
                Ok(choice) => choice,
                Err(ChooseError::Review(kube::Error::Api(status))) => (
                    Path::Direct,
                    format!(
                        "the apiserver answers no access reviews ({})",
                        status.message
                    ),
                ),
                Err(ChooseError::Review(err)) => {
                    return Err(
                        anyhow::Error::new(err).context(direct::unreachable(&connection.url))
                    );
                }
                Err(denied) => return Err(denied.into()),
            };
            let what = match path {
                Path::Direct => "reading pods directly",
                Path::RelayProxy => "reading through the relay service",
            };
            say(config, status, &format!("{what}: {why}"));
            path
        }
    };

    match path {
        Path::Direct => direct::events(config, connection).await,
        Path::RelayProxy => {
            let request = RelayRequest::from_config(config, Some(&connection.namespace))?;
            let endpoint = Endpoint::ServiceProxy {
                client: connection.client,
                namespace: config.relay.service.namespace.clone(),
                service: config.relay.service.proxy_id(),
            };
            limited(
                config,
                relay::events(endpoint, request, config.max_line_bytes),
            )
            .await
        }
    }
}

/// Prints which path was taken and why, with -v.
fn say(config: &Config, status: &mut dyn Write, text: &str) {
    if config.verbose > 0 {
        let _ = writeln!(status, "aether: {text}");
    }
}

/// Runs `step` within `--request-timeout`, when one is set.
async fn limited<T>(
    config: &Config,
    step: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match config.cluster.request_timeout {
        Some(timeout) => tokio::time::timeout(timeout, step).await.with_context(|| {
            format!(
                "no answer within {}s; check that the cluster and the relay are up, or raise \
                 --request-timeout",
                timeout.as_secs()
            )
        })?,
        None => step.await,
    }
}
