//! The direct path: the engine runs in the plugin and reads the apiserver with the user's
//! own credentials: [`events`].

use anyhow::Context as _;
use futures::StreamExt;
use futures::stream::BoxStream;
use podlogs::LogEvent;

use crate::config::Config;
use crate::kubeconfig::Connection;

/// Lists the pods through `connection` and returns the merged events.
pub async fn events(
    config: &Config,
    connection: Connection,
) -> anyhow::Result<BoxStream<'static, LogEvent>> {
    let query = config.query(&connection.namespace);
    tracing::debug!(app = ?config.app, selector = %query.selector, namespaces = ?query.namespaces,
        follow = query.follow, "reading logs directly from the apiserver");

    let url = connection.url;
    let opening = podlogs::open(connection.client, query);
    let opened = match config.cluster.request_timeout {
        Some(timeout) => tokio::time::timeout(timeout, opening)
            .await
            .with_context(|| {
                format!(
                    "the cluster did not answer within {}s; check that it is up, or raise \
                 --request-timeout",
                    timeout.as_secs()
                )
            })?,
        None => opening.await,
    };
    match opened {
        Ok(stream) => Ok(stream.boxed()),
        Err(err) => Err(explain(err, &url)),
    }
}

/// Adds what to do to the engine's errors.
fn explain(err: podlogs::Error, url: &str) -> anyhow::Error {
    match err {
        podlogs::Error::NoPods { .. } => {
            anyhow::anyhow!("{err}, or -A; with -f the command waits for pods to appear")
        }
        podlogs::Error::TooManyStreams { .. } => {
            anyhow::anyhow!("{err} (--max-log-requests)")
        }
        podlogs::Error::Api(kube::Error::Api(status)) => anyhow::anyhow!(
            "the apiserver refused to list pods: {}; check the selector and the namespace",
            status.message
        ),
        podlogs::Error::Api(other) => anyhow::Error::new(other).context(unreachable(url)),
        forbidden @ podlogs::Error::Forbidden { .. } => anyhow::Error::new(forbidden),
    }
}

/// What to say when the cluster at `url` cannot be reached.
pub fn unreachable(url: &str) -> String {
    format!(
        "cannot reach the cluster at {url}; check the kubeconfig context (--context) and that \
         the cluster is up"
    )
}
