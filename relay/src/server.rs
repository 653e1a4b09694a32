//! The HTTP server: [`serve`] accepts connections until shutdown, routes requests, runs the
//! log endpoint's checks in order (token, parameters, access, namespace, limits, pods) and
//! hands the engine's events to a chunked body or a WebSocket. The checks themselves live
//! in [`crate::params`], [`crate::auth`] and [`crate::limits`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::auth::{AuthError, Authorizer};
use crate::config::{AuthMode, ConfigError, RelayConfig};
use crate::encode::Encoder;
use crate::limits::{LimitError, StreamLimits, StreamPermit};
use crate::metrics::{AuthOutcome, Metrics};
use crate::params::{self, Format, LogRequest, ParamError};
use crate::stream::{Closed, PumpEnd, PumpOptions, Sink, pump};

/// Response bodies.
pub type Body = BoxBody<Bytes, Infallible>;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The header carrying [`podlogs::SCHEMA_VERSION`].
pub const SCHEMA_HEADER: &str = "x-aether-schema-version";

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration cannot work.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The listener's address could not be read.
    #[error("failed to read the listening address")]
    LocalAddr(#[source] std::io::Error),
}

/// Serves the relay on `listener` until `shutdown` resolves, then ends every open stream
/// with a `closing` event and waits up to the configured grace for them to finish.
///
/// `client` carries the relay's own credentials; it reads pods and logs and makes the
/// TokenReviews and SubjectAccessReviews.
pub async fn serve<F>(
    config: RelayConfig,
    client: kube::Client,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: std::future::Future<Output = ()> + Send,
{
    config.validate()?;
    let local = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let metrics = Arc::new(Metrics::default());
    let authorizer = (config.auth == AuthMode::Token).then(|| {
        Authorizer::new(
            client.clone(),
            config.audience.clone(),
            config.auth_cache_ttl,
            config.auth_cache_size,
            config.apiserver_timeout,
            metrics.clone(),
        )
    });
    let (stop, stopping) = watch::channel(false);
    let state = Arc::new(State {
        limits: StreamLimits::new(config.max_streams_per_client, config.max_streams),
        config,
        client,
        authorizer,
        metrics,
        stopping,
        streams: Arc::new(Tracker::default()),
    });
    tracing::info!(
        address = %local,
        auth = state.config.auth.as_str(),
        namespaces = ?state.config.namespaces,
        "relay listening"
    );

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let watcher = graceful.watcher();
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(route(state, peer, req).await) }
                        });
                        let mut builder = auto::Builder::new(TokioExecutor::new());
                        // A client that never finishes its headers does not hold a
                        // connection forever.
                        builder
                            .http1()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT);
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                        if let Err(error) = watcher.watch(conn).await {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }

    let open = state.streams.open();
    tracing::info!(open_streams = open, "shutting down; closing open streams");
    drop(listener);
    stop.send_replace(true);
    let grace = state.config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        graceful.shutdown().await;
        state.streams.idle().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open_streams = state.streams.open(),
            "streams still open after the grace period"
        );
    }
    Ok(())
}

/// What every request handler shares.
struct State {
    config: RelayConfig,
    client: kube::Client,
    authorizer: Option<Authorizer>,
    limits: Arc<StreamLimits>,
    metrics: Arc<Metrics>,
    stopping: watch::Receiver<bool>,
    streams: Arc<Tracker>,
}

/// Counts running streams so shutdown can wait for them, upgraded WebSockets included.
#[derive(Debug, Default)]
struct Tracker {
    open: AtomicUsize,
    changed: Notify,
}

impl Tracker {
    fn enter(self: &Arc<Self>) -> TrackerGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.clone())
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    async fn idle(&self) {
        loop {
            let changed = self.changed.notified();
            if self.open() == 0 {
                return;
            }
            changed.await;
        }
    }
}

struct TrackerGuard(Arc<Tracker>);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// An error answer: `{"error": "...", "code": N}`, plus the parameter at fault for 400.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    parameter: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            parameter: None,
        }
    }

    fn not_found(request: &LogRequest) -> Self {
        // The same answer for an app without pods and a namespace not served, so callers
        // cannot tell which namespaces exist here.
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "app {} not found in namespace {}; check the app name and the namespace",
                request.app, request.namespace
            ),
        )
    }

    fn into_response(self) -> Response<Body> {
        let mut body = json!({"error": self.message, "code": self.status.as_u16()});
        if let Some(parameter) = &self.parameter {
            body["parameter"] = json!(parameter);
        }
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"aether-relay\""),
                );
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: e.message,
            parameter: Some(e.parameter),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            AuthError::Denied { .. } => StatusCode::FORBIDDEN,
            AuthError::TokenReviewFailed(_) | AuthError::AccessReviewFailed(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
    }
}

async fn route(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let response = match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text_response(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => readyz(&state).await,
        (&Method::GET, "/metrics") => text_response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        ),
        (&Method::GET, "/openapi.json") => {
            json_response(StatusCode::OK, &crate::openapi::document(&state.config))
        }
        (method, path) => match log_route(path) {
            Some(segment) if method == Method::GET => {
                let segment = segment.to_string();
                logs(&state, peer, &segment, req)
                    .await
                    .unwrap_or_else(ApiError::into_response)
            }
            Some(_) => method_not_allowed(),
            None if is_known_route(path) => method_not_allowed(),
            None => ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no route {path}; see /openapi.json for the routes this relay serves"),
            )
            .into_response(),
        },
    };
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        state.metrics.error(status.as_u16());
    }
    response
}

/// The app's (still encoded) path segment of `/apps/{app}/logs`.
fn log_route(path: &str) -> Option<&str> {
    let segment = path.strip_prefix("/apps/")?.strip_suffix("/logs")?;
    (!segment.is_empty() && !segment.contains('/')).then_some(segment)
}

fn is_known_route(path: &str) -> bool {
    ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&path)
}

fn method_not_allowed() -> Response<Body> {
    let mut response =
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here").into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

async fn readyz(state: &State) -> Response<Body> {
    // Listing one pod proves both that the apiserver answers and that the relay's RBAC works.
    let Some(namespace) = state.config.namespaces.iter().next() else {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no namespaces configured")
            .into_response();
    };
    let api: Api<Pod> = Api::namespaced(state.client.clone(), namespace);
    let params = ListParams::default().limit(1);
    match tokio::time::timeout(state.config.apiserver_timeout, api.list(&params)).await {
        Ok(Ok(_)) => text_response(StatusCode::OK, "text/plain", "ok\n".into()),
        Ok(Err(error)) => {
            tracing::warn!(%error, namespace, "readiness check failed");
            // The details go to the log only: callers must not learn the served namespaces.
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay cannot list pods; see its logs for the cause",
            )
            .into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the apiserver did not answer in time",
        )
        .into_response(),
    }
}

async fn logs(
    state: &Arc<State>,
    peer: SocketAddr,
    segment: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let token = match state.config.auth {
        AuthMode::Token => Some(bearer_token(req.headers()).ok_or_else(|| {
            state.metrics.auth_decision(AuthOutcome::Unauthenticated);
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "a bearer token is required; send Authorization: Bearer <token> with a \
                     token for audience {}",
                    state.config.audience
                ),
            )
        })?),
        AuthMode::ServiceProxy => None,
    };

    let app = params::parse_app(segment)?;
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let request = params::parse_request(app, req.uri().query(), accept, &state.config, Utc::now())?;

    let client_key = match (&state.authorizer, token) {
        (Some(authorizer), Some(token)) => {
            let identity = authorizer
                .check(&token, &request.namespace, &request.app)
                .await?;
            format!("user:{}", identity.username)
        }
        _ => format!("address:{}", client_address(req.headers(), peer)),
    };

    if !state.config.namespaces.contains(&request.namespace) {
        return Err(ApiError::not_found(&request));
    }
    let permit = state.limits.acquire(&client_key)?;
    check_pods(state, &request).await?;
    let events = podlogs::open(state.client.clone(), request.to_query(&state.config))
        .await
        .map_err(|e| engine_error(e, &request))?;

    tracing::info!(
        client = %client_key,
        app = %request.app,
        namespace = %request.namespace,
        follow = request.follow,
        format = ?request.format,
        "stream opened"
    );

    #[cfg(feature = "websocket")]
    if let Some(upgrade) = crate::ws::Upgrade::from_request(&mut req) {
        let work = StreamWork::new(state, permit, &client_key, &request);
        return Ok(upgrade.respond(events, work));
    }
    let _ = &mut req;

    Ok(chunked_response(
        state,
        permit,
        &client_key,
        &request,
        events,
    ))
}

/// What a running stream holds: its slot, its place in the shutdown count, and settings.
pub(crate) struct StreamWork {
    pub(crate) encoder: Encoder,
    pub(crate) options: PumpOptions,
    pub(crate) stopping: watch::Receiver<bool>,
    client: String,
    app: String,
    namespace: String,
    _permit: StreamPermit,
    _tracked: TrackerGuard,
    metrics: Arc<Metrics>,
}

impl StreamWork {
    fn new(state: &Arc<State>, permit: StreamPermit, client: &str, request: &LogRequest) -> Self {
        state.metrics.client_stream_opened();
        StreamWork {
            encoder: Encoder::new(request.format, request.timestamps),
            options: PumpOptions {
                heartbeat: state.config.heartbeat,
                metrics: state.metrics.clone(),
            },
            stopping: state.stopping.clone(),
            client: client.to_string(),
            app: request.app.clone(),
            namespace: request.namespace.clone(),
            _permit: permit,
            _tracked: state.streams.enter(),
            metrics: state.metrics.clone(),
        }
    }
}

impl StreamWork {
    /// Records how the stream ended.
    pub(crate) fn ended(&self, end: PumpEnd) {
        tracing::info!(
            client = %self.client,
            app = %self.app,
            namespace = %self.namespace,
            end = ?end,
            "stream closed"
        );
    }
}

impl Drop for StreamWork {
    fn drop(&mut self) {
        self.metrics.client_stream_closed();
    }
}

fn chunked_response(
    state: &Arc<State>,
    permit: StreamPermit,
    client: &str,
    request: &LogRequest,
    events: podlogs::LogStream,
) -> Response<Body> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let work = StreamWork::new(state, permit, client, request);
    tokio::spawn(async move {
        let mut work = work;
        let mut sink = ChunkSink {
            tx,
            encoder: &mut work.encoder,
        };
        let end = pump(
            events,
            &mut sink,
            work.options.clone(),
            work.stopping.clone(),
        )
        .await;
        work.ended(end);
    });

    let frames = futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let content_type = match request.format {
        Format::Ndjson => "application/x-ndjson",
        Format::Text => "text/plain; charset=utf-8",
    };
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    stream_headers(response.headers_mut(), content_type);
    response
}

/// Headers every stream answer carries.
pub(crate) fn stream_headers(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(SCHEMA_HEADER, HeaderValue::from(podlogs::SCHEMA_VERSION));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// A chunked body: each batch of events is one chunk.
struct ChunkSink<'a> {
    tx: mpsc::Sender<Bytes>,
    encoder: &'a mut Encoder,
}

impl Sink for ChunkSink<'_> {
    async fn send(&mut self, events: &[podlogs::LogEvent]) -> Result<u64, Closed> {
        let mut buf = Vec::new();
        for event in events {
            self.encoder.encode(event, &mut buf);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len() as u64;
        self.tx.send(Bytes::from(buf)).await.map_err(|_| Closed)?;
        Ok(len)
    }

    async fn closed(&mut self) {
        self.tx.closed().await;
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// Who counts as one client without a token: the address the nearest proxy saw (the last
/// `X-Forwarded-For` hop, which the apiserver's proxy appends) or else the peer. The first
/// hop is never used: the caller writes it.
fn client_address(headers: &HeaderMap, peer: SocketAddr) -> String {
    let last_hop = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .next_back();
    last_hop.unwrap_or(peer.ip()).to_string()
}

/// Answers 404 when the app has no pods, so a follow request for an unknown app does not
/// wait forever.
async fn check_pods(state: &State, request: &LogRequest) -> Result<(), ApiError> {
    let api: Api<Pod> = Api::namespaced(state.client.clone(), &request.namespace);
    let selector = format!("{}={}", state.config.app_label, request.app);
    let params = ListParams::default().labels(&selector).limit(1);
    match tokio::time::timeout(state.config.apiserver_timeout, api.list(&params)).await {
        Ok(Ok(pods)) if pods.items.is_empty() => Err(ApiError::not_found(request)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
            tracing::warn!(namespace = %request.namespace, "the relay may not list pods");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the relay's service account may not list pods in namespace {}; \
                     apply the relay's RBAC",
                    request.namespace
                ),
            ))
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, namespace = %request.namespace, "listing pods failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the apiserver cannot be reached",
            ))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the apiserver did not answer in time",
        )),
    }
}

fn engine_error(error: podlogs::Error, request: &LogRequest) -> ApiError {
    use podlogs::Error;
    match error {
        Error::NoPods { .. } => ApiError::not_found(request),
        Error::Forbidden { .. } => {
            tracing::warn!(namespace = %request.namespace, %error, "the relay may not read logs");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the relay's service account may not read logs in namespace {}; apply the \
                     relay's RBAC",
                    request.namespace
                ),
            )
        }
        Error::TooManyStreams { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, error.to_string())
        }
        Error::Api(source) => {
            tracing::warn!(error = %source, "the engine could not list pods");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the apiserver cannot be reached",
            )
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut text = body.to_string();
    text.push('\n');
    text_response(status, "application/json", text)
}

fn text_response(status: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_only_single_segment_apps() {
        assert_eq!(log_route("/apps/web/logs"), Some("web"));
        assert_eq!(log_route("/apps//logs"), None);
        assert_eq!(log_route("/apps/a/b/logs"), None);
        assert_eq!(log_route("/apps/web"), None);
    }

    #[test]
    fn reads_bearer_tokens_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&h).as_deref(), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn client_address_uses_the_last_forwarded_hop() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(client_address(&h, peer), "10.0.0.1");
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 192.168.1.7"),
        );
        assert_eq!(client_address(&h, peer), "192.168.1.7");
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_address(&h, peer), "10.0.0.1");
    }

    #[test]
    fn errors_are_json_with_code_and_parameter() {
        let e: ApiError = ParamError {
            parameter: "since".into(),
            message: "bad".into(),
        }
        .into();
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
