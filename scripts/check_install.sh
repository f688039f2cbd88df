#!/usr/bin/env bash
# Installs a configured rmsnorm build into a scratch prefix and builds the
# examples/consumer programs against the installed copy two ways: CMake's
# find_package(rmsnorm) and pkg-config. Then runs them.
#   scripts/check_install.sh <build dir> [scratch dir]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "$1" && pwd)"
scratch="${2:-$(mktemp -d)}"
prefix="$scratch/prefix"
rm -rf "$prefix" "$scratch/consumer-cmake" "$scratch/consumer-pkgconfig"
cmake --install "$build" --prefix "$prefix" >/dev/null

echo "== find_package(rmsnorm) from $prefix"
cmake -S "$root/examples/consumer" -B "$scratch/consumer-cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$scratch/consumer-cmake" >/dev/null
LD_LIBRARY_PATH="$prefix/lib:$prefix/lib64:${LD_LIBRARY_PATH:-}" "$scratch/consumer-cmake/normalize_rows"
LD_LIBRARY_PATH="$prefix/lib:$prefix/lib64:${LD_LIBRARY_PATH:-}" "$scratch/consumer-cmake/normalize_rows_c"

echo "== pkg-config rmsnorm from $prefix"
pc_dir="$(dirname "$(find "$prefix" -name rmsnorm.pc | head -1)")"
export PKG_CONFIG_PATH="$pc_dir"
mkdir -p "$scratch/consumer-pkgconfig"
# shellcheck disable=SC2046  # pkg-config's flags are meant to split
c++ -std=c++17 "$root/examples/consumer/normalize_rows.cpp" $(pkg-config --cflags --libs rmsnorm) \
  -o "$scratch/consumer-pkgconfig/normalize_rows"
# shellcheck disable=SC2046
cc "$root/examples/consumer/normalize_rows.c" $(pkg-config --cflags --libs rmsnorm) -lm \
  -o "$scratch/consumer-pkgconfig/normalize_rows_c"
libdir="$(pkg-config --variable=libdir rmsnorm)"
LD_LIBRARY_PATH="$libdir" "$scratch/consumer-pkgconfig/normalize_rows"
LD_LIBRARY_PATH="$libdir" "$scratch/consumer-pkgconfig/normalize_rows_c"
echo "install check passed"
