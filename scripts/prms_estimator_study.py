#!/usr/bin/python3
"""How good is pRMSNorm's estimate? r_k / r_n on synthetic rows (issue 13, the open question).

pRMSNorm divides by r_k = sqrt(mean of the first k squares + eps) instead of r_n (all n). If a
row's scale is spread evenly, r_k / r_n is near 1 with a spread of about 1/sqrt(2k). Large
language models' activations are not spread evenly: a few channels, at fixed positions, carry
values tens to hundreds of times the rest ("outlier channels"). Then the estimate depends on where
those channels are, not on the data.

    /usr/bin/python3 scripts/prms_estimator_study.py [--n 4096] [--rows 2048] [--out DIR]

Prints quantiles of r_k / r_n per case and p, and writes DIR/prms_estimator.png and
DIR/prms_estimator.json.
"""
import argparse
import json
import math
from pathlib import Path

import torch

P_VALUES = [0.0625, 0.125, 0.25, 0.5]
QUANTILES = [0.01, 0.5, 0.99]


def gaussian(rows, n, g):
    return torch.randn(rows, n, generator=g, dtype=torch.float64)


def with_outlier_channels(rows, n, g, channels, magnitude):
    """N(0, 1) rows plus a few fixed channels of magnitude times the rest, sign varying by row."""
    x = gaussian(rows, n, g)
    signs = torch.randint(0, 2, (rows, len(channels)), generator=g, dtype=torch.float64) * 2 - 1
    x[:, channels] = magnitude * signs * (1 + 0.1 * torch.randn(rows, len(channels), generator=g, dtype=torch.float64))
    return x


def ratio(x, p, eps=1e-6):
    n = x.shape[-1]
    k = math.ceil(n * p)
    r_k = torch.sqrt(x[:, :k].pow(2).mean(-1) + eps)
    r_n = torch.sqrt(x.pow(2).mean(-1) + eps)
    return r_k / r_n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="prms-estimator-out")
    args = parser.parse_args()
    n, rows = args.n, args.rows
    g = torch.Generator().manual_seed(args.seed)
    # Six outlier channels (LLM.int8() reports a handful per layer in large models), 50x the rest:
    # placed past every k studied, inside the first 6.25%, and spread over the row.
    spread = [int(n * f) for f in (0.03, 0.2, 0.41, 0.58, 0.77, 0.93)]
    cases = {
        "N(0,1), no outliers": gaussian(rows, n, g),
        "6 outlier channels x50, all past k (last 2%)": with_outlier_channels(rows, n, g, list(range(n - 6, n)), 50.0),
        "6 outlier channels x50, in the first 1%": with_outlier_channels(rows, n, g, list(range(6)), 50.0),
        "6 outlier channels x50, spread over the row": with_outlier_channels(rows, n, g, spread, 50.0),
    }
    results = {}
    print(f"r_k / r_n over {rows} rows of n = {n}; quantiles {QUANTILES}")
    print("| case | p | k | 1% | median | 99% |")
    print("|---|---|---|---|---|---|")
    for name, x in cases.items():
        results[name] = {}
        for p in P_VALUES:
            r = ratio(x, p)
            q = torch.quantile(r, torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
            results[name][str(p)] = {"k": math.ceil(n * p), "quantiles": q}
            print(f"| {name} | {p:.2%} | {math.ceil(n * p)} | {q[0]:.3f} | {q[1]:.3f} | {q[2]:.3f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prms_estimator.json").write_text(json.dumps({"n": n, "rows": rows, "results": results}, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not found: no plot")
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in cases:
        medians = [results[name][str(p)]["quantiles"][1] for p in P_VALUES]
        low = [results[name][str(p)]["quantiles"][0] for p in P_VALUES]
        high = [results[name][str(p)]["quantiles"][2] for p in P_VALUES]
        ax.errorbar([100 * p for p in P_VALUES], medians,
                    yerr=[[m - lo for m, lo in zip(medians, low)], [hi - m for m, hi in zip(medians, high)]],
                    marker="o", capsize=3, label=name)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([100 * p for p in P_VALUES], [f"{100 * p:g}%" for p in P_VALUES])
    ax.set_xlabel("p (the share of the row the estimate reads)")
    ax.set_ylabel("r_k / r_n (median, 1%-99%)")
    ax.set_title(f"pRMSNorm's estimate against the full RMS, n = {n}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "prms_estimator.png", dpi=120)
    print(f"wrote {out / 'prms_estimator.png'} and {out / 'prms_estimator.json'}")


if __name__ == "__main__":
    main()
