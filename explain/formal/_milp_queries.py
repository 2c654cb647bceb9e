"""The questions asked of a compiled decision (:func:`~._milp_encoding.compile_decision`):
may it differ with some inputs fixed, and the closest change of the inputs that changes
it -- the counterfactual objective, L1 or fewest changes, within a person's wishes."""

from __future__ import annotations

import numpy as np

from greybox.rules import ast as A
from greybox.rules.engine import MISSING

from ._milp_encoding import _Compiler
from ._milp_program import Lin, _lin
from ._protocol import NO_WISHES, Wishes

__all__ = ["assumptions", "closest_change", "differs"]


def _fix(comp: _Compiler, name: str, code, lb: list, ub: list) -> None:
    """Pin input ``name`` to ``code`` in the bound arrays ``lb``/``ub`` (an optional input
    to missing, ``MISSING``, or to present with that value)."""
    if name in comp.missing:
        (m,) = comp.missing[name].terms
        lb[m] = ub[m] = 1.0 if code is MISSING else 0.0
        if code is MISSING:
            return   # its value is free: read nowhere
    t = comp.kb.variables[name].type
    if isinstance(t, A.EnumType):
        at = A.domain(t).index_of(code)
        for k, h in enumerate(comp.onehot[name]):
            (i,) = h.terms
            lb[i] = ub[i] = 1.0 if k == at else 0.0
        return
    (i,) = comp.inputs[name].terms
    lb[i] = ub[i] = float(code)


def _decode(comp: _Compiler, x: np.ndarray) -> dict:
    """The inputs' codes in a solution ``x`` of the program."""
    out = {}
    for name, e in comp.inputs.items():
        if name in comp.missing and x[next(iter(comp.missing[name].terms))] > 0.5:
            out[name] = MISSING
            continue
        d = A.domain(comp.kb.variables[name].type)
        if isinstance(d.type, A.EnumType):
            out[name] = d.code_at(int(np.argmax([x[next(iter(h.terms))]
                                                  for h in comp.onehot[name]])))
        else:
            (i,) = e.terms
            # HiGHS may overstep a bound by its feasibility tolerance: the input's range
            # (for one whose row value lies outside it: that value, or within the range)
            lo, hi = comp.p.lb[i], comp.p.ub[i]
            if name in comp.outside:
                inside, lo, hi, at = comp.outside[name]
                if x[inside] < 0.5:
                    lo = hi = at
            v = min(max(float(x[i]), lo), hi)
            out[name] = d.code(d.decode(v))   # bools and ints rounded
    return out


def _goal(comp: _Compiler, output: str, decision, target=None) -> Lin:
    """A binary expression that is 1 when ``output``'s decision is not ``decision`` (is
    ``target``, where one is given)."""
    t = comp.kb.variables[output].type
    if target is not None:
        if isinstance(t, A.BoolType):
            d = comp.decisions[output]
            return d if target is True else comp.p.not_(d)
        return comp.onehot[output][A.domain(t).index(target)]
    if isinstance(t, A.BoolType):
        d = comp.decisions[output]
        return d if decision is False else comp.p.not_(d)
    return comp.p.not_(comp.onehot[output][A.domain(t).index(decision)])


def differs(comp: _Compiler, output: str, decision, fixed: dict, *, time_limit: float):
    """Input values (codes) keeping ``fixed`` under which the decision is not
    ``decision``, or None when there are none."""
    p = comp.p
    lb, ub = list(p.lb), list(p.ub)
    for name, code in fixed.items():
        _fix(comp, name, code, lb, ub)
    saved = (p.lb, p.ub)
    p.lb, p.ub = lb, ub
    rows = len(p.rows)
    p.add(_goal(comp, output, decision), lo=1.0)
    try:
        x = p.solve(None, time_limit=time_limit)
    finally:
        p.lb, p.ub = saved
        del p.rows[rows:]
    return None if x is None else _decode(comp, x)


def closest_change(comp: _Compiler, output: str, decision, facts: dict, *, minimize: str,
                   immutable, spreads: dict, time_limit: float, wishes: Wishes = NO_WISHES):
    """The input values closest to ``facts`` (L1 in units of ``spreads``, or fewest
    changes, each weighted by ``wishes.cost``) whose decision is not ``decision`` (is
    ``wishes.target`` where set), within ``wishes``' ranges, values and exclusions;
    None when there are none.

    Fewest changes: one input at a time first (each a small program with every other
    input fixed, which presolve mostly decides); the closest single change is the
    optimum when there is one, and the whole program is solved only when there is none.
    """
    mutable = [n for n in comp.inputs if n not in immutable]
    if minimize == "count" and len(mutable) > 1:
        best = _closest_single(comp, output, decision, facts, mutable, spreads=spreads,
                               time_limit=time_limit, wishes=wishes)
        if best is not None:
            return best
    p = comp.p
    rows, nvars = len(p.rows), len(p.lb)
    lb, ub = list(p.lb), list(p.ub)
    for name in immutable:
        _fix(comp, name, facts[name], lb, ub)
    p.add(_goal(comp, output, decision, wishes.target), lo=1.0)
    distance, changed = _lin(0.0), _lin(0.0)
    flags = {}    # name -> binary: 1 when the input changed
    for name, e in comp.inputs.items():
        if name in immutable:
            continue
        change = _change(comp, name, e, facts, spreads, wishes, lb, ub)
        if change is None:
            continue
        far, c, flags[name] = change
        distance, changed = distance + far, changed + c
    _keep_one_of_each(p, flags, wishes)
    lb += p.lb[nvars:]
    ub += p.ub[nvars:]
    saved = (p.lb, p.ub)
    p.lb, p.ub = lb, ub
    objective = distance + changed.scale(1e-3) if minimize == "l1" else \
        changed + distance.scale(1e-4)
    try:
        x = p.solve(objective, time_limit=time_limit)
    finally:
        p.lb, p.ub = saved
        del p.rows[rows:]
        del p.lb[nvars:], p.ub[nvars:], p.integer[nvars:], p.names[nvars:]
    return None if x is None else _decode(comp, x)


def _closest_single(comp: _Compiler, output: str, decision, facts: dict, mutable: list, *,
                    spreads: dict, time_limit: float, wishes: Wishes):
    """The closest change of one input alone (a small program each, every other input
    fixed), when it is the fewest-changes optimum: with costs, two cheap changes may cost
    less than one dear one. None otherwise."""
    singles = []
    for name in mutable:
        x = closest_change(comp, output, decision, facts, minimize="l1",
                           immutable=set(comp.inputs) - {name}, spreads=spreads,
                           time_limit=time_limit, wishes=wishes)
        if x is not None:
            t = comp.kb.variables[name].type
            gap = abs(float(x[name]) - float(facts[name])) / max(
                spreads.get(name, 1.0), 1e-12) if isinstance(
                t, (A.RealType, A.IntType)) and MISSING not in (x[name], facts[name]) \
                else 1.0
            w = wishes.weight(name)
            # gaps equal but for solver noise tie: the earlier input wins
            singles.append((w, round(gap * w, 9), mutable.index(name), x))
    if singles:
        best = min(singles, key=lambda c: c[:3])
        # with costs, two cheap changes may cost less than one dear one
        ws = sorted(wishes.weight(n) for n in mutable)
        if best[0] <= ws[0] + ws[1]:
            return best[3]
    return None


def _change(comp: _Compiler, name: str, e: Lin, facts: dict, spreads: dict,
            wishes: Wishes, lb: list, ub: list):
    """A mutable input's change in the program: ``(distance, count, flag)``, the terms it
    adds to the L1 distance and to the weighted count of changes and the binary that is
    1 when it changed (within ``wishes``' values and ranges; ``lb``/``ub`` narrowed in
    place); None for a missing input that stays missing."""
    p = comp.p
    t = comp.kb.variables[name].type
    w = wishes.weight(name)
    if name in comp.missing:
        (m,) = comp.missing[name].terms
        if facts[name] is not MISSING:   # a counterfactual never erases a value
            lb[m] = ub[m] = 0.0
        elif not wishes.fill_missing:
            lb[m] = ub[m] = 1.0
            return None
        else:                            # a value filled in counts 1
            c = p.not_(comp.missing[name])
            return c.scale(w), c.scale(w), c
    if isinstance(t, A.EnumType):
        for k, h in enumerate(comp.onehot[name]):
            if name in wishes.values and k != int(facts[name]) and \
                    A.domain(t).code_at(k) not in wishes.values[name]:
                ub[next(iter(h.terms))] = 0.0       # a value it may not take
        c = p.not_(comp.onehot[name][int(facts[name])])
        return c.scale(w), c.scale(w), c
    if isinstance(t, A.BoolType):
        if name in wishes.values and (not facts[name]) not in wishes.values[name]:
            _fix(comp, name, facts[name], lb, ub)
        c = e if not facts[name] else p.not_(e)
        return c.scale(w), c.scale(w), c
    (i,) = e.terms
    span = ub[i] - lb[i]
    gap = Lin({p.var(f"{name}.gap", 0.0, max(span, 0.0)): 1.0}, 0.0, False)
    p.add(gap - e + float(facts[name]), lo=0.0)     # gap >= x - x0
    p.add(gap + e - float(facts[name]), lo=0.0)     # gap >= x0 - x
    far = gap.scale(w / max(spreads.get(name, 1.0), 1e-12))
    c = p.binary(f"{name}.changed")
    p.add(gap - c.scale(max(span, 0.0)), hi=0.0)    # gap > 0 -> changed
    lo, hi = wishes.ranges.get(name, (None, None))
    # changed -> within the wished range (unchanged, it keeps the row's value)
    if lo is not None and np.isfinite(lo) and lo > lb[i]:
        p.add(e - c.scale(lo - lb[i]), lo=lb[i])
    if hi is not None and np.isfinite(hi) and hi < ub[i]:
        p.add(e - c.scale(hi - ub[i]), hi=ub[i])
    return far, c.scale(w), c


def _keep_one_of_each(p, flags: dict, wishes: Wishes) -> None:
    """Each earlier answer's change set keeps one of its inputs unchanged (one held
    already does): a row over their change ``flags``."""
    for earlier in wishes.exclude:
        # one of an earlier answer's changed inputs keeps its value (one held already
        # satisfies it)
        if all(n in flags for n in earlier):
            total = _lin(0.0)
            for n in earlier:
                total = total + flags[n]
            p.add(total, hi=len(earlier) - 1)


def assumptions(comp: _Compiler, fixed=()) -> tuple:
    """What a result assumes: the inputs declared without bounds that it leaves free range
    over the training range."""
    free = [f"{n} in [{lo:.6g}, {hi:.6g}]" for n, (lo, hi) in comp.assumed.items()
            if n not in fixed]
    return (f"for inputs within the training range ({', '.join(free)})",) if free else ()
