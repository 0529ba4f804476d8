//! The Service a Gateway should have, and the addresses Services give Gateways.
//!
//! ```text
//!   Gateway ns/gw (class ours)              Service ns/portico-gateway-gw
//!   ├─ metadata.uid ──────────────────────> ownerReferences: [Gateway gw, controller]
//!   ├─ spec.infrastructure.labels ────────> labels (+ gateway.networking.k8s.io/gateway-name: gw)
//!   ├─ spec.infrastructure.annotations ───> annotations
//!   ├─ spec.listeners[].port, protocol ───> ports: one per (port, TCP|UDP), targetPort = the
//!   │                                        proxy port of (Gateway, port) (ProxyPorts)
//!   ├─ spec.addresses[] (IPAddress) ──────> annotation portico.dev/lb-ipam-ips (all of them)
//!   │                                        and loadBalancerIP (the first, for other LBs)
//!   └─ listeners of attached ListenerSets ─┘
//!                                           type: LoadBalancer
//!                                           selector: app.kubernetes.io/name=portico-proxy
//!   GatewayClass parametersRef ──> PorticoGatewayClassConfig spec.service ([`shape`]):
//!                                           type, externalTrafficPolicy, loadBalancerClass,
//!                                           loadBalancerSourceRanges, class annotations/labels
//!   status.addresses <── translator <──── status.loadBalancer.ingress[].ip
//! ```
//!
//! Gateway API, `spec.infrastructure`: "Labels that SHOULD be applied to any resources
//! created in response to this Gateway" and "Annotations that SHOULD be applied to any
//! resources created in response to this Gateway." Copying them is what lets users
//! annotate the load balancer (for example for the AWS load balancer controller) without
//! a mutation webhook.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use portico_api::gateway::{Gateway, GatewayClass, ListenerSet};
use portico_api::k8s::{IntOrString, ObjectMeta, Service, ServicePort};
use portico_api::k8s_openapi::api::core::v1::ServiceSpec;
use portico_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use portico_api::kube::Resource;
use portico_api::names::{self, condition};
use portico_api::portico::{ExternalTrafficPolicy, ServiceConfig, ServiceType};
use portico_translate::{ConditionStatus, Inputs, ObjectRef, ProxyPorts, Statuses};

use crate::service::name::{gateway_label_value, service_name};

/// The label that selects the proxy pods, which serve every Gateway.
pub const PROXY_SELECTOR_LABEL: &str = "app.kubernetes.io/name";
/// Its value.
pub const PROXY_SELECTOR_VALUE: &str = "portico-proxy";

/// The Service type of a Gateway's Service.
const LOAD_BALANCER: &str = "LoadBalancer";

/// The default (and only IP) type of a Gateway address.
const IP_ADDRESS: &str = "IPAddress";

/// The listener protocol carried over UDP; every other one is carried over TCP.
const UDP_LISTENER: &str = "UDP";

/// The Gateways whose GatewayClass has `controller_name`, in the snapshot's order.
pub fn our_gateways<'a>(
    inputs: &'a Inputs,
    controller_name: &'a str,
) -> impl Iterator<Item = &'a Gateway> + 'a {
    let ours: BTreeSet<&str> = inputs
        .gateway_classes
        .iter()
        .filter(|c: &&GatewayClass| c.spec.controller_name == controller_name)
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    inputs
        .gateways
        .iter()
        .filter(move |g| ours.contains(g.spec.gateway_class_name.as_str()))
}

/// The ListenerSets the translator attached to `gateway` (their status says
/// Accepted=True): their listeners are served through the Gateway's Service too.
pub fn attached_listener_sets<'a>(
    inputs: &'a Inputs,
    statuses: &Statuses,
    gateway: &Gateway,
) -> Vec<&'a ListenerSet> {
    let (Some(ns), Some(name)) = (
        gateway.metadata.namespace.as_deref(),
        gateway.metadata.name.as_deref(),
    ) else {
        return Vec::new();
    };
    inputs
        .listener_sets
        .iter()
        .filter(|set| {
            let parent = &set.spec.parent_ref;
            let parent_ns = parent
                .namespace
                .as_deref()
                .or(set.metadata.namespace.as_deref());
            parent.name == name && parent_ns == Some(ns)
        })
        .filter(|set| {
            let key = ObjectRef::new(
                set.metadata.namespace.clone().unwrap_or_default(),
                set.metadata.name.clone().unwrap_or_default(),
            );
            statuses.listener_sets.get(&key).is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == condition::ACCEPTED && c.status == ConditionStatus::True)
            })
        })
        .collect()
}

/// The Service `gateway` should have, with ports for its own listeners and those of
/// `listener_sets` (the ones attached to it); `None` for a Gateway without a namespace,
/// name or uid (one that did not come from an API server: it cannot own anything).
pub fn desired_service(gateway: &Gateway, listener_sets: &[&ListenerSet]) -> Option<Service> {
    desired_service_with(gateway, listener_sets, &ProxyPorts::default())
}

/// [`desired_service`] with each Service port targeting the proxy port `proxy_ports`
/// gives its (Gateway, listener port) (see `portico_translate::ProxyPorts`): what the
/// translator's proxy listeners bind in a cluster. A port without one targets itself.
pub fn desired_service_with(
    gateway: &Gateway,
    listener_sets: &[&ListenerSet],
    proxy_ports: &ProxyPorts,
) -> Option<Service> {
    let namespace = gateway.metadata.namespace.clone()?;
    let name = gateway.metadata.name.clone()?;
    let uid = gateway.metadata.uid.clone()?;
    let infra = gateway.spec.infrastructure.as_ref();

    let mut labels = infra.and_then(|i| i.labels.clone()).unwrap_or_default();
    labels.insert(
        names::GATEWAY_NAME_LABEL.to_owned(),
        gateway_label_value(&name),
    );
    let mut annotations = infra
        .and_then(|i| i.annotations.clone())
        .unwrap_or_default();
    let requested = requested_ips(gateway);
    if !requested.is_empty() {
        annotations.insert(
            names::LB_IPAM_IPS_ANNOTATION.to_owned(),
            requested.join(","),
        );
    }
    let key = ObjectRef::new(namespace.clone(), name.clone());

    let owner = OwnerReference {
        api_version: Gateway::api_version(&()).into_owned(),
        kind: Gateway::kind(&()).into_owned(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };

    Some(Service {
        metadata: ObjectMeta {
            name: Some(service_name(&name)),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(LOAD_BALANCER.to_owned()),
            selector: Some(BTreeMap::from([(
                PROXY_SELECTOR_LABEL.to_owned(),
                PROXY_SELECTOR_VALUE.to_owned(),
            )])),
            ports: Some(ports(gateway, listener_sets, |port| {
                u16::try_from(port)
                    .ok()
                    .and_then(|p| proxy_ports.get(&key, p))
                    .map_or(port, i32::from)
            })),
            load_balancer_ip: requested_ip(gateway),
            ..Default::default()
        }),
        status: None,
    })
}

/// Shapes a Gateway's Service as its class's `PorticoGatewayClassConfig` says: type,
/// externalTrafficPolicy, loadBalancerClass, loadBalancerSourceRanges, and the class's
/// annotations and labels under the Gateway's own (`spec.infrastructure` is the more
/// specific request, and the gateway-name label is ours). A Service that is not of type
/// LoadBalancer drops the load balancer fields, and `loadBalancerIP` with them: the API
/// server rejects them on other types.
///
/// externalTrafficPolicy is always set on LoadBalancer and NodePort Services (`Cluster`
/// when the class says nothing, the Kubernetes default): an unset field would let a
/// policy the class no longer asks for stay on the Service.
pub fn shape(service: &mut Service, config: &ServiceConfig) {
    let type_ = config.type_.unwrap_or_default();
    let meta = &mut service.metadata;
    for (from, to) in [
        (&config.annotations, &mut meta.annotations),
        (&config.labels, &mut meta.labels),
    ] {
        if let Some(from) = from.as_ref().filter(|f| !f.is_empty()) {
            let to = to.get_or_insert_default();
            for (k, v) in from {
                to.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let Some(spec) = service.spec.as_mut() else {
        return;
    };
    spec.type_ = Some(type_.as_str().to_owned());
    spec.external_traffic_policy = match type_ {
        ServiceType::ClusterIP => None,
        ServiceType::LoadBalancer | ServiceType::NodePort => Some(
            config
                .external_traffic_policy
                .unwrap_or(ExternalTrafficPolicy::Cluster)
                .as_str()
                .to_owned(),
        ),
    };
    if type_ == ServiceType::LoadBalancer {
        spec.load_balancer_class = config.load_balancer_class.clone();
        spec.load_balancer_source_ranges = config
            .load_balancer_source_ranges
            .clone()
            .filter(|r| !r.is_empty());
    } else {
        spec.load_balancer_class = None;
        spec.load_balancer_source_ranges = None;
        spec.load_balancer_ip = None;
    }
}

/// The address the Gateway asks for in `spec.addresses` (the first of type IPAddress,
/// the default type), as the Service's `loadBalancerIP`: the field load balancer
/// implementations (cloud controllers, MetalLB, LB-IPAM) read for a specific address.
/// Gateway API: "addresses requested for this Gateway [...] the implementation MUST
/// [...] set the Programmed condition to False with reason AddressNotAssigned" when it
/// cannot assign them; the translator reports that once the ingress does not match.
fn requested_ip(gateway: &Gateway) -> Option<String> {
    requested_ips(gateway).into_iter().next()
}

/// Every IPAddress value of `spec.addresses`, in order: LB-IPAM's request
/// (`portico.dev/lb-ipam-ips`), all or none.
fn requested_ips(gateway: &Gateway) -> Vec<String> {
    gateway
        .spec
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.r#type.as_deref().is_none_or(|t| t == IP_ADDRESS))
        .filter_map(|a| a.value.clone())
        .filter(|v| v.parse::<IpAddr>().is_ok())
        .collect()
}

/// One port per distinct (port, transport) among the listeners, sorted. Listeners that
/// share a port (several hostnames on 443) share the Service port.
fn ports(
    gateway: &Gateway,
    listener_sets: &[&ListenerSet],
    target: impl Fn(i32) -> i32,
) -> Vec<ServicePort> {
    let transport = |protocol: &str| {
        if protocol == UDP_LISTENER {
            "UDP"
        } else {
            "TCP"
        }
    };
    let own = gateway
        .spec
        .listeners
        .iter()
        .map(|l| (l.port, transport(&l.protocol)));
    let contributed = listener_sets
        .iter()
        .flat_map(|set| set.spec.listeners.iter())
        .map(|l| (l.port, transport(&l.protocol)));
    let distinct: BTreeSet<(i32, &str)> = own.chain(contributed).collect();
    distinct
        .into_iter()
        .map(|(port, transport)| ServicePort {
            name: Some(format!("{}-{port}", transport.to_ascii_lowercase())),
            port,
            protocol: Some(transport.to_owned()),
            target_port: Some(IntOrString::Int(target(port))),
            ..Default::default()
        })
        .collect()
}

/// The address each of our Gateways got from its Service's load balancer (the first
/// ingress IP), for the translator's `Options::assigned_addresses`. A Service counts only
/// while it is owned by the Gateway of the same uid, so that a user's Service that
/// happens to have the generated name is never taken for ours.
pub fn assigned_addresses(inputs: &Inputs, controller_name: &str) -> BTreeMap<ObjectRef, IpAddr> {
    let services: BTreeMap<(&str, &str), &Service> = inputs
        .services
        .iter()
        .filter_map(|s| {
            Some((
                (
                    s.metadata.namespace.as_deref()?,
                    s.metadata.name.as_deref()?,
                ),
                s,
            ))
        })
        .collect();
    let mut out = BTreeMap::new();
    for gateway in our_gateways(inputs, controller_name) {
        let (Some(ns), Some(name)) = (
            gateway.metadata.namespace.as_deref(),
            gateway.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let service_name = service_name(name);
        let Some(service) = services.get(&(ns, service_name.as_str())) else {
            continue;
        };
        if !owned_by(service, gateway) {
            continue;
        }
        if let Some(ip) = ingress_ip(service) {
            out.insert(ObjectRef::new(ns, name), ip);
        }
    }
    out
}

/// The Services we created for Gateways that still exist but are no longer ours (their
/// `gatewayClassName` now names another controller's class, or the class changed
/// hands). The garbage collector removes Services of deleted Gateways; these it never
/// would. Only a Service with exactly the name we give, controlled by that very Gateway,
/// counts: another implementation's Services for the same Gateway are left alone.
pub fn stale_services<'a>(inputs: &'a Inputs, controller_name: &str) -> Vec<&'a Service> {
    let ours: BTreeSet<ObjectRef> = our_gateways(inputs, controller_name)
        .map(|g| {
            ObjectRef::new(
                g.metadata.namespace.clone().unwrap_or_default(),
                g.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    let services: BTreeMap<(&str, &str), &Service> = inputs
        .services
        .iter()
        .filter_map(|s| {
            Some((
                (
                    s.metadata.namespace.as_deref()?,
                    s.metadata.name.as_deref()?,
                ),
                s,
            ))
        })
        .collect();
    inputs
        .gateways
        .iter()
        .filter_map(|g| {
            let (ns, name) = (
                g.metadata.namespace.as_deref()?,
                g.metadata.name.as_deref()?,
            );
            if ours.contains(&ObjectRef::new(ns, name)) {
                return None;
            }
            let service_name = service_name(name);
            let service = services.get(&(ns, service_name.as_str()))?;
            owned_by(service, g).then_some(*service)
        })
        .collect()
}

/// Whether `service` names `gateway` (same uid) as its controller.
pub fn owned_by(service: &Service, gateway: &Gateway) -> bool {
    let Some(uid) = gateway.metadata.uid.as_deref() else {
        return false;
    };
    service
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// The first IP among the Service's load balancer ingress points. Hostname-only ingress
/// (some cloud load balancers) gives no address yet.
fn ingress_ip(service: &Service) -> Option<IpAddr> {
    service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .iter()
        .flatten()
        .find_map(|i| i.ip.as_deref()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::gateway::gateways::{GatewayInfrastructure, GatewayListeners};
    use portico_api::gateway::listenersets::ListenerSetListeners;
    use portico_api::k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceStatus,
    };
    use portico_translate::{Condition, ListenerSetStatus};

    fn mk_class(name: &str, controller: &str) -> GatewayClass {
        let mut c = GatewayClass::default();
        c.metadata.name = Some(name.into());
        c.spec.controller_name = controller.into();
        c
    }

    fn mk_listener(name: &str, port: i32, protocol: &str) -> GatewayListeners {
        GatewayListeners {
            name: name.into(),
            port,
            protocol: protocol.into(),
            ..Default::default()
        }
    }

    fn mk_gateway(ns: &str, name: &str, class: &str, listeners: Vec<GatewayListeners>) -> Gateway {
        let mut g = Gateway::default();
        g.metadata.namespace = Some(ns.into());
        g.metadata.name = Some(name.into());
        g.metadata.uid = Some(format!("uid-{ns}-{name}"));
        g.spec.gateway_class_name = class.into();
        g.spec.listeners = listeners;
        g
    }

    fn with_ingress(mut s: Service, ip: &str) -> Service {
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ip.into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        s
    }

    #[test]
    fn service_follows_the_gateway() {
        let mut gw = mk_gateway(
            "apps",
            "web",
            "portico",
            vec![
                mk_listener("http", 80, "HTTP"),
                mk_listener("https-a", 443, "HTTPS"),
                mk_listener("https-b", 443, "HTTPS"),
                mk_listener("dns", 53, "UDP"),
            ],
        );
        gw.spec.infrastructure = Some(GatewayInfrastructure {
            labels: Some(BTreeMap::from([("team".into(), "web".into())])),
            annotations: Some(BTreeMap::from([(
                "service.beta.kubernetes.io/aws-load-balancer-scheme".into(),
                "internet-facing".into(),
            )])),
            parameters_ref: None,
        });
        let svc = desired_service(&gw, &[]).unwrap_or_default();
        assert_eq!(svc.metadata.name.as_deref(), Some("portico-gateway-web"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("apps"));
        let labels = svc.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("web"));
        assert_eq!(
            labels.get(names::GATEWAY_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        let annotations = svc.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get("service.beta.kubernetes.io/aws-load-balancer-scheme")
                .map(String::as_str),
            Some("internet-facing")
        );
        let owners = svc.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "Gateway");
        assert_eq!(owners[0].api_version, "gateway.networking.k8s.io/v1");
        assert_eq!(owners[0].uid, "uid-apps-web");
        assert_eq!(owners[0].controller, Some(true));

        let spec = svc.spec.unwrap_or_default();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            spec.selector
                .unwrap_or_default()
                .get(PROXY_SELECTOR_LABEL)
                .map(String::as_str),
            Some(PROXY_SELECTOR_VALUE)
        );
        let ports: Vec<(Option<String>, i32, Option<String>)> = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.port, p.protocol))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("udp-53".into()), 53, Some("UDP".into())),
                (Some("tcp-80".into()), 80, Some("TCP".into())),
                (Some("tcp-443".into()), 443, Some("TCP".into())),
            ]
        );
    }

    fn mk_listener_set(ns: &str, name: &str, parent: &str, port: i32) -> ListenerSet {
        let mut set = ListenerSet::default();
        set.metadata.namespace = Some(ns.into());
        set.metadata.name = Some(name.into());
        set.spec.parent_ref.name = parent.into();
        set.spec.parent_ref.namespace = Some("apps".into());
        set.spec.listeners = vec![ListenerSetListeners {
            name: "extra".into(),
            port,
            protocol: "HTTP".into(),
            ..Default::default()
        }];
        set
    }

    fn mk_set_status(accepted: bool) -> ListenerSetStatus {
        ListenerSetStatus {
            conditions: vec![Condition {
                type_: condition::ACCEPTED.into(),
                status: accepted.into(),
                reason: String::new(),
                message: String::new(),
                observed_generation: Some(1),
            }],
            listeners: Vec::new(),
        }
    }

    #[test]
    fn attached_listener_sets_add_their_ports() {
        let gw = mk_gateway(
            "apps",
            "web",
            "portico",
            vec![mk_listener("http", 80, "HTTP")],
        );
        let inputs = Inputs {
            gateways: vec![gw.clone()],
            listener_sets: vec![
                mk_listener_set("team-a", "accepted", "web", 8081),
                mk_listener_set("team-b", "refused", "web", 8082),
                mk_listener_set("team-c", "elsewhere", "other", 8083),
            ],
            ..Default::default()
        };
        let mut statuses = Statuses::default();
        for (ns, name, accepted) in [
            ("team-a", "accepted", true),
            ("team-b", "refused", false),
            ("team-c", "elsewhere", true),
        ] {
            statuses
                .listener_sets
                .insert(ObjectRef::new(ns, name), mk_set_status(accepted));
        }
        let sets = attached_listener_sets(&inputs, &statuses, &gw);
        let names: Vec<Option<&str>> = sets.iter().map(|s| s.metadata.name.as_deref()).collect();
        assert_eq!(names, [Some("accepted")]);
        let ports: Vec<i32> = desired_service(&gw, &sets)
            .and_then(|s| s.spec?.ports)
            .unwrap_or_default()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, [80, 8081]);
    }

    #[test]
    fn a_user_label_cannot_override_the_gateway_name_label() {
        let mut gw = mk_gateway("a", "real", "portico", vec![]);
        gw.spec.infrastructure = Some(GatewayInfrastructure {
            labels: Some(BTreeMap::from([(
                names::GATEWAY_NAME_LABEL.into(),
                "other".into(),
            )])),
            ..Default::default()
        });
        let labels = desired_service(&gw, &[])
            .and_then(|s| s.metadata.labels)
            .unwrap_or_default();
        assert_eq!(
            labels.get(names::GATEWAY_NAME_LABEL).map(String::as_str),
            Some("real")
        );
    }

    #[test]
    fn a_requested_ip_address_goes_to_the_load_balancer() {
        use portico_api::gateway::gateways::GatewayAddresses;
        let mut gw = mk_gateway("a", "g", "portico", vec![mk_listener("h", 80, "HTTP")]);
        let lb_ip = |gw: &Gateway| desired_service(gw, &[]).and_then(|s| s.spec?.load_balancer_ip);
        assert_eq!(lb_ip(&gw), None);
        gw.spec.addresses = Some(vec![
            GatewayAddresses {
                r#type: Some("Hostname".into()),
                value: Some("lb.example".into()),
            },
            GatewayAddresses {
                r#type: None,
                value: Some("10.0.0.7".into()),
            },
        ]);
        assert_eq!(lb_ip(&gw).as_deref(), Some("10.0.0.7"));
        // An IPAddress without a value asks for any address: nothing specific.
        gw.spec.addresses = Some(vec![GatewayAddresses {
            r#type: Some(IP_ADDRESS.into()),
            value: None,
        }]);
        assert_eq!(lb_ip(&gw), None);
    }

    #[test]
    fn services_of_gateways_that_left_our_class_are_stale() {
        let kept = mk_gateway("a", "kept", "portico", vec![]);
        let moved = mk_gateway("a", "moved", "other", vec![]);
        let foreign = mk_gateway("a", "foreign", "other", vec![]);
        let kept_svc = desired_service(&kept, &[]).unwrap_or_default();
        let moved_svc = desired_service(&moved, &[]).unwrap_or_default();
        // Named like ours, but the other implementation's: not controlled by the Gateway.
        let mut foreign_svc = Service::default();
        foreign_svc.metadata.namespace = Some("a".into());
        foreign_svc.metadata.name = Some(service_name("foreign"));
        let inputs = Inputs {
            gateway_classes: vec![
                mk_class("portico", names::CONTROLLER_NAME),
                mk_class("other", "example.com/other"),
            ],
            gateways: vec![kept, moved, foreign],
            services: vec![kept_svc, moved_svc, foreign_svc],
            ..Default::default()
        };
        let stale: Vec<Option<&str>> = stale_services(&inputs, names::CONTROLLER_NAME)
            .iter()
            .map(|s| s.metadata.name.as_deref())
            .collect();
        assert_eq!(stale, [Some("portico-gateway-moved")]);
    }

    #[test]
    fn the_class_shapes_the_service_under_the_gateways_own_requests() {
        use portico_api::gateway::gateways::GatewayAddresses;
        let mut gw = mk_gateway("a", "g", "portico", vec![mk_listener("h", 80, "HTTP")]);
        gw.spec.infrastructure = Some(GatewayInfrastructure {
            annotations: Some(BTreeMap::from([(
                "scheme".into(),
                "internet-facing".into(),
            )])),
            ..Default::default()
        });
        gw.spec.addresses = Some(vec![GatewayAddresses {
            r#type: None,
            value: Some("10.0.0.7".into()),
        }]);
        let base = desired_service(&gw, &[]).unwrap_or_default();
        let config = ServiceConfig {
            load_balancer_class: Some("service.k8s.aws/nlb".into()),
            load_balancer_source_ranges: Some(vec!["10.0.0.0/8".into()]),
            annotations: Some(BTreeMap::from([
                ("scheme".into(), "internal".into()),
                ("class-only".into(), "yes".into()),
            ])),
            labels: Some(BTreeMap::from([(
                names::GATEWAY_NAME_LABEL.into(),
                "not-this".into(),
            )])),
            ..Default::default()
        };
        let mut lb = base.clone();
        shape(&mut lb, &config);
        let annotations = lb.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations["scheme"], "internet-facing",
            "the Gateway's wins"
        );
        assert_eq!(annotations["class-only"], "yes");
        assert_eq!(
            lb.metadata.labels.clone().unwrap_or_default()[names::GATEWAY_NAME_LABEL],
            "g"
        );
        let spec = lb.spec.clone().unwrap_or_default();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(
            spec.load_balancer_class.as_deref(),
            Some("service.k8s.aws/nlb")
        );
        assert_eq!(
            spec.load_balancer_source_ranges,
            Some(vec!["10.0.0.0/8".to_owned()])
        );
        assert_eq!(spec.load_balancer_ip.as_deref(), Some("10.0.0.7"));

        let mut cluster_ip = base;
        shape(
            &mut cluster_ip,
            &ServiceConfig {
                type_: Some(ServiceType::ClusterIP),
                ..config
            },
        );
        let spec = cluster_ip.spec.unwrap_or_default();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.external_traffic_policy, None);
        assert_eq!(spec.load_balancer_class, None);
        assert_eq!(spec.load_balancer_source_ranges, None);
        assert_eq!(spec.load_balancer_ip, None);
    }

    #[test]
    fn gateways_without_uid_get_no_service() {
        let mut gw = mk_gateway("a", "g", "portico", vec![]);
        gw.metadata.uid = None;
        assert!(desired_service(&gw, &[]).is_none());
    }

    #[test]
    fn addresses_come_from_owned_services_of_our_gateways() {
        let ours = mk_gateway("a", "mine", "portico", vec![mk_listener("h", 80, "HTTP")]);
        let theirs = mk_gateway("a", "theirs", "other", vec![mk_listener("h", 80, "HTTP")]);
        let impostor_gw = mk_gateway("a", "impostor", "portico", vec![]);
        let mine_svc = with_ingress(desired_service(&ours, &[]).unwrap_or_default(), "10.1.2.3");
        let theirs_svc = with_ingress(
            desired_service(&theirs, &[]).unwrap_or_default(),
            "10.1.2.4",
        );
        // Same name as the Service the impostor Gateway would get, but not owned by it.
        let mut impostor_svc = Service::default();
        impostor_svc.metadata.namespace = Some("a".into());
        impostor_svc.metadata.name = Some("portico-gateway-impostor".into());
        let impostor_svc = with_ingress(impostor_svc, "10.1.2.5");
        let inputs = Inputs {
            gateway_classes: vec![
                mk_class("portico", names::CONTROLLER_NAME),
                mk_class("other", "example.com/other"),
            ],
            gateways: vec![ours, theirs, impostor_gw],
            services: vec![mine_svc, theirs_svc, impostor_svc],
            ..Default::default()
        };
        let got = assigned_addresses(&inputs, names::CONTROLLER_NAME);
        let want = BTreeMap::from([(
            ObjectRef::new("a", "mine"),
            "10.1.2.3"
                .parse::<IpAddr>()
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        )]);
        assert_eq!(got, want);
    }
}
