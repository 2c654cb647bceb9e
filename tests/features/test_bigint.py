"""Exact big integers (issue 23, item 3): sums of N-digit numbers beyond 2**53 (N = 30,
100) are compiled into digit columns with carries; labels are read as Python ints (ints,
object arrays, text of digits), their digits computed exactly outside torch; ``log_prob``
equals a hand-written carry model's; ``predict`` returns exact Python ints; integers
beyond ±2**53 anywhere they cannot be exact are located errors."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb
import greybox.rules as gr


def _rules(n: int) -> str:
    """The sum of two ``n``-digit numbers, digit by digit (most significant first), as in
    examples/digits_addition.py, each digit read by the network ``digit``."""
    lines = []
    for side in "ab":
        terms = []
        for k in range(n):
            lines.append(f"input {side}{k}_img: tensor[2]")
            lines.append(f"neural {side}{k}: int 0..9 = digit({side}{k}_img)")
            terms.append(f"{10 ** (n - 1 - k)} * {side}{k}")
        lines.append(f"define n{side}: int 0..{10 ** n - 1} = {' + '.join(terms)}")
    top = 2 * (10 ** n - 1)
    lines += [f"output total: int 0..{top}", f"define total: int 0..{top} = na + nb"]
    return "\n".join(lines) + "\n"


class _Table(nn.Module):
    """Fixed logits per (row, digit variable): input ``[row, variable]``."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x):
        return self.logits[x[:, 0].long(), x[:, 1].long()]


def _data(n: int, rows: int) -> dict:
    return {f"{side}{k}_img": torch.stack([torch.arange(rows), torch.full((rows,), j * n + k)],
                                          1).float()
            for j, side in enumerate("ab") for k in range(n)}


def _number(digits) -> int:
    return int("".join(str(int(d)) for d in digits))


def _reference_log_prob(logits: torch.Tensor, n: int, sums) -> torch.Tensor:
    """log P(a + b = s) by hand, in float64: each column's digit-sum distribution, the
    carry's distribution from the lowest column up, the sum's digits read from its
    decimal text (exact Python ints)."""
    p = torch.softmax(logits.double(), -1)                       # (rows, 2n, 10)
    out = []
    for r, s in enumerate(sums):
        text = str(int(s)).zfill(n + 1)
        if len(text) > n + 1:
            out.append(float("-inf"))
            continue
        digits = [int(c) for c in reversed(text)]                 # lowest first
        carry = torch.tensor([1.0, 0.0], dtype=torch.float64)     # P(carry into column)
        log_scale = 0.0
        for col in range(n):
            k = n - 1 - col
            pa, pb = p[r, k], p[r, n + k]
            col_sum = torch.zeros(19, dtype=torch.float64)
            for i in range(10):
                col_sum[i:i + 10] += pa[i] * pb
            new = torch.zeros(2, dtype=torch.float64)
            for c_in in range(2):
                for c_out in range(2):
                    v = digits[col] + 10 * c_out - c_in
                    if 0 <= v <= 18:
                        new[c_out] += carry[c_in] * col_sum[v]
            z = float(new.sum())
            carry, log_scale = new / z, log_scale + np.log(z)
        out.append(np.log(float(carry[digits[n]])) + log_scale if digits[n] <= 1
                   else float("-inf"))
    return torch.tensor(out, dtype=torch.float64)


@pytest.fixture(scope="module")
def thirty():
    """N = 30: a model with random digit distributions per row, its sums' true values."""
    n, rows = 30, 6
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, 2 * n, 10, generator=g) * 2
    model = gb.GreyBox(_rules(n), {"digit": _Table(logits)})
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, size=(rows, 2, n))
    sums = [_number(d[0]) + _number(d[1]) for d in digits]
    return n, model, logits, _data(n, rows), sums


def test_big_integers_parse_in_int_defines_and_print_back():
    kb = gr.parse(_rules(30))
    assert kb.variables["total"].type.hi == 2 * (10 ** 30 - 1)
    assert gr.parse(gr.to_text(kb)) == kb


def test_log_prob_at_30_digits_equals_a_hand_written_carry_model(thirty):
    n, model, logits, data, sums = thirty
    with torch.no_grad():
        ours = model(data).log_prob("total", model._targets({"total": sums}, len(sums))
                                    .values["total"])
    ref = _reference_log_prob(logits.detach(), n, sums)
    assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=1e-4)
    # a sum beyond the declared range's digits, and one off by 10**29, are impossible or
    # differ exactly there
    near = [sums[0] + 10 ** 29]
    with torch.no_grad():
        other = model(_row(data, 0)).log_prob(
            "total", model._targets({"total": near}, 1).values["total"])
    assert torch.allclose(other.double(), _reference_log_prob(logits[:1].detach(), n, near),
                          rtol=1e-5, atol=1e-4)


def _row(data: dict, r: int) -> dict:
    return {k: v[r:r + 1] for k, v in data.items()}


@pytest.mark.parametrize("kind", ["int", "object", "str", "series", "int64"])
def test_labels_are_read_exactly_from_any_integer_column(thirty, kind):
    n, model, logits, data, sums = thirty
    given = {"int": list(sums), "object": np.array(sums, dtype=object),
             "str": [str(s) for s in sums], "series": pd.Series(sums, dtype=object),
             "int64": None}[kind]
    if kind == "int64":      # small labels of a big type, given as int64
        small = [s % 10 ** 15 for s in sums]
        lab = model._targets({"total": np.array(small, dtype=np.int64)}, len(sums))
        assert lab.values["total"].indices.tolist() == small
        return
    lab = model._targets({"total": given}, len(sums)).values["total"]
    assert lab.indices.tolist() == sums and all(type(v) is int for v in lab.indices)
    with torch.no_grad():
        loss = model.loss(data, {"total": given})
    ref = -_reference_log_prob(logits.detach(), n, sums).mean()
    assert abs(float(loss) - float(ref)) < 1e-4 * max(1.0, abs(float(ref)))


@pytest.mark.parametrize("bad, match", [
    (1e30, r"labels of 'total': 1e\+30 at row 2 is not an integer"),
    ("12a", r"labels of 'total': '12a' at row 2 is not an integer"),
    (2.5, r"2\.5 at row 2 is not an integer"),
    (True, r"True at row 2 is not an integer"),
    (-1, r"-1 at row 2 is not in int 0\.\.1999"),
    (2 * 10 ** 30, r"at row 2 is not in int 0\.\.1999"),
])
def test_labels_that_are_not_exact_integers_are_refused_by_row(thirty, bad, match):
    n, model, logits, data, sums = thirty
    labels = np.array(sums, dtype=object)
    labels[2] = bad
    with pytest.raises(gb.DataError, match=match):
        model._targets({"total": labels}, len(sums))


def test_missing_labels_of_a_big_integer_are_masked(thirty):
    n, model, logits, data, sums = thirty
    labels = np.array(sums, dtype=object)
    labels[1] = None
    lab = model._targets({"total": labels}, len(sums))
    assert lab.mask["total"].tolist() == [True, False, True, True, True, True]


def _confident(n: int, rows: int, seed: int):
    """A network that is sure of known digits (one-hot logits), and the true sums."""
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 10, size=(rows, 2, n))
    digits[0] = 9                       # 99...9 + 99...9: the top carry
    logits = torch.nn.functional.one_hot(torch.as_tensor(digits.reshape(rows, 2 * n)),
                                         10).float() * 30.0
    sums = [_number(d[0]) + _number(d[1]) for d in digits]
    return _Table(logits), sums


@pytest.mark.parametrize("n", [30, 100, 400])   # (400: past float64's range too)
def test_predict_gives_exact_python_ints_for_a_confident_network(n):
    net, sums = _confident(n, 5, seed=n)
    model = gb.GreyBox(_rules(n), {"digit": net})
    out = model.predict(_data(n, 5))["total"]
    assert out.dtype == object and all(type(v) is int for v in out)
    assert out.tolist() == sums
    assert sums[0] == 2 * (10 ** n - 1)
    # and the log-likelihood of the true sums is about 0 (each digit sure)
    with torch.no_grad():
        lp = model(_data(n, 5)).log_prob("total", model._targets(
            {"total": sums}, 5).values["total"])
    assert bool((lp > -1e-6 * n).all())
    # the crisp evaluation of the rules on those digits is exact too
    kb = model.to_kb()
    cols = {f"{s}{k}": [int(d) for d in net.logits[:, j * n + k].argmax(1)]
            for j, s in enumerate("ab") for k in range(n)}
    cols.update({c: np.zeros(5) for c in _data(n, 1)})
    ev = gr.evaluate(kb, pd.DataFrame(cols))
    assert ev.values["total"].tolist() == sums and ev.values["na"].dtype == object


def test_log_prob_at_100_digits_equals_a_hand_written_carry_model():
    n, rows = 100, 3
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(rows, 2 * n, 10, generator=g)
    model = gb.GreyBox(_rules(n), {"digit": _Table(logits)})
    rng = np.random.default_rng(1)
    sums = [_number(d[0]) + _number(d[1]) for d in rng.integers(0, 10, size=(rows, 2, n))]
    with torch.no_grad():
        ours = model(_data(n, rows)).log_prob(
            "total", model._targets({"total": sums}, rows).values["total"])
    ref = _reference_log_prob(logits, n, sums)
    assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=1e-3)


def test_training_at_30_digits_moves_the_digits_toward_the_sums():
    n, rows = 30, 8
    net, sums = _confident(n, rows, seed=3)
    target = net.logits.detach().argmax(-1)
    learner = _Table(torch.zeros(rows, 2 * n, 10))
    model = gb.GreyBox(_rules(n), {"digit": learner})
    with torch.no_grad():
        before = float(model.loss(_data(n, rows), {"total": sums}))
    model.fit(_data(n, rows), {"total": [str(s) for s in sums]}, epochs=3, batch_size=4,
              lr=0.1, progress=False)
    with torch.no_grad():
        after = float(model.loss(_data(n, rows), {"total": sums}))
    assert after < before
    assert learner.logits.detach().argmax(-1).eq(target).float().mean() > 0.2


# ------------------------------------------------------------------- located refusals

_DIGITS = "input a: int 0..9\ninput b: int 0..9\n"


@pytest.mark.parametrize("text, match", [
    (f"input x: int 0..{10 ** 30}\noutput y: bool\nrule r: x > 2 -> y\n",
     r"1:7: 'x' is int 0..1e\+30, beyond ±2\*\*53: only int defines and outputs defined by "
     r"an expression may be that large \(inputs are read as float64\)"),
    (_DIGITS + f"define d: int 0..{10 ** 30} = {10 ** 29} * a + b\noutput y: bool\n"
     "rule r: d > 2 -> y\n",
     r"5:9: 'd' is int 0..1e\+30, beyond ±2\*\*53: it can only be read by int defines"),
    (_DIGITS + f"output y: bool\nrule r: a * {10 ** 20} > 2 -> y\n",
     r"4:13: number: a 21-digit number is too large \(integers are limited to "
     r"±2\*\*53\); beyond it only in the bounds and expressions of int defines"),
    (f"output y: int 0..{10 ** 20}\n",
     r"rules would score each of its values"),
    (f"input i: tensor\nneural d: int 0..{10 ** 20} = net(i)\n",
     r"a network's distribution would enumerate its values"),
])
def test_big_integers_where_they_cannot_be_exact_are_located_rule_errors(text, match):
    with pytest.raises(gr.RuleError, match=match):
        gr.parse(text)


def test_a_big_define_that_is_not_positional_is_refused_by_exact_inference():
    text = ("input i: tensor\nneural a: int 0..9 = net(i)\nneural b: int 0..9 = net(i)\n"
            f"output s: int 0..{10 ** 31}\ndefine s: int 0..{10 ** 31} = "
            f"{3 ** 60} * a + {7 ** 30} * b\n")
    model = gb.GreyBox(text, {"net": nn.Linear(1, 10)})
    x = {"i": torch.zeros(2, 1)}
    with pytest.raises(gb.ModelError, match=r"define 's'.*positional sums"):
        model.loss(x, {"s": [0, 3 ** 60]})
    # predict (crisp, exact Python ints) still decides it
    out = model.predict(x)["s"]
    assert out.tolist()[0] in {3 ** 60 * a + 7 ** 30 * b for a in range(10) for b in range(10)}


def test_the_probabilistic_traces_decision_of_a_big_sum_is_exact():
    # the most probable joint digits (max-product elimination), as Python ints
    n = 30
    net, sums = _confident(n, 3, seed=5)
    model = gb.GreyBox(_rules(n), {"digit": net})
    with torch.no_grad():
        decided = model(_data(n, 3)).decisions()["total"]
    assert decided.tolist() == sums


def test_validation_accuracy_of_a_big_sum_is_exact():
    n = 30
    net, sums = _confident(n, 4, seed=7)
    model = gb.GreyBox(_rules(n), {"digit": net})
    wrong = list(sums)
    wrong[1] += 10 ** 25          # one sum wrong in its 26th digit only
    history = model.fit(_data(n, 4), {"total": sums}, epochs=1, batch_size=4, lr=0.0,
                        validation=(_data(n, 4), {"total": wrong}), progress=False)
    assert history.epochs[-1]["val_total_accuracy"] == 0.75


def test_z3_reasons_with_big_integers_and_other_routes_refuse_by_name():
    text = ("input a: int 0..9\ninput b: int 0..9\n"
            f"output s: int 0..{10 ** 30}\ndefine s: int 0..{10 ** 30} = {10 ** 29} * a + b\n"
            "output y: bool\nrule r: a > 4 -> y\n")
    model = gb.GreyBox(text)
    row = pd.DataFrame({"a": [7], "b": [3]})
    assert model.predict(row)["s"].tolist() == [7 * 10 ** 29 + 3]
    assert gr.entails(model.kb, "a > 4 -> y", timeout=30)
    cf = gb.explain.counterfactual(model, row, output="y", backend="z3")
    assert model.predict(cf.row_after)["y"].tolist() == [False]
    with pytest.raises(gb.ModelError, match=r"'s' is int 0\.\.10+, beyond ±2\*\*53: the MILP "
                       r"backend \(HiGHS, in float64\) cannot hold it exactly"):
        gb.explain.counterfactual(model, row, output="y", backend="milp", level="input")
    with pytest.raises(gb.ModelError, match=r"'s' is 0\.\.10+, beyond ±2\*\*53: its values "
                       "cannot be listed one by one"):
        model.predict_proba(row, "s")
    with pytest.raises(gb.ModelError, match=r"'s' ranges beyond ±2\*\*53"):
        gb.explain.explain(model, row, output="s")


def test_crisp_evaluation_of_a_big_define_is_exact_with_any_integer_arithmetic():
    kb = gr.parse("input a: int 0..9\ninput b: int 1..9\n"
                  f"define s: int -{10 ** 40}..{10 ** 40} = {10 ** 30} * (a * b) + a % b "
                  f"- {10 ** 20} * max(a, b) + abs(a - b) + count(a > 3, b > 3)\n")
    ev = gr.evaluate(kb, {"a": [7, 0], "b": [3, 9]})
    want = [10 ** 30 * a * b + a % b - 10 ** 20 * max(a, b) + abs(a - b) + (a > 3) + (b > 3)
            for a, b in ((7, 3), (0, 9))]
    assert ev.values["s"].tolist() == want
    with pytest.raises(gr.DataError, match=r"defined variable 's': .* at row 0 is outside"):
        gr.evaluate(gr.parse(f"input a: int 0..9\ndefine s: int 0..{10 ** 25} = "
                             f"{10 ** 25} * a\n"), {"a": [2]})
