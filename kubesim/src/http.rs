//! The HTTP surface: authentication, the request record, injected faults, routing, and the
//! handlers for discovery, pods, workloads, services and reviews. Log and watch streams live
//! in [`crate::stream`], the service proxy in [`crate::proxy`].

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::cluster::{CState, Cluster};
use crate::objects;
use crate::rbac::{API_AUDIENCE, Attributes, Identity, forbidden_message};
use crate::select::{FieldSelector, LabelSelector};
use crate::{RequestRecord, proto, proxy, stream};

/// The body type of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// What every handler can reach.
pub(crate) struct Ctx {
    pub cluster: Arc<Cluster>,
    pub server_address: String,
    pub anonymous_user: Option<String>,
    pub truth_endpoint: bool,
    pub bookmark_interval: Duration,
    pub tls: bool,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// An error answered as a Status object.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(kind: &str, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{kind} \"{name}\" not found"),
            details: Some(json!({"name": name, "kind": kind})),
        }
    }

    pub fn no_route() -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".to_string(),
            details: Some(json!({})),
        }
    }

    pub fn method_not_allowed() -> Self {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".to_string(),
            details: Some(json!({})),
        }
    }

    pub fn forbidden(user: &str, a: &Attributes) -> Self {
        let mut details = json!({"kind": a.resource});
        if let Some(map) = details.as_object_mut() {
            if !a.name.is_empty() {
                map.insert("name".to_string(), json!(a.name));
            }
            if !a.group.is_empty() {
                map.insert("group".to_string(), json!(a.group));
            }
        }
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: forbidden_message(user, a),
            details: Some(details),
        }
    }

    pub fn response(&self) -> Response<Body> {
        let status = objects::status(self.code, self.reason, &self.message, self.details.clone());
        json_response(self.code, &status)
    }
}

type ApiResult = Result<Response<Body>, ApiError>;

/// A body from bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response; the body ends with a newline like the apiserver's.
pub(crate) fn json_response(code: u16, value: &Value) -> Response<Body> {
    let mut text = serde_json::to_vec(value).unwrap_or_default();
    text.push(b'\n');
    let mut resp = Response::new(full(text));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Decoded query pairs; the empty pair of a `?&` query is skipped.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// A request's query with typed accessors that fail like the apiserver's parameter codec.
pub(crate) struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn bool(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "strconv.ParseBool: parsing \"{other}\": invalid syntax"
            ))),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing \"{v}\": invalid syntax"))
            }),
        }
    }

    pub fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => DateTime::parse_from_rfc3339(v)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "parsing time \"{v}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \
                         \"{v}\" as \"2006\""
                    ))
                }),
        }
    }
}

/// Serves one request; never fails (errors become Status responses).
pub(crate) async fn serve(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let Ok(mut resp) = serve_inner(ctx, req, remote).await;

    // The headers every apiserver response carries.
    let headers = resp.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&crate::cluster::new_uid()) {
        headers.insert("audit-id", id);
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
    }
    Ok(resp)
}

async fn serve_inner(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = Query(parse_query(req.uri().query().unwrap_or("")));

    if ctx.truth_endpoint && path.starts_with("/kubesim/") {
        return Ok(truth(&ctx, &path).unwrap_or_else(|e| e.response()));
    }

    let identity = match authenticate(&ctx, &req) {
        Ok(identity) => identity,
        Err(e) => return Ok(e.response()),
    };
    ctx.cluster.record(RequestRecord {
        method: req.method().to_string(),
        path: path.clone(),
        query: query.0.clone(),
        user: identity.as_ref().map(|i| i.name.clone()),
    });

    let delay = ctx.cluster.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some((code, retry_after)) = ctx.cluster.take_failure() {
        return Ok(injected_failure(code, retry_after));
    }

    let identity = identity.unwrap_or_else(|| Identity {
        name: "system:anonymous".to_string(),
        groups: vec!["system:unauthenticated".to_string()],
        rules: Vec::new(),
        audiences: Vec::new(),
        uid: String::new(),
    });
    let result = route(&ctx, req, &path, &query, &identity, remote).await;
    Ok(result.unwrap_or_else(|e| e.response()))
}

const UNAVAILABLE: &str = "the server is currently unable to handle the request";
const TIMEOUT: &str = "the server was unable to return a response in the time allotted, but may \
                       still be processing the request";
const INTERNAL: &str = "an error on the server (\"\") has prevented the request from succeeding";
const UNKNOWN_FORMAT: &str = "the body of the request was in an unknown format - accepted media \
                              types include: application/json, application/yaml, \
                              application/vnd.kubernetes.protobuf";

fn injected_failure(code: u16, retry_after: Option<u32>) -> Response<Body> {
    let (reason, message) = match code {
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.".to_string(),
        ),
        503 => ("ServiceUnavailable", UNAVAILABLE.to_string()),
        504 => ("Timeout", TIMEOUT.to_string()),
        _ => ("InternalError", INTERNAL.to_string()),
    };
    let mut details = json!({});
    if let (Some(secs), Some(map)) = (retry_after, details.as_object_mut()) {
        map.insert("retryAfterSeconds".to_string(), json!(secs));
    }
    let mut resp = json_response(
        code,
        &objects::status(code, reason, &message, Some(details)),
    );
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn authenticate(ctx: &Ctx, req: &Request<Incoming>) -> Result<Option<Identity>, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let token = match header {
        Some(h) => {
            let (scheme, token) = h.split_once(' ').unwrap_or((h, ""));
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(unauthorized());
            }
            token.trim()
        }
        None => {
            let Some(name) = &ctx.anonymous_user else {
                return Ok(None);
            };
            let state = ctx.cluster.state();
            return Ok(state.identities.values().find(|i| &i.name == name).cloned());
        }
    };
    ctx.cluster
        .state()
        .identities
        .get(token)
        .cloned()
        .map(Some)
        .ok_or_else(unauthorized)
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

fn authorize(identity: &Identity, a: &Attributes) -> Result<(), ApiError> {
    if identity.allows(a) {
        Ok(())
    } else {
        tracing::debug!(user = %identity.name, verb = %a.verb, resource = %a.resource, "forbidden");
        Err(ApiError::forbidden(&identity.name, a))
    }
}

fn ok_json(value: &Value) -> ApiResult {
    Ok(json_response(200, value))
}

async fn route(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    path: &str,
    query: &Query,
    identity: &Identity,
    remote: SocketAddr,
) -> ApiResult {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let get = method == Method::GET;
    let anonymous = identity.name == "system:anonymous";

    match segments.as_slice() {
        ["version"] | ["healthz"] | ["livez"] | ["readyz"] if get => {
            if segments[0] == "version" {
                ok_json(&objects::version())
            } else {
                Ok(text_response(200, "ok"))
            }
        }
        ["openapi", ..] => Err(ApiError::no_route()),
        // Discovery is bound to system:authenticated only.
        ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _] if anonymous && get => {
            Err(ApiError::forbidden(&identity.name, &Attributes::default())
                .non_resource(path, &method))
        }
        ["api"] if get => ok_json(&objects::api_versions(&ctx.server_address)),
        ["apis"] if get => ok_json(&objects::api_groups()),
        ["api", "v1"] if get => objects::resource_list("v1")
            .map(|v| json_response(200, &v))
            .ok_or_else(ApiError::no_route),
        ["apis", group] if get => objects::api_group(group)
            .map(|v| json_response(200, &v))
            .ok_or_else(ApiError::no_route),
        ["apis", group, version] if get => objects::resource_list(&format!("{group}/{version}"))
            .map(|v| json_response(200, &v))
            .ok_or_else(ApiError::no_route),

        // Pods.
        ["api", "v1", "pods"] => pods_collection(ctx, &req, "", query, identity, &method).await,
        ["api", "v1", "namespaces", ns, "pods"] => {
            pods_collection(ctx, &req, ns, query, identity, &method).await
        }
        ["api", "v1", "namespaces", ns, "pods", name] => {
            if !get {
                return Err(ApiError::method_not_allowed());
            }
            authorize(identity, &Attributes::core("get", "pods", ns, name))?;
            get_pod(ctx, &req, ns, name, query)
        }
        ["api", "v1", "namespaces", ns, "pods", name, "log"] => {
            if !get {
                return Err(ApiError::method_not_allowed());
            }
            authorize(identity, &Attributes::core("get", "pods/log", ns, name))?;
            stream::pod_logs(ctx, ns, name, query)
        }

        // Namespaces.
        ["api", "v1", "namespaces"] if get => {
            authorize(identity, &Attributes::core("list", "namespaces", "", ""))?;
            let state = ctx.cluster.state();
            let items = state
                .namespaces
                .iter()
                .map(|ns| namespace_json(ns, ctx.cluster.start))
                .collect();
            ok_json(&objects::list(
                "NamespaceList",
                "v1",
                state.resource_version,
                items,
            ))
        }
        ["api", "v1", "namespaces", ns] if get => {
            authorize(identity, &Attributes::core("get", "namespaces", "", ns))?;
            if !ctx.cluster.state().namespaces.contains(*ns) {
                return Err(ApiError::not_found("namespaces", ns));
            }
            ok_json(&namespace_json(ns, ctx.cluster.start))
        }

        // Events: none are recorded, but kubectl describe lists them.
        ["api", "v1", "events"] | ["api", "v1", "namespaces", _, "events"] if get => {
            let ns = segments.get(3).copied().unwrap_or("");
            authorize(identity, &Attributes::core("list", "events", ns, ""))?;
            let rv = ctx.cluster.state().resource_version;
            ok_json(&objects::list("EventList", "v1", rv, Vec::new()))
        }

        // Services and their proxy.
        ["api", "v1", "services"] if get => {
            authorize(identity, &Attributes::core("list", "services", "", ""))?;
            let state = ctx.cluster.state();
            let items = state
                .services
                .iter()
                .map(|((n, name), svc)| objects::service_json(n, name, svc))
                .collect();
            ok_json(&objects::list(
                "ServiceList",
                "v1",
                state.resource_version,
                items,
            ))
        }
        ["api", "v1", "namespaces", ns, "services"] if get => {
            authorize(identity, &Attributes::core("list", "services", ns, ""))?;
            let state = ctx.cluster.state();
            let items = state
                .services
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|((n, name), svc)| objects::service_json(n, name, svc))
                .collect();
            ok_json(&objects::list(
                "ServiceList",
                "v1",
                state.resource_version,
                items,
            ))
        }
        ["api", "v1", "namespaces", ns, "services", name] if get => {
            authorize(identity, &Attributes::core("get", "services", ns, name))?;
            let svc = ctx
                .cluster
                .service(ns, name)
                .ok_or_else(|| ApiError::not_found("services", name))?;
            ok_json(&objects::service_json(ns, name, &svc))
        }
        [
            "api",
            "v1",
            "namespaces",
            ns,
            "services",
            id,
            "proxy",
            rest @ ..,
        ] => {
            let rest = rest.join("/");
            let verb = match method {
                Method::GET | Method::HEAD | Method::OPTIONS => "get",
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => return Err(ApiError::method_not_allowed()),
            };
            // RBAC sees the id as written in the URL (`name:port` included), as the
            // apiserver's request info does, so resourceNames must list that form.
            authorize(identity, &Attributes::core(verb, "services/proxy", ns, id))?;
            proxy::forward(ctx, req, ns, id, &rest, remote).await
        }

        // Workloads.
        ["apis", group, version, plural] if get => {
            let table = wants_table(&req);
            list_workloads(
                ctx,
                &format!("{group}/{version}"),
                plural,
                "",
                identity,
                table,
            )
        }
        ["apis", group, version, "namespaces", ns, plural] if get => {
            let table = wants_table(&req);
            list_workloads(
                ctx,
                &format!("{group}/{version}"),
                plural,
                ns,
                identity,
                table,
            )
        }
        ["apis", group, version, "namespaces", ns, plural, name]
            if get && (*group == "apps" || *group == "batch") =>
        {
            let table = wants_table(&req);
            get_workload(
                ctx,
                &format!("{group}/{version}"),
                plural,
                ns,
                name,
                identity,
                table,
            )
        }

        // Reviews.
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] if method == Method::POST => {
            let body = read_body(&req_headers(&req), req).await?;
            crate::review::self_subject_access_review(identity, &body)
        }
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectrulesreviews",
        ] if method == Method::POST => {
            let body = read_body(&req_headers(&req), req).await?;
            crate::review::self_subject_rules_review(identity, &body)
        }
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"]
            if method == Method::POST =>
        {
            authorize(
                identity,
                &Attributes {
                    verb: "create".into(),
                    group: "authorization.k8s.io".into(),
                    resource: "subjectaccessreviews".into(),
                    ..Attributes::default()
                },
            )?;
            let body = read_body(&req_headers(&req), req).await?;
            crate::review::subject_access_review(&ctx.cluster, &body, None)
        }
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "namespaces",
            ns,
            "localsubjectaccessreviews",
        ] if method == Method::POST => {
            authorize(
                identity,
                &Attributes {
                    verb: "create".into(),
                    group: "authorization.k8s.io".into(),
                    resource: "localsubjectaccessreviews".into(),
                    namespace: ns.to_string(),
                    ..Attributes::default()
                },
            )?;
            let body = read_body(&req_headers(&req), req).await?;
            crate::review::subject_access_review(&ctx.cluster, &body, Some(ns))
        }
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] if method == Method::POST => {
            authorize(
                identity,
                &Attributes {
                    verb: "create".into(),
                    group: "authentication.k8s.io".into(),
                    resource: "tokenreviews".into(),
                    ..Attributes::default()
                },
            )?;
            let body = read_body(&req_headers(&req), req).await?;
            crate::review::token_review(&ctx.cluster, &body)
        }
        ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"] if method == Method::POST => {
            crate::review::self_subject_review(identity)
        }
        [
            "apis",
            "authorization.k8s.io" | "authentication.k8s.io",
            "v1",
            ..,
        ] => Err(ApiError::method_not_allowed()),
        _ if !get && is_known_resource_path(&segments) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::no_route()),
    }
}

impl ApiError {
    /// A Forbidden for a non-resource URL, worded like the apiserver's.
    fn non_resource(mut self, path: &str, method: &Method) -> Self {
        self.message = format!(
            "forbidden: User \"system:anonymous\" cannot {} path \"{path}\"",
            method.as_str().to_lowercase()
        );
        self.details = Some(json!({}));
        self
    }
}

fn is_known_resource_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["api", "v1", "pods"]
            | ["api", "v1", "namespaces", ..]
            | ["apis", "apps" | "batch", "v1", ..]
    )
}

fn req_headers(req: &Request<Incoming>) -> http::HeaderMap {
    req.headers().clone()
}

fn text_response(code: u16, text: &str) -> Response<Body> {
    let mut resp = Response::new(full(text.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A request body decoded from JSON or the protobuf envelope, whichever its type says, as
/// the JSON form of the object.
async fn read_body(headers: &http::HeaderMap, req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = Limited::new(req.into_body(), 3 * 1024 * 1024)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("unable to read the request body: {e}")))?
        .to_bytes();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    tracing::debug!(content_type, bytes = bytes.len(), "request body");
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        return proto::decode_review(&bytes).map_err(|e| ApiError::bad_request(e.to_string()));
    }
    if !content_type.starts_with("application/json") && !content_type.starts_with("*/*") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            UNKNOWN_FORMAT.to_string(),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized or malformed: {e}"
        ))
    })
}

fn wants_table(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

fn selectors(query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

async fn pods_collection(
    ctx: &Arc<Ctx>,
    req: &Request<Incoming>,
    ns: &str,
    query: &Query,
    identity: &Identity,
    method: &Method,
) -> ApiResult {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let watch = query.bool("watch")?;
    let verb = if watch { "watch" } else { "list" };
    let name = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
        .ok()
        .and_then(|f| f.pinned_name().map(str::to_string))
        .unwrap_or_default();
    let attrs = Attributes::core(verb, "pods", ns, "");
    if !identity.allows(&attrs) {
        // RBAC also grants a named list or watch through a metadata.name field selector.
        let named = Attributes::core(verb, "pods", ns, &name);
        if name.is_empty() || !identity.allows(&named) {
            return Err(ApiError::forbidden(&identity.name, &attrs));
        }
    }
    let (labels, fields) = selectors(query)?;
    if watch {
        return stream::watch_pods(ctx, ns, labels, fields, query, wants_table(req));
    }
    let limit = query.int("limit")?.filter(|n| *n > 0).map(|n| n as usize);
    let after = match query.get("continue") {
        Some(token) if !token.is_empty() => Some(decode_continue(token)?),
        _ => None,
    };
    let state = ctx.cluster.state();
    let mut pods: Vec<_> = state
        .pods
        .values()
        .filter(|p| ns.is_empty() || p.namespace == ns)
        .filter(|p| labels.matches(&p.labels) && fields.matches(&|f| p.field(f)))
        .filter(|p| after.as_ref().is_none_or(|key| pod_key(p) > *key))
        .collect();

    // A limit pages the list: the rest is behind a continue token, as with etcd.
    let mut page = Map::new();
    page.insert(
        "resourceVersion".to_string(),
        json!(state.resource_version.to_string()),
    );
    if let Some(limit) = limit
        && pods.len() > limit
    {
        let remaining = pods.len() - limit;
        pods.truncate(limit);
        if let Some(last) = pods.last() {
            page.insert(
                "continue".to_string(),
                json!(encode_continue(state.resource_version, &pod_key(last))),
            );
        }
        if query.get("labelSelector").unwrap_or("").is_empty()
            && query.get("fieldSelector").unwrap_or("").is_empty()
        {
            page.insert("remainingItemCount".to_string(), json!(remaining));
        }
    }

    let mut value = if wants_table(req) {
        let mut table = objects::pod_table(&pods, state.resource_version, Utc::now());
        include_objects(&mut table, &pods, query);
        table
    } else {
        let items = pods.iter().map(|p| objects::pod_json(p)).collect();
        objects::list("PodList", "v1", state.resource_version, items)
    };
    if let Some(map) = value.as_object_mut() {
        map.insert("metadata".to_string(), Value::Object(page));
    }
    ok_json(&value)
}

/// The key a pod sorts by in a list, as its etcd key would.
fn pod_key(p: &crate::cluster::PodRec) -> String {
    format!("{}/{}", p.namespace, p.name)
}

fn encode_continue(resource_version: u64, last_key: &str) -> String {
    use base64::Engine;
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": resource_version, "start": format!("{last_key}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

/// The key after which a continued list resumes.
fn decode_continue(token: &str) -> Result<String, ApiError> {
    use base64::Engine;
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    if value["v"] != "meta.k8s.io/v1" {
        return Err(invalid("server does not recognize this encoded key"));
    }
    let start = value["start"]
        .as_str()
        .ok_or_else(|| invalid("no start key"))?;
    Ok(start.trim_end_matches('\u{0}').to_string())
}

fn include_objects(table: &mut Value, pods: &[&crate::cluster::PodRec], query: &Query) {
    let Some(rows) = table.get_mut("rows").and_then(|r| r.as_array_mut()) else {
        return;
    };
    for (row, pod) in rows.iter_mut().zip(pods) {
        let Some(map) = row.as_object_mut() else {
            continue;
        };
        match query.get("includeObject") {
            Some("None") => {
                map.remove("object");
            }
            Some("Object") => {
                map.insert("object".to_string(), objects::pod_json(pod));
            }
            _ => {}
        }
    }
}

fn get_pod(ctx: &Ctx, req: &Request<Incoming>, ns: &str, name: &str, query: &Query) -> ApiResult {
    let state = ctx.cluster.state();
    let pod = state
        .pods
        .get(&(ns.to_string(), name.to_string()))
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    if wants_table(req) {
        let mut table = objects::pod_table(&[pod], state.resource_version, Utc::now());
        include_objects(&mut table, &[pod], query);
        return ok_json(&table);
    }
    ok_json(&objects::pod_json(pod))
}

/// A stable number from a name, for UIDs that stay the same across requests.
fn name_hash(name: &str) -> u64 {
    name.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

fn namespace_json(ns: &str, start: DateTime<Utc>) -> Value {
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": ns,
            "uid": format!("00000000-0000-4000-8000-{:012x}", name_hash(ns) & 0xffff_ffff_ffff),
            "resourceVersion": "10",
            "creationTimestamp": objects::meta_time(start - chrono::Duration::days(1)),
            "labels": {"kubernetes.io/metadata.name": ns},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

fn workload_kind(group_version: &str, plural: &str) -> Option<&'static str> {
    [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
    ]
    .into_iter()
    .find(|k| {
        objects::workload_resource(k).is_some_and(|(gv, p)| gv == group_version && p == plural)
    })
}

fn workload_attrs(
    group_version: &str,
    plural: &str,
    verb: &str,
    ns: &str,
    name: &str,
) -> Attributes {
    Attributes {
        verb: verb.to_string(),
        group: group_version.split('/').next().unwrap_or("").to_string(),
        resource: plural.to_string(),
        subresource: String::new(),
        namespace: ns.to_string(),
        name: name.to_string(),
    }
}

fn workload_value(ctx: &Ctx, w: &crate::scenario::Workload) -> Value {
    let state = ctx.cluster.state();
    let selector = LabelSelector::from_labels(&w.selector);
    let ready = state
        .pods
        .values()
        .filter(|p| Some(&p.namespace) == w.namespace.as_ref() && selector.matches(&p.labels))
        .filter(|p| {
            p.containers.iter().all(|c| {
                matches!(c.state, CState::Running { .. })
                    || c.kind != crate::scenario::ContainerKind::Regular
            })
        })
        .count() as i32;
    let uid = format!(
        "{:08x}-0000-4000-8000-000000000001",
        w.name.len() * 7919 + w.kind.len()
    );
    objects::workload_json(
        w,
        ctx.cluster.start - chrono::Duration::hours(2),
        &uid,
        ready,
    )
}

fn list_workloads(
    ctx: &Ctx,
    group_version: &str,
    plural: &str,
    ns: &str,
    identity: &Identity,
    table: bool,
) -> ApiResult {
    let kind = workload_access(identity, group_version, plural, "list", ns, "")?;
    let workloads: Vec<_> = ctx
        .cluster
        .state()
        .workloads
        .iter()
        .filter(|w| w.kind == kind && (ns.is_empty() || w.namespace.as_deref() == Some(ns)))
        .cloned()
        .collect();
    let items: Vec<Value> = workloads.iter().map(|w| workload_value(ctx, w)).collect();
    let rv = ctx.cluster.state().resource_version;
    if table {
        return ok_json(&objects::workload_table(kind, &items, rv, Utc::now()));
    }
    ok_json(&objects::list(
        &format!("{kind}List"),
        group_version,
        rv,
        items,
    ))
}

/// The kind behind a workload route, once `identity` may `verb` it.
fn workload_access(
    identity: &Identity,
    group_version: &str,
    plural: &str,
    verb: &str,
    ns: &str,
    name: &str,
) -> Result<&'static str, ApiError> {
    let kind = workload_kind(group_version, plural).ok_or_else(ApiError::no_route)?;
    authorize(
        identity,
        &workload_attrs(group_version, plural, verb, ns, name),
    )?;
    Ok(kind)
}

fn get_workload(
    ctx: &Ctx,
    group_version: &str,
    plural: &str,
    ns: &str,
    name: &str,
    identity: &Identity,
    table: bool,
) -> ApiResult {
    let kind = workload_access(identity, group_version, plural, "get", ns, name)?;
    let found = ctx
        .cluster
        .state()
        .workloads
        .iter()
        .find(|w| w.kind == kind && w.name == name && w.namespace.as_deref() == Some(ns))
        .cloned();
    let group = group_version.split('/').next().unwrap_or("");
    let w = found.ok_or_else(|| {
        let mut e = ApiError::not_found(&format!("{plural}.{group}"), name);
        e.details = Some(json!({"name": name, "group": group, "kind": plural}));
        e
    })?;
    let value = workload_value(ctx, &w);
    if table {
        let rv = ctx.cluster.state().resource_version;
        return ok_json(&objects::workload_table(kind, &[value], rv, Utc::now()));
    }
    ok_json(&value)
}

fn truth(ctx: &Ctx, path: &str) -> ApiResult {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["kubesim", "truth", ns, pod, container] => {
            let mut out = Vec::new();
            for line in ctx.cluster.truth(ns, pod, container) {
                let mut record = json!({
                    "containerID": line.container_id,
                    "time": crate::logs::format_time(line.time),
                    "text": line.text,
                });
                // JSON strings hold text only: bytes that are not UTF-8 come as base64 too.
                if std::str::from_utf8(&line.bytes).is_err() {
                    use base64::Engine;
                    record["bytes"] = base64::engine::general_purpose::STANDARD
                        .encode(&line.bytes)
                        .into();
                }
                out.extend_from_slice(record.to_string().as_bytes());
                out.push(b'\n');
            }
            let mut resp = Response::new(full(out));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            Ok(resp)
        }
        ["kubesim", "requests"] => {
            let mut out = Vec::new();
            for r in ctx.cluster.requests() {
                let query: Vec<Value> = r.query.iter().map(|(k, v)| json!([k, v])).collect();
                let record =
                    json!({"method": r.method, "path": r.path, "query": query, "user": r.user});
                out.extend_from_slice(record.to_string().as_bytes());
                out.push(b'\n');
            }
            let mut resp = Response::new(full(out));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            Ok(resp)
        }
        _ => Err(ApiError::no_route()),
    }
}

/// The audiences a TokenReview asks for: its own, or the apiserver's.
pub(crate) fn requested_audiences(spec: &Value) -> Vec<String> {
    let asked: Vec<String> = spec
        .get("audiences")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if asked.is_empty() {
        vec![API_AUDIENCE.to_string()]
    } else {
        asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_skips_the_empty_pair_and_decodes() {
        let q = parse_query("&labelSelector=app%3Dweb&x=a+b&flag");
        assert_eq!(
            q,
            vec![
                ("labelSelector".to_string(), "app=web".to_string()),
                ("x".to_string(), "a b".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn malformed_numbers_and_bools_are_bad_requests() {
        let q = Query(parse_query("tailLines=abc&follow=maybe"));
        assert_eq!(q.int("tailLines").unwrap_err().code, 400);
        assert_eq!(q.bool("follow").unwrap_err().code, 400);
        assert_eq!(
            Query(parse_query("follow=1")).bool("follow").ok(),
            Some(true)
        );
    }

    #[test]
    fn injected_429_carries_retry_after() {
        let resp = injected_failure(429, Some(3));
        assert_eq!(resp.status(), 429);
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("3")
        );
    }
}
