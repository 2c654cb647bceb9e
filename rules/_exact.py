"""Exact crisp arithmetic: float64 where it is provably exact, rationals where it is not.

Z3 reads every number of a knowledge base as the exact rational it denotes (a float
weight or threshold is the binary fraction it holds) and computes without rounding, so
crisp evaluation must do the same, or a proof and an evaluation can disagree
(``3000000000000000 * x - 2999999999999999 * x`` is 8, not 9, in float64 at ``x = 9``).

Evaluation stays vectorised float64 and pays for exactness only where rounding is
possible:

* a static pass proves most arithmetic exact: integers, and more generally multiples of
  a power of two (a *grain*), whose sums and products stay below ``2**53`` grains
  (``age + 5``, ``2 * x``, ``0.5 * n``); those expressions compile to plain numpy;
* other arithmetic carries a rigorous bound on its rounding error per row; a comparison
  whose two sides are further apart than their bounds is settled in float64, the rows
  where they are not are recomputed with :class:`fractions.Fraction`;
* an ``int`` define is settled to its exact integer value, so what reads it is exact.

Scores (``bias + sum(weight * [body])``) are exact by :class:`ScoreScale`: every weight
and bias is an integer multiple of one power of two, so scores are sums of integers
(int64 when they fit; otherwise float64 with an error bound, the rows it cannot settle
recomputed with Python integers).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from . import _ast as A
from ._compile import compile_connective, compile_count, compile_expr

__all__ = ["ScoreScale", "compile_truth", "compile_value", "exact_value", "exact_in_float64",
           "is_exact", "lowest_bit"]

#: unit roundoff of float64, doubled: covers the (1 + u) factors of a bound's own rounding
_U2 = 2.0 ** -52
#: smallest positive float64 (the absolute error a product can make when it underflows)
_TINY = 5e-324
#: grain of the number 0 (it has no lowest bit; any grain divides it)
_ZERO = 1 << 30

_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}
_NP_CMP = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
           "==": np.equal, "!=": np.not_equal}


# ------------------------------------------------------------------ bits of numbers


def lowest_bit(x) -> int:
    """The exponent of the lowest set bit of a finite number (``_ZERO`` for 0):
    ``x`` is an integer multiple of ``2 ** lowest_bit(x)``."""
    if x == 0:
        return _ZERO
    if isinstance(x, (int, np.integer)):
        x = int(x)
        return (x & -x).bit_length() - 1
    p, q = float(x).as_integer_ratio()
    return (p & -p).bit_length() - 1 - (q.bit_length() - 1)


def _array_lowest_bit(a: np.ndarray) -> int:
    """Smallest :func:`lowest_bit` over the non-zero elements of a finite float array."""
    a = np.asarray(a, dtype=np.float64)
    a = a[a != 0]
    if not a.size:
        return _ZERO
    m, e = np.frexp(a)
    mant = np.abs(np.ldexp(m, 53)).astype(np.int64)  # m in [0.5, 1): 53-bit integers
    low = mant & -mant
    return int((e - 53 + np.frexp(low.astype(np.float64))[1] - 1).min())


def _fits(bound: float, grain: int, bits: int) -> bool:
    """``bound < 2 ** (bits + grain)``: numbers up to ``bound`` that are multiples of
    ``2 ** grain`` are integers of at most ``bits`` bits in units of the grain."""
    if bound == 0:
        return True
    if not math.isfinite(bound):
        return False
    return math.frexp(bound)[1] <= bits + grain


# ---------------------------------------------------------------- static exactness


def _static(e, kb) -> tuple[int | None, float, bool]:
    """``(grain, bound, exact)`` of a numeric expression over the declared types: every
    value is a multiple of ``2 ** grain`` (None: unknown) of magnitude at most ``bound``,
    and ``exact`` when float64 computes it without rounding for every input."""
    if isinstance(e, A.Num):
        return lowest_bit(e.value), abs(float(e.value)), True
    if isinstance(e, A.BoolConst):  # ``p == true``: a bool compared as 0 or 1
        return 0, 1.0, True
    if isinstance(e, A.Sym):  # an enum value's code (compared, never computed with)
        return 0, 2.0 ** 31, True
    if isinstance(e, A.Var):
        v = kb.variables[e.name]
        t = v.type
        if isinstance(t, A.IntType):
            return 0, float(max(abs(t.lo), abs(t.hi))), True  # int defines are settled
        if isinstance(t, (A.EnumType, A.BoolType)):
            return 0, float(len(t.values)) if isinstance(t, A.EnumType) else 1.0, True
        if isinstance(t, A.RealType):
            bound = math.inf if t.lo is None else max(abs(t.lo), abs(t.hi))
            # an input's value is the float it holds; a real define's may carry rounding
            return None, float(bound), v.role != "defined"
        return None, math.inf, False
    if isinstance(e, A.Neg):
        return _static(e.operand, kb)
    if isinstance(e, A.Sum):
        parts = [_static(a, kb) for a in e.args]
        grains = [p[0] for p in parts]
        grain = None if None in grains else min(grains)
        bound = sum(p[1] for p in parts)
        exact = all(p[2] for p in parts) and grain is not None and _fits(bound, grain, 53)
        return grain, bound, exact
    if isinstance(e, A.Count):  # a whole number of at most len(args), exact when they are
        return 0, float(len(e.args)), all(_all_exact(a, kb) for a in e.args)
    if isinstance(e, A.Arith):  # of integers: |a // d| <= |a|, |a % d| < |d|
        parts = [_static(a, kb) for a in e.args]
        bound = parts[1][1] if e.op == "%" else max(p[1] for p in parts)
        exact = all(p[2] and p[0] is not None and p[0] >= 0 for p in parts) and \
            _fits(bound, 0, 53)
        return 0, bound, exact
    if isinstance(e, A.Mul):
        (gl, bl, el), (gr, br, er) = _static(e.left, kb), _static(e.right, kb)
        if bl == 0 or br == 0:
            return _ZERO, 0.0, el and er
        grain = None if gl is None or gr is None else gl + gr
        bound = bl * br
        exact = el and er and grain is not None and _fits(bound, grain, 53)
        return grain, bound, exact
    raise TypeError(f"not a numeric expression: {e!r}")


def is_exact(e, kb) -> bool:
    """True when float64 evaluates the numeric expression ``e`` exactly for every input."""
    return _static(e, kb)[2]


def exact_in_float64(e, kb) -> bool:
    """True when float64 evaluates every piece of arithmetic of formula ``e`` exactly for
    every input (then plain float64 comparisons decide it as :func:`evaluate` does)."""
    return _all_exact(e, kb)


def _numeric(e, kb) -> bool:
    if isinstance(e, (A.Num, A.Sym, A.Neg, A.Sum, A.Mul, A.Count, A.Arith)):
        return True
    if isinstance(e, A.Var):
        return not isinstance(kb.variables[e.name].type, A.BoolType)
    return False


def _all_exact(e, kb) -> bool:
    """True when every piece of arithmetic in formula ``e`` is exact in float64."""
    if _numeric(e, kb):
        return is_exact(e, kb)
    if isinstance(e, A.Compare):
        return is_exact(e.left, kb) and is_exact(e.right, kb)
    if isinstance(e, A.InSet):
        return is_exact(e.operand, kb)
    if isinstance(e, (A.Not,)):
        return _all_exact(e.operand, kb)
    if isinstance(e, (A.And, A.Or)):
        return all(_all_exact(a, kb) for a in e.args)
    if isinstance(e, (A.Implies, A.Iff)):
        return _all_exact(e.left, kb) and _all_exact(e.right, kb)
    return True


# ----------------------------------------------------------------------- compiling


_Fn = Callable[[object], object]


def compile_value(e, kb, enum: A.EnumType | None = None) -> _Fn:
    """Turn a numeric expression into ``f(env) -> (value, error)``: float64 values and a
    bound on their distance to the exact values (the number 0.0 where exact)."""
    if is_exact(e, kb):
        f = compile_expr(e, kb, enum)
        return lambda env: (f(env), 0.0)
    if isinstance(e, A.Var):  # a real define carrying rounding
        name = e.name
        return lambda env: (env[name], env.error(name))
    if isinstance(e, A.Neg):
        f = compile_value(e.operand, kb)

        def neg(env):
            v, err = f(env)
            return -v, err

        return neg
    if isinstance(e, A.Sum):
        fs = [compile_value(a, kb) for a in e.args]
        signs = [1] + [1 if op == "+" else -1 for op in e.ops]

        def total(env):
            acc, err = fs[0](env)
            for f, s in zip(fs[1:], signs[1:]):
                v, ev = f(env)
                with np.errstate(all="ignore"):
                    acc = acc + v if s > 0 else acc - v
                    err = err + ev + _U2 * np.abs(acc)
            return acc, err

        return total
    if isinstance(e, A.Mul):
        fl, fr = compile_value(e.left, kb), compile_value(e.right, kb)

        def product(env):
            (a, ea), (b, eb) = fl(env), fr(env)
            with np.errstate(all="ignore"):
                v = a * b
                err = np.abs(a) * eb + np.abs(b) * ea + ea * eb + _U2 * np.abs(v) + _TINY
            return v, err

        return product
    if isinstance(e, A.Arith):  # integers: exact operands, else the exact rows redone
        from ._intervals import apply

        fs, op = [compile_value(a, kb) for a in e.args], e.op

        def arith(env):
            parts = [f(env) for f in fs]
            if all(not np.any(err) for _, err in parts):
                return apply(op, [v for v, _ in parts]), 0.0
            rows = np.arange(env.n)
            return np.asarray(exact_value(e, kb, env, rows), dtype=np.float64), 0.0

        return arith
    if isinstance(e, A.Count):  # its formulas settled exactly: a whole number, no error
        f = compile_count([compile_truth(a, kb) for a in e.args])
        return lambda env: (f(env), 0.0)
    raise TypeError(f"cannot evaluate {e!r}")


def compile_truth(e, kb) -> _Fn:
    """Turn a formula into ``f(env) -> bool array or scalar``, exact: comparisons of
    arithmetic that float64 may round are settled with rationals where needed."""
    if _all_exact(e, kb):
        return compile_expr(e, kb)
    if isinstance(e, A.Compare):
        return _compare(e, kb)
    if isinstance(e, A.InSet):
        parts = [_compare(A.Compare("==", e.operand, v), kb) for v in e.values]

        def member(env):
            out = parts[0](env)
            for p in parts[1:]:
                out = out | p(env)
            return out

        return member
    f = compile_connective(e, lambda a: compile_truth(a, kb))
    if f is not None:
        return f
    raise TypeError(f"cannot evaluate {e!r}")


def _enum_of(e, kb):
    if isinstance(e, A.Var):
        t = kb.variables[e.name].type
        return t if isinstance(t, A.EnumType) else None
    return None


def _compare(e: A.Compare, kb) -> _Fn:
    """A comparison settled in float64 where the error bounds allow, exactly elsewhere."""
    ctx = _enum_of(e.left, kb) or _enum_of(e.right, kb)
    fl, fr = compile_value(e.left, kb, ctx), compile_value(e.right, kb, ctx)
    np_op, op = _NP_CMP[e.op], _CMP[e.op]

    def compare(env):
        (a, ea), (b, eb) = fl(env), fr(env)
        n = env.n
        with np.errstate(all="ignore"):
            out = np.array(np.broadcast_to(np_op(a, b), (n,)), dtype=bool)
            sure = np.abs(a - b) > 2.0 * (ea + eb)
        unsure = np.flatnonzero(~np.broadcast_to(sure, (n,)))
        if unsure.size:
            left = exact_value(e.left, kb, env, unsure, ctx)
            right = exact_value(e.right, kb, env, unsure, ctx)
            out[unsure] = [op(x, y) for x, y in zip(left, right)]
        return out

    return compare


# ------------------------------------------------------------------- exact fallback


def to_exact(values) -> list:
    """Floats (or integer codes) as exact Python numbers: ints where whole."""
    out = []
    for x in np.asarray(values).tolist():
        if isinstance(x, float):
            out.append(int(x) if x.is_integer() else Fraction(x))
        else:
            out.append(x)
    return out


def exact_value(e, kb, env, rows: np.ndarray, enum: A.EnumType | None = None) -> list:
    """The exact values (ints and Fractions) of numeric expression ``e`` at positions
    ``rows`` of ``env``."""
    k = len(rows)
    if isinstance(e, A.Num):
        v = e.value if isinstance(e.value, int) else to_exact([e.value])[0]
        return [v] * k
    if isinstance(e, A.Sym):
        return [enum.values.index(e.name)] * k
    if isinstance(e, A.Var):
        var = kb.variables[e.name]
        if var.role == "defined":
            err = env.error(e.name)
            if np.ndim(err) and np.any(np.asarray(err)[rows] != 0):
                sub = var.type if isinstance(var.type, A.EnumType) else None
                return exact_value(var.expr, kb, env, rows, sub)
        return to_exact(np.asarray(env[e.name])[rows])
    if isinstance(e, A.Neg):
        return [-x for x in exact_value(e.operand, kb, env, rows)]
    if isinstance(e, A.Sum):
        acc = exact_value(e.args[0], kb, env, rows)
        for op, a in zip(e.ops, e.args[1:]):
            other = exact_value(a, kb, env, rows)
            acc = ([x + y for x, y in zip(acc, other)] if op == "+"
                   else [x - y for x, y in zip(acc, other)])
        return acc
    if isinstance(e, A.Mul):
        left = exact_value(e.left, kb, env, rows)
        right = exact_value(e.right, kb, env, rows)
        return [x * y for x, y in zip(left, right)]
    if isinstance(e, A.Arith):
        from ._intervals import apply

        parts = [exact_value(a, kb, env, rows) for a in e.args]
        return [apply(e.op, list(values)) for values in zip(*parts)]
    if isinstance(e, A.Count):
        total = np.zeros(k, dtype=np.int64)
        for a in e.args:
            truth = compile_truth(a, kb)(env)
            total += np.broadcast_to(np.asarray(truth, dtype=bool), (env.n,))[rows]
        return total.tolist()
    raise TypeError(f"cannot evaluate {e!r}")


# -------------------------------------------------------------------- exact scores


class ScoreScale:
    """Exact scores: every weight and bias of a component is an integer multiple of
    ``2 ** grain``, so a score is an integer number of grains.

    ``terms`` are the weights and biases (numbers or per-row arrays) that scores add up.
    Three modes, by the largest possible score in grains:

    * ``"int64"`` when it fits in 62 bits (typical weights, learned float32 values);
    * otherwise ``"exact"`` (Python integers in object arrays) when ``exact`` is asked;
    * otherwise ``"float"``: float64 sums with a bound :attr:`error` on their rounding;
      :meth:`close` marks the rows where a comparison must be redone with an exact scale.
    """

    def __init__(self, terms, *, exact: bool = False):
        terms = list(terms)
        grain, bound = _ZERO, 0.0
        for t in terms:
            if np.ndim(t):
                arr = np.asarray(t, dtype=np.float64)
                grain = min(grain, _array_lowest_bit(arr))
                bound += float(np.max(np.abs(arr))) if arr.size else 0.0
            else:
                grain = min(grain, lowest_bit(t))
                bound += abs(float(t))
        self.grain = 0 if grain == _ZERO else grain
        if _fits(bound, self.grain, 62):
            self.mode, self.dtype = "int64", np.int64
        elif exact:
            self.mode, self.dtype = "exact", object
        else:
            self.mode, self.dtype = "float", np.float64
        #: a bound on the rounding error of any score (float mode; 0 otherwise): a sum of
        #: m terms is off by at most (m - 1) * 2**-53 * sum(|term|)
        self.error = (len(terms) + 1) * 2.0 ** -52 * bound if self.mode == "float" else 0.0
        self._unit = Fraction(2) ** self.grain

    def of(self, x):
        """A weight or bias in the scale's units: grains (a Python int, or an array of
        the scale's dtype), or float64 in float mode."""
        if self.mode == "float":
            return float(x) if not np.ndim(x) else np.asarray(x, dtype=np.float64)
        if not np.ndim(x):
            if isinstance(x, (float, np.floating)) and -1000 < self.grain < 1000:
                try:   # exact: scaling by a power of two (Fractions cost 20x more)
                    g = math.ldexp(float(x), -self.grain)
                except OverflowError:
                    g = math.inf
                if math.isfinite(g) and g.is_integer():
                    return int(g)
            q = Fraction(x) / self._unit
            if q.denominator != 1:  # pragma: no cover - every term is part of the scale
                raise ValueError(f"{x!r} is not a multiple of 2**{self.grain}")
            return q.numerator
        arr = np.asarray(x, dtype=np.float64)
        if self.mode == "int64":
            return np.ldexp(arr, -self.grain).astype(np.int64)
        return np.array([(Fraction(v) / self._unit).numerator for v in arr.tolist()],
                        dtype=object)

    def fresh(self, x, n: int) -> np.ndarray:
        """A score as a new array of ``n`` rows (to add to in place)."""
        return np.array(np.broadcast_to(x if np.ndim(x) else np.asarray(x, self.dtype), (n,)),
                        dtype=self.dtype)

    def add_where(self, acc: np.ndarray, w, body: np.ndarray) -> None:
        """``acc += w * [body]`` in place (``w`` in the scale's units)."""
        if self.mode == "exact":
            acc[body] = acc[body] + w
        else:
            acc += body * self.dtype(w)

    def full(self, x, n: int) -> np.ndarray:
        """A score (number or array) as an array of ``n`` rows."""
        if not np.ndim(x):
            return np.full(n, x, dtype=self.dtype)
        return np.broadcast_to(x, (n,))

    def close(self, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """Rows where float scores ``a`` and ``b`` are too close to compare (None when
        scores are exact)."""
        if self.mode != "float":
            return None
        with np.errstate(invalid="ignore"):
            return ~(np.abs(a - b) > 2.0 * self.error)

    def to_float(self, x, n: int) -> np.ndarray:
        """Scores as float64 (exact ones rounded once, to nearest)."""
        if self.mode == "float":
            return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,))
        if not np.ndim(x):
            return np.broadcast_to(float(x * self._unit), (n,))
        arr = self.full(x, n)
        if self.mode == "int64":
            return np.ldexp(arr.astype(np.float64), self.grain)
        return np.array([float(v * self._unit) for v in arr.tolist()], dtype=np.float64)
