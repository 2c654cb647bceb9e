"""A person's options for a counterfactual (``target``, ``allowed``, ``increase_only``,
``decrease_only``, ``cost``, ``fill_missing``), checked against the row's facts and made
into the codes of :class:`~._protocol.Wishes`; and which of them a polished answer
breaks."""

from __future__ import annotations

import numpy as np

from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import MISSING

from ._protocol import Wishes
from ._row import show

__all__: list[str] = []


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
        target = _target_code(p, output, target)
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
    ranges, values = _allowed(p, allowed)
    for n in inc + dec:
        if not _measured(kb, n):
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


def _target_code(p, output: str, target):
    """The decision wanted, checked: a value of the output other than the row's."""
    t_out = p.kb.variables[output].type
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
    return target


def _measured(kb, n: str) -> bool:
    """Whether fact ``n`` is a real or int input (its changes have a size)."""
    return n in kb.variables and kb.variables[n].role == "input" and \
        isinstance(kb.variables[n].type, (A.RealType, A.IntType))


def _allowed(p, allowed: dict) -> tuple[dict, dict]:
    """``allowed``, checked: ``(ranges, values)``, the ranges of real and int inputs and
    the codes a bool or enum fact may take."""
    kb = p.kb
    ranges, values = {}, {}
    for n, spec in allowed.items():
        t = kb.variables[n].type if n in kb.variables else None
        if _measured(kb, n):
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
    return ranges, values


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
