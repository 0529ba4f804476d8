//! gRPC requests of conformance cases (CASES.md, "gRPC"), as upstream's
//! `grpc.MakeRequestAndExpectEventuallyConsistentResponse` makes them.
//!
//! ```text
//!   RequestCase {protocol: grpc, transport, service, method, headers, host}
//!     │ one tonic Channel per item, dialled lazily and reused by every attempt
//!     │   h2c: prior-knowledge HTTP/2 to the Gateway address
//!     │   tls: rustls trusting what `tls.trust` names, SNI `tls.server_name`, ALPN h2
//!     │ :authority: `host`, or (absent/empty) the Gateway's "ip:port", as grpc-go's
//!     │             default authority is its dial target
//!     ▼
//!   unary call /<service>/<method> (EchoRequest -> EchoResponse, any method name)
//!     │ until 3 answers in a row meet `expect`, within the case's bound:
//!     │   grpc_code ─ OK: backend (namespace; Service via the kubelet's pod -> Service
//!     │   map) ─ fully_qualified_method_at_backend
//!     ▼
//!   Err: "gRPC /svc/M @ host (h2c 127.0.10.3:80): expected code OK got Unimplemented
//!         (no route ...) (12 attempts)"
//! ```
//!
//! The method is called by path with a generic client rather than the generated stub, so
//! that a case may name any service or method (one the backend does not have is a case
//! too). Metadata keys are lowercased, as grpc-go's `metadata.New` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use portico_echo::grpc::pb::{EchoRequest, EchoResponse};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::case::{GrpcExpect, GrpcRequest, RequestCase};
use super::requests::gateway_addr;
use super::target::Target;

/// Answers in a row that must meet the expectation (as for HTTP).
const CONSECUTIVE: u32 = 3;

/// Bound on one call; the case's bound applies too.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an attempt that did not meet the expectation.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The gRPC status code names case files use (grpc-go's `codes.Code.String()`), by
/// number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

fn code_name(code: Code) -> &'static str {
    usize::try_from(i32::from(code))
        .ok()
        .and_then(|i| CODE_NAMES.get(i).copied())
        .unwrap_or("Unknown")
}

/// Runs one gRPC item until its expectation holds or the deadline passes.
pub(crate) async fn run(
    target: &mut Target,
    item: &RequestCase,
    request: &GrpcRequest,
    expect: &GrpcExpect,
    deadline: Instant,
) -> Result<(), String> {
    if !CODE_NAMES.contains(&expect.grpc_code.as_str()) {
        return Err(format!(
            "expect.grpc_code {:?} is not one of {}",
            expect.grpc_code,
            CODE_NAMES.join(", ")
        ));
    }
    let addr = gateway_addr(target, item, deadline).await?;
    let authority = match request.host.as_deref() {
        None | Some("") => addr.to_string(),
        Some(host) => host.to_owned(),
    };
    let path = format!("/{}/{}", request.service, request.method);
    let channel = channel(target, request, addr, &authority)?;
    let describe = format!("gRPC {path} @ {authority} ({} {addr})", request.transport);
    let path = PathAndQuery::try_from(path.as_str())
        .map_err(|e| format!("{describe}: not a valid path: {e}"))?;

    let mut attempts = 0u32;
    let mut in_a_row = 0u32;
    let mut last_error = String::new();
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = CALL_TIMEOUT.min(left.max(Duration::from_millis(200)));
        let outcome = call(&channel, path.clone(), &request.headers, timeout).await;
        match outcome.and_then(|answer| evaluate(target, expect, answer)) {
            Ok(()) => {
                in_a_row += 1;
                if in_a_row == CONSECUTIVE {
                    return Ok(());
                }
            }
            Err(e) => {
                in_a_row = 0;
                last_error = e;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("{describe}: {last_error} ({attempts} attempts)"));
        }
        if in_a_row == 0 {
            tokio::time::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }
}

/// A lazily dialled channel to the Gateway for `request`'s transport.
fn channel(
    target: &Target,
    request: &GrpcRequest,
    addr: SocketAddr,
    authority: &str,
) -> Result<Channel, String> {
    // The dial URI only reaches our connector, which ignores it; the origin is what
    // every call carries as :scheme and :authority.
    let scheme = match request.transport.as_str() {
        "h2c" => "http",
        "tls" => "https",
        other => return Err(format!("request.transport {other:?} is not h2c or tls")),
    };
    let origin = format!("{scheme}://{authority}")
        .parse()
        .map_err(|e| format!("request.host {authority:?} is not a valid authority: {e}"))?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("gateway address {addr}: {e}"))?
        .origin(origin)
        .connect_timeout(CALL_TIMEOUT);
    if scheme == "http" {
        return Ok(endpoint.connect_lazy());
    }
    let Some(tls) = &request.tls else {
        return Err("transport tls needs tls: {server_name, trust}".to_owned());
    };
    let client = super::tls::client(&target.cluster, tls)?;
    let mut config = (*client.config).clone();
    // gRPC is HTTP/2 only: offer nothing else.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let server_name = client.server_name;
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let stream = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        })),
    )
}

/// One unary call of `path` with `headers` as metadata.
async fn call(
    channel: &Channel,
    path: PathAndQuery,
    headers: &std::collections::BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Result<EchoResponse, Status>, String> {
    let mut req = tonic::Request::new(EchoRequest {});
    req.set_timeout(timeout);
    for (name, value) in headers {
        let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|e| format!("request.headers: {name:?} is not a metadata key: {e}"))?;
        let value = AsciiMetadataValue::try_from(value.as_str())
            .map_err(|e| format!("request.headers: {name}: {value:?} is not a value: {e}"))?;
        req.metadata_mut().append(key, value);
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let codec = tonic_prost::ProstCodec::<EchoRequest, EchoResponse>::default();
    let answer = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
        grpc.unary(req, path, codec).await
    };
    // The client's own deadline covers the call; this one covers a stuck connect too.
    match tokio::time::timeout(timeout + Duration::from_secs(1), answer).await {
        Ok(result) => Ok(result.map(tonic::Response::into_inner)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Checks one answer against `expect`.
fn evaluate(
    target: &Target,
    expect: &GrpcExpect,
    answer: Result<EchoResponse, Status>,
) -> Result<(), String> {
    let answer = match answer {
        Ok(answer) => answer,
        Err(status) => {
            let got = code_name(status.code());
            return if got == expect.grpc_code {
                Ok(())
            } else {
                Err(format!(
                    "expected code {} got {got} ({:?})",
                    expect.grpc_code,
                    status.message()
                ))
            };
        }
    };
    if expect.grpc_code != "OK" {
        return Err(format!("expected code {} got OK", expect.grpc_code));
    }
    let assertions = answer.assertions.unwrap_or_default();
    let context = assertions.context.unwrap_or_default();
    if let Some(method) = &expect.fully_qualified_method_at_backend
        && assertions.fully_qualified_method != *method
    {
        return Err(format!(
            "expected method at backend {method} got {:?}",
            assertions.fully_qualified_method
        ));
    }
    let Some(backend) = &expect.backend else {
        return Ok(());
    };
    if context.namespace != backend.namespace {
        return Err(format!(
            "expected backend namespace {} got {:?} (pod {:?})",
            backend.namespace, context.namespace, context.pod
        ));
    }
    let (workload, services) = target
        .kubelet
        .pod_services(&target.cluster, &context.namespace, &context.pod)
        .ok_or_else(|| {
            format!(
                "answered by pod {:?} in {}, which is not a running stand-in pod",
                context.pod, context.namespace
            )
        })?;
    if let Some(service) = &backend.service
        && !services.contains(service)
    {
        let got = if services.is_empty() {
            workload
        } else {
            services.join("/")
        };
        return Err(format!(
            "expected backend {service} got {got} (pod {})",
            context.pod
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_follow_the_numbers() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::DeadlineExceeded), "DeadlineExceeded");
        assert_eq!(code_name(Code::Unimplemented), "Unimplemented");
        assert_eq!(code_name(Code::Unavailable), "Unavailable");
        assert_eq!(code_name(Code::Unauthenticated), "Unauthenticated");
    }
}
