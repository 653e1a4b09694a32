//! Events to bytes for one response: NDJSON ([`podlogs::LogEvent::to_ndjson`]) or podlogs'
//! text formatter without color, control characters escaped. Text has no heartbeat line: the
//! formatter prints nothing for one.

use podlogs::{FormatOptions, Formatter, LogEvent, OutputFormat};

use crate::params::Format;

/// Writes events in a response's format.
#[derive(Debug, Clone)]
pub struct Encoder {
    format: Format,
    formatter: Formatter,
    status: Vec<u8>,
}

impl Encoder {
    /// An encoder for `format`; `timestamps` prefixes text lines with their time.
    pub fn new(format: Format, timestamps: bool) -> Self {
        let formatter = Formatter::new(FormatOptions {
            format: OutputFormat::Text,
            color: false,
            timestamps,
            escape: true,
        });
        Encoder {
            format,
            formatter,
            status: Vec::new(),
        }
    }

    /// Appends `event` to `out`, ending with a newline (nothing for a text heartbeat).
    pub fn encode(&mut self, event: &LogEvent, out: &mut Vec<u8>) {
        match self.format {
            Format::Ndjson => out.extend_from_slice(event.to_ndjson().as_bytes()),
            Format::Text => {
                self.status.clear();
                // Writing into vectors cannot fail.
                let _ = self.formatter.write(event, out, &mut self.status);
                out.extend_from_slice(&self.status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use podlogs::LogLine;

    fn line(text: &str) -> LogEvent {
        LogEvent::Log(LogLine {
            time: Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap(),
            namespace: "shop".into(),
            pod: "web-0".into(),
            container: "app".into(),
            line: text.into(),
            truncated: false,
        })
    }

    #[test]
    fn ndjson_is_exactly_the_event_schema() {
        let mut out = Vec::new();
        Encoder::new(Format::Ndjson, false).encode(&line("hi"), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), line("hi").to_ndjson());
    }

    #[test]
    fn text_has_no_color_and_escapes_control_characters() {
        let mut out = Vec::new();
        Encoder::new(Format::Text, true).encode(&line("a\x1b[31mb"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("web-0 app 2026-05-01T12:00:00.000000000Z a"),
            "{text:?}"
        );
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.ends_with('\n'));
    }
}
