#!/usr/bin/env bash
# Installs the Debian packages rmsnorm needs on a fresh machine (idempotent).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config libhwy-dev libomp-dev libgtest-dev libbenchmark-dev
          libcli11-dev libfmt-dev nlohmann-json3-dev clang  # clang: libFuzzer for the sanitizer build
          libtorch-dev libdnnl-dev python3-matplotlib python3-torch python3-pytest
          libgloo-dev  # gloo's headers: the C++ tensor-parallel test builds a c10d ProcessGroupGloo
          zlib1g-dev fortunes dataset-fashion-mnist
          libopenblas0-openmp)  # LibTorch's BLAS: without it Debian falls back to the slow reference BLAS
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
