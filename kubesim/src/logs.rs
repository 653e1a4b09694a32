//! Container logs as a kubelet keeps them: one capped file per container instance that is
//! rotated when full (reads never look at rotated files), the previous instance kept after a
//! restart, and a ground-truth record of every line each instance wrote. Lines are bytes,
//! as containers may print anything; nothing here decodes them except [`TruthLine::text`].
//! Followers hold a [`Cursor`] and are woken when lines arrive or the instance ends.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// A line a container wrote, as recorded for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthLine {
    /// The container instance that wrote it (`containerd://...`).
    pub container_id: String,
    /// When it was written.
    pub time: DateTime<Utc>,
    /// The line without its newline, decoded as UTF-8 with invalid bytes replaced by U+FFFD
    /// (what a client that decodes lossily shows).
    pub text: String,
    /// The line without its newline, as the container wrote it.
    pub bytes: Bytes,
}

/// A line with its time, as containers write them.
pub type TimedLine = (DateTime<Utc>, Bytes);

/// A stored line; the bytes are shared between the log file and the truth record.
#[derive(Debug, Clone)]
struct Line {
    time: DateTime<Utc>,
    bytes: Bytes,
    /// The first fragment of a runtime line (the only one a timestamp prefixes).
    first: bool,
    /// A fragment that the next one continues (no newline after it).
    partial: bool,
}

/// The longest runtime log entry: longer lines are split into partial entries, as CRI
/// runtimes do.
pub const MAX_ENTRY: usize = 16 * 1024;

/// Splits a line into runtime entries of at most [`MAX_ENTRY`] bytes. A cut never falls
/// inside a UTF-8 character: it backs off over at most three continuation bytes, which for
/// valid UTF-8 is a character boundary and for invalid bytes is as good as any.
fn fragments(bytes: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = bytes.clone();
    while rest.len() > MAX_ENTRY {
        let mut cut = MAX_ENTRY;
        while MAX_ENTRY - cut < 3 && is_continuation(rest[cut]) {
            cut -= 1;
        }
        out.push(rest.split_to(cut));
    }
    out.push(rest);
    out
}

/// A UTF-8 continuation byte (`10xxxxxx`): never the start of a character.
fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// A truth record entry.
#[derive(Debug)]
struct Written {
    id: Arc<str>,
    line: Line,
}

/// One run of a container: its current file and the one rotated before it.
#[derive(Debug)]
struct Instance {
    id: Arc<str>,
    generation: u64,
    file: Vec<Line>,
    file_bytes: usize,
    rotated: Vec<Line>,
    ended: bool,
}

impl Instance {
    fn new(id: &str) -> Self {
        Instance {
            id: id.into(),
            generation: 0,
            file: Vec::new(),
            file_bytes: 0,
            rotated: Vec::new(),
            ended: false,
        }
    }

    fn rotate(&mut self) {
        self.rotated = std::mem::take(&mut self.file);
        self.file_bytes = 0;
        self.generation += 1;
    }
}

/// Where a reader is: which instance, which file generation, which line in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The instance's container ID.
    pub id: String,
    generation: u64,
    index: usize,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Lines were appended to the output.
    Data,
    /// Nothing new yet; the instance still runs.
    Pending,
    /// Everything was read and the instance has ended.
    Ended,
}

/// How lines are rendered for a reader.
#[derive(Debug, Clone, Default)]
pub struct Render {
    /// Prefix each line with its RFC 3339 time with nine fraction digits.
    pub timestamps: bool,
    /// Skip lines before this time.
    pub since: Option<DateTime<Utc>>,
}

impl Render {
    fn push(&self, line: &Line, out: &mut Vec<u8>) -> bool {
        if self.since.is_some_and(|s| line.time < s) {
            return false;
        }
        if self.timestamps && line.first {
            out.extend_from_slice(format_time(line.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&line.bytes);
        if !line.partial {
            out.push(b'\n');
        }
        true
    }
}

/// Formats a time the way the kubelet prefixes log lines: UTC, nine fraction digits.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

#[derive(Debug)]
struct State {
    current: Option<Instance>,
    previous: Option<Instance>,
    truth: VecDeque<Written>,
    truth_cap: usize,
    max_bytes: usize,
}

/// The logs of one container across its instances.
#[derive(Debug)]
pub struct LogBox {
    state: Mutex<State>,
    notify: Notify,
}

impl LogBox {
    /// An empty log box rotating at `max_bytes` and keeping at most `truth_cap` truth lines.
    pub fn new(max_bytes: usize, truth_cap: usize) -> Self {
        LogBox {
            state: Mutex::new(State {
                current: None,
                previous: None,
                truth: VecDeque::new(),
                truth_cap,
                max_bytes: max_bytes.max(1),
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a new instance; the current one ends and becomes the previous one.
    pub fn start_instance(&self, id: &str) {
        let mut state = self.lock();
        if let Some(mut old) = state.current.take() {
            old.ended = true;
            state.previous = Some(old);
        }
        state.current = Some(Instance::new(id));
        drop(state);
        self.notify.notify_waiters();
    }

    /// Installs an already ended instance as the previous one (history before start).
    pub fn set_previous(&self, id: &str, lines: &[TimedLine]) {
        let mut instance = Instance::new(id);
        instance.ended = true;
        let mut state = self.lock();
        for (time, bytes) in lines {
            Self::append(&mut state, &mut instance, *time, bytes);
        }
        state.previous = Some(instance);
    }

    /// Ends the current instance: followers drain what is left and finish.
    pub fn end_instance(&self) {
        let mut state = self.lock();
        if let Some(current) = state.current.as_mut() {
            current.ended = true;
        }
        drop(state);
        self.notify.notify_waiters();
    }

    /// Appends lines to the current instance; lines are dropped when there is none or it has
    /// ended (a stopped container writes nothing more, even if the lines were due before).
    pub fn write(&self, lines: &[TimedLine]) {
        let mut state = self.lock();
        let Some(mut current) = state.current.take_if(|c| !c.ended) else {
            return;
        };
        for (time, bytes) in lines {
            Self::append(&mut state, &mut current, *time, bytes);
        }
        state.current = Some(current);
        drop(state);
        self.notify.notify_waiters();
    }

    fn append(state: &mut State, instance: &mut Instance, time: DateTime<Utc>, bytes: &Bytes) {
        if state.truth_cap > 0 {
            if state.truth.len() >= state.truth_cap {
                state.truth.pop_front();
            }
            let line = Line {
                time,
                bytes: bytes.clone(),
                first: true,
                partial: false,
            };
            state.truth.push_back(Written {
                id: instance.id.clone(),
                line,
            });
        }

        // The file holds runtime entries: a long line becomes several partial ones.
        let parts = fragments(bytes);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let size = part.len() + 1;
            if instance.file_bytes + size > state.max_bytes && !instance.file.is_empty() {
                instance.rotate();
            }
            instance.file.push(Line {
                time,
                bytes: part,
                first: i == 0,
                partial: i != last,
            });
            instance.file_bytes += size;
        }
    }

    /// Rotates the current instance's file.
    pub fn rotate(&self) {
        let mut state = self.lock();
        if let Some(current) = state.current.as_mut() {
            current.rotate();
        }
        drop(state);
        self.notify.notify_waiters();
    }

    /// Every line recorded, oldest first.
    pub fn truth(&self) -> Vec<TruthLine> {
        self.lock()
            .truth
            .iter()
            .map(|w| TruthLine {
                container_id: w.id.to_string(),
                time: w.line.time,
                text: String::from_utf8_lossy(&w.line.bytes).into_owned(),
                bytes: w.line.bytes.clone(),
            })
            .collect()
    }

    /// The container IDs of the current and previous instances.
    pub fn instance_ids(&self) -> (Option<String>, Option<String>) {
        let state = self.lock();
        (
            state.current.as_ref().map(|i| i.id.to_string()),
            state.previous.as_ref().map(|i| i.id.to_string()),
        )
    }

    /// Opens the instance `id` for reading: renders the initial lines (the last `tail` of the
    /// current file, when given) into `out` and returns the cursor after them. `None` when the
    /// instance is no longer kept.
    pub fn open(
        &self,
        id: &str,
        tail: Option<usize>,
        render: &Render,
        out: &mut Vec<u8>,
    ) -> Option<Cursor> {
        let state = self.lock();
        let instance = [state.current.as_ref(), state.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|i| &*i.id == id)?;
        let start = match tail {
            Some(n) => instance.file.len().saturating_sub(n),
            None => 0,
        };
        for line in &instance.file[start..] {
            render.push(line, out);
        }
        Some(Cursor {
            id: id.to_string(),
            generation: instance.generation,
            index: instance.file.len(),
        })
    }

    /// Renders up to about `max` bytes of lines after `cursor` into `out`.
    pub fn read(
        &self,
        cursor: &mut Cursor,
        render: &Render,
        out: &mut Vec<u8>,
        max: usize,
    ) -> ReadStatus {
        let state = self.lock();
        let Some(instance) = [state.current.as_ref(), state.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|i| *i.id == *cursor.id)
        else {
            return ReadStatus::Ended;
        };
        let before = out.len();

        // A follower of the file that was rotated away finishes it, then moves on.
        if cursor.generation + 1 == instance.generation {
            while cursor.index < instance.rotated.len() && out.len() - before < max {
                render.push(&instance.rotated[cursor.index], out);
                cursor.index += 1;
            }
            if cursor.index < instance.rotated.len() {
                return ReadStatus::Data;
            }
            cursor.generation = instance.generation;
            cursor.index = 0;
        } else if cursor.generation != instance.generation {
            cursor.generation = instance.generation;
            cursor.index = 0;
        }

        while cursor.index < instance.file.len() && out.len() - before < max {
            render.push(&instance.file[cursor.index], out);
            cursor.index += 1;
        }
        if out.len() > before {
            ReadStatus::Data
        } else if cursor.index < instance.file.len() {
            // Lines were skipped by `since`; more remain.
            ReadStatus::Data
        } else if instance.ended {
            ReadStatus::Ended
        } else {
            ReadStatus::Pending
        }
    }

    /// Waits until lines arrive or the instance changes. Call [`LogBox::armed`] before
    /// reading so that no wake-up between the read and the wait is lost.
    pub fn armed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.notify.notified());
        notified.as_mut().enable();
        notified
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 120_000_000)
            .single()
            .expect("valid time")
    }

    fn lines(texts: &[&str]) -> Vec<TimedLine> {
        texts
            .iter()
            .enumerate()
            .map(|(i, s)| (t(i as i64), Bytes::copy_from_slice(s.as_bytes())))
            .collect()
    }

    #[test]
    fn timestamps_have_nine_fraction_digits() {
        assert_eq!(format_time(t(0)), "2027-01-15T08:00:00.120000000Z");
    }

    #[test]
    fn tail_reads_only_the_current_file() {
        let logs = LogBox::new(7, 100);
        logs.start_instance("c1");
        logs.write(&lines(&["aaaa", "bbbb", "cccc", "dddd"]));
        let mut out = Vec::new();
        logs.open("c1", Some(10), &Render::default(), &mut out)
            .expect("open");
        assert_eq!(String::from_utf8_lossy(&out), "dddd\n");
        assert_eq!(logs.truth().len(), 4);
    }

    #[test]
    fn long_lines_are_partial_entries_with_one_timestamp() {
        let logs = LogBox::new(1 << 20, 100);
        logs.start_instance("c1");
        let long = "é".repeat(MAX_ENTRY); // twice the entry size, in two-byte characters
        logs.write(&[(t(0), Bytes::from(long.clone()))]);
        let render = Render {
            timestamps: true,
            since: None,
        };
        let mut out = Vec::new();
        logs.open("c1", None, &render, &mut out).expect("open");
        let text = String::from_utf8(out).expect("fragments end at character boundaries");
        assert_eq!(text, format!("{} {long}\n", format_time(t(0))));
        let mut tail = Vec::new();
        logs.open("c1", Some(1), &Render::default(), &mut tail)
            .expect("open");
        assert_eq!(
            tail.len(),
            MAX_ENTRY + 1,
            "tail counts the last runtime entry only"
        );
        assert_eq!(logs.truth()[0].text, long);
    }

    #[test]
    fn invalid_utf8_is_stored_and_served_unchanged() {
        let logs = LogBox::new(1 << 20, 100);
        logs.start_instance("c1");
        let bad = Bytes::from_static(b"caf\xc3 \xff\xfe end");
        logs.write(&[(t(0), bad.clone())]);
        let render = Render {
            timestamps: true,
            since: None,
        };
        let mut out = Vec::new();
        logs.open("c1", None, &render, &mut out).expect("open");
        let mut want = format!("{} ", format_time(t(0))).into_bytes();
        want.extend_from_slice(&bad);
        want.push(b'\n');
        assert_eq!(out, want);
        let truth = &logs.truth()[0];
        assert_eq!(truth.bytes, bad);
        assert_eq!(truth.text, "caf\u{fffd} \u{fffd}\u{fffd} end");
    }

    #[test]
    fn long_invalid_lines_are_split_and_joined_unchanged() {
        let logs = LogBox::new(1 << 20, 100);
        logs.start_instance("c1");
        // Continuation bytes only: no character boundary anywhere.
        let long = Bytes::from(vec![0x80u8; MAX_ENTRY * 2 + 5]);
        logs.write(&[(t(0), long.clone())]);
        let mut out = Vec::new();
        logs.open("c1", None, &Render::default(), &mut out)
            .expect("open");
        assert_eq!(&out[..out.len() - 1], &long[..]);
        let mut tail = Vec::new();
        logs.open("c1", Some(1), &Render::default(), &mut tail)
            .expect("open");
        assert!(tail.len() < long.len(), "the line became several entries");
    }

    #[test]
    fn since_skips_older_lines() {
        let logs = LogBox::new(1000, 100);
        logs.start_instance("c1");
        logs.write(&lines(&["a", "b", "c"]));
        let mut out = Vec::new();
        let render = Render {
            timestamps: false,
            since: Some(t(1)),
        };
        logs.open("c1", None, &render, &mut out).expect("open");
        assert_eq!(String::from_utf8_lossy(&out), "b\nc\n");
    }

    #[test]
    fn follower_reads_the_rest_of_a_rotated_file_then_the_new_one() {
        let logs = LogBox::new(1000, 100);
        logs.start_instance("c1");
        logs.write(&lines(&["a"]));
        let mut out = Vec::new();
        let mut cursor = logs
            .open("c1", None, &Render::default(), &mut out)
            .expect("open");
        logs.write(&lines(&["b"]));
        logs.rotate();
        logs.write(&lines(&["c"]));
        let status = logs.read(&mut cursor, &Render::default(), &mut out, 1 << 20);
        assert_eq!(status, ReadStatus::Data);
        logs.read(&mut cursor, &Render::default(), &mut out, 1 << 20);
        assert_eq!(String::from_utf8_lossy(&out), "a\nb\nc\n");
    }

    #[test]
    fn an_ended_instance_takes_no_more_lines() {
        let logs = LogBox::new(1000, 100);
        logs.start_instance("c1");
        logs.write(&lines(&["before"]));
        let mut out = Vec::new();
        let mut cursor = logs
            .open("c1", None, &Render::default(), &mut out)
            .expect("open");
        logs.end_instance();
        logs.write(&lines(&["after"]));
        assert_eq!(
            logs.read(&mut cursor, &Render::default(), &mut out, 100),
            ReadStatus::Ended
        );
        assert_eq!(out, b"before\n");
        assert_eq!(
            logs.truth().len(),
            1,
            "the truth holds only what a reader can get"
        );
    }

    #[test]
    fn a_restart_ends_the_old_instance_and_keeps_it_as_previous() {
        let logs = LogBox::new(1000, 100);
        logs.start_instance("c1");
        logs.write(&lines(&["old"]));
        let mut out = Vec::new();
        let mut cursor = logs
            .open("c1", None, &Render::default(), &mut out)
            .expect("open");
        logs.start_instance("c2");
        logs.write(&lines(&["new"]));
        assert_eq!(
            logs.read(&mut cursor, &Render::default(), &mut out, 100),
            ReadStatus::Ended
        );
        let mut prev = Vec::new();
        logs.open("c1", None, &Render::default(), &mut prev)
            .expect("previous kept");
        assert_eq!(prev, b"old\n");
        let truth: Vec<_> = logs.truth().into_iter().map(|l| l.container_id).collect();
        assert_eq!(truth, ["c1", "c2"]);
    }
}
