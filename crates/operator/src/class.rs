//! GatewayClass parameters: `spec.parametersRef` -> `PorticoGatewayClassConfig`.
//!
//! ```text
//!   GatewayClass c (ours) ── parametersRef {portico.dev, PorticoGatewayClassConfig, ns, n}
//!        │                                      │ (watched: Objects.class_configs)
//!        ▼                                      ▼
//!   ClassResolver::resolve ─> Ok(spec.service) ─> ClassParameters { service: Some(cfg) }
//!        │                    (remembered as c's last good shape)
//!        │                  Err(why: missing, wrong kind, malformed)
//!        │                    ─> ClassParameters { service: last good or None, problem }
//!        ▼
//!   translator input: classes whose parameters resolved lose their parametersRef (the
//!   translator reads no parameters, the operator did); the others keep it, and the
//!   translator rejects them: Accepted=False, InvalidParameters, with `why` as message
//!   ([`report`]).
//!   Service reconciler: every Gateway Service of class c shaped by `service`
//!   (None: existing Services are left as they are).
//! ```
//!
//! Gateway API (GatewayClass `parametersRef`): "If the referent cannot be found, refers
//! to an unsupported kind, or when the data within that resource is malformed, the
//! GatewayClass SHOULD be rejected with the "Accepted" status condition set to "False"
//! and an "InvalidParameters" reason." A rejected class does not reshape its Services:
//! they keep the last shape that came from valid parameters.

use std::collections::BTreeMap;

use ipnet::IpNet;
use portico_api::gateway::GatewayClass;
use portico_api::names::{self, condition};
use portico_api::portico::{PorticoGatewayClassConfig, ServiceConfig, ServiceType};
use portico_translate::Statuses;

use crate::object::ObjectKey;
use crate::store::Index;

/// What the operator makes of one GatewayClass's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassParameters {
    /// The shape of every Gateway Service of the class; `None` leaves the existing
    /// Services as they are (the parameters are unusable and no usable ones were seen
    /// before).
    pub service: Option<ServiceConfig>,
    /// Why `parametersRef` cannot be used: the class is then not accepted.
    pub problem: Option<String>,
}

/// Per GatewayClass name (ours only).
pub type ClassParametersMap = BTreeMap<String, ClassParameters>;

/// The Service config `class` asks for: `Ok(None)` without a `parametersRef`, `Err(why)`
/// when the reference or what it names cannot be used.
pub fn resolve(
    class: &GatewayClass,
    configs: &Index<PorticoGatewayClassConfig>,
) -> Result<Option<ServiceConfig>, String> {
    let Some(params) = class.spec.parameters_ref.as_ref() else {
        return Ok(None);
    };
    if params.group != names::PORTICO_GROUP
        || params.kind != names::kind::PORTICO_GATEWAY_CLASS_CONFIG
    {
        return Err(format!(
            "parametersRef names {}/{} {:?}: Portico reads parameters of kind {}/{} only",
            params.group,
            params.kind,
            params.name,
            names::PORTICO_GROUP,
            names::kind::PORTICO_GATEWAY_CLASS_CONFIG
        ));
    }
    let Some(namespace) = params.namespace.as_deref().filter(|ns| !ns.is_empty()) else {
        return Err(format!(
            "parametersRef to {} {:?} has no namespace: the kind is namespaced",
            names::kind::PORTICO_GATEWAY_CLASS_CONFIG,
            params.name
        ));
    };
    let key = ObjectKey::namespaced(namespace, &params.name);
    let Some(config) = configs.get(&key) else {
        return Err(format!(
            "{} {key} not found",
            names::kind::PORTICO_GATEWAY_CLASS_CONFIG
        ));
    };
    let service = config.spec.service.clone().unwrap_or_default();
    validate(&service)
        .map_err(|why| format!("{} {key}: {why}", names::kind::PORTICO_GATEWAY_CLASS_CONFIG))?;
    Ok(Some(service))
}

/// Malformed data in the sense of the Gateway API rule: fields the API server would
/// reject on the Service (a field that does not go with the type, a source range that is
/// not a CIDR). Caught here, the class says why; otherwise every Service apply would fail.
pub fn validate(service: &ServiceConfig) -> Result<(), String> {
    let type_ = service.type_.unwrap_or_default();
    let load_balancer = type_ == ServiceType::LoadBalancer;
    if service.external_traffic_policy.is_some() && type_ == ServiceType::ClusterIP {
        return Err("externalTrafficPolicy needs type LoadBalancer or NodePort".to_owned());
    }
    if service.load_balancer_class.is_some() && !load_balancer {
        return Err("loadBalancerClass needs type LoadBalancer".to_owned());
    }
    let ranges = service
        .load_balancer_source_ranges
        .as_deref()
        .unwrap_or_default();
    if !ranges.is_empty() && !load_balancer {
        return Err("loadBalancerSourceRanges needs type LoadBalancer".to_owned());
    }
    if let Some(bad) = ranges.iter().find(|r| r.trim().parse::<IpNet>().is_err()) {
        return Err(format!("loadBalancerSourceRanges: {bad:?} is not a CIDR"));
    }
    Ok(())
}

/// Resolves the parameters of every class of ours, remembering each class's last usable
/// Service shape.
#[derive(Debug, Default)]
pub struct ClassResolver {
    last_good: BTreeMap<String, ServiceConfig>,
}

impl ClassResolver {
    pub fn resolve(
        &mut self,
        classes: &[GatewayClass],
        configs: &Index<PorticoGatewayClassConfig>,
        controller_name: &str,
    ) -> ClassParametersMap {
        let mut out = ClassParametersMap::new();
        for class in classes {
            let Some(name) = class.metadata.name.as_deref() else {
                continue;
            };
            if class.spec.controller_name != controller_name {
                continue;
            }
            let parameters = match resolve(class, configs) {
                Ok(service) => {
                    let service = service.unwrap_or_default();
                    self.last_good.insert(name.to_owned(), service.clone());
                    ClassParameters {
                        service: Some(service),
                        problem: None,
                    }
                }
                Err(why) => ClassParameters {
                    service: self.last_good.get(name).cloned(),
                    problem: Some(why),
                },
            };
            out.insert(name.to_owned(), parameters);
        }
        // A class deleted and created again starts afresh.
        self.last_good.retain(|name, _| out.contains_key(name));
        out
    }
}

/// The classes as the translator should see them: those whose parameters the operator
/// resolved lose their `parametersRef` (the translator accepts a class of ours only
/// without one, reading no parameters itself). Returns the classes as they were, for
/// the snapshot.
pub fn for_translator(
    classes: &mut [GatewayClass],
    parameters: &ClassParametersMap,
) -> Vec<GatewayClass> {
    let original = classes.to_vec();
    for class in classes {
        let resolved = class
            .metadata
            .name
            .as_deref()
            .and_then(|n| parameters.get(n))
            .is_some_and(|p| p.problem.is_none());
        if resolved {
            class.spec.parameters_ref = None;
        }
    }
    original
}

/// Puts each unusable class's reason into its Accepted condition (the translator, which
/// reads no parameters, says only that it rejected them).
pub fn report(statuses: &mut Statuses, parameters: &ClassParametersMap) {
    for (name, parameters) in parameters {
        let (Some(why), Some(status)) = (
            parameters.problem.as_ref(),
            statuses.gateway_classes.get_mut(name),
        ) else {
            continue;
        };
        for c in &mut status.conditions {
            if c.type_ == condition::ACCEPTED {
                c.message =
                    format!("{why}; Gateway Services of the class keep their last valid shape");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::gateway::gatewayclasses::GatewayClassParametersRef;
    use portico_api::portico::{ExternalTrafficPolicy, PorticoGatewayClassConfigSpec};

    fn mk_class(name: &str, params: Option<(&str, &str, Option<&str>, &str)>) -> GatewayClass {
        let mut c = GatewayClass::default();
        c.metadata.name = Some(name.into());
        c.spec.controller_name = names::CONTROLLER_NAME.into();
        c.spec.parameters_ref = params.map(|(group, kind, ns, n)| GatewayClassParametersRef {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: n.into(),
        });
        c
    }

    fn ours<'a>(
        ns: Option<&'a str>,
        name: &'a str,
    ) -> Option<(&'static str, &'static str, Option<&'a str>, &'a str)> {
        Some((
            names::PORTICO_GROUP,
            names::kind::PORTICO_GATEWAY_CLASS_CONFIG,
            ns,
            name,
        ))
    }

    fn mk_configs(service: ServiceConfig) -> Index<PorticoGatewayClassConfig> {
        let mut config = PorticoGatewayClassConfig::new(
            "internal",
            PorticoGatewayClassConfigSpec {
                service: Some(service),
            },
        );
        config.metadata.namespace = Some("portico-system".into());
        let mut index = Index::default();
        index.apply(config);
        index
    }

    fn node_port() -> ServiceConfig {
        ServiceConfig {
            type_: Some(ServiceType::NodePort),
            external_traffic_policy: Some(ExternalTrafficPolicy::Local),
            ..Default::default()
        }
    }

    #[test]
    fn references_resolve_or_say_why_not() {
        let configs = mk_configs(node_port());
        let plain = mk_class("c", None);
        assert_eq!(resolve(&plain, &configs), Ok(None));
        let good = mk_class("c", ours(Some("portico-system"), "internal"));
        assert_eq!(resolve(&good, &configs), Ok(Some(node_port())));

        for (class, says) in [
            (
                mk_class("c", ours(Some("portico-system"), "nope")),
                "not found",
            ),
            (mk_class("c", ours(None, "internal")), "no namespace"),
            (
                mk_class(
                    "c",
                    Some(("", "ConfigMap", Some("portico-system"), "internal")),
                ),
                "Portico reads parameters of kind",
            ),
        ] {
            let why = resolve(&class, &configs).unwrap_err();
            assert!(why.contains(says), "{why}");
        }
    }

    #[test]
    fn malformed_service_configs_are_rejected() {
        let cluster_ip = |f: fn(&mut ServiceConfig)| {
            let mut s = ServiceConfig {
                type_: Some(ServiceType::ClusterIP),
                ..Default::default()
            };
            f(&mut s);
            s
        };
        assert!(validate(&ServiceConfig::default()).is_ok());
        assert!(validate(&node_port()).is_ok());
        assert!(validate(&cluster_ip(|_| {})).is_ok());
        assert!(
            validate(&cluster_ip(|s| {
                s.external_traffic_policy = Some(ExternalTrafficPolicy::Local)
            }))
            .is_err()
        );
        assert!(validate(&cluster_ip(|s| s.load_balancer_class = Some("x".into()))).is_err());
        let ranges = |r: &str| ServiceConfig {
            load_balancer_source_ranges: Some(vec![r.into()]),
            ..Default::default()
        };
        assert!(validate(&ranges("10.0.0.0/8")).is_ok());
        assert!(validate(&ranges("10.0.0.0/33")).is_err());
    }

    #[test]
    fn an_unusable_reference_keeps_the_last_good_shape() {
        let good = mk_configs(node_port());
        let class = mk_class("c", ours(Some("portico-system"), "internal"));
        let mut resolver = ClassResolver::default();

        // Never valid: nothing to keep.
        let first = resolver.resolve(
            std::slice::from_ref(&class),
            &Index::default(),
            names::CONTROLLER_NAME,
        );
        assert_eq!(first["c"].service, None);
        assert!(first["c"].problem.is_some());

        let valid = resolver.resolve(std::slice::from_ref(&class), &good, names::CONTROLLER_NAME);
        assert_eq!(
            valid["c"],
            ClassParameters {
                service: Some(node_port()),
                problem: None
            }
        );

        let broken = resolver.resolve(
            std::slice::from_ref(&class),
            &Index::default(),
            names::CONTROLLER_NAME,
        );
        assert_eq!(broken["c"].service, Some(node_port()));
        assert!(
            broken["c"]
                .problem
                .as_deref()
                .unwrap_or_default()
                .contains("not found")
        );

        // Other controllers' classes are not ours to resolve.
        let mut theirs = mk_class("t", ours(None, "x"));
        theirs.spec.controller_name = "example.com/other".into();
        assert!(
            resolver
                .resolve(&[theirs], &good, names::CONTROLLER_NAME)
                .is_empty()
        );
    }

    #[test]
    fn the_translator_sees_resolved_classes_without_their_reference() {
        let configs = mk_configs(node_port());
        let mut classes = vec![
            mk_class("good", ours(Some("portico-system"), "internal")),
            mk_class("bad", ours(Some("portico-system"), "missing")),
        ];
        let parameters =
            ClassResolver::default().resolve(&classes, &configs, names::CONTROLLER_NAME);
        let original = for_translator(&mut classes, &parameters);
        assert!(classes[0].spec.parameters_ref.is_none());
        assert!(classes[1].spec.parameters_ref.is_some());
        assert!(original[0].spec.parameters_ref.is_some());

        let mut statuses = Statuses::default();
        statuses.gateway_classes.insert(
            "bad".into(),
            portico_translate::GatewayClassStatus {
                conditions: vec![portico_translate::Condition {
                    type_: condition::ACCEPTED.into(),
                    status: false.into(),
                    reason: names::reason::INVALID_PARAMETERS.into(),
                    message: "rejected".into(),
                    observed_generation: Some(1),
                }],
                supported_features: Vec::new(),
            },
        );
        report(&mut statuses, &parameters);
        let accepted = &statuses.gateway_classes["bad"].conditions[0];
        assert!(
            accepted
                .message
                .contains("portico-system/missing not found"),
            "{}",
            accepted.message
        );
        assert_eq!(accepted.reason, names::reason::INVALID_PARAMETERS);
    }
}
