"""Benchmarks of greybox.rules, as ratios against references measured in the same run.

1. Crisp evaluation of a 50-rule knowledge base over 1,000,000 rows, against the same rules
   written by hand in numpy (target: greybox / hand-written <= 1.5).
2. ``check`` (all Z3 analyses) on the same 50-rule base (target: < 5 s).
3. The cost of one call at small sizes (1 and 64 rows): ``greybox.rules.evaluate`` and a
   ``GreyBox`` model's ``predict`` on the same rules, against the hand-written numpy
   (median of many calls; no target: it shows the fixed cost per call that reasons and
   counterfactuals pay on every check through ``predict``).

Run:  python benchmarks/bench_rules.py [--rows 1000000] [--repeat 3]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import greybox.rules as gr

FEATURES = [f"f{i}" for i in range(10)]
KINDS = ["a", "b", "c", "d"]


def make_rules(n_rules: int, seed: int = 0):
    """Random but reproducible rules: two feature comparisons (sometimes with an enum test)
    concluding approve or not approve."""
    rng = np.random.default_rng(seed)
    spec = []
    for k in range(n_rules):
        i, j = rng.choice(len(FEATURES), 2, replace=False)
        t, u = rng.uniform(0.1, 0.9, 2).round(3)
        kind = KINDS[k % 4] if k % 3 == 0 else None
        positive = bool(rng.random() < 0.5)
        weight = round(float(rng.uniform(0.5, 2.0)), 2)
        spec.append((int(i), float(t), int(j), float(u), kind, positive, weight))
    lines = [f"input {f}: real[0, 1]" for f in FEATURES]
    lines.append("input kind: {" + ", ".join(KINDS) + "}")
    lines.append("output approve: bool")
    for k, (i, t, j, u, kind, positive, weight) in enumerate(spec):
        body = f"{FEATURES[i]} > ~{t} and {FEATURES[j]} < {u}"
        if kind:
            body += f" and kind == {kind}"
        head = "approve" if positive else "not approve"
        lines.append(f"rule r{k} weight {weight}: {body} -> {head}")
    lines.append("constraint low: f0 < 0.05 and f1 < 0.05 -> not approve")
    return gr.parse("\n".join(lines)), spec


def hand_written(frame: pd.DataFrame, spec) -> np.ndarray:
    """The same rules in plain numpy: bodies, weighted score, decision, the constraint."""
    x = {f: frame[f].to_numpy() for f in FEATURES}
    kind = frame["kind"].to_numpy()
    kind_is = {k: kind == k for k in KINDS}
    # scores summed exactly, as greybox does (float64 sums of the weights put 20 rows in
    # 200,000 on the wrong side of 0): each weight as an integer number of 2**-K
    grain = max(w.as_integer_ratio()[1].bit_length() - 1 for *_, w in spec)
    assert sum(abs(w) for *_, w in spec) * 2.0 ** grain < 2.0 ** 62
    score = np.zeros(len(frame), np.int64)
    for i, t, j, u, k, positive, weight in spec:
        body = (x[FEATURES[i]] > t) & (x[FEATURES[j]] < u)
        if k:
            body &= kind_is[k]
        units = weight.as_integer_ratio()[0] << (grain - weight.as_integer_ratio()[1].bit_length() + 1)
        score += (units if positive else -units) * body
    decision = score > 0
    decision &= ~((x["f0"] < 0.05) & (x["f1"] < 0.05))
    return decision


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    kb, spec = make_rules(args.rules)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f: rng.random(args.rows) for f in FEATURES})
    frame["kind"] = rng.choice(KINDS, args.rows)

    t_hand, expected = best_of(lambda: hand_written(frame, spec), args.repeat)
    t_gb, ev = best_of(lambda: gr.evaluate(kb, frame), args.repeat)
    same = bool(np.array_equal(ev.decisions["approve"].to_numpy(), expected))
    t_check, report = best_of(lambda: gr.check(kb), 1)

    rows = [
        (f"crisp evaluate, {args.rules} rules x {args.rows} rows", t_hand, t_gb,
         t_gb / t_hand, "<= 1.5x", same),
        (f"check (all analyses), {args.rules} rules", float("nan"), t_check, float("nan"),
         "< 5 s", len(report.errors) == 0),
    ]
    print(f"{'benchmark':<44} {'reference s':>11} {'greybox s':>10} {'ratio':>7} "
          f"{'target':>8}  same answer")
    for name, ref, ours, ratio, target, ok in rows:
        print(f"{name:<44} {ref:>11.3f} {ours:>10.3f} {ratio:>7.2f} {target:>8}  {ok}")
    print(f"\ncheck found: {len(report.errors)} errors, {len(report.warnings)} warnings, "
          f"{len(report.infos)} infos")
    small(kb, spec, frame)


def per_call(fn, calls: int = 200) -> float:
    """Median seconds of one call (after one warm-up call)."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def small(kb, spec, frame: pd.DataFrame) -> None:
    """Section 3: milliseconds per call at 1 and 64 rows."""
    import torch

    import greybox as gb

    torch.set_num_threads(1)
    model = gb.GreyBox(kb, semantics="product")   # untrained: decides as the rules say
    print(f"\n{'per call, ms':<24} {'hand-written':>12} {'evaluate':>9} {'ratio':>7} "
          f"{'predict':>8} {'ratio':>7}")
    for n in (1, 64):
        sub = frame.iloc[:n].reset_index(drop=True)
        hand = per_call(lambda sub=sub: hand_written(sub, spec))
        ev = per_call(lambda sub=sub: gr.evaluate(kb, sub))
        pred = per_call(lambda sub=sub: model.predict(sub))
        print(f"{f'{n} row(s)':<24} {1000 * hand:>12.3f} {1000 * ev:>9.3f} {ev / hand:>7.1f} "
              f"{1000 * pred:>8.3f} {pred / hand:>7.1f}")


if __name__ == "__main__":
    main()
