//! Writing the event stream to the terminal: [`print`].
//!
//! Log lines go through a buffer that is flushed whenever the stream has nothing ready, so a
//! burst of lines costs one write and a quiet stream still shows every line at once. A closed
//! stdout (`| head`) ends the run quietly; Ctrl-C ends it after a last flush.

use std::future::Future;
use std::io::{self, Write};

use futures::{FutureExt, Stream, StreamExt};
use podlogs::format::Formatter;
use podlogs::{EventKind, LogEvent};

/// How often, in events, a busy stream checks for Ctrl-C.
const INTERRUPT_CHECK_EVERY: u32 = 256;

/// How printing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The stream ended; `errors` error events were printed.
    Done {
        /// How many `error` events came.
        errors: usize,
    },
    /// The reader of stdout went away.
    Closed,
    /// Ctrl-C.
    Interrupted,
}

/// Prints `events` until they end, stdout closes or `interrupt` resolves.
pub async fn print<S, I>(
    events: &mut S,
    formatter: &mut Formatter,
    out: &mut dyn Write,
    status: &mut dyn Write,
    interrupt: I,
) -> io::Result<Outcome>
where
    S: Stream<Item = LogEvent> + Unpin,
    I: Future<Output = ()>,
{
    let mut interrupt = std::pin::pin!(interrupt.fuse());
    let mut errors = 0;
    let mut since_check = 0u32;
    loop {
        since_check += 1;
        if since_check >= INTERRUPT_CHECK_EVERY {
            since_check = 0;
            if (&mut interrupt).now_or_never().is_some() {
                return finish(out, Outcome::Interrupted);
            }
        }
        let next = match events.next().now_or_never() {
            Some(next) => next,
            None => {
                if let Err(err) = out.flush() {
                    return closed_or(err);
                }
                tokio::select! {
                    next = events.next() => next,
                    () = &mut interrupt => return finish(out, Outcome::Interrupted),
                }
            }
        };
        let Some(event) = next else {
            return finish(out, Outcome::Done { errors });
        };
        if let LogEvent::Event(e) = &event {
            if e.event == EventKind::Error {
                errors += 1;
            }
            // Status lines go to another writer: lines before them come out first.
            if let Err(err) = out.flush() {
                return closed_or(err);
            }
        }
        if let Err(err) = formatter.write(&event, out, status) {
            return closed_or(err);
        }
    }
}

fn finish(out: &mut dyn Write, outcome: Outcome) -> io::Result<Outcome> {
    match out.flush() {
        Ok(()) => Ok(outcome),
        Err(err) => closed_or(err),
    }
}

fn closed_or(err: io::Error) -> io::Result<Outcome> {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Ok(Outcome::Closed)
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use podlogs::format::FormatOptions;
    use podlogs::{LogLine, StatusEvent};

    fn line(text: &str) -> LogEvent {
        LogEvent::Log(LogLine {
            time: Utc::now(),
            namespace: "shop".into(),
            pod: "web-0".into(),
            container: "app".into(),
            line: text.into(),
            truncated: false,
        })
    }

    /// Records each write and each flush.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<String>,
        flushes: usize,
        fail: Option<io::ErrorKind>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(kind.into());
            }
            self.writes.push(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    /// Prints `events` in the default format, never interrupted.
    async fn print_default<S>(events: &mut S, out: &mut Recorder, status: &mut Recorder) -> Outcome
    where
        S: futures::Stream<Item = LogEvent> + Unpin,
    {
        let mut formatter = Formatter::new(FormatOptions::default());
        print(events, &mut formatter, out, status, std::future::pending())
            .await
            .expect("recorders only fail when told to")
    }

    #[tokio::test]
    async fn a_burst_is_flushed_once() {
        let mut events = futures::stream::iter(vec![line("a"), line("b"), line("c")]);
        let mut out = Recorder::default();
        let mut status = Recorder::default();
        let outcome = print_default(&mut events, &mut out, &mut status).await;
        assert_eq!(outcome, Outcome::Done { errors: 0 });
        assert_eq!(
            out.writes.concat(),
            "web-0 app a\nweb-0 app b\nweb-0 app c\n"
        );
        assert_eq!(out.flushes, 1);
    }

    #[tokio::test]
    async fn a_closed_stdout_ends_quietly() {
        let mut events = futures::stream::iter(vec![line("a")]);
        let mut out = Recorder {
            fail: Some(io::ErrorKind::BrokenPipe),
            ..Default::default()
        };
        let mut status = Recorder::default();
        let outcome = print_default(&mut events, &mut out, &mut status).await;
        assert_eq!(outcome, Outcome::Closed);
    }

    #[tokio::test]
    async fn interrupt_ends_an_idle_stream() {
        let mut events = futures::stream::pending::<LogEvent>();
        let mut out = Recorder::default();
        let mut status = Recorder::default();
        let mut formatter = Formatter::new(FormatOptions::default());
        let outcome = print(&mut events, &mut formatter, &mut out, &mut status, async {})
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Interrupted);
    }

    #[tokio::test]
    async fn error_events_are_counted() {
        let error = LogEvent::Event(StatusEvent {
            time: Utc::now(),
            namespace: "shop".into(),
            pod: "web-0".into(),
            container: Some("app".into()),
            event: EventKind::Error,
            message: "forbidden".into(),
        });
        let mut events = futures::stream::iter(vec![error, line("a")]);
        let mut out = Recorder::default();
        let mut status = Recorder::default();
        let outcome = print_default(&mut events, &mut out, &mut status).await;
        assert_eq!(outcome, Outcome::Done { errors: 1 });
        assert_eq!(status.writes.concat(), "! web-0 › app error: forbidden\n");
        // Flushed before the status line, and once more when the stream ended.
        assert_eq!(out.flushes, 2);
    }
}
