"""Reasons: a subset-minimal set of a row's facts that guarantees its decision (what
:meth:`GreyBox.predict` returns) -- or, for an additive output, whether its number meets a
target -- each drop tried first on sampled completions through ``predict``, then proved by
the solver."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from greybox.errors import ModelError, SolverError
from greybox.rules import ast as A
from greybox.rules.engine import closure, timeout_seconds, z3_serialised

from .._parallel import per_row
from ._backend import _additive, _problem
from ._results import Reason
from ._row import row_position, sampled_refuted, show
from ._target import Target, _num, _threshold_model_for, target_of, value_on
from ._wishes import _check_names

__all__ = ["reason"]


@per_row
@z3_serialised
def reason(model, batch, row=None, output: str | None = None, *,
           level: str = "auto", max_relus: int = 64, backend: str = "auto",
           timeout: float = 10.0, free=(), n_jobs: int | None = None,
           target=None) -> Reason:
    """A subset-minimal set of the facts of row ``row`` (its label in the data's index;
    default the first row) that guarantees its decision.

    The decision is the one :meth:`GreyBox.predict` returns, and the reason is a statement
    about that function: with the named facts fixed, ``predict`` decides the same for
    every value of the other inputs (within their types, the hard constraints, and --
    for inputs declared without bounds -- the training range, listed in
    ``assumptions``). Deletion-based: each fact is dropped when sampled completions
    through ``predict`` do not refute it and the solver proves the decision still
    follows from the rest (unsat cores drop several at once).

    ``level="auto"`` (default): the input level where every network (neural concepts and
    residual) is a Linear/ReLU network over table inputs within ``max_relus``, the
    concept level otherwise. ``level="concept"``: facts are table inputs, neural concept
    values and residual logits (``residual:NAME``), each free when dropped.
    ``level="input"``: networks and residual are encoded exactly, so the facts are inputs
    only and the reason holds *through* the networks (``timeout`` bounds each solver
    call). ``backend``: ``"z3"``, ``"milp"`` (HiGHS through ``scipy.optimize.milp``; input
    level) or ``"auto"`` (HiGHS at the input level where its encoding applies).

    ``target``: for an additive (regression) output, the condition on its number the
    reason is about -- ``"y >= 150"``, comparisons with numbers joined by ``and``, or a
    range ``(lo, hi)`` (ends included, ``None`` open): the reason guarantees that the
    target holds (or, where it does not hold on the row, that it does not). Required for
    such an output (see :mod:`greybox.explain.formal._target`).

    ``free``: facts the reason may not use -- they take every value their types and the
    hard constraints allow. It asks *what else* forces the decision: in a sudoku solver,
    ``free="digit[5]"`` gives the cells whose values, through the constraints, force
    ``solution[5]`` (the cell's own reading would otherwise be the whole reason). When
    the other facts do not force the decision, a :class:`~greybox.ModelError` says so
    with a value of the free facts under which the decision differs.

    Many rows: ``row`` a list of labels gives a list of reasons, one per label in that
    order, the same as one call per row; ``n_jobs`` runs them through
    ``joblib.Parallel`` (worker processes by default; ``joblib.parallel_config`` picks
    Dask or Ray; see docs/scaling.md). An error names its row; ``timeout`` holds per row.

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox('''
    ... input age: int 0..120
    ... input income: real[0, 100000]
    ... output approve: bool
    ... rule earns: income > 30000 -> approve
    ... constraint minors: age < 18 -> not approve
    ... ''', semantics="product")
    >>> r = gb.explain.reason(model, model.batch({"age": [15], "income": [50000.0]}))
    >>> r.decision, r.facts
    (False, {'age': 15})
    """
    if _additive(model, output):
        return target_reason(model, batch, row, output or model.kb.outputs[0], target, level=level,
                             max_relus=max_relus, backend=backend, timeout=timeout, free=free)
    if target is not None:
        raise ModelError("target= is for additive (regression) outputs; a reason explains "
                         "the row's decision")
    t0 = time.perf_counter()
    timeout = timeout_seconds(timeout)
    p, batch, output, row = _problem(model, batch, row, output, level, max_relus, backend,
                                     timeout)
    # each named once, in the order given
    free = tuple(dict.fromkeys((free,) if isinstance(free, str) else free))
    _check_names(p, "free", free)
    keep = {n: v for n, v in p.facts.items() if n not in free}
    _check_forced(p, keep, free, batch.index[row], output)
    keep = _minimal(model, p, p.core(keep), output)
    # every accepted set was proved by the solver when accepted (the full set first)
    facts = {n: show(p.kb, n, v) for n, v in p.facts.items() if n in keep}
    return Reason(batch.index[row], output, p.decision, facts, True,
                  time.perf_counter() - t0, p.level, p.assumptions(keep), free)


def _check_forced(p, keep: dict, free: tuple, label, output: str) -> None:
    """That the facts ``keep`` (all but the ``free`` ones) force the row's decision: a
    ModelError with the free facts' values under which it differs, or a SolverError
    where the facts do not determine it."""
    witness = p.differs(keep)
    if witness is not None and free:
        values = " and ".join(f"{n} = {show(p.kb, n, witness[n])!r}" for n in free)
        raise ModelError(f"row {label!r}: the other facts do not force "
                         f"{output} = {p.decision!r}: with {values} the hard constraints "
                         "hold and the decision differs")
    if witness is not None:
        raise SolverError(f"row {label!r}: the facts do not determine the "
                          "decision (a value sits within the solver's tolerance of a "
                          "threshold)")


def _minimal(model, p, keep: dict, output: str) -> dict:
    """A subset-minimal part of the facts ``keep`` (which force the decision) that still
    forces it: each fact dropped where sampled completions through ``predict`` do not
    refute the drop and the solver proves it."""
    # try dropping the facts the output depends on least directly first
    direct = closure(p.kb, [v for r in p.kb.rules_for(output) for v in A.variables(r.body)])
    order = sorted(keep, key=lambda n: (n in direct, list(p.facts).index(n)))
    rng = np.random.default_rng(0)
    inputs_only = all(n in p.kb.variables and p.kb.variables[n].role == "input"
                      for n in p.facts)
    # sampled completions through predict refute most drops (where the facts are inputs
    # only: concept values cannot be sampled through predict), every remaining drop in
    # one predict call. A drop refuted once stays refuted as ``keep`` shrinks (the
    # refuting completion is still one), so only the others are sampled again, after
    # each accepted drop
    refuted: set = set()
    fresh = False
    for i, name in enumerate(order):
        if name not in keep:
            continue
        if inputs_only and not fresh:
            rest = [n for n in order[i:] if n in keep and n not in refuted]
            flags = sampled_refuted(model, p.kb, p.facts,
                                    [{k: v for k, v in keep.items() if k != n} for n in rest],
                                    output, p.decision, rng)
            refuted |= {n for n, f in zip(rest, flags) if f}
            fresh = True
        if name in refuted:
            continue
        trial = {k: v for k, v in keep.items() if k != name}
        if p.forces(trial):
            keep = p.core(trial)
            fresh = False
    return keep


def target_reason(model, batch, row, output, target, **kw):
    """A reason why the additive output's value satisfies (or not) ``target``, proved on
    the threshold model and checked on sampled completions through ``predict``."""
    goal = target_of(model.kb, output, target)
    b = model.batch(batch)
    pos = row_position(b.index, row)
    dm, name, want = _threshold_model_for(model, goal, output, kw)
    r = reason(dm, b, row, name, **kw)
    value = value_on(model, b, int(pos), output)
    holds = bool(r.decision) == want
    if goal.holds(value) != holds:
        raise SolverError(f"row {b.index[pos]!r}: {output} = {value!r} and the target "
                          f"{goal.text!r} disagree with the threshold model (a value within "
                          "float64 rounding of a threshold)")
    _check_sampled(model, b, int(pos), output, goal, holds, r.facts)
    return replace(r, output=f"{goal.text} ({output} = {_num(value)})", decision=holds)


def _check_sampled(model, batch, row: int, output: str, goal: Target, holds: bool,
                   facts: dict, n: int = 512) -> None:
    """Sampled completions of the inputs a reason leaves free, through ``predict``: none
    may change whether the target holds (a SolverError if one does)."""
    kb = model.kb
    free = [i for i in kb.inputs if i not in facts
            and not isinstance(kb.variables[i].type, A.TensorType)]
    if not free or kb.networks or any(str(f).startswith("residual:") for f in facts):
        return   # (a concept-level reason holds the residual's value, which inputs move)
    rng = np.random.default_rng(0)
    sub = batch.take(torch.as_tensor([row]))
    cols = {}
    for name in kb.inputs:
        t = kb.variables[name].type
        if name not in free:
            cols[name] = np.repeat(np.asarray(sub.columns[name]), n)
            if isinstance(t, A.EnumType):
                cols[name] = pd.Categorical.from_codes(cols[name].astype(int),
                                                       categories=list(t.values))
            continue
        if isinstance(t, A.BoolType):
            cols[name] = rng.integers(0, 2, n).astype(bool)
        elif isinstance(t, A.EnumType):
            cols[name] = pd.Categorical.from_codes(rng.integers(0, len(t.values), n),
                                                   categories=list(t.values))
        else:
            lo, hi, _ = model.input_range(name)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                return
            x = rng.uniform(lo, hi, n)
            cols[name] = np.round(x) if isinstance(t, A.IntType) else x
    got = model.predict(pd.DataFrame(cols), on_infeasible="flag")
    ok = ~got["infeasible"].to_numpy()
    values = got[output].to_numpy()[ok]
    bad = [v for v in values if goal.holds(v) != holds]
    if bad:
        raise SolverError(f"row {batch.index[row]!r}: a sampled completion gives {output} = "
                          f"{float(bad[0])!r}, against the reason for {goal.text!r}")
