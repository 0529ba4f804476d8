# shellcheck shell=bash
# Sourced by hack/check-flux.sh and hack/check-helm.sh: the Python environment of the
# offline Kubernetes schema validator (flux/ci/fluxcheck/schemas.py), shared so that
# both checks validate against the same pinned schemas and install them once.
#
# kubernetes-validate ships the strict Kubernetes OpenAPI schemas; it brings jsonschema
# and PyYAML, pinned here as well.
K8S_VALIDATE_REQS="kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3"
K8S_VALIDATE_VENV="target/k8s-validate/venv"

# ensure_k8s_validate_venv TIMEOUT_SECONDS
# Creates $K8S_VALIDATE_VENV (relative to the repository root, the current directory)
# on first use or when the pins change; later calls need no network.
ensure_k8s_validate_venv() {
  local install_timeout="$1"
  if [ -x "$K8S_VALIDATE_VENV/bin/python" ] && [ "$(cat "$K8S_VALIDATE_VENV/.reqs" 2>/dev/null)" = "$K8S_VALIDATE_REQS" ]; then
    return 0
  fi
  echo "installing $K8S_VALIDATE_REQS into $K8S_VALIDATE_VENV"
  rm -rf "$K8S_VALIDATE_VENV"
  mkdir -p "$(dirname "$K8S_VALIDATE_VENV")"
  python3 -m venv "$K8S_VALIDATE_VENV"
  # shellcheck disable=SC2086 # the requirement list is meant to split into words
  timeout "$install_timeout" "$K8S_VALIDATE_VENV/bin/pip" install --quiet --disable-pip-version-check $K8S_VALIDATE_REQS
  echo "$K8S_VALIDATE_REQS" >"$K8S_VALIDATE_VENV/.reqs"
}
