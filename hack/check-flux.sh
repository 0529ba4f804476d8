#!/usr/bin/env bash
# Offline check of the Flux repository (flux/): `kubectl kustomize` on every
# kustomization directory, then schema validation of everything rendered (Kubernetes
# built-ins, the Gateway API v1.6.1 CRDs of ../shared/gateway-api, Flux and
# cert-manager kinds) and reference checks per cluster. What exactly is validated, and
# what is not: flux/README.md, "What the check validates".
#
# Needs: kubectl (its built-in kustomize), python3 with venv, node + npm. Installs its
# Python and npm dependencies (pinned) under target/flux-check/ on first run; later
# runs reuse them and need no network.
#
# Usage: hack/check-flux.sh            (from anywhere; GATEWAY_API_DIR overrides the CRDs)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

crds="${GATEWAY_API_DIR:-../shared/gateway-api}/crds/standard"
work="target/flux-check"
node_dir="$work/node"
# Bounds for the installs (a hung registry must not hang CI) and for the check itself.
install_timeout=600
check_timeout=600

for tool in kubectl python3 node npm; do
  command -v "$tool" >/dev/null || { echo "check-flux: $tool is required" >&2; exit 2; }
done
[ -d "$crds" ] || { echo "check-flux: Gateway API CRDs not found in $crds (set GATEWAY_API_DIR)" >&2; exit 2; }

mkdir -p "$work"

# Python: kubernetes-validate (strict Kubernetes schemas), shared with hack/check-helm.sh.
# shellcheck disable=SC1091 # sourced relative to the repository root (cd above)
. hack/lib/k8s-validate.sh
ensure_k8s_validate_venv "$install_timeout"
venv="$K8S_VALIDATE_VENV"

# Node: the @kubernetes-models validators for Flux and cert-manager (flux/ci/package-lock.json).
if ! cmp -s flux/ci/package-lock.json "$node_dir/package-lock.json" || [ ! -d "$node_dir/node_modules" ]; then
  echo "check-flux: installing flux/ci/package-lock.json into $node_dir"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp flux/ci/package.json flux/ci/package-lock.json "$node_dir/"
  (cd "$node_dir" && timeout "$install_timeout" npm ci --no-audit --no-fund --loglevel=error)
fi
# ES modules resolve packages next to the importing file: run the script from there.
cp flux/ci/validate-crs.mjs "$node_dir/validate-crs.mjs"

PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$repo/flux/ci" timeout "$check_timeout" "$venv/bin/python" -m fluxcheck \
  --repo "$repo" \
  --gateway-api-crds "$crds" \
  --crs-script "$node_dir/validate-crs.mjs"
