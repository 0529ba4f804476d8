//! Route filters, one file per filter (each with its tests beside it), and the
//! per-route policies that are not filters in the API but act like them (timeouts,
//! retries).
//!
//! A route's filters are compiled once per config into [`RouteFilters`]. Gateway API
//! (HTTPRouteRule.filters): "Filters are applied in the order they are specified".
//!
//! ```text
//! request  ─> step 1 ─> step 2 ─> ... ─> Forward { mirrors to fire, CORS headers }
//!               │ RequestHeaderModifier, URLRewrite: change the request, go on
//!               │ RequestMirror: copy the request as it is at this step, go on
//!               │ CORS: a preflight is answered here, else note the CORS headers
//!               │ RequestRedirect: answer with the redirect
//!               └ Unresolved (an unknown ExtensionRef): answer 500
//! response <─ CORS headers <─ ResponseHeaderModifier (in order)
//! ```
//!
//! A backendRef's filters are a [`RouteFilters`] too, restricted to those that make
//! sense for one backend (header modifiers, URLRewrite, unresolved).

mod cors;
mod header_modifier;
mod mirror;
mod path;
mod redirect;
mod retry;
mod rewrite;
mod timeout;

use std::sync::Arc;

use http::{HeaderMap, Response, request::Parts};
use portico_api::config::v1 as pb;

pub(crate) use cors::{Cors, CorsHeaders, CorsStep};
pub(crate) use header_modifier::HeaderModifier;
pub(crate) use mirror::Mirror;
pub(crate) use redirect::Redirect;
pub(crate) use retry::RetryPolicy;
pub(crate) use rewrite::UrlRewrite;
pub(crate) use timeout::Timeouts;

use crate::{
    body::RequestHead,
    error::{ConfigError, RequestError},
    table::ClusterState,
    upstream::ProxyBody,
};

/// The listener a request came in on, as a redirect needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Downstream {
    /// "http" or "https", from the listener's protocol.
    pub(crate) scheme: &'static str,
    /// The listener's port in the config (the Gateway listener port).
    pub(crate) port: u16,
}

#[derive(Debug)]
enum Step {
    RequestHeaders(HeaderModifier),
    Rewrite(UrlRewrite),
    Mirror(Mirror),
    Cors(Cors),
    Redirect(Redirect),
    Unresolved(String),
}

#[derive(Debug, Default)]
pub(crate) struct RouteFilters {
    request: Vec<Step>,
    response: Vec<HeaderModifier>,
}

/// What the request-side filters decided.
#[derive(Debug)]
pub(crate) enum Verdict<'f> {
    /// Go on to the backend.
    Forward(Forward<'f>),
    /// A filter answered (a redirect, a CORS preflight).
    Respond(Response<ProxyBody>),
    /// A filter that cannot run (an unresolved ExtensionRef): 500.
    Fail(RequestError),
}

/// What a forwarded request carries on from its filters.
#[derive(Debug, Default)]
pub(crate) struct Forward<'f> {
    /// Mirrors to send, each with the request as it was at the mirror's step.
    pub(crate) mirrors: Vec<(&'f Mirror, RequestHead)>,
    /// The CORS headers for the response.
    pub(crate) cors: Option<CorsHeaders>,
}

impl RouteFilters {
    /// A route's filters; `cluster` resolves the cluster a mirror sends to.
    pub(crate) fn compile(
        filters: &[pb::Filter],
        mut cluster: impl FnMut(&str) -> Result<Arc<ClusterState>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut out = Self::default();
        for f in filters {
            let step = match &f.kind {
                Some(pb::filter::Kind::RequestHeaderModifier(m)) => {
                    Step::RequestHeaders(HeaderModifier::compile(m)?)
                }
                Some(pb::filter::Kind::ResponseHeaderModifier(m)) => {
                    out.response.push(HeaderModifier::compile(m)?);
                    continue;
                }
                Some(pb::filter::Kind::UrlRewrite(r)) => Step::Rewrite(UrlRewrite::compile(r)?),
                Some(pb::filter::Kind::RequestRedirect(r)) => Step::Redirect(Redirect::compile(r)?),
                Some(pb::filter::Kind::RequestMirror(m)) => {
                    Step::Mirror(Mirror::compile(m, &mut cluster)?)
                }
                Some(pb::filter::Kind::Cors(c)) => Step::Cors(Cors::compile(c)?),
                Some(pb::filter::Kind::Unresolved(u)) => Step::Unresolved(u.reason.clone()),
                // prost decodes a filter kind this build does not know (one added to the
                // proto later) as an empty oneof. Serving the route without it would
                // silently change what the route does, so the config is rejected (a
                // NACK) and the last good one keeps serving, as Envoy does with an
                // unknown non-optional filter.
                None => return Err(ConfigError::UnknownFilter),
            };
            out.request.push(step);
        }
        Ok(out)
    }

    /// A backendRef's filters: "Filters defined at this level should be executed if
    /// and only if the request is being forwarded to the backend defined here." Those
    /// that answer by themselves or fork the request belong to the rule.
    pub(crate) fn compile_backend(filters: &[pb::Filter]) -> Result<Self, ConfigError> {
        for f in filters {
            let refused = match &f.kind {
                Some(pb::filter::Kind::RequestRedirect(_)) => Some("RequestRedirect"),
                Some(pb::filter::Kind::RequestMirror(_)) => Some("RequestMirror"),
                Some(pb::filter::Kind::Cors(_)) => Some("CORS"),
                _ => None,
            };
            if let Some(name) = refused {
                return Err(ConfigError::BackendFilter(name));
            }
        }
        Self::compile(filters, |name| {
            Err(ConfigError::UnknownCluster(name.to_owned()))
        })
    }

    /// Runs the request-side filters in order on `parts`. `route` names the route for
    /// errors.
    pub(crate) fn on_request(
        &self,
        parts: &mut Parts,
        downstream: &Downstream,
        route: &str,
    ) -> Verdict<'_> {
        let mut forward = Forward::default();
        for step in &self.request {
            match step {
                Step::RequestHeaders(m) => m.apply(&mut parts.headers),
                Step::Rewrite(r) => {
                    if let Err(error) = r.apply(parts) {
                        return Verdict::Fail(error);
                    }
                }
                Step::Mirror(m) => {
                    if m.sample() {
                        forward.mirrors.push((m, RequestHead::of(parts)));
                    }
                }
                Step::Cors(c) => match c.on_request(parts) {
                    CorsStep::Preflight(response) => return Verdict::Respond(response),
                    CorsStep::Actual(headers) => forward.cors = headers,
                },
                Step::Redirect(r) => return Verdict::Respond(r.respond(parts, downstream)),
                Step::Unresolved(reason) => {
                    return Verdict::Fail(RequestError::UnresolvedFilter {
                        route: route.to_owned(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        Verdict::Forward(forward)
    }

    /// Applies the response-side filters: the CORS headers, then the
    /// ResponseHeaderModifiers in order (the route author has the last word).
    pub(crate) fn on_response(&self, headers: &mut HeaderMap, cors: Option<&CorsHeaders>) {
        if let Some(cors) = cors {
            cors.apply(headers);
        }
        for m in &self.response {
            m.apply(headers);
        }
    }
}

#[cfg(test)]
mod tests;
