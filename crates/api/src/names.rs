//! Names users see: the controller name, labels, annotations, and the condition types and
//! reasons of the Gateway API. Nobody else spells these strings.

/// The `spec.controllerName` of GatewayClasses that Portico handles.
pub const CONTROLLER_NAME: &str = "portico.dev/gateway-controller";

/// The API group of the Gateway API kinds.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The label on an EndpointSlice naming the Service it belongs to.
pub const ENDPOINT_SLICE_SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// The label on the generated Service naming its Gateway.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The annotation on every Gateway API CRD naming the release bundle it comes from.
pub const BUNDLE_VERSION_ANNOTATION: &str = "gateway.networking.k8s.io/bundle-version";

/// The Gateway API release Portico is built against (the CRDs in `crates/api` and the
/// conformance suite). GatewayClasses report on it in their `SupportedVersion` condition.
pub const GATEWAY_API_BUNDLE_VERSION: &str = "v1.6.1";

/// The API group of Portico's own kinds (`PorticoGatewayClassConfig`,
/// `LoadBalancerIPPool`).
pub const PORTICO_GROUP: &str = "portico.dev";

/// The `spec.loadBalancerClass` of LoadBalancer Services that Portico's LB-IPAM serves.
/// Services without a class are served too (when no other implementation claims
/// them, that is what makes `type: LoadBalancer` work on bare metal and kind).
pub const LB_CLASS: &str = "portico.dev/lb";

/// Annotation on a Gateway: `"off"` turns the proxy's access log off for the Gateway's
/// listeners (any other value, or none, leaves it on). See docs/metrics.md.
pub const ACCESS_LOG_ANNOTATION: &str = "portico.dev/access-log";

/// The value of [`ACCESS_LOG_ANNOTATION`] that turns the access log off.
pub const ACCESS_LOG_OFF: &str = "off";

/// Annotation on a LoadBalancer Service requesting specific addresses from LB-IPAM,
/// comma-separated (`"203.0.113.10,2001:db8::10"`); `spec.loadBalancerIP` (deprecated
/// upstream, one address) is honoured too.
pub const LB_IPAM_IPS_ANNOTATION: &str = "portico.dev/lb-ipam-ips";

/// Label on a Gateway's Service when the node agent steers its traffic to the
/// node-local proxy in eBPF (value `"true"`): the agent then answers for the Service's
/// addresses and ports itself, sending each to the Service port's `targetPort` on the
/// local proxy, instead of load-balancing over the Service's endpoints. See
/// ARCHITECTURE.md, "How traffic reaches proxies".
pub const GATEWAY_STEERING_LABEL: &str = "portico.dev/gateway-steering";

/// Prefix of the `coordination.k8s.io` Leases that elect, per LoadBalancer IP, the one
/// node answering ARP for it (L2 announcements): `portico-l2-<ip, dots as dashes>`.
pub const L2_LEASE_PREFIX: &str = "portico-l2-";

/// The namespace `portico-cert-sync` copies the Secrets that Gateways refer to into, by
/// default: proxies read certificates from there only.
pub const DEFAULT_SECRETS_NAMESPACE: &str = "portico-secrets";

/// The standard label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// `app.kubernetes.io/managed-by` of the Secret copies `portico-cert-sync` makes: it
/// never updates or deletes a Secret without it. Also its field manager and its name in
/// Events.
pub const CERT_SYNC_MANAGER: &str = "portico-cert-sync";

/// Label on a Secret copy naming the namespace of its source Secret.
pub const SOURCE_NAMESPACE_LABEL: &str = "portico.dev/source-namespace";

/// Label on a Secret copy naming its source Secret (shortened with a hash when the name
/// is longer than a label value may be; the annotation below holds it whole).
pub const SOURCE_NAME_LABEL: &str = "portico.dev/source-name";

/// Annotation on a Secret copy naming its source Secret as `<namespace>/<name>`.
pub const SOURCE_ANNOTATION: &str = "portico.dev/source";

/// Event reasons Portico records (`core/v1` Events, `reason`).
pub mod event {
    /// LB-IPAM gave a Service an address.
    pub const ADDRESS_ASSIGNED: &str = "AddressAssigned";
    /// LB-IPAM found no free address for a Service (pools exhausted, none matching,
    /// or the requested address taken or outside every pool).
    pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
    /// cert-sync: a listener certificateRef names a Secret that is missing, not a
    /// usable certificate (PEM, key matching the certificate) or expired (Warning).
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    /// cert-sync: a cross-namespace certificateRef that no ReferenceGrant allows
    /// (Warning).
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// cert-sync: a certificate expires within the warning period (Warning).
    pub const CERTIFICATE_EXPIRING: &str = "CertificateExpiring";
}

/// Kinds as they appear in references.
pub mod kind {
    pub const GATEWAY_CLASS: &str = "GatewayClass";
    pub const GATEWAY: &str = "Gateway";
    pub const LISTENER_SET: &str = "ListenerSet";
    pub const HTTP_ROUTE: &str = "HTTPRoute";
    pub const GRPC_ROUTE: &str = "GRPCRoute";
    pub const TLS_ROUTE: &str = "TLSRoute";
    pub const TCP_ROUTE: &str = "TCPRoute";
    pub const UDP_ROUTE: &str = "UDPRoute";
    pub const SERVICE: &str = "Service";
    pub const SECRET: &str = "Secret";
    pub const REFERENCE_GRANT: &str = "ReferenceGrant";
    pub const PORTICO_GATEWAY_CLASS_CONFIG: &str = "PorticoGatewayClassConfig";
    pub const LOAD_BALANCER_IP_POOL: &str = "LoadBalancerIPPool";
    pub const CONFIG_MAP: &str = "ConfigMap";
    pub const BACKEND_TLS_POLICY: &str = "BackendTLSPolicy";
}

/// The ConfigMap key holding the PEM CA bundle that BackendTLSPolicy
/// `caCertificateRefs` name.
pub const CA_CERTIFICATE_KEY: &str = "ca.crt";

/// BackendTLSPolicy `wellKnownCACertificates` value for the platform's roots.
pub const WELL_KNOWN_CA_SYSTEM: &str = "System";

/// Condition types (`status.conditions[].type`).
pub mod condition {
    pub const ACCEPTED: &str = "Accepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const CONFLICTED: &str = "Conflicted";
    pub const SUPPORTED_VERSION: &str = "SupportedVersion";
    /// LoadBalancerIPPool: every block is valid.
    pub const READY: &str = "Ready";
}

/// Condition reasons, as the Gateway API spells them.
pub mod reason {
    // Shared.
    pub const ACCEPTED: &str = "Accepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const PENDING: &str = "Pending";
    pub const INVALID: &str = "Invalid";
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    pub const NO_CONFLICTS: &str = "NoConflicts";

    // GatewayClass.
    pub const SUPPORTED_VERSION: &str = "SupportedVersion";
    pub const UNSUPPORTED_VERSION: &str = "UnsupportedVersion";

    // Gateway (ListenersNotValid also for ListenerSets).
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
    pub const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";

    // LoadBalancerIPPool (condition Ready).
    pub const READY: &str = "Ready";
    pub const INVALID_BLOCK: &str = "InvalidBlock";

    // ListenerSet.
    pub const NOT_ALLOWED: &str = "NotAllowed";
    pub const PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";

    // Listener.
    pub const PORT_UNAVAILABLE: &str = "PortUnavailable";
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";

    // Route parent.
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";

    // References.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const INVALID_KIND: &str = "InvalidKind";
    pub const UNSUPPORTED_PROTOCOL_REF: &str = "UnsupportedProtocol";

    // BackendTLSPolicy.
    pub const CONFLICTED: &str = "Conflicted";
    pub const NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";
    pub const INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
    // Listener, frontend client-certificate validation (Gateway spec.tls.frontend).
    pub const INVALID_CA_CERTIFICATE_KIND: &str = "InvalidCACertificateKind";
}
