//! The OpenAPI 3.1 description of every route the server answers, including the NDJSON
//! event schema, served at `/openapi.json`. Built from the same parameter list the server
//! accepts ([`crate::params::PARAMETERS`]); a test checks they agree.

use podlogs::EventKind;
use serde_json::{Value, json};

use crate::config::RelayConfig;

/// Every path the server answers, as written in the document.
pub const ROUTES: &[&str] = &[
    "/apps/{app}/logs",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
];

/// The document for a relay configured with `config`.
pub fn document(config: &RelayConfig) -> Value {
    let schema_version = podlogs::SCHEMA_VERSION;
    let error = json!({"$ref": "#/components/responses/Error"});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "aether-relay",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Serves the merged logs of an app (the pods labelled {label}={{app}}) in the \
                 namespaces this relay is configured for. Responses are NDJSON, one event per \
                 line, schema version {schema_version} (also in the X-Aether-Schema-Version \
                 header).",
                label = config.app_label,
            ),
        },
        "paths": {
            "/apps/{app}/logs": {
                "get": {
                    "operationId": "streamAppLogs",
                    "summary": "Stream the merged logs of every pod of an app",
                    "description": "Chunked NDJSON by default; text with `Accept: text/plain` \
                        or `format=text`; one WebSocket text message per event when the \
                        request is a WebSocket upgrade. A heartbeat event follows every \
                        silence; a closing event ends the stream when the relay shuts down.",
                    "security": [{}, {"bearer": []}],
                    "parameters": parameters(config),
                    "responses": {
                        "101": {"description": "WebSocket upgrade: one text message per event"},
                        "200": {
                            "description": "The event stream",
                            "headers": {
                                "X-Aether-Schema-Version": {
                                    "description": "Version of the event schema",
                                    "schema": {"type": "integer", "const": schema_version}
                                },
                                "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"}}
                            },
                            "content": {
                                "application/x-ndjson": {
                                    "schema": {"$ref": "#/components/schemas/LogEvent"}
                                },
                                "text/plain": {"schema": {"type": "string"}}
                            }
                        },
                        "400": error, "401": error, "403": error, "404": error,
                        "429": error, "500": error, "503": error
                    }
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "The process is up",
                    "responses": {"200": plain("ok")}
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "The relay can reach the apiserver",
                    "responses": {"200": plain("ok"), "503": error}
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus text exposition format",
                    "responses": {"200": plain("metrics")}
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}}
                    }}
                }
            }
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": format!(
                        "In token mode: a Kubernetes token bound to the audience {}, allowed \
                         to get apps/logs (group aether.dev) with the app's name",
                        config.audience
                    )
                }
            },
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }
            },
            "schemas": schemas(),
        }
    })
}

fn plain(description: &str) -> Value {
    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
}

fn parameters(config: &RelayConfig) -> Value {
    let query = |name: &str, schema: Value, description: String| {
        json!({"name": name, "in": "query", "required": false, "schema": schema,
               "description": description})
    };
    let boolean = json!({"type": "boolean", "default": false});
    json!([
        {"name": "app", "in": "path", "required": true,
         "schema": {"type": "string", "maxLength": 63,
                    "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"},
         "description": format!("The app: pods labelled {}=<app>", config.app_label)},
        query("namespace", json!({"type": "string", "maxLength": 63,
                                  "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}),
              "Namespace of the app; optional when the relay serves exactly one".into()),
        query("follow", boolean.clone(), "Keep streaming new lines, pods and restarts".into()),
        query("tail_lines", json!({"type": "integer", "minimum": 0,
                                   "maximum": config.max_tail_lines}),
              format!("Most recent lines per container; {} when neither tail_lines, since \
                       nor since_time is given", config.max_tail_lines)),
        query("since", json!({"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d))+$"}),
              "Start this long ago, such as 5m, 1h30m or 2d (at least 1s)".into()),
        query("since_time", json!({"type": "string", "format": "date-time"}),
              "Start at this RFC 3339 time; not together with since".into()),
        query("container", json!({"type": "string", "maxLength": 256}),
              "Only containers whose name matches this regular expression".into()),
        query("exclude_container", json!({"type": "string", "maxLength": 256}),
              "No containers whose name matches this regular expression".into()),
        query("previous", boolean.clone(),
              "The previous instance of each container".into()),
        query("timestamps", boolean, "Prefix text lines with their time".into()),
        query("format", json!({"type": "string", "enum": ["ndjson", "json", "text"]}),
              "Response format; overrides the Accept header".into()),
    ])
}

fn schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time",
                      "description": "RFC 3339, UTC, nine fraction digits"});
    json!({
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": {"type": "string"},
                "code": {"type": "integer"},
                "parameter": {"type": "string", "description": "The parameter at fault (400)"}
            }
        },
        "LogEvent": {
            "oneOf": [
                {"$ref": "#/components/schemas/LogLine"},
                {"$ref": "#/components/schemas/StatusEvent"},
                {"$ref": "#/components/schemas/Heartbeat"}
            ],
            "discriminator": {"propertyName": "type"}
        },
        "LogLine": {
            "type": "object",
            "required": ["type", "time", "namespace", "pod", "container", "line"],
            "properties": {
                "type": {"const": "log"},
                "time": time,
                "namespace": {"type": "string"},
                "pod": {"type": "string"},
                "container": {"type": "string"},
                "line": {"type": "string"},
                "truncated": {"type": "boolean", "default": false}
            }
        },
        "StatusEvent": {
            "type": "object",
            "required": ["type", "time", "event"],
            "properties": {
                "type": {"const": "event"},
                "time": time,
                "namespace": {"type": "string"},
                "pod": {"type": "string"},
                "container": {"type": "string"},
                "event": {"enum": EventKind::ALL.map(EventKind::as_str)},
                "message": {"type": "string"}
            }
        },
        "Heartbeat": {
            "type": "object",
            "required": ["type", "time"],
            "properties": {"type": {"const": "heartbeat"}, "time": time}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_accepted_parameter() {
        let doc = document(&RelayConfig::new(["shop"]));
        let params = &doc["paths"]["/apps/{app}/logs"]["get"]["parameters"];
        let names: Vec<&str> = params
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for accepted in crate::params::PARAMETERS {
            assert!(
                names.contains(accepted),
                "{accepted} missing from {names:?}"
            );
        }
    }

    #[test]
    fn lists_every_route() {
        let doc = document(&RelayConfig::new(["shop"]));
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), ROUTES.len());
        for route in ROUTES {
            assert!(paths.contains_key(*route), "{route}");
        }
    }

    #[test]
    fn event_schema_names_every_event_kind() {
        let doc = document(&RelayConfig::new(["shop"]));
        let kinds = &doc["components"]["schemas"]["StatusEvent"]["properties"]["event"]["enum"];
        for kind in EventKind::ALL {
            assert!(
                kinds.as_array().unwrap().iter().any(|k| k == kind.as_str()),
                "{}",
                kind.as_str()
            );
        }
    }
}
