#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus (fuzz/corpus): one input per operation,
dtype and layout family, in api_fuzzer.cpp's byte format. Re-run after a
change of that format."""
import os
import random

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus")
os.makedirs(out, exist_ok=True)
rng = random.Random(20261123)
count = 0
for op in range(3):
    for dtype in range(4):
        for kind in range(2):
            for raw in (0, 1):
                flags = 2 | 4 | 8 | (16 if raw else 0) | (1 if dtype else 0)
                rows, n = rng.randrange(1, 5), rng.randrange(0, 40)
                head = [op, flags, kind, rng.randrange(2), dtype, rows, n, rng.randrange(3),
                        rng.randrange(4), rng.randrange(6), rng.randrange(3), rng.randrange(4)]
                body = [rng.randrange(256) for _ in range(4 * 8 * 44 + 16)]
                with open(os.path.join(out, f"seed-{count:03d}"), "wb") as f:
                    f.write(bytes(head + body))
                count += 1
print(f"{count} seeds in {out}")
