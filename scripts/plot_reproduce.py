#!/usr/bin/env python3
"""Plots `rmsnorm reproduce` output: training loss against steps and against
wall-clock seconds, one panel per task, one line per variant (seed 0; the
other seeds are drawn faintly), as the paper's Figure 1 does.

    python3 scripts/plot_reproduce.py reproduce.json OUT_DIR
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VARIANTS = ["none", "layernorm", "rmsnorm", "prmsnorm"]
COLOURS = {"none": "tab:gray", "layernorm": "tab:blue", "rmsnorm": "tab:red", "prmsnorm": "tab:green"}


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
                                 ("curve_seconds", "wall-clock seconds", "loss_vs_time.png")):
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


if __name__ == "__main__":
    main(sys.argv)
