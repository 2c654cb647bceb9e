"""Integer arithmetic beyond ``+ - *``: its meaning and the ranges of its results.

``a // b`` is floor division and ``a % b`` its remainder ``a - b * (a // b)``, as in
Python: the quotient rounds toward minus infinity and the remainder has the sign of the
divisor (``-7 // 2 == -4``, ``-7 % 2 == 1``, ``7 % -2 == -1``). Every backend computes
exactly this (Z3's ``div``/``mod`` are Euclidean and are converted; numpy's
``floor_divide``/``mod`` and torch's ``div(rounding_mode="floor")``/``remainder`` already
agree with Python).

:func:`interval` bounds an integer expression from the declared ranges of the variables
it reads (interval arithmetic: exact bounds of each operation over the operands'
bounds), which validation uses to refuse a divisor that can be 0 and results beyond
float64's exact integers, and the solvers use for their big-M constants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import _ast as A

__all__ = ["apply", "interval", "op_interval"]


def apply(op: str, args: Sequence):
    """The value of :class:`~greybox.rules.ast.Arith` ``op`` on ``args`` (Python ints,
    or numpy arrays of integer values: ``//`` and ``%`` follow Python's floor semantics
    in both).

    Examples
    --------
    >>> from greybox.rules._intervals import apply
    >>> apply("//", [-7, 2]), apply("%", [-7, 2]), apply("%", [7, -2])
    (-4, 1, -1)
    >>> apply("min", [3, -1, 2]), apply("max", [3, -1, 2]), apply("abs", [-5])
    (-1, 3, 5)
    """
    import numpy as np

    if op == "//":
        return args[0] // args[1]
    if op == "%":
        return args[0] % args[1]
    if op == "abs":
        return abs(args[0])
    if any(np.ndim(a) for a in args):
        fn = np.minimum if op == "min" else np.maximum
        acc = args[0]
        for a in args[1:]:
            acc = fn(acc, a)
        return acc
    return min(args) if op == "min" else max(args)


def op_interval(op: str, bounds: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """Exact bounds of ``op`` over operands within ``bounds`` (for ``//`` and ``%``, a
    divisor whose bounds exclude 0).

    Examples
    --------
    >>> from greybox.rules._intervals import op_interval
    >>> op_interval("//", [(-7, 7), (2, 3)]), op_interval("%", [(0, 99), (-10, -1)])
    ((-4, 3), (-9, 0))
    >>> op_interval("abs", [(-3, 2)]), op_interval("min", [(0, 9), (-2, 4)])
    ((0, 3), (-2, 4))
    """
    if op == "min":
        return min(lo for lo, _ in bounds), min(hi for _, hi in bounds)
    if op == "max":
        return max(lo for lo, _ in bounds), max(hi for _, hi in bounds)
    if op == "abs":
        (lo, hi), = bounds
        if lo >= 0:
            return lo, hi
        if hi <= 0:
            return -hi, -lo
        return 0, max(-lo, hi)
    (alo, ahi), (dlo, dhi) = bounds
    if op == "//":   # monotone in each operand where the divisor keeps its sign
        corners = [a // d for a in (alo, ahi) for d in (dlo, dhi)]
        return min(corners), max(corners)
    # the remainder: one period of a constant divisor (or a dividend within it), else
    # the divisor's side of 0
    if dlo == dhi and ahi - alo < abs(dlo) and alo % dlo <= ahi % dlo:
        return alo % dlo, ahi % dlo
    if dlo > 0:
        lo, hi = 0, dhi - 1
        if alo >= 0:
            hi = min(hi, ahi)
        return lo, hi
    lo, hi = dlo + 1, 0
    if ahi <= 0:
        lo = max(lo, alo)
    return lo, hi


def interval(e, variables: Mapping) -> tuple[int, int] | None:
    """Bounds ``(lo, hi)`` of integer expression ``e`` from the declared types of
    ``variables`` (name -> anything with a ``type``; a defined variable counts its
    declared range), or None when ``e`` is not an integer expression with a finite
    range (it reads a real, a learnable or fractional number, a formula).

    Examples
    --------
    >>> import greybox.rules as gr
    >>> from greybox.rules._intervals import interval
    >>> kb = gr.parse("input a: int -3..4\\ninput b: int 1..5\\noutput y: bool\\n"
    ...               "rule r: a * b - a // b + max(a % b, abs(a)) > 0 -> y")
    >>> interval(kb.rules["r"].body.left, kb.variables)
    (-19, 27)
    """
    if isinstance(e, A.Num):
        if e.learnable or not isinstance(e.value, int) or isinstance(e.value, bool):
            return None
        return e.value, e.value
    if isinstance(e, A.Var):
        v = variables.get(e.name)
        t = getattr(v, "type", None)
        if isinstance(t, A.IntType):
            return t.lo, t.hi
        return None
    if isinstance(e, A.Neg):
        inner = interval(e.operand, variables)
        return None if inner is None else (-inner[1], -inner[0])
    if isinstance(e, A.Sum):
        lo = hi = 0
        for i, a in enumerate(e.args):
            part = interval(a, variables)
            if part is None:
                return None
            if i and e.ops[i - 1] == "-":
                lo, hi = lo - part[1], hi - part[0]
            else:
                lo, hi = lo + part[0], hi + part[1]
        return lo, hi
    if isinstance(e, A.Mul):
        left = interval(e.left, variables)
        right = interval(e.right, variables)
        if left is None or right is None:
            return None
        if e.left == e.right:   # a square is never negative
            lo, hi = sorted((left[0] * left[0], left[1] * left[1]))
            return (0 if left[0] <= 0 <= left[1] else lo), hi
        corners = [a * b for a in left for b in right]
        return min(corners), max(corners)
    if isinstance(e, A.Count):
        return 0, len(e.args)
    if isinstance(e, A.Arith):
        bounds = [interval(a, variables) for a in e.args]
        if not bounds or any(b is None for b in bounds):
            return None
        if e.op in ("//", "%") and (len(bounds) != 2 or bounds[1][0] <= 0 <= bounds[1][1]):
            return None
        if e.op == "abs" and len(bounds) != 1:
            return None
        return op_interval(e.op, bounds)
    return None


#: Most joint operand values :func:`value_set` enumerates (beyond: the interval's range).
MAX_ENUMERATED = 1 << 16


def value_set(e, variables: Mapping) -> tuple[int, ...] | None:
    """The values integer expression ``e`` can take from the declared types of
    ``variables``, ascending: enumerated exactly through ``+ - *``, the operations of
    :class:`~greybox.rules.ast.Arith` and ``count`` while the operands' joint values are
    few (:data:`MAX_ENUMERATED`), else the whole range of :func:`interval`; None where
    ``e`` is not an integer expression with a finite range. Operands are combined as if
    independent, so a variable read twice may add values that never occur (never
    remove one).

    Examples
    --------
    >>> import greybox.rules as gr
    >>> from greybox.rules._intervals import value_set
    >>> kb = gr.parse("input a: int 0..3\\ninput b: int 1..3\\noutput y: bool\\n"
    ...               "rule r: a * b + a % 2 > 0 -> y")
    >>> value_set(kb.rules["r"].body.left, kb.variables)
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    """
    found = _values(e, variables)
    if found is None:
        return None
    if isinstance(found, tuple):
        lo, hi = found
        return tuple(range(lo, hi + 1))
    return tuple(sorted(found))


def _values(e, variables):
    """A set of values, or ``(lo, hi)`` (a tuple) where enumerating would cost too much."""
    if isinstance(e, A.Var):
        t = getattr(variables.get(e.name), "type", None)
        if isinstance(t, A.IntType) and t.size <= MAX_ENUMERATED:
            return set(t.values)
        bounds = interval(e, variables)
        return bounds
    if isinstance(e, A.Neg):
        inner = _values(e.operand, variables)
        if isinstance(inner, set):
            return {-x for x in inner}
        return None if inner is None else (-inner[1], -inner[0])
    if isinstance(e, A.Count):
        return set(range(len(e.args) + 1))
    if isinstance(e, (A.Sum, A.Mul, A.Arith)):
        args = e.args if isinstance(e, (A.Sum, A.Arith)) else (e.left, e.right)
        parts = [_values(a, variables) for a in args]
        if any(p is None for p in parts):
            return None
        if all(isinstance(p, set) for p in parts):
            acc = parts[0]
            if isinstance(e, A.Mul) and e.left == e.right:   # a square
                return {x * x for x in acc}
            if isinstance(e, A.Arith) and len(parts) == 1:
                return {apply(e.op, [x]) for x in acc}
            for i, p in enumerate(parts[1:]):
                if len(acc) * len(p) > MAX_ENUMERATED:
                    break
                if isinstance(e, A.Sum):
                    acc = {x + y for x in acc for y in p} if e.ops[i] == "+" else \
                        {x - y for x in acc for y in p}
                elif isinstance(e, A.Mul):
                    acc = {x * y for x in acc for y in p}
                else:
                    if e.op in ("//", "%") and 0 in p:
                        return None
                    acc = {apply(e.op, [x, y]) for x in acc for y in p}
            else:
                return acc
    return interval(e, variables)
