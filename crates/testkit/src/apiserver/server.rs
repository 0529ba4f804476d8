//! HTTP: hyper serving the REST paths of the Kubernetes API on one listener.
//!
//! ```text
//! /version /healthz /readyz /livez
//! /api                       /apis                    /apis/<g>
//! /api/v1                    /apis/<g>/<v>                               resource lists
//! /api/v1/<plural>[/<name>[/status]]                                     cluster scope,
//! /api/v1/namespaces/<ns>/<plural>[/<name>[/status]]                     or all namespaces
//! /apis/<g>/<v>/... the same
//! ```
//!
//! Methods: GET (get, list, `?watch=true`), POST (create), PUT (replace), PATCH (by
//! Content-Type), DELETE (object or collection).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;
use tokio::sync::Notify;

use super::delete::{self, DeleteOpts};
use super::discovery;
use super::error::ApiError;
use super::read::{self, ListQuery, Scope};
use super::selector::{FieldSelector, LabelSelector};
use super::store::Store;
use super::watch::{self, WatchQuery};
use super::write::{self, PatchType, WriteOpts};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Request bodies larger than this are refused (the real server's limit is 3 MiB per
/// object; manifests of CRDs are ~1 MiB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// State shared by connections, watches and the garbage collector.
#[derive(Debug)]
pub(crate) struct Shared {
    store: RwLock<Store>,
    /// Wakes the garbage collector after writes.
    pub(crate) gc: Notify,
    pub(crate) bookmark_interval: Duration,
    pub(crate) addr: SocketAddr,
}

impl Shared {
    pub(crate) fn new(store: Store, bookmark_interval: Duration, addr: SocketAddr) -> Self {
        Shared {
            store: RwLock::new(store),
            gc: Notify::new(),
            bookmark_interval,
            addr,
        }
    }

    // A panic while holding the lock poisons it; the data is still consistent enough
    // for a test server (each write is applied whole or not at all), so go on.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// Where a path leads.
enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    Resources {
        group: String,
        version: String,
    },
    Object {
        scope: Scope,
        name: Option<String>,
        status: bool,
    },
}

fn route(store: &Store, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["healthz" | "readyz" | "livez", ..] => return Ok(Route::Health),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", g] => return Ok(Route::Group((*g).to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route(path)),
    };
    if rest.is_empty() {
        return Ok(Route::Resources {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    // `namespaces/<ns>/status` is the Namespace's own subresource, not a collection.
    let namespaced_path = rest[0] == "namespaces"
        && rest.len() >= 3
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some((*n).to_string()), None),
        [p, n, s] => (*p, Some((*n).to_string()), Some(*s)),
        _ => return Err(ApiError::no_route(path)),
    };
    let rt = store
        .registry
        .lookup(group, version, plural)
        .ok_or_else(|| ApiError::no_route(path))?;
    if namespace.is_some() && !rt.namespaced {
        return Err(ApiError::no_route(path));
    }
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::no_route(path));
    }
    let status = match sub {
        None => false,
        Some("status") if rt.status_subresource => true,
        Some(_) => return Err(ApiError::no_route(path)),
    };
    Ok(Route::Object {
        scope: Scope {
            rt,
            version: version.to_string(),
            namespace,
        },
        name,
        status,
    })
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

fn list_query(q: &HashMap<String, String>) -> Result<ListQuery, ApiError> {
    Ok(ListQuery {
        labels: LabelSelector::parse(
            q.get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        fields: FieldSelector::parse(
            q.get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

/// The field manager of a write: `?fieldManager=`, else the client's User-Agent
/// product (what the real server derives the default from).
fn manager(q: &HashMap<String, String>, req: &Request<Incoming>) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// Serves one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = match serve(&shared, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "test API server");
    Ok(response)
}

async fn serve(shared: &Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let q = query(&req);
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let aggregated = discovery::wants_aggregated(&accept);
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let path = req.uri().path().to_string();
    let route = route(&shared.read(), &path)?;
    let (scope, name, status) = match route {
        Route::Version => return Ok(json_response(StatusCode::OK, &discovery::version())),
        Route::Health => {
            return Ok(Response::new(Full::new(Bytes::from_static(b"ok")).boxed()));
        }
        Route::CoreVersions if aggregated => {
            return Ok(aggregated_response(&discovery::aggregated(
                &shared.read().registry,
                true,
            )));
        }
        Route::CoreVersions => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::core_versions(shared.addr),
            ));
        }
        Route::Groups if aggregated => {
            return Ok(aggregated_response(&discovery::aggregated(
                &shared.read().registry,
                false,
            )));
        }
        Route::Groups => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::groups(&shared.read().registry),
            ));
        }
        Route::Group(g) => {
            return discovery::group(&shared.read().registry, &g)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| ApiError::no_route(&path));
        }
        Route::Resources { group, version } => {
            return discovery::resources(&shared.read().registry, &group, &version)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| ApiError::no_route(&path));
        }
        Route::Object {
            scope,
            name,
            status,
        } => (scope, name, status),
    };
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let opts = WriteOpts {
        manager: manager(&q, &req),
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        force: truthy(&q, "force"),
        status,
    };
    let body = read_body(req).await?;
    let is_write = method != Method::GET;
    let (code, value) = match (method, name) {
        (Method::GET, None) if truthy(&q, "watch") => {
            let wq = WatchQuery {
                list: list_query(&q)?,
                resource_version: q.get("resourceVersion").cloned(),
                bookmarks: truthy(&q, "allowWatchBookmarks"),
                send_initial_events: truthy(&q, "sendInitialEvents"),
                timeout: Duration::from_secs(
                    q.get("timeoutSeconds")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(1800),
                ),
                metadata_only,
            };
            let rx = watch::open(&shared.read(), scope, wq, shared.bookmark_interval)?;
            return Ok(watch_response(rx));
        }
        (Method::GET, None) => (
            StatusCode::OK,
            read::list(&shared.read(), &scope, &list_query(&q)?)?,
        ),
        (Method::GET, Some(n)) => (StatusCode::OK, read::get(&shared.read(), &scope, &n)?),
        (Method::POST, None) if !status => {
            let obj = parse_json(&body)?;
            (
                StatusCode::CREATED,
                write::create(&mut shared.write(), &scope, obj, &opts)?,
            )
        }
        (Method::PUT, Some(n)) => {
            let obj = parse_json(&body)?;
            (
                StatusCode::OK,
                write::replace(&mut shared.write(), &scope, &n, obj, &opts)?,
            )
        }
        (Method::PATCH, Some(n)) => {
            let ptype = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let mut opts = opts;
            if ptype == PatchType::Apply && q.get("fieldManager").is_none_or(String::is_empty) {
                // Apply has no default manager: "fieldManager is required for apply patch".
                opts.manager.clear();
            }
            let (v, created) = write::patch(&mut shared.write(), &scope, &n, ptype, &body, &opts)?;
            (
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                v,
            )
        }
        (Method::DELETE, Some(n)) if !status => {
            let d =
                DeleteOpts::from_body(&body, q.get("propagationPolicy").cloned(), opts.dry_run)?;
            (
                StatusCode::OK,
                delete::delete(&mut shared.write(), &scope, &n, &d)?,
            )
        }
        (Method::DELETE, None) => {
            let d =
                DeleteOpts::from_body(&body, q.get("propagationPolicy").cloned(), opts.dry_run)?;
            (
                StatusCode::OK,
                delete::delete_collection(&mut shared.write(), &scope, &list_query(&q)?, &d)?,
            )
        }
        (m, _) => return Err(ApiError::method_not_allowed(m.as_str())),
    };
    if is_write {
        // Any write may leave dependents without owners or namespaces to empty.
        shared.gc.notify_one();
    }
    if metadata_only {
        return Ok(json_response(code, &read::to_partial_response(&value)));
    }
    Ok(json_response(code, &value))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("decoding the request body: {e}")))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))
}

fn aggregated_response(v: &Value) -> Response<Body> {
    let mut r = json_response(StatusCode::OK, v);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
    );
    r
}

fn watch_response(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(frames).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
