#!/usr/bin/env bash
# Builds fuzz/api_fuzzer with clang (libFuzzer + ASan + UBSan) and runs it
# from the checked-in seed corpus.
#   scripts/fuzz.sh 60              run for 60 seconds (what CI does)
#   scripts/fuzz.sh -runs=10000000  run a fixed number of inputs
#   scripts/fuzz.sh 60 DIR          in build directory DIR (default build-fuzz)
#   scripts/fuzz.sh -runs=5000000 build-fuzz -jobs=2 -workers=2
#                                   further arguments go to libFuzzer: here two
#                                   processes of 5e6 inputs each (logs in DIR/fuzz-*.log)
# New inputs go to a scratch corpus (DIR/corpus), never into fuzz/corpus; a
# failing input is written to DIR as crash-* and reproduced with
# DIR/fuzz/api_fuzzer DIR/crash-<hash>.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-60}
dir=${2:-build-fuzz}
shift $(( $# < 2 ? $# : 2 ))
case "$limit" in
  -*) run_option=$limit ;;
  *) run_option=-max_total_time=$limit ;;
esac
scripts/configure_sanitize.sh "$dir"
cmake --build "$dir" --target api_fuzzer -j "$(nproc)"
mkdir -p "$dir/corpus"
cd "$dir"
# Two OpenMP threads: inputs that ask for two run the split (long-row) paths.
OMP_NUM_THREADS=2 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
  fuzz/api_fuzzer "$run_option" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 "$@" corpus "$OLDPWD/fuzz/corpus"
