//! TLS to cluster endpoints (BackendTLSPolicy, config `Cluster.tls`).
//!
//! ```text
//! pb::UpstreamTls ──UpstreamTlsConfig::build──> UpstreamTlsConfig (one per cluster, kept
//!   server_name  ──> SNI                         while the cluster's config is unchanged)
//!   ca_pem       ──> RootCertStore        ┐
//!   system_roots ──> platform roots       ├─> rustls ClientConfig + SanVerifier
//!   subject_alt_names ──> names checked   ┘   (ALPN h2 for H2C clusters, else none)
//!
//! TlsClients (part of Upstream, lives as long as the proxy)
//! ├── http1: cluster name -> (config, hyper-util client over hyper-rustls, https only)
//! │          a keep-alive pool per cluster, keyed by endpoint like the cleartext one
//! └── h2:    (endpoint, cluster name) -> (config, one multiplexed HTTP/2 connection)
//! ```
//!
//! A client is rebuilt only when its cluster's TLS config changes (a new
//! [`UpstreamTlsConfig`] instance): the routing table reuses a cluster's state when a
//! config push leaves it unchanged, so warm connections survive unrelated pushes.
//!
//! A failed handshake (an untrusted chain, a name the certificate does not carry) is
//! answered 502 and logged with rustls' reason. Nothing falls back to cleartext: the
//! connector only speaks https.
//!
//! Gateway API (BackendTLSPolicy `validation.hostname`): "Hostname MUST be used as the SNI
//! to connect to the backend [...] MUST match the certificate served by the matching
//! backend, unless SubjectAltNames is specified. [...] If SubjectAltNames are specified,
//! Hostname can be used for certificate selection but MUST NOT be used for
//! authentication." And `subjectAltNames`: "the certificate served from the backend MUST
//! have at least one Subject Alternate Name matching one of the specified
//! SubjectAltNames." [`SanVerifier`] does that: the chain is verified by webpki, the
//! names by us.

use std::{
    collections::HashMap,
    error::Error as StdError,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use http::{Request, Response, Uri, uri::PathAndQuery};
use hyper::{body::Incoming, client::conn::http2};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use portico_api::config::v1 as pb;
use rustls::{
    DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::ring,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio::net::TcpStream;

use crate::{
    error::{BoxError, ConfigError, RequestError},
    options::ProxyOptions,
    table::{ClusterState, UpstreamProtocol},
    upstream::RequestBody,
};

/// A cluster's TLS settings, ready to connect with.
#[derive(Debug)]
pub(crate) struct UpstreamTlsConfig {
    /// The SNI sent (BackendTLSPolicy `validation.hostname`).
    server_name: ServerName<'static>,
    client: Arc<rustls::ClientConfig>,
}

impl UpstreamTlsConfig {
    /// Builds the rustls client config for `tls`; `h2` offers ALPN "h2" (H2C clusters
    /// speak HTTP/2 over TLS).
    pub(crate) fn build(tls: &pb::UpstreamTls, h2: bool) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::UpstreamTls(why);
        let server_name = ServerName::try_from(tls.server_name.clone())
            .map_err(|e| invalid(format!("server name {:?}: {e}", tls.server_name)))?;
        let mut roots = RootCertStore::empty();
        if tls.system_roots {
            roots.roots.extend(system_roots().roots.iter().cloned());
        }
        for cert in CertificateDer::pem_slice_iter(&tls.ca_pem) {
            let cert = cert.map_err(|e| invalid(format!("CA bundle: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("no trust anchors (empty CA bundle)".to_owned()));
        }
        let provider = Arc::new(ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| invalid(format!("verifier: {e}")))?;
        let sans = tls
            .subject_alt_names
            .iter()
            .filter_map(|s| s.kind.clone())
            .collect::<Vec<_>>();
        let verifier = Arc::new(SanVerifier { webpki, sans });
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("protocol versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        if h2 {
            client.alpn_protocols = vec![b"h2".to_vec()];
        }
        Ok(Self {
            server_name,
            client: Arc::new(client),
        })
    }
}

/// The platform's root certificates, read once (`wellKnownCACertificates: System`).
pub(crate) fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "reading the system's root certificates");
        }
        let (added, ignored) = store.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system root certificates loaded");
        store
    })
}

/// Verifies the chain with webpki, and the name against the subjectAltNames when the
/// policy lists some (else against the SNI, as webpki does).
#[derive(Debug)]
struct SanVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    sans: Vec<pb::subject_alt_name::Kind>,
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if self.sans.is_empty() {
            return verified;
        }
        match verified {
            Ok(ok) => {
                // The chain holds and the certificate carries the SNI name; the SNI name
                // must not authenticate by itself, so the SANs are still checked.
                check_sans(end_entity, &self.sans)?;
                Ok(ok)
            }
            // webpki checks the chain first and the name last: a name error means the
            // chain is trusted, and the name is then ours to check.
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => {
                check_sans(end_entity, &self.sans)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Whether the leaf carries one of `wanted`: a DNS name (case-insensitive; "*.suffix" on
/// either side matches exactly one label) or a URI (exact).
fn check_sans(
    end_entity: &CertificateDer<'_>,
    wanted: &[pb::subject_alt_name::Kind],
) -> Result<(), rustls::Error> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let found = wanted.iter().any(|want| {
        names.iter().any(|name| match (want, name) {
            (pb::subject_alt_name::Kind::Hostname(w), GeneralName::DNSName(have)) => {
                dns_matches(w, have) || dns_matches(have, w)
            }
            (pb::subject_alt_name::Kind::Uri(w), GeneralName::URI(have)) => w == have,
            _ => false,
        })
    });
    if found {
        Ok(())
    } else {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        ))
    }
}

/// `pattern` ("a.example.com" or "*.example.com") matches `name` (an exact name).
fn dns_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && label != "*" && rest == suffix),
        None => pattern == name,
    }
}

type TlsClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

type H2Sender = http2::SendRequest<RequestBody>;

/// (endpoint, cluster name) -> the open connection.
type H2Senders = HashMap<(SocketAddr, String), Pooled<H2Sender>>;

/// A client or connection, with the TLS config it was made with.
type Pooled<T> = (Arc<UpstreamTlsConfig>, T);

/// The TLS clients of every cluster that has TLS, see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct TlsClients {
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    http1: Arc<Mutex<HashMap<String, Pooled<TlsClient>>>>,
    h2: Arc<Mutex<H2Senders>>,
}

impl TlsClients {
    pub(crate) fn new(options: &ProxyOptions) -> Self {
        Self {
            connect_timeout: options.connect_timeout,
            idle_timeout: options.upstream_idle_timeout,
            max_idle_per_host: options.max_idle_upstream_per_host,
            http1: Arc::default(),
            h2: Arc::default(),
        }
    }

    /// Sends `req` over TLS to `endpoint`. `req` already carries the host: in its Host
    /// header for HTTP/1.1, in its URI authority for HTTP/2; its URI path is final.
    pub(crate) async fn send(
        &self,
        cluster: &ClusterState,
        tls: &Arc<UpstreamTlsConfig>,
        protocol: UpstreamProtocol,
        endpoint: SocketAddr,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, RequestError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        match protocol {
            UpstreamProtocol::Http1 => {
                // As in cleartext: the URI names the endpoint (the pool key), the Host
                // header the host; the scheme says TLS, and the connector refuses
                // anything else.
                *req.uri_mut() = https_uri(&endpoint.to_string(), path)?;
                let client = self.http1_client(cluster, tls);
                client.request(req).await.map_err(|error| {
                    classify(cluster, endpoint, error.is_connect(), Box::new(error))
                })
            }
            UpstreamProtocol::H2c => {
                let authority = req
                    .uri()
                    .authority()
                    .map_or_else(|| endpoint.to_string(), |a| a.to_string());
                *req.uri_mut() = https_uri(&authority, path)?;
                let mut sender = match self.open_h2(cluster, tls, endpoint) {
                    Some(sender) => sender,
                    None => self
                        .connect_h2(cluster, tls, endpoint)
                        .await
                        .map_err(|e| classify(cluster, endpoint, true, e))?,
                };
                sender
                    .ready()
                    .await
                    .map_err(|e| classify(cluster, endpoint, false, Box::new(e)))?;
                sender
                    .send_request(req)
                    .await
                    .map_err(|e| classify(cluster, endpoint, false, Box::new(e)))
            }
        }
    }

    /// The cluster's pooled HTTP/1.1 client, rebuilt when its TLS config changed.
    fn http1_client(&self, cluster: &ClusterState, tls: &Arc<UpstreamTlsConfig>) -> TlsClient {
        // A poisoned lock only means a request panicked mid-insert; the map is intact.
        let mut clients = self.http1.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((config, client)) = clients.get(&cluster.name)
            && Arc::ptr_eq(config, tls)
        {
            return client.clone();
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(self.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls.client).clone())
            .https_only()
            .with_server_name_resolver(FixedServerNameResolver::new(tls.server_name.clone()))
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.idle_timeout)
            .pool_max_idle_per_host(self.max_idle_per_host)
            .build(connector);
        clients.insert(cluster.name.clone(), (tls.clone(), client.clone()));
        client
    }

    fn open_h2(
        &self,
        cluster: &ClusterState,
        tls: &Arc<UpstreamTlsConfig>,
        endpoint: SocketAddr,
    ) -> Option<http2::SendRequest<RequestBody>> {
        let senders = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        senders
            .get(&(endpoint, cluster.name.clone()))
            .filter(|(config, s)| Arc::ptr_eq(config, tls) && !s.is_closed())
            .map(|(_, s)| s.clone())
    }

    async fn connect_h2(
        &self,
        cluster: &ClusterState,
        tls: &Arc<UpstreamTlsConfig>,
        endpoint: SocketAddr,
    ) -> Result<http2::SendRequest<RequestBody>, BoxError> {
        let timeout = self.connect_timeout;
        let connect = async {
            let tcp = TcpStream::connect(endpoint).await?;
            let _ = tcp.set_nodelay(true);
            let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
            let stream = connector.connect(tls.server_name.clone(), tcp).await?;
            Ok::<_, std::io::Error>(stream)
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| format!("connect timed out after {timeout:?}"))??;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%endpoint, %error, "TLS HTTP/2 connection ended with an error");
            }
        });
        let mut senders = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        senders.retain(|_, (_, s)| !s.is_closed());
        senders.insert(
            (endpoint, cluster.name.clone()),
            (tls.clone(), sender.clone()),
        );
        Ok(sender)
    }
}

fn https_uri(authority: &str, path: PathAndQuery) -> Result<Uri, RequestError> {
    Uri::builder()
        .scheme("https")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| RequestError::BadRequest(e.to_string()))
}

/// A TLS failure (handshake, verification) is a 502 with rustls' reason; other failures
/// keep the cleartext path's meaning (connect: 503, exchange: 502).
fn classify(
    cluster: &ClusterState,
    endpoint: SocketAddr,
    connect: bool,
    error: BoxError,
) -> RequestError {
    if let Some(reason) = tls_failure(&*error) {
        tracing::warn!(cluster = %cluster.name, %endpoint, %reason, "TLS to the backend failed");
        return RequestError::UpstreamTls {
            cluster: cluster.name.clone(),
            endpoint,
            reason,
        };
    }
    if connect {
        RequestError::Connect {
            cluster: cluster.name.clone(),
            endpoint,
            error,
        }
    } else {
        RequestError::Upstream {
            cluster: cluster.name.clone(),
            endpoint,
            error,
        }
    }
}

/// The rustls error somewhere in `error`'s chain. io errors (tokio-rustls wraps the
/// handshake error in one, hyper-rustls that in another) hide their payload from
/// `source()`, so they are unwrapped with `get_ref`.
fn tls_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    // Bounded: chains are short, and a cycle must not hang a request.
    for _ in 0..16 {
        let e = current?;
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_patterns_match_one_label() {
        assert!(dns_matches("abc.example.com", "ABC.example.com"));
        assert!(dns_matches("*.example.com", "abc.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("abc.example.com", "abd.example.com"));
    }

    #[test]
    fn config_needs_trust_anchors_and_a_valid_name() {
        let empty = pb::UpstreamTls {
            server_name: "abc.example.com".into(),
            ..Default::default()
        };
        assert!(UpstreamTlsConfig::build(&empty, false).is_err());
        let bad_name = pb::UpstreamTls {
            server_name: "not a name".into(),
            system_roots: true,
            ..Default::default()
        };
        assert!(UpstreamTlsConfig::build(&bad_name, false).is_err());
    }

    #[test]
    fn h2_clusters_offer_alpn_h2() {
        let ca = rcgen::KeyPair::generate().and_then(|key| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.self_signed(&key)
        });
        let Ok(ca) = ca else {
            panic!("rcgen could not make a CA");
        };
        let tls = pb::UpstreamTls {
            server_name: "abc.example.com".into(),
            ca_pem: ca.pem().into_bytes(),
            ..Default::default()
        };
        let h2 = UpstreamTlsConfig::build(&tls, true).map(|c| c.client.alpn_protocols.clone());
        assert_eq!(h2.ok(), Some(vec![b"h2".to_vec()]));
        let h1 = UpstreamTlsConfig::build(&tls, false).map(|c| c.client.alpn_protocols.clone());
        assert_eq!(h1.ok(), Some(Vec::new()));
    }
}
