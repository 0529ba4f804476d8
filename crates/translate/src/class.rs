//! The status of our GatewayClasses: Accepted, SupportedVersion and supportedFeatures.
//!
//! Gateway API (GatewayClass): "Implementations MUST populate status on all GatewayClass
//! resources which specify their controller name." Classes of other controllers are
//! theirs and get nothing from us.

use portico_api::features;
use portico_api::gateway::GatewayClass;
use portico_api::names::{self, condition, reason};

use crate::inputs::Options;
use crate::status::{Condition, GatewayClassStatus};

/// Why a class of ours is not accepted, if it is not.
///
/// Gateway API (GatewayClass parametersRef): "If the referent cannot be found, refers to
/// an unsupported kind, or when the data within that resource is malformed, the
/// GatewayClass SHOULD be rejected with the "Accepted" status condition set to "False"
/// and an "InvalidParameters" reason." Portico defines no parameters kind.
pub(crate) fn problem(class: &GatewayClass) -> Option<String> {
    let params = class.spec.parameters_ref.as_ref()?;
    Some(format!(
        "parametersRef to {} {:?}: Portico reads no parameters of this kind",
        crate::gateway::kind_group(&params.kind, &params.group),
        params.name
    ))
}

pub(crate) fn status(class: &GatewayClass, options: &Options) -> GatewayClassStatus {
    let generation = class.metadata.generation;
    let why_not = problem(class);
    let accepted = match &why_not {
        None => Condition::new(
            condition::ACCEPTED,
            true,
            reason::ACCEPTED,
            format!("handled by {}", options.controller_name),
            generation,
        ),
        Some(why) => Condition::new(
            condition::ACCEPTED,
            false,
            reason::INVALID_PARAMETERS,
            why.clone(),
            generation,
        ),
    };
    GatewayClassStatus {
        conditions: vec![
            accepted,
            supported_version(options.crd_bundle_version.as_deref(), generation),
        ],
        // A class that is not accepted supports nothing.
        supported_features: if why_not.is_none() {
            features::SUPPORTED
                .iter()
                .map(|f| (*f).to_owned())
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// Gateway API (GatewayClass conditions): "SupportedVersion [...] indicates whether the
/// GatewayClass supports the version(s) of Gateway API CRDs present in the cluster." The
/// CRDs carry their release in the `gateway.networking.k8s.io/bundle-version` annotation.
/// Patch releases do not change the schema, so any `v1.6.x` is supported; a missing
/// annotation, or another release, is not. Portico keeps serving what it can read either
/// way, so this condition does not affect Accepted.
fn supported_version(installed: Option<&str>, generation: Option<i64>) -> Condition {
    let built = names::GATEWAY_API_BUNDLE_VERSION;
    match installed {
        Some(v) if same_minor(v, built) => Condition::new(
            condition::SUPPORTED_VERSION,
            true,
            reason::SUPPORTED_VERSION,
            format!("Gateway API {v} is supported"),
            generation,
        ),
        Some(v) => Condition::new(
            condition::SUPPORTED_VERSION,
            false,
            reason::UNSUPPORTED_VERSION,
            format!("Gateway API CRDs are at {v}; Portico supports {built}: install that bundle"),
            generation,
        ),
        None => Condition::new(
            condition::SUPPORTED_VERSION,
            false,
            reason::UNSUPPORTED_VERSION,
            format!(
                "the GatewayClass CRD has no {} annotation; Portico supports {built}: install that bundle",
                names::BUNDLE_VERSION_ANNOTATION
            ),
            generation,
        ),
    }
}

/// `v1.6.0` and `v1.6.1` are the same minor release; `v1.60.0` and `v1.6` are not v1.6.x.
fn same_minor(a: &str, b: &str) -> bool {
    fn minor(v: &str) -> Option<(&str, &str)> {
        let mut parts = v.strip_prefix('v')?.split('.');
        let (major, minor, _patch) = (parts.next()?, parts.next()?, parts.next()?);
        Some((major, minor))
    }
    minor(a).is_some_and(|m| minor(b) == Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ConditionStatus;
    use portico_api::gateway::gatewayclasses::{GatewayClassParametersRef, GatewayClassSpec};
    use portico_api::k8s::ObjectMeta;

    fn class(params: bool) -> GatewayClass {
        GatewayClass {
            metadata: ObjectMeta {
                name: Some("portico".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: GatewayClassSpec {
                controller_name: names::CONTROLLER_NAME.into(),
                parameters_ref: params.then(|| GatewayClassParametersRef {
                    group: "example.com".into(),
                    kind: "Config".into(),
                    name: "c".into(),
                    namespace: None,
                }),
                description: None,
            },
            status: None,
        }
    }

    fn conditions(status: &GatewayClassStatus) -> Vec<(&str, ConditionStatus, &str, Option<i64>)> {
        status
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status,
                    c.reason.as_str(),
                    c.observed_generation,
                )
            })
            .collect()
    }

    #[test]
    fn accepted_with_features_and_version() {
        let status = status(&class(false), &Options::default());
        assert_eq!(
            conditions(&status),
            vec![
                ("Accepted", ConditionStatus::True, "Accepted", Some(3)),
                (
                    "SupportedVersion",
                    ConditionStatus::True,
                    "SupportedVersion",
                    Some(3)
                ),
            ]
        );
        assert_eq!(status.supported_features, features::SUPPORTED);
    }

    #[test]
    fn parameters_are_invalid() {
        let status = status(&class(true), &Options::default());
        assert_eq!(
            conditions(&status)[0],
            (
                "Accepted",
                ConditionStatus::False,
                "InvalidParameters",
                Some(3)
            )
        );
        assert!(status.supported_features.is_empty());
    }

    /// The upstream GatewayClassSupportedVersionCondition test: no annotation, then the
    /// bundle version, then `v0.0.0`.
    #[test]
    fn supported_version_follows_the_crd_annotation() {
        let cases = [
            (None, false),
            (Some("v1.6.1"), true),
            (Some("v1.6.0"), true),
            (Some("v0.0.0"), false),
            (Some("v1.60.1"), false),
            (Some("v1.6"), false),
            (Some("1.6.1"), false),
        ];
        for (installed, want) in cases {
            let options = Options {
                crd_bundle_version: installed.map(Into::into),
                ..Options::default()
            };
            let status = status(&class(false), &options);
            let version = &status.conditions[1];
            assert_eq!(version.status, ConditionStatus::from(want), "{installed:?}");
            // The class stays accepted either way.
            assert_eq!(status.conditions[0].status, ConditionStatus::True);
        }
    }
}
