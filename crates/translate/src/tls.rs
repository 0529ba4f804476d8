//! TLS termination on HTTPS listeners: certificateRefs resolved to Secrets and checked.
//!
//! ```text
//! Gateway listener (protocol HTTPS, tls.mode Terminate)
//!   └── tls.certificateRefs[] ─> core Secret (same namespace, or another one with a
//!        │                       ReferenceGrant from Gateway to Secret)
//!        │                       type kubernetes.io/tls, keys tls.crt + tls.key
//!        └─> ListenerTls
//!            ├── certificates[]  PEM chain + key, parsed and checked to match
//!            └── problem         RefNotPermitted / InvalidCertificateRef (ResolvedRefs)
//! ```
//!
//! Gateway `spec.tls.frontend` (client-certificate validation) applies per port: the
//! `perPort` entry for the listener's port, else `default`. Its caCertificateRefs
//! resolve to ConfigMaps (`ca.crt`) into [`ClientValidation`] on the listener's
//! TlsTermination; a reference that cannot be used is a [`CaProblem`].
//!
//! A listener with a problem keeps its Accepted condition and its attached routes but is
//! not programmed: it gets no virtual host, and the other listeners of its Gateway are
//! unaffected. The data-plane side is applied after the config is built ([`apply`]),
//! the status side after the Gateway status is rendered ([`patch_listener_status`]).
//!
//! Only parsing happens here: rustls' key provider loads the key and compares its public
//! key with the leaf certificate's, without any I/O.

use std::collections::BTreeMap;

use portico_api::config::v1::{Certificate, ClientValidation, Config, TlsTermination};
use portico_api::gateway::gateways::{
    Gateway, GatewayListenersTls, GatewayListenersTlsMode, GatewayTlsFrontendDefaultValidationMode,
    GatewayTlsFrontendPerPortTlsValidationMode,
};
use portico_api::k8s::{ConfigMap, Secret};
use portico_api::names::{self, condition, kind, reason};
use prost::Message;
use rustls::crypto::ring;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::gateway::GatewayPlan;
use crate::index::{Index, object_ref};
use crate::listener::Origin;
use crate::status::{Condition, GatewayStatus, ObjectRef};

/// The Secret type a certificateRef must point at, and its two keys.
pub(crate) const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// The protocol whose listeners terminate TLS and route HTTP.
pub(crate) const HTTPS: &str = "HTTPS";

/// What a Terminate listener's certificateRefs resolved to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ListenerTls {
    pub(crate) certificates: Vec<Certificate>,
    /// Set when any reference could not be used; the listener is then not programmed.
    pub(crate) problem: Option<TlsProblem>,
    /// Client certificates asked for on the listener's port (Gateway
    /// `spec.tls.frontend`), with the CAs that resolved.
    pub(crate) client_validation: Option<ClientValidation>,
    /// Set when a caCertificateRef of that validation could not be used.
    pub(crate) ca_problem: Option<CaProblem>,
}

/// A caCertificateRef of `spec.tls.frontend` that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CaProblem {
    /// The ResolvedRefs reason: RefNotPermitted, InvalidCACertificateKind or
    /// InvalidCACertificateRef.
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// No reference resolved: the listener is not accepted (NoValidCACertificate).
    pub(crate) none_valid: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TlsProblem {
    /// RefNotPermitted or InvalidCertificateRef.
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// Secrets by namespace/name (the first one listed wins on duplicates).
pub(crate) type Secrets<'a> = BTreeMap<ObjectRef, &'a Secret>;

pub(crate) fn index_secrets(secrets: &[Secret]) -> Secrets<'_> {
    let mut map = BTreeMap::new();
    for s in secrets {
        map.entry(object_ref(&s.metadata)).or_insert(s);
    }
    map
}

/// ConfigMaps by namespace/name (the first one listed wins on duplicates).
pub(crate) type ConfigMaps<'a> = BTreeMap<ObjectRef, &'a ConfigMap>;

pub(crate) fn index_config_maps(maps: &[ConfigMap]) -> ConfigMaps<'_> {
    let mut map = BTreeMap::new();
    for m in maps {
        map.entry(object_ref(&m.metadata)).or_insert(m);
    }
    map
}

/// Resolves the certificates of every terminating listener a Gateway declares itself,
/// keyed by the virtual host name the config gives it (`"<ns>/<gateway>/<listener>"`).
/// ListenerSet listeners do not terminate TLS yet.
pub(crate) fn resolve_all(
    index: &Index<'_>,
    secrets: &Secrets<'_>,
    config_maps: &ConfigMaps<'_>,
    plans: &BTreeMap<ObjectRef, GatewayPlan<'_>>,
) -> BTreeMap<String, (ObjectRef, String, ListenerTls)> {
    let mut out = BTreeMap::new();
    for (key, plan) in plans {
        let Some(gateway) = index.gateways.get(key) else {
            continue;
        };
        for listener in plan.listeners_of(&Origin::Gateway) {
            let Some(spec) = gateway
                .spec
                .listeners
                .iter()
                .find(|s| s.name == listener.section_name)
            else {
                continue;
            };
            if !terminates(&spec.protocol, spec.tls.as_ref()) {
                continue;
            }
            let mut tls = resolve(index, secrets, key, spec.tls.as_ref());
            if let Some(frontend) = FrontendValidation::for_port(gateway, spec.port) {
                let (validation, problem) = frontend.resolve(index, config_maps, key);
                tls.client_validation = validation;
                tls.ca_problem = problem;
            }
            out.insert(
                format!("{key}/{}", listener.name),
                (key.clone(), listener.section_name.clone(), tls),
            );
        }
    }
    out
}

/// Whether a listener terminates TLS: HTTPS with `tls.mode` Terminate (the default).
/// Passthrough on HTTPS is not something Portico serves (the CRD forbids it).
pub(crate) fn terminates(protocol: &str, tls: Option<&GatewayListenersTls>) -> bool {
    protocol == HTTPS
        && tls
            .and_then(|t| t.mode.as_ref())
            .is_none_or(|m| *m == GatewayListenersTlsMode::Terminate)
}

/// Resolves and checks every certificateRef of a Gateway listener.
///
/// Gateway API (GatewayTLSConfig certificateRefs): "References to a resource in different
/// namespace are invalid UNLESS there is a ReferenceGrant in the target namespace that
/// allows the certificate to be attached. If a ReferenceGrant does not allow this
/// reference, the "ResolvedRefs" condition MUST be set to False for this listener with
/// the "RefNotPermitted" reason." (ListenerReasonInvalidCertificateRef): "A CertificateRef
/// is considered invalid when it refers to a nonexistent or unsupported resource or kind,
/// or when the data within that resource is malformed. This reason must be used only when
/// the reference is allowed [...]. If the reference is not allowed, the reason
/// RefNotPermitted must be used instead."
pub(crate) fn resolve(
    index: &Index<'_>,
    secrets: &Secrets<'_>,
    gateway: &ObjectRef,
    tls: Option<&GatewayListenersTls>,
) -> ListenerTls {
    let refs = tls
        .and_then(|t| t.certificate_refs.as_deref())
        .unwrap_or_default();
    if refs.is_empty() {
        return ListenerTls {
            certificates: Vec::new(),
            problem: Some(TlsProblem {
                reason: reason::INVALID_CERTIFICATE_REF,
                message: "an HTTPS listener needs at least one certificateRef".to_owned(),
            }),
            ..Default::default()
        };
    }
    let mut certificates = Vec::new();
    let mut not_permitted = Vec::new();
    let mut invalid = Vec::new();
    for r in refs {
        let group = r.group.as_deref().unwrap_or_default();
        let ref_kind = r.kind.as_deref().unwrap_or(kind::SECRET);
        let namespace = r
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(&gateway.namespace);
        let key = ObjectRef::new(namespace, r.name.clone());
        if !group.is_empty() || ref_kind != kind::SECRET {
            invalid.push(format!(
                "{key}: {} is not a supported kind, only core Secret",
                crate::gateway::kind_group(ref_kind, group)
            ));
            continue;
        }
        if namespace != gateway.namespace
            && !index.reference_granted(
                (names::GATEWAY_API_GROUP, kind::GATEWAY, &gateway.namespace),
                ("", kind::SECRET, namespace, &r.name),
            )
        {
            not_permitted.push(format!(
                "Secret {key}: no ReferenceGrant in namespace {namespace:?} allows Gateways of namespace {:?} to refer to it",
                gateway.namespace
            ));
            continue;
        }
        match secrets.get(&key) {
            None => invalid.push(format!("Secret {key} does not exist")),
            Some(secret) => match certificate(&key, secret).and_then(|cert| {
                not_expired(&cert.cert_chain_pem, index.options.now).map(|()| cert)
            }) {
                Ok(cert) => certificates.push(cert),
                Err(why) => invalid.push(format!("Secret {key}: {why}")),
            },
        }
    }
    let problem = if !not_permitted.is_empty() {
        Some(TlsProblem {
            reason: reason::REF_NOT_PERMITTED,
            message: not_permitted.join("; "),
        })
    } else if !invalid.is_empty() {
        Some(TlsProblem {
            reason: reason::INVALID_CERTIFICATE_REF,
            message: invalid.join("; "),
        })
    } else {
        None
    };
    ListenerTls {
        certificates,
        problem,
        ..Default::default()
    }
}

/// One caCertificateRef of `spec.tls.frontend` (the default and perPort refs are two
/// generated types of the same shape).
#[derive(Debug)]
struct CaRef<'a> {
    group: &'a str,
    kind: &'a str,
    name: &'a str,
    namespace: Option<&'a str>,
}

/// The frontend validation that applies to one listener port.
#[derive(Debug)]
struct FrontendValidation<'a> {
    refs: Vec<CaRef<'a>>,
    allow_insecure_fallback: bool,
}

impl<'a> FrontendValidation<'a> {
    /// Gateway API (FrontendTLSConfig): "Default specifies the default client
    /// certificate validation configuration for all Listeners handling HTTPS traffic,
    /// unless a per-port configuration is defined." and (perPort) "PerPort specifies
    /// tls configuration assigned per port. Per port configuration is optional. Once
    /// set this configuration overrides the default configuration for all Listeners
    /// handling HTTPS traffic that match this port."
    fn for_port(gateway: &'a Gateway, port: i32) -> Option<Self> {
        let frontend = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
        let per_port = frontend
            .per_port
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.port == port);
        match per_port {
            Some(p) => p.tls.validation.as_ref().map(|v| Self {
                refs: v
                    .ca_certificate_refs
                    .iter()
                    .map(|r| CaRef {
                        group: &r.group,
                        kind: &r.kind,
                        name: &r.name,
                        namespace: r.namespace.as_deref(),
                    })
                    .collect(),
                allow_insecure_fallback: matches!(
                    v.mode,
                    Some(GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback)
                ),
            }),
            None => frontend.default.validation.as_ref().map(|v| Self {
                refs: v
                    .ca_certificate_refs
                    .iter()
                    .map(|r| CaRef {
                        group: &r.group,
                        kind: &r.kind,
                        name: &r.name,
                        namespace: r.namespace.as_deref(),
                    })
                    .collect(),
                allow_insecure_fallback: matches!(
                    v.mode,
                    Some(GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback)
                ),
            }),
        }
    }

    /// Resolves the caCertificateRefs to CA bundles.
    ///
    /// Gateway API (FrontendTLSValidation caCertificateRefs): "References to a resource
    /// in a different namespace are invalid UNLESS there is a ReferenceGrant in the
    /// target namespace that allows the certificate to be attached. If a ReferenceGrant
    /// does not allow this reference, the "ResolvedRefs" condition MUST be set to False
    /// for this listener with the "RefNotPermitted" reason." Core support is "A single
    /// reference to a Kubernetes ConfigMap, with the CA certificate in a key named
    /// `ca.crt`." (ListenerConditionReason): "InvalidCACertificateRef" for a reference
    /// that is nonexistent or malformed, "InvalidCACertificateKind" for an unsupported
    /// kind, and Accepted False "NoValidCACertificate" when none of the references is
    /// valid.
    fn resolve(
        &self,
        index: &Index<'_>,
        config_maps: &ConfigMaps<'_>,
        gateway: &ObjectRef,
    ) -> (Option<ClientValidation>, Option<CaProblem>) {
        let mut pems = Vec::new();
        let (mut not_permitted, mut bad_kind, mut invalid) = (Vec::new(), Vec::new(), Vec::new());
        for r in &self.refs {
            let namespace = r
                .namespace
                .filter(|ns| !ns.is_empty())
                .unwrap_or(&gateway.namespace);
            let key = ObjectRef::new(namespace, r.name.to_owned());
            if !r.group.is_empty() || r.kind != kind::CONFIG_MAP {
                bad_kind.push(format!(
                    "{key}: {} is not a supported kind, only core ConfigMap",
                    crate::gateway::kind_group(r.kind, r.group)
                ));
                continue;
            }
            if namespace != gateway.namespace
                && !index.reference_granted(
                    (names::GATEWAY_API_GROUP, kind::GATEWAY, &gateway.namespace),
                    ("", kind::CONFIG_MAP, namespace, r.name),
                )
            {
                not_permitted.push(format!(
                    "ConfigMap {key}: no ReferenceGrant in namespace {namespace:?} allows Gateways of namespace {:?} to refer to it",
                    gateway.namespace
                ));
                continue;
            }
            match config_maps.get(&key).map(|m| ca_bundle(m)) {
                None => invalid.push(format!("ConfigMap {key} does not exist")),
                Some(Err(why)) => invalid.push(format!("ConfigMap {key}: {why}")),
                Some(Ok(pem)) => pems.push(pem),
            }
        }
        let problem = [
            (reason::REF_NOT_PERMITTED, not_permitted),
            (reason::INVALID_CA_CERTIFICATE_KIND, bad_kind),
            (reason::INVALID_CA_CERTIFICATE_REF, invalid),
        ]
        .into_iter()
        .find(|(_, messages)| !messages.is_empty())
        .map(|(reason, messages)| CaProblem {
            reason,
            message: messages.join("; "),
            none_valid: pems.is_empty(),
        });
        let validation = (!pems.is_empty()).then_some(ClientValidation {
            ca_certificates_pem: pems,
            allow_insecure_fallback: self.allow_insecure_fallback,
        });
        (validation, problem)
    }
}

/// The `ca.crt` of a ConfigMap, checked to hold at least one PEM certificate.
fn ca_bundle(map: &ConfigMap) -> Result<Vec<u8>, String> {
    let key = names::CA_CERTIFICATE_KEY;
    let pem = map
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.clone().into_bytes())
        .or_else(|| {
            map.binary_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
        })
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("no {key:?} key"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{key} holds no CERTIFICATE block"));
    }
    Ok(pem)
}

/// The certificate a `kubernetes.io/tls` Secret holds, checked: the chain parses, the key
/// parses, and the key belongs to the leaf certificate.
fn certificate(key: &ObjectRef, secret: &Secret) -> Result<Certificate, String> {
    let secret_type = secret.type_.as_deref().unwrap_or_default();
    if secret_type != TLS_SECRET_TYPE {
        return Err(format!(
            "type is {secret_type:?}, a certificate Secret has type {TLS_SECRET_TYPE:?}"
        ));
    }
    let data = |name: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(name))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(name))
                    .map(|s| s.clone().into_bytes())
            })
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("no {name:?} key"))
    };
    let cert_chain_pem = data(TLS_CRT)?;
    let private_key_pem = data(TLS_KEY)?;
    check_pair(&cert_chain_pem, &private_key_pem)?;
    Ok(Certificate {
        name: key.to_string(),
        cert_chain_pem,
        private_key_pem,
    })
}

/// Whether a PEM chain and a PEM key make a certificate a TLS server can use.
pub(crate) fn check_pair(cert_chain_pem: &[u8], private_key_pem: &[u8]) -> Result<(), String> {
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{TLS_CRT} is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{TLS_CRT} holds no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(private_key_pem)
        .map_err(|e| format!("{TLS_KEY} holds no PEM private key: {e}"))?;
    CertifiedKey::from_der(chain, key, &ring::default_provider())
        .map_err(|e| format!("{TLS_CRT} and {TLS_KEY} do not make a certificate: {e}"))?;
    Ok(())
}

/// Fails when the leaf certificate of a PEM chain expired at or before `now` (seconds
/// since the Unix epoch; `None`: no clock was given, nothing to check). A proxy would
/// still load an expired certificate, but every client refuses it: the listener is not
/// programmed and says why, as for any other certificate it cannot serve.
/// (ListenerReasonInvalidCertificateRef: "[...] or when the data within that resource is
/// malformed"; cert-sync reports the same certificate as expired on the Gateway.)
fn not_expired(cert_chain_pem: &[u8], now: Option<i64>) -> Result<(), String> {
    let Some(now) = now else {
        return Ok(());
    };
    let leaf = CertificateDer::pem_slice_iter(cert_chain_pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| format!("{TLS_CRT} holds no CERTIFICATE block"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("{TLS_CRT}: the leaf certificate does not parse: {e}"))?;
    let not_after = cert.validity().not_after;
    if not_after.timestamp() <= now {
        return Err(format!(
            "the certificate expired ({TLS_CRT} leaf notAfter {})",
            not_after
                .to_rfc2822()
                .unwrap_or_else(|_| format!("{}s since the epoch", not_after.timestamp()))
        ));
    }
    Ok(())
}

/// Puts the TLS side of the planned listeners into a built config: the certificates on
/// the virtual hosts of terminating listeners, `PROTOCOL_HTTPS` on their sockets, and no
/// virtual host for a listener whose certificates could not be resolved. `tls` is keyed
/// by virtual host name (`"<ns>/<gateway>/<listener>"`).
pub(crate) fn apply(config: &mut Config, tls: &BTreeMap<String, (ObjectRef, String, ListenerTls)>) {
    use portico_api::config::v1::Protocol;
    for listener in &mut config.listeners {
        listener.virtual_hosts.retain(|vh| {
            tls.get(&vh.name).is_none_or(|(_, _, t)| {
                t.problem.is_none()
                    && !t.certificates.is_empty()
                    && t.ca_problem.as_ref().is_none_or(|p| !p.none_valid)
            })
        });
        let mut https = false;
        for vhost in &mut listener.virtual_hosts {
            if let Some((_, _, t)) = tls.get(&vhost.name) {
                https = true;
                vhost.tls = Some(TlsTermination {
                    certificates: t.certificates.clone(),
                    client_validation: t.client_validation.clone(),
                });
            }
        }
        if https {
            listener.protocol = Protocol::Https as i32;
        }
    }
    config.listeners.retain(|l| !l.virtual_hosts.is_empty());
    // The version covers the certificates: a changed Secret is a new config.
    config.version = String::new();
    let digest = Sha256::digest(config.encode_to_vec());
    config.version = digest.iter().map(|b| format!("{b:02x}")).collect();
}

/// Reports a TLS problem on a listener's status: ResolvedRefs False with the reason, and
/// Programmed False (the listener has no virtual host).
///
/// Gateway API (ListenerConditionResolvedRefs): "This condition indicates whether the
/// controller was able to resolve all the object references for the Listener. [...]
/// Possible reasons for this condition to be False are: "InvalidCertificateRef",
/// "InvalidRouteKinds", "RefNotPermitted"".
pub(crate) fn patch_listener_status(
    status: &mut GatewayStatus,
    section_name: &str,
    problem: &TlsProblem,
    generation: Option<i64>,
) {
    let Some(listener) = status.listeners.iter_mut().find(|l| l.name == section_name) else {
        return;
    };
    for c in &mut listener.conditions {
        if c.type_ == condition::RESOLVED_REFS && c.status == crate::ConditionStatus::True {
            *c = Condition::new(
                condition::RESOLVED_REFS,
                false,
                problem.reason,
                problem.message.clone(),
                generation,
            );
        } else if c.type_ == condition::PROGRAMMED && c.status == crate::ConditionStatus::True {
            *c = Condition::new(
                condition::PROGRAMMED,
                false,
                reason::INVALID,
                format!("certificates not resolved: {}", problem.message),
                generation,
            );
        }
    }
}

/// Reports a caCertificateRef problem of `spec.tls.frontend` on a listener's status:
/// ResolvedRefs False with the reason and, when no CA resolved, Accepted False
/// NoValidCACertificate and Programmed False (the listener has no virtual host: a
/// client cannot complete a handshake with it).
///
/// Gateway API (ListenerConditionReason NoValidCACertificate): "This reason is used
/// with the "Accepted" condition when the listener's client certificate validation
/// configuration has no valid CA certificate."
pub(crate) fn patch_ca_status(
    status: &mut GatewayStatus,
    section_name: &str,
    problem: &CaProblem,
    generation: Option<i64>,
) {
    let Some(listener) = status.listeners.iter_mut().find(|l| l.name == section_name) else {
        return;
    };
    for c in &mut listener.conditions {
        let is_true = c.status == crate::ConditionStatus::True;
        if c.type_ == condition::RESOLVED_REFS && is_true {
            *c = Condition::new(
                condition::RESOLVED_REFS,
                false,
                problem.reason,
                problem.message.clone(),
                generation,
            );
        } else if c.type_ == condition::ACCEPTED && is_true && problem.none_valid {
            *c = Condition::new(
                condition::ACCEPTED,
                false,
                reason::NO_VALID_CA_CERTIFICATE,
                format!("no valid CA certificate: {}", problem.message),
                generation,
            );
        } else if c.type_ == condition::PROGRAMMED && is_true && problem.none_valid {
            *c = Condition::new(
                condition::PROGRAMMED,
                false,
                reason::INVALID,
                format!(
                    "client certificate validation not resolved: {}",
                    problem.message
                ),
                generation,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn matching_pairs_pass() {
        let (cert, key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(check_pair(cert.as_bytes(), key.as_bytes()), Ok(()));
    }

    /// A certificate for `host` valid until `not_after` (Unix seconds), and its key.
    fn pair_until(host: &str, not_after: i64) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1)
            + std::time::Duration::from_secs(u64::try_from(not_after).unwrap());
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The ResolvedRefs and Programmed conditions of listener `https` of Gateway
    /// `apps/web` (HTTPS, certificateRefs `web-cert`) serving `(cert, key)`, translated
    /// with `now`, and whether the config has a virtual host for it.
    fn translate_at(
        (cert, key): &(String, String),
        now: Option<i64>,
    ) -> (Condition, Condition, bool) {
        use portico_api::k8s_openapi::ByteString;
        let class: portico_api::gateway::GatewayClass = serde_yaml_ng::from_str(
            "metadata: {name: portico}\nspec: {controllerName: portico.dev/gateway-controller}",
        )
        .unwrap();
        let gateway: Gateway = serde_yaml_ng::from_str(
            "metadata: {name: web, namespace: apps}
spec:
  gatewayClassName: portico
  listeners:
  - {name: https, port: 443, protocol: HTTPS, hostname: web.example.com,
     tls: {certificateRefs: [{name: web-cert}]}}",
        )
        .unwrap();
        let secret = Secret {
            metadata: portico_api::k8s::ObjectMeta {
                namespace: Some("apps".into()),
                name: Some("web-cert".into()),
                ..Default::default()
            },
            type_: Some(TLS_SECRET_TYPE.into()),
            data: Some(BTreeMap::from([
                (TLS_CRT.to_owned(), ByteString(cert.clone().into_bytes())),
                (TLS_KEY.to_owned(), ByteString(key.clone().into_bytes())),
            ])),
            ..Default::default()
        };
        let inputs = crate::Inputs {
            gateway_classes: vec![class],
            gateways: vec![gateway],
            secrets: vec![secret],
            ..Default::default()
        };
        let options = crate::Options {
            now,
            ..Default::default()
        };
        let output = crate::translate(&inputs, &options);
        let status = &output.statuses.gateways[&ObjectRef::new("apps", "web")];
        let listener = status.listeners.iter().find(|l| l.name == "https").unwrap();
        let find = |type_: &str| {
            listener
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .unwrap()
                .clone()
        };
        let served = output
            .config
            .listeners
            .iter()
            .flat_map(|l| &l.virtual_hosts)
            .any(|vh| vh.name == "apps/web/https");
        (
            find(condition::RESOLVED_REFS),
            find(condition::PROGRAMMED),
            served,
        )
    }

    #[test]
    fn an_expired_certificate_is_an_invalid_certificate_ref() {
        // Any fixed instant: the translator reads no clock, the caller says when it is.
        let now = 1_800_000_000;
        let expired = pair_until("web.example.com", now - 3600);
        let (resolved, programmed, served) = translate_at(&expired, Some(now));
        assert_eq!(resolved.status, crate::ConditionStatus::False);
        assert_eq!(resolved.reason, reason::INVALID_CERTIFICATE_REF);
        assert!(
            resolved
                .message
                .contains("Secret apps/web-cert: the certificate expired"),
            "{resolved:?}"
        );
        assert_eq!(programmed.status, crate::ConditionStatus::False);
        assert!(programmed.message.contains("expired"), "{programmed:?}");
        assert!(
            !served,
            "an expired certificate's listener has no virtual host"
        );

        // The same certificate an hour before it expires is served...
        let (resolved, programmed, served) = translate_at(&expired, Some(now - 7200));
        assert_eq!(
            resolved.status,
            crate::ConditionStatus::True,
            "{resolved:?}"
        );
        assert_eq!(
            programmed.status,
            crate::ConditionStatus::True,
            "{programmed:?}"
        );
        assert!(served);
        // ...and without a clock nothing is judged on time (golden tests).
        let (resolved, _, served) = translate_at(&expired, None);
        assert_eq!(
            resolved.status,
            crate::ConditionStatus::True,
            "{resolved:?}"
        );
        assert!(served);
    }

    #[test]
    fn mismatched_and_malformed_pairs_fail() {
        let (cert, _) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let err = check_pair(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(err.contains("do not make a certificate"), "{err}");
        let err = check_pair(b"not a certificate", other_key.as_bytes()).unwrap_err();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        let err = check_pair(cert.as_bytes(), b"garbage").unwrap_err();
        assert!(err.contains("no PEM private key"), "{err}");
    }
}
