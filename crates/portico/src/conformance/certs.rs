//! Generated objects: the certificates upstream's suite makes at run time, as Secrets
//! and ConfigMaps (CASES.md, "Generated objects").
//!
//! ```text
//!   CA                     ConfigMap {key: <CA certificate PEM>}; the CA's key stays here,
//!                          in memory, to sign what names it in `signed_by`
//!   self-signed TLS        Secret kubernetes.io/tls {tls.crt, tls.key}, SANs = hosts
//!   CA-signed TLS          the same, issued by the CA (server auth)
//!   CA-signed client TLS   the same, issued by the CA (client auth), no SANs
//! ```
//!
//! Hosts are DNS names, wildcards (`*.example.com`, `*`) or URIs (`spiffe://...`, which
//! become URI SANs). Secrets are written with `stringData`; the API server turns that
//! into base64 `data` (see `cluster.rs`), as a real one does.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};

use super::case::{GeneratedObject, GeneratedType, NsName};

/// The CAs generated so far, by ConfigMap, with their keys.
#[derive(Default)]
pub(crate) struct Authorities {
    cas: BTreeMap<(String, String), (CertificateParams, KeyPair)>,
}

impl std::fmt::Debug for Authorities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorities")
            .field("cas", &self.cas.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Authorities {
    /// The object to create for `spec`.
    pub(crate) fn generate(&mut self, spec: &GeneratedObject) -> Result<Value, String> {
        spec.check()?;
        let what = format!("generated {}/{}", spec.namespace, spec.name);
        let fail = |e: rcgen::Error| format!("{what}: {e}");
        match spec.type_ {
            GeneratedType::Ca => {
                let key = KeyPair::generate().map_err(fail)?;
                let mut params = CertificateParams::default();
                params
                    .distinguished_name
                    .push(DnType::CommonName, format!("{} CA", spec.name));
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                let cert = params.self_signed(&key).map_err(fail)?;
                let data_key = spec.key.clone().unwrap_or_else(|| "ca.crt".to_owned());
                self.cas
                    .insert((spec.namespace.clone(), spec.name.clone()), (params, key));
                Ok(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": spec.name, "namespace": spec.namespace},
                    "data": {data_key: cert.pem()},
                }))
            }
            GeneratedType::SelfSignedTls => {
                let key = KeyPair::generate().map_err(fail)?;
                let params = leaf(spec.hosts.as_deref().unwrap_or_default(), false)
                    .map_err(|e| format!("{what}: {e}"))?;
                let cert = params.self_signed(&key).map_err(fail)?;
                Ok(tls_secret(spec, &cert.pem(), &key.serialize_pem()))
            }
            GeneratedType::CaSignedTls | GeneratedType::CaSignedClientTls => {
                let client = spec.type_ == GeneratedType::CaSignedClientTls;
                let signer = spec
                    .signed_by
                    .as_ref()
                    .ok_or_else(|| format!("{what}: no signed_by"))?;
                let (ca_params, ca_key) = self.ca(signer).map_err(|e| format!("{what}: {e}"))?;
                let key = KeyPair::generate().map_err(fail)?;
                let params = leaf(spec.hosts.as_deref().unwrap_or_default(), client)
                    .map_err(|e| format!("{what}: {e}"))?;
                let issuer = Issuer::from_params(ca_params, ca_key);
                let cert = params.signed_by(&key, &issuer).map_err(fail)?;
                Ok(tls_secret(spec, &cert.pem(), &key.serialize_pem()))
            }
        }
    }

    fn ca(&self, signer: &NsName) -> Result<(&CertificateParams, &KeyPair), String> {
        self.cas
            .get(&(signer.namespace.clone(), signer.name.clone()))
            .map(|(p, k)| (p, k))
            .ok_or_else(|| {
                format!("signed_by {signer}: no CA ConfigMap of that name was generated before")
            })
    }
}

/// A server (or client) certificate for `hosts`.
fn leaf(hosts: &[String], client: bool) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::default();
    let common_name = hosts
        .iter()
        .find(|h| !h.contains("://"))
        .cloned()
        .unwrap_or_else(|| "gateway-conformance".to_owned());
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    for host in hosts {
        let san = if host.contains("://") {
            SanType::URI(
                host.as_str()
                    .try_into()
                    .map_err(|e| format!("host {host:?}: {e}"))?,
            )
        } else {
            SanType::DnsName(
                host.as_str()
                    .try_into()
                    .map_err(|e| format!("host {host:?}: {e}"))?,
            )
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn tls_secret(spec: &GeneratedObject, cert: &str, key: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": spec.name, "namespace": spec.namespace},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert, "tls.key": key},
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(yaml: &str) -> GeneratedObject {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn every_type_generates_its_object() {
        let mut a = Authorities::default();
        let ca = a
            .generate(&spec(
                "{kind: ConfigMap, namespace: n, name: ca, type: CA, key: ca.crt}",
            ))
            .unwrap();
        assert!(
            ca["data"]["ca.crt"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );

        let own = a
            .generate(&spec(
                "{kind: Secret, namespace: n, name: s, type: self-signed TLS, hosts: ['*', '*.org']}",
            ))
            .unwrap();
        assert_eq!(own["type"], "kubernetes.io/tls");
        assert!(
            own["stringData"]["tls.key"]
                .as_str()
                .unwrap()
                .contains("PRIVATE KEY")
        );

        let server = a
            .generate(&spec(
                "{kind: Secret, namespace: n, name: t, type: CA-signed TLS, \
                 hosts: [abc.example.com, 'spiffe://abc.example.com/test-identity'], \
                 signed_by: {namespace: n, name: ca}}",
            ))
            .unwrap();
        assert!(
            server["stringData"]["tls.crt"]
                .as_str()
                .unwrap()
                .contains("CERTIFICATE")
        );

        let client = a
            .generate(&spec(
                "{kind: Secret, namespace: n, name: c, type: CA-signed client TLS, signed_by: {namespace: n, name: ca}}",
            ))
            .unwrap();
        assert_eq!(client["metadata"]["name"], "c");
    }

    #[test]
    fn an_unknown_ca_is_an_error() {
        let err = Authorities::default()
            .generate(&spec(
                "{kind: Secret, namespace: n, name: c, type: CA-signed client TLS, signed_by: {namespace: n, name: nope}}",
            ))
            .unwrap_err();
        assert!(err.contains("signed_by n/nope"), "{err}");
    }
}
