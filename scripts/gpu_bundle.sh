#!/bin/sh
# Packs what a GPU machine needs to test and benchmark the CUDA backend into
# one folder: cuda_test, cuda_bench, the shared libraries they load that are
# not part of every Linux system, the PyTorch benchmark script, and run.sh.
# Build here, run there: GPU machines often lack Highway, GoogleTest and the
# rest of our build dependencies, and nothing can be installed on them.
#
#   scripts/gpu_bundle.sh [build-dir] [bundle-dir]   defaults: build gpu-bundle
#   gpu-bundle/run.sh [out-dir]                      on the GPU machine
#
# run.sh runs every CUDA test (the `gpu` instances included), the same tests
# under compute-sanitizer memcheck and racecheck, cuda_bench for bf16, f16 and
# f32 at 16384x8192 and at smaller shapes, and scripts/bench_torch_cuda.py;
# each log goes to out-dir.
set -eu
build=${1:-build}
bundle=${2:-gpu-bundle}
here=$(cd "$(dirname "$0")/.." && pwd)

cmake --build "$build" --target cuda_test cuda_bench
rm -rf "$bundle"
mkdir -p "$bundle/lib"
cp "$build/tests/cuda_test" "$build/bench/cuda_bench" "$here/scripts/bench_torch_cuda.py" "$bundle/"
# Every library the binaries load except the C runtime and the CUDA driver,
# which the GPU machine provides.
for lib in $(ldd "$bundle/cuda_test" "$bundle/cuda_bench" | awk '/=> \// {print $3}' | sort -u); do
  case $(basename "$lib") in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda.so*) ;;
    *) cp -L "$lib" "$bundle/lib/" ;;
  esac
done

cat >"$bundle/run.sh" <<'EOF'
#!/bin/sh
# Runs the CUDA backend's tests and benchmarks on this machine's GPU.
set -u
bundle=$(cd "$(dirname "$0")" && pwd)
out=${1:-$bundle/out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
echo "== cuda_test"
"$bundle/cuda_test" >"$out/cuda_test.txt" 2>&1 || status=1
tail -n 25 "$out/cuda_test.txt"
# The sanitizers run the GPU tests only, without the 2^20-element rows: they are slow.
for tool in memcheck racecheck; do
  echo "== compute-sanitizer --tool $tool"
  RMSNORM_CUDA_TEST_QUICK=1 timeout 300 compute-sanitizer --tool "$tool" --error-exitcode 3 \
    "$bundle/cuda_test" --gtest_filter='*/gpu:Cuda.*' >"$out/sanitizer_$tool.txt" 2>&1 || status=1
  tail -n 6 "$out/sanitizer_$tool.txt"
done
# Each shape: our kernels against a copy (cuda_bench), then ours against
# PyTorch's in one process (bench_torch_cuda.py).
for shape in "16384 8192 bf16" "16384 8192 f16" "16384 8192 f32" "4096 4096 bf16" "65536 1024 bf16" "32 4096 bf16"; do
  echo "== $shape"
  # shellcheck disable=SC2086
  "$bundle/cuda_bench" $shape 21 2>&1 | tee -a "$out/cuda_bench.txt" || status=1
  # shellcheck disable=SC2086
  python3 "$bundle/bench_torch_cuda.py" $shape 21 2>&1 | tee -a "$out/bench_torch_cuda.txt" || status=1
done
exit $status
EOF
chmod +x "$bundle/run.sh"
echo "gpu bundle: $bundle ($(du -sh "$bundle" | cut -f1)); run $bundle/run.sh on the GPU machine"
