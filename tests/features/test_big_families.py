"""Big integers written with families (issue 23, item 3): index arithmetic is exact to
4,000 digits, so ``sum(10^(n - 1 - k) * a[k] for k in pos)`` grounds for n = 100 to the
program written out term by term (``addition_rules``); beyond the limit a power is refused
by its digit count, located, before it is computed."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch

import greybox as gb
import greybox.rules as gr
from greybox.rules import ast as A

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def addition(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import digits_addition

    return digits_addition


def _terms(e) -> list[tuple[int, str]]:
    """A define's linear expression as (coefficient, variable) terms (``a2`` is ``1 * a2``)."""
    args = e.args if isinstance(e, A.Sum) else (e,)
    out = []
    for t in args:
        if isinstance(t, A.Mul):
            assert isinstance(t.left, A.Num) and isinstance(t.right, A.Var)
            out.append((t.left.value, t.right.name))
        else:
            assert isinstance(t, A.Var)
            out.append((1, t.name))
    return out


def _written_name(name: str) -> str:
    """A member's name (``a[3]``, ``a_img[3]``) as addition_rules writes it (``a3``, ``a3_img``)."""
    if "[" not in name:
        return name
    family, k = name[:-1].split("[")
    return f"{family[0]}{k}{family[1:]}"


@pytest.mark.parametrize("n", [3, 20, 100])
def test_the_family_program_grounds_to_the_written_program(n, addition):
    written = gr.parse(addition.addition_rules(n))
    relational = gr.parse(addition.addition_program(n))
    assert sorted(map(_written_name, relational.variables)) == sorted(written.variables)
    for name, v in relational.variables.items():
        w = written.variables[_written_name(name)]
        assert (v.type, v.role, v.output, v.network) == (w.type, w.role, w.output, w.network)
        assert [_written_name(a) for a in v.args] == list(w.args)
        if v.expr is not None and name != "total":
            terms = [(c, _written_name(x)) for c, x in _terms(v.expr)]
            assert terms == _terms(w.expr)
            assert terms[0][0] == 10 ** (n - 1)    # exact: no float64 on the way
    assert relational.variables["total"].expr == written.variables["total"].expr


@pytest.mark.parametrize("n", [3, 20, 100])
def test_the_family_program_evaluates_and_predicts_as_the_written_one(n, addition):
    rng = np.random.default_rng(n)
    digits = rng.integers(0, 10, (6, 2, n))
    written = gr.evaluate(gr.parse(addition.addition_rules(n)),
                          {f"{s}{k}": digits[:, j, k] for j, s in enumerate("ab") for k in range(n)})
    relational = gr.evaluate(gr.parse(addition.addition_program(n)),
                             {f"{s}[{k}]": digits[:, j, k] for j, s in enumerate("ab")
                              for k in range(n)})
    exact = [sum(int("".join(map(str, row[j]))) for j in range(2)) for row in digits]
    assert relational.values["total"].tolist() == written.values["total"].tolist() == exact

    torch.manual_seed(n)
    net = addition.digit_network(dropout=0)
    models = (gb.GreyBox(addition.addition_rules(n), {"digit": net}),
              gb.GreyBox(addition.addition_program(n), {"digit": net}))
    data = {f"{s}{k}_img": torch.rand(4, 64) for s in "ab" for k in range(n)}
    inputs = (data, addition.family_columns(data, n))
    predicted = [m.predict(d)["total"].tolist() for m, d in zip(models, inputs)]
    assert predicted[0] == predicted[1]
    sums = np.array(exact[:4], dtype=object)
    losses = [m.loss(d, {"total": sums}).item() for m, d in zip(models, inputs)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.parametrize("power, column", [
    ("10^(10^9)", 23), ("10^4000", 23), ("2^2^2^2^2^2", 25), ("(10^2000)^3", 24),
])
def test_index_arithmetic_beyond_its_digits_is_refused_quickly_and_located(power, column):
    text = f"input a: int 0..9\ndefine x: int 0..10 = {power} * a\n"
    start = time.perf_counter()
    with pytest.raises(gr.RuleError, match=f"<rules>:2:{column}: index arithmetic beyond "
                       "4,000 digits"):
        gr.parse(text)
    assert time.perf_counter() - start < 2.0     # refused by its size, never computed


def test_index_arithmetic_is_exact_up_to_its_digits():
    kb = gr.parse("input a: int 0..9\ndefine x: int 0..10 = 10^3999 * a + (-1)^(10^3999) * a\n")
    (big, _), (minus_one, _) = _terms(kb.variables["x"].expr)
    assert (big, minus_one) == (10 ** 3999, 1)
    with pytest.raises(gr.RuleError, match="exponent of at least 0, got 10\\^-1"):
        gr.parse("input a: int 0..9\ndefine x: int 0..10 = 10^(-1) * a\n")


def test_the_example_trains_with_the_family_program(addition):
    r = addition.run(3, epochs=1, examples=32, families=True, progress=False)
    assert r["digits"] == 3 and np.isfinite(r["final_loss"])
