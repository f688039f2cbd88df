#!/usr/bin/env bash
# Builds from scratch and runs the whole test suite:
#  1. the release build (gcc) and every test;
#  2. the engine and its tests under AddressSanitizer + UndefinedBehaviorSanitizer,
#     built with clang so that the same build holds the libFuzzer target, which
#     then runs for a minute from the checked-in corpus (scripts/fuzz.sh);
#  3. the threading tests under ThreadSanitizer (OpenMP at one thread inside,
#     many std::thread callers outside: libgomp is not instrumented).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
start=$SECONDS
stage() { echo "== $1 ($((SECONDS - start)) s in)"; }

stage "release build"
# One CUDA architecture: CI has no GPU; the emulation tests run either way.
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=Release -DRMSNORM_BUILD_BENCHMARKS=OFF \
  -DRMSNORM_CUDA_ARCHITECTURES=90
cmake --build build-test -j "$jobs"
stage "release tests"
ctest --test-dir build-test --output-on-failure -j "$jobs"

stage "sanitizer build (clang, ASan + UBSan + libFuzzer)"
scripts/configure_sanitize.sh build-sanitize
cmake --build build-sanitize -j "$jobs"
stage "sanitizer tests"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-sanitize --output-on-failure -j "$jobs"
stage "fuzzing, 60 s"
scripts/fuzz.sh 60 build-sanitize

stage "ThreadSanitizer build"
# One SIMD target (the baseline): these tests are about threads, and every
# target is tested by the two builds above.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRMSNORM_TSAN=ON -DRMSNORM_BUILD_BENCHMARKS=OFF \
  -DRMSNORM_BUILD_CLI=OFF -DRMSNORM_BASELINE_SIMD_ONLY=ON
cmake --build build-tsan -j "$jobs" --target rmsnorm_tests
stage "ThreadSanitizer tests"
# Only tests whose calls stay on one OpenMP thread: libgomp is not built with
# TSan, so its barriers look like races to it (tests that ask for two
# OpenMP threads were reported exactly so).
OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/tests/rmsnorm_tests \
  --gtest_filter='ThreadPool.*:BadInput.*:CApi.*'
stage "done"
