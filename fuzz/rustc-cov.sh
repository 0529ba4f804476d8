#!/usr/bin/env bash
# RUSTC_WRAPPER of `fuzz/run.sh build`: libFuzzer's coverage instrumentation only for
# the crates whose coverage guides the fuzzer (ours, and the parsers our inputs go
# through first), not for the whole dependency tree (kube, tokio, tonic, rustls, ...):
# instrumenting every crate made the cold build much longer for no better guidance.
# Cargo runs this as `rustc-cov.sh RUSTC ARGS...` with CARGO_PKG_NAME set to the crate's
# package. Build scripts and proc macros never get the flags: they are built for the
# host, without --target, and carry no `--target` argument.
set -euo pipefail
rustc=$1
shift
case " $* " in
  *" --target "* | *" --target="*) ;;
  *) exec "$rustc" "$@" ;;
esac
case ${CARGO_PKG_NAME:-} in
  portico-* | unsafe-libyaml | serde_yaml_ng | regex-syntax | httparse | http)
    exec "$rustc" "$@" -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
      -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares
    ;;
  *) exec "$rustc" "$@" ;;
esac
