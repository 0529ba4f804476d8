//! The pure core of cert-sync: from the certificateRefs of our Gateways, the source
//! Secrets and what the secrets namespace holds, what to write, what to delete and what
//! to report. No I/O and no clock (`now` is an argument), so every rule is unit-tested.
//!
//! ```text
//!  CertificateRefUse[] (portico_translate::certificate_refs: ours, ReferenceGrant-checked)
//!    │ permitted, source exists ─────────────────> one copy per source Secret
//!    │                                              name: kept if a copy of ours exists,
//!    │                                              else <ns>-<name>, else <prefix>-<hash>
//!    │                                              ├─ none there     ─> Write::Create
//!    │                                              ├─ ours, differs  ─> Write::Replace (rv)
//!    │                                              └─ ours, same     ─> nothing
//!    └─ per (Gateway, Secret) ───────────────────> Report { notAfter, problem, expiring }
//!  Secrets of the secrets namespace with managed-by=portico-cert-sync
//!    and no source above ────────────────────────> Delete (uid + rv preconditions)
//! ```
//!
//! Secrets in the secrets namespace without our managed-by label are never written or
//! deleted: their names are only avoided. Copies mirror their source as it is, valid or
//! not: whether a certificate is usable is for the operator's listener condition to say
//! (with the same check), and the problem is reported here as well.

use std::collections::{BTreeMap, BTreeSet};

use portico_api::k8s::{ObjectMeta, Secret};
use portico_api::names::{self, event};
use portico_translate::{CertificateRefUse, ObjectRef};

use crate::certificate::{self, rfc3339};
use crate::naming;

/// One Secret to write into the secrets namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// No Secret of that name exists: POST (fails if one appeared meanwhile).
    Create(Secret),
    /// Our copy exists and differs: PUT over the resourceVersion we saw.
    Replace(Secret),
}

impl Write {
    pub fn secret(&self) -> &Secret {
        match self {
            Write::Create(s) | Write::Replace(s) => s,
        }
    }
}

/// A copy of ours with no source any more, with the preconditions of its deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub name: String,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Why a certificateRef cannot be served: an Event reason and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// What one Gateway's reference to one Secret comes to (listeners of a Gateway that
/// share a Secret are reported once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub gateway: ObjectRef,
    pub secret: ObjectRef,
    /// The copy's name in the secrets namespace, when there is one.
    pub copy: Option<String>,
    /// The leaf certificate's notAfter (Unix seconds), when it parses.
    pub not_after: Option<i64>,
    pub problem: Option<Problem>,
    /// Usable, but expires within the warning period.
    pub expiring: bool,
}

/// Everything one pass must do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub writes: Vec<Write>,
    pub deletes: Vec<Delete>,
    pub reports: Vec<Report>,
}

/// What a pass starts from.
#[derive(Debug)]
pub struct PlanInput<'a> {
    /// The certificateRefs of our Gateways.
    pub refs: &'a [CertificateRefUse],
    /// The `kubernetes.io/tls` Secrets of the cluster, by namespace/name.
    pub sources: &'a BTreeMap<ObjectRef, &'a Secret>,
    /// Every Secret of the secrets namespace, ours or not.
    pub existing: &'a [&'a Secret],
    pub secrets_namespace: &'a str,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// Seconds before notAfter from which a certificate counts as expiring.
    pub expiry_warning: i64,
}

/// Whether a Secret is a copy cert-sync made (and may therefore write or delete).
pub fn is_ours(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::MANAGED_BY_LABEL))
        .is_some_and(|v| v == names::CERT_SYNC_MANAGER)
}

/// The source a copy of ours names in its annotation.
fn source_of(secret: &Secret) -> Option<ObjectRef> {
    let source = secret
        .metadata
        .annotations
        .as_ref()?
        .get(names::SOURCE_ANNOTATION)?;
    let (ns, name) = source.split_once('/')?;
    Some(ObjectRef::new(ns, name))
}

pub fn plan(input: &PlanInput<'_>) -> Plan {
    let existing: BTreeMap<&str, &Secret> = input
        .existing
        .iter()
        .filter_map(|s| Some((s.metadata.name.as_deref()?, *s)))
        .collect();
    // Our copies by the source they belong to; of two copies of one source the first by
    // name is kept, the other is stale.
    let mut copy_of: BTreeMap<ObjectRef, &str> = BTreeMap::new();
    for (name, secret) in &existing {
        if is_ours(secret)
            && let Some(source) = source_of(secret)
        {
            copy_of.entry(source).or_insert(name);
        }
    }

    let wanted: BTreeSet<&ObjectRef> = input
        .refs
        .iter()
        .filter(|r| r.permitted && input.sources.contains_key(&r.secret))
        .map(|r| &r.secret)
        .collect();

    // Names: first the copies that exist keep theirs, then new ones get the plain name
    // or, when it is too long or taken, the hashed one.
    let mut names: BTreeMap<&ObjectRef, String> = BTreeMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for source in &wanted {
        if let Some(name) = copy_of.get(*source) {
            names.insert(source, (*name).to_owned());
            used.insert((*name).to_owned());
        }
    }
    let mut unnamed = Vec::new();
    for source in &wanted {
        if names.contains_key(source) {
            continue;
        }
        let free = |n: &String| !used.contains(n) && !existing.contains_key(n.as_str());
        let candidate = naming::plain_name(&source.namespace, &source.name)
            .filter(free)
            .or_else(|| Some(naming::hashed_name(&source.namespace, &source.name)).filter(free));
        match candidate {
            Some(name) => {
                used.insert(name.clone());
                names.insert(source, name);
            }
            None => unnamed.push(*source),
        }
    }

    let mut plan = Plan::default();
    for (source, name) in &names {
        let Some(secret) = input.sources.get(*source) else {
            continue;
        };
        let desired = copy(secret, source, name, input.secrets_namespace);
        match existing.get(name.as_str()) {
            None => plan.writes.push(Write::Create(desired)),
            Some(current) if !same_copy(current, &desired) => {
                let mut desired = desired;
                desired.metadata.resource_version = current.metadata.resource_version.clone();
                plan.writes.push(Write::Replace(desired));
            }
            Some(_) => {}
        }
    }
    for (name, secret) in &existing {
        if is_ours(secret) && !used.contains(*name) {
            plan.deletes.push(Delete {
                name: (*name).to_owned(),
                uid: secret.metadata.uid.clone(),
                resource_version: secret.metadata.resource_version.clone(),
            });
        }
    }

    let mut seen = BTreeSet::new();
    for r in input.refs {
        if !seen.insert((&r.gateway, &r.secret)) {
            continue;
        }
        plan.reports
            .push(report(input, r, names.get(&r.secret), &unnamed));
    }
    plan
}

fn report(
    input: &PlanInput<'_>,
    r: &CertificateRefUse,
    copy: Option<&String>,
    unnamed: &[&ObjectRef],
) -> Report {
    let mut report = Report {
        gateway: r.gateway.clone(),
        secret: r.secret.clone(),
        copy: None,
        not_after: None,
        problem: None,
        expiring: false,
    };
    let invalid = |message: String| Problem {
        reason: event::INVALID_CERTIFICATE_REF,
        message,
    };
    if !r.permitted {
        report.problem = Some(Problem {
            reason: event::REF_NOT_PERMITTED,
            message: format!(
                "Secret {}: no ReferenceGrant in namespace {:?} allows Gateways of namespace {:?} to refer to it",
                r.secret, r.secret.namespace, r.gateway.namespace
            ),
        });
        return report;
    }
    let Some(secret) = input.sources.get(&r.secret) else {
        report.problem = Some(invalid(format!(
            "Secret {} does not exist (or is not of type kubernetes.io/tls)",
            r.secret
        )));
        return report;
    };
    let inspection = certificate::inspect(secret, input.now);
    report.not_after = inspection.not_after;
    report.copy = copy.cloned();
    report.problem = inspection
        .problem
        .map(|why| invalid(format!("Secret {}: {why}", r.secret)));
    if report.problem.is_none() && unnamed.contains(&&r.secret) {
        report.problem = Some(invalid(format!(
            "Secret {}: no free name for its copy in namespace {:?}",
            r.secret, input.secrets_namespace
        )));
    }
    if report.problem.is_none()
        && let Some(not_after) = report.not_after
        && not_after - input.now <= input.expiry_warning
    {
        report.expiring = true;
    }
    report
}

/// A report's expiry warning, for the log and the Event.
pub fn expiring_message(report: &Report) -> String {
    let when = report.not_after.map_or_else(String::new, rfc3339);
    format!(
        "the certificate of Secret {} expires at {when}",
        report.secret
    )
}

/// The copy of `secret` named `name` in the secrets namespace: its type and data, our
/// labels and the source annotation; nothing else of the source's metadata.
fn copy(secret: &Secret, source: &ObjectRef, name: &str, namespace: &str) -> Secret {
    let labels = BTreeMap::from([
        (
            names::MANAGED_BY_LABEL.to_owned(),
            names::CERT_SYNC_MANAGER.to_owned(),
        ),
        (
            names::SOURCE_NAMESPACE_LABEL.to_owned(),
            source.namespace.clone(),
        ),
        (
            names::SOURCE_NAME_LABEL.to_owned(),
            naming::label_value(&source.namespace, &source.name),
        ),
    ]);
    let annotations = BTreeMap::from([(names::SOURCE_ANNOTATION.to_owned(), source.to_string())]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: secret.type_.clone(),
        data: secret.data.clone(),
        ..Default::default()
    }
}

/// Whether `current` already is `desired`: same type and data, our labels and annotation
/// present with the same values (labels others added are left alone).
fn same_copy(current: &Secret, desired: &Secret) -> bool {
    let contains = |have: &Option<BTreeMap<String, String>>,
                    want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    current.type_ == desired.type_
        && current.data.clone().unwrap_or_default() == desired.data.clone().unwrap_or_default()
        && contains(&current.metadata.labels, &desired.metadata.labels)
        && contains(&current.metadata.annotations, &desired.metadata.annotations)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::certificate::tests::{mk_pem, mk_tls_secret};

    const NS: &str = "portico-secrets";
    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn mk_ref(gateway: &str, secret: &str, permitted: bool) -> CertificateRefUse {
        let (gns, gname) = gateway.split_once('/').unwrap();
        let (sns, sname) = secret.split_once('/').unwrap();
        CertificateRefUse {
            gateway: ObjectRef::new(gns, gname),
            listener: "https".into(),
            secret: ObjectRef::new(sns, sname),
            permitted,
        }
    }

    fn mk_valid(ns: &str, name: &str, not_after: i64) -> Secret {
        let (crt, key) = mk_pem("web.example", not_after);
        mk_tls_secret(ns, name, &crt, &key)
    }

    /// A copy as a previous pass wrote it, with a uid and a resourceVersion.
    fn mk_copy_of(source: &Secret, name: &str) -> Secret {
        let key = ObjectRef::new(
            source.metadata.namespace.clone().unwrap(),
            source.metadata.name.clone().unwrap(),
        );
        let mut s = copy(source, &key, name, NS);
        s.metadata.uid = Some(format!("uid-{name}"));
        s.metadata.resource_version = Some("7".into());
        s
    }

    fn run(refs: &[CertificateRefUse], sources: &[&Secret], existing: &[&Secret]) -> Plan {
        let sources: BTreeMap<ObjectRef, &Secret> = sources
            .iter()
            .map(|s| {
                (
                    ObjectRef::new(
                        s.metadata.namespace.clone().unwrap(),
                        s.metadata.name.clone().unwrap(),
                    ),
                    *s,
                )
            })
            .collect();
        plan(&PlanInput {
            refs,
            sources: &sources,
            existing,
            secrets_namespace: NS,
            now: NOW,
            expiry_warning: 14 * DAY,
        })
    }

    fn created(plan: &Plan) -> Vec<&str> {
        plan.writes
            .iter()
            .filter(|w| matches!(w, Write::Create(_)))
            .map(|w| w.secret().metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn permitted_refs_are_copied_once_with_labels() {
        let cert = mk_valid("apps", "web-cert", NOW + 90 * DAY);
        let refs = [
            mk_ref("apps/web", "apps/web-cert", true),
            mk_ref("apps/api", "apps/web-cert", true),
        ];
        let plan = run(&refs, &[&cert], &[]);
        assert_eq!(created(&plan), ["apps-web-cert"]);
        let copy = plan.writes[0].secret();
        assert_eq!(copy.metadata.namespace.as_deref(), Some(NS));
        assert_eq!(copy.data, cert.data);
        assert_eq!(copy.type_.as_deref(), Some("kubernetes.io/tls"));
        let labels = copy.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[names::MANAGED_BY_LABEL], "portico-cert-sync");
        assert_eq!(labels[names::SOURCE_NAMESPACE_LABEL], "apps");
        assert_eq!(labels[names::SOURCE_NAME_LABEL], "web-cert");
        assert_eq!(plan.reports.len(), 2);
        for r in &plan.reports {
            assert_eq!(r.problem, None);
            assert_eq!(r.copy.as_deref(), Some("apps-web-cert"));
            assert_eq!(r.not_after, Some(NOW + 90 * DAY));
            assert!(!r.expiring);
        }
    }

    #[test]
    fn unchanged_copies_are_left_changed_ones_replaced_over_their_version() {
        let cert = mk_valid("apps", "web-cert", NOW + 90 * DAY);
        let refs = [mk_ref("apps/web", "apps/web-cert", true)];
        let current = mk_copy_of(&cert, "apps-web-cert");
        assert_eq!(
            run(&refs, &[&cert], &[&current]),
            Plan {
                reports: run(&refs, &[&cert], &[]).reports,
                ..Plan::default()
            }
        );

        let rotated = mk_valid("apps", "web-cert", NOW + 180 * DAY);
        let plan = run(&refs, &[&rotated], &[&current]);
        let [Write::Replace(s)] = plan.writes.as_slice() else {
            panic!("{:?}", plan.writes)
        };
        assert_eq!(s.data, rotated.data);
        assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(plan.reports[0].not_after, Some(NOW + 180 * DAY));
    }

    #[test]
    fn not_permitted_or_missing_are_reported_not_copied_and_stale_copies_go() {
        let cert = mk_valid("certs", "shared", NOW + 90 * DAY);
        let stale = mk_copy_of(&cert, "certs-shared");
        let refs = [
            mk_ref("apps/web", "certs/shared", false),
            mk_ref("apps/web", "apps/gone", true),
        ];
        let plan = run(&refs, &[&cert], &[&stale]);
        assert!(plan.writes.is_empty());
        assert_eq!(
            plan.deletes,
            [Delete {
                name: "certs-shared".into(),
                uid: Some("uid-certs-shared".into()),
                resource_version: Some("7".into()),
            }]
        );
        let reasons: Vec<_> = plan
            .reports
            .iter()
            .map(|r| (r.secret.to_string(), r.problem.as_ref().unwrap().reason))
            .collect();
        assert_eq!(
            reasons,
            [
                ("certs/shared".to_owned(), event::REF_NOT_PERMITTED),
                ("apps/gone".to_owned(), event::INVALID_CERTIFICATE_REF),
            ]
        );
    }

    #[test]
    fn foreign_secrets_are_never_written_or_deleted_only_avoided() {
        let cert = mk_valid("apps", "web-cert", NOW + 90 * DAY);
        // Someone else's Secret holds the plain name, another is merely in the namespace.
        let mut squatter = mk_valid(NS, "apps-web-cert", NOW);
        squatter.metadata.uid = Some("theirs".into());
        let bystander = mk_valid(NS, "unrelated", NOW);
        let refs = [mk_ref("apps/web", "apps/web-cert", true)];
        let plan = run(&refs, &[&cert], &[&squatter, &bystander]);
        let names = created(&plan);
        assert_eq!(names.len(), 1);
        assert_ne!(names[0], "apps-web-cert");
        assert!(names[0].starts_with("apps-web-cert-"), "{names:?}");
        assert!(plan.deletes.is_empty());
        assert_eq!(plan.reports[0].copy.as_deref(), Some(names[0]));
    }

    #[test]
    fn colliding_plain_names_get_distinct_copies() {
        let a = mk_valid("a-b", "c", NOW + 90 * DAY);
        let b = mk_valid("a", "b-c", NOW + 90 * DAY);
        let refs = [
            mk_ref("a-b/gw", "a-b/c", true),
            mk_ref("a/gw", "a/b-c", true),
        ];
        let plan = run(&refs, &[&a, &b], &[]);
        let mut names = created(&plan);
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"a-b-c"));
    }

    #[test]
    fn invalid_expired_and_expiring_certificates() {
        let expiring = mk_valid("apps", "soon", NOW + 3 * DAY);
        let expired = mk_valid("apps", "old", NOW - DAY);
        let (crt, _) = mk_pem("x.example", NOW + 90 * DAY);
        let (_, other_key) = mk_pem("y.example", NOW + 90 * DAY);
        let mismatched = mk_tls_secret("apps", "mismatched", &crt, &other_key);
        let refs = [
            mk_ref("apps/web", "apps/soon", true),
            mk_ref("apps/web", "apps/old", true),
            mk_ref("apps/web", "apps/mismatched", true),
        ];
        let plan = run(&refs, &[&expiring, &expired, &mismatched], &[]);
        // Mirrored as they are: the operator's listener condition judges them too.
        assert_eq!(created(&plan).len(), 3);
        let r = &plan.reports;
        assert!(r[0].expiring && r[0].problem.is_none());
        assert!(expiring_message(&r[0]).contains("apps/soon"));
        let p = r[1].problem.as_ref().unwrap();
        assert_eq!(p.reason, event::INVALID_CERTIFICATE_REF);
        assert!(p.message.contains("expired"), "{}", p.message);
        assert!(!r[1].expiring);
        let p = r[2].problem.as_ref().unwrap();
        assert!(
            p.message.contains("do not make a certificate"),
            "{}",
            p.message
        );
        assert_eq!(r[2].not_after, Some(NOW + 90 * DAY));
    }
}
