#!/usr/bin/env python3
"""Checks a `rmsnorm reproduce --quick` output directory: REPORT.md, a JSON with
every task x variant x seed, timing for every (task, variant, setting) with
finite figures, the estimator study, and the three plots."""
import json
import math
import os
import sys

TASK_VARIANTS = {
    "gru_lm": {"none", "layernorm", "rmsnorm", "prmsnorm", "l2norm"},
    "transformer_lm": {"none", "layernorm", "rmsnorm", "prmsnorm"},
    "fashion_cnn": {"none", "layernorm", "rmsnorm", "prmsnorm"},
}
SETTINGS = ("framework", "native", "fused")


def fail(message):
    sys.exit(f"check_reproduce: {message}")


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def main(out_dir):
    for name in ("REPORT.md", "reproduce.json", "loss_vs_steps.png", "loss_vs_time.png", "prms_estimator.png"):
        path = os.path.join(out_dir, name)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            fail(f"{name} missing or empty")
    with open(os.path.join(out_dir, "reproduce.json")) as f:
        doc = json.load(f)
    seeds = doc["scale"]["seeds"]
    runs = doc["runs"]
    expected = sum(len(v) for v in TASK_VARIANTS.values()) * seeds
    if len(runs) != expected:
        fail(f"{len(runs)} runs, expected {expected}")
    for r in runs:
        if r["variant"] not in TASK_VARIANTS.get(r["task"], set()):
            fail(f"unknown run {r['task']}/{r['variant']}")
        for key in ("train_seconds", "valid_loss", "valid_metric"):
            if not positive(r[key]):
                fail(f"{r['task']}/{r['variant']}: {key} = {r[key]!r}")
        if not (len(r["curve_steps"]) == len(r["curve_loss"]) == len(r["curve_seconds"]) > 0):
            fail(f"{r['task']}/{r['variant']}: loss curve incomplete")
        if r["curve_seconds"] != sorted(r["curve_seconds"]):
            fail("training-time curve not increasing")
        for setting in SETTINGS:
            t = r["times"][setting]
            if not t["step_ms"] or not all(positive(x) for x in t["step_ms"]):
                fail(f"{r['task']}/{r['variant']}/{setting}: no timed steps or a bad one")
            if len(t["norm_ms"]) != len(t["step_ms"]):
                fail(f"{r['task']}/{r['variant']}/{setting}: norm timings missing")
            for norm, step in zip(t["norm_ms"], t["step_ms"]):
                has_norm = r["variant"] != "none"
                if (norm > 0) != has_norm or norm > step:
                    fail(f"{r['task']}/{r['variant']}/{setting}: norm time {norm} ms of a {step} ms step")
    timing = {(t["task"], t["variant"], t["setting"]) for t in doc["timing"]}
    for task, variants in TASK_VARIANTS.items():
        for variant in variants:
            for setting in SETTINGS:
                if (task, variant, setting) not in timing:
                    fail(f"no timing summary for {task}/{variant}/{setting}")
    quality = {(q["task"], q["variant"]) for q in doc["quality"]}
    if len(quality) != sum(len(v) for v in TASK_VARIANTS.values()):
        fail("quality summaries missing")
    sites = doc["estimator"]["sites"]
    for task in TASK_VARIANTS:
        for variant in ("rmsnorm", "prmsnorm"):
            mine = [s for s in sites if s["task"] == task and s["variant"] == variant]
            if not mine:
                fail(f"no estimator study for {task}/{variant}")
            for s in mine:
                if len(s["by_p"]) != len(doc["estimator"]["studied_p"]) or not all(b["rows"] > 0 for b in s["by_p"]):
                    fail(f"estimator study of {task}/{variant}/{s['site']} incomplete")
    cases = doc["estimator"]["synthetic"]["cases"]
    if len(cases) != 4:
        fail("synthetic estimator cases missing")
    # With six channels at 50x among the first k, the first-k estimate is far too large at every p.
    first = next(c for c in cases if "the first 6" in c["name"])
    if not all(b["quantiles"][3] > 1.2 for b in first["by_p"]):
        fail("the outliers-first case does not show the estimate's bias")
    with open(os.path.join(out_dir, "REPORT.md")) as f:
        report = f.read()
    for needed in ("LayerNorm", "RMSNorm", "pRMSNorm", "L2-Norm", "framework", "native", "fused",
                   "The paper's figures beside this run", "norm share of step", "r_k / r_n", "24.7%"):
        if needed not in report:
            fail(f"REPORT.md lacks {needed!r}")
    print(f"reproduce output ok: {len(runs)} runs")


if __name__ == "__main__":
    main(sys.argv[1])
