#!/usr/bin/env python3
"""Checks the structure of `rmsnorm bench --json` output and that every
correctness check passed. Asserts nothing about speed.

    check_bench_json.py BENCH.json EXPECTED_SHAPE DTYPE[,DTYPE...] [SIMD_TARGET]

With SIMD_TARGET (a run with --target), the machine description must name it,
and oneDNN's instruction set must be capped at it where oneDNN is built in.
"""
import json
import math
import sys


def fail(message):
    sys.exit(f"check_bench_json: {message}")


def main(argv):
    path, shape, dtypes = argv[1], argv[2], argv[3].split(",")
    with open(path) as f:
        doc = json.load(f)
    for key in ("tool", "machine", "settings", "groups", "all_checks_passed"):
        if key not in doc:
            fail(f"missing top-level key {key!r}")
    for key in ("cpu_model", "logical_cpus", "simd_target", "rmsnorm_version", "date_utc"):
        if key not in doc["machine"]:
            fail(f"machine description lacks {key!r}")
    if len(argv) > 4 and doc["machine"]["simd_target"] != argv[4]:
        fail(f"simd_target {doc['machine']['simd_target']!r}, expected the forced {argv[4]!r}")
    # oneDNN is capped at the forced target's instruction set (AVX2, SSE4).
    if len(argv) > 4 and doc["machine"].get("onednn_version") is not None:
        want = {"AVX2": "avx2", "SSE4": "sse41"}.get(argv[4])
        if doc["machine"].get("onednn_isa_cap") != want:
            fail(f"onednn_isa_cap {doc['machine'].get('onednn_isa_cap')!r}, expected {want!r} for {argv[4]}")
    if doc["all_checks_passed"] is not True:
        fail("all_checks_passed is not true")
    groups = doc["groups"]
    seen = {(g["dtype"], g["direction"]) for g in groups}
    for dtype in dtypes:
        for direction in ("forward", "forward+backward"):
            if (dtype, direction) not in seen:
                fail(f"no group for {dtype} {direction}")
    ours_checked = 0
    for g in groups:
        if g["shape"] != shape:
            fail(f"unexpected shape {g['shape']}")
        if not (g["copy_gbs"] > 0 and g["large_copy_gbs"] > 0):
            fail(f"ceilings missing in {g['shape']} {g['dtype']}")
        keys = {r["key"] for r in g["results"]}
        for needed in ("ceiling.copy", "ceiling.large_copy", "ours.rmsnorm", "ours.prmsnorm_6.25", "ours.layernorm",
                       "ours.rmsnorm_eps_outside", "ours.fused_add_rmsnorm"):
            if needed not in keys:
                fail(f"{needed} missing from {g['dtype']} {g['direction']}")
        for r in g["results"]:
            if "unsupported" in r:
                if not r["unsupported"]:
                    fail(f"{r['key']}: empty reason for not running")
                continue
            for key in ("median_ms", "gbs", "bytes", "sample_ms", "percent_of_copy", "speedup_vs"):
                if key not in r:
                    fail(f"{r['key']} lacks {key!r}")
            if not (r["median_ms"] > 0 and math.isfinite(r["gbs"]) and r["gbs"] > 0):
                fail(f"{r['key']}: non-positive time or bandwidth")
            if len(r["sample_ms"]) != doc["settings"]["repetitions"]:
                fail(f"{r['key']}: {len(r['sample_ms'])} samples, expected {doc['settings']['repetitions']}")
            rows = int(g["shape"].split("x")[0])
            if r["key"] != "ceiling.large_copy":
                expected_ns = r["median_ms"] * 1e6 / rows
                if not math.isclose(r.get("ns_per_row", -1), expected_ns, rel_tol=1e-9):
                    fail(f"{r['key']}: ns_per_row {r.get('ns_per_row')} is not median_ms / rows = {expected_ns}")
            if r["ceiling"]:
                continue
            check = r.get("check")
            if not check or check["passed"] is not True:
                fail(f"{r['key']} in {g['dtype']} {g['direction']}: correctness check missing or failed")
            if not check["y_relative_error"] <= check["tolerance"]:
                fail(f"{r['key']}: y error above tolerance but marked passed")
            if g["direction"] == "forward+backward" and check["dx_relative_error"] is None:
                fail(f"{r['key']}: dx not checked in forward+backward")
            if r["family"] == "ours":
                ours_checked += 1
    if ours_checked == 0:
        fail("no implementation of ours was checked")
    print(f"bench JSON ok: {len(groups)} groups, {ours_checked} checked results of ours")


if __name__ == "__main__":
    main(sys.argv)
