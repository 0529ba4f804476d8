//! Field paths of patch steps: `spec.rules[0].backendRefs[0].name`.
//!
//! A path is dotted field names, each optionally followed by `[i]` list indexes. `set`
//! replaces the value at the path (creating missing mappings on the way, as a merge
//! patch would); `append` adds to the list at the path (creating it if missing). An
//! index must name an existing item: patching item 3 of a 2-item list is a mistake in
//! the case, not something to paper over.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
}

fn parse(path: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (field, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad field path {path:?} at {part:?}"));
        }
        segments.push(Segment::Field(field.to_owned()));
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .filter(|_| rest.starts_with('['))
                .ok_or_else(|| format!("bad field path {path:?} at {part:?}"))?;
            let index = rest[1..close]
                .parse()
                .map_err(|_| format!("bad index in field path {path:?} at {part:?}"))?;
            segments.push(Segment::Index(index));
            rest = &rest[close + 1..];
        }
    }
    Ok(segments)
}

/// The value at `segments`, creating mappings for missing fields.
fn walk<'a>(
    root: &'a mut Value,
    segments: &[Segment],
    path: &str,
) -> Result<&'a mut Value, String> {
    let mut here = root;
    for (i, segment) in segments.iter().enumerate() {
        here = match segment {
            Segment::Field(name) => {
                if here.is_null() {
                    *here = Value::Object(Map::new());
                }
                let map = here
                    .as_object_mut()
                    .ok_or_else(|| format!("{path}: {} is not a mapping", shown(segments, i)))?;
                map.entry(name.clone()).or_insert(Value::Null)
            }
            Segment::Index(index) => {
                let list = here
                    .as_array_mut()
                    .ok_or_else(|| format!("{path}: {} is not a list", shown(segments, i)))?;
                let len = list.len();
                list.get_mut(*index).ok_or_else(|| {
                    format!("{path}: index {index} out of range (the list has {len} items)")
                })?
            }
        };
    }
    Ok(here)
}

/// The path up to (not including) segment `i`, for messages.
fn shown(segments: &[Segment], i: usize) -> String {
    let mut out = String::new();
    for s in &segments[..i] {
        match s {
            Segment::Field(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            Segment::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    if out.is_empty() {
        "the object".to_owned()
    } else {
        out
    }
}

/// Replaces the value at `path`.
pub(crate) fn set(object: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segments = parse(path)?;
    *walk(object, &segments, path)? = value;
    Ok(())
}

/// Appends `value` to the list at `path`.
pub(crate) fn append(object: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segments = parse(path)?;
    let target = walk(object, &segments, path)?;
    if target.is_null() {
        *target = Value::Array(Vec::new());
    }
    target
        .as_array_mut()
        .ok_or_else(|| format!("{path}: not a list"))?
        .push(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn set_replaces_and_creates_mappings() {
        let mut o = json!({"spec": {"rules": [{"backendRefs": [{"name": "a"}]}]}});
        set(&mut o, "spec.rules[0].backendRefs[0].name", json!("b")).unwrap();
        assert_eq!(o["spec"]["rules"][0]["backendRefs"][0]["name"], "b");
        set(&mut o, "metadata.annotations.note", json!("x")).unwrap();
        assert_eq!(o["metadata"]["annotations"]["note"], "x");
        set(&mut o, "spec.listeners", json!([{"name": "l"}])).unwrap();
        assert_eq!(o["spec"]["listeners"][0]["name"], "l");
    }

    #[test]
    fn append_adds_to_lists() {
        let mut o = json!({"spec": {"listeners": [{"name": "a"}]}});
        append(&mut o, "spec.listeners", json!({"name": "b"})).unwrap();
        append(&mut o, "spec.addresses", json!({"value": "1.2.3.4"})).unwrap();
        assert_eq!(o["spec"]["listeners"][1]["name"], "b");
        assert_eq!(o["spec"]["addresses"][0]["value"], "1.2.3.4");
    }

    #[test]
    fn mistakes_are_named() {
        let mut o = json!({"spec": {"rules": [{}], "name": "x"}});
        let err = set(&mut o, "spec.rules[3].name", json!(1)).unwrap_err();
        assert!(
            err.contains("index 3 out of range (the list has 1 items)"),
            "{err}"
        );
        let err = set(&mut o, "spec.name.inner", json!(1)).unwrap_err();
        assert!(err.contains("spec.name is not a mapping"), "{err}");
        let err = append(&mut o, "spec.name", json!(1)).unwrap_err();
        assert!(err.contains("not a list"), "{err}");
        assert!(set(&mut o, "spec..x", json!(1)).is_err());
        assert!(set(&mut o, "spec.rules[x]", json!(1)).is_err());
        assert!(set(&mut o, "spec.rules[0", json!(1)).is_err());
    }
}
