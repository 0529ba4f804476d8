//! JSON schemas for the k8s-openapi types our CRDs embed: k8s-openapi is built without
//! its `schemars` feature, so the derive cannot reach them. These restate the upstream
//! OpenAPI definitions (structural: every field typed, nothing left open).

use schemars::{Schema, SchemaGenerator, json_schema};

/// `metav1.LabelSelector`.
pub(crate) fn label_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "A label query over Services; an empty selector matches every Service.",
        "properties": {
            "matchLabels": {
                "type": "object",
                "additionalProperties": {"type": "string"}
            },
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string"},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {"type": "array", "items": {"type": "string"}}
                    }
                }
            }
        }
    })
}

/// A list of `metav1.Condition`, keyed by type.
pub(crate) fn conditions(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string", "maxLength": 316},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string", "maxLength": 1024, "minLength": 1},
                "message": {"type": "string", "maxLength": 32768}
            }
        }
    })
}
