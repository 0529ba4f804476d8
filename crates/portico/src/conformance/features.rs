//! Conformance features: the GATEWAY-HTTP profile of Gateway API v1.6.1, and what
//! Portico claims of it.
//!
//! What Portico claims is one list, `portico_api::features::SUPPORTED` (the GatewayClass
//! status publishes it too). A case runs only when every feature it names is claimed;
//! the report lists the profile's extended features as supported (claimed) or
//! unsupported (the rest).

/// The core features of the GATEWAY-HTTP profile.
pub const GATEWAY_HTTP_CORE: &[&str] = &["Gateway", "HTTPRoute", "ReferenceGrant"];

/// The extended features of the GATEWAY-HTTP profile in v1.6.1 (the union of
/// `supportedFeatures` and `unsupportedFeatures` in the upstream v1.6.1 reports).
pub const GATEWAY_HTTP_EXTENDED: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructurePropagation",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
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
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "HTTPRouteSchemeRedirect",
    "ListenerSet",
];

/// Whether a case with these feature names belongs to the GATEWAY-HTTP profile: every
/// feature it needs is one of the profile's.
pub fn in_gateway_http(feature_names: &[String]) -> bool {
    feature_names.iter().all(|f| {
        GATEWAY_HTTP_CORE.contains(&f.as_str()) || GATEWAY_HTTP_EXTENDED.contains(&f.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_and_claims_are_known() {
        let mut sorted = GATEWAY_HTTP_EXTENDED.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, GATEWAY_HTTP_EXTENDED);
        // Every feature we claim is named by the profile (GATEWAY-HTTP) or by another
        // profile's cases; the HTTP ones must be spelled as the profile spells them.
        for claimed in portico_api::features::SUPPORTED
            .iter()
            .filter(|f| f.starts_with("HTTP") || f.starts_with("Gateway"))
        {
            assert!(
                GATEWAY_HTTP_CORE.contains(claimed) || GATEWAY_HTTP_EXTENDED.contains(claimed),
                "{claimed}"
            );
        }
    }

    #[test]
    fn profile_membership() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(in_gateway_http(&names(&[
            "Gateway",
            "HTTPRoute",
            "HTTPRouteCORS"
        ])));
        assert!(!in_gateway_http(&names(&["Gateway", "GRPCRoute"])));
    }
}
