#!/usr/bin/python3
"""Same-run A/B of two builds' `rmsnorm bench`: runs A, B, A, B, ... in turn
with the same arguments, and prints, per case, the median over rounds of each
build's median time and the ratio B/A (below 1: B is faster). Alternating
rounds spread a shared machine's noise over both builds.

  scripts/ab_bench.py OLD/tools/rmsnorm NEW/tools/rmsnorm --rounds 5 -- \\
      --no-default-shapes --shape 32x4096 --dtype f32 --threads 1 --only ours

Only /usr/bin/python3's standard library is needed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run(binary, bench_args, path):
    subprocess.run([binary, "bench", *bench_args, "--json", path], check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        data = json.load(f)
    if not data.get("all_checks_passed", False):
        sys.exit(f"{binary}: a correctness check failed; figures from it mean nothing")
    times = {}
    for group in data["groups"]:
        case = f'{group["shape"]} {group["dtype"]} {group["threads"]}t {group["direction"]}'
        for result in group["results"]:
            if result.get("ceiling") or "median_ms" not in result:  # ceilings, unsupported cases
                continue
            times[(case, result["name"])] = result["median_ms"]
    return times, data["machine"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="the baseline rmsnorm binary")
    parser.add_argument("b", help="the candidate rmsnorm binary")
    parser.add_argument("--rounds", type=int, default=5)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    bench_args = argv[split + 1:]  # after --: arguments for `rmsnorm bench`
    if args.rounds < 1:
        sys.exit("--rounds: expected at least 1")
    samples = {"a": {}, "b": {}}
    machine = None
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for side in ("a", "b"):
                times, machine = run(getattr(args, side), bench_args, os.path.join(scratch, f"{side}.json"))
                for key, ms in times.items():
                    samples[side].setdefault(key, []).append(ms)
            print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    print(f"A = {args.a}\nB = {args.b}\nmachine: {json.dumps(machine)}")
    print(f"{args.rounds} alternating rounds; each figure is the median over rounds of the bench's own median")
    print(f'{"case":34} {"implementation":34} {"A ms":>10} {"B ms":>10} {"B/A":>6}')
    for key in sorted(set(samples["a"]) & set(samples["b"])):
        a = statistics.median(samples["a"][key])
        b = statistics.median(samples["b"][key])
        print(f"{key[0]:34} {key[1]:34} {a:10.4f} {b:10.4f} {b / a:6.3f}")


if __name__ == "__main__":
    main()
