"""Hostile inputs to crisp evaluation (issue 11, items 9 and 10): exact arithmetic where
float64 would round, large int domains without enumerating them."""

import operator
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import greybox.rules as gr

# ------------------------------------------------------------------ exact arithmetic

CANCEL = """
input x: int 0..100
define z: int 0..1000 = 3000000000000000 * x - 2999999999999999 * x
output y: bool
rule r: z >= 9 -> y
"""

HUGE_WEIGHTS = """
input x: int 0..100
output y: bool
rule a weight 1e16: x >= 0 -> y
rule b weight 1: x >= 0 -> y
rule c weight 1e16: x >= 0 -> not y
"""


def test_integer_define_is_computed_exactly():
    """3000000000000000 * 9 - 2999999999999999 * 9 is 9 (float64 says 8)."""
    kb = gr.parse(CANCEL)
    ev = gr.evaluate(kb, {"x": list(range(101))})
    assert ev.values["z"].tolist() == list(range(101))
    assert ev.decisions["y"].tolist() == [x >= 9 for x in range(101)]
    assert gr.entails(kb, "x == 9 -> y").holds
    assert gr.entails(kb, "y <-> x >= 9").holds


def test_define_leaving_its_type_is_reported_with_its_exact_value():
    kb = gr.parse(CANCEL.replace("int 0..1000", "int 0..50"))
    with pytest.raises(gr.DataError, match=r"defined variable 'z': 51 at row 51 is outside int 0\.\.50"):
        gr.evaluate(kb, {"x": list(range(101))})


def test_weights_are_added_exactly():
    """1e16 + 1 - 1e16 is 1 (float64 says 0): y is True, as Z3 proves."""
    kb = gr.parse(HUGE_WEIGHTS)
    ev = gr.evaluate(kb, {"x": [0, 50]})
    assert ev.decisions["y"].tolist() == [True, True]
    assert ev.scores["y"].tolist() == [1.0, 1.0]
    assert gr.entails(kb, "y").holds


def test_per_row_bias_is_added_exactly():
    kb = gr.parse(HUGE_WEIGHTS.replace("rule b weight 1: x >= 0 -> y\n", ""))
    ev = gr.evaluate(kb, {"x": [0, 1, 2]}, bias={"y": np.array([1.0, -1.0, 1e-300])})
    assert ev.decisions["y"].tolist() == [True, False, True]


def test_per_row_float64_bias_is_added_exactly():
    """Biases with full float64 mantissas next to weights of 1e16: too fine for int64
    grains, so float64 scores with an error bound decide, and the rows the bound cannot
    settle are recomputed exactly. The decision is the sign of the bias."""
    kb = gr.parse("input x: int 0..100\noutput y: bool\n"
                  "rule a weight 1e16: x >= 0 -> y\nrule c weight 1e16: x >= 0 -> not y\n"
                  "rule d weight 0.1: x >= 50 -> y\n")
    rng = np.random.default_rng(0)
    b = rng.standard_normal(2000) * 1e-3
    b[:20] = -0.1
    x = rng.integers(0, 101, 2000)
    ev = gr.evaluate(kb, {"x": x}, bias={"y": b})
    exact = [Fraction(v) + (Fraction(0.1) if xx >= 50 else 0) > 0 for v, xx in zip(b, x)]
    assert ev.decisions["y"].tolist() == exact


@pytest.mark.parametrize("op, expected", [(">", True), ("==", False), ("<=", False)])
def test_real_arithmetic_compares_exactly(op, expected):
    """0.1*x + 0.2*x exceeds 0.3*x for every x > 0 (the binary values of 0.1, 0.2 and 0.3
    are what Z3 reads); float64 rounds both sides and finds them equal at x = 5."""
    kb = gr.parse(f"input x: int 0..200\ninput r: real[0, 100]\noutput y: bool\n"
                  f"output w: bool\n"
                  f"rule a: 0.1 * x + 0.2 * x {op} 0.3 * x -> y\n"
                  f"rule b: 0.1 * r + 0.2 * r {op} 0.3 * r -> w\n")
    xs = list(range(1, 201))
    rs = [x / 7 for x in xs]
    ev = gr.evaluate(kb, {"x": xs, "r": rs})
    assert ev.decisions["y"].tolist() == [expected] * len(xs)
    compare = {">": operator.gt, "==": operator.eq, "<=": operator.le}[op]
    exact = [compare(Fraction(0.1) * Fraction(r) + Fraction(0.2) * Fraction(r),
                     Fraction(0.3) * Fraction(r)) for r in rs]
    assert ev.decisions["w"].tolist() == exact
    assert gr.entails(kb, f"x >= 1 -> ({'y' if expected else 'not y'})").holds


def test_real_define_overflowing_float64_is_exact():
    kb = gr.parse("input x: real[0, 10]\ndefine d: real = 1e300 * x * 1e300 - 1e300 * x * 1e300 + x\n"
                  "output y: bool\nrule r: d > 4 -> y\n")
    ev = gr.evaluate(kb, {"x": [1.0, 5.0]})
    assert ev.decisions["y"].tolist() == [False, True]
    assert ev.holds("d == x").tolist() == [True, True]


@pytest.mark.parametrize("value, match", [
    (2 ** 53 + 1, r"column 'x': 9007199254740993 at row 1 has no exact float64 value"),
    (10 ** 400, r"column 'x': an integer of about 401 digits at row 1 has no exact float64"),
], ids=["2**53+1", "10**400"])
def test_integers_float64_cannot_hold_are_refused(value, match):
    kb = gr.parse("input x: real\noutput y: bool\nrule r: x > 2 -> y\n")
    data = pd.DataFrame({"x": pd.Series([1, value], dtype=object)})
    with pytest.raises(gr.DataError, match=match):
        gr.evaluate(kb, data)
    if value < 2 ** 63:
        with pytest.raises(gr.DataError, match=match):
            gr.evaluate(kb, {"x": np.array([1, value], dtype=np.int64)})


def test_non_finite_bias_is_refused():
    kb = gr.parse("input x: int 0..3\noutput y: bool\nrule r: x > 2 -> y\n")
    with pytest.raises(gr.RuleError, match=r"bias of 'y' must be finite, got nan at row 1"):
        gr.evaluate(kb, {"x": [1, 2]}, bias={"y": np.array([0.0, np.nan])})


# ------------------------------------------------------------------ large int domains

BIG = """
input x: int 0..100
output y: int 0..{hi}
rule r: x > 5 -> y = 7
rule s weight 2: x > 50 -> y = {top}
"""


def test_int_decision_over_a_large_domain_needs_no_constraint_to_explain():
    """Over 65,536 values and no constraint: decided among the values rules push."""
    kb = gr.parse(BIG.format(hi=100_000, top=100_000))
    ev = gr.evaluate(kb, {"x": [1, 9, 60]})
    assert ev.decisions["y"].tolist() == [0, 7, 100_000]
    assert list(ev.scores.columns) == ["y=0", "y=7", "y=100000"]
    ev = gr.evaluate(kb, {"x": [1, 9]}, bias={"y": {0: -1.0, 3: 0.5}})
    assert ev.decisions["y"].tolist() == [3, 7]
    assert ev.scores.loc[1].to_dict() == {"y=0": -1.0, "y=1": 0.0, "y=3": 0.5, "y=7": 1.0,
                                          "y=100000": 0.0}


def test_ties_among_unpushed_values_go_to_the_first_one():
    kb = gr.parse(BIG.format(hi=100_000, top=100_000))
    ev = gr.evaluate(kb, {"x": [1]}, bias={"y": {0: -1.0, 1: -2.0}})
    assert ev.decisions["y"].tolist() == [2]


def test_a_billion_values_cost_nothing():
    """``output y: int 0..900000000`` once allocated 20 GB; run under a 2 GB limit."""
    text = BIG.format(hi=900_000_000, top=900_000_000)
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2 ** 30, 2 * 2 ** 30))
        import greybox.rules as gr
        kb = gr.parse({text!r})
        ev = gr.evaluate(kb, {{"x": [1, 9, 60]}}, bias={{"y": {{899_999_999: 0.5}}}})
        print(ev.decisions["y"].tolist())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[899999999,", "7,", "900000000]"]


def test_too_large_constrained_domain_says_what_and_why():
    kb = gr.parse(BIG.format(hi=100_000, top=100_000) + "constraint c: y <= x + 1000\n")
    with pytest.raises(gr.RuleError, match=r"the decision of y \(int 0\.\.100000\) must "
                       r"satisfy the hard constraint\(s\) c, so each of its 100,001 values is "
                       r"checked against them: more than the 65,536"):
        gr.evaluate(kb, {"x": [1]})
    kb = gr.parse("input x: int 0..9\noutput a: int 0..999\noutput b: int 0..999\n"
                  "rule r: x > 1 -> a = 3\nconstraint c: a <= b\n")
    with pytest.raises(gr.RuleError, match=r"hard constraint\(s\) c tie the decisions "
                       r"a \(int 0\.\.999\), b \(int 0\.\.999\) together: 1,000,000 joint"):
        gr.evaluate(kb, {"x": [1]})


def test_bias_naming_a_value_outside_a_large_domain():
    kb = gr.parse(BIG.format(hi=100_000, top=100_000))
    with pytest.raises(gr.RuleError, match=r"bias of 'y' names 100001, not a value of int "
                       r"0\.\.100000"):
        gr.evaluate(kb, {"x": [1]}, bias={"y": {100_001: 1.0}})


def test_a_bool_compared_with_true_or_false_is_evaluated():
    """Regression (review): ``p == true`` in a hard constraint raised TypeError ('not a
    numeric expression: BoolConst') from the float64 exactness check, in evaluate and
    predict; it is the bool compared as 0 or 1."""
    kb = gr.parse("input p: bool\ninput q: bool\ninput a: int 0..3\noutput y: bool\n"
                  "constraint k: p == true and a != 0\n"
                  "rule r: q == false and a >= 2 -> y\nrule s: p != q -> y\n")
    rows = [(p, q, a) for p in (True, False) for q in (True, False) for a in range(4)]
    ev = gr.evaluate(kb, {"p": [r[0] for r in rows], "q": [r[1] for r in rows],
                          "a": [r[2] for r in rows]})
    assert ev.decisions["y"].tolist() == [(not q and a >= 2) or p != q for p, q, a in rows]
    assert ev.violations["k"].tolist() == [not (p and a != 0) for p, q, a in rows]
