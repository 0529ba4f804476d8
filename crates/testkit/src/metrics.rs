//! `docs/metrics.md` as data, and Prometheus text scrapes checked against it.
//!
//! ```text
//! documented("agent")           the rows of the doc's table for one component
//! check_documented("agent", t)  every documented family is in the scrape `t` with its
//!                               type and label names; every portico_ family of `t` is
//!                               documented: the doc and the code cannot drift apart
//! value(t, name, &[(k, v)])     one sample of a scrape, by name and labels
//! ```
//!
//! The table rows look like
//! `| agent | `portico_agent_syncs_total` | counter | `map`, `hook` | meaning |`
//! (labels `-` when there are none).

use std::collections::{BTreeMap, BTreeSet};

/// The documentation the tests read (the same file users read).
pub const METRICS_DOC: &str = include_str!("../../../docs/metrics.md");

/// One row of the doc's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedSeries {
    pub component: String,
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// Label names, sorted.
    pub labels: BTreeSet<String>,
}

/// The documented series of `component` (`proxy`, `operator`, `agent`, `cert-sync`).
pub fn documented(component: &str) -> Vec<DocumentedSeries> {
    METRICS_DOC
        .lines()
        .filter_map(parse_row)
        .filter(|row| row.component == component)
        .collect()
}

fn parse_row(line: &str) -> Option<DocumentedSeries> {
    let cells: Vec<&str> = line
        .trim()
        .strip_prefix('|')?
        .strip_suffix('|')?
        .split('|')
        .map(str::trim)
        .collect();
    let [component, name, kind, labels, _meaning] = cells.as_slice() else {
        return None;
    };
    let name = name.strip_prefix('`')?.strip_suffix('`')?;
    if !name.starts_with("portico_") {
        return None;
    }
    let labels = labels
        .split(',')
        .map(|l| l.trim().trim_matches('`'))
        .filter(|l| !l.is_empty() && *l != "-")
        .map(str::to_owned)
        .collect();
    Some(DocumentedSeries {
        component: (*component).to_owned(),
        name: name.to_owned(),
        kind: (*kind).to_owned(),
        labels,
    })
}

/// A family of a scrape: its `# TYPE` and the label names of its samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    label_sets: BTreeSet<BTreeSet<String>>,
}

/// A sample line taken apart: the name, the labels (name, value) and the value.
type Sample<'a> = (&'a str, Vec<(String, String)>, f64);

/// Splits `name{a="x",b="y"} 1` into the name, the labels and the value.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series, Vec::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => val.extend(chars.next()),
                '"' => break,
                c => val.push(c),
            }
        }
        if chars.peek() == Some(&',') {
            chars.next();
        }
        labels.push((key.trim().to_owned(), val));
    }
    Some((name, labels, value))
}

fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                out.entry(name.to_owned()).or_default().kind = kind.trim().to_owned();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((name, labels, _)) = parse_sample(line) else {
            continue;
        };
        // Histogram samples are name_bucket{le}, name_sum and name_count.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (out.get(base)?.kind == "histogram").then_some(base)
            })
            .unwrap_or(name);
        let names = labels
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k != "le")
            .collect();
        out.entry(family.to_owned())
            .or_default()
            .label_sets
            .insert(names);
    }
    out
}

/// Checks the scrape `text` of `component` against the doc: every documented family is
/// there (with at least one sample), with the documented type and label names, and
/// every `portico_` family of the scrape is documented. The error lists every mismatch.
pub fn check_documented(component: &str, text: &str) -> Result<(), String> {
    let documented = documented(component);
    if documented.is_empty() {
        return Err(format!("docs/metrics.md documents nothing for {component}"));
    }
    let scraped = families(text);
    let mut problems = Vec::new();
    for doc in &documented {
        match scraped.get(&doc.name) {
            None => problems.push(format!("{}: documented, not in the scrape", doc.name)),
            Some(f) if f.label_sets.is_empty() => {
                problems.push(format!("{}: no sample in the scrape", doc.name));
            }
            Some(f) => {
                if f.kind != doc.kind {
                    problems.push(format!(
                        "{}: documented as {}, scraped as {}",
                        doc.name, doc.kind, f.kind
                    ));
                }
                for labels in &f.label_sets {
                    if *labels != doc.labels {
                        problems.push(format!(
                            "{}: documented labels {:?}, scraped {:?}",
                            doc.name, doc.labels, labels
                        ));
                    }
                }
            }
        }
    }
    let names: BTreeSet<&str> = documented.iter().map(|d| d.name.as_str()).collect();
    for name in scraped.keys() {
        if name.starts_with("portico_") && !names.contains(name.as_str()) {
            problems.push(format!(
                "{name}: in the scrape, not documented for {component}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "docs/metrics.md and the {component} scrape differ:\n  {}\n--- scrape:\n{text}",
            problems.join("\n  ")
        ))
    }
}

/// The value of the sample `name` whose labels include `labels` (the first such), or
/// `None` when there is none.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_sample)
        .find(|(n, have, _)| {
            *n == name
                && labels
                    .iter()
                    .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
        })
        .map(|(_, _, v)| v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_component_has_rows_and_rows_are_well_formed() {
        for component in ["proxy", "operator", "agent", "cert-sync"] {
            let rows = documented(component);
            assert!(!rows.is_empty(), "{component}");
            for row in rows {
                assert!(
                    ["counter", "gauge", "histogram"].contains(&row.kind.as_str()),
                    "{row:?}"
                );
                if row.kind == "counter" {
                    assert!(row.name.ends_with("_total"), "{row:?}");
                }
            }
        }
    }

    #[test]
    fn a_scrape_is_checked_both_ways() {
        let doc = documented("agent");
        let mut text = String::new();
        for d in &doc {
            text.push_str(&format!("# TYPE {} {}\n", d.name, d.kind));
            let labels: Vec<String> = d.labels.iter().map(|l| format!("{l}=\"x\"")).collect();
            let suffix = if d.kind == "histogram" { "_count" } else { "" };
            text.push_str(&format!("{}{suffix}{{{}}} 1\n", d.name, labels.join(",")));
        }
        check_documented("agent", &text).unwrap();
        let extra = format!("{text}# TYPE portico_agent_new gauge\nportico_agent_new 1\n");
        let err = check_documented("agent", &extra).unwrap_err();
        assert!(
            err.contains("portico_agent_new: in the scrape, not documented"),
            "{err}"
        );
        let first = &doc[0].name;
        let missing: String = text
            .lines()
            .filter(|l| !l.contains(first.as_str()))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = check_documented("agent", &missing).unwrap_err();
        assert!(
            err.contains(&format!("{first}: documented, not in the scrape")),
            "{err}"
        );
    }

    #[test]
    fn samples_are_found_by_labels_with_escapes() {
        let text = "# TYPE m counter\nm{a=\"x\\\"y\",b=\"2\"} 3\nm{a=\"z\",b=\"2\"} 4\nplain 7\n";
        assert_eq!(value(text, "m", &[("a", "x\"y")]), Some(3.0));
        assert_eq!(value(text, "m", &[("a", "z"), ("b", "2")]), Some(4.0));
        assert_eq!(value(text, "plain", &[]), Some(7.0));
        assert_eq!(value(text, "m", &[("a", "nope")]), None);
    }
}
