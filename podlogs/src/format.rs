//! Turning events into output: [`Formatter`] with the `text`, `raw` and `json` formats.
//!
//! Shapes, per event:
//!
//! - `text` log line: `<pod> <container> [<time> ]<line>`, the pod and the container each in a
//!   stable color of their own when color is on; ` [truncated]` ends a cut line.
//! - `raw` log line: `[<time> ]<line>`.
//! - `text`/`raw` status events go to the status writer as `<mark> <pod> › <container>
//!   <event>[: <message>]`, where the mark is `+` (started, which prints no event word), `-`
//!   (ended, pod_deleted), `~` (restarted, reconnected), `!` (gap, error) or `*` (waiting,
//!   closing). Events about a whole pod drop `› <container>`; events about the whole stream
//!   print `<mark> <event>: <message>`. Heartbeats print nothing.
//! - `json`: every event, heartbeats included, to the log writer as one NDJSON line
//!   ([`LogEvent::to_ndjson`]).
//!
//! With `escape` on (for terminals), control characters from pods are shown as escapes
//! (`\x1b`, `\r`, `\u{202e}`) instead of acting on the terminal. This module does no IO
//! beyond the writers it is given.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::event::{EventKind, LogEvent, LogLine, StatusEvent, format_time};

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// `pod container line`, status events apart.
    #[default]
    Text,
    /// The line only.
    Raw,
    /// NDJSON, one event per line.
    Json,
}

/// How to print events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatOptions {
    /// Which format.
    pub format: OutputFormat,
    /// Color pod and container names (text only).
    pub color: bool,
    /// Print each line's time (text and raw; json always carries it).
    pub timestamps: bool,
    /// Escape control characters in pod output (for terminals; text and raw).
    pub escape: bool,
}

/// SGR color codes for pod and container names: twelve colors that read on dark and light
/// backgrounds.
const PALETTE: [u8; 12] = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96];

/// Writes events in one format.
#[derive(Debug, Clone)]
pub struct Formatter {
    options: FormatOptions,
    buf: String,
}

impl Formatter {
    /// A formatter for these options.
    pub fn new(options: FormatOptions) -> Self {
        Formatter {
            options,
            buf: String::new(),
        }
    }

    /// The options in use.
    pub fn options(&self) -> FormatOptions {
        self.options
    }

    /// Writes one event: log lines to `out`; status events to `status` (text, raw) or `out`
    /// (json).
    pub fn write(
        &mut self,
        ev: &LogEvent,
        out: &mut dyn Write,
        status: &mut dyn Write,
    ) -> io::Result<()> {
        if self.options.format == OutputFormat::Json {
            return out.write_all(ev.to_ndjson().as_bytes());
        }
        self.buf.clear();
        match ev {
            LogEvent::Log(line) => {
                self.log_line(line);
                out.write_all(self.buf.as_bytes())
            }
            LogEvent::Event(event) => {
                self.status_line(event);
                status.write_all(self.buf.as_bytes())
            }
            LogEvent::Heartbeat { .. } => Ok(()),
        }
    }

    fn log_line(&mut self, line: &LogLine) {
        let opts = self.options;
        if opts.format == OutputFormat::Text {
            let pod_color = color_of(&line.pod);
            let container_color = color_of_container(&line.pod, &line.container);
            self.paint(pod_color, &line.pod);
            self.buf.push(' ');
            self.paint(container_color, &line.container);
            self.buf.push(' ');
        }
        if opts.timestamps {
            self.buf.push_str(&format_time(&line.time));
            self.buf.push(' ');
        }
        self.push_untrusted(&line.line);
        if line.truncated {
            self.buf.push_str(" [truncated]");
        }
        self.buf.push('\n');
    }

    fn status_line(&mut self, ev: &StatusEvent) {
        let (mark, mark_color) = mark_of(ev.event);
        self.paint(mark_color, mark);
        self.buf.push(' ');
        if !ev.pod.is_empty() {
            let pod = escape(&ev.pod).into_owned();
            self.paint(color_of(&ev.pod), &pod);
            if let Some(container) = &ev.container {
                let container_color = color_of_container(&ev.pod, container);
                self.buf.push_str(" › ");
                let container = escape(container).into_owned();
                self.paint(container_color, &container);
            }
            if ev.event != EventKind::Started {
                self.buf.push(' ');
                self.buf.push_str(ev.event.as_str());
            }
        } else {
            self.buf.push_str(ev.event.as_str());
        }
        if !ev.message.is_empty() {
            self.buf.push_str(": ");
            self.push_untrusted(&ev.message);
        }
        self.buf.push('\n');
    }

    fn paint(&mut self, code: u8, text: &str) {
        if self.options.color {
            let _ = write!(self.buf, "\x1b[{code}m{text}\x1b[0m");
        } else {
            self.buf.push_str(text);
        }
    }

    fn push_untrusted(&mut self, text: &str) {
        if self.options.escape {
            self.buf.push_str(&escape(text));
        } else {
            self.buf.push_str(text);
        }
    }
}

fn mark_of(kind: EventKind) -> (&'static str, u8) {
    match kind {
        EventKind::Started => ("+", 32),
        EventKind::Ended | EventKind::PodDeleted => ("-", 31),
        EventKind::Restarted | EventKind::Reconnected => ("~", 33),
        EventKind::Gap | EventKind::Error => ("!", 91),
        EventKind::Waiting | EventKind::Closing => ("*", 36),
    }
}

/// The palette color of a pod name: the same name always gets the same color, on every run.
pub fn color_of(name: &str) -> u8 {
    palette(fnv(FNV_OFFSET, name.as_bytes()))
}

/// The palette color of a container of a pod, stable like [`color_of`]; the same container
/// name in two pods may get two colors, so that neighbouring lines stay apart.
pub fn color_of_container(pod: &str, container: &str) -> u8 {
    let hash = fnv(
        fnv(fnv(FNV_OFFSET, pod.as_bytes()), b"/"),
        container.as_bytes(),
    );
    palette(hash)
}

const FNV_OFFSET: u32 = 0x811c_9dc5;

/// FNV-1a: stable across runs and Rust versions, unlike the std hasher.
fn fnv(mut hash: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

fn palette(hash: u32) -> u8 {
    PALETTE[(hash as usize) % PALETTE.len()]
}

/// Escapes what would act on a terminal: C0 controls but tab, DEL, C1 controls and the
/// bidirectional overrides and isolates. Borrowed when there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

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

    fn event(kind: EventKind, container: Option<&str>, message: &str) -> LogEvent {
        LogEvent::Event(StatusEvent {
            time: Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap(),
            namespace: "shop".into(),
            pod: "web-0".into(),
            container: container.map(str::to_string),
            event: kind,
            message: message.into(),
        })
    }

    fn render(options: FormatOptions, ev: &LogEvent) -> (String, String) {
        let mut out = Vec::new();
        let mut status = Vec::new();
        Formatter::new(options)
            .write(ev, &mut out, &mut status)
            .unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(status).unwrap(),
        )
    }

    fn plain(format: OutputFormat) -> FormatOptions {
        FormatOptions {
            format,
            ..Default::default()
        }
    }

    #[test]
    fn text_prefixes_pod_and_container() {
        assert_eq!(
            render(plain(OutputFormat::Text), &line("hi")).0,
            "web-0 app hi\n"
        );
    }

    #[test]
    fn raw_prints_only_the_line() {
        assert_eq!(render(plain(OutputFormat::Raw), &line("hi")).0, "hi\n");
    }

    #[test]
    fn timestamps_come_before_the_line() {
        let options = FormatOptions {
            timestamps: true,
            ..plain(OutputFormat::Raw)
        };
        assert_eq!(
            render(options, &line("hi")).0,
            "2026-05-01T12:00:00.000000000Z hi\n"
        );
    }

    #[test]
    fn truncated_lines_are_marked() {
        let mut ev = line("abc");
        if let LogEvent::Log(l) = &mut ev {
            l.truncated = true;
        }
        assert_eq!(render(plain(OutputFormat::Raw), &ev).0, "abc [truncated]\n");
    }

    #[test]
    fn json_writes_everything_to_out() {
        let (out, status) = render(
            plain(OutputFormat::Json),
            &event(EventKind::Started, None, ""),
        );
        assert!(out.contains("\"event\":\"started\""), "{out}");
        assert_eq!(status, "");
        let back: LogEvent = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(back, event(EventKind::Started, None, ""));
    }

    #[test]
    fn status_events_go_to_the_status_writer() {
        let (out, status) = render(
            plain(OutputFormat::Text),
            &event(EventKind::Started, Some("app"), ""),
        );
        assert_eq!((out.as_str(), status.as_str()), ("", "+ web-0 › app\n"));
        let restarted = event(
            EventKind::Restarted,
            Some("app"),
            "exit code 137 (OOMKilled)",
        );
        assert_eq!(
            render(plain(OutputFormat::Text), &restarted).1,
            "~ web-0 › app restarted: exit code 137 (OOMKilled)\n"
        );
        assert_eq!(
            render(
                plain(OutputFormat::Text),
                &event(EventKind::PodDeleted, None, "")
            )
            .1,
            "- web-0 pod_deleted\n"
        );
    }

    #[test]
    fn stream_wide_events_have_no_pod() {
        let ev = LogEvent::Event(StatusEvent {
            time: Utc::now(),
            namespace: String::new(),
            pod: String::new(),
            container: None,
            event: EventKind::Waiting,
            message: "no pods match app=web".into(),
        });
        assert_eq!(
            render(plain(OutputFormat::Text), &ev).1,
            "* waiting: no pods match app=web\n"
        );
    }

    #[test]
    fn heartbeats_print_nothing_in_text() {
        let (out, status) = render(
            plain(OutputFormat::Text),
            &LogEvent::Heartbeat { time: Utc::now() },
        );
        assert_eq!((out.as_str(), status.as_str()), ("", ""));
    }

    #[test]
    fn colors_wrap_names_when_on() {
        let options = FormatOptions {
            color: true,
            ..plain(OutputFormat::Text)
        };
        let out = render(options, &line("hi")).0;
        let pod = color_of("web-0");
        assert!(
            out.starts_with(&format!("\x1b[{pod}mweb-0\x1b[0m ")),
            "{out:?}"
        );
        assert!(out.ends_with(" hi\n"), "{out:?}");
    }

    #[test]
    fn container_colors_hash_pod_and_container_together() {
        assert_eq!(color_of_container("web-0", "app"), color_of("web-0/app"));
    }

    #[test]
    fn colors_are_stable_and_spread() {
        assert_eq!(color_of("web-7d9c4-x2"), color_of("web-7d9c4-x2"));
        let names: Vec<String> = (0..48).map(|i| format!("web-{i}")).collect();
        let distinct: std::collections::HashSet<u8> = names.iter().map(|n| color_of(n)).collect();
        assert!(distinct.len() >= 8, "{distinct:?}");
    }

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(escape("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(escape("over\rwrite"), "over\\rwrite");
        assert_eq!(escape("back\x08space"), "back\\x08space");
        assert_eq!(escape("c1\u{9b}x"), "c1\\x9bx");
        assert_eq!(escape("bidi\u{202e}txt"), "bidi\\u{202e}txt");
        assert_eq!(escape("iso\u{2066}late"), "iso\\u{2066}late");
    }

    #[test]
    fn keeps_tabs_and_ordinary_text() {
        assert!(matches!(escape("a\tb café 日本"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaping_applies_only_when_asked() {
        let escaped = FormatOptions {
            escape: true,
            ..plain(OutputFormat::Raw)
        };
        assert_eq!(render(escaped, &line("\x1b[2J")).0, "\\x1b[2J\n");
        assert_eq!(
            render(plain(OutputFormat::Raw), &line("\x1b[2J")).0,
            "\x1b[2J\n"
        );
    }
}
