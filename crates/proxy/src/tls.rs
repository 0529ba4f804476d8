//! TLS termination for HTTPS listeners: certificates chosen by SNI, swapped with the
//! config.
//!
//! ```text
//! Config listener (PROTOCOL_HTTPS)
//!   └── virtual_hosts[].tls.certificates[]  ──build──>  SniTable (one per listener)
//!                                                        ├── exact hostnames
//!                                                        ├── wildcards, longest first
//!                                                        └── "" (any host)
//! CertResolver (one per running listener, lives as long as its socket)
//!   └── ArcSwap<SniTable>   swapped by `update`: new handshakes get the new
//!                           certificates, open connections keep their session
//! ```
//!
//! A handshake picks the virtual host by SNI (exact, then the most specific wildcard,
//! then a virtual host without hostname), then, among its certificates, the first one
//! whose key can sign with a scheme the client offers (so ECDSA and RSA certificates can
//! sit side by side). No match: no certificate, and rustls aborts the handshake with an
//! alert; the listener and other connections are unaffected.
//!
//! Client certificates (Gateway `spec.tls.frontend`, mutual TLS): the listener's table
//! also carries the client verifier built from its virtual hosts' `client_validation`
//! (the CAs of the listener's port). [`ClientAuth`] reads it from the current table at
//! each handshake, so a config update changes what new handshakes ask for, as with the
//! certificates.
//!
//! The crypto provider is passed explicitly (ring), so nothing depends on a process-wide
//! default being installed.

use std::{collections::BTreeMap, fmt, sync::Arc};

use arc_swap::ArcSwap;
use portico_api::config::v1 as pb;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, ring},
    server::{
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};

/// ALPN: HTTP/2 first, HTTP/1.1 as the fallback; hyper's auto builder then serves
/// whichever the client picked (it reads the connection preface).
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The certificates of one HTTPS listener, by virtual host hostname.
#[derive(Default)]
pub(crate) struct SniTable {
    /// `(hostname, certificates)`: exact names, then wildcards (`*.suffix`) longest
    /// first, then `""`.
    hosts: Vec<(String, Vec<Arc<CertifiedKey>>)>,
    /// Verifies client certificates when the listener asks for them; `None`: it does
    /// not; `Some(Err(why))`: it must, but its CAs did not load, so every client is
    /// refused (fail closed).
    client: Option<Result<Arc<dyn ClientCertVerifier>, String>>,
}

impl fmt::Debug for SniTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniTable")
            .field(
                "hosts",
                &self
                    .hosts
                    .iter()
                    .map(|(h, c)| (h, c.len()))
                    .collect::<Vec<_>>(),
            )
            .field("client_auth", &self.client.is_some())
            .finish()
    }
}

/// Why a certificate of the config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("certificate {name:?} of virtual host {vhost:?}: {reason}")]
pub(crate) struct CertificateError {
    vhost: String,
    name: String,
    reason: String,
}

impl SniTable {
    /// The table of `listener`. A certificate that does not load is left out and
    /// reported: the translator checks certificates before they reach a config, so this
    /// only happens with a config from elsewhere, and one bad Secret must not take the
    /// listener's other virtual hosts down.
    pub(crate) fn build(
        listener: &pb::Listener,
        provider: &CryptoProvider,
    ) -> (Self, Vec<CertificateError>) {
        let mut hosts = Vec::new();
        let mut errors = Vec::new();
        for vhost in &listener.virtual_hosts {
            let Some(tls) = &vhost.tls else { continue };
            let mut certs = Vec::new();
            for cert in &tls.certificates {
                match certified_key(cert, provider) {
                    Ok(key) => certs.push(Arc::new(key)),
                    Err(reason) => errors.push(CertificateError {
                        vhost: vhost.name.clone(),
                        name: cert.name.clone(),
                        reason,
                    }),
                }
            }
            if !certs.is_empty() {
                hosts.push((vhost.hostname.to_ascii_lowercase(), certs));
            }
        }
        hosts.sort_by_key(|a| specificity(&a.0));
        // Validation is per port, so every virtual host of the listener carries the same
        // one: the first says it.
        let client = listener
            .virtual_hosts
            .iter()
            .find_map(|v| v.tls.as_ref()?.client_validation.as_ref())
            .map(|validation| {
                // An error fails closed (see `client`): the listener must check client
                // certificates and cannot, so it accepts none rather than every one.
                client_verifier(validation, provider).inspect_err(|reason| {
                    errors.push(CertificateError {
                        vhost: listener.name.clone(),
                        name: "client validation CAs".to_owned(),
                        reason: reason.clone(),
                    });
                })
            });
        (Self { hosts, client }, errors)
    }

    /// The certificates for `sni`. Gateway API (Listener hostname): "Hostnames that are
    /// prefixed with a wildcard label (`*.`) are interpreted as a suffix match. That
    /// means that a match for `*.example.com` would match both `test.example.com`, and
    /// `foo.test.example.com`, but not `example.com`."
    fn lookup(&self, sni: Option<&str>) -> Option<&[Arc<CertifiedKey>]> {
        let sni = sni.map(str::to_ascii_lowercase);
        self.hosts
            .iter()
            .find(|(hostname, _)| match (hostname.as_str(), sni.as_deref()) {
                ("", _) => true,
                (_, None) => false,
                (pattern, Some(name)) => match pattern.strip_prefix('*') {
                    Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
                    None => pattern == name,
                },
            })
            .map(|(_, certs)| certs.as_slice())
    }

    fn choose(&self, hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.lookup(hello.server_name())?;
        certs
            .iter()
            .find(|c| c.key.choose_scheme(hello.signature_schemes()).is_some())
            .cloned()
    }
}

/// The verifier of a listener's client certificates: chains to one of the CAs, and
/// with AllowInsecureFallback a client without a certificate is served too.
fn client_verifier(
    validation: &pb::ClientValidation,
    provider: &CryptoProvider,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for pem in &validation.ca_certificates_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("CA certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA certificate: {e}"))?;
        }
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider.clone()));
    if validation.allow_insecure_fallback {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|e| e.to_string())
}

/// The client verifier of a running HTTPS listener: whatever its current table says,
/// read at each handshake (rustls asks `offer_client_auth` when it builds the
/// ServerHello flight, then verifies what the client sent).
///
/// Gateway API (FrontendTLSValidation mode): "AllowValidOnly: In this mode, the gateway
/// will accept connections only if the client presents a valid certificate. This
/// certificate must successfully pass validation against the CA certificates specified
/// in `CACertificateRefs`." and "AllowInsecureFallback: In this mode, the gateway will
/// accept connections even if the client certificate is not presented or fails
/// verification." (Portico serves a client without a certificate then; one presenting
/// an invalid certificate is still refused.)
#[derive(Debug)]
pub(crate) struct ClientAuth {
    resolver: Arc<CertResolver>,
    provider: Arc<CryptoProvider>,
}

impl ClientAuth {
    fn current(&self) -> Option<Result<Arc<dyn ClientCertVerifier>, String>> {
        self.resolver.table.load().client.clone()
    }
}

impl ClientCertVerifier for ClientAuth {
    fn offer_client_auth(&self) -> bool {
        match self.current() {
            None => false,
            Some(Ok(v)) => v.offer_client_auth(),
            Some(Err(_)) => true,
        }
    }

    fn client_auth_mandatory(&self) -> bool {
        match self.current() {
            None => false,
            Some(Ok(v)) => v.client_auth_mandatory(),
            Some(Err(_)) => true,
        }
    }

    /// No hints: the current table cannot lend its names for the handshake's lifetime.
    /// Clients then offer the certificate they have (TLS 1.3: "certificate_authorities"
    /// is optional; Go and rustls clients send their configured certificate).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.current() {
            Some(Ok(v)) => v.verify_client_cert(end_entity, intermediates, now),
            Some(Err(why)) => Err(rustls::Error::General(format!(
                "client validation is not available on this listener: {why}"
            ))),
            None => Err(rustls::Error::General(
                "this listener no longer asks for client certificates".to_owned(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Sort key: exact names (longest first), wildcards (longest first), then "".
fn specificity(hostname: &str) -> (u8, std::cmp::Reverse<usize>) {
    let class = if hostname.is_empty() {
        2
    } else if hostname.starts_with('*') {
        1
    } else {
        0
    };
    (class, std::cmp::Reverse(hostname.len()))
}

fn certified_key(
    cert: &pb::Certificate,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(&cert.cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the chain".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(&cert.private_key_pem)
        .map_err(|e| format!("private key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| e.to_string())
}

/// Chooses the certificate of each handshake from the listener's current table.
#[derive(Debug)]
pub(crate) struct CertResolver {
    table: ArcSwap<SniTable>,
}

impl CertResolver {
    pub(crate) fn new(table: SniTable) -> Self {
        Self {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// Serves `table` to the handshakes that start from now on.
    pub(crate) fn swap(&self, table: SniTable) {
        self.table.store(Arc::new(table));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = self.table.load().choose(&hello);
        if chosen.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this server name");
        }
        chosen
    }
}

/// The provider every TLS object of the proxy uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The server side of an HTTPS listener: TLS 1.2 and 1.3, ALPN h2 and http/1.1,
/// certificates from `resolver`.
pub(crate) fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let client_auth = Arc::new(ClientAuth {
        resolver: resolver.clone(),
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(client_auth)
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The server side of a TLSRoute rule with `tls.mode: Terminate` (crate::l4): the
/// rule's certificates (the one suiting the client's signature schemes, whatever the
/// SNI: the route was already chosen by it), TLS 1.2 and 1.3, and no ALPN, since what
/// runs inside is opaque to the proxy. Certificates that do not load are logged and
/// left out; `None` when none loads.
pub(crate) fn termination_config(
    route: &str,
    tls: &pb::TlsTermination,
    provider: &Arc<CryptoProvider>,
) -> Option<Arc<ServerConfig>> {
    let mut certs = Vec::new();
    for cert in &tls.certificates {
        match certified_key(cert, provider) {
            Ok(key) => certs.push(Arc::new(key)),
            Err(reason) => {
                tracing::error!(%route, certificate = %cert.name, %reason, "certificate not loaded");
            }
        }
    }
    if certs.is_empty() {
        return None;
    }
    let resolver = Arc::new(CertResolver::new(SniTable {
        hosts: vec![(String::new(), certs)],
        client: None,
    }));
    match ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    {
        Ok(builder) => Some(Arc::new(
            builder.with_no_client_auth().with_cert_resolver(resolver),
        )),
        Err(error) => {
            tracing::error!(%route, %error, "TLS termination not available");
            None
        }
    }
}

/// Builds the certificate table of every HTTPS listener of `config`, by listener name.
pub(crate) fn tables(config: &pb::Config, provider: &CryptoProvider) -> BTreeMap<String, SniTable> {
    config
        .listeners
        .iter()
        .filter(|l| l.protocol == pb::Protocol::Https as i32)
        .map(|l| {
            let (table, errors) = SniTable::build(l, provider);
            for error in errors {
                tracing::error!(listener = %l.name, %error, "certificate not loaded");
            }
            (l.name.clone(), table)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cert(name: &str) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        Arc::new(
            CertifiedKey::from_der(vec![c.der().clone()], der, &ring::default_provider()).unwrap(),
        )
    }

    #[test]
    fn sni_prefers_exact_then_longest_wildcard_then_any() {
        let (exact, long, short, any) = (
            cert("a.b.example.com"),
            cert("x.b.example.com"),
            cert("y.example.com"),
            cert("any"),
        );
        let mut hosts = vec![
            ("".to_owned(), vec![any.clone()]),
            ("*.example.com".to_owned(), vec![short.clone()]),
            ("a.b.example.com".to_owned(), vec![exact.clone()]),
            ("*.b.example.com".to_owned(), vec![long.clone()]),
        ];
        hosts.sort_by_key(|a| specificity(&a.0));
        let table = SniTable {
            hosts,
            client: None,
        };
        let got = |sni: Option<&str>| table.lookup(sni).map(|c| c[0].cert[0].clone());
        assert_eq!(got(Some("a.b.example.com")), Some(exact.cert[0].clone()));
        assert_eq!(got(Some("A.B.Example.com")), Some(exact.cert[0].clone()));
        assert_eq!(got(Some("z.b.example.com")), Some(long.cert[0].clone()));
        assert_eq!(got(Some("q.example.com")), Some(short.cert[0].clone()));
        assert_eq!(got(Some("example.com")), Some(any.cert[0].clone()));
        assert_eq!(got(None), Some(any.cert[0].clone()));

        let without_any = SniTable {
            hosts: vec![("a.example.com".to_owned(), vec![exact])],
            client: None,
        };
        assert!(without_any.lookup(Some("b.example.com")).is_none());
        assert!(without_any.lookup(None).is_none());
    }

    /// CAs that do not load make the listener refuse every client (fail closed), and
    /// are reported.
    #[test]
    fn unusable_client_cas_fail_closed() {
        let vhost = pb::VirtualHost {
            name: "v".into(),
            tls: Some(pb::TlsTermination {
                certificates: vec![],
                client_validation: Some(pb::ClientValidation {
                    ca_certificates_pem: vec![b"-----BEGIN CERTIFICATE-----\ngarbage\n".to_vec()],
                    allow_insecure_fallback: false,
                }),
            }),
            ..Default::default()
        };
        let listener = pb::Listener {
            name: "l".into(),
            protocol: pb::Protocol::Https as i32,
            virtual_hosts: vec![vhost],
            ..Default::default()
        };
        let (table, errors) = SniTable::build(&listener, &ring::default_provider());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(matches!(table.client, Some(Err(_))));
        let auth = ClientAuth {
            resolver: Arc::new(CertResolver::new(table)),
            provider: provider(),
        };
        assert!(auth.offer_client_auth() && auth.client_auth_mandatory());
    }

    #[test]
    fn bad_certificates_are_left_out_and_reported() {
        let key = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["ok.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let vhost = |name: &str, hostname: &str, cert_pem: &str, key_pem: &str| pb::VirtualHost {
            name: name.into(),
            hostname: hostname.into(),
            tls: Some(pb::TlsTermination {
                certificates: vec![pb::Certificate {
                    name: format!("ns/{name}"),
                    cert_chain_pem: cert_pem.as_bytes().to_vec(),
                    private_key_pem: key_pem.as_bytes().to_vec(),
                }],
                client_validation: None,
            }),
            ..Default::default()
        };
        let listener = pb::Listener {
            name: "l".into(),
            protocol: pb::Protocol::Https as i32,
            virtual_hosts: vec![
                vhost("ok", "ok.example.com", &c.pem(), &key.serialize_pem()),
                vhost("bad", "bad.example.com", "garbage", "garbage"),
            ],
            ..Default::default()
        };
        let (table, errors) = SniTable::build(&listener, &ring::default_provider());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("ns/bad"), "{}", errors[0]);
        assert!(table.lookup(Some("ok.example.com")).is_some());
        assert!(table.lookup(Some("bad.example.com")).is_none());
    }
}
