#!/usr/bin/env bash
# `pip install .` as a user runs it, offline, with Debian's python3: builds the op
# library with CMake against the installed torch into a scratch target directory,
# then imports the package from outside the checkout and checks it computes.
#   scripts/check_pip_install.sh [scratch dir]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mkdir -p "${1:-$(mktemp -d)}" && cd "${1:-.}" && pwd)"
python=/usr/bin/python3
rm -rf "$scratch/site"
# --no-build-isolation: build against the torch that is installed (and nothing is
# downloaded); --no-deps: --target does not see the system's torch as installed.
RMSNORM_BUILD_DIR="$scratch/build" "$python" -m pip install --quiet --disable-pip-version-check \
  --no-build-isolation --no-index --no-deps --target "$scratch/site" "$root"
cd "$scratch"
env -u RMSNORM_TORCH_LIBRARY PYTHONPATH="$scratch/site" "$python" - <<'PY'
import pathlib

import torch

import rmsnorm

package = pathlib.Path(rmsnorm.__file__).resolve().parent
assert (package / "librmsnorm_torch.so").is_file(), f"no op library in {package}"
assert "/work" not in str(package) or "site" in str(package), package
x = torch.randn(8, 64, dtype=torch.float64, requires_grad=True)
w = torch.rand(64, dtype=torch.float64) + 0.5
y = rmsnorm.rms_norm(x, [64], w, eps=1e-6)
expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
torch.testing.assert_close(y, expected, rtol=1e-13, atol=1e-13)
y.sum().backward()
assert x.grad is not None and torch.isfinite(x.grad).all()
print(f"pip install ok: rmsnorm from {package}")
PY
