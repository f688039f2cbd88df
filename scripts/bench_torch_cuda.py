#!/usr/bin/env python3
"""Our CUDA kernels against PyTorch's own, in one process on one GPU: F.rms_norm
(PyTorch 2.4+) and F.layer_norm, forward and forward+backward, with a device
copy of the same bytes as the ceiling (SPEC section 6). Ours are called through
the C API of librmsnorm_cuda (ctypes) on PyTorch's current stream.

Before timing, our outputs are checked against a float64 computation on the
GPU; a wrong result prints CORRECTNESS CHECK FAILED and exits with status 2.
Timings: CUDA events, every case interleaved in every repetition, medians.

    python3 scripts/bench_torch_cuda.py [rows n dtype reps] [--lib path/to/librmsnorm_cuda.so]

Bytes: forward reads x and writes y; forward+backward also reads x and dy and
writes dx (5 row-matrices in all). Weight traffic is ignored.
"""
import ctypes
import math
import os
import sys

import torch
import torch.nn.functional as F

DTYPES = {"bf16": (torch.bfloat16, 1), "f16": (torch.float16, 2), "f32": (torch.float32, 0)}
KIND_RMS, KIND_LAYER = 0, 1


class Options(ctypes.Structure):  # rmsnorm_options, field for field (zero: no offset, single rounding)
    _fields_ = [("kind", ctypes.c_int), ("eps", ctypes.c_double), ("eps_placement", ctypes.c_int),
                ("p", ctypes.c_double), ("num_threads", ctypes.c_int), ("weight_offset", ctypes.c_double),
                ("rounding", ctypes.c_int)]


def load_library(explicit):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [explicit] if explicit else [
        os.path.join(here, "lib", "librmsnorm_cuda.so"),  # gpu-bundle/
        os.path.join(here, "..", "build", "librmsnorm_cuda.so"),
    ]
    for path in candidates:
        if path and os.path.exists(path):
            lib = ctypes.CDLL(path)
            p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
            lib.rmsnorm_cuda_forward.argtypes = [ctypes.POINTER(Options), i64, i64, i32, p, i64, p, i64, p, p, i32, p,
                                                 p, p]
            lib.rmsnorm_cuda_backward.argtypes = [ctypes.POINTER(Options), i64, i64, i32, p, i64, p, i64, p, i32, p,
                                                  p, p, i64, p, p, p]
            lib.rmsnorm_last_error.restype = ctypes.c_char_p
            return lib, path
    sys.exit(f"bench_torch_cuda: librmsnorm_cuda.so not found (tried {candidates}); pass --lib")


class Ours:
    """Our forward and backward on torch tensors, on torch's current stream."""

    def __init__(self, lib, kind, code, rows, n, eps):
        self.lib, self.code, self.rows, self.n = lib, code, rows, n
        self.options = Options(kind, eps, 0, 1.0, 0)

    def _check(self, status):
        if status != 0:
            raise RuntimeError("rmsnorm: " + self.lib.rmsnorm_last_error().decode())

    def forward(self, x, w, y, inv_rms=None, mean=None):
        self._check(self.lib.rmsnorm_cuda_forward(
            ctypes.byref(self.options), self.rows, self.n, self.code, x.data_ptr(), self.n, y.data_ptr(), self.n,
            w.data_ptr(), None, self.code, inv_rms.data_ptr() if inv_rms is not None else None,
            mean.data_ptr() if mean is not None else None, torch.cuda.current_stream().cuda_stream))

    def backward(self, x, dy, w, inv_rms, mean, dx, dw):
        self._check(self.lib.rmsnorm_cuda_backward(
            ctypes.byref(self.options), self.rows, self.n, self.code, x.data_ptr(), self.n, dy.data_ptr(), self.n,
            w.data_ptr(), self.code, inv_rms.data_ptr(), mean.data_ptr() if mean is not None else None,
            dx.data_ptr(), self.n, dw.data_ptr(), None, torch.cuda.current_stream().cuda_stream))


def reference(kind, x, w, eps):
    xd = x.double()
    if kind == KIND_LAYER:
        xd = xd - xd.mean(-1, keepdim=True)
    return xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + eps) * w.double()


def unit(dtype, n):
    """SPEC section 4: 1 ulp for 16-bit outputs, 1e-6 (1 + log2 n) for float32."""
    if dtype == torch.float32:
        return 1e-6 * (1 + math.log2(n))
    return 2.0 ** (1 - {torch.bfloat16: 8, torch.float16: 11}[dtype])


def check(name, got, want, allowed):
    worst = ((got.double() - want).abs() / allowed).max().item()
    ok = worst <= 1.0
    print(f"check {name:28s} worst error {worst:6.3f} of allowed  {'ok' if ok else 'FAILED'}")
    return ok


def median_ms(fn):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop)


def main(argv):
    lib_path = None
    if "--lib" in argv:
        i = argv.index("--lib")
        lib_path = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    rows = int(argv[1]) if len(argv) > 1 else 16384
    n = int(argv[2]) if len(argv) > 2 else 8192
    dtype, code = DTYPES[argv[3] if len(argv) > 3 else "bf16"]
    reps = int(argv[4]) if len(argv) > 4 else 21
    lib, path = load_library(lib_path)
    if not torch.cuda.is_available():
        sys.exit("bench_torch_cuda: this PyTorch sees no CUDA device; run it on a GPU machine")
    eps = 1e-5

    torch.manual_seed(0)
    x = torch.randn(rows, n, device="cuda", dtype=dtype)
    dy = torch.randn_like(x)
    w = (1 + 0.5 * torch.randn(n, device="cuda")).to(dtype)
    out, dx = torch.empty_like(x), torch.empty_like(x)
    dw = torch.empty_like(w)
    stats = torch.empty(rows, device="cuda", dtype=torch.float32)
    means = torch.empty(rows, device="cuda", dtype=torch.float32)
    m = x.numel() * x.element_size()
    rms = Ours(lib, KIND_RMS, code, rows, n, eps)
    layer = Ours(lib, KIND_LAYER, code, rows, n, eps)

    # Correctness first.
    ok = True
    for name, ours, kind in (("ours RMSNorm forward", rms, KIND_RMS), ("ours LayerNorm forward", layer, KIND_LAYER)):
        ours.forward(x, w, out)
        torch.cuda.synchronize()
        want = reference(kind, x, w, eps)
        ok &= check(name, out, want, want.abs() * unit(dtype, n) + 2.0 ** -24)
    xg = x.double().requires_grad_()
    wg = w.double().requires_grad_()
    for name, ours, kind in (("ours RMSNorm dx", rms, KIND_RMS), ("ours LayerNorm dx", layer, KIND_LAYER)):
        ours.forward(x, w, out, stats, means if kind == KIND_LAYER else None)
        ours.backward(x, dy, w, stats, means if kind == KIND_LAYER else None, dx, dw)
        torch.cuda.synchronize()
        gx, gw = torch.autograd.grad(reference(kind, xg, wg, eps), (xg, wg), dy.double())
        # dx cancels: measured norm-wise per row. dweight sums terms of both
        # signs: measured against the sum of their sizes.
        err = ((dx.double() - gx).norm(dim=-1) / gx.norm(dim=-1).clamp_min(1e-30)).max().item()
        row_ok = err <= 2 * unit(dtype, n)
        print(f"check {name:28s} worst row relative error {err:.3e}  {'ok' if row_ok else 'FAILED'}")
        ok &= row_ok
        terms = (dy.double() * reference(kind, x, torch.ones_like(w), eps)).abs().sum(0)
        ok &= check(name.replace("dx", "dweight"), dw, gw, gw.abs() * unit(dtype, n) + 1e-5 * terms)
    if not ok:
        print("CORRECTNESS CHECK FAILED")
        return 2

    xt = x.clone().requires_grad_()
    wt = w.clone().requires_grad_()

    def torch_fwd_bwd(norm):
        y = norm(xt)
        torch.autograd.grad(y, (xt, wt), dy)

    def ours_fwd_bwd(ours, with_mean):
        ours.forward(x, w, out, stats, means if with_mean else None)
        ours.backward(x, dy, w, stats, means if with_mean else None, dx, dw)

    cases = [("device copy (same bytes)", 2 * m, lambda: out.copy_(x)),
             ("ours RMSNorm forward", 2 * m, lambda: rms.forward(x, w, out))]
    if hasattr(F, "rms_norm"):
        cases.append(("F.rms_norm forward", 2 * m, lambda: F.rms_norm(x, (n,), w, eps)))
    cases += [("ours LayerNorm forward", 2 * m, lambda: layer.forward(x, w, out)),
              ("F.layer_norm forward", 2 * m, lambda: F.layer_norm(x, (n,), w, None, eps)),
              ("ours RMSNorm fwd+bwd", 5 * m, lambda: ours_fwd_bwd(rms, False))]
    if hasattr(F, "rms_norm"):
        cases.append(("F.rms_norm fwd+bwd", 5 * m, lambda: torch_fwd_bwd(lambda t: F.rms_norm(t, (n,), wt, eps))))
    cases += [("ours LayerNorm fwd+bwd", 5 * m, lambda: ours_fwd_bwd(layer, True)),
              ("F.layer_norm fwd+bwd", 5 * m, lambda: torch_fwd_bwd(lambda t: F.layer_norm(t, (n,), wt, None, eps)))]
    for _ in range(3):  # warm-up
        for _, _, fn in cases:
            fn()
    torch.cuda.synchronize()
    results = {name: [] for name, _, _ in cases}
    for _ in range(reps):  # interleaved
        for name, _, fn in cases:
            results[name].append(median_ms(fn))
    median = {name: sorted(t)[len(t) // 2] for name, t in results.items()}
    print(f"{torch.cuda.get_device_name()}, PyTorch {torch.__version__}, {path}")
    print(f"{dtype} {rows} x {n}, median of {reps} interleaved repetitions")
    copy_gbs = 2 * m / median["device copy (same bytes)"] / 1e6
    for name, nbytes, _ in cases:
        t = median[name]
        gbs = nbytes / t / 1e6
        line = f"{name:28s} {t:9.4f} ms {gbs:8.1f} GB/s {100 * gbs / copy_gbs:6.1f}% of copy"
        if name.startswith("ours"):
            rival = name.replace("ours RMSNorm", "F.rms_norm").replace("ours LayerNorm", "F.layer_norm")
            if rival in median:
                line += f"   {median[rival] / t:5.2f}x {rival}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
