"""Explanations: overhead against Captum alone, and the speed of formal reasons.

1. ``explain()`` with integrated gradients on the digits-addition model (N=1, two images
   per row, the example's CNN) against Captum's ``IntegratedGradients`` alone on the same
   network, the same images, steps and batch (target: explain / Captum <= 1.3). Parameter
   attributions are off here (they are a different computation with no Captum-alone
   equivalent) and timed on their own line.
2. Median milliseconds per ``reason()`` and ``counterfactual()`` on the breast-cancer model
   and on a 50-rule credit-style model (targets: under 50 ms and 200 ms).
3. Input-level queries through a ReLU network of growing width, Z3 against the MILP
   backend (HiGHS): seconds per counterfactual (L1) and per verification of a property
   that holds (the whole input space must be covered).

Run:  python benchmarks/bench_explain.py [--rows 256] [--repeat 3]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE))
from bench_rules import FEATURES, KINDS, make_rules  # noqa: E402
from digits_addition import addition_rules, digit_network, load_pools, make_examples  # noqa: E402

import greybox as gb  # noqa: E402


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def overhead(rows: int, repeat: int) -> None:
    (tx, ty), _ = load_pools(0)
    data, _ = make_examples(tx, ty, 1, rows, 0)
    torch.manual_seed(0)
    net = digit_network().eval()
    model = gb.GreyBox(addition_rules(1), {"digit": net}).eval()

    def captum_alone():
        ig = IntegratedGradients(net)
        for key in ("a0_img", "b0_img"):
            x = data[key]
            with torch.no_grad():
                target = net(x).argmax(1)
            ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=50,
                         return_convergence_delta=True)

    def ours():
        gb.explain.explain(model, data, parameters=False)

    def params():
        gb.explain.explain(model, {k: v[:16] for k, v in data.items()}, parameters=True)

    captum_alone()
    ours()
    t_ref, t_ours = best_of(captum_alone, repeat), best_of(ours, repeat)
    t_params = best_of(params, 1)
    print(f"explain() on {rows} rows (2 images each), integrated gradients, 50 steps")
    print(f"{'':44} {'seconds':>8} {'ratio':>6}")
    print(f"{'Captum IntegratedGradients alone (reference)':44} {t_ref:8.3f} {1.0:6.2f}")
    print(f"{'greybox explain(parameters=False)':44} {t_ours:8.3f} {t_ours / t_ref:6.2f}"
          "   (target <= 1.3)")
    print(f"{'greybox explain(), 16 rows, with parameters':44} {t_params:8.3f}")
    print()


def _median_ms(fn, rows):
    times = []
    for r in rows:
        t0 = time.perf_counter()
        fn(r)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def formal(rows: int) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, (data.target == 0).to_numpy()
    cancer = gb.GreyBox(gb.rules.load(HERE.parent / "examples" / "breast_cancer.rules"),
                        semantics="product")
    cancer.fit(X, {"malignant": y}, epochs=3, progress=False)
    cancer_batch = cancer.batch(X.iloc[:rows])

    kb, _ = make_rules(50)
    credit = gb.GreyBox(kb, semantics="product")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f: rng.uniform(0, 1, rows) for f in FEATURES})
    frame["kind"] = rng.choice(KINDS, rows)
    credit_batch = credit.batch(frame)

    print(f"formal reasons, median over {rows} rows")
    print(f"{'':34} {'reason ms':>10} {'counterfactual ms':>18}")
    for name, model, batch in (("breast cancer (6 rules)", cancer, cancer_batch),
                               ("credit-style (50 rules)", credit, credit_batch)):
        r_ms = _median_ms(lambda r, m=model, b=batch: gb.explain.reason(m, b, r),
                          range(batch.n))
        c_ms = _median_ms(lambda r, m=model, b=batch: gb.explain.counterfactual(m, b, r),
                          range(batch.n))
        print(f"{name:34} {r_ms:10.1f} {c_ms:18.1f}   (targets < 50 and < 200)")


#: holds for every input: the solver has to cover the whole space through the network
PROPERTY = ("reliable and `years at address` > 3 and employment == unemployed "
            "and age >= 18 -> approve")


def backends(widths, rows: int, timeout: float) -> None:
    from greybox.errors import SolverError

    kb = gb.rules.parse((HERE.parent / "examples" / "credit.rules").read_text().replace(
        "input `years at address`: real ", "input `years at address`: real[0, 100] "))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 90, rows),
                          "income": rng.uniform(0, 100000, rows),
                          "debt_ratio": rng.uniform(0, 2, rows),
                          "employment": rng.choice(["employed", "self_employed", "unemployed",
                                                    "retired"], rows),
                          "years at address": rng.uniform(0, 30, rows)})
    print(f"input level through a Linear-ReLU-Linear network, {rows} rows, timeout {timeout:g} s")
    print(f"{'ReLUs':>6} {'z3 cf s':>9} {'milp cf s':>10} {'z3 verify s':>12} "
          f"{'milp verify s':>14} {'speed-up':>9}")
    for width in widths:
        torch.manual_seed(width)
        net = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU(),
                                  torch.nn.Linear(width, 1))
        model = gb.GreyBox(kb, {"applicant_net": net}, semantics="product")
        batch = model.batch(frame)
        cells = {}
        for backend in ("z3", "milp"):
            try:
                t0 = time.perf_counter()
                for r in range(rows):
                    gb.explain.counterfactual(model, batch, r, level="input", backend=backend,
                                              minimize="l1", timeout=timeout)
                cells[backend, "cf"] = (time.perf_counter() - t0) / rows
            except SolverError:
                cells[backend, "cf"] = float("inf")
            try:
                t0 = time.perf_counter()
                gb.explain.verify(model, PROPERTY, level="input", backend=backend,
                                  timeout=timeout)
                cells[backend, "verify"] = time.perf_counter() - t0
            except SolverError:
                cells[backend, "verify"] = float("inf")

        def show(x):
            return "timeout" if x == float("inf") else f"{x:.3f}"

        speed = cells["z3", "cf"] / cells["milp", "cf"]
        print(f"{width:6d} {show(cells['z3', 'cf']):>9} {show(cells['milp', 'cf']):>10} "
              f"{show(cells['z3', 'verify']):>12} {show(cells['milp', 'verify']):>14} "
              f"{speed:8.1f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--formal-rows", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="+", default=[4, 8, 16, 24, 32])
    parser.add_argument("--backend-rows", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    overhead(args.rows, args.repeat)
    formal(args.formal_rows)
    print()
    backends(args.widths, args.backend_rows, args.timeout)


if __name__ == "__main__":
    main()
