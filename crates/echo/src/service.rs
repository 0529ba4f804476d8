//! The request handler: read the body (counting it, keeping only its head), describe the
//! request, answer with JSON plus any headers asked for with `X-Echo-Set-Header`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::config::Identity;
use crate::headers::requested_response_headers;
use crate::hooks::{Hooks, Outcome};
use crate::report::{BodySummary, EchoReport, SET_HEADER};
use crate::requests::{RequestLog, SeenRequest};

pub(crate) async fn handle(
    identity: Arc<Identity>,
    requests: RequestLog,
    hooks: Arc<Hooks>,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, mut body) = request.into_parts();

    // Read the whole body so the client is never cut off mid-upload, but keep only its
    // first bytes: the answer reports the size.
    let mut seen = BodySummary::default();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    seen.add(data);
                }
            }
            Err(error) => {
                tracing::debug!(%remote, %error, "request body failed");
                return Ok(plain(StatusCode::BAD_REQUEST, "cannot read request body\n"));
            }
        }
    }

    let report = EchoReport::describe(&head, &seen, remote, &identity);
    // `Err` only means nobody subscribed: the log is opt-in.
    let _ = requests.send(SeenRequest {
        method: report.method.clone(),
        path: report.path.clone(),
        host: report.host.clone(),
    });
    match hooks.apply(&head.uri).await {
        Outcome::Echo => {}
        Outcome::Status(status) => return Ok(empty(status)),
        Outcome::BadRequest(reason) => {
            let mut response = plain(StatusCode::BAD_REQUEST, "");
            *response.body_mut() = Full::new(Bytes::from(format!("{reason}\n")));
            return Ok(response);
        }
    }
    tracing::debug!(
        %remote,
        method = %head.method,
        uri = %head.uri,
        version = ?head.version,
        body_length = seen.length,
        "echo"
    );
    let json = match serde_json::to_vec_pretty(&report) {
        Ok(json) => json,
        // Serializing strings and maps cannot fail; answer rather than panic anyway.
        Err(error) => {
            tracing::warn!(%error, "cannot serialize the echo report");
            return Ok(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialize\n",
            ));
        }
    };

    let mut response = Response::new(Full::new(Bytes::from(json)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // As echo-basic: the answer is JSON and must not be sniffed as anything else.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Asked-for headers go last so a test may override even the ones above.
    for (name, value) in requested_response_headers(&head.headers, SET_HEADER) {
        if let Some(name) = name {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    response
}
