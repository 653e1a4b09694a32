//! Reading a log request: the app from the path, the whitelisted query parameters, and the
//! response format. The result, a [`LogRequest`], turns into a [`podlogs::LogQuery`] that can
//! only select the app's pods in one namespace. Authorization is not decided here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use podlogs::{ContainerFilter, LogQuery, Since};
use regex::{Regex, RegexBuilder};

use crate::config::RelayConfig;
use podlogs::duration::{format_duration, parse_duration};

/// The query parameters a caller may send; anything else is refused.
pub const PARAMETERS: &[&str] = &[
    "namespace",
    "follow",
    "tail_lines",
    "since",
    "since_time",
    "container",
    "exclude_container",
    "previous",
    "timestamps",
    "format",
];

/// Longest container pattern accepted, in bytes.
const MAX_PATTERN_LEN: usize = 256;

/// Compiled size limit for a container pattern.
const MAX_PATTERN_SIZE: usize = 1 << 16;

/// A parameter the relay refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The parameter at fault (`app` for the path).
    pub parameter: String,
    /// What is wrong and what to send instead.
    pub message: String,
}

impl ParamError {
    fn new(parameter: &str, message: impl Into<String>) -> Self {
        ParamError {
            parameter: parameter.into(),
            message: message.into(),
        }
    }
}

/// How the response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON event per line (`application/x-ndjson`).
    Ndjson,
    /// The plugin's text lines, without color (`text/plain`).
    Text,
}

/// A validated request for an app's logs.
#[derive(Debug, Clone)]
pub struct LogRequest {
    /// The app, as in the path.
    pub app: String,
    /// The namespace to read.
    pub namespace: String,
    /// Keep streaming.
    pub follow: bool,
    /// Most recent lines per container, after the relay's default and cap.
    pub tail_lines: Option<i64>,
    /// Where history starts.
    pub since: Option<Since>,
    /// Containers whose names match.
    pub container: Option<Regex>,
    /// Containers whose names do not match.
    pub exclude_container: Option<Regex>,
    /// The previous instance of each container.
    pub previous: bool,
    /// Prefix text lines with their time.
    pub timestamps: bool,
    /// The response format.
    pub format: Format,
}

impl LogRequest {
    /// The engine query: the pods labelled `{app_label}={app}` in the request's namespace.
    pub fn to_query(&self, config: &RelayConfig) -> LogQuery {
        let mut query = LogQuery::new(
            self.namespace.clone(),
            format!("{}={}", config.app_label, self.app),
        );
        query.containers = ContainerFilter {
            include: self.container.clone(),
            exclude: self.exclude_container.clone(),
            init: false,
            ephemeral: false,
        };
        query.follow = self.follow;
        query.tail_lines = self.tail_lines;
        query.since = self.since;
        query.previous = self.previous;
        query.max_streams = config.max_container_streams;
        query
    }
}

/// Reads the app from its (still percent-encoded) path segment.
pub fn parse_app(segment: &str) -> Result<String, ParamError> {
    let app = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ParamError::new("app", "app name is not valid UTF-8"))?
        .into_owned();
    if !is_label_value(&app) {
        return Err(ParamError::new(
            "app",
            format!(
                "app {app:?} is not a valid label value; use at most 63 letters, digits, '-', \
                 '_' or '.', starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(app)
}

/// Reads the query string and the `Accept` header into a request for `app`.
pub fn parse_request(
    app: String,
    query: Option<&str>,
    accept: Option<&str>,
    config: &RelayConfig,
    now: DateTime<Utc>,
) -> Result<LogRequest, ParamError> {
    let pairs = parse_pairs(query.unwrap_or(""))?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let namespace = match get("namespace") {
        Some(ns) if is_dns_label(ns) => ns.to_string(),
        Some(ns) => {
            return Err(ParamError::new(
                "namespace",
                format!("namespace {ns:?} is not a valid namespace name (a DNS label)"),
            ));
        }
        None if config.namespaces.len() == 1 => {
            config.namespaces.iter().next().cloned().unwrap_or_default()
        }
        None => {
            return Err(ParamError::new(
                "namespace",
                "namespace is required: this relay serves several namespaces",
            ));
        }
    };

    let follow = parse_bool("follow", get("follow"))?;
    let previous = parse_bool("previous", get("previous"))?;
    let timestamps = parse_bool("timestamps", get("timestamps"))?;

    let tail_lines = match get("tail_lines") {
        Some(text) => {
            let n: i64 = text.parse().map_err(|_| {
                ParamError::new(
                    "tail_lines",
                    format!("tail_lines {text:?} is not a whole number"),
                )
            })?;
            if n < 0 {
                return Err(ParamError::new(
                    "tail_lines",
                    "tail_lines must be 0 or more",
                ));
            }
            if n > config.max_tail_lines {
                return Err(ParamError::new(
                    "tail_lines",
                    format!(
                        "tail_lines {n} is over this relay's limit of {}; ask for fewer lines",
                        config.max_tail_lines
                    ),
                ));
            }
            Some(n)
        }
        None => None,
    };

    let since = parse_since(get("since"), get("since_time"), config.max_since, now)?;
    // Without a tail or a start, the whole log would be read: the cap is the default.
    let tail_lines = match (tail_lines, since) {
        (None, None) => Some(config.max_tail_lines),
        (tail, _) => tail,
    };

    let container = parse_pattern("container", get("container"))?;
    let exclude_container = parse_pattern("exclude_container", get("exclude_container"))?;
    let format = parse_format(get("format"), accept)?;

    Ok(LogRequest {
        app,
        namespace,
        follow,
        tail_lines,
        since,
        container,
        exclude_container,
        previous,
        timestamps,
        format,
    })
}

/// Splits a query string into decoded pairs, refusing unknown and repeated names.
fn parse_pairs(query: &str) -> Result<Vec<(String, String)>, ParamError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
        let name = decode_component(raw_name)
            .ok_or_else(|| ParamError::new("query", "query string is not valid UTF-8"))?;
        let value = decode_component(raw_value).ok_or_else(|| {
            ParamError::new(&name, format!("{name} is not valid UTF-8 after decoding"))
        })?;
        if !PARAMETERS.contains(&name.as_str()) {
            return Err(ParamError::new(
                &name,
                format!(
                    "unknown parameter {name:?}; supported: {}",
                    PARAMETERS.join(", ")
                ),
            ));
        }
        if pairs.iter().any(|(k, _)| *k == name) {
            return Err(ParamError::new(
                &name,
                format!("parameter {name} is given twice"),
            ));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn decode_component(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `true`, `1` and a bare name mean yes; `false` and `0` mean no.
fn parse_bool(name: &str, value: Option<&str>) -> Result<bool, ParamError> {
    match value {
        None | Some("false") | Some("0") => Ok(false),
        Some("") | Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ParamError::new(
            name,
            format!("{name} must be true or false, not {other:?}"),
        )),
    }
}

fn parse_since(
    since: Option<&str>,
    since_time: Option<&str>,
    max_since: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Since>, ParamError> {
    let too_far = |name: &str| {
        ParamError::new(
            name,
            format!(
                "{name} reaches back more than this relay's limit of {}; ask for less",
                format_duration(max_since)
            ),
        )
    };
    match (since, since_time) {
        (Some(_), Some(_)) => Err(ParamError::new(
            "since_time",
            "since and since_time cannot both be given; use one of them",
        )),
        (Some(text), None) => {
            let duration = parse_duration(text)
                .map_err(|e| ParamError::new("since", format!("since: {e}")))?;
            if duration < Duration::from_secs(1) {
                return Err(ParamError::new("since", "since must be at least 1s"));
            }
            if duration > max_since {
                return Err(too_far("since"));
            }
            let seconds = i64::try_from(duration.as_secs()).map_err(|_| too_far("since"))?;
            Ok(Some(Since::Seconds(seconds)))
        }
        (None, Some(text)) => {
            let time = DateTime::parse_from_rfc3339(text)
                .map_err(|_| {
                    ParamError::new(
                        "since_time",
                        format!(
                            "since_time {text:?} is not an RFC 3339 time such as \
                             2026-05-01T12:00:00Z"
                        ),
                    )
                })?
                .with_timezone(&Utc);
            let oldest = chrono::Duration::from_std(max_since)
                .ok()
                .and_then(|d| now.checked_sub_signed(d));
            if oldest.is_some_and(|oldest| time < oldest) {
                return Err(too_far("since_time"));
            }
            Ok(Some(Since::Time(time)))
        }
        (None, None) => Ok(None),
    }
}

fn parse_pattern(name: &str, value: Option<&str>) -> Result<Option<Regex>, ParamError> {
    let Some(text) = value else { return Ok(None) };
    if text.is_empty() {
        return Err(ParamError::new(
            name,
            format!("{name} is empty; give a regular expression"),
        ));
    }
    if text.len() > MAX_PATTERN_LEN {
        return Err(ParamError::new(
            name,
            format!("{name} is longer than {MAX_PATTERN_LEN} bytes; use a shorter pattern"),
        ));
    }
    RegexBuilder::new(text)
        .size_limit(MAX_PATTERN_SIZE)
        .build()
        .map(Some)
        .map_err(|e| {
            ParamError::new(
                name,
                format!("{name} is not a valid regular expression: {e}"),
            )
        })
}

fn parse_format(format: Option<&str>, accept: Option<&str>) -> Result<Format, ParamError> {
    match format {
        Some("ndjson") | Some("json") => Ok(Format::Ndjson),
        Some("text") => Ok(Format::Text),
        Some(other) => Err(ParamError::new(
            "format",
            format!("format must be ndjson or text, not {other:?}"),
        )),
        None => {
            let accept = accept.unwrap_or("").to_ascii_lowercase();
            if accept.contains("text/plain") && !accept.contains("application/x-ndjson") {
                Ok(Format::Text)
            } else {
                Ok(Format::Ndjson)
            }
        }
    }
}

/// A namespace name: an RFC 1123 DNS label (lowercase letters, digits and `-`, at most 63,
/// starting and ending with a letter or digit).
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A non-empty label value: at most 63 letters, digits, `-`, `_` or `.`, starting and ending
/// with a letter or digit.
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
    }

    fn config() -> RelayConfig {
        let mut c = RelayConfig::new(["shop"]);
        c.max_tail_lines = 1000;
        c.max_since = Duration::from_secs(86_400);
        c
    }

    fn parse(query: &str) -> Result<LogRequest, ParamError> {
        parse_request("web".into(), Some(query), None, &config(), now())
    }

    #[test]
    fn reads_every_whitelisted_parameter() {
        let r = parse(
            "namespace=shop&follow=true&tail_lines=20&container=^app$&exclude_container=istio\
             &previous=1&timestamps",
        )
        .unwrap();
        assert_eq!(r.namespace, "shop");
        assert!(r.follow && r.previous && r.timestamps);
        assert_eq!(r.tail_lines, Some(20));
        assert_eq!(r.container.unwrap().as_str(), "^app$");
        assert_eq!(r.exclude_container.unwrap().as_str(), "istio");
        assert_eq!(r.format, Format::Ndjson);
    }

    #[test]
    fn query_selects_only_the_apps_pods_in_one_namespace() {
        let mut c = config();
        c.app_label = "app.kubernetes.io/name".into();
        let r = parse_request("web".into(), Some("follow=true"), None, &c, now()).unwrap();
        let q = r.to_query(&c);
        assert_eq!(q.selector, "app.kubernetes.io/name=web");
        assert_eq!(q.namespaces, podlogs::Namespaces::One("shop".into()));
        assert!(q.follow);
    }

    #[test]
    fn refuses_a_label_selector_from_the_caller() {
        let e = parse("labelSelector=app%3Ddb").unwrap_err();
        assert_eq!(e.parameter, "labelSelector");
        assert!(e.message.contains("unknown parameter"), "{}", e.message);
    }

    #[test]
    fn refuses_a_parameter_given_twice() {
        let e = parse("follow=true&follow=false").unwrap_err();
        assert_eq!(e.parameter, "follow");
    }

    #[test]
    fn tail_defaults_to_the_cap_when_nothing_bounds_history() {
        assert_eq!(parse("").unwrap().tail_lines, Some(1000));
        assert_eq!(parse("since=5m").unwrap().tail_lines, None);
    }

    #[test]
    fn refuses_tail_lines_over_the_cap_or_negative() {
        assert_eq!(
            parse("tail_lines=1001").unwrap_err().parameter,
            "tail_lines"
        );
        assert_eq!(parse("tail_lines=-1").unwrap_err().parameter, "tail_lines");
        assert_eq!(parse("tail_lines=ten").unwrap_err().parameter, "tail_lines");
        assert_eq!(parse("tail_lines=1000").unwrap().tail_lines, Some(1000));
    }

    #[test]
    fn reads_since_as_a_duration_within_the_cap() {
        assert_eq!(
            parse("since=1h30m").unwrap().since,
            Some(Since::Seconds(5400))
        );
        assert_eq!(parse("since=2d").unwrap_err().parameter, "since");
        assert_eq!(parse("since=500ms").unwrap_err().parameter, "since");
        assert_eq!(parse("since=5").unwrap_err().parameter, "since");
    }

    #[test]
    fn reads_since_time_within_the_cap() {
        let r = parse("since_time=2026-05-01T11:00:00Z").unwrap();
        assert_eq!(
            r.since,
            Some(Since::Time(now() - chrono::Duration::hours(1)))
        );
        let r = parse("since_time=2026-05-01T13:00:00%2B02:00").unwrap();
        assert_eq!(
            r.since,
            Some(Since::Time(now() - chrono::Duration::hours(1)))
        );
        assert_eq!(
            parse("since_time=2026-04-01T00:00:00Z")
                .unwrap_err()
                .parameter,
            "since_time"
        );
        assert_eq!(
            parse("since_time=yesterday").unwrap_err().parameter,
            "since_time"
        );
    }

    #[test]
    fn refuses_since_and_since_time_together() {
        let e = parse("since=5m&since_time=2026-05-01T11:00:00Z").unwrap_err();
        assert_eq!(e.parameter, "since_time");
    }

    #[test]
    fn refuses_bad_booleans_and_patterns() {
        assert_eq!(parse("follow=yes").unwrap_err().parameter, "follow");
        assert_eq!(parse("container=(").unwrap_err().parameter, "container");
        assert_eq!(
            parse("exclude_container=").unwrap_err().parameter,
            "exclude_container"
        );
        let long = "a".repeat(300);
        assert_eq!(
            parse(&format!("container={long}")).unwrap_err().parameter,
            "container"
        );
    }

    #[test]
    fn refuses_namespaces_that_are_not_dns_labels() {
        for bad in ["Shop", "-shop", "shop-", "a%2Fb", "sh_op"] {
            let e = parse(&format!("namespace={bad}")).unwrap_err();
            assert_eq!(e.parameter, "namespace", "{bad}");
        }
    }

    #[test]
    fn namespace_is_required_when_several_are_served() {
        let c = RelayConfig::new(["shop", "pay"]);
        let e = parse_request("web".into(), None, None, &c, now()).unwrap_err();
        assert_eq!(e.parameter, "namespace");
    }

    #[test]
    fn picks_text_from_the_format_parameter_or_accept_header() {
        let c = config();
        let text = |q: &str, a: Option<&str>| {
            parse_request("web".into(), Some(q), a, &c, now()).map(|r| r.format)
        };
        assert_eq!(text("format=text", None), Ok(Format::Text));
        assert_eq!(text("", Some("text/plain")), Ok(Format::Text));
        assert_eq!(
            text("", Some("application/x-ndjson, text/plain;q=0.5")),
            Ok(Format::Ndjson)
        );
        assert_eq!(text("", Some("*/*")), Ok(Format::Ndjson));
        assert_eq!(text("format=xml", None).unwrap_err().parameter, "format");
    }

    #[test]
    fn validates_app_names_as_label_values() {
        assert_eq!(parse_app("web").unwrap(), "web");
        assert_eq!(parse_app("web.v2_x").unwrap(), "web.v2_x");
        for bad in ["", "-web", "web%2Fdb", "a%20b", &"a".repeat(64), "%FF"] {
            assert_eq!(parse_app(bad).unwrap_err().parameter, "app", "{bad}");
        }
    }
}
