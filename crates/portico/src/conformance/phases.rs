//! One case, phase by phase:
//!
//! ```text
//!   generated objects ─> manifests ─> settle ─> addresses ─> namespaces_ready
//!     ─> conditions ─> listener_status ─> route_parents ─> gateway_zero_routes ─> requests
//!   steps, in order: action (patch | delete | apply: once the clock has left the
//!     second of the newest creationTimestamp) ─> settle ─> namespaces_ready
//!     ─> conditions ─> requests ─> checks (generation_changed, observed_generation_current)
//! ```
//!
//! Everything shares the case's deadline. Errors say which phase broke; the caller
//! rolls the case's objects back afterwards, pass or fail.

use serde_json::Value;
use tokio::time::Instant;

use super::case::{Action, Case, GeneratedObject, Patch, Step, StepCheck};
use super::checks;
use super::cluster::{Cluster, Key, Owner, now_rfc3339};
use super::manifest::{self, ManifestRoots};
use super::requests;
use super::target::Target;

pub(crate) async fn run_case(
    target: &mut Target,
    case: &Case,
    roots: &ManifestRoots,
    deadline: Instant,
) -> Result<(), String> {
    create_generated(target, &case.generated_objects, Owner::Case)?;
    apply_manifests(target, roots, &case.manifests, Owner::Case)?;
    target.check_ports()?;
    target.settle(deadline).await?;

    for gateway in case.gateways.iter().filter(|g| g.address_required) {
        let nn = super::case::NsName {
            namespace: gateway.namespace.clone(),
            name: gateway.name.clone(),
        };
        checks::address(target, &nn, deadline).await?;
    }
    checks::namespaces_ready(target, &case.namespaces_ready, deadline).await?;
    checks::conditions(target, &case.conditions, deadline).await?;
    checks::listener_status(target, &case.listener_status, deadline).await?;
    checks::route_parents(target, &case.route_parents, deadline).await?;
    checks::zero_routes(target, &case.gateway_zero_routes, deadline).await?;
    for (i, request) in case.requests.iter().enumerate() {
        requests::run(target, request, deadline)
            .await
            .map_err(|e| format!("requests[{i}]: {e}"))?;
    }
    for (i, step) in case.steps.iter().enumerate() {
        run_step(target, roots, step, deadline)
            .await
            .map_err(|e| format!("steps[{i}]: {e}"))?;
    }
    Ok(())
}

async fn run_step(
    target: &mut Target,
    roots: &ManifestRoots,
    step: &Step,
    deadline: Instant,
) -> Result<(), String> {
    let mut patched: Option<(Key, Option<i64>)> = None;
    match &step.action {
        Action::Patch(patch) => {
            let key = Key::new(&patch.kind, &patch.namespace, &patch.name);
            let before = target.cluster.generation(&key);
            let (set, append) = patch_fields(patch)?;
            target
                .cluster
                .patch(&key, &set, &append)
                .map_err(|e| format!("patch: {e}"))?;
            patched = Some((key, before));
        }
        Action::Delete(id) => {
            let key = Key::new(&id.kind, &id.namespace, &id.name);
            let deleted = target
                .cluster
                .delete(&key, Owner::Case)
                .map_err(|e| format!("delete: {e}"))?;
            if deleted.is_empty() {
                return Err(format!("delete: {key} not found"));
            }
        }
        Action::Apply(paths) => {
            after_newest_creation(&target.cluster, deadline).await;
            apply_manifests(target, roots, paths, Owner::Case)?;
        }
    }
    target.check_ports()?;
    target.settle(deadline).await?;

    checks::namespaces_ready(target, &step.namespaces_ready, deadline).await?;
    checks::conditions(target, &step.conditions, deadline).await?;
    for (i, request) in step.requests.iter().enumerate() {
        requests::run(target, request, deadline)
            .await
            .map_err(|e| format!("requests[{i}]: {e}"))?;
    }
    for check in &step.checks {
        let Some((key, before)) = &patched else {
            return Err("checks need a patch action".to_owned());
        };
        match check {
            StepCheck::GenerationChanged => {
                let now = target.cluster.generation(key);
                if now == *before {
                    return Err(format!(
                        "generation_changed: {key} is still at generation {}",
                        now.map_or_else(|| "none".to_owned(), |g| g.to_string())
                    ));
                }
            }
            StepCheck::ObservedGenerationCurrent => {
                target
                    .poll(deadline, |view, cluster, _| {
                        checks::conditions::observed_generation_current(view, cluster, key)
                    })
                    .await
                    .map_err(|e| format!("observed_generation_current: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Waits until the clock has left the second of the newest `creationTimestamp`, so that
/// what a step creates is strictly newer than what came before. Upstream tests that
/// create an object mid-test and rely on it being the newer one (conflict resolution by
/// creation time, GEP-713) sleep before creating it for this reason: timestamps have a
/// precision of one second, and on a tie the older-by-name object wins instead.
async fn after_newest_creation(cluster: &Cluster, deadline: Instant) {
    let newest = cluster
        .all()
        .filter_map(|(_, o)| o.pointer("/metadata/creationTimestamp")?.as_str())
        .max()
        .map(str::to_owned);
    let Some(newest) = newest else {
        return;
    };
    // RFC 3339 in UTC with whole seconds compares as text; one second and a margin
    // bound the wait.
    for _ in 0..30 {
        if now_rfc3339() > newest || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// (field path, value) pairs, in the order written.
type FieldValues = Vec<(String, Value)>;

/// The `set` and `append` maps of a patch.
fn patch_fields(patch: &Patch) -> Result<(FieldValues, FieldValues), String> {
    let convert = |mapping: &serde_yaml_ng::Mapping| -> Result<FieldValues, String> {
        mapping
            .iter()
            .map(|(k, v)| {
                let path = k
                    .as_str()
                    .ok_or_else(|| format!("patch: field path {k:?} is not a string"))?;
                let value =
                    serde_json::to_value(v).map_err(|e| format!("patch: value of {path}: {e}"))?;
                Ok((path.to_owned(), value))
            })
            .collect()
    };
    Ok((convert(&patch.set)?, convert(&patch.append)?))
}

pub(crate) fn apply_manifests(
    target: &mut Target,
    roots: &ManifestRoots,
    paths: &[String],
    owner: Owner,
) -> Result<(), String> {
    for path in paths {
        let objects = manifest::read(&roots.resolve(path), &target.class_name)?;
        target.apply_all(objects, owner)?;
    }
    Ok(())
}

pub(crate) fn create_generated(
    target: &mut Target,
    specs: &[GeneratedObject],
    owner: Owner,
) -> Result<(), String> {
    for spec in specs {
        let object = target.authorities.generate(spec)?;
        target.apply_all(vec![object], owner)?;
    }
    Ok(())
}
