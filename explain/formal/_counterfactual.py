"""Counterfactuals: the closest variants of a row whose decision (what
:meth:`GreyBox.predict` returns) differs -- one, or several diverse by construction -- within
what a person asks (:mod:`._wishes`), polished (:mod:`._polish`) and verified by replaying
them through the decision function; for an additive output, variants whose number meets a
target (found on the threshold model of :mod:`._target`, replayed on the number)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd

from greybox.errors import ModelError, SolverError
from greybox.rules.engine import MISSING, timeout_seconds, z3_serialised

from .._parallel import per_row
from ._backend import _additive, _problem
from ._polish import Judge, Replay, _polish, drop_noise
from ._results import Counterfactual, Counterfactuals
from ._row import (
    concepts_after,
    distance,
    inputs_after,
    row_position,
    show,
)
from ._target import Target, _num, _threshold_model_for, target_of, value_on
from ._wishes import _check_names, _wishes, _within

__all__ = ["counterfactual", "counterfactuals"]


@per_row
@z3_serialised
def counterfactual(model, batch, row=None, output: str | None = None, *,
                   minimize: str = "count", immutable=(), level: str = "auto",
                   max_relus: int = 64, backend: str = "auto",
                   timeout: float = 10.0, target=None, allowed=None, increase_only=(),
                   decrease_only=(), cost=None, fill_missing: bool = False,
                   n_jobs: int | None = None, _replay=None) -> Counterfactual:
    """The closest variant of row ``row`` (its label in the data's index; default the first
    row) whose decision (what ``predict`` returns) differs.

    ``minimize="count"`` changes as few facts as possible; ``"l1"`` minimises the sum of
    absolute changes, each in units of the fact's spread (a changed bool, enum or neural
    class counts 1). Facts named in ``immutable`` keep their values; types and hard
    constraints are respected; residual logits (concept level) are held. Changed real
    values are pulled back to the threshold and rounded to the data's precision on the
    decided side; the result is checked by running the decision function
    (``verified``). ``level`` and ``backend`` as in :func:`reason`. ``timeout`` (seconds)
    bounds the solver's whole search, every call together; with Z3, a fact whose single
    change it cannot settle within its share is skipped (a SolverError only when the
    whole optimisation, needed then, runs out of time).

    What a person may ask beyond that -- hard constraints of the search, each checked
    again on the polished answer:

    - ``target``: the decision wanted (a value of a bool, enum or int output; default
      any value other than the row's); for an additive (regression) output, required:
      the condition its number must meet, ``"y >= 150"`` (comparisons with numbers
      joined by ``and``) or a range ``(lo, hi)``, ends included (``decision`` and
      ``new_decision`` are then the numbers ``predict`` returns before and after);
    - ``allowed={fact: (lo, hi)}``: a real or int input, when changed, lands within
      ``[lo, hi]`` (``None`` for an open end); ``{fact: [values]}``: a bool or enum fact
      changes only to one of those values;
    - ``increase_only=[...]`` / ``decrease_only=[...]``: real or int inputs that may only
      grow / shrink;
    - ``cost={fact: weight}``: a change of the fact counts ``weight`` times (default 1)
      in the objective, count or L1, so a costly fact changes only where cheaper ones
      cannot do it;
    - ``fill_missing``: an optional input missing in the row may be given a value (a
      filled-in value counts as one change, for ``"l1"`` too). By default it stays
      missing: a counterfactual never invents a value the row does not have, and never
      erases one it has.

    A fact may always keep its row value. Several diverse answers: :func:`counterfactuals`.
    Many rows: ``row`` a list of labels, ``n_jobs`` (joblib), as in :func:`reason`.

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
    >>> cf = gb.explain.counterfactual(model, model.batch({"age": [40], "income": [20000.0]}))
    >>> cf.new_decision, list(cf.changes.fact), cf.verified
    (True, ['income'], True)
    >>> cf = gb.explain.counterfactual(model, {"age": [15], "income": [20000.0]},
    ...                                allowed={"income": (35000, None)})
    >>> cf.row_after
    {'age': 18, 'income': 35000.0}
    """
    if _additive(model, output):
        return target_counterfactual(model, batch, row, output or model.kb.outputs[0], target, minimize=minimize,
                                     immutable=immutable, level=level, max_relus=max_relus,
                                     backend=backend, timeout=timeout, allowed=allowed,
                                     increase_only=increase_only,
                                     decrease_only=decrease_only, cost=cost,
                                     fill_missing=fill_missing)
    t0 = time.perf_counter()
    timeout = timeout_seconds(timeout)
    if minimize not in ("count", "l1"):
        raise ModelError(f"minimize must be 'count' or 'l1', got {minimize!r}")
    if isinstance(immutable, str):
        immutable = (immutable,)
    p, batch, output, row, immutable, wishes = _asked(
        model, batch, row, output, immutable, level=level, max_relus=max_relus,
        backend=backend, timeout=timeout, target=target, allowed=allowed,
        increase_only=increase_only, decrease_only=decrease_only, cost=cost,
        fill_missing=fill_missing)
    return _answer(model, p, batch, row, output, minimize, immutable, wishes, t0, _replay)


@per_row
@z3_serialised
def counterfactuals(model, batch, row=None, output: str | None = None, *, n: int = 5,
                    minimize: str = "count", immutable=(), level: str = "auto",
                    max_relus: int = 64, backend: str = "auto", timeout: float = 30.0,
                    target=None, allowed=None, increase_only=(), decrease_only=(),
                    cost=None, fill_missing: bool = False,
                    n_jobs: int | None = None, _replay=None) -> Counterfactuals:
    """Up to ``n`` counterfactuals of row ``row``, diverse by construction: each is the
    closest change (as :func:`counterfactual`, with the same options) that keeps at
    least one fact of every earlier answer's change set unchanged -- so no two answers
    change the same set of facts, and none is an earlier answer with more changes added.
    Each is verified through ``predict`` and checked against the options, as
    :func:`counterfactual`'s answer is.

    ``timeout`` (seconds) bounds the whole search, every answer together. Fewer than
    ``n`` answers come back when no further change set exists within the options
    (``stopped="exhausted"``: proved by the solver) or the time ran out (``"timeout"``);
    none at all raises the :class:`~greybox.ModelError` :func:`counterfactual` raises.
    A separate function rather than a flag of :func:`counterfactual`, because it returns
    another type: a :class:`Counterfactuals` sequence of :class:`Counterfactual`.
    Many rows: ``row`` a list of labels, ``n_jobs`` (joblib), as in :func:`reason`.

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox('''
    ... input income: real[0, 100000]
    ... input savings: real[0, 100000]
    ... input job: bool
    ... output approve: bool
    ... rule earns: income > 30000 -> approve
    ... rule saved: savings > 50000 -> approve
    ... ''', semantics="product")
    >>> cfs = gb.explain.counterfactuals(model, {"income": [20000.0], "savings": [0.0],
    ...                                          "job": [False]}, n=3)
    >>> [list(cf.changes.fact) for cf in cfs], cfs.stopped
    ([['income'], ['savings']], 'exhausted')
    >>> [model.predict(cf.row_after)["approve"].item() for cf in cfs]
    [True, True]
    """
    if _additive(model, output):
        return target_counterfactual(model, batch, row, output or model.kb.outputs[0], target, many=n,
                                     minimize=minimize, immutable=immutable, level=level,
                                     max_relus=max_relus, backend=backend, timeout=timeout,
                                     allowed=allowed, increase_only=increase_only,
                                     decrease_only=decrease_only, cost=cost,
                                     fill_missing=fill_missing)
    t0 = time.perf_counter()
    timeout = timeout_seconds(timeout)
    if minimize not in ("count", "l1"):
        raise ModelError(f"minimize must be 'count' or 'l1', got {minimize!r}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ModelError(f"n must be a whole number >= 1, got {n!r}")
    if isinstance(immutable, str):
        immutable = (immutable,)
    deadline = time.monotonic() + timeout
    p, batch, output, row, immutable, wishes = _asked(
        model, batch, row, output, immutable, level=level, max_relus=max_relus,
        backend=backend, timeout=timeout, target=target, allowed=allowed,
        increase_only=increase_only, decrease_only=decrease_only, cost=cost,
        fill_missing=fill_missing)
    answers, stopped = _diverse(model, p, batch, row, output, minimize, immutable, wishes,
                                n, deadline, _replay)
    return Counterfactuals(batch.index[row], output, p.decision, tuple(answers),
                           time.perf_counter() - t0, stopped)


def _asked(model, batch, row, output, immutable: tuple, *, level, max_relus, backend,
           timeout, target, allowed, increase_only, decrease_only, cost, fill_missing):
    """The row compiled for a counterfactual search (a backend that optimises) and the
    person's options checked and made into codes: ``(problem, batch, output, row,
    immutable, wishes)``, a fact missing in the row immutable unless ``fill_missing``."""
    p, batch, output, row = _problem(model, batch, row, output, level, max_relus, backend,
                                     timeout, optimise=True)
    _check_names(p, "immutable", immutable)
    wishes = _wishes(p, output, target, allowed, increase_only, decrease_only, cost,
                     fill_missing)
    if not fill_missing:   # a missing value stays missing
        immutable = (*immutable, *(n for n, v in p.facts.items() if v is MISSING))
    return p, batch, output, row, tuple(immutable), wishes


def _diverse(model, p, batch, row, output, minimize, immutable: tuple, wishes, n: int,
             deadline: float, replay) -> tuple[list, str]:
    """Up to ``n`` answers, each keeping a fact of every earlier one's change set, and why
    the search stopped (``"n"``, ``"exhausted"``, ``"timeout"``): the first answer's
    error is raised."""
    answers: list = []
    stopped = "n"
    while len(answers) < n:
        left = deadline - time.monotonic()
        if left <= 0.01:
            stopped = "timeout"
            break
        p.timeout = left
        ask = replace(wishes, exclude=tuple(frozenset(a.changes.fact) for a in answers))
        try:
            answers.append(_answer(model, p, batch, row, output, minimize,
                                   immutable, ask, time.perf_counter(), replay))
        except _NoneLeft:
            if not answers:
                raise
            stopped = "exhausted"
            break
        except SolverError:
            if not answers:
                raise
            stopped = "timeout"
            break
    return answers, stopped


class _NoneLeft(ModelError):
    """No change of the mutable facts within the wishes changes the decision."""


def _answer(model, p, batch, row, output, minimize, immutable, wishes, t0,
            replay: Replay | None = None) -> Counterfactual:
    """One counterfactual of the compiled row ``p`` within ``wishes``: solved, polished
    within the wishes and verified through the decision function (``replay``'s, where
    given)."""
    spreads = {n: float(model.spread(n)) for n in p.facts
               if n in model.feature_names}
    after = p.closest(minimize=minimize, immutable=set(immutable), spreads=spreads,
                      wishes=wishes)
    if after is None:
        raise _none_left(p, batch.index[row], output, immutable, wishes)
    facts = p.facts
    judge = Judge(model, p, batch, row, output, wishes, replay)
    drop_noise(facts, after, judge)
    changes = [{"fact": n, "before": show(p.kb, n, facts[n]), "after": show(p.kb, n, c)}
               for n, c in after.items() if c != facts[n]]

    _polish(model, p, changes, after, judge.applied, judge.applied_all, wishes)
    new_decision = judge.decision(after)
    _check_answer(p, batch.index[row], output, wishes, changes, after,
                  judge.reached(new_decision))
    return Counterfactual(batch.index[row], output, p.decision, new_decision,
                          pd.DataFrame(changes, columns=["fact", "before", "after"],
                                       dtype=object),
                          inputs_after(model, batch, row, after),
                          distance(model, p.kb, changes, facts, after, minimize, wishes.cost),
                          True, time.perf_counter() - t0, p.level,
                          p.assumptions(immutable), concepts_after(model.kb, after))


def _none_left(p, label, output: str, immutable, wishes) -> _NoneLeft:
    """The error of a search that found no change within ``wishes``: what was held and
    asked, and what the model decides there."""
    ranges = "".join(f"; {a}" for a in p.assumptions(immutable))
    held = f" (keeping {', '.join(immutable)})" if immutable else ""
    asked = []
    if wishes.target is not None:
        asked.append(f"to {wishes.target!r}")
    if wishes.ranges or wishes.values:
        asked.append("within the allowed changes")
    if wishes.exclude:
        asked.append(f"apart from {len(wishes.exclude)} earlier answer(s)")
    asked = "".join(f" {a}" for a in asked)
    return _NoneLeft(f"row {label!r}: no change of the mutable facts{held} "
                     "within their types and the hard constraints changes the decision of "
                     f"{output!r}{asked} (the model decides {p.decision!r} everywhere "
                     f"there{ranges}){p.why_none()}")


def _check_answer(p, label, output: str, wishes, changes: list, after: dict,
                  reached: bool) -> None:
    """That the polished answer changes the decision as asked when replayed (``reached``)
    and keeps every wish; an error otherwise (never handed out)."""
    if not reached:
        # never hand out a change that does not change predict
        why = (" with the residual's logits held; the residual follows the inputs, so use "
               "level='input'") if any(p.held(n) for n in p.facts) else ""
        to = f" to {wishes.target!r}" if wishes.target is not None else ""
        moves = ", ".join(f"{c['fact']}: {c['before']!r} -> {c['after']!r}" for c in changes)
        raise ModelError(f"row {label!r}: the solver's counterfactual ({moves}) "
                         f"does not change the decision of {output!r}{to} when applied{why}")
    broken = _within(p, wishes, after)
    if broken is not None:   # never hand out one outside what was asked
        raise SolverError(f"row {label!r}: the solver's counterfactual breaks "
                          f"what was asked: {broken}")


def target_counterfactual(model, batch, row, output, target, *, many: int | None = None,
                          **kw):
    """Counterfactuals that bring the additive output's value to ``target``: searched on
    the threshold model, replayed, polished and verified through ``predict``'s number."""
    goal = target_of(model.kb, output, target)
    b = model.batch(batch)
    pos = int(row_position(b.index, row))
    value = value_on(model, b, pos, output)
    if goal.holds(value):
        raise ModelError(f"row {b.index[pos]!r}: {output} = {_num(value)} already satisfies "
                         f"the target {goal.text!r}; a counterfactual changes that")
    dm, name, want = _threshold_model_for(model, goal, output, kw)
    replay = Replay(model, output, goal.holds)
    try:
        if many is None:
            cf = counterfactual(dm, b, row, name, target=want, _replay=replay, **kw)
            return _relabel(cf, goal, value)
        cfs = counterfactuals(dm, b, row, name, n=many, target=want, _replay=replay,
                                  **kw)
    except ModelError as err:   # said of the threshold model: say it of the output
        text = str(err).replace(f"{name!r} to {want!r}", f"{output!r} to {goal.text!r}")
        text = text.replace(f"decides {not want!r} everywhere", f"decides {output} outside "
                            "the target everywhere")
        raise type(err)(text) from None
    return replace(cfs, output=goal.text, decision=value,
                   answers=tuple(_relabel(a, goal, value) for a in cfs.answers))


def _relabel(cf, goal: Target, value):
    return replace(cf, output=goal.output, decision=value)
