//! Errors: [`ApiError`] is what a request fails with, rendered as a Kubernetes `Status`
//! object with the reason and code a real API server would give; [`TestApiServerError`]
//! is what the Rust-side helpers (start, kubeconfig, apply) return.

use http::StatusCode;
use serde_json::{Value, json};

/// A request that failed, as the API server reports it: HTTP code, `reason` and message
/// of a `Status` object, plus the `details` naming the object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) code: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
}

/// Which object an error is about: fills `Status.details` as the real server does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) group: &'a str,
    pub(crate) plural: &'a str,
    pub(crate) name: &'a str,
}

impl Subject<'_> {
    /// `services` or `gateways.gateway.networking.k8s.io`, as error messages spell it.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self, causes: Option<Value>) -> Value {
        let mut d = json!({"name": self.name, "group": self.group, "kind": self.plural});
        if let Some(c) = causes {
            d["causes"] = c;
        }
        d
    }
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub(crate) fn not_found(s: Subject<'_>) -> Self {
        ApiError {
            details: Some(s.details(None)),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} \"{}\" not found", s.qualified(), s.name),
            )
        }
    }

    /// A path that names no resource: the real server answers a bare 404 `Status`.
    pub(crate) fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub(crate) fn already_exists(s: Subject<'_>) -> Self {
        ApiError {
            details: Some(s.details(None)),
            ..Self::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{}\" already exists", s.qualified(), s.name),
            )
        }
    }

    /// A stale `resourceVersion` on update: what optimistic concurrency (and so leader
    /// election) relies on.
    pub(crate) fn stale(s: Subject<'_>) -> Self {
        ApiError {
            details: Some(s.details(None)),
            ..Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
                     please apply your changes to the latest version and try again",
                    s.qualified(),
                    s.name
                ),
            )
        }
    }

    /// Server-side apply found fields owned by other managers with other values.
    pub(crate) fn apply_conflict(s: Subject<'_>, conflicts: &[(String, String)]) -> Self {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{manager}\""),
                    "field": field,
                })
            })
            .collect();
        let listed: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
            .collect();
        let plural = if conflicts.len() == 1 { "" } else { "s" };
        ApiError {
            details: Some(s.details(Some(Value::Array(causes)))),
            ..Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Apply failed with {} conflict{plural}: {}",
                    conflicts.len(),
                    listed.join("\n")
                ),
            )
        }
    }

    /// Validation failed: 422 with one cause per field, like field.ErrorList.
    pub(crate) fn invalid(kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
            .collect();
        let listed: Vec<String> = errors.iter().map(FieldError::to_string).collect();
        let list = if listed.len() == 1 {
            listed.join("")
        } else {
            format!("[{}]", listed.join(", "))
        };
        ApiError {
            details: Some(json!({"name": name, "kind": kind, "causes": causes})),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{kind} \"{name}\" is invalid: {list}"),
            )
        }
    }

    pub(crate) fn forbidden(s: Subject<'_>, why: &str) -> Self {
        ApiError {
            details: Some(s.details(None)),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("{} \"{}\" is forbidden: {why}", s.qualified(), s.name),
            )
        }
    }

    pub(crate) fn method_not_allowed(what: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({what})"),
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type})"
            ),
        )
    }

    /// The resourceVersion a watch asked for is older than the retained history.
    pub(crate) fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// The `Status` object (kind Status, apiVersion v1) sent as the response body, and in
    /// watch ERROR events.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

/// One validation failure, as `field.Error` prints it:
/// `spec.endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be ...`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn invalid(field: impl Into<String>, value: &Value, why: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {shown}: {why}"),
        }
    }

    pub(crate) fn required(field: impl Into<String>, why: &str) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            message: format!("Required value: {why}"),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, value: &Value, allowed: &[Value]) -> Self {
        let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
        FieldError {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                allowed.join(", ")
            ),
        }
    }

    pub(crate) fn too_long(field: impl Into<String>, max: u64) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max}"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Errors of the Rust-side API of the test server.
#[derive(Debug, thiserror::Error)]
pub enum TestApiServerError {
    /// Binding 127.0.0.1:0 (or, resuming, the old port) failed.
    #[error("binding the test API server: {0}")]
    Bind(#[source] std::io::Error),
    /// Building a kube client or config failed.
    #[error("building a kube client for {url}: {source}")]
    Client {
        /// the server's URL
        url: String,
        /// what kube said
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading or writing a file (kubeconfig, manifests).
    #[error("{path}: {source}")]
    Io {
        /// the file
        path: std::path::PathBuf,
        /// the cause
        #[source]
        source: std::io::Error,
    },
    /// A manifest that is not YAML or has no apiVersion/kind.
    #[error("{path}: {message}")]
    Manifest {
        /// the file
        path: std::path::PathBuf,
        /// what is wrong
        message: String,
    },
    /// The server refused an object from a manifest.
    #[error("{path}: {kind} {name}: {message}")]
    Rejected {
        /// the file
        path: std::path::PathBuf,
        /// the object's kind
        kind: String,
        /// the object's name
        name: String,
        /// the server's Status message
        message: String,
    },
}
