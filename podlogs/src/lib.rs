//! The log engine shared by the `kubectl-aether` plugin and `aether-relay`.
//!
//! It finds the pods of an app, tails each selected container, merges the tails into one
//! stream of [`LogEvent`]s and formats them. It knows neither a terminal nor an HTTP server:
//! callers pass in the client and the writers. Entry point: [`open`].
//!
//! What a [`LogStream`] carries, in order:
//!
//! - `started` once per container stream; `waiting` for containers that cannot be read yet
//!   (and, with follow, once when no pod matches yet); `error` for a namespace that may not be
//!   listed while others may;
//! - the history (lines before the call, bounded by `tail_lines` and `since`) in timestamp
//!   order across every pod and container;
//! - with follow, live lines as they arrive, plus `restarted` (a new container instance, read
//!   from its first line), `reconnected` (a stream reopened without loss or duplicates), `gap`
//!   (lines may be missing: a reopened stream could not prove that nothing was missed, or the
//!   instance or the pod went before the rest could be read), `ended` (the container
//!   stopped; the message says how), `pod_deleted` and `error` (one stream failed; the others
//!   go on).
//!
//! Without follow the stream ends when the history is out. Dropping it stops every task.
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

pub mod duration;
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
