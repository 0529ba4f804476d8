//! Whole-binary tests of `portico conformance run --target standalone`: the real
//! `portico` process runs small cases written here (a Gateway, HTTPRoutes, echo
//! Deployments and Services, with `./` manifest paths), with backends in-process
//! (`--echo in-process`, so no other binary is needed), and the tests read its output,
//! exit status and report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use portico_testkit::{Process, free_port, write_file};

/// Bound on a whole run: set-up plus every case (the failing one has a 3 s bound).
const RUN_BOUND: Duration = Duration::from_secs(120);

const ECHO_IMAGE: &str = "registry.k8s.io/gateway-api/echo-basic:v1.5.1";

/// The shared Gateway API CRDs, for the API server's defaults, when the checkout has
/// them (the manifests below spell out what the defaults would add, so the tests pass
/// either way).
fn crds() -> Option<PathBuf> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/gateway-api/crds/standard");
    dir.is_dir().then_some(dir)
}

fn deployment_and_service(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: demo, labels: {{app: {name}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: {name}
        image: {ECHO_IMAGE}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: demo}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: first-port, protocol: TCP, port: 8080, targetPort: 3000}}]
"#
    )
}

fn manifests(port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: demo}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  gatewayClassName: "{{GATEWAY_CLASS_NAME}}"
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route, namespace: demo}}
spec:
  parentRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  rules: [{{backendRefs: [{{name: blue, port: 8080}}]}}]
---
{blue}---
{green}"#,
        blue = deployment_and_service("blue", 2),
        green = deployment_and_service("green", 1),
    )
}

const LONELY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lonely, namespace: demo}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: nowhere}]
  rules: [{backendRefs: [{name: blue, port: 8080}]}]
"#;

/// A case that holds: statuses, a request, then a patch that moves the route to
/// `green` and the checks and request after it.
fn good(name: &str, extra_features: &[&str]) -> String {
    let mut features = vec!["Gateway", "HTTPRoute"];
    features.extend_from_slice(extra_features);
    let support: Vec<String> = features.iter().map(|f| format!("Support{f}")).collect();
    format!(
        r#"name: {name}
source: conformance/tests/httproute-simple-same-namespace.go
description: a route to blue, then patched to green
features: [{support}]
feature_names: [{names}]
level: core
provisional: false
manifests: [./manifests/demo.yaml]
gateways: [{{namespace: demo, name: gw, address_required: true}}]
namespaces_ready: [demo]
conditions:
- {{kind: Gateway, namespace: demo, name: gw, type: Programmed, status: 'True', reason: null}}
- {{kind: Gateway, namespace: demo, name: gw, listener: '*', type: Accepted, status: 'True', reason: null}}
- {{kind: HTTPRoute, namespace: demo, name: route, parent: gw, parent_namespace: demo,
   type: Accepted, status: 'True', reason: Accepted}}
- {{kind: HTTPRoute, namespace: demo, name: route, parent: gw, parent_namespace: demo,
   type: '*', status: '*', reason: null}}
listener_status:
- gateway: {{namespace: demo, name: gw}}
  exact_listener_count: true
  listeners:
  - {{name: http, supported_kinds: [HTTPRoute], attached_routes: 1,
     conditions: [{{type: ResolvedRefs, status: 'True', reason: null}}]}}
requests:
- gateway: {{namespace: demo, name: gw}}
  request: {{method: GET, host: echo.example.com, path: '/hello?x=1', headers: {{X-Test: one}},
            add_request_id_query_param: rid}}
  expect:
    status: 200
    backend: {{namespace: demo, service: blue}}
    path_at_backend: '/hello?x=1'
    method_at_backend: GET
    host_at_backend: echo.example.com
    request_headers_at_backend: {{x-test: one}}
    response_headers: {{Content-Type: application/json}}
steps:
- action:
    patch:
      kind: HTTPRoute
      namespace: demo
      name: route
      set:
        spec.rules[0].backendRefs[0].name: green
  checks: [generation_changed, observed_generation_current]
  requests:
  - gateway: {{namespace: demo, name: gw}}
    request: {{method: GET, host: '', path: /}}
    expect: {{status: 200, backend: {{namespace: demo, service: green}}, path_at_backend: /, method_at_backend: GET}}
timeout_seconds: 30
"#,
        support = support.join(", "),
        names = features.join(", "),
    )
}

/// The good case's first request, expecting the wrong backend.
const WRONG: &str = r#"name: Wrong
source: conformance/tests/httproute-simple-same-namespace.go
description: expects green where blue answers
features: [SupportGateway, SupportHTTPRoute]
feature_names: [Gateway, HTTPRoute]
level: core
provisional: false
manifests: [./manifests/demo.yaml]
gateways: [{namespace: demo, name: gw}]
requests:
- gateway: {namespace: demo, name: gw}
  request: {method: GET, host: '', path: /}
  expect: {status: 200, backend: {namespace: demo, service: green}, path_at_backend: /, method_at_backend: GET}
timeout_seconds: 3
"#;

/// A route whose parent does not exist: no accepted parent, ever.
const UNATTACHED: &str = r#"name: Unattached
source: conformance/tests/httproute-invalid-cross-namespace-parent-ref.go
description: a route whose parent Gateway does not exist
features: [SupportGateway, SupportHTTPRoute]
feature_names: [Gateway, HTTPRoute]
level: core
provisional: false
manifests: [./manifests/demo.yaml, ./manifests/lonely.yaml]
gateways: [{namespace: demo, name: gw}]
route_parents: [{kind: HTTPRoute, namespace: demo, name: lonely}]
timeout_seconds: 20
"#;

struct Suite {
    _root: tempfile::TempDir,
    cases: PathBuf,
    data: PathBuf,
    report: PathBuf,
    pool: &'static str,
}

impl Suite {
    fn new(pool: &'static str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let cases = root.path().join("cases");
        let data = root.path().join("data");
        std::fs::create_dir_all(&cases).unwrap();
        std::fs::create_dir_all(data.join("conformance")).unwrap();
        write_file(
            data.join("conformance"),
            "setup.yaml",
            "gateway:\n  manifests: []\n  namespaces_ready: []\n",
        )
        .unwrap();
        // Beside the cases but not among them: every *.yaml in the folder is a case.
        let manifest_dir = cases.join("manifests");
        std::fs::create_dir_all(&manifest_dir).unwrap();
        write_file(&manifest_dir, "demo.yaml", manifests(free_port())).unwrap();
        write_file(&manifest_dir, "lonely.yaml", LONELY).unwrap();
        let report = root.path().join("report.yaml");
        Self {
            _root: root,
            cases,
            data,
            report,
            pool,
        }
    }

    fn case(&self, name: &str, text: &str) {
        write_file(&self.cases, &format!("{name}.yaml"), text).unwrap();
    }

    /// Runs the binary to the end; returns its stdout lines and whether it succeeded.
    async fn run(&self, extra: &[&str]) -> (Vec<String>, bool) {
        let mut args: Vec<String> = [
            "conformance",
            "run",
            "--target",
            "standalone",
            "--echo",
            "in-process",
            "--address-pool",
            self.pool,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for (flag, path) in [
            ("--cases", &self.cases),
            ("--data", &self.data),
            ("--report", &self.report),
        ] {
            args.push(flag.to_owned());
            args.push(path.display().to_string());
        }
        if let Some(crds) = crds() {
            args.push("--crds".to_owned());
            args.push(crds.display().to_string());
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut process = Process::spawn(env!("CARGO_BIN_EXE_portico"), &args).unwrap();
        let status = process
            .wait_exit(RUN_BOUND)
            .await
            .unwrap_or_else(|e| panic!("portico conformance run did not finish: {e}"));
        (process.stdout_lines(), status.success())
    }
}

fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{}", lines.join("\n")))
}

#[tokio::test]
async fn passing_failing_invalid_and_skipped_cases() {
    let suite = Suite::new("127.0.21.0/24");
    suite.case("Good", &good("Good", &[]));
    suite.case("Wrong", WRONG);
    suite.case("Unattached", UNATTACHED);
    // Not claimed (see --supported-features below): skipped, and not in the report.
    suite.case("Unclaimed", &good("Unclaimed", &["HTTPRouteCORS"]));
    // An unknown field: the case fails with the reason, it is not run half-way.
    suite.case(
        "Invalid",
        &good("Invalid", &[]).replace("provisional: false", "provisional: false\ncolour: red"),
    );

    let (lines, success) = suite
        .run(&["--supported-features", "Gateway,HTTPRoute,ReferenceGrant"])
        .await;
    let all = lines.join("\n");
    assert!(!success, "a failing case must fail the run:\n{all}");

    let good = line(&lines, "PASS Good (");
    assert!(good.ends_with("s)"), "{good}");
    let wrong = line(&lines, "FAIL Wrong (");
    assert!(
        wrong.contains("requests[0]: request GET http://127.0.21.")
            && wrong.contains("expected backend green got blue (pod blue-")
            && wrong.contains("attempts)"),
        "the failure names the request, the expectation and what was seen: {wrong}"
    );
    line(&lines, "PASS Unattached (");
    let skipped = line(&lines, "SKIP Unclaimed (");
    assert!(
        skipped.contains("feature HTTPRouteCORS not claimed"),
        "{skipped}"
    );
    let invalid = line(&lines, "FAIL Invalid (");
    assert!(invalid.contains("unknown field `colour`"), "{invalid}");
    assert_eq!(
        lines
            .iter()
            .rev()
            .find(|l| l.contains(" passed, "))
            .map(String::as_str),
        Some("2 passed, 2 failed, 1 skipped"),
        "{all}"
    );

    let report = std::fs::read_to_string(&suite.report).unwrap();
    for expected in [
        "kind: ConformanceReport",
        "gatewayAPIVersion: v1.6.1",
        "name: GATEWAY-HTTP",
        "result: failure",
        "- Wrong",
        "Passed: 2",
    ] {
        assert!(
            report.contains(expected),
            "{expected} missing in:\n{report}"
        );
    }
    assert!(!report.contains("Unclaimed"), "{report}");
}

#[tokio::test]
async fn run_test_runs_one_case_and_a_clean_run_exits_zero() {
    let suite = Suite::new("127.0.22.0/24");
    suite.case("Good", &good("Good", &[]));
    suite.case("Wrong", WRONG);
    let (lines, success) = suite.run(&["--run-test", "Good"]).await;
    let all = lines.join("\n");
    assert!(success, "{all}");
    line(&lines, "PASS Good (");
    assert!(!all.contains("Wrong"), "{all}");
    line(&lines, "1 passed, 0 failed, 0 skipped");

    // A known failure listed in --skip-tests is skipped and counted as such.
    let (lines, success) = suite.run(&["--skip-tests", "Wrong"]).await;
    let all = lines.join("\n");
    assert!(success, "{all}");
    line(&lines, "SKIP Wrong (0.0s): skipped by --skip-tests");
    line(&lines, "1 passed, 0 failed, 1 skipped");
    let report = std::fs::read_to_string(&suite.report).unwrap();
    assert!(
        report.contains("result: partial") && report.contains("skippedTests"),
        "{report}"
    );
}
