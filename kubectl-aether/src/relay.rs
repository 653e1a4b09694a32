//! The relay path: aether-relay runs the engine in the cluster and the plugin reads its NDJSON
//! back into the same events the direct path gives: [`events`].
//!
//! The relay is reached either through the apiserver's service proxy with the user's own
//! credentials, or at a URL with a bearer token. A followed stream that ends (the relay
//! restarted, a proxy cut an idle connection) is reopened from a little before the last
//! event, and lines already printed are skipped per container. This module neither chooses
//! the path nor prints anything.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use podlogs::event::format_time;
use podlogs::{EventKind, LogEvent, SCHEMA_VERSION, Since, StatusEvent};
use tokio::sync::mpsc;

use crate::config::Config;

/// Events buffered between the reader and the printer.
const BUFFER: usize = 256;

/// How far before the last event a reopened stream starts, for lines of other containers
/// that were still on their way when the stream was cut.
const RESUME_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// First and longest wait before reopening a cut stream.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));

/// Header in which the relay names the version of its event schema.
const SCHEMA_HEADER: &str = "x-aether-schema-version";

/// Where the relay is.
#[derive(Clone)]
pub enum Endpoint {
    /// Through the apiserver's service proxy, as the user.
    ServiceProxy {
        /// A client for the apiserver, with the user's credentials.
        client: Client,
        /// The relay's namespace.
        namespace: String,
        /// The relay's service and port as the proxy URL names them (`aether-relay:http`).
        service: String,
    },
    /// Straight to the relay's own URL.
    Url {
        /// A client whose base URL is the relay and whose token is the caller's.
        client: Client,
        /// The relay's URL, for messages.
        url: String,
    },
}

impl Endpoint {
    fn client(&self) -> &Client {
        match self {
            Endpoint::ServiceProxy { client, .. } | Endpoint::Url { client, .. } => client,
        }
    }

    /// The path of `route` (which starts with `/`) at this endpoint.
    fn path(&self, route: &str) -> String {
        match self {
            Endpoint::ServiceProxy {
                namespace, service, ..
            } => format!("/api/v1/namespaces/{namespace}/services/{service}/proxy{route}"),
            Endpoint::Url { .. } => route.to_string(),
        }
    }

    /// Where the relay is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::ServiceProxy {
                namespace, service, ..
            } => format!("the relay service {service} in namespace {namespace}"),
            Endpoint::Url { url, .. } => format!("the relay at {url}"),
        }
    }
}

/// What to ask the relay for; the relay serves apps by name in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRequest {
    /// The app.
    pub app: String,
    /// Its namespace; `None` lets a relay that serves one namespace use it.
    pub namespace: Option<String>,
    /// Keep streaming.
    pub follow: bool,
    /// History per container; `None` leaves it to the relay (its cap).
    pub tail_lines: Option<i64>,
    /// Where history starts.
    pub since: Option<Since>,
    /// Container include regex, as typed.
    pub container: Option<String>,
    /// Container exclude regex, as typed.
    pub exclude_container: Option<String>,
    /// Previous instances.
    pub previous: bool,
}

/// Whether `config` can be served by a relay at all.
pub fn possible(config: &Config) -> bool {
    RelayRequest::from_config(config, None).is_ok()
}

/// Why the plugin's flags cannot go through a relay.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// `-l` instead of an app name.
    #[error(
        "the relay serves apps by name; pass the app (kubectl aether logs APP) instead of -l, \
         or use --via direct"
    )]
    Selector,
    /// Several namespaces or `-A`.
    #[error("the relay reads one namespace at a time; pass a single -n, or use --via direct")]
    Namespaces,
    /// Init or ephemeral containers.
    #[error(
        "the relay reads regular containers only; drop --init-containers and \
         --ephemeral-containers, or use --via direct"
    )]
    ContainerKinds,
}

impl RelayRequest {
    /// The request for `config`, in `default_namespace` when no -n was given.
    pub fn from_config(
        config: &Config,
        default_namespace: Option<&str>,
    ) -> Result<Self, RequestError> {
        let app = config.app.clone().ok_or(RequestError::Selector)?;
        let namespace = match &config.namespaces {
            None => default_namespace.map(str::to_string),
            Some(podlogs::Namespaces::One(ns)) => Some(ns.clone()),
            Some(_) => return Err(RequestError::Namespaces),
        };
        if config.containers.init || config.containers.ephemeral {
            return Err(RequestError::ContainerKinds);
        }
        Ok(RelayRequest {
            app,
            namespace,
            follow: config.follow,
            tail_lines: config.tail_lines,
            since: config.since,
            container: config
                .containers
                .include
                .as_ref()
                .map(|r| r.as_str().to_string()),
            exclude_container: config
                .containers
                .exclude
                .as_ref()
                .map(|r| r.as_str().to_string()),
            previous: config.previous,
        })
    }

    /// The route and query string, resuming at `resume_at` when given.
    fn route(&self, resume_at: Option<DateTime<Utc>>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(namespace) = &self.namespace {
            query.append_pair("namespace", namespace);
        }
        if self.follow {
            query.append_pair("follow", "true");
        }
        match resume_at {
            Some(time) => {
                query.append_pair("since_time", &format_time(&time));
            }
            None => {
                if let Some(n) = self.tail_lines {
                    query.append_pair("tail_lines", &n.to_string());
                }
                match self.since {
                    Some(Since::Seconds(s)) => {
                        query.append_pair("since", &format!("{s}s"));
                    }
                    Some(Since::Time(t)) => {
                        query.append_pair("since_time", &format_time(&t));
                    }
                    None => {}
                }
            }
        }
        if let Some(re) = &self.container {
            query.append_pair("container", re);
        }
        if let Some(re) = &self.exclude_container {
            query.append_pair("exclude_container", re);
        }
        if self.previous {
            query.append_pair("previous", "true");
        }
        let app: String = url::form_urlencoded::byte_serialize(self.app.as_bytes()).collect();
        format!("/apps/{app}/logs?{}", query.finish())
    }
}

/// Why the relay could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The request did not reach an answer.
    #[error("cannot reach {where_}; check that it runs (kubectl -n aether-system get pods)")]
    Unreachable {
        /// Where the relay was looked for.
        where_: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The relay, or the apiserver in front of it, refused.
    #[error("{where_} answered {code}: {message}{hint}")]
    Refused {
        /// Where the relay was looked for.
        where_: String,
        /// HTTP status.
        code: u16,
        /// The relay's or the apiserver's message.
        message: String,
        /// What to do about it.
        hint: &'static str,
    },
}

/// Opens the stream at `endpoint` and returns its events; errors before the first byte (403,
/// 404, an unreachable relay) are returned here, later cuts are reopened while following.
pub async fn events(
    endpoint: Endpoint,
    request: RelayRequest,
    max_line_bytes: usize,
) -> anyhow::Result<BoxStream<'static, LogEvent>> {
    let body = open(&endpoint, &request, None).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    let max_event_bytes = max_line_bytes.saturating_mul(6).saturating_add(64 * 1024);
    tokio::spawn(pump(endpoint, request, body, tx, max_event_bytes));
    Ok(tokio_stream_from(rx).boxed())
}

fn tokio_stream_from(mut rx: mpsc::Receiver<LogEvent>) -> impl Stream<Item = LogEvent> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

type BodyStream = BoxStream<'static, Result<Bytes, kube::Error>>;

/// Sends the request and checks the answer's status.
async fn open(
    endpoint: &Endpoint,
    request: &RelayRequest,
    resume_at: Option<DateTime<Utc>>,
) -> Result<BodyStream, RelayError> {
    let uri = endpoint.path(&request.route(resume_at));
    tracing::debug!(%uri, "asking the relay");
    let http_request = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/x-ndjson")
        .body(Body::from(Vec::new()))
        .expect("a GET with a path built from encoded parts is a valid request");
    let response = endpoint
        .client()
        .send(http_request)
        .await
        .map_err(|source| RelayError::Unreachable {
            where_: endpoint.describe(),
            source,
        })?;

    let status = response.status();
    if !status.is_success() {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(refusal(endpoint, status.as_u16(), &bytes));
    }
    if let Some(version) = response
        .headers()
        .get(SCHEMA_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        && version > SCHEMA_VERSION
    {
        tracing::warn!(
            relay = version,
            plugin = SCHEMA_VERSION,
            "the relay speaks a newer event schema; upgrade the plugin if fields are missing"
        );
    }
    Ok(response.into_body().into_data_stream().boxed())
}

/// Turns an error answer into what the user reads.
fn refusal(endpoint: &Endpoint, code: u16, body: &[u8]) -> RelayError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    // The relay says {"error": ...}; the apiserver in front of it sends a Status.
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let hint = match (code, endpoint) {
        (401, _) => "; pass a token the relay accepts with --relay-token or AETHER_RELAY_TOKEN",
        (403, Endpoint::ServiceProxy { .. }) => {
            "; ask for get on services/proxy for the relay service"
        }
        (403, Endpoint::Url { .. }) => {
            "; ask for get on apps/logs in group aether.dev for this app in its namespace"
        }
        (404, _) => "; check the app name and the namespace (-n)",
        (429, _) => "; too many streams are open, try again shortly",
        (503, Endpoint::ServiceProxy { .. }) => {
            "; check that the relay runs (kubectl -n aether-system get pods)"
        }
        _ => "",
    };
    RelayError::Refused {
        where_: endpoint.describe(),
        code,
        message,
        hint,
    }
}

/// Reads NDJSON from `body`, forwards the events and, while following, reopens cut streams.
async fn pump(
    endpoint: Endpoint,
    request: RelayRequest,
    mut body: BodyStream,
    tx: mpsc::Sender<LogEvent>,
    max_event_bytes: usize,
) {
    let mut seen = Seen::default();
    let mut delay = BACKOFF.0;
    loop {
        let end = read(&mut body, &tx, &mut seen, max_event_bytes).await;
        let reason = match end {
            ReadEnd::ConsumerGone => return,
            ReadEnd::Ended if !request.follow => return,
            ReadEnd::Ended => "the relay ended the stream".to_string(),
            ReadEnd::Failed(why) => why,
        };
        if !request.follow {
            let _ = tx.send(stream_event(EventKind::Error, reason)).await;
            return;
        }

        // Reopen from a little before the last event; `seen` drops what was printed.
        let mut reported = false;
        loop {
            tracing::info!(%reason, delay_ms = delay.as_millis() as u64, "reopening the relay stream");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF.1);
            let resume_at = seen.resume_point();
            match open(&endpoint, &request, resume_at).await {
                Ok(reopened) => {
                    body = reopened;
                    delay = BACKOFF.0;
                    let message = format!("{reason}; reopened");
                    if tx
                        .send(stream_event(EventKind::Reconnected, message))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    break;
                }
                Err(err) => {
                    tracing::debug!(error = %err, "reopening the relay stream failed");
                    if !reported {
                        // Said once per outage; the retries go on quietly.
                        reported = true;
                        let message = format!("{reason}; reopening failed ({err}), retrying");
                        if tx
                            .send(stream_event(EventKind::Error, message))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
            }
        }
    }
}

enum ReadEnd {
    /// The relay ended the body (or said it is closing).
    Ended,
    /// Reading failed.
    Failed(String),
    /// Nobody reads the events any more.
    ConsumerGone,
}

async fn read(
    body: &mut BodyStream,
    tx: &mpsc::Sender<LogEvent>,
    seen: &mut Seen,
    max_event_bytes: usize,
) -> ReadEnd {
    let mut decoder = NdjsonDecoder::new(max_event_bytes);
    loop {
        let chunk = match body.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(err)) => {
                return ReadEnd::Failed(format!("reading from the relay failed: {err}"));
            }
            None => {
                return match decoder.finish() {
                    Some(_) => ReadEnd::Failed("the relay stream was cut mid-event".into()),
                    None => ReadEnd::Ended,
                };
            }
        };
        for item in decoder.push(&chunk) {
            let event = match item {
                Ok(event) => event,
                Err(problem) => stream_event(EventKind::Error, problem),
            };
            let closing = matches!(&event, LogEvent::Event(e) if e.event == EventKind::Closing);
            if !seen.admit(&event) {
                continue;
            }
            if closing {
                // The relay is going away; reopening reaches another replica.
                return ReadEnd::Failed("the relay is shutting down".into());
            }
            if tx.send(event).await.is_err() {
                return ReadEnd::ConsumerGone;
            }
        }
    }
}

fn stream_event(event: EventKind, message: String) -> LogEvent {
    LogEvent::Event(StatusEvent {
        time: Utc::now(),
        namespace: String::new(),
        pod: String::new(),
        container: None,
        event,
        message,
    })
}

/// Splits a byte stream into NDJSON events, with a cap on one event's size.
struct NdjsonDecoder {
    pending: Vec<u8>,
    max: usize,
    oversized: bool,
}

impl NdjsonDecoder {
    fn new(max: usize) -> Self {
        NdjsonDecoder {
            pending: Vec::new(),
            max,
            oversized: false,
        }
    }

    /// The events completed by `chunk`; a line that is not an event becomes an error text.
    fn push(&mut self, mut chunk: &[u8]) -> Vec<Result<LogEvent, String>> {
        let mut out = Vec::new();
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            let (head, rest) = chunk.split_at(end);
            chunk = &rest[1..];
            if self.oversized {
                self.oversized = false;
                self.pending.clear();
                out.push(Err(format!(
                    "the relay sent an event over {} bytes; it was dropped",
                    self.max
                )));
                continue;
            }
            self.pending.extend_from_slice(head);
            let line = std::mem::take(&mut self.pending);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            out.push(serde_json::from_slice::<LogEvent>(&line).map_err(|err| {
                format!("the relay sent a line that is not an event ({err}); it was skipped")
            }));
        }
        if !self.oversized {
            self.pending.extend_from_slice(chunk);
            if self.pending.len() > self.max {
                self.oversized = true;
                self.pending = Vec::new();
            }
        }
        out
    }

    /// What is left without a final newline, if anything.
    fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.iter().all(u8::is_ascii_whitespace) || self.oversized).then_some(rest)
    }
}

/// The lines already printed, per container, so a reopened stream repeats none of them.
#[derive(Default)]
struct Seen {
    /// Per (namespace, pod, container): the last line's time and how many lines had it.
    last: HashMap<(String, String, String), (DateTime<Utc>, usize)>,
    /// Per container, lines at its last time still to skip in a reopened stream.
    replay: HashMap<(String, String, String), usize>,
    /// The newest time of any event.
    newest: Option<DateTime<Utc>>,
}

impl Seen {
    /// Where a reopened stream starts.
    fn resume_point(&mut self) -> Option<DateTime<Utc>> {
        self.replay = self
            .last
            .iter()
            .map(|(k, (_, n))| (k.clone(), *n))
            .collect();
        self.newest.map(|t| t - RESUME_OVERLAP)
    }

    /// Whether `event` is new; remembers it when it is a line.
    fn admit(&mut self, event: &LogEvent) -> bool {
        let LogEvent::Log(line) = event else {
            if !matches!(event, LogEvent::Heartbeat { .. }) {
                self.newest = self.newest.max(Some(event.time()));
            }
            return true;
        };
        let key = (
            line.namespace.clone(),
            line.pod.clone(),
            line.container.clone(),
        );
        match self.last.get_mut(&key) {
            Some((last, _)) if line.time < *last => return false,
            Some((last, count)) if line.time == *last => {
                if let Some(skip) = self.replay.get_mut(&key).filter(|n| **n > 0) {
                    *skip -= 1;
                    return false;
                }
                *count += 1;
            }
            _ => {
                self.replay.remove(&key);
                self.last.insert(key, (line.time, 1));
            }
        }
        self.newest = self.newest.max(Some(line.time));
        true
    }
}

/// A client for a relay at `url`, sending `token` as a bearer token when given.
pub fn url_client(url: &str, token: Option<&str>) -> anyhow::Result<Client> {
    let uri: http::Uri = url.parse().with_context(|| {
        format!("--relay-url {url:?} is not a URL; use a form such as https://relay.example.com")
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        anyhow::bail!("--relay-url {url:?} must start with http:// or https://");
    }
    let mut config = kube::Config::new(uri);
    config.read_timeout = None;
    if let Some(token) = token {
        config.auth_info.token = Some(token.to_string().into());
    }
    Client::try_from(config).context("cannot build an HTTP client for the relay")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use podlogs::LogLine;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap() + chrono::TimeDelta::milliseconds(ms)
    }

    fn line(pod: &str, ms: i64, text: &str) -> LogEvent {
        LogEvent::Log(LogLine {
            time: at(ms),
            namespace: "shop".into(),
            pod: pod.into(),
            container: "app".into(),
            line: text.into(),
            truncated: false,
        })
    }

    fn request() -> RelayRequest {
        RelayRequest {
            app: "web".into(),
            namespace: Some("shop".into()),
            follow: true,
            tail_lines: Some(10),
            since: None,
            container: Some("^(app|side)$".into()),
            exclude_container: None,
            previous: false,
        }
    }

    #[test]
    fn route_encodes_every_option() {
        assert_eq!(
            request().route(None),
            "/apps/web/logs?namespace=shop&follow=true&tail_lines=10&container=%5E%28app%7Cside%29%24"
        );
    }

    #[test]
    fn resumed_route_starts_at_the_time_and_drops_the_tail() {
        let route = request().route(Some(at(1500)));
        assert!(
            route.contains("since_time=2026-05-01T12%3A00%3A01.500000000Z"),
            "{route}"
        );
        assert!(!route.contains("tail_lines"), "{route}");
    }

    #[tokio::test]
    async fn proxy_path_names_the_service_and_port() {
        let endpoint = Endpoint::ServiceProxy {
            client: test_client(),
            namespace: "aether-system".into(),
            service: "aether-relay:http".into(),
        };
        assert_eq!(
            endpoint.path("/apps/web/logs?namespace=shop"),
            "/api/v1/namespaces/aether-system/services/aether-relay:http/proxy/apps/web/logs?namespace=shop"
        );
    }

    fn test_client() -> Client {
        url_client("http://127.0.0.1:9", None).expect("a valid URL")
    }

    #[test]
    fn decoder_joins_events_split_across_chunks() {
        let text = line("web-0", 1, "héllo").to_ndjson();
        let bytes = text.as_bytes();
        let mut decoder = NdjsonDecoder::new(1 << 20);
        let mut events = Vec::new();
        for chunk in bytes.chunks(7) {
            events.extend(decoder.push(chunk));
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().ok(), Some(&line("web-0", 1, "héllo")));
        assert_eq!(decoder.finish(), None);
    }

    #[test]
    fn decoder_reports_garbage_and_goes_on() {
        let mut decoder = NdjsonDecoder::new(1 << 20);
        let input = format!("not json\n{}", line("web-0", 1, "ok").to_ndjson());
        let events = decoder.push(input.as_bytes());
        assert_eq!(events.len(), 2);
        assert!(
            events[0]
                .as_ref()
                .is_err_and(|e| e.contains("not an event"))
        );
        assert!(events[1].is_ok());
    }

    #[test]
    fn decoder_drops_an_oversized_event_and_keeps_the_next() {
        let mut decoder = NdjsonDecoder::new(64);
        let mut events = decoder.push(&[b'x'; 50]);
        events.extend(decoder.push(&[b'x'; 50]));
        events.extend(decoder.push(format!("\n{}", line("web-0", 1, "ok").to_ndjson()).as_bytes()));
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            events[0]
                .as_ref()
                .is_err_and(|e| e.contains("over 64 bytes"))
        );
        assert!(events[1].is_ok());
    }

    #[test]
    fn decoder_finish_reports_a_cut_event() {
        let mut decoder = NdjsonDecoder::new(1 << 20);
        assert!(decoder.push(b"{\"type\":\"lo").is_empty());
        assert!(decoder.finish().is_some());
    }

    #[test]
    fn reopened_stream_repeats_no_line() {
        let mut seen = Seen::default();
        for ev in [line("a", 100, "1"), line("a", 100, "2"), line("b", 50, "x")] {
            assert!(seen.admit(&ev));
        }
        let resume = seen.resume_point().expect("lines were seen");
        assert_eq!(resume, at(100) - RESUME_OVERLAP);

        // The relay sends again everything from the resume point on.
        assert!(!seen.admit(&line("b", 50, "x")));
        assert!(!seen.admit(&line("a", 100, "1")));
        assert!(!seen.admit(&line("a", 100, "2")));
        assert!(
            seen.admit(&line("a", 100, "3")),
            "a third line at the same time is new"
        );
        assert!(seen.admit(&line("a", 200, "4")));
        assert!(seen.admit(&line("c", 10, "first of a new container")));
    }

    #[test]
    fn lines_at_the_same_time_are_all_kept_without_a_reopen() {
        let mut seen = Seen::default();
        assert!(seen.admit(&line("a", 100, "1")));
        assert!(seen.admit(&line("a", 100, "2")));
        assert!(seen.admit(&line("a", 100, "3")));
    }
}
