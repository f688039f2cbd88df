#!/usr/bin/env bash
# Same-run A/B of two builds of librmsnorm.so on small calls: engine_call_bench
# run alternately against each library (LD_LIBRARY_PATH comes before the
# binary's RUNPATH), three rounds, pinned to one core; prints the median of the
# rounds per build and the ratio new/old.
#
#   scripts/ab_engine_calls.sh OLD_LIB_DIR NEW_LIB_DIR BENCH_BINARY [THREADS] ["SHAPES"] ["WHATS"]
#
# Environment: ROUNDS (default 3); STAT=min prints the minimum of the rounds
# instead of the median (on a noisy shared machine the least disturbed run);
# TARGET=AVX2 (any Highway target name) forces the SIMD target.
set -euo pipefail
old=$1 new=$2 bench=$3 threads=${4:-1}
shapes=${5:-"1x4096 1x8192 32x256 64x512 32x4096 2048x768"}
whats=${6:-"copy rms prms ln bwd bwdw"}
cpus=${CPUS:-$([ "$threads" -gt 1 ] && echo "0-$((threads - 1))" || echo 0)}
rounds=${ROUNDS:-3}
median() { printf "%s\n" "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
minimum() { printf "%s\n" "$@" | sort -g | head -1; }
summary=$([ "${STAT:-median}" = min ] && echo minimum || echo median)
printf "%-10s %-5s %12s %12s %8s\n" shape what "old ns" "new ns" new/old
for shape in $shapes; do
  rows=${shape%x*} n=${shape#*x}
  calls=$(( 20000000 / (rows * n) )); [ "$calls" -lt 1 ] && calls=1
  for what in $whats; do
    a=() b=()
    for round in $(seq "$rounds"); do
      a+=("$(LD_LIBRARY_PATH=$old taskset -c "$cpus" "$bench" "$rows" "$n" "$what" "$calls" "$threads" ${TARGET:+"$TARGET"} | awk '{print $3}')")
      b+=("$(LD_LIBRARY_PATH=$new taskset -c "$cpus" "$bench" "$rows" "$n" "$what" "$calls" "$threads" ${TARGET:+"$TARGET"} | awk '{print $3}')")
    done
    ma=$($summary "${a[@]}") mb=$($summary "${b[@]}")
    printf "%-10s %-5s %12.1f %12.1f %8.3f\n" "$shape" "$what" "$ma" "$mb" "$(echo "$mb / $ma" | bc -l)"
  done
done
