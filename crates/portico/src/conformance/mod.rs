//! `portico conformance run`: executes conformance cases (the format of
//! `../shared/CASES.md`) against a target and reports like upstream's suite.
//!
//! ```text
//!   --cases DIR ──> case.rs (strict model; a bad case FAILS with the reason)
//!                     │ skip: unclaimed feature / --skip-tests / not --run-test
//!                     ▼
//!   target.rs (standalone: API server cluster.rs + kubelet.rs + Standalone in-process;
//!              local-cluster: the same Cluster and kubelet, written to an API server
//!              served to portico-operator + portico-proxy processes, local_cluster/;
//!              kube: the same Cluster written to a cluster running Portico and the
//!              pods, kube.rs)
//!     │ setup.rs: <data>/conformance/setup.yaml once (base manifests, certificates)
//!     │ per case, phases.rs: generated objects, manifests, checks/, requests.rs, steps
//!     │ then roll the case's objects back and wait until standalone has too
//!     ▼
//!   one line per case: PASS|FAIL|SKIP <name> (<seconds>s)[: why]
//!   N passed, N failed, N skipped        ──> report.rs (--report FILE)
//! ```
//!
//! Cases are data: the runner knows nothing about any particular case, so a case it
//! has never seen runs the same way.

mod backend;
mod base64;
mod case;
mod certs;
mod checks;
mod cluster;
mod defaults;
pub mod features;
mod grpc;
pub(crate) mod http;
mod kube;
mod kubelet;
pub(crate) mod local_cluster;
mod manifest;
mod observe;
mod patch;
mod phases;
mod privileges;
mod report;
mod requests;
mod setup;
mod stream;
mod target;
pub(crate) mod tls;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use backend::EchoMode;
pub use kube::{DEFAULT_ECHO_IMAGE, KubeConfig};

use crate::standalone::AddressPool;
use case::Case;
use manifest::ManifestRoots;
use report::{CaseResult, Outcome};
use target::{Target, TargetConfig};

/// Time allowed for the suite set-up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Time allowed for a case's objects to be gone after it.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How `portico conformance run` runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Folder of case files (`*.yaml`).
    pub cases: PathBuf,
    /// The data folder: manifests, `conformance/setup.yaml`.
    pub data: PathBuf,
    /// CRDs whose defaults the API server applies; `None`: `<data>/crds/standard` when
    /// it exists (`<data>/crds/experimental` for the local-cluster target).
    pub crds: Option<PathBuf>,
    pub report: Option<PathBuf>,
    /// Claimed features; `None`: [`portico_api::features::SUPPORTED`].
    pub supported_features: Option<Vec<String>>,
    /// Features whose cases run although they are not claimed (partly implemented: not
    /// every upstream test has a case yet). The report counts only claimed features.
    pub preview_features: Vec<String>,
    /// Cases skipped as known failures.
    pub skip_tests: Vec<String>,
    /// Only this case.
    pub run_test: Option<String>,
    /// Leave each case's objects (and the folder) in place.
    pub keep: bool,
    pub class_name: String,
    pub address_pool: AddressPool,
    pub echo: EchoMode,
    pub debounce: Duration,
    pub target: TargetChoice,
}

/// What runs the cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetChoice {
    /// `portico standalone` in this process.
    Standalone,
    /// `portico-operator` and `portico-proxy` processes behind an API server: the
    /// in-memory test server, or the cluster of `kubeconfig`. Needs root (the pods run
    /// in a network namespace).
    LocalCluster { kubeconfig: Option<PathBuf> },
    /// A cluster where Portico is installed (kind, EKS, `portico dev-cluster`): the
    /// cluster runs everything, the backends too (`echo_image`).
    Kube(KubeConfig),
}

/// Where the runner writes its lines (stdout in the binary, a buffer in tests).
pub type Output = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
    /// Set when the run stopped early (Ctrl-C).
    pub interrupted: bool,
}

impl Summary {
    pub fn success(&self) -> bool {
        self.failed == 0 && !self.interrupted
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Cases(String),
    #[error("suite set-up failed: {0}")]
    Setup(String),
    #[error("the target did not start: {0}")]
    Target(String),
    #[error("writing the report {}: {message}", path.display())]
    Report { path: PathBuf, message: String },
}

/// A case file, parsed or not.
struct Loaded {
    stem: String,
    path: PathBuf,
    case: Result<Case, String>,
}

fn load_cases(dir: &Path) -> Result<Vec<Loaded>, RunError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| RunError::Cases(format!("cannot read cases folder {}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml") && p.is_file())
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let case = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| Case::parse(&text, &stem));
            Loaded { stem, path, case }
        })
        .collect())
}

/// Runs the cases. `Err` only when the run could not happen at all (no cases folder,
/// the set-up failed); failing cases are in the summary.
pub async fn run(
    config: RunConfig,
    out: Output,
    cancel: CancellationToken,
) -> Result<Summary, RunError> {
    let mut loaded = load_cases(&config.cases)?;
    if let Some(only) = &config.run_test {
        loaded.retain(|l| &l.stem == only);
        if loaded.is_empty() {
            return Err(RunError::Cases(format!(
                "--run-test {only}: no {only}.yaml in {}",
                config.cases.display()
            )));
        }
    }
    if loaded.is_empty() {
        return Err(RunError::Cases(format!(
            "no *.yaml cases in {}",
            config.cases.display()
        )));
    }
    let claimed: BTreeSet<String> = match &config.supported_features {
        Some(list) => list.iter().cloned().collect(),
        None => portico_api::features::SUPPORTED
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    let setup_file = setup::SetupFile::read(&config.data.join("conformance/setup.yaml"))
        .map_err(RunError::Setup)?;
    // A real API server prunes fields its CRDs do not know: the local-cluster target
    // installs the experimental channel (a superset of standard), or the experimental
    // features the cases exercise (HTTPRoute retry, ...) would silently vanish.
    // The kube target reads the defaults from the same channel (its cluster's CRDs are
    // the installation's).
    let channel = match config.target {
        TargetChoice::Standalone => "crds/standard",
        TargetChoice::LocalCluster { .. } | TargetChoice::Kube(_) => "crds/experimental",
    };
    let crds = config.crds.clone().or_else(|| {
        let default = config.data.join(channel);
        default.is_dir().then_some(default)
    });

    let mut target = Target::start(TargetConfig {
        class_name: config.class_name.clone(),
        address_pool: config.address_pool,
        debounce: config.debounce,
        echo: config.echo.clone(),
        crds: crds.clone(),
        keep: config.keep,
        local: match &config.target {
            TargetChoice::Standalone | TargetChoice::Kube(_) => None,
            TargetChoice::LocalCluster { kubeconfig } => Some(local_cluster::LocalClusterConfig {
                kubeconfig: kubeconfig.clone(),
                crds,
            }),
        },
        kube: match &config.target {
            TargetChoice::Kube(kube) => Some(kube.clone()),
            _ => None,
        },
    })
    .await
    .map_err(RunError::Target)?;
    if config.keep {
        out(&format!(
            "objects are written to {}",
            target.dir().display()
        ));
    }

    let setup_roots = ManifestRoots {
        data: config.data.clone(),
        case_dir: config.data.join("conformance"),
    };
    let setup_result = tokio::select! {
        r = setup::run(&mut target, &setup_file, &setup_roots, Instant::now() + SETUP_TIMEOUT) => r,
        () = cancel.cancelled() => Err("interrupted".to_owned()),
    };
    match setup_result {
        Ok(()) => {}
        Err(e) if cancel.is_cancelled() => {
            target.shutdown().await;
            return Err(RunError::Setup(e));
        }
        // Upstream's suite stops here. Running the cases anyway says more while Portico
        // is incomplete: the cases that need what is not ready fail on their own, with
        // their own expectations.
        Err(e) => out(&format!(
            "WARN suite set-up incomplete, running the cases anyway: {e}"
        )),
    }

    let mut summary = Summary::default();
    let mut results = Vec::new();
    for l in &loaded {
        target.cluster.begin_case();
        if cancel.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let started = std::time::Instant::now();
        let case = match &l.case {
            Ok(case) => case,
            Err(reason) => {
                summary.failed += 1;
                out(&format!(
                    "FAIL {} (0.0s): invalid case {}: {reason}",
                    l.stem,
                    l.path.display()
                ));
                continue;
            }
        };
        let skip = if config.skip_tests.contains(&case.name) {
            Some((Outcome::Skipped, "skipped by --skip-tests".to_owned()))
        } else {
            case.feature_names
                .iter()
                .find(|f| !claimed.contains(*f) && !config.preview_features.contains(*f))
                .map(|f| (Outcome::Unsupported, format!("feature {f} not claimed")))
        };
        let outcome = match skip {
            Some((outcome, why)) => {
                summary.skipped += 1;
                out(&format!("SKIP {} (0.0s): {why}", case.name));
                outcome
            }
            None => {
                let roots = ManifestRoots {
                    data: config.data.clone(),
                    case_dir: l.path.parent().map(Path::to_path_buf).unwrap_or_default(),
                };
                let deadline = Instant::now() + case.timeout();
                let result = tokio::select! {
                    r = phases::run_case(&mut target, case, &roots, deadline) => r,
                    () = cancel.cancelled() => Err("interrupted".to_owned()),
                };
                let cleanup = if config.keep {
                    Ok(())
                } else {
                    clean_up(&mut target).await
                };
                let seconds = started.elapsed().as_secs_f64();
                let result = match (result, cleanup) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(e), _) => Err(e),
                    (Ok(()), Err(e)) => Err(format!("passed, but cleaning up failed: {e}")),
                };
                match result {
                    Ok(()) => {
                        summary.passed += 1;
                        out(&format!("PASS {} ({seconds:.1}s)", case.name));
                        Outcome::Passed
                    }
                    Err(e) => {
                        summary.failed += 1;
                        out(&format!("FAIL {} ({seconds:.1}s): {e}", case.name));
                        if let Some(logs) = target.logs() {
                            out(&logs);
                        }
                        Outcome::Failed
                    }
                }
            }
        };
        results.push(CaseResult {
            name: case.name.clone(),
            level: case.level,
            feature_names: case.feature_names.clone(),
            outcome,
        });
    }
    if cancel.is_cancelled() {
        summary.interrupted = true;
    }
    target.shutdown().await;

    out(&format!(
        "{} passed, {} failed, {} skipped{}",
        summary.passed,
        summary.failed,
        summary.skipped,
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    ));
    if let Some(path) = &config.report {
        let report = report::build(&results, &claimed, cluster::now_rfc3339());
        let text = serde_yaml_ng::to_string(&report).map_err(|e| RunError::Report {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| RunError::Report {
            path: path.clone(),
            message: e.to_string(),
        })?;
        out(&format!("report written to {}", path.display()));
    }
    Ok(summary)
}

/// Rolls the case's objects back and waits until pods, slices and standalone agree.
async fn clean_up(target: &mut Target) -> Result<(), String> {
    let changed = target.cluster.rollback().map_err(|e| e.to_string())?;
    tracing::debug!(objects = changed.len(), "rolled the case back");
    target.settle(Instant::now() + CLEANUP_TIMEOUT).await
}
