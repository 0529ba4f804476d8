#!/usr/bin/env bash
# Builds and runs the fuzz targets of fuzz/ with plain cargo and libfuzzer-sys on stable
# Rust (docs/fuzzing.md says why not cargo-fuzz). Called by `make fuzz`, `make fuzz-smoke`,
# `make fuzz-seeds`.
#
#   fuzz/run.sh build                      instrumented release build into fuzz/target
#   fuzz/run.sh seeds                      corpora from e2e/cases and examples/ (fuzz/corpus)
#   fuzz/run.sh run SECONDS [TARGET...]    each target (default all) for SECONDS; exits 1
#                                          when one crashed (input in fuzz/artifacts/TARGET)
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$PWD
root=$(cd .. && pwd)
gateway_api=${GATEWAY_API_DIR:-$root/../shared/gateway-api}
case $gateway_api in /*) ;; *) gateway_api=$root/$gateway_api ;; esac
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$fuzz_dir/target/$triple/release
all_targets=(translate yaml_folder route_match proxy_config header_filters client_hello)

build() {
  # What `cargo fuzz build --sanitizer none` passes, all of it stable rustc (no -Z flag,
  # so no nightly and no RUSTC_BOOTSTRAP): `cfg(fuzzing)` and debug assertions for every
  # crate (RUSTFLAGS, profile), libFuzzer's coverage (inline 8-bit counters, PC table,
  # comparison tracing) only for our crates and the parsers in front of them
  # (rustc-cov.sh, see there why). The explicit --target keeps all of it off build
  # scripts and proc macros.
  RUSTC_WRAPPER=$fuzz_dir/rustc-cov.sh RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --target "$triple" --bins
}

# The manifests of one e2e case (its `manifests: [a, b]` line, relative to the Gateway
# API checkout), each file preceded by `#### <name>` (yaml_folder's input format).
case_files() {
  local list
  list=$(sed -n 's/^manifests: \[\(.*\)\]$/\1/p' "$1" | tr -d ' ')
  local IFS=,
  for m in $list; do
    [ -r "$gateway_api/$m" ] || continue
    printf '#### %s\n' "$m"
    cat "$gateway_api/$m"
    printf '\n'
  done
}

seeds() {
  mkdir -p corpus/translate corpus/yaml_folder corpus/proxy_config corpus/client_hello \
    corpus/route_match corpus/header_filters
  local n=0
  for dir in "$root"/examples/*/*/; do
    local name
    name=example-$(basename "$dir")
    : >"corpus/yaml_folder/$name"
    : >"corpus/translate/$name"
    for f in "$dir"*.yaml; do
      printf '#### %s\n' "$(basename "$f")" >>"corpus/yaml_folder/$name"
      cat "$f" >>"corpus/yaml_folder/$name"
      { cat "$f"; printf '\n---\n'; } >>"corpus/translate/$name"
    done
    n=$((n + 1))
  done
  if [ -d "$gateway_api" ]; then
    for c in "$root"/e2e/cases/*.yaml; do
      local name
      name=case-$(basename "$c" .yaml)
      case_files "$c" >"corpus/yaml_folder/$name"
      # One file for the translator: documents joined by `---`.
      sed 's/^#### .*/---/' "corpus/yaml_folder/$name" >"corpus/translate/$name"
      n=$((n + 1))
    done
  else
    echo "fuzz seeds: no Gateway API checkout at $gateway_api, e2e/cases not used" >&2
  fi
  echo "fuzz seeds: $n manifest sets"
  # proxy_config starts from real configs: the translate target run once over its seeds
  # writes what it translated (PORTICO_FUZZ_CONFIG_SEEDS).
  [ -x "$bin_dir/translate" ] || build
  PORTICO_FUZZ_CONFIG_SEEDS=$fuzz_dir/corpus/proxy_config "$bin_dir/translate" -runs=0 \
    corpus/translate 2>/dev/null
  echo "fuzz seeds: $(find corpus/proxy_config -type f | wc -l) proxy configs"
  client_hellos
}

# Real ClientHellos (with and without SNI, TLS 1.2 and 1.3) from Python's ssl module:
# the first flight of a handshake into a memory BIO.
client_hellos() {
  command -v python3 >/dev/null || { echo "fuzz seeds: no python3, no ClientHello seeds" >&2; return 0; }
  python3 - corpus/client_hello <<'PY'
import os, ssl, sys
out = sys.argv[1]
for i, (sni, version) in enumerate([("example.com", None), (None, None),
                                    ("a.example.com", ssl.TLSVersion.TLSv1_2),
                                    ("xn--bcher-kva.example", ssl.TLSVersion.TLSv1_3)]):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    with open(os.path.join(out, f"hello-{i}"), "wb") as f:
        f.write(outgoing.read())
PY
  echo "fuzz seeds: $(find corpus/client_hello -type f | wc -l) ClientHellos"
}

run() {
  local seconds=$1
  shift
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
  build
  [ -d corpus/translate ] || seeds
  local failed=()
  for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== fuzz $t for ${seconds}s"
    local dict=()
    [ -r "$t.dict" ] && dict=(-dict="$t.dict")
    # -timeout: an input that takes 20 s is a hang; a translation takes milliseconds.
    if "$bin_dir/$t" -max_total_time="$seconds" -timeout=20 -print_final_stats=1 \
      "${dict[@]}" -artifact_prefix="artifacts/$t/" "corpus/$t" >"target/$t.log" 2>&1; then
      grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "target/$t.log" || true
    else
      failed+=("$t")
      tail -n 60 "target/$t.log"
      echo "== fuzz $t FAILED: input in fuzz/artifacts/$t/, log fuzz/target/$t.log"
    fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}"
    return 1
  fi
  echo "fuzz: ${#targets[@]} targets, no crash"
}

case ${1:-} in
  build) build ;;
  seeds) seeds ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 build | seeds | run SECONDS [TARGET...]" >&2; exit 2 ;;
esac
