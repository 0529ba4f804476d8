//! Why part of a route cannot be served. Each error maps to a Gateway API condition
//! reason: [`RouteError`] makes a parent's `Accepted` False, [`BackendError`] makes the
//! route's `ResolvedRefs` False (and answers that backend's share of traffic with 500).

use portico_api::names::reason;

/// Something in an HTTPRoute's rules that Portico cannot program. The API server's
/// validation catches most of these; a folder of YAML in standalone mode does not, and a
/// value the proxy would refuse must not reach it (it would reject the whole config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("rule {rule}: filter {filter} is not supported yet")]
    UnsupportedFilter { rule: usize, filter: String },
    #[error("rule {rule}: filter {filter} has no {field} field")]
    MissingFilterConfig {
        rule: usize,
        filter: &'static str,
        field: &'static str,
    },
    #[error("rule {rule}: filter {filter} is not supported on a backendRef")]
    UnsupportedBackendFilter { rule: usize, filter: String },
    #[error("rule {rule}: filter {filter}: {why}")]
    InvalidFilter {
        rule: usize,
        filter: &'static str,
        why: String,
    },
    #[error("rule {rule}: {field}: {why}")]
    InvalidField {
        rule: usize,
        field: &'static str,
        why: String,
    },
    #[error("rule {rule}: {field} is not supported")]
    UnsupportedField { rule: usize, field: &'static str },
    #[error("rule {rule}, match {matcher}: invalid path {value:?}: {why}")]
    InvalidPath {
        rule: usize,
        matcher: usize,
        value: String,
        why: &'static str,
    },
    #[error(
        "invalid hostname {value:?}: labels of letters, digits, '-' and '_', optionally after '*.'"
    )]
    InvalidHostname { value: String },
    #[error("rule {rule}: invalid regular expression {value:?}: {error}")]
    InvalidRegex {
        rule: usize,
        value: String,
        error: String,
    },
    #[error("rule {rule}: invalid header name {name:?}")]
    InvalidHeaderName { rule: usize, name: String },
    #[error("rule {rule}: invalid value for header {name:?}")]
    InvalidHeaderValue { rule: usize, name: String },
    #[error("rule {rule}: invalid query parameter name {name:?}")]
    InvalidQueryParamName { rule: usize, name: String },
}

impl RouteError {
    /// The reason of the `Accepted=False` condition it causes.
    ///
    /// Gateway API: "Unknown values here must result in the implementation setting the
    /// Accepted Condition for the Route to `status: False`, with a Reason of
    /// `UnsupportedValue`."
    pub(crate) fn reason(&self) -> &'static str {
        reason::UNSUPPORTED_VALUE
    }
}

/// A reference that cannot be resolved: a backendRef, a RequestMirror's backendRef, or
/// an ExtensionRef filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BackendError {
    #[error(
        "backendRef {name:?} refers to a {}; only core Services are supported",
        kind_group(kind, group)
    )]
    InvalidKind {
        group: String,
        kind: String,
        name: String,
    },
    #[error(
        "no ReferenceGrant in namespace {namespace:?} allows {kind}s from {from:?} to refer to Service {name:?}"
    )]
    NotPermitted {
        /// The kind of the referring route.
        kind: String,
        from: String,
        namespace: String,
        name: String,
    },
    #[error("backendRef to Service {namespace}/{name} has no port")]
    MissingPort { namespace: String, name: String },
    #[error("Service {namespace}/{name} not found")]
    ServiceNotFound { namespace: String, name: String },
    #[error("Service {namespace}/{name} has no port {port}")]
    PortNotFound {
        namespace: String,
        name: String,
        port: i32,
    },
    /// The BackendTLSPolicy in force for the Service port cannot be used (see
    /// [`crate::backend_tls`]); `reason` is the policy's ResolvedRefs or Accepted reason.
    #[error(
        "Service {namespace}/{name} port {port}: BackendTLSPolicy {policy:?} cannot be used: {why}"
    )]
    InvalidBackendTls {
        namespace: String,
        name: String,
        port: i32,
        policy: String,
        reason: &'static str,
        why: String,
    },
    #[error(
        "ExtensionRef filter {name:?} refers to {}, a kind Portico does not implement",
        kind_group(kind, group)
    )]
    UnknownFilterKind {
        group: String,
        kind: String,
        name: String,
    },
}

/// `Kind` for the core group, `Kind.group` otherwise (as kubectl spells resources).
fn kind_group(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

impl BackendError {
    /// The reason of the `ResolvedRefs=False` condition it causes.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::InvalidKind { .. } | Self::UnknownFilterKind { .. } => reason::INVALID_KIND,
            Self::NotPermitted { .. } => reason::REF_NOT_PERMITTED,
            Self::MissingPort { .. } | Self::ServiceNotFound { .. } | Self::PortNotFound { .. } => {
                reason::BACKEND_NOT_FOUND
            }
            Self::InvalidBackendTls { reason, .. } => reason,
        }
    }

    /// The Service port of a backend made unusable by its BackendTLSPolicy: the policy's
    /// status still names the Gateways that route there.
    pub(crate) fn tls_cluster(&self) -> Option<crate::backend::ClusterRef> {
        match self {
            Self::InvalidBackendTls {
                namespace,
                name,
                port,
                ..
            } => Some(crate::backend::ClusterRef {
                service: crate::status::ObjectRef::new(namespace.clone(), name.clone()),
                port: *port,
            }),
            _ => None,
        }
    }
}
