//! Route filters, one file per filter (each with its tests beside it).
//!
//! A route's filters are compiled once per config into [`RouteFilters`]: the request
//! side runs on the request before it is forwarded, the response side on the upstream
//! response before it is returned, each in the order the HTTPRoute lists them.
//! Gateway API (HTTPRouteRule.filters): "Filters are applied in the order they are
//! specified".

mod header_modifier;

pub(crate) use header_modifier::HeaderModifier;

use http::HeaderMap;
use portico_api::config::v1 as pb;

use crate::error::ConfigError;

#[derive(Debug, Default)]
pub(crate) struct RouteFilters {
    request: Vec<HeaderModifier>,
    response: Vec<HeaderModifier>,
}

impl RouteFilters {
    pub(crate) fn compile(filters: &[pb::Filter]) -> Result<Self, ConfigError> {
        let mut out = Self::default();
        for f in filters {
            match &f.kind {
                Some(pb::filter::Kind::RequestHeaderModifier(m)) => {
                    out.request.push(HeaderModifier::compile(m)?);
                }
                Some(pb::filter::Kind::ResponseHeaderModifier(m)) => {
                    out.response.push(HeaderModifier::compile(m)?);
                }
                // prost decodes a filter kind this build does not know (one added to the
                // proto later) as an empty oneof. Serving the route without it would
                // silently change what the route does, so the config is rejected (a NACK)
                // and the last good one keeps serving, as Envoy does with an unknown
                // non-optional filter.
                None => return Err(ConfigError::UnknownFilter),
            }
        }
        Ok(out)
    }

    /// Applies the request-side filters (RequestHeaderModifier) in order.
    pub(crate) fn on_request(&self, headers: &mut HeaderMap) {
        for m in &self.request {
            m.apply(headers);
        }
    }

    /// Applies the response-side filters (ResponseHeaderModifier) in order.
    pub(crate) fn on_response(&self, headers: &mut HeaderMap) {
        for m in &self.response {
            m.apply(headers);
        }
    }
}
