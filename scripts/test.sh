#!/usr/bin/env bash
# Builds from scratch and runs the whole test suite: the release build, then
# the same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=Release -DRMSNORM_BUILD_BENCHMARKS=OFF
cmake --build build-test -j "$jobs"
ctest --test-dir build-test --output-on-failure -j "$jobs"
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRMSNORM_SANITIZE=ON -DRMSNORM_BUILD_BENCHMARKS=OFF \
  -DRMSNORM_BUILD_CLI=OFF  # the engine and its tests; LibTorch and oneDNN are not built for the sanitizers
cmake --build build-sanitize -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-sanitize --output-on-failure -j "$jobs"
