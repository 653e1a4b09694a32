//! Merging every tail into one stream: [`run`].
//!
//! History comes out in timestamp order across all containers: a k-way merge that holds one
//! line per tail, so memory stays bounded whatever the history's length. Once every initial
//! tail has sent its history, lines go out as they arrive, and tails started later (new pods,
//! restarts) join. Status events go out as soon as they are received. This module does no IO
//! besides its channels.

use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, stream};
use tokio::sync::mpsc;

use crate::event::{LogEvent, LogLine};
use crate::tail::TailMsg;

/// The consumer went away.
#[derive(Debug)]
pub(crate) struct Closed;

struct Source {
    rx: mpsc::Receiver<TailMsg>,
    head: Option<LogLine>,
    history_done: bool,
    closed: bool,
}

/// Merges `initial` (whose history is ordered) and every receiver that arrives on `later`
/// into `out`, until all of them are closed.
pub(crate) async fn run(
    initial: Vec<mpsc::Receiver<TailMsg>>,
    later: mpsc::UnboundedReceiver<mpsc::Receiver<TailMsg>>,
    out: mpsc::Sender<LogEvent>,
) {
    let mut sources: Vec<Source> = initial
        .into_iter()
        .map(|rx| Source {
            rx,
            head: None,
            history_done: false,
            closed: false,
        })
        .collect();
    if history(&mut sources, &out).await.is_err() {
        return;
    }
    let live = sources
        .into_iter()
        .filter(|s| !s.closed)
        .map(|s| receiver_stream(s.rx));
    let _ = follow(live.collect(), later, &out).await;
}

/// Emits every history line of `sources` in timestamp order.
async fn history(sources: &mut [Source], out: &mpsc::Sender<LogEvent>) -> Result<(), Closed> {
    loop {
        for source in sources.iter_mut() {
            fill(source, out).await?;
        }
        let next = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head.as_ref().map(|h| (h.time, i)))
            .min();
        let Some((_, index)) = next else {
            return Ok(());
        };
        if let Some(line) = sources[index].head.take() {
            out.send(LogEvent::Log(line)).await.map_err(|_| Closed)?;
        }
    }
}

/// Reads from a source until it has a head line or has no more history.
async fn fill(source: &mut Source, out: &mpsc::Sender<LogEvent>) -> Result<(), Closed> {
    while source.head.is_none() && !source.history_done && !source.closed {
        match source.rx.recv().await {
            Some(TailMsg::Event(LogEvent::Log(line))) => source.head = Some(line),
            Some(TailMsg::Event(ev)) => out.send(ev).await.map_err(|_| Closed)?,
            Some(TailMsg::HistoryDone) => source.history_done = true,
            None => source.closed = true,
        }
    }
    Ok(())
}

/// Emits events from every live source as they arrive.
async fn follow(
    mut live: SelectAll<BoxStream<'static, TailMsg>>,
    mut later: mpsc::UnboundedReceiver<mpsc::Receiver<TailMsg>>,
    out: &mpsc::Sender<LogEvent>,
) -> Result<(), Closed> {
    let mut later_open = true;
    loop {
        let step = tokio::select! {
            joined = later.recv(), if later_open => Step::Joined(joined),
            msg = live.next(), if !live.is_empty() => Step::Message(msg),
            else => return Ok(()),
        };
        match step {
            Step::Joined(Some(rx)) => live.push(receiver_stream(rx)),
            Step::Joined(None) => later_open = false,
            Step::Message(msg) => forward(msg, out).await?,
        }
    }
}

/// What the live merge got next.
enum Step {
    /// A tail started after the initial list (or `None`: no more will come).
    Joined(Option<mpsc::Receiver<TailMsg>>),
    /// A message from one of the live tails.
    Message(Option<TailMsg>),
}

async fn forward(msg: Option<TailMsg>, out: &mpsc::Sender<LogEvent>) -> Result<(), Closed> {
    match msg {
        Some(TailMsg::Event(ev)) => out.send(ev).await.map_err(|_| Closed),
        Some(TailMsg::HistoryDone) | None => Ok(()),
    }
}

fn receiver_stream(rx: mpsc::Receiver<TailMsg>) -> BoxStream<'static, TailMsg> {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, StatusEvent};
    use chrono::{DateTime, TimeZone, Utc};
    use std::time::Duration;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    fn log(pod: &str, ms: i64) -> TailMsg {
        TailMsg::Event(LogEvent::Log(LogLine {
            time: at(ms),
            namespace: "shop".into(),
            pod: pod.into(),
            container: "app".into(),
            line: format!("{pod}@{ms}"),
            truncated: false,
        }))
    }

    fn started(pod: &str) -> TailMsg {
        TailMsg::Event(LogEvent::Event(StatusEvent {
            time: at(0),
            namespace: "shop".into(),
            pod: pod.into(),
            container: Some("app".into()),
            event: EventKind::Started,
            message: String::new(),
        }))
    }

    async fn source(msgs: Vec<TailMsg>) -> mpsc::Receiver<TailMsg> {
        let (tx, rx) = mpsc::channel(msgs.len() + 1);
        for m in msgs {
            tx.send(m).await.unwrap();
        }
        rx
    }

    fn describe(ev: &LogEvent) -> String {
        match ev {
            LogEvent::Log(l) => l.line.clone(),
            LogEvent::Event(e) => format!("{} {}", e.event.as_str(), e.pod),
            LogEvent::Heartbeat { .. } => "heartbeat".into(),
        }
    }

    async fn collect(mut rx: mpsc::Receiver<LogEvent>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            out.push(describe(&ev));
        }
        out
    }

    #[tokio::test]
    async fn history_comes_out_in_time_order_across_tails() {
        let a = source(vec![started("a"), log("a", 1), log("a", 5), log("a", 9)]).await;
        let b = source(vec![started("b"), log("b", 2), log("b", 3), log("b", 10)]).await;
        let (later_tx, later_rx) = mpsc::unbounded_channel();
        drop(later_tx);
        let (out_tx, out_rx) = mpsc::channel(16);
        tokio::spawn(run(vec![a, b], later_rx, out_tx));
        assert_eq!(
            collect(out_rx).await,
            [
                "started a",
                "started b",
                "a@1",
                "b@2",
                "b@3",
                "a@5",
                "a@9",
                "b@10"
            ]
        );
    }

    #[tokio::test]
    async fn equal_times_keep_a_stable_order() {
        let a = source(vec![log("a", 1), log("a", 1)]).await;
        let b = source(vec![log("b", 1)]).await;
        let (later_tx, later_rx) = mpsc::unbounded_channel();
        drop(later_tx);
        let (out_tx, out_rx) = mpsc::channel(16);
        tokio::spawn(run(vec![a, b], later_rx, out_tx));
        assert_eq!(collect(out_rx).await, ["a@1", "a@1", "b@1"]);
    }

    #[tokio::test]
    async fn live_lines_follow_history_and_later_tails_join() {
        let (a_tx, a_rx) = mpsc::channel(8);
        a_tx.send(log("a", 1)).await.unwrap();
        a_tx.send(TailMsg::HistoryDone).await.unwrap();
        let (later_tx, later_rx) = mpsc::unbounded_channel();
        let (out_tx, mut out_rx) = mpsc::channel(16);
        tokio::spawn(run(vec![a_rx], later_rx, out_tx));

        let first = out_rx.recv().await.map(|e| describe(&e));
        assert_eq!(first.as_deref(), Some("a@1"));

        // A live line older than history still comes out: live lines are not reordered.
        a_tx.send(log("a", 0)).await.unwrap();
        let live = out_rx.recv().await.map(|e| describe(&e));
        assert_eq!(live.as_deref(), Some("a@0"));

        let c = source(vec![log("c", 7)]).await;
        later_tx.send(c).unwrap();
        let joined = out_rx.recv().await.map(|e| describe(&e));
        assert_eq!(joined.as_deref(), Some("c@7"));

        drop(a_tx);
        drop(later_tx);
        assert!(collect(out_rx).await.is_empty());
    }

    #[tokio::test]
    async fn a_slow_tail_holds_history_back_until_it_speaks() {
        let fast = source(vec![log("fast", 5)]).await;
        let (slow_tx, slow_rx) = mpsc::channel(8);
        let (later_tx, later_rx) = mpsc::unbounded_channel();
        drop(later_tx);
        let (out_tx, out_rx) = mpsc::channel(16);
        tokio::spawn(run(vec![fast, slow_rx], later_rx, out_tx));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = slow_tx.send(log("slow", 1)).await;
        });
        assert_eq!(collect(out_rx).await, ["slow@1", "fast@5"]);
    }
}
