//! The log engine shared by the `kubectl-aether` plugin and `aether-relay`.
//!
//! It finds the pods of an app, tails each selected container, merges the tails into one
//! stream of [`LogEvent`]s and formats them. It knows neither a terminal nor an HTTP server:
//! callers pass in the client and the writers. Entry point: [`open`].
//!
//! ```no_run
//! # async fn example(client: kube::Client) -> Result<(), podlogs::Error> {
//! use futures::StreamExt;
//! let mut query = podlogs::LogQuery::new("shop", "app=web");
//! query.follow = true;
//! let mut events = podlogs::open(client, query).await?;
//! while let Some(event) = events.next().await {
//!     print!("{}", event.to_ndjson());
//! }
//! # Ok(())
//! # }
//! ```

pub mod event;
pub mod format;
pub mod lines;
pub mod query;
pub mod select;

mod backoff;
mod discover;
mod merge;
mod stream;
mod tail;

pub use event::{EventKind, LogEvent, LogLine, SCHEMA_VERSION, StatusEvent};
pub use format::{FormatOptions, Formatter, OutputFormat};
pub use query::{ContainerFilter, LogQuery, Namespaces, Since};
pub use stream::{Error, LogStream, open};
