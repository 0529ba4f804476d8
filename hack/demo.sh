#!/usr/bin/env bash
# `make demo`: builds Portico, starts two echo backends standing in for the pods of the
# reference scenario, and serves examples/standalone/echo on 127.0.0.1:8080.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin portico --bin portico-echo
bin=target/release

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The pod names match the EndpointSlices in examples/standalone/echo/30-backends.yaml.
"$bin/portico-echo" --listen 127.0.0.1:9081 --namespace echo \
  --service echo-1-echo-server --pod echo-1-echo-server-fd88497d-w6sgn &
pids+=($!)
"$bin/portico-echo" --listen 127.0.0.1:9082 --namespace echo \
  --service echo-2-echo-server --pod echo-2-echo-server-7c9b5d6f4-k2x8q &
pids+=($!)

cat <<'TXT'
Try, from another terminal:
  curl -s localhost:8080/ | jq -r .environment.HOSTNAME
  curl -s localhost:8080/req-header-add | jq .request.headers
  hack/check-split.sh http://split-echo.example.com:8080/
TXT
"$bin/portico" standalone examples/standalone/echo &
pids+=($!)
wait "${pids[-1]}"
