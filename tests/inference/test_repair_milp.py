"""predict's repair by a 0/1 linear programme (greybox._repair_milp): the most probable
values under hard constraints linear over the values' indicators, as elimination, Z3 and
brute force find them; everything else still goes to Z3."""

from __future__ import annotations

import itertools
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

import greybox as gb
import greybox._repair as repair_module
from greybox.errors import SolverError
from tests.conftest import EXAMPLES

sys.path.insert(0, str(EXAMPLES))
from sudoku9 import SOLVER as SOLVER9  # noqa: E402
from sudoku9 import count_completions, is_valid, random_grid  # noqa: E402


class _Logits(nn.Module):
    """A 'network' whose output is its input: each variable's logits are given."""

    def forward(self, x):
        return x


#: Three neural ints a, b, c in 0..3, a neural bool p and a neural enum e, read as given.
HEAD = """\
input xa: tensor[4]
input xb: tensor[4]
input xc: tensor[4]
input xp: tensor[1]
input xe: tensor[3]
neural a: int 0..3 = net(xa)
neural b: int 0..3 = net(xb)
neural c: int 0..3 = net(xc)
neural p: bool = net(xp)
neural e: {lo, mid, hi} = net(xe)
output oa: int 0..3
define oa: int 0..3 = a
output ob: int 0..3
define ob: int 0..3 = b
output oc: int 0..3
define oc: int 0..3 = c
output op: bool
define op: bool = p
output oe: {lo, mid, hi}
define oe: {lo, mid, hi} = e
define twice: int 0..6 = 2 * b
"""

#: Hard constraints (rule text, the same as a Python test of (a, b, c, p, e index)).
CASES = {
    "all_different": ("constraint k: all_different(a, b, c)",
                      lambda a, b, c, p, e: len({a, b, c}) == 3),
    "linear": ("constraint k: a + twice - c <= 4 and a - b > -2",
               lambda a, b, c, p, e: a + 2 * b - c <= 4 and a - b > -2),
    "not_equal": ("constraint k: a + b != 3 and c != 1 and 3 * a == c + b",
                  lambda a, b, c, p, e: a + b != 3 and c != 1 and 3 * a == c + b),
    "sets_and_literals": ("constraint k: c in {0, 2} and not p and e != mid\n"
                          "constraint l: b - 2 < a and e == hi",
                          lambda a, b, c, p, e: c in (0, 2) and not p and e == 2
                          and b - 2 < a),
    "bool_literal": ("constraint k: p and all_different(a, b) and not (a >= b)",
                     lambda a, b, c, p, e: p and a != b and not a >= b),
}


def _data(rng, rows: int, scale: float = 2.0) -> dict:
    g = lambda *shape: torch.as_tensor(rng.normal(size=shape) * scale,  # noqa: E731
                                       dtype=torch.float32)
    return {"xa": g(rows, 4), "xb": g(rows, 4), "xc": g(rows, 4), "xp": g(rows, 1),
            "xe": g(rows, 3)}


def _brute_force(data: dict, ok) -> list:
    """Per row, the most probable (a, b, c, p, e index) satisfying ``ok``; None if none."""
    logp = {k: torch.log_softmax(v.double(), 1).numpy() for k, v in data.items() if k != "xp"}
    xp = data["xp"].double()[:, 0]
    lp = torch.stack([torch.nn.functional.logsigmoid(-xp),
                      torch.nn.functional.logsigmoid(xp)], 1).numpy()
    out = []
    for r in range(len(xp)):
        best = max(((logp["xa"][r, a] + logp["xb"][r, b] + logp["xc"][r, c] + lp[r, p]
                     + logp["xe"][r, e], (a, b, c, p, e))
                    for a, b, c, p, e in itertools.product(range(4), range(4), range(4),
                                                           range(2), range(3))
                    if ok(a, b, c, p, e)), default=None)
        out.append(None if best is None else best[1])
    return out


def _route(exact: str, monkeypatch) -> None:
    if exact != "elimination":
        monkeypatch.setattr(repair_module, "MAX_TABLE", 0)
    if exact == "z3":
        monkeypatch.setattr(repair_module, "_by_milp", lambda *args: None)
    else:
        monkeypatch.setattr(repair_module, "_by_z3", None)   # never asked


def _answers(model, data) -> list:
    frame = model.predict(data, on_infeasible="flag")
    cols = frame[["oa", "ob", "oc", "op", "oe"]]
    return [None if bad else (int(a), int(b), int(c), int(p), ["lo", "mid", "hi"].index(e))
            for bad, (a, b, c, p, e) in zip(frame["infeasible"], cols.itertuples(index=False))]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("exact", ["elimination", "milp", "z3"])
def test_the_three_routes_find_the_brute_force_map(case, exact, monkeypatch):
    _route(exact, monkeypatch)
    text, ok = CASES[case]
    model = gb.GreyBox(HEAD + text + "\n", {"net": _Logits()})
    data = _data(np.random.default_rng(sorted(CASES).index(case)), 12)
    assert _answers(model, data) == _brute_force(data, ok)


def test_the_milp_route_is_taken_and_z3_is_not_asked(monkeypatch):
    calls = []
    real = repair_module._by_milp
    monkeypatch.setattr(repair_module, "_by_milp", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(repair_module, "MAX_TABLE", 0)
    monkeypatch.setattr(repair_module, "_by_z3", None)
    model = gb.GreyBox(HEAD + CASES["linear"][0] + "\n", {"net": _Logits()})
    data = _data(np.random.default_rng(7), 6)
    assert _answers(model, data) == _brute_force(data, CASES["linear"][1]) and calls


#: An enum input listing ``hi`` first: a label's index is its index in the type it is read in.
OTHER_ENUM = "input k0: {hi, lo}\n"


@pytest.mark.parametrize("text, ok", [
    ("constraint k: e == hi", lambda a, b, c, p, e: e == 2),
    ("constraint k: e != lo and e != mid", lambda a, b, c, p, e: e == 2),
    ("constraint k: e in {hi, lo}", lambda a, b, c, p, e: e in (0, 2)),
    ("constraint k: k0 == hi -> e == mid", lambda a, b, c, p, e: e == 1),
])
def test_an_enum_label_is_read_in_the_type_it_is_compared_with(text, ok, monkeypatch):
    """Regression: the MILP route read a label as its index in the first enum type that
    lists it (``k0``'s ``{hi, lo}``: ``hi`` = 0, i.e. ``lo`` of ``e``), so ``e == hi``
    asked for ``e == lo`` and rows came back infeasible or wrong."""
    calls = []
    real = repair_module._by_milp
    monkeypatch.setattr(repair_module, "_by_milp", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(repair_module, "MAX_TABLE", 0)
    monkeypatch.setattr(repair_module, "_by_z3", None)
    model = gb.GreyBox(OTHER_ENUM + HEAD + text + "\n", {"net": _Logits()})
    data = _data(np.random.default_rng(11), 8)
    assert _answers(model, {**data, "k0": ["hi"] * 8}) == _brute_force(data, ok) and calls


@pytest.mark.parametrize("text, ok", [
    ("constraint k: a == 1 or b == 2", lambda a, b, c, p, e: a == 1 or b == 2),
    ("constraint k: p -> a == 3", lambda a, b, c, p, e: not p or a == 3),
    ("constraint k: count(a == 1, b == 1, c == 1) == 2",
     lambda a, b, c, p, e: (a == 1) + (b == 1) + (c == 1) == 2),
])
def test_other_constraints_still_go_to_z3(text, ok, monkeypatch):
    asked = []
    real = repair_module._by_z3
    monkeypatch.setattr(repair_module, "MAX_TABLE", 0)
    monkeypatch.setattr(repair_module, "_by_z3", lambda *a: asked.append(1) or real(*a))
    model = gb.GreyBox(HEAD + text + "\n", {"net": _Logits()})
    data = _data(np.random.default_rng(3), 8)
    assert _answers(model, data) == _brute_force(data, ok) and asked


@pytest.mark.parametrize("exact", ["elimination", "milp", "z3"])
def test_infeasible_rows_are_left_out(exact, monkeypatch):
    """``a + b == k`` with ``a != b`` over 0..1: no values for k = 0 or 2, one for 1."""
    _route(exact, monkeypatch)
    text = HEAD + "input k: int 0..3\nconstraint s: a + b == k and a != b and a <= 1 and b <= 1\n"
    model = gb.GreyBox(text, {"net": _Logits()})
    data = _data(np.random.default_rng(5), 4)
    data["k"] = np.array([0, 1, 2, 1])
    ok = [lambda a, b, c, p, e, k=k: a + b == k and a != b and a <= 1 and b <= 1
          for k in data["k"]]
    want = [_brute_force({n: v[r:r + 1] for n, v in data.items() if n != "k"}, ok[r])[0]
            for r in range(4)]
    assert want[0] is None and want[2] is None and want[1] is not None
    assert _answers(model, data) == want


def test_highs_out_of_time_is_an_error_never_infeasible(monkeypatch):
    import scipy.optimize

    class _Late:
        status, x, message = 1, None, "Time limit reached"

    monkeypatch.setattr(repair_module, "MAX_TABLE", 0)
    monkeypatch.setattr(scipy.optimize, "milp", lambda *a, **k: _Late())
    model = gb.GreyBox(HEAD + CASES["all_different"][0] + "\n", {"net": _Logits()})
    data = _data(np.random.default_rng(0), 1)
    data["xa"][:] = data["xb"][:] = data["xc"][:] = torch.tensor([5.0, 0, 0, 0])
    with pytest.raises(SolverError, match=r"HiGHS .*row 0 within 5 s \(Time limit reached\)"
                                          r".*not known to be infeasible"):
        model.predict(data, on_infeasible="flag")


def _puzzle(seed: int, givens: int = 30):
    """A 9x9 puzzle with a unique completion (cells emptied while it stays unique)."""
    rng = np.random.default_rng(seed)
    answer = random_grid(rng)
    grid = answer.copy()
    for cell in rng.permutation(81):
        if np.count_nonzero(grid) <= givens:
            break
        keep, grid[cell] = grid[cell], 0
        if count_completions(grid) > 1:
            grid[cell] = keep
    return grid, answer


def test_a_9x9_puzzle_is_solved_through_predict_in_seconds():
    """Confident givens and uniform blanks: the unique completion, by the linear
    programme (elimination does not fit, Z3 times out)."""
    grid, answer = _puzzle(0)
    text = SOLVER9.replace("tensor[64]", "tensor[9]")
    model = gb.GreyBox(text, {"digit_net": _Logits()})
    logits = np.where(grid[:, None] > 0, np.eye(9)[np.maximum(grid, 1) - 1] * 8.0, 0.0)
    data = model.kb.families["img"].split(torch.as_tensor(logits[None], dtype=torch.float32))
    start = time.perf_counter()
    got = model.predict(data)[[f"solution[{c}]" for c in range(81)]].to_numpy()[0]
    assert time.perf_counter() - start < 10.0
    assert is_valid(got) and (got == answer).all()


def _random_constraint(rng) -> tuple[str, object]:
    """A random integer-linear comparison of a, b, c (as text and as a Python test)."""
    w = rng.integers(-3, 4, size=3)
    op = str(rng.choice(["<", "<=", ">", ">=", "==", "!="]))
    k = int(rng.integers(-3, 6))
    text = f"{w[0]} * a + {w[1]} * b + {w[2]} * c {op} {k}".replace("+ -", "- ")
    test = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
            "==": np.equal, "!=": np.not_equal}[op]
    return text, lambda a, b, c, p, e: bool(test(w[0] * a + w[1] * b + w[2] * c, k))


@pytest.mark.parametrize("seed", range(8))
def test_random_linear_constraints_milp_equals_elimination_and_brute_force(seed, monkeypatch):
    rng = np.random.default_rng(100 + seed)
    (t1, ok1), (t2, ok2) = _random_constraint(rng), _random_constraint(rng)
    text = HEAD + f"constraint k: {t1}\nconstraint l: {t2} or false\n"
    if seed % 2:
        text += "constraint m: all_different(a, b, c)\n"
    ok = lambda *v: ok1(*v) and ok2(*v) and (not seed % 2 or len(set(v[:3])) == 3)  # noqa: E731
    data = _data(rng, 10)
    want = _brute_force(data, ok)
    got = {}
    for exact in ("elimination", "milp"):
        with monkeypatch.context() as m:
            _route(exact, m)
            got[exact] = _answers(gb.GreyBox(text, {"net": _Logits()}), data)
    assert got["milp"] == got["elimination"] == want
