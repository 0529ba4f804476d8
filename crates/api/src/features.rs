//! The Gateway API features Portico claims, by their conformance names (the
//! `SupportedFeature` names of `sigs.k8s.io/gateway-api/pkg/features`, v1.6.1).
//!
//! This is the one list: GatewayClasses of ours publish it in `status.supportedFeatures`,
//! and the conformance report and runner read it to decide which cases must pass. A
//! feature belongs here only when every upstream conformance test that needs it passes
//! end to end (translator, proxy, standalone runner); until then it is listed in
//! [`NOT_YET`] with what is missing, so that the claim stays honest.
//!
//! Gateway API (GatewayClassStatus): "SupportedFeatures is the set of features the
//! GatewayClass support. It MUST be sorted in ascending alphabetical order by the Name
//! key." The list is kept sorted by hand and a test checks it.

/// Features Portico supports, sorted.
pub const SUPPORTED: &[&str] = &[
    // TLS from the proxies to Services (BackendTLSPolicy): CA from ConfigMaps or the
    // system store, validation.hostname as SNI and name, precedence among policies
    // (oldest, then namespace/name; the others Conflicted); a policy that cannot be used
    // makes its backend answer 500, a failed verification is a 502, never cleartext.
    "BackendTLSPolicy",
    // validation.subjectAltNames (Hostname and URI): the backend certificate must carry
    // one of them instead of the hostname.
    "BackendTLSPolicySANValidation",
    // GATEWAY-GRPC: service/method and header matches, filters, weights; the proxy's own
    // errors are gRPC statuses.
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    // Core of GATEWAY-HTTP.
    "Gateway",
    // Listener addresses without a value get an address assigned (standalone: a loopback
    // address of the Gateway's own; in a cluster: LB-IPAM).
    "GatewayAddressEmpty",
    // Listeners that differ only by hostname each get their own virtual host; a request
    // matches the most specific listener hostname only.
    "GatewayHTTPListenerIsolation",
    // A request whose Host selects another HTTPS listener than its connection's SNI did
    // gets 421 Misdirected Request (proxy: ListenerRoutes::misdirected).
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    // spec.infrastructure labels and annotations are copied onto the Gateway's Service.
    "GatewayInfrastructurePropagation",
    "GatewayPort8080",
    // Core of GATEWAY-HTTP.
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    // appProtocol kubernetes.io/h2c and kubernetes.io/ws on Service ports.
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteSchemeRedirect",
    // ListenerSets attach to Gateways, merge into their listeners and carry status.
    "ListenerSet",
    // Core of GATEWAY-HTTP.
    "ReferenceGrant",
    // GATEWAY-TCP: TCP listeners forward to weighted backends; one route per socket
    // answers (the oldest), the others are accepted and counted.
    "TCPRoute",
    // Core of GATEWAY-TLS: passthrough routed by the ClientHello's SNI, without
    // terminating; TLS and HTTPS listeners may share a port by hostname.
    "TLSRoute",
    // TLS listeners in Terminate and Passthrough mode on one port: the proxy reads the
    // SNI and terminates or passes through per route.
    "TLSRouteModeMixed",
    // TLS listeners with tls.mode Terminate: certificates from Secrets, plaintext to the
    // backends.
    "TLSRouteModeTerminate",
    // GATEWAY-UDP: UDP listeners forward per-client flows (idle timeout) to weighted
    // backends; one route per socket answers (the oldest), the others are accepted and
    // counted.
    "UDPRoute",
];

/// Features the translator handles in part, with what is still missing before they can
/// move to [`SUPPORTED`]. Informative: nothing reads it but people and the report.
pub const NOT_YET: &[(&str, &str)] = &[
    (
        "GatewayFrontendClientCertificateValidation",
        "implemented (translator: spec.tls.frontend CAs per port and the listener conditions; proxy: client \
         certificates checked at the handshake, crates/proxy/tests/tls.rs), but the conformance case format \
         cannot present a client certificate or expect a failed handshake, so the upstream requests are not \
         run end to end; the cases check the statuses only",
    ),
    (
        "GatewayBackendClientCertificate",
        "not implemented: Gateway spec.tls.backend.clientCertificateRef is neither resolved (no Gateway \
         ResolvedRefs reason InvalidClientCertificateRef) nor presented to backends; the cases \
         GatewayInvalidTLSBackendConfiguration and GatewayTLSBackendClientCertificate are written and skipped",
    ),
    (
        "GatewayStaticAddresses",
        "the translator tells usable from unusable spec.addresses through Options::usable_addresses; \
         standalone mode and the conformance runner must pass the networks they can bind; and the case \
         format has no substitution for the upstream PLACEHOLDER_USABLE_ADDRS / PLACEHOLDER_UNUSABLE_ADDRS \
         values nor a check of status.addresses, so GatewayStaticAddresses has no case yet",
    ),
];

/// Whether Portico claims `feature`.
pub fn is_supported(feature: &str) -> bool {
    SUPPORTED.binary_search(&feature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_is_sorted_unique_and_fits_the_status_field() {
        assert!(
            SUPPORTED.windows(2).all(|w| w[0] < w[1]),
            "features::SUPPORTED must be sorted and free of duplicates"
        );
        // GatewayClassStatus.supportedFeatures: maxItems 64.
        assert!(SUPPORTED.len() <= 64);
        assert!(
            NOT_YET.iter().all(|(f, _)| !is_supported(f)),
            "a feature is either supported or not yet"
        );
        assert!(is_supported("HTTPRoute"));
        assert!(!is_supported("HTTPRouteNotAFeature"));
    }
}
