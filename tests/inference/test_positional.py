"""Positional sums (numbers written digit by digit): the column-by-column carry path of
exact inference (``Arithmetic.log_prob``) against brute-force enumeration and against
generic variable elimination over the same factors."""

import itertools

import pytest
import torch
from torch import nn

import greybox as gb
from greybox.semantics.probabilistic import ProbContext


class _Table(nn.Module):
    """Fixed logits per row: each neural variable gets its own distribution per row."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x):
        return self.logits[x.long().view(-1)]


def _model(decls: list[tuple[str, list[int]]], expr: str, lo: int, hi: int, rows: int,
           seed: int):
    """A model whose neural variables ``decls`` (name, values) have random distributions
    per row, and ``define s: int lo..hi = expr``."""
    g = torch.Generator().manual_seed(seed)
    lines, nets = ["input i: tensor"], {}
    for name, values in decls:
        lines.append(f"neural {name}: int {values[0]}..{values[-1]} = net_{name}(i)")
        nets[f"net_{name}"] = _Table(torch.randn(rows, len(values), generator=g) * 2)
    lines += [f"output s: int {lo}..{hi}", f"define s: int {lo}..{hi} = {expr}"]
    return gb.GreyBox("\n".join(lines), nets)


def _brute(model, decls, fn, rows):
    """P(s = v) per row by enumerating every joint value of the neural variables."""
    probs = {}
    for name, _ in decls:
        out = model.network(f"net_{name}").logits.detach().double()
        probs[name] = torch.softmax(out, 1)
    dist = [dict() for _ in range(rows)]
    for combo in itertools.product(*[range(len(v)) for _, v in decls]):
        value = fn(*[decls[j][1][k] for j, k in enumerate(combo)])
        for r in range(rows):
            p = 1.0
            for (name, _), k in zip(decls, combo):
                p *= float(probs[name][r, k])
            dist[r][value] = dist[r].get(value, 0.0) + p
    return dist


@pytest.fixture(autouse=True)
def small_dense_limit(monkeypatch):
    """Sums of more than 2,000 joint values are compiled positionally (so that small
    cases, cheap to enumerate, take the positional path)."""
    monkeypatch.setattr("greybox._linear.FACTOR_LIMIT", 16 * 2000)


def _generic(monkeypatch):
    """Force the generic path (variable elimination over the sum's factors)."""
    monkeypatch.setattr(ProbContext, "_independent", lambda self, arith: False)


CASES = [
    # two 2-digit numbers (the digits-addition model)
    ([(f"{s}{k}", list(range(10))) for s in "ab" for k in range(2)],
     "10*a0 + a1 + 10*b0 + b1", 0, 198, lambda a0, a1, b0, b1: 10 * a0 + a1 + 10 * b0 + b1),
    # numbers of different lengths, an offset, three terms in one column
    ([("a0", list(range(10))), ("a1", list(range(10))), ("b", list(range(10))),
      ("c", list(range(10)))],
     "10*a0 + a1 + b + c + 7", 7, 126, lambda a0, a1, b, c: 10 * a0 + a1 + b + c + 7),
    # digits that do not start at 0, a 0..1 digit in the units
    ([("a0", list(range(1, 10))), ("a1", list(range(3, 6))), ("b0", list(range(10))),
      ("t", [0, 1])],
     "10*a0 + a1 + 10*b0 + t", 0, 200, lambda a0, a1, b0, t: 10 * a0 + a1 + 10 * b0 + t),
    # base 2 with a column no variable fills (8*x, no 4s): the carry alone there; a
    # digit larger than the base
    ([("x", list(range(16))), ("w", list(range(2))), ("y", list(range(2)))],
     "8*x + 2*w + y", 0, 123, lambda x, w, y: 8 * x + 2 * w + y),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_carry_path_is_exact(case, monkeypatch):
    decls, expr, lo, hi, fn = CASES[case]
    rows = 3
    model = _model(decls, expr, lo, hi, rows, seed=case)
    kb = model.kb
    arith = model.compiled.arithmetic("s", tuple(n for n, _ in decls))
    assert arith is not None and arith.kind == "positional"
    want = _brute(model, decls, fn, rows)
    x = {"i": torch.arange(rows, dtype=torch.float32).view(-1, 1)}
    # every value with some mass, one impossible value, the extremes, per row
    for r in range(rows):
        values = sorted(want[r])[::7] + [lo, hi]
        missing = [v for v in range(lo, hi + 1) if v not in want[r]]
        values += missing[:2]
        for v in values:
            target = torch.full((rows,), v - lo)
            got = model(x).log_prob("s", target)[r].item()
            p = want[r].get(v, 0.0)
            if p == 0.0:
                assert got == float("-inf")
            else:
                assert got == pytest.approx(torch.log(torch.tensor(p)).item(), abs=1e-4)
    del kb


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_carry_path_matches_generic_elimination_with_gradients(case, monkeypatch):
    decls, expr, lo, hi, fn = CASES[case]
    rows = 4
    model = _model(decls, expr, lo, hi, rows, seed=10 + case)
    x = {"i": torch.arange(rows, dtype=torch.float32).view(-1, 1)}
    g = torch.Generator().manual_seed(case)
    values = torch.tensor([fn(*[v[int(torch.randint(len(v), (1,), generator=g))]
                                for _, v in decls]) for _ in range(rows)])
    target = values - lo

    def run():
        model.zero_grad()
        lp = model(x).log_prob("s", target)
        lp.sum().backward()
        return lp.detach(), [p.grad.clone() for p in model.parameters()]

    fast, fast_grads = run()
    with monkeypatch.context() as m:
        _generic(m)
        slow, slow_grads = run()
    assert torch.allclose(fast, slow, atol=1e-5)
    for a, b in zip(fast_grads, slow_grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_sum_of_a_constrained_digit_takes_the_exact_generic_path():
    # a hard constraint ties a digit: the carry path does not apply; the answer is exact
    model = _model([("a0", list(range(10))), ("a1", list(range(10))),
                    ("b0", list(range(10))), ("b1", list(range(10)))],
                   "10*a0 + a1 + 10*b0 + b1", 0, 198, rows=2, seed=5)
    kb = gb.rules.parse(gb.rules.to_text(model.kb) + "\nconstraint odd: a1 in {1, 3, 5, 7, 9}")
    nets = {n: model.network(n) for n in kb.networks}
    model = gb.GreyBox(kb, nets)
    x = {"i": torch.arange(2, dtype=torch.float32).view(-1, 1)}
    probs = {n: torch.softmax(model.network(f"net_{n}").logits.detach().double(), 1)
             for n in ("a0", "a1", "b0", "b1")}
    odd = torch.zeros(10, dtype=torch.float64)
    odd[1::2] = 1
    for v in (13, 50, 101):
        got = model(x).log_prob("s", torch.full((2,), v))
        for r in range(2):
            z = float((probs["a1"][r] * odd).sum())
            p = sum(float(probs["a0"][r, a0] * probs["a1"][r, a1] * probs["b0"][r, b0]
                          * probs["b1"][r, b1]) / z
                    for a0, a1, b0, b1 in itertools.product(range(10), repeat=4)
                    if a1 % 2 and 10 * a0 + a1 + 10 * b0 + b1 == v)
            assert got[r].exp().item() == pytest.approx(p, abs=1e-6)


@pytest.mark.parametrize("gap", [10.0, 30.0])
def test_the_carry_path_survives_tiny_probabilities(gap, monkeypatch):
    # 15-digit sums of confident digits: the probability of a sum they contradict is far
    # below float32's smallest number, and the carry it needs is 1e-13 times less likely
    # than the other, column after column; its log stays exact, as by generic elimination
    n = 15
    decls = [(f"{s}{k}", list(range(10))) for s in "ab" for k in range(n)]
    terms = [f"{10 ** (n - 1 - k)}*{s}{k}" for s in "ab" for k in range(n)]
    model = _model(decls, " + ".join(terms), 0, 2 * (10 ** n - 1), rows=1, seed=0)
    with torch.no_grad():
        for name, _ in decls:
            t = model.network(f"net_{name}").logits
            t.zero_()
            t[0, 9] = gap      # every digit 9, confidently
    targets = torch.tensor([0, 10 ** 15 - 1, 10 ** 15, 123456789012345, 2 * (10 ** 15 - 1)])
    fast = model({"i": torch.zeros(len(targets), 1)}).log_prob("s", targets)
    with monkeypatch.context() as m:
        _generic(m)
        slow = model({"i": torch.zeros(len(targets), 1)}).log_prob("s", targets)
    assert torch.isfinite(fast).all()
    known = torch.isfinite(slow)     # (generic elimination underflows on 999...9)
    assert torch.allclose(fast[known], slow[known], rtol=1e-5, atol=1e-5)
    p = torch.softmax(torch.tensor([0.0] * 9 + [gap], dtype=torch.float64), 0)
    p0, p9 = p[0], p[9]
    # every digit 0: each column 0 + 0
    assert fast[0].item() == pytest.approx(float(2 * n * torch.log(p0)), rel=1e-5)
    # 999...9: each column 9 without carry: 0 + 9, 9 + 0 or 8 pairs of other digits
    column = torch.log(2 * p0 * p9 + 8 * p0 * p0)
    assert fast[1].item() == pytest.approx(float(n * column), rel=1e-5)


@pytest.mark.parametrize("hi", [18, 10])
def test_a_plain_sum_of_two_digits_takes_its_column(hi, monkeypatch):
    # d1 + d2 over 0..18: one column, no carry; over 0..10 the sums above 10 are not
    # values of s, which conditions on s <= 10 (the generic path does that)
    decls = [("d1", list(range(10))), ("d2", list(range(10)))]
    model = _model(decls, "d1 + d2", 0, hi, rows=3, seed=7)
    arith = model.compiled.arithmetic("s", ("d1", "d2"))
    assert arith.kind == "dense" and arith.columns
    want = _brute(model, decls, lambda a, b: a + b, 3)
    x = {"i": torch.arange(3, dtype=torch.float32).view(-1, 1)}
    for v in (0, 7, 10):
        got = model(x).log_prob("s", torch.full((3,), v))
        with monkeypatch.context() as m:
            _generic(m)
            slow = model(x).log_prob("s", torch.full((3,), v))
        for r in range(3):
            z = sum(p for s, p in want[r].items() if s <= hi)
            assert got[r].exp().item() == pytest.approx(want[r][v] / z, abs=1e-6)
        assert torch.allclose(got, slow, atol=1e-6)


def test_the_carry_path_runs_under_vmap():
    # per-row functional calls (as parameter attributions make them): the same numbers
    import pandas as pd
    from torch.func import functional_call, vmap

    from greybox._batch import Batch

    decls = [(f"{s}{k}", list(range(10))) for s in "ab" for k in range(2)]
    kb = gb.rules.parse("input img: tensor[4]\n"
                        + "\n".join(f"neural {n}: int 0..9 = digit(img)" for n, _ in decls)
                        + "\noutput s: int 0..198\ndefine s: int 0..198 = "
                        "10*a0 + a1 + 10*b0 + b1")
    model = gb.GreyBox(kb, {"digit": nn.Linear(4, 10)})
    x, target = torch.randn(3, 4), torch.tensor([5, 60, 123])
    want = model({"img": x}).log_prob("s", target)
    params = dict(model.named_parameters())

    def one(row, t):
        sub = Batch({"img": row.unsqueeze(0)}, 1, pd.RangeIndex(1), {})
        return functional_call(model, params, (sub,)).log_prob("s", t.view(1))[0]

    got = vmap(one)(x, target)
    assert torch.allclose(got, want, atol=1e-5)
