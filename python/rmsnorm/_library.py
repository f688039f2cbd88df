"""Finds and loads librmsnorm_torch.so, which registers torch.ops.rmsnorm.*."""
import os
from pathlib import Path

import torch

_LIBRARY_NAME = "librmsnorm_torch.so"


def _candidates():
    env = os.environ.get("RMSNORM_TORCH_LIBRARY")
    if env:
        yield Path(env)
    here = Path(__file__).resolve().parent
    yield here / _LIBRARY_NAME  # next to the package
    # cmake --install: <prefix>/lib/python3/dist-packages/rmsnorm, library in <prefix>/lib or lib/<multiarch>
    lib = here.parents[2]
    yield lib / _LIBRARY_NAME
    yield from sorted(lib.glob("*/" + _LIBRARY_NAME))
    for build in ("build", "build-test"):  # a source checkout: python/rmsnorm -> <root>/<build>/torch
        yield here.parent.parent / build / "torch" / _LIBRARY_NAME


def load_library():
    """Loads the op library once; raises ImportError saying where it looked."""
    if hasattr(torch.ops, "rmsnorm") and hasattr(torch.ops.rmsnorm, "rms_norm"):
        try:
            torch.ops.rmsnorm.rms_norm  # noqa: B018 - resolves only when registered
            return
        except (AttributeError, RuntimeError):
            pass
    tried = []
    for path in _candidates():
        tried.append(str(path))
        if path.is_file():
            torch.ops.load_library(str(path))
            return
    raise ImportError(
        "rmsnorm: cannot find " + _LIBRARY_NAME + " (build it with CMake, or set RMSNORM_TORCH_LIBRARY); looked at: "
        + ", ".join(tried)
    )
