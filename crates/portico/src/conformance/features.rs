//! Conformance features: the profiles of Gateway API v1.6.1 (GATEWAY-HTTP, GATEWAY-GRPC,
//! GATEWAY-TLS, GATEWAY-TCP), and what Portico claims of them.
//!
//! What Portico claims is one list, `portico_api::features::SUPPORTED` (the GatewayClass
//! status publishes it too). A case runs only when every feature it names is claimed
//! (or is a preview feature); the report lists each profile's extended features as
//! supported (claimed) or unsupported (the rest).
//!
//! Upstream (conformance/utils/suite/profiles.go) places a test in every profile that
//! has all of its features among the profile's core and extended features; the
//! extended sets are the Gateway's extended features plus the route kind's own.

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

/// The Gateway's extended features (`features.GatewayExtendedFeatures`), part of every
/// Gateway profile's extended set.
const GATEWAY_EXTENDED: &[&str] = &[
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructurePropagation",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "ListenerSet",
];

/// GATEWAY-GRPC: the Gateway's extended features only.
pub const GATEWAY_GRPC_CORE: &[&str] = &["GRPCRoute", "Gateway", "ReferenceGrant"];

/// GATEWAY-TLS (v1.6.1 reports: TLSRouteModeMixed and TLSRouteModeTerminate beside the
/// Gateway's extended features).
pub const GATEWAY_TLS_CORE: &[&str] = &["Gateway", "ReferenceGrant", "TLSRoute"];
const TLS_ROUTE_EXTENDED: &[&str] = &["TLSRouteModeMixed", "TLSRouteModeTerminate"];

/// GATEWAY-TCP (v1.6.1 reports list TCPRoute among its extended features).
pub const GATEWAY_TCP_CORE: &[&str] = &["Gateway", "ReferenceGrant"];
const TCP_ROUTE_EXTENDED: &[&str] = &["TCPRoute"];

/// One conformance profile: its name and feature sets.
#[derive(Debug, Clone)]
pub struct ProfileDef {
    pub name: &'static str,
    pub core: &'static [&'static str],
    /// Sorted.
    pub extended: Vec<&'static str>,
}

impl ProfileDef {
    fn new(
        name: &'static str,
        core: &'static [&'static str],
        extended: &[&[&'static str]],
    ) -> Self {
        let mut all: Vec<&'static str> = extended.iter().flat_map(|s| s.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        Self {
            name,
            core,
            extended: all,
        }
    }

    /// Whether a case with these feature names belongs to the profile: every feature it
    /// needs is one of the profile's.
    pub fn contains(&self, feature_names: &[String]) -> bool {
        feature_names
            .iter()
            .all(|f| self.core.contains(&f.as_str()) || self.extended.contains(&f.as_str()))
    }
}

/// The Gateway profiles the report covers, in upstream's report order.
pub fn profiles() -> Vec<ProfileDef> {
    vec![
        ProfileDef::new("GATEWAY-GRPC", GATEWAY_GRPC_CORE, &[GATEWAY_EXTENDED]),
        ProfileDef::new("GATEWAY-HTTP", GATEWAY_HTTP_CORE, &[GATEWAY_HTTP_EXTENDED]),
        ProfileDef::new(
            "GATEWAY-TCP",
            GATEWAY_TCP_CORE,
            &[GATEWAY_EXTENDED, TCP_ROUTE_EXTENDED],
        ),
        ProfileDef::new(
            "GATEWAY-TLS",
            GATEWAY_TLS_CORE,
            &[GATEWAY_EXTENDED, TLS_ROUTE_EXTENDED],
        ),
    ]
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
        // The Gateway's extended features are the HTTP profile's too.
        assert!(
            GATEWAY_EXTENDED
                .iter()
                .all(|f| GATEWAY_HTTP_EXTENDED.contains(f))
        );
        // Every claimed TLS and TCP feature is in its profile.
        let all = profiles();
        for claimed in portico_api::features::SUPPORTED
            .iter()
            .filter(|f| f.starts_with("TLS") || f.starts_with("TCP"))
        {
            assert!(
                all.iter()
                    .any(|p| p.core.contains(claimed) || p.extended.contains(claimed)),
                "{claimed}"
            );
        }
    }

    #[test]
    fn profile_membership() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let profiles = profiles();
        let of = |features: &[&str]| -> Vec<&str> {
            profiles
                .iter()
                .filter(|p| p.contains(&names(features)))
                .map(|p| p.name)
                .collect()
        };
        assert_eq!(
            of(&["Gateway", "HTTPRoute", "HTTPRouteCORS"]),
            ["GATEWAY-HTTP"]
        );
        assert_eq!(of(&["Gateway", "GRPCRoute"]), ["GATEWAY-GRPC"]);
        assert_eq!(
            of(&["Gateway", "TLSRoute", "TLSRouteModeTerminate"]),
            ["GATEWAY-TLS"]
        );
        assert_eq!(
            of(&["Gateway", "TCPRoute", "ReferenceGrant"]),
            ["GATEWAY-TCP"]
        );
        // A Gateway-only test counts in every profile, as upstream counts it.
        assert_eq!(of(&["Gateway"]).len(), 4);
        // A test needing two route kinds belongs to none.
        assert!(of(&["Gateway", "HTTPRoute", "TLSRoute"]).is_empty());
    }
}
