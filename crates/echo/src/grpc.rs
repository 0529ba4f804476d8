//! The gRPC echo service of the conformance backend (echo-basic's `GrpcEcho`), served on
//! the same port as HTTP: a request whose `content-type` is `application/grpc*` goes to
//! the tonic service, everything else to the JSON echo.
//!
//! ```text
//!  request ── content-type application/grpc* ──> Dispatch::call
//!     │                                           │ the request log gets {POST, path, authority}
//!     │                                           │ extension SeenHead {authority, headers}
//!     │                                           v
//!     │                                   GrpcEchoServer (tonic) ── Echo, EchoTwo ──> EchoResponse
//!     │                                                          └─ EchoThree, others ─> UNIMPLEMENTED
//!     └─ otherwise ──> service::handle (JSON)
//! ```
//!
//! `EchoResponse.assertions` carries what the conformance suite checks: the fully
//! qualified method that ran (`/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo`),
//! the request's headers and `:authority`, and the pod's identity (`context.pod`, whose
//! prefix names the Deployment that answered).
//!
//! Why one port: echo-basic with `GRPC_ECHO_SERVER` serves gRPC on its `HTTP_PORT`
//! (3000), the port the conformance Services target; answering both protocols there lets
//! the runner start every echo Deployment the same way.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Request, Response, header};
use hyper::body::Incoming;
use tonic::{Status, async_trait};
use tower::ServiceExt;

use crate::config::Identity;
use crate::requests::{RequestLog, SeenRequest};

/// The generated messages, server and client of `proto/grpcecho.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("gateway_api_conformance.echo_basic.grpcecho");
}

/// The fully qualified name of the echo service.
pub const SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// The body of every answer: the JSON echo's and tonic's, boxed alike.
pub(crate) type AnyBody = tonic::body::Body;

/// Whether a request (or response) is gRPC: `content-type: application/grpc`, possibly
/// with a subtype (`application/grpc+proto`) or parameters (gRPC over HTTP/2,
/// "Content-Type → "content-type" "application/grpc" [("+proto" / "+json" / {custom})]").
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim_start();
            ct.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
                && matches!(ct.as_bytes().get(16), None | Some(b'+' | b';'))
        })
}

/// What the service saw of the HTTP request, beyond what tonic's metadata keeps
/// (`:authority` is a pseudo-header, and tonic drops a few reserved headers).
#[derive(Debug, Clone)]
struct SeenHead {
    authority: String,
    headers: HeaderMap,
}

/// Answers the gRPC requests of one server.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    server: pb::grpc_echo_server::GrpcEchoServer<EchoService>,
    requests: RequestLog,
}

impl Dispatch {
    pub(crate) fn new(identity: Arc<Identity>, requests: RequestLog) -> Self {
        Self {
            server: pb::grpc_echo_server::GrpcEchoServer::new(EchoService { identity }),
            requests,
        }
    }

    /// Serves one gRPC request. Never fails: errors are gRPC statuses in the answer.
    pub(crate) async fn call(
        &self,
        remote: SocketAddr,
        mut request: Request<Incoming>,
    ) -> Result<Response<AnyBody>, Infallible> {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                request
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let path = request.uri().path().to_owned();
        tracing::debug!(%remote, %path, %authority, "grpc");
        // `Err` only means nobody subscribed: the log is opt-in.
        let _ = self.requests.send(SeenRequest {
            method: request.method().as_str().to_owned(),
            path,
            host: authority.clone(),
        });
        let seen = SeenHead {
            authority,
            headers: request.headers().clone(),
        };
        request.extensions_mut().insert(seen);
        self.server.clone().oneshot(request).await
    }
}

#[derive(Debug)]
struct EchoService {
    identity: Arc<Identity>,
}

impl EchoService {
    fn answer(
        &self,
        method: &str,
        request: &tonic::Request<pb::EchoRequest>,
    ) -> Result<tonic::Response<pb::EchoResponse>, Status> {
        let Some(seen) = request.extensions().get::<SeenHead>() else {
            // Only reachable if the service were mounted without `Dispatch`.
            return Err(Status::internal("request head not recorded"));
        };
        let mut headers: Vec<pb::Header> = Vec::with_capacity(seen.headers.len() + 1);
        // As grpc-go's incoming metadata, which lists `:authority` among the headers.
        headers.push(pb::Header {
            key: ":authority".to_owned(),
            value: seen.authority.clone(),
        });
        for (name, value) in &seen.headers {
            headers.push(pb::Header {
                key: name.as_str().to_owned(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            });
        }
        let identity = &self.identity;
        Ok(tonic::Response::new(pb::EchoResponse {
            assertions: Some(pb::Assertions {
                fully_qualified_method: format!("/{SERVICE}/{method}"),
                headers,
                authority: seen.authority.clone(),
                context: Some(pb::Context {
                    namespace: identity.namespace.clone(),
                    ingress: identity.ingress.clone(),
                    service_name: identity.service.clone(),
                    pod: identity.pod.clone(),
                }),
                // This server speaks no TLS.
                tls_assertions: None,
            }),
            request: Some(*request.get_ref()),
        }))
    }
}

#[async_trait]
impl pb::grpc_echo_server::GrpcEcho for EchoService {
    async fn echo(
        &self,
        request: tonic::Request<pb::EchoRequest>,
    ) -> Result<tonic::Response<pb::EchoResponse>, Status> {
        self.answer("Echo", &request)
    }

    async fn echo_two(
        &self,
        request: tonic::Request<pb::EchoRequest>,
    ) -> Result<tonic::Response<pb::EchoResponse>, Status> {
        self.answer("EchoTwo", &request)
    }

    /// Unimplemented on purpose, as upstream: conformance cases route to it to see that
    /// an UNIMPLEMENTED from the backend reaches the client.
    async fn echo_three(
        &self,
        _request: tonic::Request<pb::EchoRequest>,
    ) -> Result<tonic::Response<pb::EchoResponse>, Status> {
        Err(Status::unimplemented("method EchoThree not implemented"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{EchoConfig, serve};
    use http::HeaderValue;
    use pb::grpc_echo_client::GrpcEchoClient;
    use std::time::Duration;

    #[tokio::test]
    async fn serves_grpc_and_json_on_one_port() {
        let server = serve(EchoConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            identity: Identity::new("grpc-v1-abc-def", "infra", "grpc-v1"),
            drain_timeout: Duration::from_secs(1),
        })
        .await
        .unwrap();
        let mut log = server.subscribe_requests();
        let addr = server.local_addr();
        let mut client = GrpcEchoClient::connect(format!("http://{addr}"))
            .await
            .unwrap();

        let mut request = tonic::Request::new(pb::EchoRequest {});
        request
            .metadata_mut()
            .insert("x-test", "yes".parse().unwrap());
        let answer = client.echo(request).await.unwrap().into_inner();
        let assertions = answer.assertions.unwrap();
        assert_eq!(
            assertions.fully_qualified_method,
            format!("/{SERVICE}/Echo")
        );
        assert_eq!(assertions.authority, addr.to_string());
        let context = assertions.context.unwrap();
        assert_eq!(context.pod, "grpc-v1-abc-def");
        assert_eq!(context.namespace, "infra");
        assert!(
            assertions
                .headers
                .iter()
                .any(|h| h.key == "x-test" && h.value == "yes")
        );
        let seen = log.recv().await.unwrap();
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("POST", format!("/{SERVICE}/Echo").as_str())
        );

        let two = client.echo_two(pb::EchoRequest {}).await.unwrap();
        assert_eq!(
            two.into_inner().assertions.unwrap().fully_qualified_method,
            format!("/{SERVICE}/EchoTwo")
        );
        let three = client.echo_three(pb::EchoRequest {}).await.unwrap_err();
        assert_eq!(three.code(), tonic::Code::Unimplemented);

        // The JSON echo still answers plain HTTP on the same port.
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let response = sender
            .send_request(
                Request::builder()
                    .uri("/json")
                    .header(header::HOST, "h")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        server.shutdown().await;
    }

    fn ct(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(&ct("application/grpc")));
        assert!(is_grpc(&ct("application/grpc+proto")));
        assert!(is_grpc(&ct("Application/GRPC;charset=utf-8")));
        assert!(!is_grpc(&ct("application/grpc-web")));
        assert!(!is_grpc(&ct("application/grpcx")));
        assert!(!is_grpc(&ct("application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
