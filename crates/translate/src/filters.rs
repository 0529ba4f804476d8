//! HTTPRoute filters -> config `Filter`s, in the order they are written.
//!
//! Supported today: RequestHeaderModifier and ResponseHeaderModifier. Any other filter
//! type makes the route's parent `Accepted=False` with reason UnsupportedValue: Gateway
//! API says of filters that "If a reference to a custom filter type cannot be resolved,
//! the filter MUST NOT be skipped", and serving the rule without it would be wrong.

use portico_api::config::v1::{Filter, Header, HeaderModifier, filter};
use portico_api::gateway::httproutes::{HttpRouteRulesFilters, HttpRouteRulesFiltersType};

use crate::error::RouteError;
use crate::matches::is_token;

pub(crate) fn convert_all(
    rule: usize,
    filters: &[HttpRouteRulesFilters],
) -> Result<Vec<Filter>, RouteError> {
    filters.iter().map(|f| convert(rule, f)).collect()
}

fn convert(rule: usize, f: &HttpRouteRulesFilters) -> Result<Filter, RouteError> {
    let kind = match f.r#type {
        HttpRouteRulesFiltersType::RequestHeaderModifier => {
            let m = f
                .request_header_modifier
                .as_ref()
                .ok_or(RouteError::MissingFilterConfig {
                    rule,
                    filter: "RequestHeaderModifier",
                    field: "requestHeaderModifier",
                })?;
            filter::Kind::RequestHeaderModifier(modifier(
                rule,
                m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                m.remove.iter().flatten(),
            )?)
        }
        HttpRouteRulesFiltersType::ResponseHeaderModifier => {
            let m = f
                .response_header_modifier
                .as_ref()
                .ok_or(RouteError::MissingFilterConfig {
                    rule,
                    filter: "ResponseHeaderModifier",
                    field: "responseHeaderModifier",
                })?;
            filter::Kind::ResponseHeaderModifier(modifier(
                rule,
                m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                m.remove.iter().flatten(),
            )?)
        }
        ref other => {
            return Err(RouteError::UnsupportedFilter {
                rule,
                filter: filter_type_name(other).to_owned(),
            });
        }
    };
    Ok(Filter { kind: Some(kind) })
}

/// The header lists of a modifier, checked so that the proxy can build them.
fn modifier<'a>(
    rule: usize,
    set: impl Iterator<Item = (&'a String, &'a String)>,
    add: impl Iterator<Item = (&'a String, &'a String)>,
    remove: impl Iterator<Item = &'a String>,
) -> Result<HeaderModifier, RouteError> {
    let header = |(name, value): (&String, &String)| -> Result<Header, RouteError> {
        if !is_token(name) {
            return Err(RouteError::InvalidHeaderName {
                rule,
                name: name.clone(),
            });
        }
        // Field values may hold visible characters, spaces and tabs, never CR, LF or NUL.
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(RouteError::InvalidHeaderValue {
                rule,
                name: name.clone(),
            });
        }
        Ok(Header {
            name: name.clone(),
            value: value.clone(),
        })
    };
    let set = set.map(header).collect::<Result<Vec<_>, _>>()?;
    let add = add.map(header).collect::<Result<Vec<_>, _>>()?;
    let remove = remove
        .map(|name| {
            if is_token(name) {
                Ok(name.clone())
            } else {
                Err(RouteError::InvalidHeaderName {
                    rule,
                    name: name.clone(),
                })
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HeaderModifier { set, add, remove })
}

fn filter_type_name(t: &HttpRouteRulesFiltersType) -> &'static str {
    match t {
        HttpRouteRulesFiltersType::RequestHeaderModifier => "RequestHeaderModifier",
        HttpRouteRulesFiltersType::ResponseHeaderModifier => "ResponseHeaderModifier",
        HttpRouteRulesFiltersType::RequestMirror => "RequestMirror",
        HttpRouteRulesFiltersType::RequestRedirect => "RequestRedirect",
        HttpRouteRulesFiltersType::UrlRewrite => "URLRewrite",
        HttpRouteRulesFiltersType::ExtensionRef => "ExtensionRef",
        HttpRouteRulesFiltersType::Cors => "CORS",
        HttpRouteRulesFiltersType::ExternalAuth => "ExternalAuth",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::gateway::httproutes::{
        HttpRouteRulesFiltersRequestHeaderModifier, HttpRouteRulesFiltersRequestHeaderModifierAdd,
    };

    fn add(name: &str, value: &str) -> HttpRouteRulesFilters {
        HttpRouteRulesFilters {
            r#type: HttpRouteRulesFiltersType::RequestHeaderModifier,
            request_header_modifier: Some(HttpRouteRulesFiltersRequestHeaderModifier {
                add: Some(vec![HttpRouteRulesFiltersRequestHeaderModifierAdd {
                    name: name.into(),
                    value: value.into(),
                }]),
                ..Default::default()
            }),
            cors: None,
            extension_ref: None,
            external_auth: None,
            request_mirror: None,
            request_redirect: None,
            response_header_modifier: None,
            url_rewrite: None,
        }
    }

    #[test]
    fn request_header_modifier() {
        let got = convert_all(0, &[add("foo", "bar")]).unwrap();
        let want = Filter {
            kind: Some(filter::Kind::RequestHeaderModifier(HeaderModifier {
                set: vec![],
                add: vec![Header {
                    name: "foo".into(),
                    value: "bar".into(),
                }],
                remove: vec![],
            })),
        };
        assert_eq!(got, vec![want]);
    }

    #[test]
    fn rejects_what_the_proxy_could_not_build() {
        assert!(matches!(
            convert_all(2, &[add("a b", "x")]),
            Err(RouteError::InvalidHeaderName { rule: 2, .. })
        ));
        assert!(matches!(
            convert_all(0, &[add("a", "x\r\ny: z")]),
            Err(RouteError::InvalidHeaderValue { .. })
        ));
        let mut redirect = add("a", "b");
        redirect.r#type = HttpRouteRulesFiltersType::RequestRedirect;
        assert_eq!(
            convert_all(1, &[redirect]).unwrap_err().to_string(),
            "rule 1: filter RequestRedirect is not supported yet"
        );
        let mut missing = add("a", "b");
        missing.r#type = HttpRouteRulesFiltersType::ResponseHeaderModifier;
        assert!(matches!(
            convert_all(0, &[missing]),
            Err(RouteError::MissingFilterConfig { .. })
        ));
    }
}
