#!/usr/bin/python3
"""Condenses `rmsnorm bench --json` files into issue 15's table: per shape, dtype,
thread count and direction, the copy's and our RMSNorm's ns per row, RMSNorm's
percentage of the same-run copy, pRMSNorm's speedup over RMSNorm, and RMSNorm's
and our LayerNorm's speed against oneDNN's layer normalization (same-run medians).

    scripts/summarize_bench.py docs/bench/cache_avx3.json [more.json ...]
"""
import json
import math
import sys


def ratio(a, b):
    """a / b as "1.23x", or "-" where either was not run."""
    return "-" if math.isnan(a) or math.isnan(b) else f"{a / b:.2f}x"


def main(paths):
    for path in paths:
        doc = json.load(open(path))
        print(f"\n{path}: {doc['machine']['cpu_model']} target {doc['machine']['simd_target']}")
        print("| shape | dtype | threads | direction | copy ns/row | RMSNorm ns/row | RMSNorm % of copy | pRMSNorm speedup | RMSNorm vs oneDNN LN | our LN vs oneDNN LN |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for g in doc["groups"]:
            r = {x["key"]: x for x in g["results"] if "median_ms" in x}
            def t(k): return r[k]["median_ms"] if k in r else float("nan")
            rms, prms, ln, dn, cp = t("ours.rmsnorm"), t("ours.prmsnorm_6.25"), t("ours.layernorm"), t("onednn.layer_norm"), t("ceiling.copy")
            pc = r["ours.rmsnorm"]["percent_of_copy"]
            rows = int(g["shape"].split("x")[0])
            d = "fwd" if g["direction"] == "forward" else "fwd+bwd"
            print(f"| {g['shape']} | {g['dtype'].replace('float','f').replace('bf','bf')} | {g['threads']} | {d} | {cp*1e6/rows:.0f} | {rms*1e6/rows:.0f} | "
                  f"{pc:.0f}% | {ratio(rms, prms)} | {ratio(dn, rms)} | {ratio(dn, ln)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
