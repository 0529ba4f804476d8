//! gRPC through the proxy with a real tonic client and the echo's tonic server
//! (portico-echo's GrpcEcho): calls routed by service and method, the proxy's own
//! errors as gRPC statuses (UNIMPLEMENTED, UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL),
//! a backend's own status and trailers passed through, mirroring, and gRPC over an
//! HTTPS listener (ALPN h2).

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use portico_api::config::v1 as pb;
use portico_echo::grpc::{
    SERVICE,
    pb::{EchoRequest, EchoResponse, grpc_echo_client::GrpcEchoClient},
};
use portico_echo::{EchoConfig, EchoServer, Identity};
use rustls::{ClientConfig, RootCertStore, crypto::ring};
use rustls_pki_types::ServerName;
use support::{BlackHole, config, listener, start, to, vhost};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::{Code, transport::Channel};

/// A portico-echo answering as `pod`.
async fn echo(pod: &str) -> EchoServer {
    portico_echo::serve(EchoConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        identity: Identity::new(pod, "test", pod),
        drain_timeout: Duration::from_secs(1),
    })
    .await
    .unwrap()
}

fn endpoint(addr: SocketAddr) -> pb::Endpoint {
    pb::Endpoint {
        address: addr.ip().to_string(),
        port: u32::from(addr.port()),
        ready: true,
        pod: String::new(),
    }
}

/// A cluster of `addrs`. `protocol` as the translator would set it from the Service's
/// appProtocol; gRPC goes over HTTP/2 whatever it says.
fn cluster(name: &str, addrs: &[SocketAddr], protocol: pb::ClusterProtocol) -> pb::Cluster {
    pb::Cluster {
        name: name.to_owned(),
        endpoints: addrs.iter().copied().map(endpoint).collect(),
        protocol: protocol as i32,
        tls: None,
    }
}

/// A GRPCRoute entry as the translator emits it: the method match is an exact path.
fn grpc_route(name: &str, method: &str, backends: Vec<pb::WeightedBackend>) -> pb::Route {
    pb::Route {
        name: name.to_owned(),
        route: "test/grpc".to_owned(),
        r#match: Some(pb::RouteMatch {
            path: Some(pb::PathMatch {
                kind: pb::path_match::Kind::Exact as i32,
                value: format!("/{SERVICE}/{method}"),
            }),
            ..Default::default()
        }),
        backends,
        grpc: true,
        ..Default::default()
    }
}

/// `route`, matching only calls that carry metadata `name: yes`.
fn only_with(mut route: pb::Route, name: &str) -> pb::Route {
    route
        .r#match
        .get_or_insert_default()
        .headers
        .push(pb::HeaderMatch {
            name: name.to_owned(),
            kind: pb::StringMatchKind::Exact as i32,
            value: "yes".to_owned(),
        });
    route
}

/// An h2c channel to the proxy at `addr` whose calls carry `:authority` `host`.
async fn h2c(addr: SocketAddr, host: &str) -> GrpcEchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin(format!("http://{host}").parse().unwrap())
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    GrpcEchoClient::new(channel)
}

async fn call(
    client: &mut GrpcEchoClient<Channel>,
    method: &str,
) -> Result<EchoResponse, tonic::Status> {
    send(client, method, tonic::Request::new(EchoRequest {})).await
}

/// A call carrying metadata `header: yes`.
async fn call_with(
    client: &mut GrpcEchoClient<Channel>,
    method: &str,
    header: &'static str,
) -> Result<EchoResponse, tonic::Status> {
    let mut request = tonic::Request::new(EchoRequest {});
    request
        .metadata_mut()
        .insert(header, "yes".parse().unwrap());
    send(client, method, request).await
}

async fn send(
    client: &mut GrpcEchoClient<Channel>,
    method: &str,
    request: tonic::Request<EchoRequest>,
) -> Result<EchoResponse, tonic::Status> {
    let response = match method {
        "Echo" => client.echo(request).await,
        "EchoTwo" => client.echo_two(request).await,
        "EchoThree" => client.echo_three(request).await,
        other => panic!("no method {other}"),
    };
    response.map(tonic::Response::into_inner)
}

/// The pod that answered and the method that ran there.
fn seen(answer: &EchoResponse) -> (String, String) {
    let assertions = answer.assertions.as_ref().unwrap();
    (
        assertions.context.as_ref().unwrap().pod.clone(),
        assertions.fully_qualified_method.clone(),
    )
}

#[tokio::test]
async fn calls_are_routed_by_method_and_errors_are_grpc_statuses() {
    let v1 = echo("grpc-v1-pod").await;
    let v2 = echo("grpc-v2-pod").await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let slow = BlackHole::start().await;
    let mut timed = only_with(
        grpc_route("timed", "EchoThree", vec![to("slow", 1)]),
        "x-slow",
    );
    timed.timeouts = Some(pb::Timeouts {
        request_ms: 300,
        backend_request_ms: 0,
    });
    let down = only_with(
        grpc_route("down", "EchoTwo", vec![to("refused", 1)]),
        "x-down",
    );
    let invalid = only_with(
        grpc_route(
            "invalid",
            "EchoTwo",
            vec![support::invalid(1, "BackendNotFound: test/missing")],
        ),
        "x-invalid",
    );
    let proxy = start(config(
        "v1",
        vec![listener(
            "h2c",
            vec![vhost(
                "test/gw/grpc",
                "grpc.example.com",
                vec![
                    timed,
                    down,
                    invalid,
                    grpc_route("echo", "Echo", vec![to("v1", 1)]),
                    grpc_route("three", "EchoThree", vec![to("v2", 1)]),
                    grpc_route("two-empty", "EchoTwo", vec![to("empty", 1)]),
                ],
            )],
        )],
        vec![
            // HTTP/1 on purpose: gRPC must still reach it over HTTP/2.
            cluster("v1", &[v1.local_addr()], pb::ClusterProtocol::Http1),
            cluster("v2", &[v2.local_addr()], pb::ClusterProtocol::H2c),
            cluster("refused", &[closed], pb::ClusterProtocol::H2c),
            cluster("empty", &[], pb::ClusterProtocol::H2c),
            slow.cluster("slow"),
        ],
    ))
    .await;
    let addr = proxy.bound_addrs()["h2c"];
    let mut client = h2c(addr, "grpc.example.com").await;

    // OK, from the backend the Echo rule names.
    let answer = call(&mut client, "Echo").await.unwrap();
    assert_eq!(
        seen(&answer),
        ("grpc-v1-pod".to_owned(), format!("/{SERVICE}/Echo"))
    );
    assert_eq!(
        answer.assertions.unwrap().authority,
        "grpc.example.com",
        "the backend sees the client's :authority"
    );

    // The backend's own UNIMPLEMENTED (EchoThree is unimplemented there) comes back as
    // the backend said it: its status travels in trailers.
    let status = call(&mut client, "EchoThree").await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("EchoThree"), "{status:?}");

    // A cluster without endpoints: UNAVAILABLE from the proxy.
    let status = call(&mut client, "EchoTwo").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no ready endpoint"), "{status:?}");

    // A backend that refuses connections: UNAVAILABLE.
    let status = call_with(&mut client, "EchoTwo", "x-down")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // An invalid backendRef: INTERNAL.
    let status = call_with(&mut client, "EchoTwo", "x-invalid")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");

    // The route's request timeout: DEADLINE_EXCEEDED.
    let status = call_with(&mut client, "EchoThree", "x-slow")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // No route for this host: UNIMPLEMENTED from the proxy, not an HTTP 404 page.
    let mut other = h2c(addr, "other.example.com").await;
    let status = call(&mut other, "Echo").await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("no route"), "{status:?}");

    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented() {
    let v1 = echo("grpc-v1-pod").await;
    let proxy = start(config(
        "v1",
        vec![listener(
            "h2c",
            vec![vhost(
                "test/gw/grpc",
                "",
                vec![grpc_route("echo", "Echo", vec![to("v1", 1)])],
            )],
        )],
        vec![cluster("v1", &[v1.local_addr()], pb::ClusterProtocol::H2c)],
    ))
    .await;
    let mut client = h2c(proxy.bound_addrs()["h2c"], "any.example.com").await;
    assert!(call(&mut client, "Echo").await.is_ok());
    let status = call(&mut client, "EchoTwo").await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_mirrored_call_reaches_the_mirror() {
    let v1 = echo("grpc-v1-pod").await;
    let mirror = echo("grpc-mirror-pod").await;
    let mut mirrored = mirror.subscribe_requests();
    let mut route = grpc_route("echo", "Echo", vec![to("v1", 1)]);
    route.filters.push(pb::Filter {
        kind: Some(pb::filter::Kind::RequestMirror(pb::RequestMirror {
            cluster: "mirror".to_owned(),
            numerator: 1,
            denominator: 1,
        })),
    });
    let proxy = start(config(
        "v1",
        vec![listener(
            "h2c",
            vec![vhost("test/gw/grpc", "", vec![route])],
        )],
        vec![
            cluster("v1", &[v1.local_addr()], pb::ClusterProtocol::H2c),
            cluster("mirror", &[mirror.local_addr()], pb::ClusterProtocol::H2c),
        ],
    ))
    .await;
    let mut client = h2c(proxy.bound_addrs()["h2c"], "grpc.example.com").await;
    let answer = call(&mut client, "Echo").await.unwrap();
    assert_eq!(seen(&answer).0, "grpc-v1-pod");
    let copy = tokio::time::timeout(Duration::from_secs(5), mirrored.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copy.path, format!("/{SERVICE}/Echo"));
    assert_eq!(copy.host, "grpc.example.com");
    proxy.shutdown().await;
}

#[tokio::test]
async fn grpc_over_an_https_listener_with_alpn_h2() {
    let v1 = echo("grpc-v1-pod").await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["grpc.example.com".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut v = vhost(
        "test/gw/grpcs",
        "grpc.example.com",
        vec![grpc_route("echo", "Echo", vec![to("v1", 1)])],
    );
    // Fields the contract gains later (client validation) keep their defaults; the
    // update is needless until it has them.
    #[allow(clippy::needless_update)]
    let termination = pb::TlsTermination {
        certificates: vec![pb::Certificate {
            name: "test/grpc-cert".to_owned(),
            cert_chain_pem: cert.pem().into_bytes(),
            private_key_pem: key.serialize_pem().into_bytes(),
        }],
        ..Default::default()
    };
    v.tls = Some(termination);
    let proxy = start(config(
        "v1",
        vec![pb::Listener {
            protocol: pb::Protocol::Https as i32,
            ..listener("https", vec![v])
        }],
        vec![cluster("v1", &[v1.local_addr()], pb::ClusterProtocol::H2c)],
    ))
    .await;
    let addr = proxy.bound_addrs()["https"];

    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut tls = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(tls));
    // tonic dials `http://` (the connector does TLS itself); the calls say https.
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin("https://grpc.example.com".parse().unwrap())
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let name =
                    ServerName::try_from("grpc.example.com").map_err(std::io::Error::other)?;
                let stream = connector.connect(name, tcp).await?;
                assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .unwrap();
    let mut client = GrpcEchoClient::new(channel);
    let answer = call(&mut client, "Echo").await.unwrap();
    assert_eq!(
        seen(&answer),
        ("grpc-v1-pod".to_owned(), format!("/{SERVICE}/Echo"))
    );
    let status = call(&mut client, "EchoTwo").await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    proxy.shutdown().await;
}
