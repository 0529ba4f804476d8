//! `--report FILE`: a ConformanceReport in upstream's format (the YAML that
//! implementations submit under `conformance/reports/<version>/`).
//!
//! ```text
//! apiVersion: gateway.networking.k8s.io/v1      kind: ConformanceReport
//! date, gatewayAPIVersion (v1.6.1), gatewayAPIChannel, mode: default
//! implementation: {organization, project, url, version, contact}
//! profiles:
//! - name: GATEWAY-HTTP
//!   core:     {result, statistics: {Passed, Failed, Skipped}, failedTests?, skippedTests?}
//!   extended: {... , supportedFeatures, unsupportedFeatures}
//!   summary: "Core tests succeeded. Extended tests succeeded."
//! ```
//!
//! As upstream counts: a test skipped because its features are not claimed is not in
//! the report at all; one skipped by `--skip-tests` is counted as Skipped and named.
//! `result` is `failure` with any failed test, else `partial` with any skipped test,
//! else `success`.
//!
//! Profiles: GATEWAY-GRPC, GATEWAY-HTTP, GATEWAY-TCP and GATEWAY-TLS
//! ([`super::features::profiles`]); a case counts in every profile that has all of its
//! features. A case that runs only because one of its features is a preview feature
//! (`--preview-features`: implemented in part, not claimed) counts in none: the report
//! speaks for what is claimed.

use std::collections::BTreeSet;

use serde::Serialize;

use super::case::Level;
use super::features::{ProfileDef, profiles};

/// How one case ended, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Passed,
    Failed,
    /// `--skip-tests`.
    Skipped,
    /// A feature is not claimed: not reported.
    Unsupported,
}

/// One case's result, for the report.
#[derive(Debug, Clone)]
pub(crate) struct CaseResult {
    pub(crate) name: String,
    pub(crate) level: Level,
    pub(crate) feature_names: Vec<String>,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConformanceReport {
    pub(crate) api_version: &'static str,
    pub(crate) date: String,
    #[serde(rename = "gatewayAPIChannel")]
    pub(crate) gateway_api_channel: &'static str,
    #[serde(rename = "gatewayAPIVersion")]
    pub(crate) gateway_api_version: &'static str,
    pub(crate) implementation: Implementation,
    pub(crate) kind: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) profiles: Vec<Profile>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Implementation {
    pub(crate) contact: Vec<String>,
    pub(crate) organization: String,
    pub(crate) project: String,
    pub(crate) url: String,
    pub(crate) version: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Profile {
    pub(crate) core: Status,
    pub(crate) extended: Extended,
    pub(crate) name: &'static str,
    pub(crate) summary: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) failed_tests: Vec<String>,
    pub(crate) result: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) skipped_tests: Vec<String>,
    pub(crate) statistics: Statistics,
}

#[derive(Debug, Serialize, Default)]
pub(crate) struct Statistics {
    #[serde(rename = "Failed")]
    pub(crate) failed: u32,
    #[serde(rename = "Passed")]
    pub(crate) passed: u32,
    #[serde(rename = "Skipped")]
    pub(crate) skipped: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Extended {
    #[serde(flatten)]
    pub(crate) status: Status,
    pub(crate) supported_features: Vec<String>,
    pub(crate) unsupported_features: Vec<String>,
}

impl Status {
    fn of(results: &[&CaseResult]) -> Self {
        let mut statistics = Statistics::default();
        let mut failed_tests = Vec::new();
        let mut skipped_tests = Vec::new();
        for r in results {
            match r.outcome {
                Outcome::Passed => statistics.passed += 1,
                Outcome::Failed => {
                    statistics.failed += 1;
                    failed_tests.push(r.name.clone());
                }
                Outcome::Skipped => {
                    statistics.skipped += 1;
                    skipped_tests.push(r.name.clone());
                }
                Outcome::Unsupported => {}
            }
        }
        failed_tests.sort();
        skipped_tests.sort();
        let result = if statistics.failed > 0 {
            "failure"
        } else if statistics.skipped > 0 {
            "partial"
        } else {
            "success"
        };
        Self {
            failed_tests,
            result,
            skipped_tests,
            statistics,
        }
    }

    /// Upstream's wording: "succeeded", "failed with N test failures", "partially
    /// succeeded with N test skips".
    fn summary(&self) -> String {
        match self.result {
            "failure" => format!("failed with {} test failures", self.failed_tests.len()),
            "partial" => format!(
                "partially succeeded with {} test skips",
                self.skipped_tests.len()
            ),
            _ => "succeeded".to_owned(),
        }
    }
}

/// Builds the report from every case's result and the claimed features.
pub(crate) fn build(
    results: &[CaseResult],
    claimed: &BTreeSet<String>,
    date: String,
) -> ConformanceReport {
    // Cases of preview features are left out of every profile.
    let counted: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.feature_names.iter().all(|f| claimed.contains(f)))
        .collect();
    let profiles = profiles()
        .iter()
        .map(|p| profile(p, &counted, claimed))
        .collect();
    ConformanceReport {
        api_version: "gateway.networking.k8s.io/v1",
        date,
        gateway_api_channel: "standard",
        gateway_api_version: "v1.6.1",
        implementation: Implementation {
            contact: vec!["https://github.com/portico-dev/portico/issues".to_owned()],
            organization: "portico-dev".to_owned(),
            project: "portico".to_owned(),
            url: "https://github.com/portico-dev/portico".to_owned(),
            version: format!("v{}", env!("CARGO_PKG_VERSION")),
        },
        kind: "ConformanceReport",
        mode: "default",
        profiles,
    }
}

/// One profile's section: the counted cases that belong to it, by level.
fn profile(def: &ProfileDef, counted: &[&CaseResult], claimed: &BTreeSet<String>) -> Profile {
    let in_profile: Vec<&CaseResult> = counted
        .iter()
        .copied()
        .filter(|r| def.contains(&r.feature_names))
        .collect();
    let of_level = |level: Level| -> Vec<&CaseResult> {
        in_profile
            .iter()
            .copied()
            .filter(|r| r.level == level)
            .collect()
    };
    let (supported, unsupported): (Vec<&str>, Vec<&str>) = def
        .extended
        .iter()
        .copied()
        .partition(|f| claimed.contains(*f));
    let core = Status::of(&of_level(Level::Core));
    let extended = Extended {
        status: Status::of(&of_level(Level::Extended)),
        supported_features: supported.into_iter().map(str::to_owned).collect(),
        unsupported_features: unsupported.into_iter().map(str::to_owned).collect(),
    };
    let summary = format!(
        "Core tests {}. Extended tests {}.",
        core.summary(),
        extended.status.summary()
    );
    Profile {
        core,
        extended,
        name: def.name,
        summary,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn result(name: &str, level: Level, features: &[&str], outcome: Outcome) -> CaseResult {
        CaseResult {
            name: name.to_owned(),
            level,
            feature_names: features.iter().map(|f| (*f).to_owned()).collect(),
            outcome,
        }
    }

    fn profile_named<'r>(report: &'r ConformanceReport, name: &str) -> &'r Profile {
        report.profiles.iter().find(|p| p.name == name).unwrap()
    }

    #[test]
    fn profiles_count_their_own_cases_and_never_preview_ones() {
        let claimed: BTreeSet<String> = [
            "Gateway",
            "GRPCRoute",
            "ReferenceGrant",
            "TLSRoute",
            "TLSRouteModeTerminate",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let results = [
            result("GatewayOnly", Level::Core, &["Gateway"], Outcome::Passed),
            result(
                "Grpc",
                Level::Core,
                &["Gateway", "GRPCRoute"],
                Outcome::Passed,
            ),
            result(
                "TlsTerminate",
                Level::Extended,
                &["Gateway", "TLSRoute", "TLSRouteModeTerminate"],
                Outcome::Passed,
            ),
            result(
                "TlsGrant",
                Level::Extended,
                &["Gateway", "TLSRoute", "ReferenceGrant"],
                Outcome::Failed,
            ),
            // Ran as a preview feature (not claimed): counted nowhere.
            result(
                "TcpPreview",
                Level::Extended,
                &["Gateway", "TCPRoute"],
                Outcome::Failed,
            ),
        ];
        let report = build(&results, &claimed, "2026-01-01T00:00:00Z".into());
        let names: Vec<&str> = report.profiles.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            ["GATEWAY-GRPC", "GATEWAY-HTTP", "GATEWAY-TCP", "GATEWAY-TLS"]
        );
        let grpc = profile_named(&report, "GATEWAY-GRPC");
        assert_eq!(grpc.core.statistics.passed, 2, "Gateway-only and Grpc");
        let tls = profile_named(&report, "GATEWAY-TLS");
        assert_eq!(tls.core.statistics.passed, 1);
        assert_eq!(tls.extended.status.statistics.passed, 1);
        assert_eq!(tls.extended.status.failed_tests, ["TlsGrant"]);
        assert_eq!(tls.extended.supported_features, ["TLSRouteModeTerminate"]);
        assert!(
            tls.extended
                .unsupported_features
                .contains(&"TLSRouteModeMixed".to_owned())
        );
        let tcp = profile_named(&report, "GATEWAY-TCP");
        assert_eq!(
            tcp.extended.status.statistics.failed, 0,
            "preview case left out"
        );
        assert_eq!(tcp.extended.status.result, "success");
        assert_eq!(tcp.core.statistics.passed, 1, "the Gateway-only case");
        let http = profile_named(&report, "GATEWAY-HTTP");
        assert_eq!(http.core.statistics.passed, 1);
    }

    #[test]
    fn counts_like_upstream() {
        let claimed: BTreeSet<String> = ["Gateway", "HTTPRoute", "HTTPRouteMethodMatching"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let results = [
            result("A", Level::Core, &["Gateway", "HTTPRoute"], Outcome::Passed),
            result(
                "B",
                Level::Core,
                &["Gateway", "HTTPRoute"],
                Outcome::Skipped,
            ),
            result(
                "C",
                Level::Extended,
                &["Gateway", "HTTPRoute", "HTTPRouteMethodMatching"],
                Outcome::Passed,
            ),
            result(
                "D",
                Level::Extended,
                &["Gateway", "HTTPRoute", "HTTPRouteCORS"],
                Outcome::Unsupported,
            ),
            result(
                "E",
                Level::Extended,
                &["Gateway", "HTTPRoute", "HTTPRouteMethodMatching"],
                Outcome::Failed,
            ),
            result("G", Level::Core, &["Gateway", "GRPCRoute"], Outcome::Failed),
        ];
        let report = build(&results, &claimed, "2026-01-01T00:00:00Z".into());
        let yaml = serde_yaml_ng::to_string(&report).unwrap();
        let p = profile_named(&report, "GATEWAY-HTTP");
        assert_eq!(p.core.result, "partial", "{yaml}");
        assert_eq!(p.core.statistics.passed, 1);
        assert_eq!(p.core.skipped_tests, ["B"]);
        assert_eq!(p.extended.status.result, "failure");
        assert_eq!(p.extended.status.failed_tests, ["E"]);
        assert_eq!(p.extended.status.statistics.passed, 1);
        assert_eq!(
            p.summary,
            "Core tests partially succeeded with 1 test skips. Extended tests failed with 1 test failures."
        );
        assert_eq!(p.extended.supported_features, ["HTTPRouteMethodMatching"]);
        assert!(
            p.extended
                .unsupported_features
                .contains(&"HTTPRouteCORS".to_owned())
        );
        for key in [
            "apiVersion: gateway.networking.k8s.io/v1",
            "kind: ConformanceReport",
            "gatewayAPIVersion: v1.6.1",
            "mode: default",
            "name: GATEWAY-HTTP",
            "Passed: 1",
            "supportedFeatures:",
        ] {
            assert!(yaml.contains(key), "{key} missing in\n{yaml}");
        }
    }
}
