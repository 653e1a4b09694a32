//! The relay's counters and gauges, written in the Prometheus text exposition format by
//! [`Metrics::render`]. Only the server updates them; this module does no IO.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How an authentication or authorization check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthOutcome {
    /// The caller may read the app (decided by the apiserver).
    Allowed,
    /// The caller may read the app (a recent decision reused).
    AllowedCached,
    /// The caller is known but may not read the app.
    Denied,
    /// No token, or a token the apiserver did not accept for the relay's audience.
    Unauthenticated,
    /// The apiserver could not decide.
    Error,
}

impl AuthOutcome {
    const ALL: [AuthOutcome; 5] = [
        AuthOutcome::Allowed,
        AuthOutcome::AllowedCached,
        AuthOutcome::Denied,
        AuthOutcome::Unauthenticated,
        AuthOutcome::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::Allowed => "allowed",
            AuthOutcome::AllowedCached => "allowed_cached",
            AuthOutcome::Denied => "denied",
            AuthOutcome::Unauthenticated => "unauthenticated",
            AuthOutcome::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters and gauges shared by every connection.
#[derive(Debug, Default)]
pub struct Metrics {
    client_streams_open: AtomicI64,
    client_streams: AtomicU64,
    upstream_streams_open: AtomicI64,
    upstream_streams: AtomicU64,
    lines_sent: AtomicU64,
    bytes_sent: AtomicU64,
    heartbeats_sent: AtomicU64,
    auth: [AtomicU64; 5],
    errors: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    /// A client stream opened; the gauge goes down again when `closed` is called.
    pub fn client_stream_opened(&self) {
        self.client_streams_open.fetch_add(1, Ordering::Relaxed);
        self.client_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// A client stream closed.
    pub fn client_stream_closed(&self) {
        self.client_streams_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A container log stream started upstream.
    pub fn upstream_opened(&self) {
        self.upstream_streams_open.fetch_add(1, Ordering::Relaxed);
        self.upstream_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// `count` container log streams ended upstream.
    pub fn upstream_closed(&self, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.upstream_streams_open
            .fetch_sub(count, Ordering::Relaxed);
    }

    /// Log lines and bytes written to a client.
    pub fn sent(&self, lines: u64, bytes: u64) {
        self.lines_sent.fetch_add(lines, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A heartbeat was written to a client.
    pub fn heartbeat_sent(&self) {
        self.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// An authentication or authorization decision.
    pub fn auth_decision(&self, outcome: AuthOutcome) {
        self.auth[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered with an error status.
    pub fn error(&self, status: u16) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(status).or_default() += 1;
        }
    }

    /// Client streams open now.
    pub fn client_streams_open(&self) -> i64 {
        self.client_streams_open.load(Ordering::Relaxed)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        gauge(
            &mut out,
            "aether_relay_client_streams_open",
            "Client log streams open now.",
            self.client_streams_open.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "aether_relay_client_streams_total",
            "Client log streams opened.",
            &[("", load(&self.client_streams))],
        );
        gauge(
            &mut out,
            "aether_relay_upstream_streams_open",
            "Container log streams open to the apiserver now.",
            self.upstream_streams_open.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "aether_relay_upstream_streams_total",
            "Container log streams opened to the apiserver.",
            &[("", load(&self.upstream_streams))],
        );
        counter(
            &mut out,
            "aether_relay_lines_sent_total",
            "Log lines written to clients.",
            &[("", load(&self.lines_sent))],
        );
        counter(
            &mut out,
            "aether_relay_bytes_sent_total",
            "Bytes of log streams written to clients.",
            &[("", load(&self.bytes_sent))],
        );
        counter(
            &mut out,
            "aether_relay_heartbeats_sent_total",
            "Heartbeat events written to clients.",
            &[("", load(&self.heartbeats_sent))],
        );

        let auth: Vec<(String, u64)> = AuthOutcome::ALL
            .iter()
            .map(|o| {
                (
                    format!("outcome=\"{}\"", o.as_str()),
                    load(&self.auth[o.index()]),
                )
            })
            .collect();
        let auth: Vec<(&str, u64)> = auth.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            &mut out,
            "aether_relay_auth_decisions_total",
            "Authentication and authorization decisions by outcome.",
            &auth,
        );

        let errors: Vec<(String, u64)> = self
            .errors
            .lock()
            .map(|e| {
                e.iter()
                    .map(|(code, n)| (format!("code=\"{code}\""), *n))
                    .collect()
            })
            .unwrap_or_default();
        let errors: Vec<(&str, u64)> = errors.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            &mut out,
            "aether_relay_errors_total",
            "Requests answered with an error, by HTTP status.",
            &errors,
        );
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_help_type_and_labels() {
        let m = Metrics::default();
        m.client_stream_opened();
        m.sent(3, 120);
        m.auth_decision(AuthOutcome::Denied);
        m.error(429);
        let text = m.render();
        assert!(
            text.contains("# TYPE aether_relay_lines_sent_total counter\n"),
            "{text}"
        );
        assert!(text.contains("aether_relay_lines_sent_total 3\n"), "{text}");
        assert!(
            text.contains("aether_relay_bytes_sent_total 120\n"),
            "{text}"
        );
        assert!(
            text.contains("aether_relay_client_streams_open 1\n"),
            "{text}"
        );
        assert!(
            text.contains("aether_relay_auth_decisions_total{outcome=\"denied\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("aether_relay_errors_total{code=\"429\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn gauges_go_back_down() {
        let m = Metrics::default();
        m.client_stream_opened();
        m.client_stream_closed();
        m.upstream_opened();
        m.upstream_opened();
        m.upstream_closed(2);
        let text = m.render();
        assert!(
            text.contains("aether_relay_client_streams_open 0\n"),
            "{text}"
        );
        assert!(
            text.contains("aether_relay_upstream_streams_open 0\n"),
            "{text}"
        );
        assert!(
            text.contains("aether_relay_upstream_streams_total 2\n"),
            "{text}"
        );
    }
}
