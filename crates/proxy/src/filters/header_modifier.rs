//! The RequestHeaderModifier and ResponseHeaderModifier filters.
//!
//! Both are the Gateway API's `HTTPHeaderFilter` applied to a different header map, so
//! they share this one implementation; `RouteFilters` decides which map it runs on.
//!
//! Gateway API (HTTPHeaderFilter):
//! - set: "Set overwrites the request with the given header (name, value) before the
//!   action." (`my-header: foo` becomes `my-header: bar`)
//! - add: "Add adds the given header(s) (name, value) to the request before the action.
//!   It appends to any existing values associated with the header name."
//! - remove: "Remove the given header(s) from the HTTP request before the action."
//! - "Header names are case-insensitive."
//!
//! The API leaves the order of the three lists open; we remove first, then set, then
//! add, as Envoy does, so that "remove X, add X" yields only the added value.

use http::{HeaderMap, HeaderName, HeaderValue};
use portico_api::config::v1 as pb;

use crate::error::ConfigError;

#[derive(Debug, Default)]
pub(crate) struct HeaderModifier {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderModifier {
    pub(crate) fn compile(m: &pb::HeaderModifier) -> Result<Self, ConfigError> {
        let remove = m.remove.iter().map(|n| name(n)).collect::<Result<_, _>>()?;
        Ok(Self {
            remove,
            set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
        })
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }
}

/// Header names are case-insensitive: `HeaderName` parsing lowercases them, so
/// "X-Foo" in the config replaces "x-foo" on the wire.
fn name(n: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(n.as_bytes()).map_err(|_| ConfigError::HeaderName(n.to_owned()))
}

fn pair(h: &pb::Header) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let value =
        HeaderValue::from_str(&h.value).map_err(|_| ConfigError::HeaderValue(h.name.clone()))?;
    Ok((name(&h.name)?, value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn header(name: &str, value: &str) -> pb::Header {
        pb::Header {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn values(map: &HeaderMap, name: &str) -> Vec<String> {
        map.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn set_replaces_add_appends_remove_deletes() {
        let m = HeaderModifier::compile(&pb::HeaderModifier {
            set: vec![header("X-Set", "new")],
            add: vec![header("X-Add", "two")],
            remove: vec!["X-Gone".to_owned()],
        })
        .unwrap();
        let mut map = headers(&[
            ("x-set", "old1"),
            ("x-set", "old2"),
            ("x-add", "one"),
            ("x-gone", "a"),
            ("x-gone", "b"),
            ("x-kept", "k"),
        ]);
        m.apply(&mut map);
        assert_eq!(values(&map, "x-set"), ["new"]);
        assert_eq!(values(&map, "x-add"), ["one", "two"]);
        assert!(values(&map, "x-gone").is_empty());
        assert_eq!(values(&map, "x-kept"), ["k"]);
    }

    #[test]
    fn set_and_add_create_missing_headers() {
        let m = HeaderModifier::compile(&pb::HeaderModifier {
            set: vec![header("my-header", "foo")],
            add: vec![header("other", "bar")],
            remove: vec!["absent".to_owned()],
        })
        .unwrap();
        let mut map = HeaderMap::new();
        m.apply(&mut map);
        assert_eq!(values(&map, "my-header"), ["foo"]);
        assert_eq!(values(&map, "other"), ["bar"]);
    }

    #[test]
    fn remove_runs_before_add() {
        let m = HeaderModifier::compile(&pb::HeaderModifier {
            set: vec![],
            add: vec![header("x", "added")],
            remove: vec!["X".to_owned()],
        })
        .unwrap();
        let mut map = headers(&[("x", "original")]);
        m.apply(&mut map);
        assert_eq!(values(&map, "x"), ["added"]);
    }

    #[test]
    fn invalid_names_and_values_are_rejected() {
        let bad_name = pb::HeaderModifier {
            set: vec![header("bad name", "v")],
            ..Default::default()
        };
        assert!(matches!(
            HeaderModifier::compile(&bad_name),
            Err(ConfigError::HeaderName(_))
        ));
        let bad_value = pb::HeaderModifier {
            add: vec![header("x", "line\nbreak")],
            ..Default::default()
        };
        assert!(matches!(
            HeaderModifier::compile(&bad_value),
            Err(ConfigError::HeaderValue(_))
        ));
    }
}
