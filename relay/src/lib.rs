//! aether-relay: serves the merged logs of an app over HTTP from inside the cluster.
//!
//! The entry point is [`serve`], which runs the HTTP server on a listener until a shutdown
//! future resolves. [`cli`] turns flags into a [`RelayConfig`] and a kube client source. The
//! log engine itself lives in `podlogs`; this crate adds the HTTP server, authorization,
//! limits, metrics and the OpenAPI document, and nothing that reads logs on its own.

pub mod auth;
pub mod cli;
pub mod config;

pub mod encode;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod server;
pub mod stream;
#[cfg(feature = "websocket")]
mod ws;

pub use cli::{ClusterSource, connect};
pub use config::{AuthMode, RelayConfig};
pub use server::{ServeError, serve};
