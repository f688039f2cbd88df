#!/usr/bin/env python3
"""PyTorch's own GPU kernels on the shapes cuda_bench uses: F.rms_norm
(PyTorch 2.4+) and F.layer_norm, forward and forward+backward, with a device
copy of the same bytes timed in the same run. CUDA events, median.

    python3 scripts/bench_torch_cuda.py [rows n dtype reps]
"""
import sys

import torch
import torch.nn.functional as F


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def main(argv):
    rows = int(argv[1]) if len(argv) > 1 else 16384
    n = int(argv[2]) if len(argv) > 2 else 8192
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[argv[3] if len(argv) > 3 else "bf16"]
    reps = int(argv[4]) if len(argv) > 4 else 21
    x = torch.randn(rows, n, device="cuda", dtype=dtype)
    dy = torch.randn_like(x)
    w = torch.ones(n, device="cuda", dtype=dtype)
    out = torch.empty_like(x)
    m = x.numel() * x.element_size()
    xg = x.clone().requires_grad_()
    wg = w.clone().requires_grad_()

    def fwd_bwd(norm):
        y = norm(xg)
        torch.autograd.grad(y, (xg, wg), dy)

    cases = [("device copy (same bytes)", 2 * m, lambda: out.copy_(x))]
    if hasattr(F, "rms_norm"):
        cases.append(("F.rms_norm forward", 2 * m, lambda: F.rms_norm(x, (n,), w, 1e-5)))
        cases.append(("F.rms_norm forward+backward", 5 * m, lambda: fwd_bwd(lambda t: F.rms_norm(t, (n,), wg, 1e-5))))
    cases.append(("F.layer_norm forward", 2 * m, lambda: F.layer_norm(x, (n,), w, None, 1e-5)))
    cases.append(("F.layer_norm forward+backward", 5 * m,
                  lambda: fwd_bwd(lambda t: F.layer_norm(t, (n,), wg, None, 1e-5))))
    for _, _, fn in cases:
        fn()
    torch.cuda.synchronize()
    results = {name: [] for name, _, _ in cases}
    for _ in range(reps):  # interleaved
        for name, _, fn in cases:
            results[name].append(median_ms(fn, 1))
    print(f"{torch.cuda.get_device_name()} PyTorch {torch.__version__}, {dtype} {rows} x {n}, median of {reps}")
    copy_gbs = None
    for name, nbytes, _ in cases:
        t = sorted(results[name])[reps // 2]
        gbs = nbytes / t / 1e6
        copy_gbs = copy_gbs or gbs
        print(f"{name:32s} {t:9.4f} ms {gbs:9.1f} GB/s {100 * gbs / copy_gbs:7.1f}% of copy")


if __name__ == "__main__":
    main(sys.argv)
