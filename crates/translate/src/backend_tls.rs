//! BackendTLSPolicy: TLS from the proxies to a Service's endpoints.
//!
//! ```text
//! BackendTLSPolicy (ns P)
//! ├── targetRefs[]  core Service "svc" in ns P, optional sectionName = a Service port name
//! │                 └─> target key (P/svc, Some(port name) | None)
//! └── validation
//!     ├── hostname                ─> UpstreamTls.server_name (SNI, and the name checked)
//!     ├── caCertificateRefs[]     ─> ConfigMap in ns P, key ca.crt ─> UpstreamTls.ca_pem
//!     ├── wellKnownCACertificates ─> "System" ─> UpstreamTls.system_roots
//!     └── subjectAltNames[]       ─> UpstreamTls.subject_alt_names
//!
//! BackendTlsPolicies (built once per translation, held by the Index)
//! ├── targets: target key -> the policy that takes precedence there (oldest, then by name)
//! └── policies: ns/name -> Resolved { validation: Ok(UpstreamTls) | Err(problem), conflicted }
//!
//! backendRef -> (Service, port) ─lookup─> exact sectionName target, else whole-Service target
//!      ├── Ok(tls)  ─> Cluster.tls (crate::backend::build_cluster)
//!      └── Err(why) ─> the backend is invalid: 500 for its share, route ResolvedRefs False
//! ```
//!
//! Statuses: a policy's ancestors are the Gateways that routes sending traffic to its
//! target are attached to ([`statuses`]); a policy that applies to no such backend gets
//! no status from us, as no Gateway of ours uses it.
//!
//! Gateway API (BackendTLSPolicy targetRefs): "When more than one BackendTLSPolicy selects
//! the same target and sectionName, implementations MUST determine precedence using the
//! following criteria, continuing on ties: The older policy by creation timestamp takes
//! precedence. [...] The policy appearing first in alphabetical order by
//! {namespace}/{name}. [...] For any BackendTLSPolicy that does not take precedence, the
//! implementation MUST ensure the `Accepted` Condition is set to `status: False`, with
//! Reason `Conflicted`."

use std::collections::{BTreeMap, BTreeSet};

use portico_api::config::v1::{SubjectAltName, UpstreamTls, subject_alt_name};
use portico_api::gateway::BackendTlsPolicy;
use portico_api::gateway::backendtlspolicies::{
    BackendTlsPolicyValidation, BackendTlsPolicyValidationSubjectAltNamesType,
};
use portico_api::k8s::{ConfigMap, Time};
use portico_api::names::{self, condition, kind, reason};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::attach::Attachment;
use crate::backend::ClusterRef;
use crate::error::BackendError;
use crate::index::{Index, object_ref};
use crate::route::CompiledRoute;
use crate::status::{Condition, ObjectRef, ParentReference, PolicyAncestorStatus, PolicyStatus};

/// A Service, and the port name a policy's sectionName selects (`None`: every port).
type TargetKey = (ObjectRef, Option<String>);

/// Why a policy's validation cannot be used. Connections through it fail (the
/// backend answers 500): "Connections using an invalid CACertificateRef MUST fail, and
/// the client MUST receive an HTTP 5xx error response."
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsProblem {
    /// Set when a caCertificateRef is at fault: the ResolvedRefs reason
    /// (InvalidKind or InvalidCACertificateRef).
    pub(crate) ref_reason: Option<&'static str>,
    /// The Accepted reason: Invalid, or NoValidCACertificate when every
    /// caCertificateRef is invalid.
    pub(crate) accepted_reason: &'static str,
    pub(crate) message: String,
}

#[derive(Debug)]
struct Resolved<'a> {
    policy: &'a BackendTlsPolicy,
    validation: Result<UpstreamTls, TlsProblem>,
    /// Another policy takes precedence on one of this policy's targets.
    conflicted: bool,
}

/// Every BackendTLSPolicy, resolved, and which one applies where.
#[derive(Debug, Default)]
pub(crate) struct BackendTlsPolicies<'a> {
    /// Target -> the policy that takes precedence there.
    targets: BTreeMap<TargetKey, ObjectRef>,
    /// Target -> every policy naming it, the one taking precedence first.
    claims: BTreeMap<TargetKey, Vec<ObjectRef>>,
    policies: BTreeMap<ObjectRef, Resolved<'a>>,
}

impl<'a> BackendTlsPolicies<'a> {
    pub(crate) fn new(policies: &'a [BackendTlsPolicy], config_maps: &'a [ConfigMap]) -> Self {
        let mut maps: BTreeMap<ObjectRef, &ConfigMap> = BTreeMap::new();
        for m in config_maps {
            maps.entry(object_ref(&m.metadata)).or_insert(m);
        }

        // Precedence order: older first, then by namespace/name. Duplicated keys (only a
        // folder of YAML can have them) keep the first listed, as the Index does.
        let mut ordered: Vec<(Option<&Time>, ObjectRef, &BackendTlsPolicy)> = Vec::new();
        let mut seen = BTreeSet::new();
        for p in policies {
            let key = object_ref(&p.metadata);
            if seen.insert(key.clone()) {
                ordered.push((p.metadata.creation_timestamp.as_ref(), key, p));
            }
        }
        // `None` (no timestamp, standalone YAML) sorts first: such objects are treated as
        // the oldest, and among themselves ordered by name.
        ordered.sort_by(|a, b| (a.0.map(|t| t.0), &a.1).cmp(&(b.0.map(|t| t.0), &b.1)));

        let mut out = Self::default();
        for (_, key, policy) in ordered {
            let mut conflicted = false;
            for target in target_keys(&key.namespace, policy) {
                let claims = out.claims.entry(target.clone()).or_default();
                claims.push(key.clone());
                match out.targets.get(&target) {
                    Some(_) => conflicted = true,
                    None => {
                        out.targets.insert(target, key.clone());
                    }
                }
            }
            let validation = validate(&key.namespace, &policy.spec.validation, &maps);
            out.policies.insert(
                key,
                Resolved {
                    policy,
                    validation,
                    conflicted,
                },
            );
        }
        out
    }

    /// The policy in force for a Service port: the one naming the port, else the one
    /// naming the whole Service.
    fn in_force(&self, service: &ObjectRef, port_name: &str) -> Option<&Resolved<'a>> {
        let exact = (!port_name.is_empty())
            .then(|| {
                self.targets
                    .get(&(service.clone(), Some(port_name.to_owned())))
            })
            .flatten();
        let key = exact.or_else(|| self.targets.get(&(service.clone(), None)))?;
        self.policies.get(key)
    }

    /// The TLS a Service port is reached with: `Ok(None)` for cleartext, an error when
    /// the policy in force cannot be used.
    pub(crate) fn lookup(
        &self,
        service: &ObjectRef,
        port: i32,
        port_name: &str,
    ) -> Result<Option<UpstreamTls>, BackendError> {
        let Some(resolved) = self.in_force(service, port_name) else {
            return Ok(None);
        };
        match &resolved.validation {
            Ok(tls) => Ok(Some(tls.clone())),
            Err(problem) => Err(BackendError::InvalidBackendTls {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                port,
                policy: object_ref(&resolved.policy.metadata).name,
                reason: problem.ref_reason.unwrap_or(problem.accepted_reason),
                why: problem.message.clone(),
            }),
        }
    }

    /// Every policy naming a Service port, in force or not (for their statuses).
    fn naming(&self, service: &ObjectRef, port_name: &str) -> impl Iterator<Item = &ObjectRef> {
        let exact = (!port_name.is_empty())
            .then(|| {
                self.claims
                    .get(&(service.clone(), Some(port_name.to_owned())))
            })
            .flatten();
        let whole = self.claims.get(&(service.clone(), None));
        exact.into_iter().chain(whole).flatten()
    }
}

/// The targets a policy names: core Services in its own namespace. Other kinds are
/// implementation-specific and Portico supports none of them.
fn target_keys(namespace: &str, policy: &BackendTlsPolicy) -> Vec<TargetKey> {
    let mut keys: Vec<TargetKey> = policy
        .spec
        .target_refs
        .iter()
        .filter(|t| t.group.is_empty() && t.kind == kind::SERVICE)
        .map(|t| {
            (
                ObjectRef::new(namespace, t.name.clone()),
                t.section_name.clone().filter(|s| !s.is_empty()),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Resolves `validation` to the config's UpstreamTls.
fn validate(
    namespace: &str,
    v: &BackendTlsPolicyValidation,
    maps: &BTreeMap<ObjectRef, &ConfigMap>,
) -> Result<UpstreamTls, TlsProblem> {
    let invalid = |message: String| TlsProblem {
        ref_reason: None,
        accepted_reason: reason::INVALID,
        message,
    };
    let refs = v.ca_certificate_refs.as_deref().unwrap_or_default();
    let well_known = v.well_known_ca_certificates.as_deref().unwrap_or("");
    // Gateway API (wellKnownCACertificates): "If an implementation does not support the
    // WellKnownCACertificates field, or the supplied value is not recognized, the
    // implementation MUST ensure the `Accepted` Condition on the BackendTLSPolicy is set
    // to `status: False`, with a Reason `Invalid`." And: "Only one of CACertificateRefs
    // or WellKnownCACertificates may be specified, not both."
    let system_roots = match (refs.is_empty(), well_known) {
        (true, "") => {
            return Err(invalid(
                "validation needs caCertificateRefs or wellKnownCACertificates".to_owned(),
            ));
        }
        (false, "") => false,
        (true, names::WELL_KNOWN_CA_SYSTEM) => true,
        (true, other) => {
            return Err(invalid(format!(
                "wellKnownCACertificates {other:?} is not supported (only {:?})",
                names::WELL_KNOWN_CA_SYSTEM
            )));
        }
        (false, _) => {
            return Err(invalid(
                "only one of caCertificateRefs and wellKnownCACertificates may be set".to_owned(),
            ));
        }
    };

    let mut subject_alt_names = Vec::new();
    for (i, san) in v.subject_alt_names.iter().flatten().enumerate() {
        let kind = match (&san.r#type, &san.hostname, &san.uri) {
            (BackendTlsPolicyValidationSubjectAltNamesType::Hostname, Some(h), _)
                if !h.is_empty() =>
            {
                subject_alt_name::Kind::Hostname(h.clone())
            }
            (BackendTlsPolicyValidationSubjectAltNamesType::Uri, _, Some(u)) if !u.is_empty() => {
                subject_alt_name::Kind::Uri(u.clone())
            }
            (t, _, _) => {
                return Err(invalid(format!(
                    "subjectAltNames[{i}] of type {t:?} has no value"
                )));
            }
        };
        subject_alt_names.push(SubjectAltName { kind: Some(kind) });
    }

    // Gateway API (caCertificateRefs): "A CACertificateRef is invalid if: It refers to a
    // resource that cannot be resolved [...] or is misconfigured (e.g., a ConfigMap does
    // not contain a key named `ca.crt`). In this case, the Reason must be set to
    // `InvalidCACertificateRef` [...] It refers to an unknown or unsupported kind of
    // resource. In this case, the Reason must be set to `InvalidKind` [...] If ALL
    // CACertificateRefs are invalid, the implementation MUST also ensure the `Accepted`
    // Condition on the BackendTLSPolicy is set to `status: False`, with a Reason
    // `NoValidCACertificate`."
    let mut ca_pem = Vec::new();
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    for r in refs {
        match ca_bundle(namespace, r.group.as_str(), r.kind.as_str(), &r.name, maps) {
            Ok(pem) => {
                ca_pem.extend_from_slice(pem.as_bytes());
                if !pem.ends_with('\n') {
                    ca_pem.push(b'\n');
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    if let Some((ref_reason, _)) = problems.first() {
        let all = problems.len() == refs.len();
        return Err(TlsProblem {
            ref_reason: Some(ref_reason),
            accepted_reason: if all {
                reason::NO_VALID_CA_CERTIFICATE
            } else {
                reason::INVALID
            },
            message: problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }

    Ok(UpstreamTls {
        server_name: v.hostname.clone(),
        ca_pem,
        system_roots,
        subject_alt_names,
    })
}

/// The `ca.crt` of a caCertificateRef, checked to hold at least one certificate that
/// can serve as a trust anchor.
fn ca_bundle<'m>(
    namespace: &str,
    group: &str,
    kind: &str,
    name: &str,
    maps: &BTreeMap<ObjectRef, &'m ConfigMap>,
) -> Result<&'m str, (&'static str, String)> {
    if !group.is_empty() || kind != kind::CONFIG_MAP {
        let what = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        return Err((
            reason::INVALID_KIND,
            format!(
                "caCertificateRef {name:?} refers to a {what}; only core ConfigMaps are supported"
            ),
        ));
    }
    let invalid = |why: String| (reason::INVALID_CA_CERTIFICATE_REF, why);
    let map = maps
        .get(&ObjectRef::new(namespace, name))
        .ok_or_else(|| invalid(format!("ConfigMap {namespace}/{name} not found")))?;
    let pem = map
        .data
        .as_ref()
        .and_then(|d| d.get(names::CA_CERTIFICATE_KEY))
        .ok_or_else(|| {
            invalid(format!(
                "ConfigMap {namespace}/{name} has no key {:?}",
                names::CA_CERTIFICATE_KEY
            ))
        })?;
    check_ca_bundle(pem.as_bytes())
        .map_err(|why| invalid(format!("ConfigMap {namespace}/{name}: {why}")))?;
    Ok(pem)
}

/// Whether a PEM bundle holds at least one certificate and every one parses as a trust
/// anchor (what the proxy will load).
pub(crate) fn check_ca_bundle(pem: &[u8]) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert =
            cert.map_err(|e| format!("{} is not valid PEM: {e}", names::CA_CERTIFICATE_KEY))?;
        store.add(cert).map_err(|e| {
            format!(
                "{} holds an unusable certificate: {e}",
                names::CA_CERTIFICATE_KEY
            )
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(format!(
            "{} holds no PEM certificate",
            names::CA_CERTIFICATE_KEY
        ));
    }
    Ok(())
}

/// The status of every policy that applies to a backend of an attached route: one
/// ancestor per Gateway those routes are attached to.
pub(crate) fn statuses(
    index: &Index<'_>,
    routes: &[(std::sync::Arc<CompiledRoute>, Vec<Attachment>)],
) -> BTreeMap<ObjectRef, PolicyStatus> {
    // policy -> the Gateways whose routes use a Service port it names.
    let mut ancestors: BTreeMap<ObjectRef, BTreeSet<ObjectRef>> = BTreeMap::new();
    for (route, attachments) in routes {
        if attachments.is_empty() {
            continue;
        }
        let mut used: Vec<ClusterRef> = route.clusters.clone();
        used.extend(
            route
                .backend_errors
                .iter()
                .filter_map(BackendError::tls_cluster),
        );
        for cluster in &used {
            let port_name = index.service_port_name(cluster);
            for policy in index.backend_tls.naming(&cluster.service, &port_name) {
                ancestors
                    .entry(policy.clone())
                    .or_default()
                    .extend(attachments.iter().map(|a| a.gateway.clone()));
            }
        }
    }

    let mut out = BTreeMap::new();
    for (key, gateways) in ancestors {
        let Some(resolved) = index.backend_tls.policies.get(&key) else {
            continue;
        };
        let conditions = conditions(resolved);
        let ancestors = gateways
            .into_iter()
            .map(|gw| PolicyAncestorStatus {
                ancestor_ref: ParentReference {
                    group: Some(names::GATEWAY_API_GROUP.to_owned()),
                    kind: Some(kind::GATEWAY.to_owned()),
                    namespace: Some(gw.namespace),
                    name: gw.name,
                    section_name: None,
                    port: None,
                },
                controller_name: index.options.controller_name.clone(),
                conditions: conditions.clone(),
            })
            .collect();
        out.insert(key, PolicyStatus { ancestors });
    }
    out
}

fn conditions(resolved: &Resolved<'_>) -> Vec<Condition> {
    let generation = resolved.policy.metadata.generation;
    let accepted = match (&resolved.validation, resolved.conflicted) {
        (_, true) => Condition::new(
            condition::ACCEPTED,
            false,
            reason::CONFLICTED,
            "an older BackendTLSPolicy (or one first by namespace/name) targets the same Service and sectionName",
            generation,
        ),
        (Err(p), false) => Condition::new(
            condition::ACCEPTED,
            false,
            p.accepted_reason,
            p.message.clone(),
            generation,
        ),
        (Ok(_), false) => Condition::new(
            condition::ACCEPTED,
            true,
            reason::ACCEPTED,
            "Policy accepted",
            generation,
        ),
    };
    let resolved_refs = match &resolved.validation {
        Err(TlsProblem {
            ref_reason: Some(r),
            message,
            ..
        }) => Condition::new(
            condition::RESOLVED_REFS,
            false,
            r,
            message.clone(),
            generation,
        ),
        _ => Condition::new(
            condition::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "References resolved",
            generation,
        ),
    };
    vec![accepted, resolved_refs]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::gateway::backendtlspolicies::{
        BackendTlsPolicyTargetRefs, BackendTlsPolicyValidationCaCertificateRefs,
    };

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn mk_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
        let mut m = ConfigMap::default();
        m.metadata.namespace = Some("ns".into());
        m.metadata.name = Some(name.into());
        m.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        m
    }

    fn mk_policy(
        name: &str,
        created: &str,
        service: &str,
        section: Option<&str>,
    ) -> BackendTlsPolicy {
        let mut p = BackendTlsPolicy::default();
        p.metadata.namespace = Some("ns".into());
        p.metadata.name = Some(name.into());
        p.metadata.generation = Some(2);
        p.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        p.spec.target_refs = vec![BackendTlsPolicyTargetRefs {
            group: String::new(),
            kind: "Service".into(),
            name: service.into(),
            section_name: section.map(str::to_owned),
        }];
        p.spec.validation.hostname = format!("{name}.example.com");
        p.spec.validation.ca_certificate_refs =
            Some(vec![BackendTlsPolicyValidationCaCertificateRefs {
                group: String::new(),
                kind: "ConfigMap".into(),
                name: "ca".into(),
            }]);
        p
    }

    fn svc() -> ObjectRef {
        ObjectRef::new("ns", "svc")
    }

    #[test]
    fn oldest_then_first_by_name_wins_and_a_port_beats_the_whole_service() {
        let maps = [mk_map("ca", &[("ca.crt", &ca_pem())])];
        let policies = [
            mk_policy("b-old", "2025-01-01T00:00:00Z", "svc", None),
            mk_policy("a-young", "2025-02-01T00:00:00Z", "svc", None),
            mk_policy("c-port", "2025-03-01T00:00:00Z", "svc", Some("https")),
            mk_policy("a-same", "2025-01-01T00:00:00Z", "other", None),
            mk_policy("b-same", "2025-01-01T00:00:00Z", "other", None),
        ];
        let all = BackendTlsPolicies::new(&policies, &maps);
        let name = |tls: Option<UpstreamTls>| tls.unwrap().server_name;
        assert_eq!(
            name(all.lookup(&svc(), 80, "http").unwrap()),
            "b-old.example.com"
        );
        assert_eq!(
            name(all.lookup(&svc(), 443, "https").unwrap()),
            "c-port.example.com"
        );
        let other = ObjectRef::new("ns", "other");
        assert_eq!(
            name(all.lookup(&other, 80, "").unwrap()),
            "a-same.example.com"
        );
        assert_eq!(
            all.lookup(&ObjectRef::new("ns", "plain"), 80, "").unwrap(),
            None
        );

        let conflicted = |n: &str| all.policies[&ObjectRef::new("ns", n)].conflicted;
        assert!(!conflicted("b-old") && conflicted("a-young"));
        assert!(!conflicted("c-port"));
        assert!(!conflicted("a-same") && conflicted("b-same"));
        // Statuses name every policy on a port, the winner first.
        let naming: Vec<_> = all
            .naming(&svc(), "https")
            .map(|k| k.name.clone())
            .collect();
        assert_eq!(naming, ["c-port", "b-old", "a-young"]);
    }

    #[test]
    fn invalid_references_make_the_backend_unusable() {
        let good = ca_pem();
        let maps = [
            mk_map("ca", &[("ca.crt", &good)]),
            mk_map("empty", &[]),
            mk_map("garbage", &[("ca.crt", "not a certificate")]),
        ];
        let with_refs = |refs: &[(&str, &str)]| {
            let mut p = mk_policy("p", "2025-01-01T00:00:00Z", "svc", None);
            p.spec.validation.ca_certificate_refs = Some(
                refs.iter()
                    .map(|(kind, name)| BackendTlsPolicyValidationCaCertificateRefs {
                        group: String::new(),
                        kind: (*kind).to_owned(),
                        name: (*name).to_owned(),
                    })
                    .collect(),
            );
            p
        };
        let problem = |p: BackendTlsPolicy| {
            let policies = [p];
            let all = BackendTlsPolicies::new(&policies, &maps);
            let r = &all.policies[&ObjectRef::new("ns", "p")];
            assert!(all.lookup(&svc(), 443, "").is_err());
            r.validation.clone().unwrap_err()
        };
        for (refs, ref_reason, accepted) in [
            (
                vec![("ConfigMap", "missing")],
                reason::INVALID_CA_CERTIFICATE_REF,
                reason::NO_VALID_CA_CERTIFICATE,
            ),
            (
                vec![("ConfigMap", "empty")],
                reason::INVALID_CA_CERTIFICATE_REF,
                reason::NO_VALID_CA_CERTIFICATE,
            ),
            (
                vec![("ConfigMap", "garbage")],
                reason::INVALID_CA_CERTIFICATE_REF,
                reason::NO_VALID_CA_CERTIFICATE,
            ),
            (
                vec![("Secret", "ca")],
                reason::INVALID_KIND,
                reason::NO_VALID_CA_CERTIFICATE,
            ),
            (
                vec![("ConfigMap", "ca"), ("ConfigMap", "missing")],
                reason::INVALID_CA_CERTIFICATE_REF,
                reason::INVALID,
            ),
        ] {
            let p = problem(with_refs(&refs));
            assert_eq!(
                (p.ref_reason, p.accepted_reason),
                (Some(ref_reason), accepted),
                "{refs:?}"
            );
        }

        let mut unknown = mk_policy("p", "2025-01-01T00:00:00Z", "svc", None);
        unknown.spec.validation.ca_certificate_refs = None;
        unknown.spec.validation.well_known_ca_certificates = Some("Mine".into());
        let p = problem(unknown);
        assert_eq!((p.ref_reason, p.accepted_reason), (None, reason::INVALID));
    }

    #[test]
    fn system_roots_and_sans() {
        let mut p = mk_policy("p", "2025-01-01T00:00:00Z", "svc", None);
        p.spec.validation.ca_certificate_refs = None;
        p.spec.validation.well_known_ca_certificates = Some("System".into());
        p.spec.validation.subject_alt_names = Some(vec![
            serde_json::from_value(
                serde_json::json!({"type": "Hostname", "hostname": "a.example.com"}),
            )
            .unwrap(),
            serde_json::from_value(serde_json::json!({"type": "URI", "uri": "spiffe://a/b"}))
                .unwrap(),
        ]);
        let policies = [p];
        let all = BackendTlsPolicies::new(&policies, &[]);
        let tls = all.lookup(&svc(), 443, "").unwrap().unwrap();
        assert!(tls.system_roots && tls.ca_pem.is_empty());
        assert_eq!(
            tls.subject_alt_names,
            vec![
                SubjectAltName {
                    kind: Some(subject_alt_name::Kind::Hostname("a.example.com".into()))
                },
                SubjectAltName {
                    kind: Some(subject_alt_name::Kind::Uri("spiffe://a/b".into()))
                },
            ]
        );
    }
}
