"""Verification: a property of the whole model's decisions proved, or a counterexample
found and re-run through the decision function (moved off a threshold by a hair where
floats round the exact witness to the other side)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from greybox.rules import ast as A
from greybox.rules import entails, evaluate, parse_formula
from greybox.rules.engine import expr_to_text, timeout_seconds, z3_serialised

from .._parallel import per_property
from ._backend import BACKENDS, choose, resolve_level
from ._results import Verification

__all__ = ["verify"]


@per_property
@z3_serialised
def verify(model, prop, *, level: str = "auto", max_relus: int = 64,
           backend: str = "auto", timeout: float = 30.0,
           n_jobs: int | None = None) -> Verification:
    """Prove ``prop`` for the whole model's decisions (what ``predict`` returns), or find a
    counterexample.

    ``level="auto"`` (default): the input level where every network (neural concepts and
    residual) is a Linear/ReLU network over table inputs, the concept level otherwise.
    ``level="concept"``: the rules with the learned weights, thresholds and biases, every
    neural concept and residual logit free -- the property then holds whatever the
    networks say. ``level="input"``: networks over table inputs made of Linear/ReLU
    layers (and the residual) are encoded exactly, so the property is proved for the
    function ``predict`` computes over every input (``max_relus`` bounds the encoding,
    ``timeout`` the solver; inputs declared without bounds range over the training
    range, listed in ``assumptions``). Returns a :class:`Verification` (an
    :class:`~greybox.rules.Entailment`): a counterexample row when it fails, re-checked
    by running the decision function on it (``confirmed``).

    Many properties: ``prop`` a list gives a list of verifications in that order;
    ``n_jobs`` runs them through ``joblib.Parallel`` (as :func:`reason`'s rows).

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox('''
    ... input age: int 0..120
    ... input income: real[0, 100000]
    ... output approve: bool
    ... rule earns: income > ~30000 -> approve
    ... constraint minors: age < 18 -> not approve
    ... ''', semantics="product")
    >>> gb.explain.verify(model, "age < 18 -> not approve").holds
    True
    >>> gb.explain.verify(model, "income > 40000 -> approve").holds
    False
    """
    timeout = timeout_seconds(timeout)
    level = resolve_level(level, model, max_relus)
    kb = model.to_kb()
    if isinstance(prop, str) and model.kb.program is not None:
        # families and quantifiers ground against the model's relational rules (the
        # learned copy holds the grounded statements only)
        prop = parse_formula(prop, model.kb)
    if level == "concept" and model.residual is None:
        return _entailed(model, kb, prop, timeout)
    formula = parse_formula(prop, kb)
    text = prop if isinstance(prop, str) else expr_to_text(formula)
    b = choose(backend, level, model)
    row, assumed = b.refute(model, formula, level=level, max_relus=max_relus, timeout=timeout)
    if row is None:
        return Verification(text, True, assumptions=assumed)
    if level == "concept":   # neural values and residual logits come with the witness
        row, confirmed = _concept_witness(model, kb, formula, row)
        return Verification(text, False, row, confirmed, assumed)
    return _refuted(model, kb, formula, text, row, assumed, b, level=level,
                    max_relus=max_relus, timeout=timeout)


def _entailed(model, kb, prop, timeout: float) -> Verification:
    """Verification at the concept level without a residual: :func:`entails` over the
    learned rules, a counterexample re-run through the decision function."""
    e = entails(kb, prop, bias=model.bias_table(), timeout=timeout)
    if e.holds or e.confirmed:
        return Verification(e.property, e.holds, e.counterexample, e.confirmed)
    # the exact witness sits on a threshold that floats round to its other side
    # (x + 0.69 * y > 12.73 with y = 12.73 / 0.69): a row a hair away breaks it
    formula = parse_formula(prop, kb)
    row, confirmed = _concept_witness(model, kb, formula, e.counterexample)
    return Verification(e.property, False, row, confirmed)


def _refuted(model, kb, formula, text: str, row: pd.DataFrame, assumed: tuple, b, *,
             level: str, max_relus: int, timeout: float) -> Verification:
    """An input-level counterexample ``row`` found by backend ``b``, replayed through the
    decision function (asked again of Z3 where the MILP's does not replay)."""
    shown = _replayed(model, kb, formula, row)
    if shown is None and b.name != "z3":
        # the program over-approximates: its witness may sit on a threshold's wrong side;
        # Z3 is exact
        exact, _ = BACKENDS["z3"].refute(model, formula, level=level, max_relus=max_relus,
                                         timeout=timeout)
        if exact is None:
            return Verification(text, True, assumptions=assumed)
        row, shown = exact, _replayed(model, kb, formula, exact)
    if shown is None:
        return Verification(text, False, row, False, assumed)
    return Verification(text, False, shown, True, assumed)


def _concept_witness(model, kb, formula, row: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """A concept-level counterexample (inputs, neural values, residual logits) and whether
    the decision function, with those values held, breaks the property on it -- or on a
    copy moved off a threshold by a hair (:func:`_near`), its decisions recomputed."""
    names = [n for n in kb.inputs if not isinstance(kb.variables[n].type, A.TensorType)]
    names += list(kb.neural)
    for trial in _near(model, kb, row):
        ev = evaluate(kb, trial[names], bias=_bias_with(model, kb, trial))
        if not bool(ev.holds(A.Not(formula)).iloc[0]) or bool(ev.infeasible.iloc[0]):
            continue   # a counterexample is where the property is known false
        shown = trial.copy()
        for name in kb.decided:
            if name in shown:
                shown[name] = ev.decisions[name].to_numpy()
        return shown, True
    return row, False


def _replayed(model, kb, formula, row: pd.DataFrame) -> pd.DataFrame | None:
    """The counterexample as the decision function sees it (the networks' values and the
    decisions added), moved off a threshold by a hair where the exact witness sits on one
    (floats round it to the other side); None when no nearby row breaks the property."""
    for trial in _near(model, kb, row):
        ev, _ = model.decision.evaluate(model.batch(trial))
        if not bool(ev.holds(A.Not(formula)).iloc[0]) or bool(ev.infeasible.iloc[0]):
            continue   # a counterexample is where the property is known false
        shown = trial.copy()
        for name in kb.neural:   # what the real networks said on the counterexample
            shown[name] = ev._env[name]
        for name in kb.decided:
            shown[name] = ev.decisions[name].to_numpy()
        return shown
    return None


def _near(model, kb, row: pd.DataFrame):
    """The row, then copies with its real inputs moved by a hair in random directions
    (growing from 1e-9 to 1e-3 of each input's spread, within its range)."""
    yield row
    reals = [n for n in row.columns if n in kb.variables and kb.variables[n].role == "input"
             and isinstance(kb.variables[n].type, A.RealType)]
    if not reals:
        return
    rng = np.random.default_rng(0)
    for scale in (1e-9, 1e-7, 1e-5, 1e-3):
        for _ in range(6):
            moved = row.copy()
            for n in reals:
                lo, hi, _ = model.input_range(n)
                step = scale * max(model.spread(n), 1e-12) * rng.choice((-1.0, 1.0))
                moved[n] = np.clip(moved[n].astype(float) + step, lo, hi)
            yield moved


def _bias_with(model, kb, row: pd.DataFrame) -> dict:
    """The model's biases plus the residual logits a concept-level witness holds."""
    bias = dict(model.bias_table())
    for name in kb.decided:
        t = kb.variables[name].type
        if isinstance(t, A.BoolType):
            if f"residual:{name}" in row:
                bias[name] = bias.get(name, 0.0) + float(row[f"residual:{name}"].iloc[0])
        elif any(f"residual:{name}={v}" in row for v in A.domain_values(t)):
            base = bias.get(name) or {}
            bias[name] = {v: base.get(v, 0.0) + float(row[f"residual:{name}={v}"].iloc[0])
                          for v in A.domain_values(t)}
    return bias
