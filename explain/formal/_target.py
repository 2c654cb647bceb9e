"""Formal results about an additive (regression) output: a *target* on its number.

An additive output's value is a number (``bias + sum(weight * [body]) + residual``, an
int's rounded halves up, clipped to declared bounds), so a reason or counterfactual asks
about a condition on it -- ``"y >= 150"``, ``"y > 100 and y <= 200"`` or a range
``(lo, hi)`` (both ends included, ``None`` open). Each comparison of the value is one of
the score, ``s >= t`` or ``s > t`` (the rounding and the bounds moved into ``t``), and
``s > t`` is a bool decided by the same rules and residual with its bias less ``t``
(``s >= t``: less the float below ``t``). The reason or counterfactual is then found on
that model of bools -- the same backends, the same algorithms -- and every answer is
replayed through the original model's :meth:`~greybox.GreyBox.predict`: a counterfactual
is accepted, polished and verified by the number ``predict`` returns; a reason is
checked on sampled completions through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from greybox import rules as gr
from greybox.errors import ModelError
from greybox.rules import ast as A

__all__ = ["Target", "target_of"]


@dataclass(frozen=True)
class Target:
    """A condition on an additive output's value: ``text`` as written back; ``atoms``
    a conjunction of ``(op, number)`` comparisons of the value."""

    output: str
    text: str
    atoms: tuple

    def holds(self, value) -> bool:
        """Whether the output's value ``value`` satisfies the target."""
        if value is None:
            return False
        v = float(value)
        ops = {">=": v.__ge__, ">": v.__gt__, "<=": v.__le__, "<": v.__lt__,
               "==": v.__eq__, "!=": v.__ne__}
        return all(ops[op](c) for op, c in self.atoms)


_FLIP = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "==": "==", "!=": "!="}


def target_of(kb, output: str, target) -> Target:
    """The target asked for an additive output: rule text comparing it with numbers
    (joined by ``and``), or a ``(lo, hi)`` range."""
    if target is None:
        raise ModelError(f"{output!r} is a number the rules add up (a regression output): "
                         f"say which values count with target=, e.g. target='{output} >= "
                         f"150' or target=(100, 200)")
    if isinstance(target, (tuple, list)):
        if len(target) != 2 or all(v is None for v in target):
            raise ModelError(f"a target range for {output!r} is (lo, hi) with at least one "
                             f"end, got {target!r}")
        atoms = []
        for op, v in ((">=", target[0]), ("<=", target[1])):
            if v is not None:
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    v = math.nan
                if math.isnan(v):
                    raise ModelError(f"target range ends for {output!r} must be numbers, got "
                                     f"{target!r}")
                atoms.append((op, v))
        text = " and ".join(f"{output} {op} {c:g}" for op, c in atoms)
        return _non_empty(Target(output, text, tuple(atoms)), f"range {tuple(target)!r}")
    if not isinstance(target, str):
        raise ModelError(f"target for {output!r} must be rule text such as '{output} >= "
                         f"150' or a (lo, hi) range, got {target!r}")
    expr = gr.parse_formula(target, kb)
    parts = expr.args if isinstance(expr, A.And) else (expr,)
    atoms = []
    for e in parts:
        atom = _atom(e, output)
        if atom is None:
            raise ModelError(f"target {target!r}: each part must compare {output!r} with a "
                             f"number ('{output} >= 150'), joined by 'and'; got "
                             f"{gr.engine.expr_to_text(e)!r}")
        atoms.append(atom)
    return _non_empty(Target(output, target.strip(), tuple(atoms)), repr(target.strip()))


def _non_empty(target: Target, shown: str) -> Target:
    """``target``, unless no number satisfies its ends (``(5, 1)``, ``y > 3 and y < 3``):
    a ModelError naming the target and its ends (a reason or counterfactual for it would
    speak of nothing)."""
    lows = [(c, op == ">") for op, c in target.atoms if op in (">=", ">", "==")]
    highs = [(c, op == "<") for op, c in target.atoms if op in ("<=", "<", "==")]
    if lows and highs:
        lo, lo_strict = max(lows, key=lambda x: (x[0], x[1]))
        hi, hi_strict = min(highs, key=lambda x: (x[0], not x[1]))
        if lo > hi or lo == hi and (lo_strict or hi_strict):
            raise ModelError(f"target {shown} for {target.output!r} holds for no number: "
                             f"its lower end {lo:g}{' (excluded)' * lo_strict} is not below "
                             f"its upper end {hi:g}{' (excluded)' * hi_strict}")
    return target


def _number(e):
    if isinstance(e, A.Num):
        return float(e.value)
    if isinstance(e, A.Neg) and isinstance(e.operand, A.Num):
        return -float(e.operand.value)
    return None


def _atom(e, output: str):
    if not isinstance(e, A.Compare):
        return None
    if isinstance(e.left, A.Var) and e.left.name == output and _number(e.right) is not None:
        return e.op, _number(e.right)
    if isinstance(e.right, A.Var) and e.right.name == output and _number(e.left) is not None:
        return _FLIP[e.op], _number(e.left)
    return None


# ------------------------------------------------------------ the value as score tests
def _score_tests(t, op: str, c: float):
    """``value op c`` as a formula over score tests: a bool, or ("not"?, kind, threshold)
    items combined -- returned as a function of a test -> expression builder."""
    def ge(c):   # value >= c
        if isinstance(t, A.IntType):
            k = math.ceil(c)
            if k <= t.lo:
                return True
            if k > t.hi:
                return False
            return (">=", k - 0.5)
        if t.lo is not None and c <= t.lo:
            return True
        if t.hi is not None and c > t.hi:
            return False
        return (">=", c)

    def gt(c):   # value > c
        if isinstance(t, A.IntType):
            return ge(math.floor(c) + 1)
        if t.lo is not None and c < t.lo:
            return True
        if t.hi is not None and c >= t.hi:
            return False
        return (">", c)

    def neg(x):
        return (not x) if isinstance(x, bool) else ("not", x)

    if op == ">=":
        return [ge(c)]
    if op == ">":
        return [gt(c)]
    if op == "<=":
        return [neg(gt(c))]
    if op == "<":
        return [neg(ge(c))]
    if op == "==":
        return [ge(c), neg(gt(c))]
    return [("or", neg(ge(c)), gt(c))]   # !=


def threshold_model(model, target: Target):
    """A copy of ``model`` whose output ``__target`` is a bool that holds where the
    additive output's value satisfies ``target``: one bool ``OUTPUT__k`` per score test
    ``s > t_k``, decided by the output's rules (learned values) and residual with the
    bias ``b - t_k``."""
    output = target.output
    learned = model.to_kb()
    tests, formula, items = _tests_of(learned.variables[output].type, target)
    # one score test: that bool is the output (every backend decides it), the target its
    # True (or False, negated); else an output defined by the tests (Z3)
    single = len(items) == 1 and not isinstance(items[0], bool) and (
        items[0][0] != "or" and (items[0][0] != "not" or not isinstance(items[0][1], bool)))
    want = not (single and items[0][0] == "not")
    name = next(iter(tests.values())) if single else "__target"
    kb = gr.KnowledgeBase(_statements(learned, output, tests, formula, name, single))
    dm = _tested(model, learned, kb, output, tests)
    return dm.eval(), name, want


def _tests_of(t, target: Target) -> tuple[dict, object, list]:
    """The score tests of ``target`` on an output of type ``t``: ``(tests, formula,
    items)``, ``tests`` threshold -> the name of its bool, ``formula`` the target over
    them, ``items`` the tests as :func:`_score_tests` gives them."""
    output = target.output
    tests: dict[float, str] = {}

    def build(item):
        if isinstance(item, bool):
            return A.BoolConst(item)
        if item[0] == "not":
            return A.Not(build(item[1]))
        if item[0] == "or":
            return A.Or((build(item[1]), build(item[2])))
        op, c = item
        # s >= c is s > (the float below c): the bool's ties go to False
        thr = float(np.nextafter(c, -np.inf)) if op == ">=" else float(c)
        if thr not in tests:
            tests[thr] = f"{output}__{len(tests)}"
        return A.Var(tests[thr])

    items = [item for op, c in target.atoms for item in _score_tests(t, op, c)]
    conj = [build(item) for item in items]
    formula = conj[0] if len(conj) == 1 else A.And(tuple(conj))
    return tests, formula, items


def _statements(learned, output: str, tests: dict, formula, name: str,
                single: bool) -> list:
    """The learned statements with the output replaced by one bool per test (the output's
    rules concluding each) and, for several tests, the output ``name`` defined by
    ``formula``."""
    statements = []
    own = [r for r in learned.rules.values() if r.head.name == output]
    for s in learned.statements:
        if isinstance(s, A.OutputDecl) and s.name == output:
            continue
        if isinstance(s, A.DefineDecl) and s.name == output:
            continue
        if isinstance(s, A.Rule) and s.head.name == output:
            continue
        statements.append(s)
    for var in tests.values():
        statements.append(A.OutputDecl(var, A.BoolType()) if single else
                          A.DefineDecl(var, A.BoolType()))
        for r in own:
            statements.append(replace(r, name=f"{r.name}__{var}",
                                      head=replace(r.head, name=var), span=None))
    if not single:
        statements.append(A.OutputDecl(name, A.BoolType()))
        statements.append(A.DefineDecl(name, A.BoolType(), formula))
    return statements


def _tested(model, learned, kb, output: str, tests: dict):
    """The model of ``kb`` (the tests' bools) with ``model``'s networks, residual,
    statistics and biases; each test's bias the output's less its threshold."""
    from greybox import GreyBox

    residual = {}
    for d in learned.decided:
        net = model.residual_for(d)
        if net is None:
            continue
        if d == output:
            residual.update({var: net for var in tests.values()})
        else:
            residual[d] = net
    networks = {n: model.network(n) for n in kb.networks}
    dm = GreyBox(kb, networks, semantics=model.semantics, residual=residual or None,
                 temperature=model.temperature,
                 scale_inputs=[n for n in model.scaled_networks if n in kb.networks])
    with torch.no_grad():
        for s in model.STATISTICS:
            getattr(dm, s).copy_(getattr(model, s))
        for d in learned.decided:
            if d != output:
                dm.decisions_bias(d).copy_(model.decisions_bias(d))
        b = float(model.decisions_bias(output).detach().double().cpu())
        for thr, var in tests.items():
            # float64: the bias less the threshold, as exactly as the decision needs it
            dm.replace_bias(var, torch.tensor(b - thr, dtype=torch.float64,
                                              device=model.device))
    dm.to(model.device)
    return dm


# ------------------------------------------------------------------ reason, counterfactual
def _threshold_model_for(model, goal: Target, output: str, kw: dict):
    """:func:`threshold_model`, with ``kw["backend"]`` set to Z3 where the target tests the
    output more than once (the MILP decides one test: asked for by name, an error)."""
    dm, name, want = threshold_model(model, goal)
    if name == "__target" and kw.get("backend", "auto") == "milp":
        raise ModelError(f"target {goal.text!r} tests {output!r} more than once: the MILP "
                         "backend decides one test; use backend='z3'")
    if name == "__target":
        kw["backend"] = "z3"
    return dm, name, want


def value_on(model, batch, row: int, output: str):
    """The number ``predict`` returns for ``output`` on the row."""
    from ._row import decision_on

    return decision_on(model, batch, row, output, {})


def _num(v) -> str:
    return f"{float(v):.6g}"
