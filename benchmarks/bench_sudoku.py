"""Visual sudoku: a training step of ``valid`` under its exact probability against the
product t-norm, ratios measured in the same run.

The model of ``examples/sudoku.py`` (16 neural digits, ``define valid`` = 12
``all_different`` units), a batch of 32 grids, the example's CNN, one torch thread: loss +
backward per step (CPU time of the thread, best of ``--repeat`` runs of ``--steps``
steps). Under ``semantics="probabilistic"`` ``P(valid)`` is exact (summed over the 288
valid grids its crisp parts allow, see greybox/semantics/_logspace.py); the same step
with that route switched off (``MAX_MODELS = 0``) runs the log-space variable elimination
instead (largest table 4^10 per row), timed on a few steps.

Run:  python benchmarks/bench_sudoku.py [--steps 20] [--repeat 3]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import greybox as gb
import greybox.semantics._logspace as logspace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from sudoku import VALIDITY, CellReader, digit_network, load_pools, make_grids  # noqa: E402


def step_ms(semantics: str, steps: int, repeat: int, batch: int = 32) -> float:
    """CPU milliseconds of one loss + backward on ``batch`` grids (best of ``repeat``)."""
    (train_x, train_y), _ = load_pools(0)
    imgs, valid, _ = make_grids(train_x, train_y, batch, 0)
    torch.manual_seed(0)
    model = gb.GreyBox(VALIDITY, {"digit_net": CellReader(digit_network())},
                       semantics=semantics)
    data = model.batch(model.kb.families["img"].split(imgs))

    def run():
        model.loss(data, {"valid": valid}).backward()

    run()    # warm up (the 288 grids are enumerated once per structure)
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(steps):
            run()
        best = min(best, (time.process_time() - start) / steps)
    return 1000 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    product = step_ms("product", args.steps, args.repeat)
    exact = step_ms("probabilistic", args.steps, args.repeat)
    saved = logspace.MAX_MODELS
    logspace.MAX_MODELS = 0
    try:
        eliminated = step_ms("probabilistic", 2, 1)
    finally:
        logspace.MAX_MODELS = saved
    print("| training step, batch 32 | ms (CPU, 1 thread) | ratio to product |")
    print("|---|---|---|")
    print(f"| product t-norm | {product:.1f} | 1.00 |")
    print(f"| exact P(valid), over the 288 grids | {exact:.1f} | {exact / product:.2f} |")
    print(f"| exact P(valid), variable elimination | {eliminated:.1f} | "
          f"{eliminated / product:.2f} |")


if __name__ == "__main__":
    main()
