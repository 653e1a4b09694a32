//! Cutting a container's raw log bytes into lines: [`LineSplitter`] and [`split_timestamp`].
//!
//! Chunks from the apiserver end anywhere, even inside a multi-byte character, so bytes are
//! buffered until a newline and only then decoded (lossily). A line longer than the cap keeps
//! its first bytes and drops the rest, so one endless line cannot exhaust memory. This module
//! does no IO.

use chrono::{DateTime, Utc};

/// Room kept for the kubelet's timestamp prefix on top of the content cap.
const TIMESTAMP_ROOM: usize = 64;

/// One complete line as it came off the wire, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The bytes, without the newline, at most the cap plus room for a timestamp.
    pub bytes: Vec<u8>,
    /// Bytes were dropped from the end.
    pub truncated: bool,
}

/// Splits a byte stream into capped lines.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl LineSplitter {
    /// A splitter keeping at most `max_line_bytes` of content per line (plus the timestamp).
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            limit: max_line_bytes.saturating_add(TIMESTAMP_ROOM),
            overflowed: false,
        }
    }

    /// Feeds a chunk and hands every line it completes to `emit`.
    pub fn push(&mut self, mut chunk: &[u8], mut emit: impl FnMut(RawLine)) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|b| *b == b'\n');
            let (part, rest) = match newline {
                Some(i) => (&chunk[..i], Some(&chunk[i + 1..])),
                None => (chunk, None),
            };
            self.append(part);
            match rest {
                Some(rest) => {
                    emit(self.take());
                    chunk = rest;
                }
                None => break,
            }
        }
    }

    /// The last line when the stream ends without a newline, if there is one.
    pub fn finish(&mut self) -> Option<RawLine> {
        if self.buf.is_empty() && !self.overflowed {
            return None;
        }
        Some(self.take())
    }

    fn append(&mut self, part: &[u8]) {
        let room = self.limit.saturating_sub(self.buf.len());
        if part.len() > room {
            self.buf.extend_from_slice(&part[..room]);
            self.overflowed = true;
        } else {
            self.buf.extend_from_slice(part);
        }
    }

    fn take(&mut self) -> RawLine {
        let line = RawLine {
            bytes: std::mem::take(&mut self.buf),
            truncated: self.overflowed,
        };
        self.overflowed = false;
        line
    }
}

/// Splits the kubelet's `timestamps=true` prefix off a line: the time and the rest.
///
/// A line without a valid prefix (a server that ignored the option) comes back whole with
/// `None`.
pub fn split_timestamp(line: &[u8]) -> (Option<DateTime<Utc>>, &[u8]) {
    let Some(space) = line.iter().take(TIMESTAMP_ROOM).position(|b| *b == b' ') else {
        return (None, line);
    };
    let parsed = std::str::from_utf8(&line[..space])
        .ok()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok());
    match parsed {
        Some(time) => (Some(time.with_timezone(&Utc)), &line[space + 1..]),
        None => (None, line),
    }
}

/// Decodes line content lossily and cuts it to at most `max_bytes`, on a character boundary.
/// Returns the text and whether anything was cut.
pub fn decode_capped(content: &[u8], max_bytes: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(content);
    if text.len() <= max_bytes {
        return (text.into_owned(), false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_string(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(cap: usize, chunks: &[&[u8]]) -> Vec<RawLine> {
        let mut splitter = LineSplitter::new(cap);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |l| out.push(l));
        }
        out.extend(splitter.finish());
        out
    }

    fn line(text: &[u8]) -> RawLine {
        RawLine {
            bytes: text.to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn joins_lines_split_across_chunks() {
        let lines = split_all(100, &[b"hel", b"lo\nwor", b"ld\n"]);
        assert_eq!(lines, vec![line(b"hello"), line(b"world")]);
    }

    #[test]
    fn keeps_multibyte_characters_split_across_chunks() {
        let lines = split_all(100, &[b"caf\xc3", b"\xa9\n"]);
        let (text, cut) = decode_capped(&lines[0].bytes, 100);
        assert_eq!((text.as_str(), cut), ("café", false));
    }

    #[test]
    fn last_line_without_newline_is_kept() {
        assert_eq!(split_all(100, &[b"a\nb"]), vec![line(b"a"), line(b"b")]);
    }

    #[test]
    fn empty_lines_are_kept() {
        assert_eq!(split_all(100, &[b"\n\n"]), vec![line(b""), line(b"")]);
    }

    #[test]
    fn endless_line_is_capped_and_marked() {
        let big = vec![b'x'; 10_000];
        let lines = split_all(100, &[&big, &big, b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].truncated);
        assert_eq!(lines[0].bytes.len(), 100 + TIMESTAMP_ROOM);
        assert_eq!(lines[1], line(b"next"));
    }

    #[test]
    fn splits_kubelet_timestamp() {
        let (time, rest) = split_timestamp(b"2026-05-01T12:00:00.120000000Z GET / 200");
        assert_eq!(time.map(|t| t.timestamp_subsec_millis()), Some(120));
        assert_eq!(rest, b"GET / 200");
    }

    #[test]
    fn line_without_timestamp_comes_back_whole() {
        let (time, rest) = split_timestamp(b"plain words");
        assert_eq!((time, rest), (None, &b"plain words"[..]));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (text, cut) = decode_capped(b"a\xffb", 100);
        assert_eq!((text.as_str(), cut), ("a\u{fffd}b", false));
    }

    #[test]
    fn cap_cuts_on_a_character_boundary() {
        let (text, cut) = decode_capped("ééé".as_bytes(), 3);
        assert_eq!((text.as_str(), cut), ("é", true));
    }
}
