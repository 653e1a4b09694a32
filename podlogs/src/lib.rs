//! The log engine shared by the `kubectl-aether` plugin and `aether-relay`.
//!
//! It finds the pods of an app, tails each selected container, merges the tails into one
//! stream of [`LogEvent`]s and formats them. It knows neither a terminal nor an HTTP server:
//! callers pass in the client and the writers.

pub mod event;

pub use event::{EventKind, LogEvent, LogLine, SCHEMA_VERSION, StatusEvent};
pub mod query;

pub use query::{ContainerFilter, LogQuery, Namespaces, Since};
