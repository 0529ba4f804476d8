#!/usr/bin/env bash
# End to end on kind: Portico's images and Helm chart in a kind cluster, the conformance
# cases run against it. `make e2e` calls one step per line (so `make -n e2e` reads as the
# plan); `hack/e2e-kind.sh all` runs the same sequence without make.
#
#   preflight      docker (with a daemon), kind, kubectl, helm; the chart exists
#   create-cluster kind cluster $CLUSTER from e2e/kind/cluster.yaml (reused if it exists)
#   load-images    kind load docker-image, the images of hack/images.sh list but the CLI
#   install-crds   Gateway API v1.6.1 CRDs, experimental channel (a superset of standard,
#                  which claimed experimental features need: an API server prunes fields
#                  its CRDs lack); $GATEWAY_API_DIR/crds/$E2E_CRDS, else upstream
#   lb-pool        a LoadBalancer address pool carved from the kind docker network
#   install-portico  helm upgrade --install helm/portico with e2e/kind/values.yaml + pool
#   conformance    portico conformance run --target kube over e2e/cases/ (+ e2e/scenario/),
#                  more runner flags as arguments (make e2e: --echo-image)
#   collect-logs   logs, descriptions and events of every Portico pod into e2e/logs/
#   delete-cluster kind delete cluster, unless KEEP=1
#
# A failing step after create-cluster collects the logs and deletes the cluster (unless
# KEEP=1) before exiting non-zero. The kubeconfig is written to target/e2e/kubeconfig,
# never into ~/.kube/config.
#
# Environment: CLUSTER (portico-e2e), TAG and IMAGE_PREFIX (as hack/images.sh), KEEP=1,
# GATEWAY_API_DIR (../shared/gateway-api), NAMESPACE (portico-system), E2E_KPR=1 (the
# kube-proxy-free cluster), E2E_CRDS (experimental; or standard), KIND_NODE_IMAGE (kind's
# default node image otherwise), CONFORMANCE_ARGS (more flags for the runner), HELM (helm;
# hack/helm.sh's if absent).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

cluster="${CLUSTER:-portico-e2e}"
namespace="${NAMESPACE:-portico-system}"
gateway_api_dir="${GATEWAY_API_DIR:-../shared/gateway-api}"
gateway_api_version="v1.6.1"
crds_channel="${E2E_CRDS:-experimental}"
gateway_api_url="https://github.com/kubernetes-sigs/gateway-api/releases/download/$gateway_api_version/$crds_channel-install.yaml"
chart="helm/portico"
work="target/e2e"
logs="e2e/logs"
pool_values="$work/lb-pool-values.yaml"
# helm from PATH, else the pinned one hack/helm.sh installs (and `make helm-check` uses);
# resolved by the steps that run it.
helm="${HELM:-helm}"
need_helm() {
  command -v "$helm" >/dev/null || helm="$(hack/helm.sh)"
}
export KUBECONFIG="$repo/$work/kubeconfig"
kind_config="e2e/kind/cluster.yaml"
kpr=false
if [ "${E2E_KPR:-}" = 1 ]; then
  kind_config="e2e/kind/cluster-kpr.yaml"
  kpr=true
fi
# Bounds of the waits (helm --wait, kubectl wait), and of the whole conformance run.
wait_timeout="300s"
conformance_timeout="3600"

log() { echo "e2e: $*" >&2; }
die() { log "$*"; exit 1; }
# Prints the command, then runs it: the output reads as a transcript.
run() {
  echo "+ $*" >&2
  "$@"
}

cluster_exists() {
  kind get clusters 2>/dev/null | grep -qx "$cluster"
}

preflight() {
  local tool missing=()
  for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (see e2e/README.md)"
  docker info >/dev/null 2>&1 || die "docker is installed but no daemon answers: kind needs one"
  [ -f "$chart/Chart.yaml" ] || die "no Helm chart in $chart"
  log "cluster $cluster ($kind_config), namespace $namespace, images $(hack/images.sh list | tr '\n' ' ')"
  run kind version
  need_helm
  run "$helm" version --short
}

create_cluster() {
  mkdir -p "$work"
  if cluster_exists; then
    log "cluster $cluster exists: reusing it"
    run kind export kubeconfig --name "$cluster" --kubeconfig "$KUBECONFIG"
    return
  fi
  local image=()
  if [ -n "${KIND_NODE_IMAGE:-}" ]; then image=(--image "$KIND_NODE_IMAGE"); fi
  run kind create cluster --name "$cluster" --config "$kind_config" "${image[@]}" \
    --kubeconfig "$KUBECONFIG" --wait "$wait_timeout"
}

# What runs in the cluster: the chart's four components and the echo backend (the CLI
# runs on the host).
cluster_components="operator agent proxy cert-sync echo"

load_images() {
  local images
  mapfile -t images < <(COMPONENTS="$cluster_components" hack/images.sh list)
  [ ${#images[@]} -gt 0 ] || die "no images (make images)"
  run kind load docker-image --name "$cluster" "${images[@]}"
}

install_crds() {
  if [ -d "$gateway_api_dir/crds/$crds_channel" ]; then
    run kubectl apply --server-side -f "$gateway_api_dir/crds/$crds_channel"
  else
    log "$gateway_api_dir/crds/$crds_channel not found: the upstream release"
    run kubectl apply --server-side -f "$gateway_api_url"
  fi
  run kubectl wait --for condition=Established --timeout "$wait_timeout" \
    crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io
}

install_portico() {
  local tag prefix extra=()
  tag="$(hack/images.sh list | head -n1)"
  tag="${tag##*:}"
  prefix="${IMAGE_PREFIX:-portico}"
  if $kpr; then
    # The control-plane container's name resolves on the kind network; the API server
    # listens on 6443 there.
    extra+=(--set kubeProxyReplacement=true
      --set "k8sServiceHost=$cluster-control-plane" --set k8sServicePort=6443)
  fi
  [ -f "$pool_values" ] || die "no $pool_values: run the lb-pool step first"
  need_helm
  run "$helm" upgrade --install portico "$chart" \
    --namespace "$namespace" --create-namespace \
    --values e2e/kind/values.yaml --values "$pool_values" \
    --set "image.repository=$prefix" --set "image.tag=$tag" \
    "${extra[@]}" \
    --wait --timeout "$wait_timeout"
  run kubectl --namespace "$namespace" get pods -o wide
  run kubectl get loadbalancerippools
}

# Prints the first and last address of an IPv4 CIDR, as two dotted quads.
cidr_bounds() {
  local cidr="$1" ip bits a b c d n mask
  ip="${cidr%/*}"
  bits="${cidr#*/}"
  IFS=. read -r a b c d <<<"$ip"
  n=$(((a << 24) | (b << 16) | (c << 8) | d))
  mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
  quad $((n & mask))
  quad $(((n & mask) | (~mask & 0xffffffff)))
}
quad() { echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }
to_int() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

# 51 addresses near the top of the kind network (docker hands out addresses to containers
# from the bottom), as kind's own LoadBalancer guide does for MetalLB. Written as the
# chart's loadBalancerIPAM.pools, which install-portico passes on.
lb_pool() {
  local subnet bounds last start stop
  subnet="$(docker network inspect kind \
    --format '{{range .IPAM.Config}}{{.Subnet}}{{"\n"}}{{end}}' | grep -m1 -E '^[0-9]+\.')" ||
    die "the kind docker network has no IPv4 subnet"
  mapfile -t bounds < <(cidr_bounds "$subnet")
  last="$(to_int "${bounds[1]}")"
  [ $((last - $(to_int "${bounds[0]}"))) -ge 255 ] || die "kind network $subnet is too small for a pool"
  start="$(quad $((last - 55)))"
  stop="$(quad $((last - 5)))"
  log "kind network $subnet: LoadBalancer pool $start-$stop in $pool_values"
  mkdir -p "$work"
  cat >"$pool_values" <<EOF
# Written by hack/e2e-kind.sh lb-pool from the kind docker network ($subnet).
loadBalancerIPAM:
  enabled: true
  pools:
    - name: kind
      blocks:
        - start: "$start"
          stop: "$stop"
EOF
}

conformance() {
  local triple portico cases=(e2e/cases)
  triple="$(rustc -vV | sed -n 's/^host: //p')"
  # The CLI hack/images.sh just built; a dev build otherwise.
  portico="target/$triple/image/portico"
  [ -x "$portico" ] || portico="target/debug/portico"
  [ -x "$portico" ] || run cargo build --bin portico
  if [ -d e2e/scenario ]; then cases+=(e2e/scenario); fi
  local dir report rc=0
  for dir in "${cases[@]}"; do
    report="$work/$(basename "$dir")-report.yaml"
    # shellcheck disable=SC2086 # CONFORMANCE_ARGS is a list of flags
    run timeout "$conformance_timeout" "$portico" conformance run --target kube \
      --kubeconfig "$KUBECONFIG" --cases "$dir" --data "$gateway_api_dir" --report "$report" \
      "$@" ${CONFORMANCE_ARGS:-} || rc=$?
  done
  return "$rc"
}

collect_logs() {
  cluster_exists || { log "no cluster $cluster: no logs"; return 0; }
  rm -rf "$logs"
  mkdir -p "$logs"
  # Output of a run, never committed.
  echo '*' >"$logs/.gitignore"
  local ns name
  # Every pod of the release namespace, and anything named portico-* elsewhere (the
  # Gateways' proxies and Services live in the Gateways' namespaces).
  kubectl get pods -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name |
    while read -r ns name; do
      case "$ns/$name" in
        "$namespace"/* | */portico-*) ;;
        *) continue ;;
      esac
      kubectl logs -n "$ns" "$name" --all-containers --prefix --timestamps >"$logs/$ns.$name.log" 2>&1 || true
      kubectl logs -n "$ns" "$name" --all-containers --prefix --timestamps --previous >"$logs/$ns.$name.previous.log" 2>/dev/null ||
        rm -f "$logs/$ns.$name.previous.log"
      kubectl describe pod -n "$ns" "$name" >"$logs/$ns.$name.describe.txt" 2>&1 || true
    done
  kubectl get events -A --sort-by=.lastTimestamp >"$logs/events.txt" 2>&1 || true
  kubectl get gatewayclasses,gateways,httproutes,grpcroutes,services,loadbalancerippools -A -o yaml \
    >"$logs/objects.yaml" 2>&1 || true
  log "logs in $logs/"
}

delete_cluster() {
  if [ "${KEEP:-}" = 1 ]; then
    log "KEEP=1: cluster $cluster kept (kubectl --kubeconfig $KUBECONFIG ...; kind delete cluster --name $cluster)"
    return
  fi
  if cluster_exists; then run kind delete cluster --name "$cluster" --kubeconfig "$KUBECONFIG"; fi
}

# A step that fails once the cluster exists leaves its logs and removes the cluster.
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "${in_cluster_step:-false}" = true ]; then
    log "step '$step' failed ($rc): collecting logs"
    collect_logs || true
    delete_cluster || true
  fi
  exit "$rc"
}
trap on_exit EXIT

step="${1:-}"
in_cluster_step=false
case "$step" in
  preflight) preflight ;;
  create-cluster) in_cluster_step=true; create_cluster ;;
  load-images) in_cluster_step=true; load_images ;;
  install-crds) in_cluster_step=true; install_crds ;;
  lb-pool) in_cluster_step=true; lb_pool ;;
  install-portico) in_cluster_step=true; install_portico ;;
  conformance) in_cluster_step=true; shift; conformance "$@" ;;
  collect-logs) collect_logs ;;
  delete-cluster) delete_cluster ;;
  all)
    preflight
    hack/images.sh build
    in_cluster_step=true
    create_cluster
    load_images
    install_crds
    lb_pool
    install_portico
    conformance --echo-image "${IMAGE_PREFIX:-portico}/echo:$(hack/images.sh list | head -n1 | sed 's/.*://')"
    in_cluster_step=false
    delete_cluster
    ;;
  *)
    sed -n '2,27p' "$0" >&2
    exit 2
    ;;
esac
