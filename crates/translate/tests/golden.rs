//! Golden-file tests: `tests/golden/<case>/input.yaml` (multi-document Kubernetes YAML)
//! is translated with the default options (or those of an optional `options.yaml`, see
//! [`case_options`]), and the config and statuses, serialized as
//! YAML, must equal `config.yaml` and `status.yaml` beside it.
//!
//! `PORTICO_BLESS=1 cargo test -p portico-translate --test golden` rewrites the expected
//! files instead. Read every rewritten file before committing it: these files are the
//! specification of the translator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use portico_translate::{Exposure, Inputs, ObjectRef, Options, Output, Translator, translate};
use serde::Deserialize;
use serde_yaml_ng::Value;

#[test]
fn golden() {
    let bless = std::env::var("PORTICO_BLESS").is_ok_and(|v| v == "1");
    let cases = cases();

    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let input = fs::read_to_string(case.join("input.yaml")).unwrap();
        let inputs = parse_inputs(&input).unwrap_or_else(|e| panic!("{name}: input.yaml: {e}"));
        let options = case_options(case).unwrap_or_else(|e| panic!("{name}: options.yaml: {e}"));
        let output = translate(&inputs, &options);

        // The translator must not depend on the order objects are listed in.
        let reversed = translate(&reverse(&inputs), &options);
        if reversed != output {
            failures.push(format!(
                "{name}: output changes when the inputs are listed in reverse order"
            ));
        }

        let (config, status) = render(&output);
        for (file, got) in [("config.yaml", config), ("status.yaml", status)] {
            let path = case.join(file);
            if bless {
                fs::write(&path, &got).unwrap();
                continue;
            }
            let want = fs::read_to_string(&path).unwrap_or_default();
            if want != got {
                failures.push(format!(
                    "{name}/{file} differs (- expected, + got; PORTICO_BLESS=1 rewrites it):\n{}",
                    line_diff(&want, &got)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The folders under `tests/golden` with an `input.yaml`, sorted; at least one.
fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/golden exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.join("input.yaml").is_file())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        root.display()
    );
    cases
}

/// [`Translator`] (incremental) must give what [`translate`] gives, on every snapshot of
/// a sequence of edits of each golden case: the non-route objects added one by one, then
/// the routes (cached routes, new routes), the non-route objects taken away and put back
/// (every route's context changes), each route edited in turn (its generation bumped),
/// and the routes taken away one by one.
#[test]
fn incremental_equals_full() {
    let cases = cases();
    let mut steps = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let full = parse_inputs(&fs::read_to_string(case.join("input.yaml")).unwrap()).unwrap();
        let options = case_options(case).unwrap();
        let (routes, others) = counts(&full);
        let mut sequence: Vec<Inputs> = Vec::new();
        sequence.extend((0..=others).map(|o| truncated(&full, 0, o)));
        sequence.extend((0..=routes).map(|r| truncated(&full, r, others)));
        sequence.extend((0..=others).rev().map(|o| truncated(&full, routes, o)));
        sequence.extend((0..=others).map(|o| truncated(&full, routes, o)));
        let mut edited = full.clone();
        for i in 0..routes {
            bump_route(&mut edited, i);
            sequence.push(edited.clone());
        }
        sequence.extend((0..=routes).rev().map(|r| truncated(&edited, r, others)));

        let mut translator = Translator::new();
        for (step, inputs) in sequence.iter().enumerate() {
            let incremental = translator.translate(inputs, &options);
            let scratch = translate(inputs, &options);
            if incremental != scratch {
                let (want_config, want_status) = render(&scratch);
                let (got_config, got_status) = render(&incremental);
                panic!(
                    "{name}, step {step}: incremental translation differs from a full one:\n{}\n{}",
                    line_diff(&want_config, &got_config),
                    line_diff(&want_status, &got_status)
                );
            }
            steps += 1;
        }
    }
    assert!(steps > cases.len() * 4, "too few steps: {steps}");
}

/// (routes, other objects) of a snapshot.
fn counts(inputs: &Inputs) -> (usize, usize) {
    let all = truncated(inputs, usize::MAX, usize::MAX);
    let routes = all.http_routes.len()
        + all.grpc_routes.len()
        + all.tls_routes.len()
        + all.tcp_routes.len()
        + all.udp_routes.len();
    let others = all.gateway_classes.len()
        + all.gateways.len()
        + all.listener_sets.len()
        + all.services.len()
        + all.endpoint_slices.len()
        + all.namespaces.len()
        + all.reference_grants.len()
        + all.secrets.len()
        + all.backend_tls_policies.len()
        + all.config_maps.len();
    (routes, others)
}

/// The first `routes` routes and the first `others` other objects of `inputs`, counting
/// through the kinds in declaration order.
#[allow(unused_assignments)] // the budget left after the last kind
fn truncated(inputs: &Inputs, routes: usize, others: usize) -> Inputs {
    macro_rules! take {
        ($out:ident, $budget:ident, $($field:ident),*) => {
            $(
                let n = $budget.min(inputs.$field.len());
                $out.$field = inputs.$field[..n].to_vec();
                $budget -= n;
            )*
        };
    }
    let mut out = Inputs::default();
    let mut budget = routes;
    take!(
        out,
        budget,
        http_routes,
        grpc_routes,
        tls_routes,
        tcp_routes,
        udp_routes
    );
    let mut budget = others;
    take!(
        out,
        budget,
        gateway_classes,
        gateways,
        listener_sets,
        services,
        endpoint_slices,
        namespaces,
        reference_grants,
        secrets,
        backend_tls_policies,
        config_maps
    );
    out
}

/// Bumps the generation of route `i` (counting through the kinds as [`truncated`] does).
fn bump_route(inputs: &mut Inputs, mut i: usize) {
    macro_rules! bump {
        ($($field:ident),*) => {
            $(
                if let Some(route) = inputs.$field.get_mut(i) {
                    let generation = route.metadata.generation.unwrap_or(0);
                    route.metadata.generation = Some(generation + 1);
                    return;
                }
                i -= inputs.$field.len();
            )*
        };
    }
    bump!(http_routes, grpc_routes, tls_routes, tcp_routes, udp_routes);
}

/// The options of a case: the defaults (standalone mode), or what its optional
/// `options.yaml` sets, for cases of a Gateway behind its Service in a cluster:
///
/// ```yaml
/// exposure: Service            # portico_translate::Exposure
/// assignedAddresses:           # Options::assigned_addresses (the Services' ingress)
///   infra/gateway: 203.0.113.10
/// ```
fn case_options(case: &Path) -> Result<Options, String> {
    let mut options = Options::default();
    let Ok(text) = fs::read_to_string(case.join("options.yaml")) else {
        return Ok(options);
    };
    let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    match value.get("exposure").and_then(Value::as_str) {
        None | Some("Direct") => {}
        Some("Service") => options.exposure = Exposure::Service,
        Some(other) => return Err(format!("unknown exposure {other:?}")),
    }
    if let Some(assigned) = value.get("assignedAddresses").and_then(Value::as_mapping) {
        for (k, v) in assigned {
            let (Some(key), Some(ip)) = (k.as_str(), v.as_str()) else {
                return Err("assignedAddresses: strings expected".into());
            };
            let (ns, name) = key
                .split_once('/')
                .ok_or("assignedAddresses: ns/name keys")?;
            let ip = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
            options
                .assigned_addresses
                .insert(ObjectRef::new(ns, name), ip);
        }
    }
    Ok(options)
}

fn render(output: &Output) -> (String, String) {
    (
        serde_yaml_ng::to_string(&output.config).unwrap(),
        serde_yaml_ng::to_string(&output.statuses).unwrap(),
    )
}

/// Reads each document's apiVersion and kind and decodes it into the matching type.
/// Gateway API objects are accepted in v1 and v1beta1 (the same schema for what we read).
fn parse_inputs(text: &str) -> Result<Inputs, String> {
    let mut inputs = Inputs::default();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| format!("document {i}: {e}"))?;
        if value.is_null() {
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let group = api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_owned();
        let err = |e: serde_yaml_ng::Error| format!("document {i} ({api_version} {kind}): {e}");
        match (group.as_str(), kind.as_str()) {
            ("gateway.networking.k8s.io", "GatewayClass") => inputs
                .gateway_classes
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "Gateway") => inputs
                .gateways
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "ListenerSet") => inputs
                .listener_sets
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "HTTPRoute") => inputs
                .http_routes
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "GRPCRoute") => inputs
                .grpc_routes
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "TLSRoute") => inputs
                .tls_routes
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "TCPRoute") => inputs
                .tcp_routes
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "UDPRoute") => inputs
                .udp_routes
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "ReferenceGrant") => inputs
                .reference_grants
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("gateway.networking.k8s.io", "BackendTLSPolicy") => inputs
                .backend_tls_policies
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("", "ConfigMap") => inputs
                .config_maps
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("", "Service") => inputs
                .services
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("", "Secret") => inputs
                .secrets
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("", "Namespace") => inputs
                .namespaces
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            ("discovery.k8s.io", "EndpointSlice") => inputs
                .endpoint_slices
                .push(serde_yaml_ng::from_value(value).map_err(err)?),
            _ => return Err(format!("document {i}: unexpected {api_version} {kind}")),
        }
    }
    Ok(inputs)
}

fn reverse(inputs: &Inputs) -> Inputs {
    fn rev<T: Clone>(v: &[T]) -> Vec<T> {
        v.iter().rev().cloned().collect()
    }
    Inputs {
        gateway_classes: rev(&inputs.gateway_classes),
        gateways: rev(&inputs.gateways),
        listener_sets: rev(&inputs.listener_sets),
        http_routes: rev(&inputs.http_routes),
        grpc_routes: rev(&inputs.grpc_routes),
        tls_routes: rev(&inputs.tls_routes),
        tcp_routes: rev(&inputs.tcp_routes),
        udp_routes: rev(&inputs.udp_routes),
        services: rev(&inputs.services),
        endpoint_slices: rev(&inputs.endpoint_slices),
        namespaces: rev(&inputs.namespaces),
        reference_grants: rev(&inputs.reference_grants),
        secrets: rev(&inputs.secrets),
        backend_tls_policies: rev(&inputs.backend_tls_policies),
        config_maps: rev(&inputs.config_maps),
    }
}

/// A line diff from the longest common subsequence; golden files are small.
fn line_diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out.join("\n")
}
