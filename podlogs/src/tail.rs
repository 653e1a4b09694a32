//! One container's log stream, kept open for as long as the container runs: [`run`].
//!
//! A tail first reads the history (without follow) so the merge knows where history ends,
//! then, when following, reopens the stream with `sinceTime` = the last line's time. The
//! apiserver truncates `sinceTime` to whole seconds, so a [`Cursor`] skips the lines of that
//! second already seen: no duplicates, no loss. A stream that ends while the container still
//! runs is reopened the same way. A request names a container, not an instance, so every
//! stream a following tail opens is checked against the pod's status: when the instance was
//! replaced meanwhile, its rest is read with `previous=true`; when it stopped, once more
//! without follow. This module neither discovers pods nor orders lines across containers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{AsyncBufRead, AsyncBufReadExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::event::{EventKind, LogEvent, LogLine, StatusEvent};
use crate::lines::{LineSplitter, RawLine, decode_capped, split_timestamp};
use crate::query::Since;
use crate::select;

/// How long a tail keeps reading after its pod was deleted, for lines still in flight.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a restarted container's new tail waits for the old instance's tail to finish.
const PREVIOUS_INSTANCE_WAIT: Duration = Duration::from_secs(5);

/// How many times a transient failure is retried while reading history.
const HISTORY_ATTEMPTS: u32 = 5;

/// What a tail sends to the merge.
#[derive(Debug)]
pub(crate) enum TailMsg {
    /// A line or a status event.
    Event(LogEvent),
    /// Every history line has been sent; what follows is live.
    HistoryDone,
}

/// Everything one tail needs to know.
#[derive(Clone)]
pub(crate) struct TailSpec {
    /// Pods API of the pod's namespace.
    pub api: Api<Pod>,
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The container instance (container ID) this tail reads.
    pub instance: String,
    /// Keep streaming after the history (the container runs and the query follows).
    pub follow: bool,
    /// Read the previous instance.
    pub previous: bool,
    /// History length, `None` for all.
    pub tail_lines: Option<i64>,
    /// Where history starts.
    pub since: Option<Since>,
    /// Line cap in bytes.
    pub max_line_bytes: usize,
    /// Set when this instance replaced another one: how the old one ended.
    pub restarted: Option<String>,
    /// First and longest delay between attempts to reopen the stream.
    pub backoff: (Duration, Duration),
}

/// The consumer went away; the tail stops.
#[derive(Debug)]
pub(crate) struct Closed;

/// Why a request for the log failed, as far as retrying goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// 403: no retry will help.
    Forbidden(String),
    /// 404: the pod is gone.
    Gone,
    /// 400 and other refusals: the container cannot be read now.
    Refused(String),
    /// Worth retrying, no sooner than `retry_after` when the server said so.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
}

fn classify(err: &kube::Error) -> Failure {
    match err {
        kube::Error::Api(status) => match status.code {
            403 => Failure::Forbidden(status.message.clone()),
            404 => Failure::Gone,
            429 | 500..=599 => Failure::Transient {
                message: status.message.clone(),
                retry_after: status
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(u64::from(s))),
            },
            _ => Failure::Refused(status.message.clone()),
        },
        other => Failure::Transient {
            message: other.to_string(),
            retry_after: None,
        },
    }
}

/// What the cursor says about an incoming line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Seen before (or before the start time): drop it.
    Skip,
    /// New: emit it.
    Emit,
    /// New, but the reopened stream did not give back the last line seen before: lines
    /// between `from` and this one may be missing.
    EmitAfterGap {
        /// Time of the last line seen before the stream was reopened.
        from: DateTime<Utc>,
    },
}

/// Where a tail is in its container's log, to resume without duplicates.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cursor {
    /// Time of the last line emitted.
    last: Option<DateTime<Utc>>,
    /// How many lines were emitted at exactly `last`.
    seen_at_last: usize,
    /// Lines before this time are dropped (`sinceTime` goes to the server in whole seconds).
    not_before: Option<DateTime<Utc>>,
    /// Set while a reopened stream replays what was already seen.
    replay: Option<Replay>,
}

#[derive(Debug, Clone)]
struct Replay {
    until: DateTime<Utc>,
    skip_at_until: usize,
    skipped_at_until: usize,
    overlapped: bool,
}

impl Cursor {
    /// A cursor that drops lines older than `not_before`.
    pub(crate) fn new(not_before: Option<DateTime<Utc>>) -> Self {
        Cursor {
            not_before,
            ..Default::default()
        }
    }

    /// Drops lines before `time` too, unless an earlier floor is set already.
    pub(crate) fn start_no_earlier_than(&mut self, time: DateTime<Utc>) {
        if self.not_before.is_none() {
            self.not_before = Some(time);
        }
    }

    /// Time of the last line emitted.
    pub(crate) fn last(&self) -> Option<DateTime<Utc>> {
        self.last
    }

    /// The stream is being reopened from the whole second of the last line.
    pub(crate) fn resume(&mut self) {
        self.replay = self.last.map(|until| Replay {
            until,
            skip_at_until: self.seen_at_last,
            skipped_at_until: 0,
            overlapped: false,
        });
    }

    /// While a reopened stream has given nothing new: the last line seen before, when the
    /// stream did not give it back either, so that nothing proves no line came after it.
    pub(crate) fn unproven(&self) -> Option<DateTime<Utc>> {
        self.replay
            .as_ref()
            .filter(|r| !r.overlapped)
            .map(|r| r.until)
    }

    /// Decides about a line stamped `time`.
    pub(crate) fn accept(&mut self, time: DateTime<Utc>) -> Verdict {
        if self.not_before.is_some_and(|nb| time < nb) {
            return Verdict::Skip;
        }
        let mut verdict = Verdict::Emit;
        if let Some(replay) = &mut self.replay {
            if time < replay.until {
                replay.overlapped = true;
                return Verdict::Skip;
            }
            if time == replay.until && replay.skipped_at_until < replay.skip_at_until {
                replay.skipped_at_until += 1;
                replay.overlapped = true;
                return Verdict::Skip;
            }
            if !replay.overlapped {
                verdict = Verdict::EmitAfterGap { from: replay.until };
            }
            self.replay = None;
        }
        if self.last == Some(time) {
            self.seen_at_last += 1;
        } else {
            self.last = Some(time);
            self.seen_at_last = 1;
        }
        verdict
    }
}

/// How reading one opened stream ended.
enum ReadEnd {
    /// The server ended the stream cleanly; with the bytes after the last newline, if any.
    Ended(Option<RawLine>),
    /// Reading failed midway.
    Failed(String),
    /// The pod went away and the grace time is over.
    Stopped,
}

/// Runs one tail until its container is done, its pod is gone or the consumer goes away.
///
/// `stop` turns true when the pod is deleted; `after` resolves when the tail of the previous
/// instance of this container has finished, so the old lines come out before the new ones.
pub(crate) async fn run(
    spec: TailSpec,
    tx: mpsc::Sender<TailMsg>,
    mut stop: watch::Receiver<bool>,
    after: Option<oneshot::Receiver<()>>,
) -> Result<(), Closed> {
    if let Some(after) = after {
        let _ = tokio::time::timeout(PREVIOUS_INSTANCE_WAIT, after).await;
    }
    let mut tail = Tail {
        cursor: Cursor::new(since_floor(&spec)),
        spec,
        tx,
        started: false,
        replaced: false,
    };
    if let Some(message) = tail.spec.restarted.clone() {
        tail.status(EventKind::Restarted, message).await?;
    }

    let skip_history = tail.spec.follow && tail.spec.tail_lines == Some(0);
    if !skip_history && tail.history(&mut stop).await? == Flow::Done {
        return Ok(());
    }
    tail.tx
        .send(TailMsg::HistoryDone)
        .await
        .map_err(|_| Closed)?;
    if tail.spec.follow && !tail.spec.previous && !tail.replaced {
        tail.follow(&mut stop, skip_history).await?;
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Done,
}

struct Tail {
    spec: TailSpec,
    tx: mpsc::Sender<TailMsg>,
    cursor: Cursor,
    started: bool,
    /// The instance was replaced by a newer one: only `previous=true` reads it now.
    replaced: bool,
}

/// Which instance of the container the kubelet serves, as the pod's status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serving {
    /// A request without `previous` reads this tail's instance.
    Current,
    /// This tail's instance ended and a newer one replaced it: `previous=true` reads it.
    Previous,
    /// Neither: the instance is no longer kept.
    Neither,
}

/// What opening a stream of this tail's instance gave.
enum Opened<R> {
    /// A stream that reads this tail's instance.
    Stream(R),
    /// The instance was replaced; the stream would have read the newer one.
    Replaced,
    /// The instance can no longer be read.
    Lost,
}

impl Tail {
    /// Reads the history without follow, resuming after a failure midway.
    async fn history(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Flow, Closed> {
        let mut backoff = Backoff::new(self.spec.backoff.0, self.spec.backoff.1);
        let mut opened_before = false;
        loop {
            let params = if opened_before {
                self.cursor.resume();
                self.resume_params(false)
            } else {
                self.first_params(false)
            };
            let reader = match self.open_checked(&params).await {
                Ok(Opened::Stream(reader)) => reader,
                Ok(Opened::Replaced) => {
                    // The container restarted since it was listed: its log is the previous.
                    self.replaced = true;
                    continue;
                }
                Ok(Opened::Lost) => {
                    self.lost().await?;
                    return Ok(Flow::Done);
                }
                Err(failure) => {
                    tracing::debug!(pod = %self.spec.pod, container = %self.spec.container,
                        error = ?failure, "opening the log for history failed");
                    match failure {
                        Failure::Transient { retry_after, .. }
                            if backoff.attempts() + 1 < HISTORY_ATTEMPTS =>
                        {
                            let delay = delay_for(&mut backoff, retry_after);
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        // Listed or announced moments ago, and gone before a line was read.
                        Failure::Gone if self.spec.follow => {
                            self.deleted_while_down().await?;
                            return Ok(Flow::Done);
                        }
                        other => {
                            self.report(other).await?;
                            return Ok(Flow::Done);
                        }
                    }
                }
            };
            self.opened(opened_before).await?;
            opened_before = true;
            match self.read(reader, stop).await? {
                ReadEnd::Ended(rest) => {
                    // Without follow the end is final: a last line without newline counts.
                    if let Some(rest) = rest {
                        self.line(&rest.bytes, rest.truncated).await?;
                    }
                    return Ok(Flow::Continue);
                }
                ReadEnd::Stopped => return Ok(Flow::Done),
                ReadEnd::Failed(message) => {
                    tracing::debug!(pod = %self.spec.pod, container = %self.spec.container,
                        error = %message, "reading history failed; reopening");
                    if backoff.attempts() + 1 >= HISTORY_ATTEMPTS {
                        self.status(
                            EventKind::Error,
                            format!("reading the log failed: {message}"),
                        )
                        .await?;
                        return Ok(Flow::Done);
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Follows the live log until the container stops or the pod goes.
    async fn follow(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        skipped_history: bool,
    ) -> Result<(), Closed> {
        let mut backoff = Backoff::new(self.spec.backoff.0, self.spec.backoff.1);
        let mut first = true;
        let mut failing = false;
        loop {
            if *stop.borrow() {
                if first {
                    return Ok(());
                }
                return self.deleted_while_down().await;
            }
            let params = if first && skipped_history {
                // No history: the stream starts now. Should it be cut before its first line,
                // the next one starts from here too, not from the log's beginning.
                self.cursor.start_no_earlier_than(Utc::now());
                self.first_params(true)
            } else {
                self.cursor.resume();
                self.resume_params(true)
            };
            let reader = match self.open_checked(&params).await {
                Ok(Opened::Stream(reader)) => reader,
                // The container restarted while the stream was down: finish the old instance.
                Ok(Opened::Replaced) => return self.drain(stop, true).await,
                Ok(Opened::Lost) => return self.lost().await,
                Err(failure) => {
                    tracing::debug!(pod = %self.spec.pod, container = %self.spec.container,
                        error = ?failure, "opening the log stream failed");
                    match failure {
                        Failure::Transient {
                            message,
                            retry_after,
                        } => {
                            if !failing {
                                failing = true;
                                self.status(
                                    EventKind::Error,
                                    format!("log stream failed, retrying: {message}"),
                                )
                                .await?;
                            }
                            let delay = delay_for(&mut backoff, retry_after);
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        Failure::Refused(_) if !(first && skipped_history) => {
                            // The container was readable moments ago: it stopped since.
                            return self.finish().await;
                        }
                        Failure::Gone if !first => return self.deleted_while_down().await,
                        other => return self.report(other).await,
                    }
                }
            };
            if first && skipped_history {
                self.opened(false).await?;
            } else if !first || failing {
                self.opened(true).await?;
            }
            first = false;
            failing = false;

            let opened_at = Instant::now();
            let last_before = self.cursor.last();
            let end = self.read(reader, stop).await?;
            // A stream that gave lines worked: the next cut starts the backoff over.
            if opened_at.elapsed() > self.spec.backoff.1 || self.cursor.last() != last_before {
                backoff.reset();
            }
            match end {
                ReadEnd::Stopped => return Ok(()),
                ReadEnd::Failed(message) => {
                    tracing::debug!(pod = %self.spec.pod, container = %self.spec.container,
                        error = %message, "log stream broke; reopening");
                }
                // Bytes after the last newline are never taken as a line here: a stream cut in
                // the middle of a line is read again, from that line, by whatever comes next.
                ReadEnd::Ended(_) => match self.still_running().await {
                    Running::Yes => {}
                    // The stream may have been cut before the container stopped: read the
                    // rest of the instance before saying it ended.
                    Running::No => {
                        self.drain(stop, false).await?;
                        return self.finish().await;
                    }
                    Running::Replaced => return self.drain(stop, true).await,
                    Running::PodGone => return Ok(()),
                },
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Reads one opened stream to its end, sending every new line.
    async fn read(
        &mut self,
        reader: impl AsyncBufRead + Unpin,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<ReadEnd, Closed> {
        let mut reader = reader;
        let mut splitter = LineSplitter::new(self.spec.max_line_bytes);
        let mut deadline: Option<Instant> = None;
        loop {
            let chunk = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, next_chunk(&mut reader)).await {
                        Ok(chunk) => chunk,
                        Err(_) => return Ok(ReadEnd::Stopped),
                    }
                }
                None => {
                    let next = tokio::select! {
                        chunk = next_chunk(&mut reader) => Some(chunk),
                        () = stopped(stop) => None,
                    };
                    match next {
                        Some(chunk) => chunk,
                        None => {
                            deadline = Some(Instant::now() + STOP_GRACE);
                            continue;
                        }
                    }
                }
            };
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => return Ok(ReadEnd::Failed(err.to_string())),
            };
            if chunk.is_empty() {
                let rest = splitter.finish();
                if deadline.is_some() {
                    if let Some(rest) = rest {
                        self.line(&rest.bytes, rest.truncated).await?;
                    }
                    return Ok(ReadEnd::Stopped);
                }
                return Ok(ReadEnd::Ended(rest));
            }
            let mut lines = Vec::new();
            splitter.push(&chunk, |l| lines.push(l));
            for l in lines {
                self.line(&l.bytes, l.truncated).await?;
            }
        }
    }

    /// Sends one raw line if the cursor has not seen it.
    async fn line(&mut self, raw: &[u8], truncated: bool) -> Result<(), Closed> {
        let (time, content) = split_timestamp(raw);
        let verdict = match time {
            Some(time) => self.cursor.accept(time),
            None => Verdict::Emit,
        };
        if verdict == Verdict::Skip {
            return Ok(());
        }
        let time = time.unwrap_or_else(Utc::now);
        if let Verdict::EmitAfterGap { from } = verdict {
            let message = format!(
                "lines between {} and {} may be missing",
                crate::event::format_time(&from),
                crate::event::format_time(&time)
            );
            self.status(EventKind::Gap, message).await?;
        }
        let (line, cut) = decode_capped(content, self.spec.max_line_bytes);
        let ev = LogEvent::Log(LogLine {
            time,
            namespace: self.spec.namespace.clone(),
            pod: self.spec.pod.clone(),
            container: self.spec.container.clone(),
            line,
            truncated: truncated || cut,
        });
        self.tx.send(TailMsg::Event(ev)).await.map_err(|_| Closed)
    }

    /// The first request: history bounds from the query.
    fn first_params(&self, follow: bool) -> LogParams {
        let mut params = self.base_params(follow);
        params.tail_lines = self.spec.tail_lines;
        self.apply_since(&mut params);
        params
    }

    /// A request that resumes after the last line seen.
    fn resume_params(&self, follow: bool) -> LogParams {
        let mut params = self.base_params(follow);
        match self.cursor.last().or(self.cursor.not_before) {
            Some(from) => params.since_time = whole_second(from),
            // Nothing seen yet, and the log had nothing in range: same range, all of it.
            None => self.apply_since(&mut params),
        }
        params
    }

    fn base_params(&self, follow: bool) -> LogParams {
        LogParams {
            container: Some(self.spec.container.clone()),
            follow,
            previous: self.spec.previous || self.replaced,
            timestamps: true,
            ..LogParams::default()
        }
    }

    fn apply_since(&self, params: &mut LogParams) {
        match self.spec.since {
            Some(Since::Seconds(s)) => params.since_seconds = Some(s),
            Some(Since::Time(t)) => params.since_time = whole_second(t),
            None => {}
        }
    }

    /// Tells the merge a stream opened: `started` the first time, `reconnected` after.
    async fn opened(&mut self, again: bool) -> Result<(), Closed> {
        if !self.started {
            self.started = true;
            return self.status(EventKind::Started, String::new()).await;
        }
        if again {
            let message = match self.cursor.last() {
                Some(last) => format!("resumed after {}", crate::event::format_time(&last)),
                None => String::new(),
            };
            return self.status(EventKind::Reconnected, message).await;
        }
        Ok(())
    }

    /// Turns a failure that ends this tail into an event.
    async fn report(&mut self, failure: Failure) -> Result<(), Closed> {
        let message = match failure {
            Failure::Gone => return Ok(()),
            Failure::Forbidden(message) => {
                tracing::warn!(pod = %self.spec.pod, container = %self.spec.container,
                    %message, "reading the log is forbidden");
                format!(
                    "{message}; ask for get on pods/log in namespace {}",
                    self.spec.namespace
                )
            }
            Failure::Refused(message) => message,
            Failure::Transient { message, .. } => format!("giving up on this container: {message}"),
        };
        self.status(EventKind::Error, message).await
    }

    /// The container stopped: says how.
    async fn finish(&mut self) -> Result<(), Closed> {
        let message = match self.spec.api.get(&self.spec.pod).await {
            Ok(pod) => select::find(&pod, &self.spec.container)
                .and_then(|s| s.termination)
                .map(|t| t.describe())
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        self.status(EventKind::Ended, message).await
    }

    /// Whether this tail's instance still runs, after its stream ended.
    async fn still_running(&self) -> Running {
        match self.spec.api.get(&self.spec.pod).await {
            Ok(pod) => match select::find(&pod, &self.spec.container) {
                Some(s) if s.instance.as_deref() == Some(self.spec.instance.as_str()) => {
                    if s.running { Running::Yes } else { Running::No }
                }
                Some(s) if s.instance.is_some() => Running::Replaced,
                _ => Running::No,
            },
            Err(err) => match classify(&err) {
                Failure::Gone => Running::PodGone,
                // Cannot tell: assume it runs, the next request will say.
                _ => Running::Yes,
            },
        }
    }

    /// Which instance the kubelet serves now, from the pod's status.
    async fn serving(&self) -> Result<Serving, Failure> {
        let pod = self
            .spec
            .api
            .get(&self.spec.pod)
            .await
            .map_err(|err| classify(&err))?;
        let mine = Some(self.spec.instance.as_str());
        Ok(match select::find(&pod, &self.spec.container) {
            Some(s) if s.instance.as_deref() == mine => Serving::Current,
            Some(s) if s.last_instance.as_deref() == mine => Serving::Previous,
            _ => Serving::Neither,
        })
    }

    /// Opens a stream and makes sure it reads this tail's instance.
    ///
    /// A request names the container, not the instance: the kubelet serves whatever instance
    /// is current when it answers (or the one before it, with `previous`). Instances only move
    /// forward, so a status read after the stream opened that still shows this tail's instance
    /// in the requested place proves that the stream reads it. The status lags the kubelet by
    /// a moment, so a restart in that moment is not seen; the cursor's overlap check reports
    /// it as a gap.
    async fn open_checked(
        &self,
        params: &LogParams,
    ) -> Result<Opened<impl AsyncBufRead + Unpin + use<>>, Failure> {
        let reader = self
            .spec
            .api
            .log_stream(&self.spec.pod, params)
            .await
            .map_err(|err| classify(&err))?;
        // `--previous` names its instance itself, and a read that does not follow ends with
        // whatever instance is current: only a tail that goes on needs to know.
        if self.spec.previous || !self.spec.follow {
            return Ok(Opened::Stream(reader));
        }
        let wanted = match params.previous {
            true => Serving::Previous,
            false => Serving::Current,
        };
        Ok(match self.serving().await? {
            now if now == wanted => Opened::Stream(reader),
            Serving::Previous => Opened::Replaced,
            _ => Opened::Lost,
        })
    }

    /// Reads what is left of this tail's instance once it stopped running, without follow:
    /// lines written between the last stream's end and the stop, and a line the last stream
    /// cut in the middle, come out whole. `previous`: a newer instance replaced it.
    async fn drain(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        previous: bool,
    ) -> Result<(), Closed> {
        self.replaced = previous;
        let mut backoff = Backoff::new(self.spec.backoff.0, self.spec.backoff.1);
        loop {
            self.cursor.resume();
            let params = self.resume_params(false);
            let failure = match self.open_checked(&params).await {
                Ok(Opened::Stream(reader)) => match self.read(reader, stop).await? {
                    ReadEnd::Ended(rest) => {
                        // The instance has stopped: a last line without newline is whole.
                        if let Some(rest) = rest {
                            self.line(&rest.bytes, rest.truncated).await?;
                        }
                        // Nothing new came, and the last line seen was not there either (the
                        // file rotated): what it held after that line is out of reach.
                        if let Some(from) = self.cursor.unproven() {
                            let message = format!(
                                "lines after {} may be missing: the log was rotated before \
                                 they could be read",
                                crate::event::format_time(&from)
                            );
                            self.status(EventKind::Gap, message).await?;
                        }
                        return Ok(());
                    }
                    ReadEnd::Stopped => return Ok(()),
                    ReadEnd::Failed(message) => Failure::Transient {
                        message,
                        retry_after: None,
                    },
                },
                Ok(Opened::Replaced) if !self.replaced => {
                    self.replaced = true;
                    continue;
                }
                Ok(Opened::Replaced | Opened::Lost) => return self.lost().await,
                Err(failure) => failure,
            };
            tracing::debug!(pod = %self.spec.pod, container = %self.spec.container,
                error = ?failure, "reading the rest of a stopped container failed");
            match failure {
                Failure::Gone => return Ok(()),
                Failure::Transient { retry_after, .. }
                    if backoff.attempts() + 1 < HISTORY_ATTEMPTS =>
                {
                    tokio::time::sleep(delay_for(&mut backoff, retry_after)).await;
                }
                _ => return self.lost().await,
            }
        }
    }

    /// The pod went while the stream was down: what came after the last line read cannot be
    /// asked for any more.
    async fn deleted_while_down(&mut self) -> Result<(), Closed> {
        let message = match self.cursor.last() {
            Some(last) => format!(
                "lines after {} may be missing: the pod was deleted while its log stream was \
                 down",
                crate::event::format_time(&last)
            ),
            None => {
                "lines may be missing: the pod was deleted before its log could be read".to_string()
            }
        };
        self.status(EventKind::Gap, message).await
    }

    /// The instance can no longer be read: lines after the last one seen may be missing.
    async fn lost(&mut self) -> Result<(), Closed> {
        let message = match self.cursor.last() {
            Some(last) => format!(
                "lines after {} may be missing: the container restarted again before they \
                 could be read",
                crate::event::format_time(&last)
            ),
            None => "lines may be missing: the container restarted again before they could be \
                     read"
                .to_string(),
        };
        self.status(EventKind::Gap, message).await
    }

    async fn status(&self, event: EventKind, message: String) -> Result<(), Closed> {
        let ev = LogEvent::Event(StatusEvent {
            time: Utc::now(),
            namespace: self.spec.namespace.clone(),
            pod: self.spec.pod.clone(),
            container: Some(self.spec.container.clone()),
            event,
            message,
        });
        self.tx.send(TailMsg::Event(ev)).await.map_err(|_| Closed)
    }
}

enum Running {
    Yes,
    No,
    /// A new instance: its own tail reports it.
    Replaced,
    /// The pod is gone: discovery reports it.
    PodGone,
}

fn delay_for(backoff: &mut Backoff, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(at_least) => backoff.next_delay_at_least(at_least),
        None => backoff.next_delay(),
    }
}

fn since_floor(spec: &TailSpec) -> Option<DateTime<Utc>> {
    match spec.since {
        Some(Since::Time(t)) => Some(t),
        _ => None,
    }
}

/// `time` cut down to its whole second, so that the client cannot round it up past lines.
fn whole_second(time: DateTime<Utc>) -> Option<k8s_openapi::jiff::Timestamp> {
    k8s_openapi::jiff::Timestamp::from_second(time.timestamp()).ok()
}

/// The next chunk of the body; empty at the end.
async fn next_chunk(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let buf = reader.fill_buf().await?;
    let chunk = buf.to_vec();
    reader.consume_unpin(chunk.len());
    Ok(chunk)
}

/// Resolves once the pod of this tail is deleted; never if nobody will say.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|deleted| *deleted).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(sec: u32, ms: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, sec).unwrap()
            + chrono::Duration::milliseconds(i64::from(ms))
    }

    #[test]
    fn resume_skips_lines_of_the_truncated_second_already_seen() {
        let mut cursor = Cursor::new(None);
        for t in [at(1, 100), at(1, 500), at(1, 500)] {
            assert_eq!(cursor.accept(t), Verdict::Emit);
        }
        cursor.resume();
        // The server replays the whole second 12:00:01.
        assert_eq!(cursor.accept(at(1, 100)), Verdict::Skip);
        assert_eq!(cursor.accept(at(1, 500)), Verdict::Skip);
        assert_eq!(cursor.accept(at(1, 500)), Verdict::Skip);
        assert_eq!(cursor.accept(at(1, 900)), Verdict::Emit);
        assert_eq!(cursor.accept(at(2, 0)), Verdict::Emit);
    }

    #[test]
    fn resume_keeps_new_lines_with_the_same_timestamp() {
        let mut cursor = Cursor::new(None);
        assert_eq!(cursor.accept(at(1, 500)), Verdict::Emit);
        cursor.resume();
        assert_eq!(cursor.accept(at(1, 500)), Verdict::Skip);
        assert_eq!(cursor.accept(at(1, 500)), Verdict::Emit);
    }

    #[test]
    fn resume_that_misses_the_last_line_reports_a_gap() {
        let mut cursor = Cursor::new(None);
        cursor.accept(at(1, 500));
        cursor.resume();
        assert_eq!(
            cursor.accept(at(3, 0)),
            Verdict::EmitAfterGap { from: at(1, 500) }
        );
        assert_eq!(cursor.accept(at(4, 0)), Verdict::Emit);
    }

    #[test]
    fn a_resume_that_gives_nothing_proves_nothing_unless_it_gave_the_last_line_back() {
        let mut cursor = Cursor::new(None);
        cursor.accept(at(1, 500));
        cursor.resume();
        assert_eq!(cursor.unproven(), Some(at(1, 500)));
        assert_eq!(cursor.accept(at(1, 500)), Verdict::Skip);
        assert_eq!(cursor.unproven(), None);
    }

    #[test]
    fn lines_before_the_start_time_are_dropped() {
        let mut cursor = Cursor::new(Some(at(1, 500)));
        assert_eq!(cursor.accept(at(1, 0)), Verdict::Skip);
        assert_eq!(cursor.accept(at(1, 500)), Verdict::Emit);
    }

    #[test]
    fn resume_before_any_line_skips_nothing() {
        let mut cursor = Cursor::new(None);
        cursor.resume();
        assert_eq!(cursor.accept(at(1, 0)), Verdict::Emit);
    }

    #[test]
    fn whole_second_never_rounds_up() {
        let t = whole_second(at(1, 999)).unwrap();
        assert_eq!(t.to_string(), "2026-05-01T12:00:01Z");
    }

    #[test]
    fn forbidden_and_throttled_answers_are_told_apart() {
        let forbidden = kube::Error::Api(
            kube::core::Status::failure("pods \"x\" is forbidden", "Forbidden")
                .with_code(403)
                .boxed(),
        );
        assert!(matches!(classify(&forbidden), Failure::Forbidden(_)));
        let throttled: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "message": "slow down", "reason": "TooManyRequests",
            "details": {"retryAfterSeconds": 3}, "code": 429
        }))
        .unwrap();
        assert_eq!(
            classify(&kube::Error::Api(throttled.boxed())),
            Failure::Transient {
                message: "slow down".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }
}
