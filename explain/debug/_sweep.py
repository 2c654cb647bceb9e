"""Exact sweeps of one number (a rule's weight or a number it compares with): the gain of
every interval between the rows' breakpoints, the best interval, and a readable value
in it (step 2 of :mod:`._suggest`'s search)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from greybox.rules import ast as A


@dataclass
class _Sweep:
    """The gain of every interval between one number's sorted breakpoints ``uniq``:
    ``totals[k]`` for the values in (uniq[k-1], uniq[k]); ``now``: the current value's."""

    uniq: np.ndarray
    totals: np.ndarray
    now: int
    current: float
    closed: str | None
    integral: bool
    flip: bool
    now_total: int   # the gain at the current value

    def value(self, k: int) -> float:
        """A readable value in interval ``k``."""
        uniq = self.uniq
        lo = uniq[k - 1] if k > 0 else None
        hi = uniq[k] if k < len(uniq) else None
        c = self.current
        if self.flip and c and (lo is None or lo < -c) and (hi is None or -c < hi):
            return float(-c)   # a weight of the other sign: the readable fix
        return _readable(lo, hi, c, self.closed, self.integral,
                         spread=float(uniq[-1] - uniq[0]))

    def best(self, limit: int | None = None) -> int | None:
        """The best interval (nearest the current value among equals), only up to
        interval ``limit`` (inclusive) on its side of the current one; None when none
        beats the current value."""
        totals = self.totals
        ks = np.arange(len(totals))
        if limit is not None:
            lo, hi = sorted((self.now, limit))
            ks = ks[(ks >= lo) & (ks <= hi)]
        if not len(ks):
            return None
        top = totals[ks].max()
        if top <= self.now_total or top <= 0:
            return None
        return int(min(ks[totals[ks] == top], key=lambda k: abs(k - self.now)))


def _best_interval(points, lo_gain, hi_gain, fixed_gain, current, *, closed,
                   integral=False, flip=False, now_gain=None):
    """The value maximising the total gain over rows that change at their breakpoint
    ``points`` (``lo_gain`` below it, ``hi_gain`` above it), plus ``fixed_gain`` of the rows
    that do not change; None when no value beats ``current`` (whose rows gain
    ``now_gain``: a row exactly at its breakpoint decides as ``predict`` does). Returns
    (value, total, the sweep)."""
    if not len(points):
        return None
    order = np.argsort(points, kind="stable")
    p = points[order]
    delta = (hi_gain - lo_gain)[order]
    base = int(lo_gain.sum()) + int(fixed_gain)
    ends = np.flatnonzero(np.r_[p[1:] != p[:-1], True])   # last index of each group
    uniq = p[ends]
    totals = np.r_[base, base + np.cumsum(delta)[ends]]   # interval k: (uniq[k-1], uniq[k])
    now = int(np.searchsorted(uniq, current, side="left" if closed == "hi" else "right"))
    now_total = int(totals[now]) if now_gain is None else int(now_gain) + int(fixed_gain)
    sweep = _Sweep(uniq, totals, now, float(current), closed, integral, flip, now_total)
    k = sweep.best()
    if k is None:
        return None
    return sweep.value(k), int(totals[k]), sweep


def _readable(lo, hi, current, closed, integral, spread) -> float:
    """The shortest decimal inside (lo, hi) (``closed``: that end allowed too), the one
    nearest the middle among equally short ones; beyond the last breakpoint (``lo`` or
    ``hi`` None), within a margin of it."""
    if lo is None or hi is None:
        edge = hi if lo is None else lo
        pad = max(abs(spread) * 0.25, abs(edge) * 0.5, 1e-6)
        lo, hi = (edge - 2 * pad, edge) if lo is None else (edge, edge + 2 * pad)
        closed = ("hi" if closed == "hi" else None) if lo == edge - 2 * pad and hi == edge \
            else ("lo" if closed == "lo" else None)
    allow_lo, allow_hi = closed == "lo", closed == "hi"
    if integral:   # whole values: the closed end is the readable one
        if allow_hi and float(hi).is_integer():
            return float(hi)
        if allow_lo and float(lo).is_integer():
            return float(lo)
    middle = (lo + hi) / 2
    for digits in range(-15, 18):
        step = 10.0 ** -digits
        first, last = math.ceil(lo / step), math.floor(hi / step)
        if last - first > 1000:
            continue
        found = []
        for k in range(first, last + 1):
            value = round(k * step, max(digits, 0))
            if lo < value < hi or (allow_lo and value == lo) or (allow_hi and value == hi):
                found.append(float(value))
        if found:
            return min(found, key=lambda v: abs(v - middle))
    return float(middle)


def _holds(e, op, t):
    return {"<": np.less, "<=": np.less_equal, ">": np.greater,
            ">=": np.greater_equal}[op](e, t)


def _mirror(op: str) -> str:
    return {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)


def _compare_of(body, num):
    """The comparison ``num`` is a direct side of, and whether it is its left side; None
    when it is inside arithmetic, a set or an equality."""
    for node in A.walk(body):
        if isinstance(node, A.Compare) and node.op in ("<", "<=", ">", ">="):
            if node.left is num:
                return node, True
            if node.right is num:
                return node, False
    return None


def _force(body, compare, truth: bool):
    const = A.BoolConst(truth)
    return A.rewrite(body, lambda node: const if node is compare else None)


def _integral(kb, expr) -> bool:
    """Whether ``expr`` only takes whole values (an int variable, a count)."""
    if isinstance(expr, A.Var):
        v = kb.variables.get(expr.name)
        return v is not None and isinstance(v.type, A.IntType)
    return isinstance(expr, A.Count)
