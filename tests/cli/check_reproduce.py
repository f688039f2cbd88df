#!/usr/bin/env python3
"""Checks a `rmsnorm reproduce --quick` output directory: REPORT.md, a JSON with
every task x variant x seed and finite figures, and the two plots."""
import json
import math
import os
import sys


def fail(message):
    sys.exit(f"check_reproduce: {message}")


def main(out_dir):
    for name in ("REPORT.md", "reproduce.json", "loss_vs_steps.png", "loss_vs_time.png"):
        path = os.path.join(out_dir, name)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            fail(f"{name} missing or empty")
    with open(os.path.join(out_dir, "reproduce.json")) as f:
        doc = json.load(f)
    tasks = {"gru_lm", "transformer_lm", "fashion_mlp"}
    variants = {"none", "layernorm", "rmsnorm", "prmsnorm"}
    seeds = doc["scale"]["seeds"]
    runs = doc["runs"]
    if len(runs) != len(tasks) * len(variants) * seeds:
        fail(f"{len(runs)} runs, expected {len(tasks) * len(variants) * seeds}")
    for r in runs:
        if r["task"] not in tasks or r["variant"] not in variants:
            fail(f"unknown run {r['task']}/{r['variant']}")
        for key in ("median_step_ms", "total_seconds", "valid_loss", "valid_metric"):
            if not (isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0):
                fail(f"{r['task']}/{r['variant']}: {key} = {r[key]!r}")
        if not (len(r["curve_steps"]) == len(r["curve_loss"]) == len(r["curve_seconds"]) > 0):
            fail(f"{r['task']}/{r['variant']}: loss curve incomplete")
        if r["curve_seconds"] != sorted(r["curve_seconds"]):
            fail("wall-clock curve not increasing")
    if len(doc["summaries"]) != len(tasks) * len(variants):
        fail("summaries missing")
    with open(os.path.join(out_dir, "REPORT.md")) as f:
        report = f.read()
    for needed in ("LayerNorm", "RMSNorm", "pRMSNorm", "time saving vs LayerNorm", "norm share", "7%-64%"):
        if needed not in report:
            fail(f"REPORT.md lacks {needed!r}")
    print(f"reproduce output ok: {len(runs)} runs")


if __name__ == "__main__":
    main(sys.argv[1])
