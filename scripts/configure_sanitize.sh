#!/usr/bin/env bash
# Configures the instrumented build shared by the sanitizer tests and the
# fuzzer (clang; ASan + UBSan + libFuzzer coverage): scripts/test.sh and
# scripts/fuzz.sh call it with the same arguments, so neither rebuilds the other's.
# Without the emulated EMU128 target (RMSNORM_SKIP_EMULATED_SIMD): the release
# build tests it, and it was most of this build's compile time.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=clang CXX=clang++ cmake -S . -B "${1:-build-sanitize}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRMSNORM_SANITIZE=ON -DRMSNORM_FUZZ=ON -DRMSNORM_SKIP_EMULATED_SIMD=ON -DRMSNORM_BUILD_BENCHMARKS=OFF -DRMSNORM_BUILD_CLI=OFF >/dev/null
