"""Builds the op library for `pip install .`: CMake configures this repository against the
installed torch (torch.utils.cmake_prefix_path), builds only librmsnorm_torch.so with the engine
linked in statically, and the library is copied into the rmsnorm package.

Environment: RMSNORM_CMAKE_ARGS (extra CMake arguments), RMSNORM_BUILD_DIR (default
build/pip in this checkout; kept between installs, so a second install rebuilds little).
"""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent
LIBRARY = "librmsnorm_torch.so"


class BuildWithOpLibrary(build_py):
    def run(self):
        super().run()
        library = self._build_op_library()
        target = Path(self.build_lib) / "rmsnorm" / LIBRARY
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, target)

    def _build_op_library(self) -> Path:
        try:
            import torch.utils
        except ImportError as e:  # pip without --no-build-isolation hides the installed torch
            raise SystemExit("rmsnorm: building needs the installed torch; run pip with "
                             "--no-build-isolation (" + str(e) + ")")
        build_dir = Path(os.environ.get("RMSNORM_BUILD_DIR", ROOT / "build" / "pip"))
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            f"-DRMSNORM_PYTHON={sys.executable}",
            # Only the op library, with the engine inside it: one file to ship.
            "-DBUILD_SHARED_LIBS=OFF", "-DRMSNORM_BUILD_TESTS=OFF", "-DRMSNORM_BUILD_BENCHMARKS=OFF",
            "-DRMSNORM_BUILD_CLI=OFF", "-DRMSNORM_WITH_CUDA=OFF",
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("RMSNORM_CMAKE_ARGS", ""))
        subprocess.run(configure, check=True)
        jobs = str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "rmsnorm_torch", "-j", jobs], check=True)
        library = build_dir / "torch" / LIBRARY
        if not library.is_file():
            raise SystemExit(f"rmsnorm: the build did not produce {library}")
        return library


class BinaryDistribution(Distribution):
    """The wheel holds a compiled library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithOpLibrary}, distclass=BinaryDistribution)
