#!/usr/bin/env bash
# Installs from Debian what `make bench` needs when it is missing: the benchmark peers and
# load tools (nginx-light, HAProxy, wrk, h2load from nghttp2-client, hey), nft and ip for
# the local cluster's stand-in kube-proxy and pod network, and what the release build of
# the `portico` binary needs for portico-agent's eBPF programs (clang-19, llvm-19,
# libbpf-dev, linux-libc-dev). Needs root (or sudo).
set -euo pipefail

declare -A package_of=(
  [nginx]=nginx-light
  [haproxy]=haproxy
  [wrk]=wrk
  [h2load]=nghttp2-client
  [hey]=hey
  [nft]=nftables
  [ip]=iproute2
  [clang-19]=clang-19
)

missing=()
for tool in "${!package_of[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    missing+=("${package_of[$tool]}")
  fi
done

# crates/agent/build.rs includes the libbpf headers and links against the kernel's UAPI ones.
if [ ! -e /usr/include/bpf/bpf_helpers.h ]; then
  missing+=(llvm-19 libbpf-dev linux-libc-dev)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "bench-deps: the peers, load tools, nft, ip and the eBPF build tools are installed"
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
