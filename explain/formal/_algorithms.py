"""Reasons, counterfactuals and verification, written once over the backend protocol.

Each speaks about the model's decision function -- what :meth:`GreyBox.predict` returns --
and is checked against it: a reason's dropped facts are first tried on sampled
completions through ``predict``, a counterfactual is polished (unneeded changes put back,
pulled to the threshold, rounded to the data's precision) and verified by running the
decision function, a counterexample is re-run through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from greybox.errors import ModelError, SolverError
from greybox.rules import (
    MISSING,
    closure,
    entails,
    evaluate,
    expr_to_text,
    parse_formula,
    timeout_seconds,
    z3_serialised,
)
from greybox.rules import ast as A

from .._parallel import per_property, per_row
from ._backend import BACKENDS, choose, resolve_level
from ._protocol import NO_WISHES, Wishes
from ._results import Counterfactual, Counterfactuals, Reason, Verification
from ._row import (
    change_range,
    concepts_after,
    decision_on,
    decisions_on,
    distance,
    inputs_after,
    num,
    person_step,
    pull_back,
    round_changes,
    row_position,
    sampled_refuted,
    show,
)

__all__ = ["counterfactual", "counterfactuals", "reason", "verify"]


def _problem(model, batch, row, output, level, max_relus, backend, timeout, *,
             optimise=False):
    output = output or model.kb.outputs[0]
    if output not in model.kb.variables or not model.kb.variables[output].output:
        raise ModelError(f"{output!r} is not an output (outputs: {', '.join(model.kb.outputs)})")
    batch = model.batch(batch)
    if batch.n == 0:
        raise ModelError("no rows to explain")
    row = row_position(batch.index, row)
    level = resolve_level(level, model, max_relus)
    b = choose(backend, level, model, optimise=optimise)
    p = b.problem(model, batch, int(row), output, level=level, max_relus=max_relus,
                  timeout=timeout)
    return p, batch, output, row


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
        from ._target import target_reason

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
    unknown = [n for n in free if n not in p.facts]
    if unknown:
        raise ModelError(f"free names {unknown[0]!r}, which is not a fact of the row "
                         f"(facts: {', '.join(p.facts)})")
    keep = {n: v for n, v in p.facts.items() if n not in free}
    witness = p.differs(keep)
    if witness is not None and free:
        values = " and ".join(f"{n} = {show(p.kb, n, witness[n])!r}" for n in free)
        raise ModelError(f"row {batch.index[row]!r}: the other facts do not force "
                         f"{output} = {p.decision!r}: with {values} the hard constraints "
                         "hold and the decision differs")
    if witness is not None:
        raise SolverError(f"row {batch.index[row]!r}: the facts do not determine the "
                          "decision (a value sits within the solver's tolerance of a "
                          "threshold)")
    keep = p.core(keep)
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
        if p.differs(trial) is None:
            keep = p.core(trial)
            fresh = False
    # every accepted set was proved by the solver when accepted (the full set first)
    facts = {n: show(p.kb, n, v) for n, v in p.facts.items() if n in keep}
    return Reason(batch.index[row], output, p.decision, facts, True,
                  time.perf_counter() - t0, p.level, p.assumptions(keep), free)


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
        from ._target import target_counterfactual

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
    p, batch, output, row = _problem(model, batch, row, output, level, max_relus, backend,
                                     timeout, optimise=True)
    _check_names(p, "immutable", immutable)
    wishes = _wishes(p, output, target, allowed, increase_only, decrease_only, cost,
                     fill_missing)
    if not fill_missing:   # a missing value stays missing
        immutable = (*immutable, *(n for n, v in p.facts.items() if v is MISSING))
    return _answer(model, p, batch, row, output, minimize, tuple(immutable), wishes, t0,
                   _replay)


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
        from ._target import target_counterfactual

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
    p, batch, output, row = _problem(model, batch, row, output, level, max_relus, backend,
                                     timeout, optimise=True)
    _check_names(p, "immutable", immutable)
    wishes = _wishes(p, output, target, allowed, increase_only, decrease_only, cost,
                     fill_missing)
    if not fill_missing:   # a missing value stays missing
        immutable = (*immutable, *(n for n, v in p.facts.items() if v is MISSING))
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
                                   tuple(immutable), ask, time.perf_counter(), _replay))
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
    return Counterfactuals(batch.index[row], output, p.decision, tuple(answers),
                           time.perf_counter() - t0, stopped)


@dataclass(frozen=True)
class Replay:
    """Where a counterfactual is replayed: ``model``'s decision function, its value of
    ``output``, accepted where ``accept(value)`` (an additive output's target, found on
    a threshold model but checked on the number ``predict`` returns)."""

    model: object
    output: str
    accept: Callable


def _additive(model, output) -> bool:
    kb = model.kb
    return (output or (kb.outputs[0] if kb.outputs else None)) in kb.additive


class _NoneLeft(ModelError):
    """No change of the mutable facts within the wishes changes the decision."""


def _check_names(p, what: str, names) -> None:
    unknown = [n for n in names if n not in p.facts]
    if unknown:
        raise ModelError(f"{what} names {unknown[0]!r}, which is not a fact of the row "
                         f"(facts: {', '.join(p.facts)})")


def _names(names) -> tuple:
    return (names,) if isinstance(names, str) else tuple(names)


def _wishes(p, output, target, allowed, increase_only, decrease_only, cost,
            fill_missing: bool = False) -> Wishes:
    """The person's options, checked against the row's facts and made into codes."""
    kb = p.kb
    if target is not None:
        t_out = kb.variables[output].type
        values = A.domain_values(t_out)
        if target not in values or (isinstance(t_out, A.BoolType)
                                    and not isinstance(target, (bool, np.bool_))):
            shown = ", ".join(map(repr, list(values)[:10]))
            raise ModelError(f"target {target!r} is not a value of the output {output!r} "
                             f"(values: {shown})")
        d = A.domain(t_out)
        target = d.decode(d.code(target))
        if target == p.decision:
            raise ModelError(f"target {target!r}: the row is already decided {target!r}; "
                             "a counterfactual changes the decision")
    allowed = dict(allowed or {})
    cost = dict(cost or {})
    inc, dec = _names(increase_only), _names(decrease_only)
    _check_names(p, "increase_only", inc)
    _check_names(p, "decrease_only", dec)
    _check_names(p, "allowed", allowed)
    _check_names(p, "cost", cost)
    both = set(inc) & set(dec)
    if both:
        raise ModelError(f"{sorted(both)[0]!r} is both increase_only and decrease_only "
                         "(name it in immutable to keep it)")

    def measured(n):
        return n in kb.variables and kb.variables[n].role == "input" and \
            isinstance(kb.variables[n].type, (A.RealType, A.IntType))

    ranges, values = {}, {}
    for n, spec in allowed.items():
        t = kb.variables[n].type if n in kb.variables else None
        if measured(n):
            if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
                raise ModelError(f"allowed[{n!r}] must be (lo, hi) for the numeric input "
                                 f"{n!r}, got {spec!r}")
            lo, hi = (None if v is None else float(v) for v in spec)
            if lo is not None and hi is not None and lo > hi:
                raise ModelError(f"allowed[{n!r}] = {spec!r}: lo is above hi")
            ranges[n] = (lo, hi)
        elif t is not None and A.is_finite_type(t) and not p.held(n):
            spec = [spec] if isinstance(spec, (str, bool, int)) else list(spec)
            bad = [v for v in spec if v not in A.domain_values(t)]
            if bad:
                raise ModelError(f"allowed[{n!r}] names {bad[0]!r}, which is not a value of "
                                 f"{n!r} (values: {', '.join(map(repr, A.domain_values(t)))})")
            d = A.domain(t)
            values[n] = frozenset(d.code(v) for v in spec)
        else:
            raise ModelError(f"allowed names {n!r}, which is not a real, int, bool or enum "
                             "fact of the row")
    for n in inc + dec:
        if not measured(n):
            raise ModelError(f"{'increase_only' if n in inc else 'decrease_only'} names "
                             f"{n!r}, which is not a real or int input")
        if p.facts[n] is MISSING:
            raise ModelError(f"{'increase_only' if n in inc else 'decrease_only'} names "
                             f"{n!r}, which is missing in the row")
        x0 = float(p.facts[n])
        lo, hi = ranges.get(n, (None, None))
        if n in inc:
            lo = x0 if lo is None else max(lo, x0)
        else:
            hi = x0 if hi is None else min(hi, x0)
        ranges[n] = (lo, hi)
    for n, w in cost.items():
        try:
            w = float(w)
        except (TypeError, ValueError):
            w = float("nan")
        if not (np.isfinite(w) and w > 0):
            raise ModelError(f"cost[{n!r}] must be a positive number, got {cost[n]!r}")
        cost[n] = w
    return Wishes(target, ranges, values, cost, fill_missing=bool(fill_missing))


def _within(p, wishes: Wishes, after: dict) -> str | None:
    """Which wish a polished answer breaks (in words), or None."""
    changed = {n for n in after if after[n] != p.facts[n]}
    for n in sorted(changed):
        if n in wishes.ranges and after[n] is not MISSING:
            lo, hi = wishes.ranges[n]
            v = float(after[n])
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                return f"{n} = {v!r} outside the allowed range [{lo}, {hi}]"
        if n in wishes.values and after[n] not in wishes.values[n]:
            return f"{n} = {show(p.kb, n, after[n])!r} is not an allowed value"
    for earlier in wishes.exclude:
        if earlier <= changed:
            return f"it changes all of an earlier answer's facts ({', '.join(sorted(earlier))})"
    return None


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
        raise _NoneLeft(f"row {batch.index[row]!r}: no change of the mutable facts{held} "
                        "within their types and the hard constraints changes the decision of "
                        f"{output!r}{asked} (the model decides {p.decision!r} everywhere "
                        f"there{ranges}){p.why_none()}")
    facts = p.facts

    judge, said = (model, output) if replay is None else (replay.model, replay.output)

    def reached(got) -> bool:
        if replay is not None:
            return got is not None and bool(replay.accept(got))
        if wishes.target is not None:
            return got == wishes.target
        return got is not None and got != p.decision

    def applied(trial):
        return applied_all([trial])[0]

    def applied_all(trials):
        return [reached(got) for got in decisions_on(judge, batch, row, said, trials)]

    # solver noise is not a change -- unless the decision needs it: on a row whose sum
    # sits exactly on a threshold (0.1 + 0.2 + 0.3 > 0.6) the closest change is that small
    noise = {n: facts[n] for n, code in after.items()
             if isinstance(code, float) and code != facts[n] and facts[n] is not MISSING
             and abs(code - float(facts[n])) <= 1e-9 * max(1.0, abs(float(facts[n])))}
    if noise:
        trial = {**after, **noise}
        if applied(trial) or (not applied(after)
                              and any(trial[n] != facts[n] for n in trial)):
            after.update(noise)
    changes = [{"fact": n, "before": show(p.kb, n, facts[n]), "after": show(p.kb, n, c)}
               for n, c in after.items() if c != facts[n]]

    _polish(model, p, changes, after, applied, applied_all, wishes)
    new_decision = decision_on(judge, batch, row, said, after)
    if not reached(new_decision):
        # never hand out a change that does not change predict
        why = (" with the residual's logits held; the residual follows the inputs, so use "
               "level='input'") if any(p.held(n) for n in p.facts) else ""
        to = f" to {wishes.target!r}" if wishes.target is not None else ""
        moves = ", ".join(f"{c['fact']}: {c['before']!r} -> {c['after']!r}" for c in changes)
        raise ModelError(f"row {batch.index[row]!r}: the solver's counterfactual ({moves}) "
                         f"does not change the decision of {output!r}{to} when applied{why}")
    broken = _within(p, wishes, after)
    if broken is not None:   # never hand out one outside what was asked
        raise SolverError(f"row {batch.index[row]!r}: the solver's counterfactual breaks "
                          f"what was asked: {broken}")
    return Counterfactual(batch.index[row], output, p.decision, new_decision,
                          pd.DataFrame(changes, columns=["fact", "before", "after"],
                                       dtype=object),
                          inputs_after(model, batch, row, after),
                          distance(model, p.kb, changes, facts, after, minimize, wishes.cost),
                          True, time.perf_counter() - t0, p.level,
                          p.assumptions(immutable), concepts_after(model.kb, after))


def _polish(model, p, changes: list, after: dict, applied, applied_all,
            wishes: Wishes = NO_WISHES) -> None:
    """A solver's counterfactual made into values a person can apply, each step checked by
    the decision function: changes that are not needed put back; a real change that
    stops within the solver's tolerance of a threshold pushed over it; real changes
    pulled back to the threshold, then rounded to the data's precision on the decided
    side -- each within ``wishes``' ranges. Updates ``changes`` and ``after`` in place."""
    kb, facts = p.kb, p.facts

    def limits(n, v):
        lo, hi = change_range(model, kb, n, v)
        a, b = wishes.ranges.get(n, (None, None))
        return (lo if a is None else max(lo, a)), (hi if b is None else min(hi, b))

    if applied(after):
        for change in sorted(changes, key=lambda c: abs(num(c["after"]) - num(c["before"]))):
            trial = dict(after)
            trial[change["fact"]] = facts[change["fact"]]
            if applied(trial):
                after.update(trial)
        changes[:] = [c for c in changes if after[c["fact"]] != facts[c["fact"]]]
    reals = [c["fact"] for c in changes
             if c["fact"] in kb.variables and isinstance(kb.variables[c["fact"]].type,
                                                         A.RealType)
             and facts[c["fact"]] is not MISSING]   # a filled-in value is not pushed
    # pushed by growing hairs, each real alone first (a change can sit on two
    # thresholds, one the push must cross and one it must not), then all together
    base = dict(after)
    groups = [[n] for n in reals] + ([reals] if len(reals) > 1 else [])
    for k in range(10):
        if not reals or applied(after):
            break
        pushed = {}
        for n in reals:
            step = float(base[n]) - float(facts[n])
            moved = float(base[n]) + np.sign(step) * max(abs(float(facts[n])), 1.0) \
                * 1e-9 * 10 ** k
            lo, hi = limits(n, float(base[n]))
            pushed[n] = float(np.clip(moved, lo, hi))
        trials = [{**base, **{n: pushed[n] for n in group}} for group in groups]
        for trial, ok in zip(trials, applied_all(trials)):   # decided in one evaluation
            if ok:
                after.update(trial)
                break
    if applied(after):
        pull_back(kb, changes, facts, after, applied_all, steps=24,
                  precision=lambda n: person_step(model, n) / 4
                  if kb.variables[n].role == "input" else 0.0,
                  limits=limits)
    round_changes(model, kb, facts, after, changes, applied_all, limits=limits)


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
        e = entails(kb, prop, bias=model.bias_table(), timeout=timeout)
        if e.holds or e.confirmed:
            return Verification(e.property, e.holds, e.counterexample, e.confirmed)
        # the exact witness sits on a threshold that floats round to its other side
        # (x + 0.69 * y > 12.73 with y = 12.73 / 0.69): a row a hair away breaks it
        formula = parse_formula(prop, kb)
        row, confirmed = _concept_witness(model, kb, formula, e.counterexample)
        return Verification(e.property, False, row, confirmed)
    formula = parse_formula(prop, kb)
    text = prop if isinstance(prop, str) else expr_to_text(formula)
    b = choose(backend, level, model)
    row, assumed = b.refute(model, formula, level=level, max_relus=max_relus, timeout=timeout)
    if row is None:
        return Verification(text, True, assumptions=assumed)
    if level == "concept":   # neural values and residual logits come with the witness
        row, confirmed = _concept_witness(model, kb, formula, row)
        return Verification(text, False, row, confirmed, assumed)
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
