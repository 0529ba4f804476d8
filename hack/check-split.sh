#!/usr/bin/env bash
# usage: hack/check-split.sh URL [N]
#
# Sends N requests (default 100) to URL and counts which echo pod answered each one, as
# the reference scenario's scripts/check-split.sh does for its 95/5 HTTPRoute split:
#
#   Number of requests for echo-1: 95
#   Number of requests for echo-2: 5
#
# The pod is read from the echo's JSON answer (.environment.HOSTNAME, which portico-echo
# and the scenario's echo-server both report). Pods named echo-1-... and echo-2-... count
# as echo-1 and echo-2, which are always printed; any other pod counts under its
# Deployment name (the pod name without its last two dash-separated parts), on its own
# line. Failed requests are counted too and make the exit status 1.
#
# When the URL's host does not resolve (split-echo.example.com in the local demo), or
# when RESOLVE_TO is set, requests go to RESOLVE_TO (default 127.0.0.1) through
# curl --resolve, so the Host header and TLS server name stay those of the URL.
set -euo pipefail

usage() {
  echo "usage: $0 URL [N]" >&2
  exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
url=$1
requests=${2:-100}
[[ $requests =~ ^[1-9][0-9]*$ ]] || usage

for tool in curl jq; do
  command -v "$tool" >/dev/null || {
    echo "$0: $tool is required" >&2
    exit 2
  }
done

# scheme://[user@]host[:port][/path]
[[ $url == *://* ]] || url="http://$url"
scheme=${url%%://*}
authority=${url#*://}
authority=${authority%%/*}
authority=${authority##*@}
if [[ $authority == \[* ]]; then
  host="${authority%%]*}]"
else
  host=${authority%%:*}
fi
port=${authority#"$host"}
port=${port#:}
if [[ -z $port ]]; then
  if [[ $scheme == https ]]; then port=443; else port=80; fi
fi

curl_args=(--silent --show-error --fail --max-time 5)
resolve_to=${RESOLVE_TO:-}
# An IPv6 literal needs no resolving; anything else is checked with the system resolver.
if [[ -z $resolve_to && $host != \[* ]] && ! getent hosts "$host" >/dev/null 2>&1; then
  resolve_to=127.0.0.1
fi
if [[ -n $resolve_to ]]; then
  curl_args+=(--resolve "$host:$port:$resolve_to")
fi

# Deployment pods are named <deployment>-<replicaset hash>-<pod hash>.
group_of() {
  local pod=$1
  case $pod in
    echo-1-*) echo echo-1 ;;
    echo-2-*) echo echo-2 ;;
    *-*-*)
      pod=${pod%-*}
      echo "${pod%-*}"
      ;;
    *) echo "$pod" ;;
  esac
}

declare -A counts=([echo-1]=0 [echo-2]=0)
failed=0
for ((i = 0; i < requests; i++)); do
  pod=""
  if body=$(curl "${curl_args[@]}" "$url"); then
    pod=$(jq -r '.environment.HOSTNAME // empty' <<<"$body" 2>/dev/null) || pod=""
  fi
  # Pod names are DNS labels; anything else is not an answer from an echo pod.
  if [[ ! $pod =~ ^[A-Za-z0-9._-]+$ ]]; then
    failed=$((failed + 1))
    continue
  fi
  group=$(group_of "$pod")
  counts[$group]=$((${counts[$group]:-0} + 1))
done

echo "Number of requests for echo-1: ${counts[echo-1]}"
echo "Number of requests for echo-2: ${counts[echo-2]}"
while read -r group; do
  [[ -z $group || $group == echo-1 || $group == echo-2 ]] && continue
  echo "Number of requests for $group: ${counts[$group]}"
done < <(printf '%s\n' "${!counts[@]}" | LC_ALL=C sort)

if ((failed > 0)); then
  echo "Number of failed requests: $failed"
  exit 1
fi
