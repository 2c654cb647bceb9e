"""Rule induction: the conjunction search (greybox.rules._induce), induce(), proposals."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import greybox.rules as gr
from greybox.rules._induce import Condition, search_conjunctions, threshold_between


def _frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(size=n).round(2),
        "k": rng.integers(0, 10, size=n),
        "flag": rng.random(n) < 0.5,
        "colour": pd.Categorical(rng.choice(["red", "green", "blue"], size=n)),
        "mean radius": rng.uniform(5, 25, size=n).round(1),
    })


def _single_conditions(df):
    """Every single condition, by brute force: (condition, mask)."""
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            yield Condition(col, "==", True), s.to_numpy()
            yield Condition(col, "==", False), ~s.to_numpy()
        elif isinstance(s.dtype, pd.CategoricalDtype):
            for v in s.cat.categories:
                yield Condition(col, "==", v), (s == v).to_numpy()
                yield Condition(col, "!=", v), (s != v).to_numpy()
        else:
            vals = np.unique(s.to_numpy())
            for a in vals[:-1]:
                yield Condition(col, "<=", a), (s <= a).to_numpy()
                yield Condition(col, ">", a), (s > a).to_numpy()


@pytest.mark.parametrize("seed", range(5))
def test_best_single_condition_is_the_brute_force_best(seed):
    df = _frame(120, seed)
    gain = np.random.default_rng(seed + 100).normal(size=len(df))
    best = max(gain[m].sum() for _c, m in _single_conditions(df) if m.any())
    found = search_conjunctions(df, gain, max_conditions=1, top=1, min_support=1)
    assert found[0].score == pytest.approx(best)


@pytest.mark.parametrize("seed", range(3))
def test_every_result_is_what_its_formula_computes(seed):
    df = _frame(200, seed)
    gain = np.random.default_rng(seed).normal(size=len(df))
    kb = gr.parse("input x: real input k: int 0..9 input flag: bool "
                  "input colour: {blue, green, red} input `mean radius`: real output y: bool")
    for c in search_conjunctions(df, gain, max_conditions=3, top=10, min_support=1):
        truth = gr.crisp_truth(kb, c.formula, {col: df[col].to_numpy() if col != "colour"
                                               else df[col].astype(str).to_numpy()
                                               for col in df.columns}, len(df))
        assert np.array_equal(np.asarray(truth, dtype=bool), c.mask)
        assert c.support == c.mask.sum()
        assert c.score == pytest.approx(gain[c.mask].sum())
        assert c.score > 0
        # no two conditions on the same column and operator; none redundant on the data
        keys = [(d.column, d.operator) for d in c.conditions if d.operator in ("<=", ">", "==")]
        assert len(keys) == len(set(keys))
        for i in range(len(c.conditions)):
            rest = c.conditions[:i] + c.conditions[i + 1:]
            if rest:
                m = np.ones(len(df), bool)
                for d in rest:
                    m &= np.asarray(gr.crisp_truth(kb, d.formula(), {
                        d.column: df[d.column].astype(str).to_numpy()
                        if d.column == "colour" else df[d.column].to_numpy()}, len(df)), bool)
                assert not np.array_equal(m, c.mask)


def test_finds_a_planted_conjunction():
    df = _frame(400, 1)
    planted = ((df["x"] > 0.5) & df["flag"] & (df["colour"] != "red")).to_numpy()
    gain = np.where(planted, 1.0, -1.0)
    best = search_conjunctions(df, gain, max_conditions=3, top=1)[0]
    assert np.array_equal(best.mask, planted)
    assert best.score == planted.sum()
    text = str(best.formula)
    assert "flag" in text and "colour != red" in text and "x > 0." in text


def test_results_are_distinct_ranked_and_positive():
    df = _frame(200, 2)
    gain = np.random.default_rng(3).normal(size=len(df))
    found = search_conjunctions(df, gain, top=8, min_support=5)
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert len({c.mask.tobytes() for c in found}) == len(found)
    assert all(c.support >= 5 and c.score > 0 for c in found)
    assert all(len(c.conditions) <= 3 for c in found)
    assert search_conjunctions(df, -np.abs(gain) - 1) == []


def test_names_are_backquoted_and_thresholds_are_short_decimals_between_values():
    df = pd.DataFrame({"mean radius": [10.13, 11.27, 14.92, 15.61, 20.0]})
    gain = np.array([-1.0, -1.0, 1.0, 1.0, 1.0])
    best = search_conjunctions(df, gain, top=1, min_support=1)[0]
    assert str(best.formula) == "`mean radius` > 13"
    for a, b in [(0.1, 0.2), (1e-9, 2e-9), (-3.5, -3.25), (1234.5, 1234.5000001), (7, 8),
                 (0.30000000000000004, 0.31), (-1e300, 1e300), (5e-324, 1e-323)]:
        t = threshold_between(a, b)
        assert a <= t < b
        assert float(repr(t)) == t  # prints as it is
    assert threshold_between(0, 100) == 50 and isinstance(threshold_between(2, 9), int)


def test_bad_input_names_the_problem():
    df = _frame(20)
    with pytest.raises(gr.DataError, match=r"shape \(3,\); expected \(20,\)"):
        search_conjunctions(df, np.ones(3))
    with pytest.raises(gr.DataError, match="column 'nope' is not in the frame"):
        search_conjunctions(df, np.ones(20), columns=["nope"])
    bad = df.assign(x=np.where(np.arange(20) == 4, np.nan, df["x"]))
    with pytest.raises(gr.DataError, match=r"column 'x': nan at row 4"):
        search_conjunctions(bad, np.ones(20))
    with pytest.raises(gr.DataError, match="gain at row 0"):
        search_conjunctions(df, np.full(20, np.inf))


def test_search_on_20000_rows():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(20000, 10)), columns=[f"c{i}" for i in range(10)])
    planted = ((df["c0"] > 0.5) & (df["c3"] <= 0)).to_numpy()
    gain = np.where(planted, 1.0, -1.0)
    found = search_conjunctions(df, gain, top=3)
    assert found[0].score == planted.sum()
    assert str(found[0].formula) in ("c0 > 0.5 and c3 <= 0", "c3 <= 0 and c0 > 0.5")


def test_brute_force_pairs_are_not_better_than_the_beam_on_small_data():
    # with a beam as wide as the candidates, level 2 is exhaustive over pairs of best
    # thresholds; on a tiny table it finds the best pair of single conditions
    df = _frame(40, 7)[["flag", "colour", "k"]]
    gain = np.random.default_rng(8).normal(size=len(df))
    singles = list(_single_conditions(df))
    best = max(max(gain[m].sum() for _c, m in singles),
               max(gain[m1 & m2].sum() for (_a, m1), (_b, m2)
                   in itertools.combinations(singles, 2)))
    found = search_conjunctions(df, gain, max_conditions=2, top=1, min_support=1, beam=1000)
    assert found[0].score == pytest.approx(best)
