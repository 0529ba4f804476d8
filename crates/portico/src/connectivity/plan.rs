//! The objects of the connectivity test, as JSON manifests: a pure function of the
//! cluster's nodes and the flags, so it is tested without a cluster.

use std::collections::BTreeMap;
use std::net::IpAddr;

use portico_api::k8s::Secret;
use portico_api::k8s_openapi::ByteString;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

/// The backend every plain check expects, on the first node.
pub(crate) const ECHO_SAME: &str = "echo-same-node";
/// The second backend, on another node when there is one.
pub(crate) const ECHO_OTHER: &str = "echo-other-node";
/// The NodePort Service (in front of [`ECHO_SAME`]).
pub(crate) const NODEPORT: &str = "echo-nodeport";
pub(crate) const GATEWAY: &str = "connectivity";
pub(crate) const TLS_SECRET: &str = "connectivity-tls";
/// The Gateway listeners' and routes' hostname.
pub(crate) const HOSTNAME: &str = "connectivity.portico.test";
/// The header the header-filter route adds.
pub(crate) const HEADER: &str = "x-portico-connectivity";
/// Path prefixes of the routes.
pub(crate) const SPLIT_PATH: &str = "/split";
pub(crate) const HEADER_PATH: &str = "/header";
/// Weights of the split route.
pub(crate) const SPLIT: [(&str, u32); 2] = [(ECHO_SAME, 3), (ECHO_OTHER, 1)];
/// The echo containers' port.
const ECHO_PORT: u16 = 8080;
/// Label on everything the test makes.
const TEST_LABEL: &str = "portico.dev/connectivity-test";

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    pub(crate) name: String,
    /// Its InternalIP (else first) address.
    pub(crate) address: Option<IpAddr>,
}

/// What the plan is made from.
#[derive(Debug, Clone)]
pub(crate) struct PlanInput {
    pub(crate) namespace: String,
    pub(crate) gateway_class: String,
    pub(crate) echo_image: String,
    pub(crate) cli_image: String,
    pub(crate) nodes: Vec<NodeInfo>,
    /// The value the header filter adds (random per run, so an old answer cannot pass).
    pub(crate) header_value: String,
}

impl PlanInput {
    /// Whether the backends can be put on two different nodes.
    pub(crate) fn multi_node(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The node a backend is pinned to: only with two nodes or more.
    fn node_of(&self, backend: &str) -> Option<&str> {
        if !self.multi_node() {
            return None;
        }
        let index = usize::from(backend == ECHO_OTHER);
        self.nodes.get(index).map(|n| n.name.as_str())
    }
}

/// A CA and a certificate for [`HOSTNAME`] signed by it, as PEM.
#[derive(Debug, Clone)]
pub(crate) struct TestCerts {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl TestCerts {
    pub(crate) fn generate() -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "portico connectivity test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![HOSTNAME.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, HOSTNAME);
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn labels(app: &str) -> Value {
    json!({"app": app, TEST_LABEL: "true"})
}

pub(crate) fn namespace(input: &PlanInput) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": input.namespace, "labels": {TEST_LABEL: "true"}},
    })
}

/// Everything but the namespace and the client pods, in the order to apply them.
pub(crate) fn backends(input: &PlanInput, certs: &TestCerts) -> Vec<Value> {
    let ns = input.namespace.as_str();
    let mut objects = vec![tls_secret(ns, certs)];
    for backend in [ECHO_SAME, ECHO_OTHER] {
        objects.push(deployment(input, backend));
        objects.push(service(ns, backend, backend, "ClusterIP"));
    }
    objects.push(service(ns, NODEPORT, ECHO_SAME, "NodePort"));
    objects.push(gateway(input));
    objects.extend(routes(input));
    objects
}

fn tls_secret(ns: &str, certs: &TestCerts) -> Value {
    let data = BTreeMap::from([
        (
            "tls.crt".to_owned(),
            ByteString(certs.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(certs.key_pem.clone().into_bytes()),
        ),
        (
            "ca.crt".to_owned(),
            ByteString(certs.ca_pem.clone().into_bytes()),
        ),
    ]);
    let secret = Secret {
        data: Some(data),
        type_: Some("kubernetes.io/tls".to_owned()),
        ..Secret::default()
    };
    let mut value = serde_json::to_value(secret).unwrap_or(Value::Null);
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Secret");
    value["metadata"] =
        json!({"name": TLS_SECRET, "namespace": ns, "labels": {TEST_LABEL: "true"}});
    value
}

fn deployment(input: &PlanInput, backend: &str) -> Value {
    let mut pod_spec = json!({
        "containers": [{
            "name": "echo",
            "image": input.echo_image,
            "ports": [{"name": "http", "containerPort": ECHO_PORT}],
            "env": [
                {"name": "HTTP_PORT", "value": ECHO_PORT.to_string()},
                {"name": "SERVICE_NAME", "value": backend},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ],
            "readinessProbe": {"tcpSocket": {"port": ECHO_PORT}, "periodSeconds": 2},
        }],
    });
    if let Some(node) = input.node_of(backend) {
        pod_spec["nodeName"] = json!(node);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": backend, "namespace": input.namespace, "labels": labels(backend)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": backend}},
            "template": {"metadata": {"labels": labels(backend)}, "spec": pod_spec},
        },
    })
}

fn service(ns: &str, name: &str, backend: &str, kind: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels(backend)},
        "spec": {
            "type": kind,
            "selector": {"app": backend},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    })
}

fn gateway(input: &PlanInput) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": input.namespace, "labels": {TEST_LABEL: "true"}},
        "spec": {
            "gatewayClassName": input.gateway_class,
            "listeners": [
                {"name": "http", "protocol": "HTTP", "port": 80,
                 "allowedRoutes": {"namespaces": {"from": "Same"}}},
                {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": HOSTNAME,
                 "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": TLS_SECRET}]},
                 "allowedRoutes": {"namespaces": {"from": "Same"}}},
            ],
        },
    })
}

fn routes(input: &PlanInput) -> Vec<Value> {
    let ns = input.namespace.as_str();
    let prefix = |path: &str| json!([{"path": {"type": "PathPrefix", "value": path}}]);
    let to = |backend: &str, weight: u32| json!({"name": backend, "port": 80, "weight": weight});
    let route = |name: &str, rules: Value| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "labels": {TEST_LABEL: "true"}},
            "spec": {
                "parentRefs": [{"name": GATEWAY}],
                "hostnames": [HOSTNAME],
                "rules": rules,
            },
        })
    };
    let split: Vec<Value> = SPLIT.iter().map(|(b, w)| to(b, *w)).collect();
    vec![
        route(
            "connectivity-basic",
            json!([
                {"matches": prefix("/"), "backendRefs": [to(ECHO_SAME, 1)]},
                {"matches": prefix(HEADER_PATH),
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"add": [{"name": HEADER, "value": input.header_value}]}}],
                 "backendRefs": [to(ECHO_SAME, 1)]},
            ]),
        ),
        route(
            "connectivity-split",
            json!([{"matches": prefix(SPLIT_PATH), "backendRefs": split}]),
        ),
    ]
}

/// A client pod running `portico connectivity probe --url <url> <extra...>`, on `node`
/// if given, in the host's network namespace if `host_network`.
pub(crate) fn client_pod(
    input: &PlanInput,
    name: &str,
    node: Option<&str>,
    host_network: bool,
    url: &str,
    count: u32,
) -> Value {
    let args = vec![
        "connectivity".to_owned(),
        "probe".to_owned(),
        "--url".to_owned(),
        url.to_owned(),
        "--count".to_owned(),
        count.to_string(),
    ];
    let mut spec = json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": "client",
            "image": input.cli_image,
            "args": args,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
    });
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    if host_network {
        spec["hostNetwork"] = json!(true);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": input.namespace, "labels": labels(name)},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn input(nodes: usize) -> PlanInput {
        PlanInput {
            namespace: "portico-test".into(),
            gateway_class: "portico".into(),
            echo_image: "portico/echo:1".into(),
            cli_image: "portico/cli:1".into(),
            nodes: (0..nodes)
                .map(|i| NodeInfo {
                    name: format!("node-{i}"),
                    address: None,
                })
                .collect(),
            header_value: "token".into(),
        }
    }

    fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn backends_go_to_different_nodes_only_when_there_are_two() {
        let certs = TestCerts::generate().unwrap();
        let two = backends(&input(2), &certs);
        let same = find(&two, "Deployment", ECHO_SAME);
        let other = find(&two, "Deployment", ECHO_OTHER);
        assert_eq!(same["spec"]["template"]["spec"]["nodeName"], "node-0");
        assert_eq!(other["spec"]["template"]["spec"]["nodeName"], "node-1");
        let one = backends(&input(1), &certs);
        let same = find(&one, "Deployment", ECHO_SAME);
        assert!(same["spec"]["template"]["spec"].get("nodeName").is_none());
        assert!(!input(1).multi_node() && input(2).multi_node());
    }

    #[test]
    fn the_plan_has_every_object_in_the_namespace() {
        let certs = TestCerts::generate().unwrap();
        let objects = backends(&input(1), &certs);
        for o in &objects {
            assert_eq!(o["metadata"]["namespace"], "portico-test", "{o}");
        }
        assert_eq!(
            find(&objects, "Service", NODEPORT)["spec"]["type"],
            "NodePort"
        );
        assert_eq!(
            find(&objects, "Service", NODEPORT)["spec"]["selector"]["app"],
            ECHO_SAME
        );
        let gateway = find(&objects, "Gateway", GATEWAY);
        assert_eq!(gateway["spec"]["gatewayClassName"], "portico");
        let listeners = gateway["spec"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 2);
        assert_eq!(
            listeners[1]["tls"]["certificateRefs"][0]["name"],
            TLS_SECRET
        );
        let split = find(&objects, "HTTPRoute", "connectivity-split");
        let refs = split["spec"]["rules"][0]["backendRefs"].as_array().unwrap();
        assert_eq!(refs[0]["weight"], 3);
        assert_eq!(refs[1]["name"], ECHO_OTHER);
        let basic = find(&objects, "HTTPRoute", "connectivity-basic");
        let add = &basic["spec"]["rules"][1]["filters"][0]["requestHeaderModifier"]["add"][0];
        assert_eq!(add["name"], HEADER);
        assert_eq!(add["value"], "token");
    }

    #[test]
    fn the_secret_holds_a_certificate_for_the_hostname_signed_by_the_ca() {
        let certs = TestCerts::generate().unwrap();
        let objects = backends(&input(1), &certs);
        let secret = find(&objects, "Secret", TLS_SECRET);
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let back: Secret = serde_json::from_value(secret.clone()).unwrap();
        let data = back.data.unwrap();
        assert_eq!(data["tls.crt"].0, certs.cert_pem.as_bytes());
        let (_, leaf) = x509_parser::pem::parse_x509_pem(certs.cert_pem.as_bytes()).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(certs.ca_pem.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        assert!(ca.is_ca());
        let names = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            names.value.general_names,
            [x509_parser::extensions::GeneralName::DNSName(HOSTNAME)]
        );
    }

    #[test]
    fn client_pods_report_through_their_termination_message() {
        let pod = client_pod(&input(2), "c", Some("node-1"), true, "http://10.0.0.1/", 7);
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            container["terminationMessagePolicy"],
            "FallbackToLogsOnError"
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["hostNetwork"], true);
        assert_eq!(pod["spec"]["nodeName"], "node-1");
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            args,
            [
                "connectivity",
                "probe",
                "--url",
                "http://10.0.0.1/",
                "--count",
                "7"
            ]
        );
    }
}
