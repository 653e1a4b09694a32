//! The event stream every output speaks: log lines, status events and heartbeats.
//!
//! One schema serves the relay's NDJSON responses, the plugin's `-o json` and the tests. It
//! is versioned by [`SCHEMA_VERSION`]; a change that renames or removes a field raises it.
//! This module only describes events; it neither produces nor prints them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of the NDJSON event schema. Additive changes (a new optional field, a new event
/// kind) keep it; renaming or removing anything raises it.
pub const SCHEMA_VERSION: u32 = 1;

/// One item of the merged stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogEvent {
    /// A line a container wrote.
    Log(LogLine),
    /// Something happened to a stream, a container or a pod.
    Event(StatusEvent),
    /// Nothing to say for a while; keeps idle connections open.
    Heartbeat {
        /// When the heartbeat was sent.
        #[serde(with = "nanos")]
        time: DateTime<Utc>,
    },
}

/// A line a container wrote, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the container runtime received the line (the kubelet's timestamp).
    #[serde(with = "nanos")]
    pub time: DateTime<Utc>,
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The text, decoded as UTF-8 with invalid bytes replaced by U+FFFD. Not escaped: the
    /// formatter escapes control characters for terminals.
    pub line: String,
    /// The line was longer than the configured cap; the rest was dropped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

/// A change in the state of a stream, a container or a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// When the engine noticed it.
    #[serde(with = "nanos")]
    pub time: DateTime<Utc>,
    /// Namespace of the pod, empty for events about the whole stream.
    #[serde(default)]
    pub namespace: String,
    /// Pod name, empty for events about the whole stream.
    #[serde(default)]
    pub pod: String,
    /// Container name, absent for events about a whole pod or the whole stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What happened.
    pub event: EventKind,
    /// Human-readable detail, such as an exit code and reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The kinds of [`StatusEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A container's log stream started.
    Started,
    /// A container's log stream ended (the container stopped, or the pod went away).
    Ended,
    /// A container restarted; the message carries the exit code and reason.
    Restarted,
    /// A stream was cut and reopened where it left off.
    Reconnected,
    /// Lines may be missing between the last line before this event and the next one.
    Gap,
    /// A pod that was followed was deleted.
    PodDeleted,
    /// No pods match yet; the engine keeps watching.
    Waiting,
    /// One stream failed; the others go on.
    Error,
    /// The whole stream is ending (for example the server is shutting down).
    Closing,
}

impl EventKind {
    /// Every kind, in the order the schema lists them.
    pub const ALL: [EventKind; 9] = [
        EventKind::Started,
        EventKind::Ended,
        EventKind::Restarted,
        EventKind::Reconnected,
        EventKind::Gap,
        EventKind::PodDeleted,
        EventKind::Waiting,
        EventKind::Error,
        EventKind::Closing,
    ];

    /// The name used in the schema, such as `pod_deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Ended => "ended",
            EventKind::Restarted => "restarted",
            EventKind::Reconnected => "reconnected",
            EventKind::Gap => "gap",
            EventKind::PodDeleted => "pod_deleted",
            EventKind::Waiting => "waiting",
            EventKind::Error => "error",
            EventKind::Closing => "closing",
        }
    }
}

impl LogEvent {
    /// The time the event carries.
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            LogEvent::Log(l) => l.time,
            LogEvent::Event(e) => e.time,
            LogEvent::Heartbeat { time } => *time,
        }
    }

    /// Serializes the event as one NDJSON line, with its trailing newline.
    pub fn to_ndjson(&self) -> String {
        // Serializing these types cannot fail: every field is a string, a bool or a time.
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Formats a time the way the kubelet does: RFC 3339, UTC, always nine fraction digits.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn is_false(b: &bool) -> bool {
    !*b
}

mod nanos {
    use super::*;

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_time(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
            + chrono::Duration::milliseconds(ms as i64)
    }

    #[test]
    fn log_line_serializes_with_nine_fraction_digits() {
        let ev = LogEvent::Log(LogLine {
            time: at(120),
            namespace: "shop".into(),
            pod: "web-7d9c4-x2".into(),
            container: "app".into(),
            line: "GET / 200".into(),
            truncated: false,
        });
        assert_eq!(
            ev.to_ndjson(),
            "{\"type\":\"log\",\"time\":\"2026-05-01T12:00:00.120000000Z\",\"namespace\":\"shop\",\
             \"pod\":\"web-7d9c4-x2\",\"container\":\"app\",\"line\":\"GET / 200\"}\n"
        );
    }

    #[test]
    fn status_event_round_trips() {
        let ev = LogEvent::Event(StatusEvent {
            time: at(5),
            namespace: "shop".into(),
            pod: "web-0".into(),
            container: Some("app".into()),
            event: EventKind::Restarted,
            message: "exit code 137 (OOMKilled)".into(),
        });
        let text = ev.to_ndjson();
        assert!(text.contains("\"event\":\"restarted\""), "{text}");
        let back: LogEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn heartbeat_has_only_type_and_time() {
        let ev = LogEvent::Heartbeat { time: at(0) };
        assert_eq!(
            ev.to_ndjson(),
            "{\"type\":\"heartbeat\",\"time\":\"2026-05-01T12:00:00.000000000Z\"}\n"
        );
    }

    #[test]
    fn event_kind_names_match_serde() {
        for kind in EventKind::ALL {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
    }
}
