//! What to read: which pods, which containers, from when, and how much.
//!
//! A [`LogQuery`] is the resolved configuration the engine runs on. Callers build it once
//! (the plugin from its flags, the relay from a request) and hand it down; nothing below
//! reaches back for a flag. This module validates nothing that the types already rule out.

use chrono::{DateTime, Utc};
use regex::Regex;

/// Lines longer than this are cut and marked truncated unless the caller says otherwise.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1024 * 1024;

/// How many container log streams may be open at once unless the caller says otherwise.
pub const DEFAULT_MAX_STREAMS: usize = 200;

/// Where to look for pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// One namespace.
    One(String),
    /// Several namespaces, each watched on its own.
    Some(Vec<String>),
    /// Every namespace (one cluster-wide watch).
    All,
}

/// Which containers of a selected pod to tail.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    /// Only containers whose name matches (unanchored, as `regex::Regex::is_match`).
    pub include: Option<Regex>,
    /// Never containers whose name matches; wins over `include`.
    pub exclude: Option<Regex>,
    /// Tail init containers too.
    pub init: bool,
    /// Tail ephemeral (debug) containers too.
    pub ephemeral: bool,
}

/// Where history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Lines from the last N seconds (`sinceSeconds`).
    Seconds(i64),
    /// Lines at or after this time (`sinceTime`, which the apiserver truncates to seconds).
    Time(DateTime<Utc>),
}

/// Everything the engine needs to know about what to read.
#[derive(Debug, Clone)]
pub struct LogQuery {
    /// Where to look for pods.
    pub namespaces: Namespaces,
    /// A Kubernetes label selector, such as `app=web`.
    pub selector: String,
    /// Which containers of each pod.
    pub containers: ContainerFilter,
    /// Keep streaming new lines, pick up new pods and restarts.
    pub follow: bool,
    /// How many of the most recent lines of each container to start with; `None` for all.
    pub tail_lines: Option<i64>,
    /// Where history starts; `None` for the whole log.
    pub since: Option<Since>,
    /// Read the previous instance of each container instead of the current one.
    pub previous: bool,
    /// Lines longer than this many bytes are cut and marked truncated.
    pub max_line_bytes: usize,
    /// How many container log streams may be open at once.
    pub max_streams: usize,
}

impl LogQuery {
    /// A query for the pods matching `selector` in one namespace, everything else default:
    /// no follow, all history, every regular container.
    pub fn new(namespace: impl Into<String>, selector: impl Into<String>) -> Self {
        LogQuery {
            namespaces: Namespaces::One(namespace.into()),
            selector: selector.into(),
            containers: ContainerFilter::default(),
            follow: false,
            tail_lines: None,
            since: None,
            previous: false,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}
