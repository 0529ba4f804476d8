//! One YAML document into typed objects, chosen by `apiVersion` and `kind`:
//!
//! | apiVersion                                   | kind                                  |
//! |----------------------------------------------|---------------------------------------|
//! | `gateway.networking.k8s.io/v1` or `/v1beta1` | GatewayClass, Gateway, HTTPRoute, ReferenceGrant |
//! | `gateway.networking.k8s.io/v1`               | ListenerSet                           |
//! | `gateway.networking.k8s.io/v1`               | GRPCRoute                             |
//! | `gateway.networking.k8s.io/v1`, `/v1alpha2`, `/v1alpha3` | TLSRoute, TCPRoute, UDPRoute |
//! | `v1`                                         | Service, Namespace, Secret, `List` (its `items`) |
//! | `discovery.k8s.io/v1`                        | EndpointSlice                         |
//!
//! `v1beta1` manifests have the same schema as `v1` for every field we read, so they decode
//! into the same types. ListenerSet is `v1` only: it became standard in v1.6 (before, the
//! experimental XListenerSet was another kind in another group). Other kinds (a Deployment next to its Service) are skipped with a
//! debug log; a known kind at a version we do not read is an error, so that a typo does not
//! silently drop a route.
//!
//! Objects are then normalized the way the API server would store them:
//! - a namespaced object without a namespace goes to `default` (what `kubectl apply -f`
//!   does with the folder);
//! - a cluster-scoped object has no namespace;
//! - every Namespace carries `kubernetes.io/metadata.name: <name>`: "The Kubernetes
//!   control plane sets an immutable label `kubernetes.io/metadata.name` on all
//!   namespaces" (Kubernetes docs, Namespaces), and Gateways'
//!   `allowedRoutes.namespaces.selector` commonly match on it.

use std::borrow::Cow;
use std::path::Path;

use portico_api::gateway::BackendTlsPolicy;
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::k8s::{ConfigMap, EndpointSlice, Namespace, Secret, Service};
use portico_api::kube::{Resource, ResourceExt};
use portico_api::names::NAMESPACE_NAME_LABEL;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use tracing::debug;

use super::documents::{Document, message_without_location};
use super::{FileContents, LoadError, LoadedObject};
use crate::object::{Object, ResourceScope};

/// The namespace kubectl puts namespaced objects in when the manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Versions of the Gateway API kinds read besides the types' own (`v1`).
const GATEWAY_API_OLDER_VERSIONS: &[&str] = &["v1beta1"];

/// Versions of TLSRoute, TCPRoute and UDPRoute read besides `v1`.
const STREAM_ROUTE_OLDER_VERSIONS: &[&str] = &["v1alpha2", "v1alpha3"];

/// `apiVersion: v1`, `kind: List`: what `kubectl get -o yaml` prints for several objects.
const LIST_API_VERSION: &str = "v1";
const LIST_KIND: &str = "List";

/// Decodes `doc` of the file at `path`, adding its objects and errors to `out`.
pub(crate) fn decode_document(path: &Path, doc: &Document<'_>, out: &mut FileContents) {
    let syntax_error = |e: serde_yaml_ng::Error| LoadError::Syntax {
        path: path.to_path_buf(),
        line: e
            .location()
            .map_or(doc.start_line, |l| doc.line_offset + l.line()),
        message: message_without_location(&e),
    };
    // The file as a whole parsed already: this only fails if the cut into documents
    // disagrees with the parser, which the error then shows.
    let value: Value = match serde_yaml_ng::from_str(doc.text) {
        Ok(value) => value,
        Err(e) => return out.errors.push(syntax_error(e)),
    };
    let document_error = |message: String| LoadError::Document {
        path: path.to_path_buf(),
        line: doc.start_line,
        message,
    };
    let header = match Header::read(&value) {
        Ok(header) => header,
        Err(message) => return out.errors.push(document_error(message)),
    };
    if header.api_version == LIST_API_VERSION && header.kind == LIST_KIND {
        let Some(items) = value.get("items").and_then(Value::as_sequence) else {
            return out
                .errors
                .push(document_error(format!("{LIST_KIND} without `items`")));
        };
        for (index, item) in items.iter().enumerate() {
            match Header::read(item) {
                Ok(header) => {
                    let source = Source::Item { value: item, index };
                    decode_object(path, doc, &header, &source, out);
                }
                Err(message) => out
                    .errors
                    .push(document_error(format!("items[{index}]: {message}"))),
            }
        }
    } else {
        decode_object(path, doc, &header, &Source::Document(doc), out);
    }
}

/// What a document says about itself before it is decoded: enough to pick its type and
/// to name it in errors.
#[derive(Debug)]
struct Header {
    api_version: String,
    kind: String,
    name: Option<String>,
    namespace: Option<String>,
}

impl Header {
    fn read(value: &Value) -> Result<Self, String> {
        if !value.is_mapping() {
            return Err(
                "not a Kubernetes object: expected a mapping with `apiVersion` and `kind`".into(),
            );
        }
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        let meta = |name: &str| {
            value
                .get("metadata")
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let kind = field("kind").ok_or("missing `kind`")?;
        let api_version =
            field("apiVersion").ok_or_else(|| format!("{kind}: missing `apiVersion`"))?;
        Ok(Self {
            api_version,
            kind,
            name: meta("name"),
            namespace: meta("namespace"),
        })
    }

    /// `namespace/name` (namespace defaulted) or `name`, as errors show it.
    fn display_name(&self, namespaced: bool) -> Option<String> {
        let name = self.name.as_deref()?;
        Some(match (namespaced, self.namespace.as_deref()) {
            (false, _) => name.to_owned(),
            (true, ns) => format!("{}/{name}", ns.unwrap_or(DEFAULT_NAMESPACE)),
        })
    }
}

/// Where to decode an object from: a whole document (errors then have the parser's line),
/// or an item of a `List` (errors point at the document).
enum Source<'a> {
    Document(&'a Document<'a>),
    Item { value: &'a Value, index: usize },
}

/// Decodes the object `header` describes, if it is of a kind we read.
fn decode_object(
    path: &Path,
    doc: &Document<'_>,
    header: &Header,
    source: &Source<'_>,
    out: &mut FileContents,
) {
    let (group, version) = match header.api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", header.api_version.as_str()),
    };
    let want = Wanted {
        group,
        version,
        kind: &header.kind,
    };
    let gw = GATEWAY_API_OLDER_VERSIONS;
    let decoded = None
        .or_else(|| want.decode::<GatewayClass>(gw, source))
        .or_else(|| want.decode::<Gateway>(gw, source))
        .or_else(|| want.decode::<ListenerSet>(&[], source))
        .or_else(|| want.decode::<HttpRoute>(gw, source))
        // GRPCRoute is v1 only; TLSRoute, TCPRoute and UDPRoute are v1 since v1.6 and
        // were v1alpha2 (TLSRoute also v1alpha3) before, with the same fields we read.
        .or_else(|| want.decode::<GrpcRoute>(&[], source))
        .or_else(|| want.decode::<TlsRoute>(STREAM_ROUTE_OLDER_VERSIONS, source))
        .or_else(|| want.decode::<TcpRoute>(STREAM_ROUTE_OLDER_VERSIONS, source))
        .or_else(|| want.decode::<UdpRoute>(STREAM_ROUTE_OLDER_VERSIONS, source))
        .or_else(|| want.decode::<ReferenceGrant>(gw, source))
        .or_else(|| want.decode::<Service>(&[], source))
        .or_else(|| want.decode::<EndpointSlice>(&[], source))
        .or_else(|| want.decode::<Namespace>(&[], source))
        // Certificates for HTTPS listeners (`kubernetes.io/tls`), read by the translator.
        .or_else(|| want.decode::<Secret>(&[], source))
        // TLS to backends, and the CA bundles it refers to.
        .or_else(|| want.decode::<BackendTlsPolicy>(&[], source))
        .or_else(|| want.decode::<ConfigMap>(&[], source));
    let Some(decoded) = decoded else {
        debug!(
            path = %path.display(),
            line = doc.start_line,
            api_version = %header.api_version,
            kind = %header.kind,
            "skipping a kind Portico does not read"
        );
        return;
    };
    let result = decoded.and_then(|(namespaced, object)| {
        normalize(object).map_err(|message| Failure {
            namespaced,
            line: None,
            message,
        })
    });
    match result {
        Ok(object) => out.objects.push(LoadedObject {
            line: doc.start_line,
            object,
        }),
        Err(failure) => out.errors.push(LoadError::Object {
            path: path.to_path_buf(),
            line: failure.line.unwrap_or(doc.start_line),
            kind: header.kind.clone(),
            name: header.display_name(failure.namespaced),
            message: failure.message,
        }),
    }
}

/// Why an object of a known kind was not loaded.
struct Failure {
    namespaced: bool,
    /// The parser's line, when it has one.
    line: Option<usize>,
    message: String,
}

/// The type a document asks for.
struct Wanted<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

impl Wanted<'_> {
    /// `None` when the document is not of kind `K`; else the decoded object, with whether
    /// its kind is namespaced.
    fn decode<K>(
        &self,
        older_versions: &[&str],
        source: &Source<'_>,
    ) -> Option<Result<(bool, Object), Failure>>
    where
        K: Resource<DynamicType = (), Scope: ResourceScope> + DeserializeOwned + Into<Object>,
    {
        if K::group(&()) != self.group || K::kind(&()) != self.kind {
            return None;
        }
        let namespaced = crate::object::is_namespaced::<K>();
        if K::version(&()) != self.version && !older_versions.contains(&self.version) {
            let mut read: Vec<Cow<'_, str>> = vec![K::api_version(&())];
            read.extend(
                older_versions
                    .iter()
                    .map(|v| Cow::Owned(format!("{}/{v}", self.group))),
            );
            return Some(Err(Failure {
                namespaced,
                line: None,
                message: format!(
                    "apiVersion {} is not read, use {}",
                    api_version(self.group, self.version),
                    read.join(" or ")
                ),
            }));
        }
        let decoded: Result<K, Failure> = match source {
            Source::Document(doc) => serde_yaml_ng::from_str(doc.text).map_err(|e| Failure {
                namespaced,
                line: e.location().map(|l| doc.line_offset + l.line()),
                message: message_without_location(&e),
            }),
            Source::Item { value, index } => decode_item(value).map_err(|e| Failure {
                namespaced,
                line: None,
                message: format!("items[{index}]: {}", message_without_location(&e)),
            }),
        };
        Some(decoded.map(|obj| (namespaced, obj.into())))
    }
}

/// Decodes an item of a `List`. Through YAML text rather than from the value directly:
/// only the text deserializer tracks the path (`spec.rules[0]...`) that errors show. Its
/// lines are those of the re-serialized item, so they are not reported.
fn decode_item<K: DeserializeOwned>(value: &Value) -> Result<K, serde_yaml_ng::Error> {
    match serde_yaml_ng::to_string(value) {
        Ok(text) => serde_yaml_ng::from_str(&text),
        Err(_) => serde_yaml_ng::from_value(value.clone()),
    }
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Stores the object the way the API server would (see the module docs); rejects objects
/// without a name.
fn normalize(mut object: Object) -> Result<Object, String> {
    let namespaced = object.is_namespaced();
    let meta = object.meta_mut();
    let name = match meta.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => return Err("missing `metadata.name`".into()),
    };
    if namespaced {
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
        }
    } else {
        meta.namespace = None;
    }
    if let Object::Namespace(ns) = &mut object {
        ns.labels_mut()
            .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
    }
    Ok(object)
}

/// A Namespace as the API server would hold it, for one that objects live in but that no
/// manifest declares.
pub(crate) fn synthesized_namespace(name: &str) -> Namespace {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    ns.labels_mut()
        .insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
    ns
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::names::GATEWAY_API_GROUP;

    /// The group the dispatch compares against comes from the generated types: check it
    /// is the one the names module spells.
    #[test]
    fn gateway_types_are_in_the_gateway_api_group() {
        assert_eq!(HttpRoute::group(&()), GATEWAY_API_GROUP);
        assert_eq!(Gateway::group(&()), GATEWAY_API_GROUP);
        assert_eq!(GatewayClass::group(&()), GATEWAY_API_GROUP);
        assert_eq!(ReferenceGrant::group(&()), GATEWAY_API_GROUP);
        assert_eq!(ListenerSet::group(&()), GATEWAY_API_GROUP);
    }

    /// Secrets feed HTTPS listeners: `data` is base64 (as kubectl writes it) and
    /// `stringData` plain text; both reach the translator.
    #[test]
    fn tls_secrets_are_read() {
        let text = "apiVersion: v1\n\
                    kind: Secret\n\
                    metadata: {name: cert, namespace: infra}\n\
                    type: kubernetes.io/tls\n\
                    data: {tls.crt: Y2VydA==}\n\
                    stringData: {tls.key: key}\n";
        let contents = super::super::parse_file(Path::new("s.yaml"), text).unwrap_or_default();
        assert!(contents.errors.is_empty(), "{:?}", contents.errors);
        let [loaded] = contents.objects.as_slice() else {
            panic!("one object expected: {contents:?}");
        };
        let Object::Secret(secret) = &loaded.object else {
            panic!("a Secret expected: {loaded:?}");
        };
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.data.clone().unwrap_or_default();
        assert_eq!(
            data.get("tls.crt").map(|b| b.0.as_slice()),
            Some(&b"cert"[..])
        );
        let string_data = secret.string_data.clone().unwrap_or_default();
        assert_eq!(string_data.get("tls.key").map(String::as_str), Some("key"));
    }

    /// Every route kind reaches the store; TLSRoute, TCPRoute and UDPRoute also at the
    /// alpha versions older manifests use, GRPCRoute only at v1.
    #[test]
    fn route_kinds_are_read() {
        let text = "apiVersion: gateway.networking.k8s.io/v1\n\
                    kind: GRPCRoute\n\
                    metadata: {name: g, namespace: apps}\n\
                    spec: {parentRefs: [{name: gw}], rules: [{matches: [{method: {service: a.B, method: C}}]}]}\n\
                    ---\n\
                    apiVersion: gateway.networking.k8s.io/v1alpha2\n\
                    kind: TLSRoute\n\
                    metadata: {name: t, namespace: apps}\n\
                    spec: {hostnames: [a.example.com], rules: [{backendRefs: [{name: s, port: 443}]}]}\n\
                    ---\n\
                    apiVersion: gateway.networking.k8s.io/v1alpha2\n\
                    kind: TCPRoute\n\
                    metadata: {name: c, namespace: apps}\n\
                    spec: {rules: [{backendRefs: [{name: s, port: 5432}]}]}\n\
                    ---\n\
                    apiVersion: gateway.networking.k8s.io/v1\n\
                    kind: UDPRoute\n\
                    metadata: {name: u, namespace: apps}\n\
                    spec: {rules: [{backendRefs: [{name: s, port: 53}]}]}\n\
                    ---\n\
                    apiVersion: gateway.networking.k8s.io/v1alpha2\n\
                    kind: GRPCRoute\n\
                    metadata: {name: old, namespace: apps}\n\
                    spec: {}\n";
        let contents = super::super::parse_file(Path::new("r.yaml"), text).unwrap_or_default();
        let kinds: Vec<String> = contents
            .objects
            .iter()
            .map(|o| format!("{} {}", o.object.kind(), o.object.key()))
            .collect();
        assert_eq!(
            kinds,
            [
                "GRPCRoute apps/g",
                "TLSRoute apps/t",
                "TCPRoute apps/c",
                "UDPRoute apps/u"
            ]
        );
        let errors: Vec<String> = contents.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("v1alpha2 is not read"), "{errors:?}");
    }

    #[test]
    fn listener_sets_are_read_at_v1_only() {
        let text = "apiVersion: gateway.networking.k8s.io/v1\n\
                    kind: ListenerSet\n\
                    metadata: {name: extra}\n\
                    spec:\n  \
                      parentRef: {name: gw, namespace: infra}\n  \
                      listeners:\n  \
                      - {name: http, port: 80, protocol: HTTP, hostname: extra.example.com}\n\
                    ---\n\
                    apiVersion: gateway.networking.k8s.io/v1beta1\n\
                    kind: ListenerSet\n\
                    metadata: {name: old}\n\
                    spec: {parentRef: {name: gw}, listeners: []}\n";
        let contents = super::super::parse_file(Path::new("ls.yaml"), text).unwrap_or_default();
        let [loaded] = contents.objects.as_slice() else {
            panic!("one object expected: {contents:?}");
        };
        let Object::ListenerSet(ls) = &loaded.object else {
            panic!("a ListenerSet expected: {loaded:?}");
        };
        // Namespaced objects without a namespace land in `default`, as with kubectl.
        assert_eq!(ls.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
        assert_eq!(ls.spec.parent_ref.namespace.as_deref(), Some("infra"));
        assert_eq!(
            ls.spec.listeners[0].hostname.as_deref(),
            Some("extra.example.com")
        );
        let errors: Vec<String> = contents.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("apiVersion gateway.networking.k8s.io/v1beta1 is not read"),
            "{errors:?}"
        );
    }
}
