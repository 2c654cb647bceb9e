"""Non-linear integer arithmetic (issue 23, item 2): ``a * b`` between int expressions,
``//``, ``%``, ``min``, ``max`` and ``abs`` on every backend.

The meaning is Python's (floor division; the remainder has the divisor's sign), checked
against Python itself: the language (parsing, the fast path = Lark, printing, the
builder, grounding), validation (a divisor that can be 0, results outside a define's
type or beyond 2**53, each located), crisp evaluation, Z3 (whose div/mod are Euclidean),
the MILP's linearisation (every operator solved at every operand value), the fuzzy
semantics, exact inference against brute-force enumeration (values, rule bodies,
gradients; a sum of products stays polynomial), and faithfulness: counterfactuals,
reasons and ``verify`` of both solvers replayed through ``predict``, on a fixed model
and on the fuzzer's models with arithmetic (``tests/explain/test_faithfulness_fuzz.py``,
``arith=True``).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
import z3
from torch import nn

import greybox as gb
import greybox.rules as gr
from greybox import functional as F
from greybox.rules import ast as A
from greybox.rules._intervals import interval, op_interval, value_set
from greybox.rules._parser import parse_fragment
from greybox.rules._z3 import arith_term
from tests.explain.test_faithfulness_fuzz import run_case
from tests.language.test_parser import _fast_agrees_with_lark

PY = {"//": lambda a, d: a // d, "%": lambda a, d: a % d, "min": min, "max": max,
      "abs": abs}
DIVISORS = [-4, -3, -2, -1, 1, 2, 3, 5]
INTS = """
input a: int -7..7
input b: int -3..3
input c: int 1..4
output y: bool
"""


# ------------------------------------------------------------------------- language


@pytest.mark.parametrize("text, tree", [
    ("a * b // c % 2", A.Arith("%", (A.Arith("//", (A.Mul(A.Var("a"), A.Var("b")),
                                                     A.Var("c"))), A.Num(2)))),
    ("a // (b * c)", A.Arith("//", (A.Var("a"), A.Mul(A.Var("b"), A.Var("c"))))),
    ("-a // 2", A.Arith("//", (A.Neg(A.Var("a")), A.Num(2)))),
    ("a - b % c", A.Sum((A.Var("a"), A.Arith("%", (A.Var("b"), A.Var("c")))), ("-",))),
    ("min(a, b, 3) + abs(a - b)", A.Sum((A.Arith("min", (A.Var("a"), A.Var("b"), A.Num(3))),
                                        A.Arith("abs", (A.Sum((A.Var("a"), A.Var("b")),
                                                              ("-",)),))), ("+",))),
])
def test_operators_parse_with_pythons_precedence_and_print_back(text, tree):
    e = parse_fragment(text, "expr")
    assert e == tree
    assert parse_fragment(gr.to_text(e), "expr") == e


def test_the_fast_path_builds_what_lark_builds_and_prints_round_trip():
    text = INTS + ("define q: int -7..7 = a // c - -a % c\n"
                   "rule r weight 2: a * b % 3 == 1 and a // c * 2 >= -b -> y\n"
                   "constraint k: a % (0 - c) <= 0\n")
    assert _fast_agrees_with_lark(text)
    assert not _fast_agrees_with_lark(INTS + "rule r: min(a, b) > 0 -> y")   # a call: Lark
    kb = gr.parse(INTS + "rule r: max(a // c, abs(b), a * b) % 4 != 2 -> y")
    assert gr.parse(gr.to_text(kb)) == kb


def test_the_builder_writes_the_operators():
    b = gr.Builder()
    a, bb = b.input("a", "int -7..7"), b.input("b", "int -3..3")
    c, y = b.input("c", "int 1..4"), b.output("y", bool)
    b.rule("r", (gr.minimum(a, bb) + gr.maximum(a // c, abs(bb)) - a * bb % c) > 1, y)
    assert b.build() == gr.parse(INTS + "rule r: min(a, b) + max(a // c, abs(b)) - "
                                        "a * b % c > 1 -> y")


def test_grounding_min_max_aggregates_index_arithmetic_and_a_family_named_min():
    kb = gr.parse("""
        set cell: 0..8
        input x[cell]: int 0..9
        input min(cell): int 0..1
        output y: bool
        define lo: int 0..9 = min(x[c] for c in cell)
        define hi: int 0..9 = max(x[0], x[c // 3 + 1] for c in 0..2)
        rule r(c in cell): x[c // 3 * 3 + c % 3] > lo and min(c) == 1 -> y
    """)
    assert gr.to_text(kb.variables["lo"].expr).startswith("min(`x[0]`, `x[1]`")
    assert gr.to_text(kb.variables["hi"].expr) == "max(" + ", ".join(["`x[0]`, `x[1]`"] * 3) + ")"
    assert A.variables(kb.rules["r(7)"].body) == ["x[7]", "lo", "min(7)"]   # a member


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize("rule, col, match", [
    ("rule r: a // b > 0 -> y", 14, r"'//' divides by b, which can be 0 \(its range is -3..3\)"),
    ("rule r: a % (c - 2) > 0 -> y", 14, r"'%' divides by c - 2, which can be 0"),
    ("rule r: a % count(a > 0) > 0 -> y", 13, r"divides by count\(a > 0\), which can be 0"),
    ("rule r: a * x > 1 -> y", 9, r"'\*' between two variable expressions needs integers"),
    ("rule r: abs(x) > 1 -> y", 13, r"'abs' needs integers .*got a number \(x\)"),
    ("rule r: abs(a, b) > 1 -> y", 9, r"'abs' takes one argument, got 2"),
    ("define d: int 50..60 = a * c", 24, r"the definition of 'd' takes values in -28..28, "
                                         r"never within int 50..60"),
    ("input g: int 0..1000000\nrule r: g * g * g > 1 -> y", 9,
     r"'\*': g \* g \* g can reach 0..1000000000000000000, beyond ±2\*\*53"),
])
def test_errors_are_located(rule, col, match):
    line = rule.count("\n") + 7
    with pytest.raises(gr.RuleError, match=match) as info:
        gr.parse(INTS + "input x: real\n" + rule)
    assert f"<rules>:{line}:{col}:" in str(info.value)


def test_a_divisor_whose_range_excludes_0_is_accepted_and_ranges_are_exact():
    kb = gr.parse(INTS + "rule r: a // (0 - c) + a % (b * b + 1) > 0 -> y")
    body = kb.rules["r"].body.left
    assert interval(body, kb.variables) == (-7 + 0, 7 + 9)
    # every bound is attained: the interval of each operator is exact over its operands
    for op in ("//", "%"):
        for d in ((1, 3), (-3, -1), (2, 2), (-4, -4)):
            vals = [PY[op](x, z) for x in range(-7, 8) for z in range(d[0], d[1] + 1)]
            assert op_interval(op, [(-7, 7), d]) == (min(vals), max(vals)), (op, d)
    assert op_interval("%", [(3, 5), (7, 7)]) == (3, 5)
    assert value_set(parse_fragment("c * c", "expr"), kb.variables) == (1, 4, 9, 16)


def test_a_define_that_may_leave_its_type_is_checks_finding_and_evaluations_error():
    kb = gr.parse(INTS + "define p: int -10..10 = a * b\nrule r: p > 3 -> y")
    report = gr.check(kb)
    (f,) = [f for f in report.findings if f.check == "define-out-of-domain"]
    assert "p can evaluate to" in f.message and "outside its type int -10..10" in f.message
    w = f.witness
    assert not -10 <= int(w["a"].iloc[0]) * int(w["b"].iloc[0]) <= 10
    with pytest.raises(gb.DataError, match=r"defined variable 'p': 21 at row 1 is outside"):
        gr.evaluate(kb, pd.DataFrame({"a": [1, 7], "b": [1, 3], "c": [1, 1]}))


# ----------------------------------------------------------------- crisp and Z3


def _all_rows() -> pd.DataFrame:
    return pd.DataFrame(list(itertools.product(range(-7, 8), range(-3, 4), range(1, 5))),
                        columns=list("abc"))


DEFINES = {
    "q": ("int -7..7", "a // c", lambda a, b, c: a // c),
    "qn": ("int -7..7", "a // (0 - c)", lambda a, b, c: a // -c),
    "r": ("int -3..3", "a % c", lambda a, b, c: a % c),
    "rn": ("int -3..3", "a % (0 - c)", lambda a, b, c: a % -c),
    "m": ("int -21..21", "a * b", lambda a, b, c: a * b),
    "sq": ("int 0..49", "a * a", lambda a, b, c: a * a),
    "lo": ("int -7..3", "min(a, b, 2)", lambda a, b, c: min(a, b, 2)),
    "hi": ("int -3..7", "max(a, b)", lambda a, b, c: max(a, b)),
    "ab": ("int 0..7", "abs(a)", lambda a, b, c: abs(a)),
    "mix": ("int -100..100", "-a // 2 * b + max(a % c, abs(b)) - min(a * b, c)",
            lambda a, b, c: -a // 2 * b + max(a % c, abs(b)) - min(a * b, c)),
}
DEFINED = gr.parse(INTS + "".join(f"define {n}: {t} = {e}\n" for n, (t, e, _) in
                                  DEFINES.items()))


def test_crisp_evaluation_is_pythons_arithmetic_on_every_row():
    rows = _all_rows()
    ev = gr.evaluate(DEFINED, rows)
    for name, (_, _, fn) in DEFINES.items():
        want = [fn(*r) for r in rows.itertuples(index=False)]
        assert np.asarray(ev.value(name)).tolist() == want, name


def test_z3_is_converted_to_pythons_floor_semantics():
    for op, a, d in itertools.product(("//", "%"), range(-9, 10), DIVISORS):
        for divisor in (z3.IntVal(d), z3.Int("d")):   # a constant and a variable divisor
            term = z3.substitute(arith_term(op, [z3.IntVal(a), divisor]),
                                 (z3.Int("d"), z3.IntVal(d)))
            assert z3.simplify(term).as_long() == PY[op](a, d), (op, a, d)
    enc = gr.Z3Encoding(DEFINED)
    for row in _all_rows().iloc[::11].itertuples(index=False):
        at = [(enc.const(k), z3.IntVal(v)) for k, v in zip("abc", row)]
        for name, (_, _, fn) in DEFINES.items():
            assert z3.simplify(z3.substitute(enc.var(name), *at)).as_long() == fn(*row)


@pytest.mark.parametrize("prop, holds", [
    ("a % c >= 0 and a % c < c", True),
    ("a % (0 - c) <= 0", True),
    ("a // c * c + a % c == a", True),
    ("min(a, b) <= max(a, b) and abs(a) >= a", True),
    ("a * b <= 20", False),          # 7 * 3
    ("-7 // 2 == -3", False),        # floor: -4
])
def test_entails_decides_arithmetic_exactly(prop, holds):
    assert gr.entails(DEFINED, prop).holds is holds


# --------------------------------------------------------------------------- MILP


def _solved(p, e, values: dict, lo_hi: dict):
    """min and max of ``e`` with each input fixed to its value."""
    for k, v in values.items():
        p.lb[k] = p.ub[k] = float(v)
    out = []
    for sign in (1.0, -1.0):
        x = p.solve(e.scale(sign))
        out.append(round(e.const + sum(c * x[k] for k, c in e.terms.items())))
    for k, (lo, hi) in lo_hi.items():
        p.lb[k], p.ub[k] = lo, hi
    return out


@pytest.mark.parametrize("op", ["*", "//", "%", "min", "max", "abs"])
def test_the_milp_linearisation_is_exact_at_every_value(op):
    from greybox.explain.formal.milp import Program

    for d_range in ([(-3, -1)] if op in ("//", "%") else []) + [(1, 4)] + \
            ([(-3, 4)] if op not in ("//", "%") else []):
        p = Program()
        ka, kd = p.var("a", -7, 7, True), p.var("d", *d_range, True)
        la, ld = gb.explain.formal.milp.Lin({ka: 1.0}), gb.explain.formal.milp.Lin({kd: 1.0})
        e = p.product(la, ld) if op == "*" else p.arith(op, [la] if op == "abs" else [la, ld])
        box = {ka: (-7, 7), kd: d_range}
        for a, d in itertools.product(range(-7, 8), range(d_range[0], d_range[1] + 1)):
            want = a * d if op == "*" else PY[op](*([a] if op == "abs" else [a, d]))
            assert _solved(p, e, {ka: a, kd: d}, box) == [want, want], (op, a, d)


# ------------------------------------------------------------------ fuzzy semantics


def test_torch_arithmetic_and_distributions_are_pythons():
    a = torch.arange(-9.0, 10.0).repeat_interleave(len(DIVISORS))
    d = torch.tensor([float(x) for x in DIVISORS]).repeat(19)
    for op in ("//", "%", "min", "max"):
        want = [PY[op](int(x), int(z)) for x, z in zip(a, d)]
        assert F.arith(op, [a, d]).tolist() == want, op
    assert F.arith("abs", [a]).tolist() == [abs(x) for x in a.tolist()]
    pa, pd_ = torch.softmax(torch.randn(2, 5), -1), torch.softmax(torch.randn(2, 3), -1)
    va, vd = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]), torch.tensor([-2.0, 1.0, 3.0])
    for op in ("*", "//", "%", "min", "max"):
        probs, values = F.arith_distribution(op, [(pa, va), (pd_, vd)])
        want = {}
        for (i, x), (j, z) in itertools.product(enumerate(va.tolist()), enumerate(vd.tolist())):
            v = x * z if op == "*" else PY[op](int(x), int(z))
            want[v] = want.get(v, 0.0) + pa[:, i] * pd_[:, j]
        assert values.tolist() == sorted(want)
        assert torch.allclose(probs, torch.stack([want[v] for v in sorted(want)], -1))


class _Ident(nn.Module):
    def forward(self, x):
        return x


NEURAL = """
set s: 0..2
input logit[s]: tensor[5]
neural d[i in s]: int -2..2 = net(logit[i])
define v: int -10..10 = d[0] * d[1] + d[2] % 3 - max(d[0], d[2]) // 2 + abs(d[1])
define w: int -4..4 = d[0] * d[2]
output o: bool
rule r: min(d[0], d[1]) * d[2] >= 1 -> o
"""


def _brute(p: torch.Tensor):
    """Exact distribution of v and w, and P(body of r), over all 125 joint values."""
    vals = range(-2, 3)
    v, w = torch.zeros(p.shape[0], 21, dtype=p.dtype), torch.zeros(p.shape[0], 9, dtype=p.dtype)
    body = torch.zeros(p.shape[0], dtype=p.dtype)
    for (i, x), (j, y), (k, z) in itertools.product(enumerate(vals), repeat=3):
        pr = p[:, 0, i] * p[:, 1, j] * p[:, 2, k]
        v[:, x * y + z % 3 - max(x, z) // 2 + abs(y) + 10] += pr
        w[:, x * z + 4] += pr
        body = body + pr * (min(x, y) * z >= 1)
    return v, w, body


@pytest.mark.parametrize("semantics", ["probabilistic", "product"])
def test_distributions_over_neural_ints_are_exact(semantics):
    """Exact inference: the marginals and a rule body's probability equal enumeration;
    the fuzzy semantics give an operation over independent distributions its exact
    distribution too (a sum of them is its expectation, as for any sum)."""
    model = gb.GreyBox(NEURAL, {"net": _Ident()}, semantics=semantics)
    logits = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0))
    trace = model({"logit": logits})
    v, w, body = _brute(torch.softmax(logits.double(), -1))
    assert torch.allclose(trace.values["w"].double(), w, atol=1e-6)
    if semantics == "probabilistic":
        assert torch.allclose(trace.values["v"].double(), v, atol=1e-6)
        assert torch.allclose(trace.bodies["r"].double(), body, atol=1e-6)
    else:
        expect = (v * torch.arange(-10, 11, dtype=v.dtype)).sum(-1)
        assert torch.allclose(trace.values["v"].double(), expect, atol=1e-5)


def test_a_network_value_scaled_by_a_constant_keeps_its_fuzzy_meaning():
    """Only a product of two variables becomes a distribution under the fuzzy semantics:
    ``10 * d > 35`` stays the smooth comparison of the expected value it was before
    (as ``10 * d + 0 > 35`` is), not the exact mass of the values above 3.5."""
    model = gb.GreyBox("""
        input logit: tensor[5]
        neural d: int 0..4 = net(logit)
        output o: bool
        rule r: 10 * d > 35 -> o
        rule s: 10 * d + 0 > 35 -> o
        rule t: d * d > 9 -> o
    """, {"net": _Ident()}, semantics="product")
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    bodies = model({"logit": logits}).bodies
    assert torch.allclose(bodies["r"], bodies["s"])
    assert torch.allclose(bodies["t"], torch.softmax(logits, -1)[:, 4])   # d = 4 only


def test_exact_gradients_equal_enumerations():
    model = gb.GreyBox(NEURAL, {"net": _Ident()}, semantics="probabilistic")
    logits = torch.randn(3, 3, 5, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([10, 12, 13])     # indices of v's values 0, 2 and 3
    mine = logits.clone().requires_grad_(True)
    model({"logit": mine}).log_prob("v", target).sum().backward()
    ref = logits.double().clone().requires_grad_(True)
    v, _, _ = _brute(torch.softmax(ref, -1))
    torch.log(v[torch.arange(3), target]).sum().backward()
    assert torch.allclose(mine.grad.double(), ref.grad, atol=1e-5)


def _random_expr(rng, depth: int):
    """Random integer arithmetic over d0, d1 (int -2..2) and p (int 1..3): its text and
    the Python function of ``(d0, d1, p)`` it means (a divisor is p or a constant)."""
    if depth == 0 or rng.random() < 0.25:
        leaf = str(rng.choice(["d0", "d1", "p", "2", "-1"]))
        at = {"d0": 0, "d1": 1, "p": 2}.get(leaf)
        return leaf, (lambda v, at=at, c=leaf: v[at] if at is not None else int(c))
    kind = str(rng.choice(["*", "+", "-", "//", "%", "min", "max", "abs"]))
    a, fa = _random_expr(rng, depth - 1)
    if kind in ("//", "%"):
        d = str(rng.choice(["p", "2", "-3"]))
        fd = (lambda v: v[2]) if d == "p" else (lambda v, c=int(d): c)
        return f"({a}) {kind} {d}", lambda v: PY[kind](fa(v), fd(v))
    if kind == "abs":
        return f"abs({a})", lambda v: abs(fa(v))
    b, fb = _random_expr(rng, depth - 1)
    ops = {"*": lambda x, y: x * y, "+": lambda x, y: x + y, "-": lambda x, y: x - y,
           "min": min, "max": max}
    text = f"{kind}({a}, {b})" if kind in ("min", "max") else f"({a}) {kind} ({b})"
    return text, lambda v: ops[kind](fa(v), fb(v))


@pytest.mark.parametrize("seed", range(8))
def test_random_arithmetic_is_the_same_function_on_every_backend(seed):
    """A random expression over network values: exact inference's distribution is the
    enumeration of Python's values; crisp evaluation, Z3 and the MILP compute Python's
    value at every point."""
    rng = np.random.default_rng(seed)
    text, meaning = _random_expr(rng, 3)
    points = list(itertools.product(range(-2, 3), range(-2, 3), range(1, 4)))
    fn = {pt: meaning(pt) for pt in points}
    lo, hi = min(fn.values()), max(fn.values())
    decl = ("input logit[s]: tensor[5]\nneural d[i in s]: int -2..2 = net(logit[i])\n"
            "input lp: tensor[3]\nneural p: int 1..3 = net(lp)\n")
    formula = text.replace("d0", "d[0]").replace("d1", "d[1]")
    model = gb.GreyBox(f"set s: 0..1\n{decl}define y: int {lo}..{hi} = {formula}\n"
                       f"output o: bool\nrule r: y > {lo} -> o", {"net": _Ident()},
                       semantics="probabilistic")
    logits, lp = torch.randn(3, 2, 5), torch.randn(3, 3)
    got = model({"logit": logits, "lp": lp}).values["y"].double()
    pd0, pp = torch.softmax(logits.double(), -1), torch.softmax(lp.double(), -1)
    want = torch.zeros(3, hi - lo + 1, dtype=torch.float64)
    for (x0, x1, q), v in fn.items():
        want[:, v - lo] += pd0[:, 0, x0 + 2] * pd0[:, 1, x1 + 2] * pp[:, q - 1]
    assert torch.allclose(got, want, atol=1e-6), text
    kb = gr.parse(f"input d0: int -2..2\ninput d1: int -2..2\ninput p: int 1..3\n"
                  f"define y: int {lo}..{hi} = {text}\noutput o: bool\nrule r: y > {lo} -> o")
    rows = pd.DataFrame(points, columns=["d0", "d1", "p"])
    assert np.asarray(gr.evaluate(kb, rows).value("y")).tolist() == [fn[pt] for pt in points]
    assert gr.entails(kb, f"y >= {lo} and y <= {hi}").holds, text
    pt = points[int(rng.integers(len(points)))]      # Z3 pins the value at one point
    fix = " and ".join(f"{n} == {v}" for n, v in zip(("d0", "d1", "p"), pt))
    assert gr.entails(kb, f"{fix} -> y == {fn[pt]}").holds, (text, pt)


def test_a_sum_of_products_stays_polynomial():
    """12 products of 24 digits (6^24 joint values): each product and partial sum is a
    variable of its own, so the tables hold a few hundred thousand entries."""
    m = 12
    model = gb.GreyBox(f"""
        set s: 0..{2 * m - 1}
        input logit[s]: tensor[6]
        neural d[i in s]: int 0..5 = net(logit[i])
        define t: int 0..{25 * m} = sum(d[2 * i] * d[2 * i + 1] for i in 0..{m - 1})
        output o: bool
        rule r: t >= {9 * m} -> o
    """, {"net": _Ident()}, semantics="probabilistic")
    logits = torch.randn(3, 2 * m, 6, generator=torch.Generator().manual_seed(2))
    got = model({"logit": logits}).bodies["r"].double()
    p = torch.softmax(logits.double(), -1)
    dist = torch.zeros(3, 25 * m + 1, dtype=torch.float64)
    dist[:, 0] = 1.0
    for i in range(m):                 # the reference: convolution, product by product
        prod = torch.zeros(3, 26, dtype=torch.float64)
        for x, y in itertools.product(range(6), repeat=2):
            prod[:, x * y] += p[:, 2 * i, x] * p[:, 2 * i + 1, y]
        new = torch.zeros_like(dist)
        for k in range(26):
            new[:, k:] += dist[:, :dist.shape[1] - k] * prod[:, k:k + 1]
        dist = new
    assert torch.allclose(got, dist[:, 9 * m:].sum(1), atol=1e-6)


# ------------------------------------------------------------------- faithfulness


MODEL = INTS + """
define q: int -7..7 = a // c
define r: int -3..3 = a % (0 - c)
rule r0 weight 1.5: a * b > 4 -> y
rule r1 weight 1.0: q + r >= 1 -> not y
rule r2 weight 0.7: min(a, b) < -1 and max(a, b) >= 2 -> y
rule r3 weight 0.9: abs(a - b) % 3 == 0 -> not y
"""


def _replay(model, rows, pred, backend):
    level = "input" if backend == "milp" else "auto"
    for i in (0, 57, 130, 244, 401):
        row, decision = rows.iloc[[i]], pred[i]
        try:
            cf = gb.explain.counterfactual(model, row, backend=backend, level=level)
        except gb.ModelError as err:
            assert "no change" in str(err)
        else:
            assert cf.verified
            assert model.predict(cf.row_after)["y"].iloc[0] != decision, (backend, i, cf)
        reason = gb.explain.reason(model, row, backend=backend, level=level)
        held = np.ones(len(rows), bool)
        for k, v in reason.facts.items():
            held &= rows[k].to_numpy() == v
        assert (pred[held] == decision).all(), (backend, i, reason)   # every completion


@pytest.mark.parametrize("semantics", ["probabilistic", "product", "godel", "lukasiewicz"])
def test_formal_results_replay_through_predict_on_every_row(semantics):
    model = gb.GreyBox(MODEL, semantics=semantics)
    rows = _all_rows()
    pred = model.predict(rows)["y"].to_numpy()
    assert (pred == gr.evaluate(model.to_kb(), rows).decisions["y"].to_numpy()).all()
    a, b, c = (rows[k].to_numpy() for k in "abc")
    for prop, premise in [
        ("a * b > 4 and abs(a - b) % 3 != 0 and a // c + a % (0 - c) < 1 -> y",
         (a * b > 4) & (np.abs(a - b) % 3 != 0) & (a // c + a % -c < 1)),
        ("min(a, b) >= 1 -> y", np.minimum(a, b) >= 1),
    ]:
        for backend in ("z3", "milp"):
            v = gb.explain.verify(model, prop, backend=backend,
                                  level="input" if backend == "milp" else "auto")
            assert v.holds == bool(pred[premise].all()), (prop, backend)
            if not v.holds:
                cx = v.counterexample[["a", "b", "c"]].astype(int)
                assert not model.predict(cx)["y"].iloc[0], (prop, backend, cx)
    for backend in ("z3", "milp"):
        _replay(model, rows, pred, backend)


ARITH_SEEDS = list(range(6))


@pytest.mark.parametrize("seed", ARITH_SEEDS, ids=[f"arith-seed-{s}" for s in ARITH_SEEDS])
def test_fuzzed_models_with_arithmetic_are_faithful(seed):
    run_case(seed, arith=True)


def test_the_arithmetic_generator_builds_its_models():
    from tests.explain.test_faithfulness_fuzz import Case

    texts = [Case(seed, arith=True).text for seed in range(20)]     # none refused
    ops = ("*", "//", "%", "min(", "max(", "abs(")
    assert all(any(op in t for op in ops) for t in texts)
    assert all(any(op in t for t in texts) for op in ops)
