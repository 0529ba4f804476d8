//! The Secrets that the terminating listeners of our Gateways refer to, and whether each
//! reference is permitted: what `portico-cert-sync` copies into the secrets namespace.
//!
//! ```text
//! Gateway (class ours) ─ listener (tls.mode Terminate, HTTPS or TLS)
//!   └── tls.certificateRefs[] ─> CertificateRefUse { gateway, listener, secret, permitted }
//!                                   permitted: same namespace, or a ReferenceGrant in the
//!                                   Secret's namespace from Gateways of the Gateway's
//! ```
//!
//! The rules are the translator's own (see [`crate::tls::resolve`]), so cert-sync never
//! copies a Secret that the translator would refuse as RefNotPermitted, and copies every
//! one it would look up. Refs of another kind than core Secret are left out: there is
//! nothing to copy.

use portico_api::gateway::gateways::GatewayListenersTlsMode;
use portico_api::names::{self, kind};

use crate::index::{Index, object_ref};
use crate::inputs::{Inputs, Options};
use crate::status::ObjectRef;

/// One certificateRef of one listener of one of our Gateways.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertificateRefUse {
    pub gateway: ObjectRef,
    /// The listener's `name`.
    pub listener: String,
    /// The Secret referred to (the Gateway's namespace when the ref names none).
    pub secret: ObjectRef,
    /// Whether the reference may be followed: same namespace, or allowed by a
    /// ReferenceGrant. The translator reports RefNotPermitted for the others.
    pub permitted: bool,
}

/// Every Secret certificateRef of every listener that terminates TLS on a Gateway of
/// our classes (`options.controller_name`), sorted. Only `gateway_classes`, `gateways`
/// and `reference_grants` of `inputs` are read.
///
/// Gateway API (GatewayTLSConfig certificateRefs): "References to a resource in different
/// namespace are invalid UNLESS there is a ReferenceGrant in the target namespace that
/// allows the certificate to be attached."
pub fn certificate_refs(inputs: &Inputs, options: &Options) -> Vec<CertificateRefUse> {
    let index = Index::new(inputs, options);
    let mut uses = Vec::new();
    for (key, gateway) in &index.gateways {
        if !index.is_ours(gateway) {
            continue;
        }
        for listener in &gateway.spec.listeners {
            let Some(tls) = listener.tls.as_ref() else {
                continue;
            };
            if tls
                .mode
                .as_ref()
                .is_some_and(|m| *m == GatewayListenersTlsMode::Passthrough)
            {
                continue;
            }
            for r in tls.certificate_refs.iter().flatten() {
                let group = r.group.as_deref().unwrap_or_default();
                let ref_kind = r.kind.as_deref().unwrap_or(kind::SECRET);
                if !group.is_empty() || ref_kind != kind::SECRET {
                    continue;
                }
                let namespace = r
                    .namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(&key.namespace);
                let permitted = namespace == key.namespace
                    || index.reference_granted(
                        (names::GATEWAY_API_GROUP, kind::GATEWAY, &key.namespace),
                        ("", kind::SECRET, namespace, &r.name),
                    );
                uses.push(CertificateRefUse {
                    gateway: object_ref(&gateway.metadata),
                    listener: listener.name.clone(),
                    secret: ObjectRef::new(namespace, r.name.clone()),
                    permitted,
                });
            }
        }
    }
    uses.sort();
    uses.dedup();
    uses
}

/// Whether a PEM certificate chain and a PEM private key make a certificate a TLS server
/// can use (the chain parses, the key parses and belongs to the leaf), by the same check
/// the translator applies to listener certificates. The error says what is wrong.
pub fn check_certificate(cert_chain_pem: &[u8], private_key_pem: &[u8]) -> Result<(), String> {
    crate::tls::check_pair(cert_chain_pem, private_key_pem)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::gateway::gateways::{
        Gateway, GatewayListeners, GatewayListenersTls, GatewayListenersTlsCertificateRefs,
        GatewaySpec,
    };
    use portico_api::gateway::referencegrants::{
        ReferenceGrant, ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo,
    };
    use portico_api::gateway::{GatewayClass, gatewayclasses::GatewayClassSpec};
    use portico_api::k8s::ObjectMeta;

    fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: ns.map(str::to_owned),
            name: Some(name.to_owned()),
            ..Default::default()
        }
    }

    fn mk_class(name: &str, controller: &str) -> GatewayClass {
        GatewayClass {
            metadata: meta(None, name),
            spec: GatewayClassSpec {
                controller_name: controller.to_owned(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn mk_listener(
        name: &str,
        mode: Option<GatewayListenersTlsMode>,
        refs: &[(Option<&str>, &str)],
    ) -> GatewayListeners {
        GatewayListeners {
            name: name.to_owned(),
            port: 443,
            protocol: "HTTPS".to_owned(),
            tls: Some(GatewayListenersTls {
                mode,
                certificate_refs: Some(
                    refs.iter()
                        .map(|(ns, n)| GatewayListenersTlsCertificateRefs {
                            name: (*n).to_owned(),
                            namespace: ns.map(str::to_owned),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn mk_gateway(ns: &str, name: &str, class: &str, listeners: Vec<GatewayListeners>) -> Gateway {
        Gateway {
            metadata: meta(Some(ns), name),
            spec: GatewaySpec {
                gateway_class_name: class.to_owned(),
                listeners,
                ..Default::default()
            },
            status: None,
        }
    }

    fn mk_grant(ns: &str, from_ns: &str, to_name: Option<&str>) -> ReferenceGrant {
        ReferenceGrant {
            metadata: meta(Some(ns), "allow"),
            spec: ReferenceGrantSpec {
                from: vec![ReferenceGrantFrom {
                    group: names::GATEWAY_API_GROUP.to_owned(),
                    kind: kind::GATEWAY.to_owned(),
                    namespace: from_ns.to_owned(),
                }],
                to: vec![ReferenceGrantTo {
                    group: String::new(),
                    kind: kind::SECRET.to_owned(),
                    name: to_name.map(str::to_owned),
                }],
            },
        }
    }

    fn uses(inputs: &Inputs) -> Vec<(String, String, String, bool)> {
        certificate_refs(inputs, &Options::default())
            .into_iter()
            .map(|u| {
                (
                    u.gateway.to_string(),
                    u.listener,
                    u.secret.to_string(),
                    u.permitted,
                )
            })
            .collect()
    }

    #[test]
    fn refs_of_our_terminating_listeners_with_grants() {
        let mut inputs = Inputs {
            gateway_classes: vec![
                mk_class("portico", names::CONTROLLER_NAME),
                mk_class("other", "example.com/other"),
            ],
            gateways: vec![
                mk_gateway(
                    "apps",
                    "web",
                    "portico",
                    vec![
                        mk_listener(
                            "https",
                            None,
                            &[(None, "web-cert"), (Some("certs"), "shared")],
                        ),
                        mk_listener(
                            "pass",
                            Some(GatewayListenersTlsMode::Passthrough),
                            &[(None, "ignored")],
                        ),
                    ],
                ),
                mk_gateway(
                    "apps",
                    "theirs",
                    "other",
                    vec![mk_listener("https", None, &[(None, "x")])],
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            uses(&inputs),
            vec![
                (
                    "apps/web".into(),
                    "https".into(),
                    "apps/web-cert".into(),
                    true
                ),
                (
                    "apps/web".into(),
                    "https".into(),
                    "certs/shared".into(),
                    false
                ),
            ]
        );
        // A grant for another Secret name does not help; one for this name does.
        inputs.reference_grants = vec![mk_grant("certs", "apps", Some("other"))];
        assert!(!uses(&inputs)[1].3);
        inputs.reference_grants = vec![mk_grant("certs", "apps", Some("shared"))];
        assert!(uses(&inputs)[1].3);
        // A grant from another namespace does not help either.
        inputs.reference_grants = vec![mk_grant("certs", "elsewhere", None)];
        assert!(!uses(&inputs)[1].3);
    }

    #[test]
    fn check_certificate_rejects_a_key_of_another_certificate() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".to_owned()]).unwrap();
        let cert = a.cert.pem();
        check_certificate(cert.as_bytes(), a.signing_key.serialize_pem().as_bytes()).unwrap();
        let e = check_certificate(cert.as_bytes(), b.signing_key.serialize_pem().as_bytes())
            .unwrap_err();
        assert!(e.contains("do not make a certificate"), "{e}");
        assert!(check_certificate(b"junk", b"junk").is_err());
    }
}
