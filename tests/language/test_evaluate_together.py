"""Rule bodies computed together (a numpy call per operator on a few rows) give exactly
what one body at a time gives: every table, dtype and index."""

import numpy as np
import pandas as pd
import pytest

import greybox.rules as gr
from greybox.rules import _evaluate
from greybox.rules._env import _compiled_bodies

KB = gr.parse("""
input x: real[0, 10]
input k: int 0..9
input kind: {a, b, c}
input opt: optional real
input flag: bool
output o: bool
output g: {lo, mid, hi}
rule r1 weight 1.5: x > 2.5 and k <= 4 -> o
rule r2 weight 0.75: 3 < x and (kind == b and k != 7) -> not o
rule r3 weight 2.0: kind != c -> g = hi
rule r4: x >= 9 or k == 0 -> g = lo
rule r5: opt > 1 and x < 5 -> o
rule r6 weight 0.5: flag and x < 4 -> g = mid
rule r7 weight 1.25: o and k > 2 -> g = mid
constraint c1: kind == a and x < 1 -> not o
""")


def _frame(rows, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.uniform(0, 10, rows), "k": rng.integers(0, 10, rows),
                         "kind": rng.choice(["a", "b", "c"], rows),
                         "opt": np.where(rng.random(rows) < 0.3, np.nan,
                                         rng.uniform(0, 3, rows)),
                         "flag": rng.random(rows) < 0.5},
                        index=pd.Index(rng.permutation(rows) + 100, name="id"))


@pytest.mark.parametrize("rows", [1, 5, 200])
def test_bodies_together_are_the_bodies_one_at_a_time(rows, monkeypatch):
    frame = _frame(rows, rows)
    together = gr.evaluate(KB, frame)
    assert together._run.held is not None   # the fast path was taken, for these rules:
    assert sorted(_compiled_bodies(KB)[0]) == ["r1", "r2", "r3"]
    monkeypatch.setattr(_evaluate, "_BATCH_ROWS", 0)
    alone = gr.evaluate(KB, frame)
    assert alone._run.held is None
    for table in ("bodies", "scores", "decisions", "preferred", "values", "violations",
                  "contributions"):
        pd.testing.assert_frame_equal(getattr(together, table), getattr(alone, table),
                                      check_exact=True)
    pd.testing.assert_series_equal(together.infeasible, alone.infeasible)
    for name in ("o", "g"):
        assert together.code(name).dtype == alone.code(name).dtype
        np.testing.assert_array_equal(together.code(name), alone.code(name))


def test_codes_not_plain_float_fall_back_to_one_body_at_a_time():
    cols = {"x": np.array([3, 1]), "k": np.array([1.0, 2.0]), "kind": np.array([1, 0]),
            "opt": np.array([2.0, 2.0]), gr.engine.missing_key("opt"): np.zeros(2, bool),
            "flag": np.array([True, False])}
    ev = gr.engine.evaluate_codes(KB, cols, n=2)   # x as int64 codes: not batched
    assert ev._run.held is None
    assert ev.bodies["r1"].tolist() == [True, False]
