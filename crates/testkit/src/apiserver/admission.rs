//! Admission: the defaulting and validation a real API server applies on every write,
//! for the facts Portico meets. Custom resources get their schema's defaults, pruning
//! and validation ([`super::schema`]); built-in kinds get the rules below; every object
//! gets name, label and ownerReference checks.
//!
//! Rules kept from the real server (k8s.io/kubernetes pkg/apis/*/validation):
//! - EndpointSlice addresses "may not be in the loopback range (127.0.0.0/8, ::1/128)"
//!   nor link-local, and must parse as the slice's addressType.
//! - Service and Namespace names are DNS labels (63 characters); most others are DNS
//!   subdomains (253).
//! - Service: type, port range, protocol, named ports when there are several; defaults
//!   for type, ClusterIP (allocated from 10.96.0.0/12), NodePorts (30000-32767) for
//!   NodePort and LoadBalancer, targetPort, traffic policies. Allocated ClusterIP and
//!   NodePorts survive an update that leaves them out.
//! - Namespace: label `kubernetes.io/metadata.name` and phase Active.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};

use super::error::FieldError;
use super::resources::ResourceType;
use super::schema;
use super::store::Store;

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Label values and the name part of keys: `(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?`.
fn is_qualified_part(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    let b = s.as_bytes();
    s.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_qualified_part(name, false),
        None => is_qualified_part(key, false),
    }
}

/// Name rules by kind: DNS-1035 label for Services, DNS label for Namespaces, DNS
/// subdomain for the rest.
fn check_name(rt: &ResourceType, name: &str, errors: &mut Vec<FieldError>) {
    let v = Value::from(name);
    let ok = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Service") => is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
        ("", "Namespace") => is_dns_label(name),
        _ => is_dns_subdomain(name),
    };
    if !ok {
        let why = match rt.kind.as_str() {
            "Service" => {
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (at most 63 characters)"
            }
            "Namespace" => {
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (at most 63 characters)"
            }
            _ => {
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (at most 253 characters)"
            }
        };
        errors.push(FieldError::invalid("metadata.name", &v, why));
    }
}

/// Metadata checks every kind gets: name, labels, annotation keys, ownerReferences.
pub(crate) fn check_metadata(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let meta = &obj["metadata"];
    check_name(rt, meta["name"].as_str().unwrap_or_default(), &mut errors);
    for (k, v) in meta["labels"].as_object().into_iter().flatten() {
        if !is_qualified_name(k) {
            errors.push(FieldError::invalid("metadata.labels", &Value::from(k.clone()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
        if !v.as_str().is_some_and(|s| is_qualified_part(s, true)) {
            errors.push(FieldError::invalid("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)"));
        }
    }
    for k in meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        if !is_qualified_name(&k.to_lowercase()) {
            errors.push(FieldError::invalid(
                "metadata.annotations",
                &Value::from(k.clone()),
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
    }
    let mut controllers = 0;
    for (i, r) in meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for f in ["apiVersion", "kind", "name", "uid"] {
            if r[f].as_str().is_none_or(str::is_empty) {
                errors.push(FieldError::required(
                    format!("metadata.ownerReferences[{i}].{f}"),
                    "",
                ));
            }
        }
        if r["controller"].as_bool() == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errors.push(FieldError::invalid(
            "metadata.ownerReferences",
            &meta["ownerReferences"],
            "Only one reference can have Controller set to true",
        ));
    }
    errors
}

/// Defaulting for an object about to be stored (`old`: its previous state on update).
pub(crate) fn default(
    rt: &ResourceType,
    version: &str,
    obj: &mut Value,
    old: Option<&Value>,
    store: &mut Store,
) {
    if let Some(s) = rt.schema(version) {
        schema::default_and_prune(obj, s);
        return;
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if obj["status"]["phase"].is_null() {
                obj["status"]["phase"] = json!("Active");
            }
        }
        ("", "Service") => default_service(obj, old, store),
        ("", "Secret") if obj["type"].is_null() => obj["type"] = json!("Opaque"),
        ("", "Pod") if obj["status"]["phase"].is_null() => {
            obj["status"]["phase"] = json!("Pending")
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for p in obj["ports"].as_array_mut().into_iter().flatten() {
                if p["protocol"].is_null() {
                    p["protocol"] = json!("TCP");
                }
            }
        }
        _ => {}
    }
}

fn default_service(obj: &mut Value, old: Option<&Value>, store: &mut Store) {
    let spec = &mut obj["spec"];
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if ty != "ExternalName" {
        if spec["internalTrafficPolicy"].is_null() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
        let old_ip = old
            .and_then(|o| o["spec"]["clusterIP"].as_str())
            .map(str::to_string);
        if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
            let ip = old_ip.unwrap_or_else(|| {
                let n = store.next_cluster_ip;
                store.next_cluster_ip += 1;
                // 10.96.0.0/12: addresses on paper only, never a traffic target.
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + n).to_string()
            });
            spec["clusterIP"] = json!(ip);
        }
        if spec["clusterIPs"].is_null() {
            spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
        }
        if spec["ipFamilies"].is_null() && spec["clusterIP"] != "None" {
            spec["ipFamilies"] = json!(["IPv4"]);
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        if spec["externalTrafficPolicy"].is_null() {
            spec["externalTrafficPolicy"] = json!("Cluster");
        }
        if ty == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
            spec["allocateLoadBalancerNodePorts"] = json!(true);
        }
    }
    let wants_node_ports = ty == "NodePort"
        || (ty == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"] != json!(false));
    let old_ports: Vec<Value> = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    for p in spec["ports"].as_array_mut().into_iter().flatten() {
        if p["protocol"].is_null() {
            p["protocol"] = json!("TCP");
        }
        if p["targetPort"].is_null() {
            p["targetPort"] = p["port"].clone();
        }
        if wants_node_ports && p["nodePort"].is_null() {
            let kept = old_ports
                .iter()
                .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                .and_then(|o| o["nodePort"].as_u64());
            let port = kept.unwrap_or_else(|| {
                let n = store.next_node_port;
                store.next_node_port = if n >= 32767 { 30000 } else { n + 1 };
                u64::from(n)
            });
            p["nodePort"] = json!(port);
        }
    }
    if obj["status"].is_null() {
        obj["status"] = json!({"loadBalancer": {}});
    }
}

/// Kind-specific validation (custom resources: their schema).
pub(crate) fn validate(rt: &ResourceType, version: &str, obj: &Value) -> Vec<FieldError> {
    let mut errors = check_metadata(rt, obj);
    if let Some(s) = rt.schema(version) {
        errors.extend(schema::validate(obj, s));
        return errors;
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("discovery.k8s.io", "EndpointSlice") => validate_endpoint_slice(obj, &mut errors),
        ("", "Service") => validate_service(obj, &mut errors),
        ("", "Secret") if obj["type"] == "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if obj["data"].get(k).is_none() {
                    errors.push(FieldError::required(format!("data[{k}]"), ""));
                }
            }
        }
        ("coordination.k8s.io", "Lease") => {
            if let Some(d) = obj["spec"]["leaseDurationSeconds"].as_i64()
                && d <= 0
            {
                errors.push(FieldError::invalid(
                    "spec.leaseDurationSeconds",
                    &json!(d),
                    "must be greater than 0",
                ));
            }
        }
        _ => {}
    }
    errors
}

fn validate_endpoint_slice(obj: &Value, errors: &mut Vec<FieldError>) {
    let ty = obj["addressType"].as_str().unwrap_or_default();
    if !matches!(ty, "IPv4" | "IPv6" | "FQDN") {
        errors.push(FieldError::unsupported(
            "addressType",
            &obj["addressType"],
            &[json!("IPv4"), json!("IPv6"), json!("FQDN")],
        ));
        return;
    }
    for (i, ep) in obj["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let addresses = ep["addresses"].as_array().cloned().unwrap_or_default();
        if addresses.is_empty() || addresses.len() > 100 {
            errors.push(FieldError::invalid(
                format!("endpoints[{i}].addresses"),
                &ep["addresses"],
                "must contain at least 1 and at most 100 addresses",
            ));
        }
        for (j, a) in addresses.iter().enumerate() {
            let field = format!("endpoints[{i}].addresses[{j}]");
            let text = a.as_str().unwrap_or_default();
            if ty == "FQDN" {
                if !is_dns_subdomain(text) {
                    errors.push(FieldError::invalid(field, a, "must be a valid FQDN"));
                }
                continue;
            }
            let ip: Option<IpAddr> = text.parse().ok();
            let family_ok = matches!(
                (ty, ip),
                ("IPv4", Some(IpAddr::V4(_))) | ("IPv6", Some(IpAddr::V6(_)))
            );
            if !family_ok {
                errors.push(FieldError::invalid(
                    field,
                    a,
                    &format!("must be a valid {ty} address"),
                ));
                continue;
            }
            match ip {
                Some(ip) if ip.is_loopback() => errors.push(FieldError::invalid(
                    field,
                    a,
                    "may not be in the loopback range (127.0.0.0/8, ::1/128)",
                )),
                Some(IpAddr::V4(v4)) if v4.is_link_local() => errors.push(FieldError::invalid(
                    field,
                    a,
                    "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                )),
                Some(IpAddr::V6(v6)) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
                    errors.push(FieldError::invalid(
                        field,
                        a,
                        "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                    ))
                }
                Some(ip) if ip.is_unspecified() => errors.push(FieldError::invalid(
                    field,
                    a,
                    "may not be unspecified (0.0.0.0, ::)",
                )),
                _ => {}
            }
        }
    }
    for (i, p) in obj["ports"].as_array().into_iter().flatten().enumerate() {
        if let Some(port) = p["port"].as_i64()
            && !(0..=65535).contains(&port)
        {
            errors.push(FieldError::invalid(
                format!("ports[{i}].port"),
                &p["port"],
                "must be between 0 and 65535, inclusive",
            ));
        }
    }
}

fn validate_service(obj: &Value, errors: &mut Vec<FieldError>) {
    let spec = &obj["spec"];
    let ty = &spec["type"];
    let allowed = [
        json!("ClusterIP"),
        json!("NodePort"),
        json!("LoadBalancer"),
        json!("ExternalName"),
    ];
    if !allowed.contains(ty) {
        errors.push(FieldError::unsupported("spec.type", ty, &allowed));
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errors.push(FieldError::required("spec.ports", ""));
    }
    let mut names = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errors.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                &p["port"],
                "must be between 1 and 65535, inclusive",
            ));
        }
        let protos = [json!("TCP"), json!("UDP"), json!("SCTP")];
        if !protos.contains(&p["protocol"]) {
            errors.push(FieldError::unsupported(
                format!("spec.ports[{i}].protocol"),
                &p["protocol"],
                &protos,
            ));
        }
        let name = p["name"].as_str().unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            errors.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
        }
        if !name.is_empty() {
            if names.contains(&name) {
                errors.push(FieldError {
                    field: format!("spec.ports[{i}].name"),
                    reason: "FieldValueDuplicate",
                    message: format!("Duplicate value: \"{name}\""),
                });
            }
            names.push(name);
        }
        if let Some(np) = p["nodePort"].as_i64()
            && !(30000..=32767).contains(&np)
        {
            errors.push(FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                &p["nodePort"],
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::apiserver::resources::Registry;

    fn rt(group: &str, plural: &str) -> std::sync::Arc<ResourceType> {
        Registry::with_builtins().get(group, plural).unwrap()
    }

    #[test]
    fn endpoint_slice_rejects_loopback_and_link_local() {
        let es = json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": [
            {"addresses": ["127.0.0.1"]}, {"addresses": ["169.254.1.1"]}, {"addresses": ["10.0.0.1"]},
            {"addresses": ["::1"]}]});
        let errs = validate(&rt("discovery.k8s.io", "endpointslices"), "v1", &es);
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "endpoints[1].addresses[0]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                "endpoints[3].addresses[0]: Invalid value: \"::1\": must be a valid IPv4 address",
            ]
        );
    }

    #[test]
    fn service_names_are_dns_1035_labels() {
        let svc = rt("", "services");
        let long = "a".repeat(64);
        for (name, ok) in [
            ("web", true),
            ("1web", false),
            (long.as_str(), false),
            ("a.b", false),
        ] {
            let obj = json!({"metadata": {"name": name}, "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}});
            assert_eq!(validate(&svc, "v1", &obj).is_empty(), ok, "{name}");
        }
    }

    #[test]
    fn service_defaults_keep_allocations() {
        let mut store = Store::new(10);
        let svc = rt("", "services");
        let mut obj = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        default(&svc, "v1", &mut obj, None, &mut store);
        assert_eq!(obj["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(obj["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(obj["spec"]["ports"][0]["targetPort"], 80);
        let mut again = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        default(&svc, "v1", &mut again, Some(&obj), &mut store);
        assert_eq!(again["spec"], obj["spec"]);
    }

    #[test]
    fn labels_are_checked() {
        let cm = rt("", "configmaps");
        let bad = json!({"metadata": {"name": "c", "labels": {"ok/a": "-bad"}}});
        assert_eq!(validate(&cm, "v1", &bad).len(), 1);
        let good =
            json!({"metadata": {"name": "c", "labels": {"example.com/a": "x_y.z", "b": ""}}});
        assert!(validate(&cm, "v1", &good).is_empty());
    }
}
