#!/usr/bin/env python3
"""Draws `rmsnorm bench --json` output: GB/s against shape (ordered by hidden
size, then rows) per implementation, one panel per dtype x threads x direction,
with the same-bytes copy ceiling drawn as a dashed line.

    python3 scripts/plot_bench.py bench.json bench.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def ordered(values):
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: plot_bench.py BENCH.json OUT.png")
    with open(argv[1]) as f:
        doc = json.load(f)
    if not doc.get("groups"):
        sys.exit("plot_bench.py: the JSON has no groups to plot")
    # One row of panels per dtype x threads, one column per direction.
    row_keys = ordered((g["dtype"], g["threads"]) for g in doc["groups"])
    directions = ordered(g["direction"] for g in doc["groups"])
    fig, axes = plt.subplots(len(row_keys), len(directions), figsize=(7 * len(directions), 3.6 * len(row_keys)),
                             squeeze=False)
    handles = {}
    # One colour per implementation across all panels.
    all_names = ordered(r["name"] for g in doc["groups"] for r in g["results"] if not r["ceiling"])
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {name: palette[k % len(palette)] for k, name in enumerate(all_names)}
    for i, (dtype, threads) in enumerate(row_keys):
        for j, direction in enumerate(directions):
            ax = axes[i, j]
            groups = [g for g in doc["groups"] if (g["dtype"], g["threads"], g["direction"]) == (dtype, threads, direction)]
            groups.sort(key=lambda g: (g["n"], g["rows"]))
            xs = list(range(len(groups)))
            names = ordered(r["name"] for g in groups for r in g["results"] if not r["ceiling"])
            for name in names:
                ys = []
                for g in groups:
                    hit = [r for r in g["results"] if r["name"] == name and "gbs" in r]
                    ys.append(hit[0]["gbs"] if hit else float("nan"))
                style = "-o" if name.startswith("ours") else "--s"
                (line,) = ax.plot(xs, ys, style, label=name, color=colour[name], linewidth=1.5, markersize=4)
                handles.setdefault(name, line)
            (line,) = ax.plot(xs, [g["copy_gbs"] for g in groups], "k:", linewidth=2,
                              label="copy of the same bytes (ceiling)")
            handles.setdefault(line.get_label(), line)
            (line,) = ax.plot(xs, [g["large_copy_gbs"] for g in groups], color="grey", linestyle="-.", linewidth=1,
                              label="copy of 256 MiB (DRAM ceiling)")
            handles.setdefault(line.get_label(), line)
            ax.set_xticks(xs)
            ax.set_xticklabels([f'{g["rows"]}x{g["n"]}' for g in groups], fontsize=8)
            ax.set_xlabel("rows x hidden size n (ordered by n)", fontsize=8)
            ax.set_ylabel("GB/s (bytes read + written)", fontsize=8)
            ax.set_yscale("log")
            ax.set_title(f"{dtype}, {threads} thread(s), {direction}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
    machine = doc.get("machine", {})
    fig.suptitle(f'rmsnorm bench: {machine.get("cpu_model", "?")}, {machine.get("date_utc", "")}', fontsize=10)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.9 / (3.6 * len(row_keys)) + 0.02, 1, 0.97))
    fig.savefig(argv[2], dpi=100)


if __name__ == "__main__":
    main(sys.argv)
