//! A LoadBalancer Service as LB-IPAM reads it: is it ours to serve, which addresses it
//! asks for, which families it wants, and which addresses it already shows.

use std::collections::BTreeMap;
use std::net::IpAddr;

use portico_api::k8s::{Service, Time};
use portico_api::names;

use crate::object::ObjectKey;

/// What the allocator needs to know of one Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub key: ObjectKey,
    pub uid: Option<String>,
    /// Older Services keep contested addresses (ties broken by key).
    pub created: Option<Time>,
    pub labels: BTreeMap<String, String>,
    /// Specific addresses asked for (`portico.dev/lb-ipam-ips`, else
    /// `spec.loadBalancerIP`); empty: any address of a matching pool.
    pub requested: Vec<IpAddr>,
    /// Requested values that are not addresses: the request cannot be served.
    pub invalid_requests: Vec<String>,
    /// `spec.ipFamilies[0]` when set: `Some(true)` for IPv4.
    pub wants_ipv4: Option<bool>,
    /// The addresses the Service shows in `status.loadBalancer.ingress`.
    pub current: Vec<IpAddr>,
}

const LOAD_BALANCER: &str = "LoadBalancer";

/// Whether LB-IPAM serves `service`: type LoadBalancer, with no `loadBalancerClass`
/// (the default implementation's, which we are when installed with LB-IPAM) or ours.
/// Kubernetes (Service spec.loadBalancerClass): "If specified, the value of this field
/// must be a label-style identifier [...] This field can only be set when the Service
/// type is 'LoadBalancer'. If not set, the default load balancer implementation is
/// used."
pub fn is_ours(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() == Some(LOAD_BALANCER)
        && spec
            .load_balancer_class
            .as_deref()
            .is_none_or(|c| c == names::LB_CLASS)
}

impl Request {
    pub fn from_service(service: &Service) -> Self {
        let meta = &service.metadata;
        let spec = service.spec.as_ref();
        let mut requested = Vec::new();
        let mut invalid_requests = Vec::new();
        let annotated = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::LB_IPAM_IPS_ANNOTATION));
        let values: Vec<&str> = match annotated {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect(),
            None => spec
                .and_then(|s| s.load_balancer_ip.as_deref())
                .filter(|v| !v.is_empty())
                .into_iter()
                .collect(),
        };
        for v in values {
            match v.parse::<IpAddr>() {
                Ok(ip) if !requested.contains(&ip) => requested.push(ip),
                Ok(_) => {}
                Err(_) => invalid_requests.push(v.to_owned()),
            }
        }
        let wants_ipv4 = spec
            .and_then(|s| s.ip_families.as_ref())
            .and_then(|f| f.first())
            .map(|f| f == "IPv4");
        let current = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect();
        Self {
            key: ObjectKey::of(service),
            uid: meta.uid.clone(),
            created: meta.creation_timestamp.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
            requested,
            invalid_requests,
            wants_ipv4,
            current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::k8s_openapi::api::core::v1::ServiceSpec;

    fn mk_service(type_: &str, class: Option<&str>) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some("a".into());
        s.metadata.name = Some("s".into());
        s.spec = Some(ServiceSpec {
            type_: Some(type_.into()),
            load_balancer_class: class.map(Into::into),
            ..Default::default()
        });
        s
    }

    #[test]
    fn only_load_balancers_without_another_class() {
        assert!(is_ours(&mk_service("LoadBalancer", None)));
        assert!(is_ours(&mk_service("LoadBalancer", Some(names::LB_CLASS))));
        assert!(!is_ours(&mk_service(
            "LoadBalancer",
            Some("service.k8s.aws/nlb")
        )));
        assert!(!is_ours(&mk_service("ClusterIP", None)));
        assert!(!is_ours(&Service::default()));
    }

    #[test]
    fn the_annotation_wins_over_load_balancer_ip() {
        let mut s = mk_service("LoadBalancer", None);
        if let Some(spec) = s.spec.as_mut() {
            spec.load_balancer_ip = Some("10.0.0.9".into());
        }
        let r = Request::from_service(&s);
        assert_eq!(
            r.requested,
            vec!["10.0.0.9".parse::<IpAddr>().unwrap_or(IpAddr::from([0; 4]))]
        );
        s.metadata.annotations = Some(
            [(
                names::LB_IPAM_IPS_ANNOTATION.to_string(),
                "10.0.0.1, 2001:db8::1,10.0.0.1,bogus".to_string(),
            )]
            .into(),
        );
        let r = Request::from_service(&s);
        assert_eq!(
            r.requested
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["10.0.0.1", "2001:db8::1"]
        );
        assert_eq!(r.invalid_requests, ["bogus"]);
    }
}
