#!/usr/bin/env bash
# Container images of Portico's deployables, one per component, FROM scratch.
#
#   hack/images.sh build   cargo builds the binaries statically, stages each image's
#                          context under target/images/<component>/, builds the images
#   hack/images.sh smoke   runs every image: the binary answers --version, the image runs
#                          as its user with a read-only root filesystem, and the echo
#                          image serves HTTP on a published port
#   hack/images.sh list    prints the image names (what `kind load` and the chart use)
#
# Images are named $IMAGE_PREFIX/<component>:$TAG (default portico/<component>:<git
# describe>). Components: operator, agent, proxy, cert-sync, echo, cli; `COMPONENTS="echo
# cli"` picks some. cert-sync is skipped, loudly, while its crate does not exist.
#
# The engine is docker when a Docker daemon answers, podman otherwise (ENGINE=podman
# forces one). With podman, CONTAINERS_CONF defaults to hack/containers.conf (see there why)
# and runc is the runtime when installed.
#
# Binaries: the image profile of Cargo.toml for the host's gnu target with
# `-C target-feature=+crt-static` (glibc, statically linked: no musl target is needed).
# Naming --target keeps these flags away from build scripts and proc macros and puts the
# output under target/<triple>/image/, so the dev build in target/debug is not invalidated.
# IMAGE_PROFILE=dev builds unoptimized binaries (without debug info) instead, several times
# faster (cold, all six, on the shared 2-core machine: 6.6 minutes against about 40): CI's
# smoke test uses it, since what it checks (static linking, the image's files, user and
# labels, the binaries running) does not depend on optimization.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

all_components=(operator agent proxy cert-sync echo cli)
read -r -a components <<<"${COMPONENTS:-${all_components[*]}}"
prefix="${IMAGE_PREFIX:-portico}"
profile="${IMAGE_PROFILE:-image}"
tag="${TAG:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
cargo="${CARGO:-cargo}"
stage_root="target/images"
# How often the smoke test asks the echo server, 0.1 s apart (each request bounded by 2 s).
smoke_attempts=100

log() { echo "images: $*" >&2; }
die() { log "$*"; exit 1; }

# The binary (and cargo package) of a component.
binary_of() {
  case "$1" in
    cli) echo portico ;;
    operator | agent | proxy | cert-sync | echo) echo "portico-$1" ;;
    *) die "unknown component '$1' (known: ${all_components[*]})" ;;
  esac
}

# The uid:gid an image runs as: nonroot (65532, distroless's number) except the agent,
# which needs root for its capabilities (images/README.md).
user_of() {
  case "$1" in
    agent) echo 0:0 ;;
    *) echo 65532:65532 ;;
  esac
}

# Whether the workspace has the component's package (cert-sync is being written).
has_package() {
  grep -qx "name = \"$(binary_of "$1")\"" crates/*/Cargo.toml
}

# Components to work on: the requested ones whose package exists.
present_components() {
  local c
  for c in "${components[@]}"; do
    binary_of "$c" >/dev/null
    if has_package "$c"; then
      echo "$c"
    else
      log "SKIPPED $c: no package $(binary_of "$c") in crates/ yet"
    fi
  done
}

# Unknown names fail here, not inside a process substitution.
for c in "${components[@]}"; do binary_of "$c" >/dev/null; done

engine=()
# podman alone: no intermediate images for the LABEL/ENV/USER steps (nothing to cache in
# a build that copies three files).
build_flags=()
# Containers the smoke test started: removed however the script ends.
started=()
remove_started() {
  if [ ${#started[@]} -gt 0 ]; then "${engine[@]}" rm -f "${started[@]}" >/dev/null 2>&1 || true; fi
}
trap remove_started EXIT

pick_engine() {
  local want="${ENGINE:-}"
  if [ -z "$want" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
      want=docker
    elif command -v podman >/dev/null; then
      want=podman
    else
      die "neither a Docker daemon nor podman found (Debian: apt-get install -y podman runc)"
    fi
  fi
  case "$want" in
    docker) engine=(docker) ;;
    podman)
      export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo/hack/containers.conf}"
      engine=(podman)
      build_flags=(--layers=false)
      if command -v runc >/dev/null; then engine+=(--runtime runc); fi
      ;;
    *) die "ENGINE must be docker or podman, not '$want'" ;;
  esac
}

image_of() { echo "$prefix/$1:$tag"; }

build() {
  local present triple start c bin ctx packages=()
  mapfile -t present < <(present_components)
  [ ${#present[@]} -gt 0 ] || die "nothing to build"
  pick_engine
  for c in "${present[@]}"; do packages+=(-p "$(binary_of "$c")"); done

  triple="$(rustc -vV | sed -n 's/^host: //p')"
  case "$triple" in
    *-linux-gnu) ;;
    *) die "static binaries are built for a *-linux-gnu host, not $triple" ;;
  esac
  if [ "$profile" = image ] && ! grep -qx '\[profile.image\]' Cargo.toml; then
    log "no [profile.image] in Cargo.toml: release instead"
    profile=release
  fi
  # cargo names the dev profile's folder `debug`.
  local out="target/$triple/$profile"
  if [ "$profile" = dev ]; then
    out="target/$triple/debug"
    export CARGO_PROFILE_DEV_DEBUG=false
  fi
  start=$SECONDS
  log "cargo build --profile $profile --target $triple ${packages[*]} --bins (static)"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    "$cargo" build --profile "$profile" --target "$triple" "${packages[@]}" --bins
  log "binaries built in $((SECONDS - start))s"

  local revision created
  revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  # The commit's time, not the clock's: the same commit gives the same labels.
  created="$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)"
  start=$SECONDS
  for c in "${present[@]}"; do
    bin="$(binary_of "$c")"
    ctx="$stage_root/$c"
    rm -rf "$ctx"
    mkdir -p "$ctx/etc"
    cp "$out/$bin" "$ctx/$bin"
    cp images/rootfs/etc/passwd images/rootfs/etc/group "$ctx/etc/"
    if grep -q 'ca-certificates.crt' "images/$c/Dockerfile"; then
      [ -r /etc/ssl/certs/ca-certificates.crt ] ||
        die "$c needs /etc/ssl/certs/ca-certificates.crt (apt-get install -y ca-certificates)"
      mkdir -p "$ctx/etc/ssl/certs"
      cp /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/"
    fi
    log "${engine[*]} build $(image_of "$c")"
    "${engine[@]}" build --quiet "${build_flags[@]}" \
      -f "images/$c/Dockerfile" \
      --build-arg "VERSION=$tag" \
      --build-arg "REVISION=$revision" \
      --build-arg "CREATED=$created" \
      -t "$(image_of "$c")" \
      "$ctx" >/dev/null
  done
  log "${#present[@]} images built in $((SECONDS - start))s:"
  for c in "${present[@]}"; do image_of "$c"; done
}

# Fails unless `got` starts with `want`.
expect_prefix() {
  local what="$1" want="$2" got="$3"
  case "$got" in
    "$want"*) log "ok   $what: $got" ;;
    *) die "FAIL $what: wanted '$want...', got '$got'" ;;
  esac
}

smoke_echo() {
  local image="$1" cid addr body i
  cid="$("${engine[@]}" run -d --read-only -p 127.0.0.1::3000 "$image")"
  started+=("$cid")
  addr="$("${engine[@]}" port "$cid" 3000/tcp | head -n1)"
  [ -n "$addr" ] || die "FAIL echo: no published address for port 3000"
  addr="${addr/0.0.0.0/127.0.0.1}"
  body=""
  for ((i = 0; i < smoke_attempts; i++)); do
    if body="$(curl -fsS --max-time 2 -H 'Host: smoke.example' "http://$addr/smoke?x=1" 2>/dev/null)"; then
      break
    fi
    sleep 0.1
  done
  # The answer describes the request: its path with the query, and the Host header.
  body="$(tr -d ' \n' <<<"$body")"
  case "$body" in
    *'"path":"/smoke?x=1"'*'"host":"smoke.example"'*) log "ok   echo serves HTTP on $addr (published port)" ;;
    *)
      "${engine[@]}" logs "$cid" >&2 || true
      die "FAIL echo on $addr: no answer naming the path /smoke?x=1 and host smoke.example (got '$body')"
      ;;
  esac
}

smoke() {
  local present c bin image version user label
  mapfile -t present < <(present_components)
  pick_engine
  for c in "${present[@]}"; do
    bin="$(binary_of "$c")"
    image="$(image_of "$c")"
    "${engine[@]}" image inspect "$image" >/dev/null 2>&1 || die "no image $image: run hack/images.sh build"
    version="$("${engine[@]}" run --rm --read-only --network none "$image" --version)"
    expect_prefix "$image --version" "$bin " "$version"
    user="$("${engine[@]}" image inspect --format '{{.Config.User}}' "$image")"
    expect_prefix "$image user" "$(user_of "$c")" "$user"
    label="$("${engine[@]}" image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}}' "$image")"
    expect_prefix "$image version label" "$tag" "$label"
  done
  for c in "${present[@]}"; do
    if [ "$c" = echo ]; then smoke_echo "$(image_of echo)"; fi
  done
  log "smoke test passed for ${present[*]}"
}

case "${1:-}" in
  build) build ;;
  smoke) smoke ;;
  list)
    mapfile -t present < <(present_components 2>/dev/null)
    for c in "${present[@]}"; do image_of "$c"; done
    ;;
  *)
    echo "usage: hack/images.sh build|smoke|list   (env: TAG, IMAGE_PREFIX, COMPONENTS, ENGINE)" >&2
    exit 2
    ;;
esac
