//! The review APIs, all answered from the same RBAC rules: SelfSubjectAccessReview,
//! SelfSubjectRulesReview, SubjectAccessReview (and its local form), TokenReview with
//! audiences, and SelfSubjectReview.

use http::Response;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::http::{ApiError, Body, json_response, requested_audiences};
use crate::rbac::{Attributes, Identity};

type ApiResult = Result<Response<Body>, ApiError>;

fn expect_kind(body: &Value, kind: &str) -> Result<(), ApiError> {
    match body.get("kind").and_then(|k| k.as_str()) {
        Some(k) if k == kind => Ok(()),
        None => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "the object provided is unrecognized or malformed: expected kind {kind}, got {other}"
        ))),
    }
}

fn attributes(spec: &Value) -> Option<Attributes> {
    let attrs = spec.get("resourceAttributes")?;
    let s = |key: &str| {
        attrs
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    Some(Attributes {
        verb: s("verb"),
        group: s("group"),
        resource: s("resource"),
        subresource: s("subresource"),
        namespace: s("namespace"),
        name: s("name"),
    })
}

/// Non-resource URLs every authenticated user may read (the `system:discovery` and
/// `system:public-info-viewer` roles).
fn non_resource_allowed(spec: &Value) -> bool {
    let Some(attrs) = spec.get("nonResourceAttributes") else {
        return false;
    };
    let path = attrs.get("path").and_then(|v| v.as_str()).unwrap_or("");
    let verb = attrs.get("verb").and_then(|v| v.as_str()).unwrap_or("");
    verb == "get"
        && ([
            "/api",
            "/apis",
            "/version",
            "/healthz",
            "/livez",
            "/readyz",
            "/openapi/v2",
        ]
        .contains(&path)
            || path.starts_with("/api/")
            || path.starts_with("/apis/")
            || path.starts_with("/openapi/"))
}

fn decide(identity: &Identity, spec: &Value) -> Value {
    let allowed = match attributes(spec) {
        Some(a) => identity.allows(&a),
        None => non_resource_allowed(spec),
    };
    if allowed {
        let reason = format!(
            "RBAC: allowed by RoleBinding for User \"{}\"",
            identity.name
        );
        json!({"allowed": true, "reason": reason})
    } else {
        json!({"allowed": false})
    }
}

fn answer(body: &Value, kind: &str, api_version: &str, status: Value) -> ApiResult {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    Ok(json_response(
        201,
        &json!({
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    ))
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
pub(crate) fn self_subject_access_review(identity: &Identity, body: &Value) -> ApiResult {
    expect_kind(body, "SelfSubjectAccessReview")?;
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    if spec.get("resourceAttributes").is_none() && spec.get("nonResourceAttributes").is_none() {
        return Err(invalid_review(
            "SelfSubjectAccessReview",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    answer(
        body,
        "SelfSubjectAccessReview",
        "authorization.k8s.io/v1",
        decide(identity, &spec),
    )
}

fn invalid_review(kind: &str, message: &str) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!(
            "{kind}.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid \
             value: \"null\": {message}"
        ),
        details: Some(json!({"group": "authorization.k8s.io", "kind": kind})),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`.
pub(crate) fn self_subject_rules_review(identity: &Identity, body: &Value) -> ApiResult {
    expect_kind(body, "SelfSubjectRulesReview")?;
    let ns = body
        .pointer("/spec/namespace")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let mut resource_rules = vec![
        json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
               "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}),
        json!({"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
               "resources": ["selfsubjectreviews"]}),
    ];
    for rule in identity.rules_in(ns) {
        let mut r =
            json!({"verbs": rule.verbs, "apiGroups": rule.api_groups, "resources": rule.resources});
        if !rule.resource_names.is_empty()
            && let Some(map) = r.as_object_mut()
        {
            map.insert("resourceNames".to_string(), json!(rule.resource_names));
        }
        resource_rules.push(r);
    }
    let status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": [
            {"verbs": ["get"], "nonResourceURLs": [
                "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                "/openapi/*", "/readyz", "/version", "/version/"]},
        ],
        "incomplete": false,
    });
    answer(
        body,
        "SelfSubjectRulesReview",
        "authorization.k8s.io/v1",
        status,
    )
}

/// `POST .../subjectaccessreviews` and `.../namespaces/{ns}/localsubjectaccessreviews`.
pub(crate) fn subject_access_review(
    cluster: &Cluster,
    body: &Value,
    local_ns: Option<&str>,
) -> ApiResult {
    let kind = if local_ns.is_some() {
        "LocalSubjectAccessReview"
    } else {
        "SubjectAccessReview"
    };
    expect_kind(body, kind)?;
    let mut spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let (Some(ns), Some(attrs)) = (
        local_ns,
        spec.get_mut("resourceAttributes")
            .and_then(|a| a.as_object_mut()),
    ) {
        attrs.insert("namespace".to_string(), json!(ns));
    }
    let user = spec
        .get("user")
        .and_then(|u| u.as_str())
        .unwrap_or("")
        .to_string();
    if user.is_empty() && spec.get("groups").is_none() {
        return Err(ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "{kind}.authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": \
                 at least one of user or group must be specified"
            ),
            details: Some(json!({"group": "authorization.k8s.io", "kind": kind})),
        });
    }
    let identity = cluster
        .state()
        .identities
        .values()
        .find(|i| i.name == user)
        .cloned()
        .unwrap_or(Identity {
            name: user,
            groups: Vec::new(),
            rules: Vec::new(),
            audiences: Vec::new(),
            uid: String::new(),
        });
    answer(
        body,
        kind,
        "authorization.k8s.io/v1",
        decide(&identity, &spec),
    )
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub(crate) fn token_review(cluster: &Cluster, body: &Value) -> ApiResult {
    expect_kind(body, "TokenReview")?;
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let token = spec.get("token").and_then(|t| t.as_str()).unwrap_or("");
    let wanted = requested_audiences(&spec);
    let identity = cluster.state().identities.get(token).cloned();
    let status = match identity {
        None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
        Some(id) => {
            let common: Vec<&String> = wanted.iter().filter(|a| id.audiences.contains(a)).collect();
            if common.is_empty() {
                let error = format!(
                    "[invalid bearer token, token audiences {:?} is invalid for the target \
                     audiences {:?}]",
                    id.audiences, wanted
                );
                json!({"user": {}, "error": error})
            } else {
                json!({
                    "authenticated": true,
                    "user": {"username": id.name, "uid": id.uid, "groups": id.groups},
                    "audiences": common,
                })
            }
        }
    };
    answer(body, "TokenReview", "authentication.k8s.io/v1", status)
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`).
pub(crate) fn self_subject_review(identity: &Identity) -> ApiResult {
    Ok(json_response(
        201,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {
                "username": identity.name, "uid": identity.uid, "groups": identity.groups}},
        }),
    ))
}
