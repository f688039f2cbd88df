#!/usr/bin/python3
"""What a PyTorch user pays per norm (issue 12): medians of interleaved repetitions, one process.

    RMSNORM_TORCH_LIBRARY=build/torch/librmsnorm_torch.so PYTHONPATH=python \\
        /usr/bin/python3 scripts/bench_torch_ops.py [--threads 1] [--reps 21] [--quick]

1. Training step of one norm layer (forward + backward, weight gradient included) at LLM-like
   and GRU-like shapes: our RMSNorm module, torch.nn.LayerNorm, and a tensor-op RMSNorm (the
   formula Hugging Face's LlamaRMSNorm runs, which is also what F.rms_norm runs on CPU).
2. Per-call cost at 1x4096 (forward only and forward + backward), to compare builds:
   run once per library with RMSNORM_TORCH_LIBRARY pointing at each.
3. The ops alone (issue 15): forward + backward with the weight gradient of our rms_norm and
   layer_norm ops and F.layer_norm, float32, at the GRU's and the reproduction's shapes.
4. The allocation a functional call pays at 16384x8192 float32 against out= (no allocation);
   run with and without MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 to
   see what glibc's return of large blocks to the kernel costs.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as TF

import rmsnorm


def tensor_op_rms_norm(x, weight, eps):
    """Hugging Face LlamaRMSNorm's forward, in tensor ops."""
    input_dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(input_dtype)


def interleaved(candidates, reps, warmup=2):
    """Median seconds of each candidate, the candidates run in turn each repetition."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def training_steps(shapes, dtypes, reps):
    print("\n## Training step of one norm layer: forward + backward with the weight gradient (ms, medians)")
    print("| shape | dtype | ours RMSNorm | nn.LayerNorm | tensor-op RMSNorm | tensor-op / ours | LayerNorm / ours |")
    print("|---|---|---|---|---|---|---|")
    for shape in shapes:
        n = shape[-1]
        for dtype in dtypes:
            x = torch.randn(*shape).to(dtype).requires_grad_()
            dy = torch.randn(*shape).to(dtype)
            ours = rmsnorm.RMSNorm(n, eps=1e-6, dtype=dtype)
            layer = torch.nn.LayerNorm(n, eps=1e-6, dtype=dtype)
            weight = torch.nn.Parameter(torch.ones(n, dtype=dtype))

            def step(forward):
                def run():
                    y = forward(x)
                    y.backward(dy)
                    x.grad = None
                return run

            medians = interleaved({
                "ours": step(ours),
                "layer": step(layer),
                "tensor_ops": step(lambda t: tensor_op_rms_norm(t, weight, 1e-6)),
            }, reps)
            ms = {k: v * 1e3 for k, v in medians.items()}
            print(f"| {'x'.join(map(str, shape))} | {str(dtype).replace('torch.', '')} | {ms['ours']:.3f} | "
                  f"{ms['layer']:.3f} | {ms['tensor_ops']:.3f} | {ms['tensor_ops'] / ms['ours']:.2f}x | "
                  f"{ms['layer'] / ms['ours']:.2f}x |")


def per_call(reps):
    print("\n## Per call at 1x4096 float32 (microseconds, medians of batches of 200 calls)")
    x = torch.randn(1, 4096, requires_grad=True)
    w = torch.ones(4096, requires_grad=True)
    dy = torch.randn(1, 4096)
    op = torch.ops.rmsnorm.rms_norm

    def batch(fn, count=200):
        def run():
            for _ in range(count):
                fn()
        return run

    def forward():
        with torch.no_grad():
            op(x, [4096], w, None, 1e-6, 1.0, "inside")

    def forward_backward():
        y = op(x, [4096], w, None, 1e-6, 1.0, "inside")
        y.backward(dy)

    medians = interleaved({"forward": batch(forward), "forward+backward": batch(forward_backward)}, reps)
    for name, seconds in medians.items():
        print(f"- {name}: {seconds / 200 * 1e6:.2f} us per call")


def ops_alone(shapes, reps):
    print("\n## The ops alone: forward + backward with the weight gradient, float32 (microseconds, medians)")
    print("| shape | our rms_norm | our layer_norm | F.layer_norm | our layer_norm / rms_norm | F.layer_norm / rms_norm |")
    print("|---|---|---|---|---|---|")
    for rows, n in shapes:
        x = torch.randn(rows, n, requires_grad=True)
        dy = torch.randn(rows, n)
        w = torch.ones(n, requires_grad=True)
        b = torch.zeros(n, requires_grad=True)
        calls = max(1, min(200, 2_000_000 // (rows * n)))

        def step(forward):
            def run():
                for _ in range(calls):
                    x.grad = w.grad = b.grad = None  # as zero_grad(set_to_none=True)
                    forward().backward(dy)
            return run

        medians = interleaved({
            "rms": step(lambda: torch.ops.rmsnorm.rms_norm(x, [n], w, None, 1e-6)),
            "ours_ln": step(lambda: torch.ops.rmsnorm.layer_norm(x, [n], w, b, 1e-5)),
            "torch_ln": step(lambda: TF.layer_norm(x, [n], w, b, 1e-5)),
        }, reps)
        us = {k: v / calls * 1e6 for k, v in medians.items()}
        print(f"| {rows}x{n} | {us['rms']:.1f} | {us['ours_ln']:.1f} | {us['torch_ln']:.1f} | "
              f"{us['ours_ln'] / us['rms']:.2f}x | {us['torch_ln'] / us['rms']:.2f}x |")


def allocation(reps):
    print("\n## Allocation: a functional call against out= at 16384x8192 float32 (ms, medians)")
    x = torch.randn(16384, 8192)
    w = torch.ones(8192)
    out = torch.empty_like(x)
    with torch.no_grad():
        medians = interleaved({
            "functional (allocates y)": lambda: rmsnorm.rms_norm(x, [8192], w, eps=1e-6),
            "out= (reuses y)": lambda: rmsnorm.rms_norm(x, [8192], w, eps=1e-6, out=out),
            "copy of the same bytes": lambda: out.copy_(x),
        }, reps)
    for name, seconds in medians.items():
        print(f"- {name}: {seconds * 1e3:.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="small shapes, few repetitions (a smoke test)")
    parser.add_argument("--only", choices=["steps", "per-call", "ops", "allocation"], action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.reps} repetitions")
    parts = args.only or ["steps", "per-call", "ops", "allocation"]
    if args.quick:
        args.reps = 3
    if "steps" in parts:
        shapes = [(2, 16, 256), (4, 8, 64)] if args.quick else [(4, 2048, 4096), (32, 64, 512)]
        training_steps(shapes, [torch.float32, torch.bfloat16], args.reps)
    if "per-call" in parts:
        per_call(args.reps)
    if "ops" in parts:
        ops_alone([(4, 64)] if args.quick else [(32, 256), (32, 512), (2048, 512), (4096, 4096)], args.reps)
    if "allocation" in parts and not args.quick:
        allocation(args.reps)


if __name__ == "__main__":
    main()
