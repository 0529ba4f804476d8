#!/usr/bin/env bash
# Generates the Gateway API v1.6.1 types in crates/api/src/gateway/ from the CRDs with
# kopium. We generate every kind (not only what the `gateway-api` crate lacks) so that
# all of them come from one source at one version. The experimental channel is a superset
# of the standard one, so its types read manifests of either channel.
#
# Usage: hack/generate.sh [GATEWAY_API_DIR]   (default: ../shared/gateway-api)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$root/../shared/gateway-api}/crds/experimental
out=$root/crates/api/src/gateway
kopium_version=0.24.1

if ! kopium --version 2>/dev/null | grep -q "$kopium_version"; then
  echo "installing kopium $kopium_version" >&2
  cargo install --locked kopium --version "$kopium_version"
fi

# module name -> CRD file
kinds=(
  gatewayclasses:gateway.networking.k8s.io_gatewayclasses.yaml
  gateways:gateway.networking.k8s.io_gateways.yaml
  httproutes:gateway.networking.k8s.io_httproutes.yaml
  grpcroutes:gateway.networking.k8s.io_grpcroutes.yaml
  tlsroutes:gateway.networking.k8s.io_tlsroutes.yaml
  tcproutes:gateway.networking.k8s.io_tcproutes.yaml
  udproutes:gateway.networking.k8s.io_udproutes.yaml
  referencegrants:gateway.networking.k8s.io_referencegrants.yaml
  backendtlspolicies:gateway.networking.k8s.io_backendtlspolicies.yaml
  listenersets:gateway.networking.k8s.io_listenersets.yaml
)

for entry in "${kinds[@]}"; do
  module=${entry%%:*}
  file=${entry#*:}
  kopium --api-version v1 --derive Default --derive PartialEq --smart-derive-elision \
    -f "$src/$file" |
    sed -e "s|^// kopium command: kopium .* -f .*/crds/|// kopium command: kopium --api-version v1 --derive Default --derive PartialEq --smart-derive-elision -f crds/|" \
    >"$out/$module.rs"
done
rustfmt --edition 2024 "$out"/*.rs
echo "generated ${#kinds[@]} modules in ${out#"$root"/}" >&2

# Portico's own CRDs (PorticoGatewayClassConfig, LoadBalancerIPPool) from their Rust
# types: the crds test rewrites crates/api/crds/ when blessed, and fails on drift.
(cd "$root" && PORTICO_BLESS=1 cargo test --quiet -p portico-api --test crds)
echo "generated crates/api/crds" >&2
