#!/usr/bin/env bash
# Builds fuzz/api_fuzzer with clang (libFuzzer + ASan + UBSan) and runs it
# from the checked-in seed corpus.
#   scripts/fuzz.sh 60              run for 60 seconds (what CI does)
#   scripts/fuzz.sh -runs=10000000  run a fixed number of inputs
# New inputs go to a scratch corpus (build-fuzz/corpus), never into fuzz/corpus;
# a failing input is written to build-fuzz/ as crash-* and reproduced with
# build-fuzz/fuzz/api_fuzzer build-fuzz/crash-<hash>.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-60}
case "$limit" in
  -*) run_option=$limit ;;
  *) run_option=-max_total_time=$limit ;;
esac
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRMSNORM_FUZZ=ON \
  -DBUILD_SHARED_LIBS=OFF -DRMSNORM_BUILD_TESTS=OFF -DRMSNORM_BUILD_CLI=OFF -DRMSNORM_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-fuzz --target api_fuzzer -j "$(nproc)"
mkdir -p build-fuzz/corpus
cd build-fuzz
# One OpenMP thread per call unless an input asks for more: the fuzzer's own
# process runs one input at a time.
OMP_NUM_THREADS=2 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
  fuzz/api_fuzzer "$run_option" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 corpus ../fuzz/corpus
