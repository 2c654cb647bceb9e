"""Throughput of a compiled fuzzy rule model against the same formula written in torch.

The breast-cancer rules (6 rules, 9 learnable thresholds, product t-norm) over 1,000,000
rows, forward pass without gradients, as rows per second. The reference computes the same
smooth comparisons, products, weighted score and sigmoid by hand from the same tensors
(target: greybox / hand-written time <= 1.5). A second line includes reading and checking
the DataFrame (greybox's data validation), for information.

Run:  python benchmarks/bench_fuzzy.py [--rows 1000000] [--repeat 3]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import greybox as gb

RULES = Path(__file__).resolve().parent.parent / "examples" / "breast_cancer.rules"


def make_data(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "mean radius": rng.uniform(5, 30, rows),
        "mean texture": rng.uniform(5, 40, rows),
        "worst area": rng.uniform(100, 4000, rows),
        "worst concave points": rng.uniform(0, 0.3, rows),
        "mean concavity": rng.uniform(0, 0.5, rows),
        "worst texture": rng.uniform(10, 50, rows),
    })


def hand_written(model: gb.GreyBox, x: dict[str, torch.Tensor]) -> torch.Tensor:
    """P(malignant) for the breast-cancer rules, written out by hand."""
    def th(rule, i):
        return model.rules[rule].thresholds[i]

    def w(rule):
        return model.rules[rule].weight

    def scale(col):
        return model.temperature * model.feature_scale[model.feature_names.index(col)]

    def gt(col, t):
        return torch.sigmoid((x[col] - t) / scale(col))

    def lt(col, t):
        return torch.sigmoid((t - x[col]) / scale(col))

    score = (model.decisions["malignant"].bias
             + w("large_irregular") * gt("worst area", th("large_irregular", 0))
             * gt("worst concave points", th("large_irregular", 1))
             + w("concave") * gt("worst concave points", th("concave", 0))
             + w("large") * gt("mean radius", th("large", 0))
             + w("textured") * gt("worst texture", th("textured", 0))
             * gt("mean concavity", th("textured", 1))
             - w("small_smooth") * lt("worst area", th("small_smooth", 0))
             * lt("worst concave points", th("small_smooth", 1))
             - w("regular") * lt("mean concavity", th("regular", 0)))
    return torch.sigmoid(score)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frame = make_data(args.rows)
    model = gb.GreyBox(gb.rules.load(RULES), semantics="product").calibrate(frame).eval()
    batch = model.batch(frame)
    # the reference reads the columns in float32, as a hand-written torch model would (the
    # batch holds real inputs in float64, as predict reads them)
    x32 = {k: v.float() for k, v in batch.values.items()}
    with torch.no_grad():
        ours = model(batch).values["malignant"]
        ref = hand_written(model, x32)
        assert torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())
        t_ref = best_of(lambda: hand_written(model, x32), args.repeat)
        t_ours = best_of(lambda: model(batch).values["malignant"], args.repeat)
        t_full = best_of(lambda: model(frame).values["malignant"], args.repeat)
    rows = args.rows
    print(f"fuzzy (product) forward pass, {rows:,} rows, best of {args.repeat}")
    print(f"{'':38} {'seconds':>9} {'rows/s':>12} {'ratio':>7}")
    print(f"{'hand-written torch (reference)':38} {t_ref:9.3f} {rows / t_ref:12,.0f} {1.0:7.2f}")
    print(f"{'greybox compiled model':38} {t_ours:9.3f} {rows / t_ours:12,.0f} "
          f"{t_ours / t_ref:7.2f}   (target <= 1.5)")
    print(f"{'greybox incl. DataFrame checks':38} {t_full:9.3f} {rows / t_full:12,.0f} "
          f"{t_full / t_ref:7.2f}")


if __name__ == "__main__":
    main()
