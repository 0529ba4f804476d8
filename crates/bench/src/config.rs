//! The same routes for every peer: `portico standalone` YAML, nginx.conf and
//! haproxy.cfg generated from one description.
//!
//! Route `i` matches host `h{i}.example.com`, path prefix `/p{i}/` and header
//! `x-route: r{i}`; the load goes to the last route, so that a proxy that tries routes
//! in order pays for all of them. `split.example.com` spreads requests 80/15/5 over three
//! backends.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};

/// Added to every port the bench listens on at 127.0.0.1 (`--port-offset`), so that a run
/// can stay clear of another one on the same machine.
static PORT_OFFSET: AtomicU16 = AtomicU16::new(0);

pub(crate) fn set_port_offset(offset: u16) {
    PORT_OFFSET.store(offset, Ordering::Relaxed);
}

/// `base` moved by the port offset.
pub(crate) fn port(base: u16) -> u16 {
    base.saturating_add(PORT_OFFSET.load(Ordering::Relaxed))
}

/// Port of the routes' backend (`portico-bench backend`).
pub(crate) fn backend_port() -> u16 {
    port(19000)
}

/// Ports of the split's three backends.
pub(crate) fn split_ports() -> [u16; 3] {
    [19001, 19002, 19003].map(port)
}
pub(crate) const SPLIT_WEIGHTS: [u64; 3] = [80, 15, 5];
pub(crate) const SPLIT_HOST: &str = "split.example.com";

/// Where one peer listens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) http: u16,
    /// HTTP/2 with prior knowledge (h2c).
    pub(crate) h2c: u16,
    /// TLS with ALPN h2 and http/1.1; `None` for the direct peer.
    pub(crate) https: Option<u16>,
}

/// The request that hits route `i`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
}

pub(crate) fn target(i: usize) -> Target {
    Target {
        host: host(i),
        path: format!("/p{i}/x"),
        headers: vec![("x-route".to_owned(), format!("r{i}"))],
    }
}

fn host(i: usize) -> String {
    format!("h{i}.example.com")
}

/// Certificate and key for the TLS listeners (the same for all peers).
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Tls {
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(vec!["bench.example.com".to_owned()])?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

pub(crate) const NAMESPACE: &str = "bench";

/// GatewayClass, Namespace, Gateway (an HTTP listener, and an HTTPS one when `tls` is
/// given, with its Secret), and the backends' Services and EndpointSlices.
pub(crate) fn portico_base(ports: Ports, tls: Option<&Tls>) -> String {
    let mut out = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portico
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: {NAMESPACE}
spec:
  gatewayClassName: portico
  addresses:
    - type: IPAddress
      value: 127.0.0.1
  listeners:
    - name: http
      protocol: HTTP
      port: {http}
"#,
        http = ports.http
    );
    if let (Some(tls), Some(https)) = (tls, ports.https) {
        let _ = write!(
            out,
            r#"    - name: https
      protocol: HTTPS
      port: {https}
      tls:
        mode: Terminate
        certificateRefs:
          - name: bench-tls
---
apiVersion: v1
kind: Secret
metadata:
  name: bench-tls
  namespace: {NAMESPACE}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{crt}  tls.key: |
{key}"#,
            crt = indent(&tls.cert_pem),
            key = indent(&tls.key_pem),
        );
    }
    let services = std::iter::once(("be", backend_port()))
        .chain(["sa", "sb", "sc"].into_iter().zip(split_ports()));
    for (name, port) in services {
        for object in service_json(name, Ipv4Addr::LOCALHOST.into(), port) {
            let _ = writeln!(out, "---\n{object}");
        }
    }
    out
}

/// Service `name` (port 80) in the bench namespace and its EndpointSlice with one ready
/// endpoint at `ip:port`, as the API server takes them (JSON is YAML too: standalone's
/// folder gets the same objects, [`portico_base`]).
pub(crate) fn service_json(name: &str, ip: IpAddr, port: u16) -> [serde_json::Value; 2] {
    [
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        }),
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-1"), "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        }),
    ]
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// HTTPRoute `i` (see the module doc), named `name`, attached to Gateway `gateway`, as
/// the API server takes it. JSON is YAML too: [`portico_route`] writes the same object in
/// standalone's folder.
pub(crate) fn route_json(name: &str, i: usize, gateway: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": gateway}],
            "hostnames": [host(i)],
            "rules": [{
                "matches": [{
                    "path": {"type": "PathPrefix", "value": format!("/p{i}/")},
                    "headers": [{"name": "x-route", "value": format!("r{i}")}],
                }],
                "backendRefs": [{"name": "be", "port": 80}],
            }],
        },
    })
}

/// HTTPRoute `i` for standalone's folder (Gateway `gw`): one YAML document.
pub(crate) fn portico_route(name: &str, i: usize) -> String {
    format!("---\n{}\n", route_json(name, i, "gw"))
}

/// An HTTPRoute for `host` spreading over the split backends with `weights`.
pub(crate) fn portico_split(name: &str, host: &str, weights: [u64; 3]) -> String {
    let mut out = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  parentRefs:
    - name: gw
  hostnames:
    - {host}
  rules:
    - backendRefs:
"#
    );
    for (service, weight) in ["sa", "sb", "sc"].into_iter().zip(weights) {
        let _ = write!(
            out,
            "        - name: {service}\n          port: 80\n          weight: {weight}\n"
        );
    }
    out
}

/// Routes `0..n` plus the split route, for the data-plane scenarios.
pub(crate) fn portico_routes(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&portico_route(&format!("r{i}"), i));
    }
    out.push_str(&portico_split("split", SPLIT_HOST, SPLIT_WEIGHTS));
    out
}

/// nginx: one worker, no master, no access log; upstream keep-alive; responses streamed
/// (proxy_buffering off), as Portico and HAProxy do.
pub(crate) fn nginx(ports: Ports, routes: usize, dir: &Path) -> String {
    let d = dir.display();
    let https = ports.https.unwrap_or(0);
    let mut out = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 9000;
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server_names_hash_max_size 65536;
    server_names_hash_bucket_size 128;
    keepalive_requests 1000000;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_buffering off;
    proxy_request_buffering off;
    ssl_certificate {d}/cert.pem;
    ssl_certificate_key {d}/key.pem;
    upstream be {{
        server 127.0.0.1:{be};
        keepalive 256;
    }}
    upstream split {{
        server 127.0.0.1:{a} weight={wa};
        server 127.0.0.1:{b} weight={wb};
        server 127.0.0.1:{c} weight={wc};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{http} default_server;
        listen 127.0.0.1:{h2c} http2 default_server;
        listen 127.0.0.1:{https} ssl http2 default_server;
        return 404;
    }}
    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{h2c} http2;
        listen 127.0.0.1:{https} ssl http2;
        server_name {SPLIT_HOST};
        location / {{
            proxy_pass http://split;
        }}
    }}
"#,
        http = ports.http,
        h2c = ports.h2c,
        be = backend_port(),
        a = split_ports()[0],
        b = split_ports()[1],
        c = split_ports()[2],
        wa = SPLIT_WEIGHTS[0],
        wb = SPLIT_WEIGHTS[1],
        wc = SPLIT_WEIGHTS[2],
    );
    for i in 0..routes {
        let _ = write!(
            out,
            r#"    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{h2c} http2;
        listen 127.0.0.1:{https} ssl http2;
        server_name {host};
        location /p{i}/ {{
            if ($http_x_route != "r{i}") {{
                return 404;
            }}
            proxy_pass http://be;
        }}
    }}
"#,
            http = ports.http,
            h2c = ports.h2c,
            host = host(i),
        );
    }
    out.push_str("}\n");
    out
}

/// HAProxy: one thread, no logs, connection reuse to the backends. The routes are a map
/// file (what an HAProxy user writes for thousands of hosts, [`haproxy_routes_map`]):
/// the key is the host and the first path segment (`h9.example.com/p9`: the route's
/// path prefix `/p9/` matched segment-wise, as Gateway API's PathPrefix does), looked up
/// in a tree (`map_str`), and the value is the `x-route` header value the route requires.
/// The lookup costs the same at 10 and 5,000 routes, as in nginx and Portico.
pub(crate) fn haproxy(ports: Ports, dir: &Path) -> String {
    let d = dir.display();
    let https = ports.https.unwrap_or(0);
    let mut out = format!(
        r#"global
    nbthread 1
    # HAProxy wants about 2 descriptors per connection and refuses to start when
    # RLIMIT_NOFILE is below what maxconn needs (the hard limit may be 20,000).
    maxconn 9000
    tune.ssl.default-dh-param 2048
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fe
    bind 127.0.0.1:{http}
    bind 127.0.0.1:{h2c} proto h2
    bind 127.0.0.1:{https} ssl crt {d}/combined.pem alpn h2,http/1.1
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    http-request set-var(txn.segment) path,field(2,/)
    http-request set-var(txn.route) var(txn.host),concat(/,txn.segment),map_str({d}/{HAPROXY_MAP})
    use_backend split if {{ var(txn.host) -m str {SPLIT_HOST} }}
    use_backend be if {{ var(txn.route) -m found }} {{ req.hdr(x-route),strcmp(txn.route) eq 0 }}
"#,
        http = ports.http,
        h2c = ports.h2c,
    );
    let _ = write!(
        out,
        r#"    default_backend notfound
backend notfound
    http-request return status 404
backend be
    server be 127.0.0.1:{be} maxconn 10000
backend split
    balance roundrobin
"#,
        be = backend_port()
    );
    for (n, (port, weight)) in split_ports().iter().zip(SPLIT_WEIGHTS).enumerate() {
        let _ = writeln!(out, "    server s{n} 127.0.0.1:{port} weight {weight}");
    }
    out
}

/// The map file [`haproxy`]'s configuration reads, in the folder it is given.
pub(crate) const HAPROXY_MAP: &str = "routes.map";

/// Routes `0..n` as HAProxy map lines: `host/first-segment x-route-value`.
pub(crate) fn haproxy_routes_map(n: usize) -> String {
    (0..n)
        .map(|i| format!("{host}/p{i} r{i}\n", host = host(i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_gets_every_route() {
        let ports = Ports {
            http: 1,
            h2c: 2,
            https: Some(3),
        };
        let yaml = portico_routes(7);
        // Seven routes (JSON documents) and the split route (YAML).
        assert_eq!(yaml.matches("\"kind\":\"HTTPRoute\"").count(), 7);
        assert_eq!(yaml.matches("kind: HTTPRoute").count(), 1);
        assert_eq!(yaml.matches("---\n").count(), 8);
        let nginx = nginx(ports, 7, Path::new("/tmp/x"));
        assert_eq!(nginx.matches("server_name h").count(), 7);
        let map = haproxy_routes_map(7);
        assert_eq!(map.lines().count(), 7);
        let t = target(6);
        assert!(yaml.contains(&t.host) && nginx.contains(&t.host) && map.contains(&t.host));
    }

    /// Standalone's base folder has the four backends' Services and EndpointSlices (JSON
    /// documents), each slice pointing at its backend's port on loopback.
    #[test]
    fn standalone_base_has_every_backend() {
        let ports = Ports {
            http: 1,
            h2c: 2,
            https: None,
        };
        let docs: Vec<serde_json::Value> = portico_base(ports, None)
            .split("---\n")
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect();
        let slices: Vec<(String, u64, String)> = docs
            .iter()
            .filter(|d| d["kind"] == "EndpointSlice")
            .map(|d| {
                (
                    d["metadata"]["labels"]["kubernetes.io/service-name"].to_string(),
                    d["ports"][0]["port"].as_u64().unwrap_or(0),
                    d["endpoints"][0]["addresses"][0].to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, u64, String)> = std::iter::once(backend_port())
            .chain(split_ports())
            .zip(["be", "sa", "sb", "sc"])
            .map(|(port, name)| {
                (
                    format!("\"{name}\""),
                    u64::from(port),
                    "\"127.0.0.1\"".into(),
                )
            })
            .collect();
        assert_eq!(slices, expected);
        let services: Vec<&serde_json::Value> = docs
            .iter()
            .filter(|d| d["kind"] == "Service")
            .map(|d| &d["metadata"]["name"])
            .collect();
        assert_eq!(services, ["be", "sa", "sb", "sc"]);
    }

    /// What HAProxy computes from a request (`host/first path segment`, looked up in the
    /// map; the value must equal `x-route`) routes every target to its route only.
    #[test]
    fn haproxy_map_keys_are_what_the_config_looks_up() {
        let cfg = haproxy(
            Ports {
                http: 1,
                h2c: 2,
                https: Some(3),
            },
            Path::new("/tmp/x"),
        );
        assert!(cfg.contains(&format!("map_str(/tmp/x/{HAPROXY_MAP})")));
        let map: std::collections::HashMap<String, String> = haproxy_routes_map(50)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(map.len(), 50);
        let key = |t: &Target| format!("{}/{}", t.host, t.path.split('/').nth(1).unwrap_or(""));
        for i in [0, 7, 49] {
            let t = target(i);
            assert_eq!(map.get(&key(&t)), Some(&t.headers[0].1), "route {i}");
            // Another route's path under this host finds nothing.
            let other = Target {
                path: target(i + 1).path,
                ..t.clone()
            };
            assert_eq!(map.get(&key(&other)), None);
        }
    }
}
