//! Moving events from the engine to one client: [`pump`] coalesces bursts into one write,
//! sends a heartbeat after a silence, ends with a `closing` event on shutdown, and stops as
//! soon as the client goes away. How events become bytes or messages is the [`Sink`]'s
//! business.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{FutureExt, Stream, StreamExt};
use podlogs::{EventKind, LogEvent, StatusEvent};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Most events written in one go when a burst arrives.
const MAX_BATCH: usize = 512;

/// The client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client closed the stream")]
pub struct Closed;

/// Where a client's events go: a chunked HTTP body or a WebSocket.
pub trait Sink: Send {
    /// Writes a batch of events at once (one chunk, or one message per event), returning the
    /// number of bytes written.
    fn send(
        &mut self,
        events: &[LogEvent],
    ) -> impl std::future::Future<Output = Result<u64, Closed>> + Send;

    /// Resolves when the client has gone away. Must be safe to drop before it resolves.
    fn closed(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

/// What [`pump`] needs besides the events and the sink.
#[derive(Debug, Clone)]
pub struct PumpOptions {
    /// Silence after which a heartbeat is sent.
    pub heartbeat: Duration,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
}

/// The event sent to every open stream when the relay shuts down.
pub fn closing_event() -> LogEvent {
    LogEvent::Event(StatusEvent {
        time: Utc::now(),
        namespace: String::new(),
        pod: String::new(),
        container: None,
        event: EventKind::Closing,
        message: "the relay is shutting down; reconnect to resume".into(),
    })
}

/// How the pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The engine's stream ended (no follow, or every pod is gone).
    Finished,
    /// The client went away.
    ClientGone,
    /// The relay is shutting down; a closing event was sent.
    ShuttingDown,
}

/// Sends `events` to `sink` until the events end, the client goes away, or `shutdown` turns
/// true.
pub async fn pump<E, S>(
    mut events: E,
    sink: &mut S,
    options: PumpOptions,
    mut shutdown: watch::Receiver<bool>,
) -> PumpEnd
where
    E: Stream<Item = LogEvent> + Unpin + Send,
    S: Sink,
{
    let mut upstream = Upstream::new(&options.metrics);
    let end = loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => {
                let _ = sink.send(&[closing_event()]).await;
                break PumpEnd::ShuttingDown;
            }
            next = events.next() => {
                let Some(first) = next else { break PumpEnd::Finished };
                let (batch, ended) = gather(first, &mut events);
                upstream.observe(&batch);
                let lines = batch.iter().filter(|e| matches!(e, LogEvent::Log(_))).count();
                match sink.send(&batch).await {
                    Ok(bytes) => options.metrics.sent(lines as u64, bytes),
                    Err(Closed) => break PumpEnd::ClientGone,
                }
                if ended {
                    break PumpEnd::Finished;
                }
            }
            _ = tokio::time::sleep(options.heartbeat) => {
                let beat = LogEvent::Heartbeat { time: Utc::now() };
                if sink.send(&[beat]).await.is_err() {
                    break PumpEnd::ClientGone;
                }
                options.metrics.heartbeat_sent();
            }
            _ = sink.closed() => break PumpEnd::ClientGone,
        }
    };
    tracing::debug!(end = ?end, "client stream ended");
    end
}

/// Resolves once shutdown has begun (or its sender is gone, which means the same).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Takes the events that are already waiting after `first`, so a burst is one write; never
/// waits for more. Says whether the stream ended meanwhile.
fn gather<E>(first: LogEvent, events: &mut E) -> (Vec<LogEvent>, bool)
where
    E: Stream<Item = LogEvent> + Unpin,
{
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match events.next().now_or_never() {
            Some(Some(event)) => batch.push(event),
            Some(None) => return (batch, true),
            None => break,
        }
    }
    (batch, false)
}

/// Counts container streams open upstream from the engine's started and ended events.
struct Upstream<'a> {
    metrics: &'a Metrics,
    open: HashSet<(String, String, String)>,
}

impl<'a> Upstream<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        Upstream {
            metrics,
            open: HashSet::new(),
        }
    }

    fn observe(&mut self, batch: &[LogEvent]) {
        for event in batch {
            let LogEvent::Event(e) = event else { continue };
            let key = |c: &String| (e.namespace.clone(), e.pod.clone(), c.clone());
            match (e.event, &e.container) {
                (EventKind::Started, Some(c)) if self.open.insert(key(c)) => {
                    self.metrics.upstream_opened();
                }
                (EventKind::Ended, Some(c)) if self.open.remove(&key(c)) => {
                    self.metrics.upstream_closed(1);
                }
                (EventKind::Ended | EventKind::PodDeleted, None) => {
                    let before = self.open.len();
                    self.open
                        .retain(|(ns, pod, _)| *ns != e.namespace || *pod != e.pod);
                    self.metrics.upstream_closed(before - self.open.len());
                }
                _ => {}
            }
        }
    }
}

impl Drop for Upstream<'_> {
    fn drop(&mut self) {
        self.metrics.upstream_closed(self.open.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use podlogs::LogLine;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<LogEvent>>,
        gone: bool,
    }

    impl Sink for Recorder {
        async fn send(&mut self, events: &[LogEvent]) -> Result<u64, Closed> {
            if self.gone {
                return Err(Closed);
            }
            self.writes.push(events.to_vec());
            Ok(events.len() as u64)
        }

        async fn closed(&mut self) {
            if !self.gone {
                futures::future::pending::<()>().await;
            }
        }
    }

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

    fn options(heartbeat: Duration) -> PumpOptions {
        PumpOptions {
            heartbeat,
            metrics: Arc::new(Metrics::default()),
        }
    }

    #[tokio::test]
    async fn a_burst_goes_out_in_one_write() {
        let events = futures::stream::iter(vec![line("a"), line("b"), line("c")]);
        let (_stop, shutdown) = watch::channel(false);
        let mut sink = Recorder::default();
        let end = pump(
            events,
            &mut sink,
            options(Duration::from_secs(60)),
            shutdown,
        )
        .await;
        assert_eq!(end, PumpEnd::Finished);
        assert_eq!(sink.writes.len(), 1);
        assert_eq!(sink.writes[0].len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_brings_a_heartbeat_then_lines_flow_on() {
        let (mut tx, rx) = mpsc::channel(4);
        let (_stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut sink = Recorder::default();
            pump(rx, &mut sink, options(Duration::from_secs(15)), shutdown).await;
            sink
        });
        tokio::time::sleep(Duration::from_secs(16)).await;
        futures::SinkExt::send(&mut tx, line("after"))
            .await
            .unwrap();
        drop(tx);
        let sink = task.await.unwrap();
        assert!(
            matches!(sink.writes[0][..], [LogEvent::Heartbeat { .. }]),
            "{:?}",
            sink.writes
        );
        assert!(matches!(&sink.writes[1][..], [LogEvent::Log(l)] if l.line == "after"));
    }

    #[tokio::test]
    async fn shutdown_sends_closing_and_ends() {
        let (_tx, rx) = mpsc::channel::<LogEvent>(4);
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut sink = Recorder::default();
            let end = pump(rx, &mut sink, options(Duration::from_secs(60)), shutdown).await;
            (end, sink)
        });
        stop.send_replace(true);
        let (end, sink) = task.await.unwrap();
        assert_eq!(end, PumpEnd::ShuttingDown);
        let last = sink.writes.last().and_then(|w| w.last()).cloned();
        assert!(
            matches!(last, Some(LogEvent::Event(ref e)) if e.event == EventKind::Closing),
            "{last:?}"
        );
    }

    #[tokio::test]
    async fn a_departed_client_stops_the_pump() {
        let (_tx, rx) = mpsc::channel::<LogEvent>(4);
        let (_stop, shutdown) = watch::channel(false);
        let mut sink = Recorder {
            gone: true,
            ..Recorder::default()
        };
        let end = pump(rx, &mut sink, options(Duration::from_secs(60)), shutdown).await;
        assert_eq!(end, PumpEnd::ClientGone);
    }

    #[test]
    fn upstream_gauge_follows_started_and_ended_events() {
        let metrics = Metrics::default();
        let event = |kind, container: Option<&str>| {
            LogEvent::Event(StatusEvent {
                time: Utc::now(),
                namespace: "shop".into(),
                pod: "web-0".into(),
                container: container.map(Into::into),
                event: kind,
                message: String::new(),
            })
        };
        {
            let mut up = Upstream::new(&metrics);
            up.observe(&[
                event(EventKind::Started, Some("app")),
                event(EventKind::Started, Some("sidecar")),
                event(EventKind::Ended, Some("app")),
            ]);
            assert!(
                metrics
                    .render()
                    .contains("aether_relay_upstream_streams_open 1\n")
            );
        }
        assert!(
            metrics
                .render()
                .contains("aether_relay_upstream_streams_open 0\n")
        );
    }
}
