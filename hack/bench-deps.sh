#!/usr/bin/env bash
# Installs the benchmark peers and load tools from Debian when they are missing:
# nginx (nginx-light), HAProxy, wrk, h2load (nghttp2-client), hey. Needs root (or sudo).
set -euo pipefail

declare -A package_of=(
  [nginx]=nginx-light
  [haproxy]=haproxy
  [wrk]=wrk
  [h2load]=nghttp2-client
  [hey]=hey
)

missing=()
for tool in "${!package_of[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    missing+=("${package_of[$tool]}")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "bench-deps: nginx, haproxy, wrk, h2load and hey are installed"
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi

echo "bench-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian starts the packaged services; the bench runs its own instances.
for service in nginx haproxy; do
  "${sudo_cmd[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
  "${sudo_cmd[@]}" service "$service" stop >/dev/null 2>&1 || true
done
