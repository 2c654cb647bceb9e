"""Time per member of an output family as it grows: 10k against 100k members.

A rule template over a set of N members, ``rule r(i in item): x[i] > 0.5 -> y[i]`` with
``output y[item]: bool``, grounds to N rules deciding N outputs. Everything done with it
should cost about the same per member whatever N (issue 26 item 5: evaluate and predict
grew as N^1.93 -- the decision plan scanned every variable and rule per component -- and
``GreyBox()`` sorted its variables with ``list.index``, 558 s for 200k inputs). Printed:
seconds per member of each step at each N, and the ratio of total times N_large / N_small
(about N_large / N_small = 10 when linear, 100 when quadratic).

Run:  python benchmarks/bench_scale_family.py [--quick]    (--quick: 2k and 20k members)
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import greybox as gb
import greybox.rules as gr

TEXT = """\
set item
input x[item]: real
output y[item]: bool
rule r(i in item) weight 2.0: x[i] > 0.5 -> y[i]
"""


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def measure(n: int) -> dict[str, float]:
    """Seconds of each step for an output family of ``n`` members."""
    kb, t_parse = _timed(lambda: gr.parse(TEXT, sets={"item": list(range(n))}))
    x = np.random.default_rng(0).random((8, n))
    data = kb.families["x"].split(x)
    _, t_evaluate = _timed(lambda: gr.evaluate(kb, data))
    model, t_model = _timed(lambda: gb.GreyBox(kb))
    _, t_predict = _timed(lambda: model.predict(data))
    return {"parse": t_parse, "evaluate": t_evaluate, "GreyBox()": t_model,
            "predict": t_predict}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k and 20k members")
    parser.add_argument("--sizes", type=int, nargs=2, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    small, large = args.sizes or ((2_000, 20_000) if args.quick else (10_000, 100_000))
    results = {n: measure(n) for n in (small, large)}
    steps = list(results[small])
    print("## an output family of N members (8 rows), microseconds per member\n")
    print("| step | " + " | ".join(f"N = {n:,}" for n in results) + f" | ratio {large:,} / "
          f"{small:,} (linear: {large / small:.0f}) |")
    print("|---|---|---|---|")
    for step in steps:
        per = [results[n][step] / n * 1e6 for n in results]
        print(f"| {step} | " + " | ".join(f"{p:.1f}" for p in per)
              + f" | {results[large][step] / results[small][step]:.1f} |")
    total = {n: sum(r.values()) for n, r in results.items()}
    print("| total | " + " | ".join(f"{total[n] / n * 1e6:.1f}" for n in results)
          + f" | {total[large] / total[small]:.1f} |")


if __name__ == "__main__":
    main()
