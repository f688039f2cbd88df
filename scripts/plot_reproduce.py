#!/usr/bin/env python3
"""Plots `rmsnorm reproduce` output: training loss against steps and against
each model's own training seconds, one panel per task, one line per variant
(seed 0; the other seeds are drawn faintly), as the paper's Figure 1 does;
and pRMSNorm's estimate r_k / r_n against p, at the trained models' norm
sites and on synthetic rows with outlier channels (prms_estimator.png).

    python3 scripts/plot_reproduce.py reproduce.json OUT_DIR
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VARIANTS = ["none", "layernorm", "rmsnorm", "prmsnorm", "l2norm"]
COLOURS = {"none": "tab:gray", "layernorm": "tab:blue", "rmsnorm": "tab:red", "prmsnorm": "tab:green",
           "l2norm": "tab:purple"}


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: plot_reproduce.py reproduce.json OUT_DIR")
    with open(argv[1]) as f:
        doc = json.load(f)
    runs = doc["runs"]
    if not runs:
        sys.exit("plot_reproduce.py: no runs in the JSON")
    tasks = []
    for r in runs:
        if r["task"] not in tasks:
            tasks.append(r["task"])
    for x_key, x_label, name in (("curve_steps", "training step", "loss_vs_steps.png"),
                                 ("curve_seconds", "the model's own training seconds", "loss_vs_time.png")):
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for variant in VARIANTS:
                for r in (r for r in runs if r["task"] == task and r["variant"] == variant):
                    first = r["seed"] == 0
                    ax.plot(r[x_key], r["curve_loss"], color=COLOURS[variant], alpha=1.0 if first else 0.25,
                            linewidth=1.6 if first else 0.8, label=r["variant_name"] if first else None)
            ax.set_title(task, fontsize=10)
            ax.set_xlabel(x_label)
            ax.set_ylabel("training loss (nats)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        machine = doc.get("machine", {})
        fig.suptitle(f'rmsnorm reproduce ({doc["scale"]["name"]}), {machine.get("cpu_model", "?")}', fontsize=10)
        fig.tight_layout()
        fig.savefig(os.path.join(argv[2], name), dpi=100)
    plot_estimator(doc, os.path.join(argv[2], "prms_estimator.png"))


def plot_estimator(doc, path):
    """One panel per task (its RMSNorm model's norm sites) and one for the
    synthetic rows: the median of r_k / r_n against p, bars from 5% to 95%."""
    estimator = doc["estimator"]
    panels = []
    for task in dict.fromkeys(s["task"] for s in estimator["sites"]):
        sites = [s for s in estimator["sites"] if s["task"] == task and s["variant"] == "rmsnorm"]
        panels.append((f"{task}: RMSNorm model's norm sites", [(s["site"], s["by_p"]) for s in sites]))
    synthetic = estimator["synthetic"]
    panels.append((f'synthetic rows, n = {synthetic["n"]}', [(c["name"], c["by_p"]) for c in synthetic["cases"]]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels):
        for offset, (label, by_p) in enumerate(lines):
            levels = by_p[0]["quantile_levels"] if by_p else []
            if not by_p or not by_p[0]["quantiles"]:
                continue
            low, mid, high = levels.index(0.05), levels.index(0.5), levels.index(0.95)
            # Spread the lines a little along x so their bars do not overlap.
            xs = [100 * b["p"] * (1 + 0.04 * (offset - len(lines) / 2)) for b in by_p]
            medians = [b["quantiles"][mid] for b in by_p]
            lows = [m - b["quantiles"][low] for m, b in zip(medians, by_p)]
            highs = [b["quantiles"][high] - m for m, b in zip(medians, by_p)]
            ax.errorbar(xs, medians, yerr=[lows, highs], marker="o", capsize=2, linewidth=1, label=label)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        studied = estimator["studied_p"]
        ax.set_xticks([100 * p for p in studied])
        ax.set_xticklabels([f"{100 * p:g}%" for p in studied])
        ax.set_xlabel("p (the share of the row the estimate reads)")
        ax.set_ylabel("r_k / r_n (median, 5%-95%)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main(sys.argv)
