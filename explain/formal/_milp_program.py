"""Linear expressions and mixed-integer programs, built incrementally and solved by HiGHS
(``scipy.optimize.milp``): the MILP backend's algebra -- indicators, products, integer
division and remainder, ``min``/``max``, and/or/not -- over variables with bounds."""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from greybox.errors import ModelError, SolverError

__all__ = ["EPS", "Lin", "Program"]


class Lin:
    """``const + sum(coef * x_i)`` with interval bounds."""

    __slots__ = ("terms", "const", "integral")

    def __init__(self, terms=None, const=0.0, integral=True):
        self.terms, self.const, self.integral = dict(terms or {}), float(const), integral

    def __add__(self, other):
        other = _lin(other)
        terms = dict(self.terms)
        for k, c in other.terms.items():
            terms[k] = terms.get(k, 0.0) + c
        return Lin(terms, self.const + other.const, self.integral and other.integral)

    def __neg__(self):
        return Lin({k: -c for k, c in self.terms.items()}, -self.const, self.integral)

    def __sub__(self, other):
        return self + (-_lin(other))

    def scale(self, k: float):
        return Lin({i: c * k for i, c in self.terms.items()}, self.const * k,
                   self.integral and float(k).is_integer())


def _lin(x) -> Lin:
    return x if isinstance(x, Lin) else Lin({}, float(x), float(x).is_integer())


#: the margin of strict comparisons between real expressions (relative to their range) in
#: an *inner* program: every point it admits is decided as the program says (HiGHS accepts
#: violations up to its feasibility tolerance, 1e-6, so the margin must be larger)
EPS = 1e-4


class Program:
    """Variables, bounds, integrality and linear constraints, built incrementally.

    ``margin=0`` (default): comparisons between reals admit both sides at equality, an
    over-approximation -- right for proofs ("no input differs"). ``margin=EPS``: a band
    around each real threshold is left out, an under-approximation whose solutions replay
    -- right for searching counterfactuals."""

    def __init__(self, margin: float = 0.0):
        self.lb, self.ub, self.integer, self.names = [], [], [], []
        self.rows: list[tuple[dict, float, float]] = []
        self.margin = margin

    def var(self, name, lb, ub, integer=False) -> int:
        self.lb.append(float(lb))
        self.ub.append(float(ub))
        self.integer.append(1 if integer else 0)
        self.names.append(name)
        return len(self.lb) - 1

    def binary(self, name) -> Lin:
        return Lin({self.var(name, 0, 1, True): 1.0})

    def bounds(self, e: Lin) -> tuple[float, float]:
        lo = hi = e.const
        for k, c in e.terms.items():
            lo += c * (self.lb[k] if c >= 0 else self.ub[k])
            hi += c * (self.ub[k] if c >= 0 else self.lb[k])
        return lo, hi

    def add(self, e: Lin, lo=-np.inf, hi=np.inf) -> None:
        """``lo <= e <= hi``."""
        self.rows.append((dict(e.terms), lo - e.const, hi - e.const))

    # indicators ------------------------------------------------------------------------
    def indicator(self, e: Lin, strict: bool, name="atom") -> Lin:
        """A binary equal to ``e > 0`` (strict) or ``e >= 0``.

        The expression is first scaled to [-1, 1] over its bounds, so big-M rows stay well
        conditioned whatever the column's units; integer expressions get an exact margin
        of 1, real ones none (both sides allowed at equality: an over-approximation)."""
        lo, hi = self.bounds(e)
        size = max(abs(lo), abs(hi), 1.0)
        # integers have nothing between them: a margin of 1 is exact. Between reals a
        # margin would cut a band of real inputs out of the program, and a proof ("no
        # input differs") would then miss them: both sides are allowed at e = 0 instead
        # (the program over-approximates; witnesses are checked against predict)
        margin = 1.0 / size if e.integral else self.margin
        e = e.scale(1.0 / size)
        lo, hi = lo / size, hi / size
        on = margin if strict else 0.0          # a = 1  ->  e >= on
        off = 0.0 if strict else -margin        # a = 0  ->  e <= off
        # a constant only where the comparison has that truth on the whole range (at
        # e = 0 a strict comparison is false, a non-strict one true: with no margin,
        # ``lo >= on`` alone would make a score that can be 0 always positive)
        if lo >= on and (lo > 0.0 or not strict):
            return _lin(1.0)
        if hi <= off and (hi < 0.0 or strict):
            return _lin(0.0)
        a = self.binary(name)
        # e >= lo + (on - lo) * a ;  e <= off + (hi - off) * a
        self.add(e - a.scale(on - lo), lo=lo)
        self.add(e - a.scale(hi - off), hi=off)
        return a

    # non-linear integer arithmetic, linearised over the operands' finite ranges -----
    def int_bounds(self, e: Lin) -> tuple[int, int]:
        """The bounds of an integer expression, as integers."""
        lo, hi = self.bounds(e)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ModelError("non-linear integer arithmetic over an unbounded value: the "
                             "MILP backend needs finite ranges (use backend='z3')")
        return int(np.ceil(lo - 1e-6)), int(np.floor(hi + 1e-6))

    def _integer(self, name, lo, hi, integer=True) -> Lin:
        return Lin({self.var(name, lo, hi, integer): 1.0}, 0.0, True)

    def product(self, a: Lin, b: Lin) -> Lin:
        """``a * b`` of two integer expressions: the one with fewer values is written in
        binary, ``b = lo + sum(2^k z_k)``, and each ``a * z_k`` is a variable ``w_k``
        held to ``a`` or 0 by big-M rows from ``a``'s bounds (exact for binary z_k)."""
        (alo, ahi), (blo, bhi) = self.int_bounds(a), self.int_bounds(b)
        if bhi - blo > ahi - alo:
            a, b, (alo, ahi), (blo, bhi) = b, a, (blo, bhi), (alo, ahi)
        out = a.scale(float(blo))
        if bhi == blo:
            return out
        expansion = _lin(float(blo))
        for k in range((bhi - blo).bit_length()):
            z = self.binary(f"bit{k}")
            w = self._integer(f"product{k}", min(alo, 0), max(ahi, 0), integer=False)
            self.add(w - z.scale(alo), lo=0.0)                 # alo z <= w <= ahi z
            self.add(w - z.scale(ahi), hi=0.0)
            self.add(w - a - z.scale(ahi), lo=-float(ahi))      # z = 1 -> w = a
            self.add(w - a - z.scale(alo), hi=-float(alo))
            expansion = expansion + z.scale(float(2 ** k))
            out = out + w.scale(float(2 ** k))
        self.add(expansion - b, 0.0, 0.0)
        out.integral = a.integral and b.integral
        return out

    def divmod(self, a: Lin, d: Lin) -> tuple[Lin, Lin]:
        """``(a // d, a % d)`` (floor semantics): integers ``q``, ``r`` with
        ``a = q d + r`` and ``0 <= r <= d - 1`` (or ``d + 1 <= r <= 0`` for a negative
        divisor; validation has made sure ``d``'s range excludes 0)."""
        from greybox.rules.engine import op_interval

        bounds = [self.int_bounds(a), self.int_bounds(d)]
        if bounds[1][0] <= 0 <= bounds[1][1]:
            raise ModelError("a divisor's range includes 0; the MILP backend divides by "
                             "expressions of one sign")
        q = self._integer("quotient", *op_interval("//", bounds))
        r = self._integer("remainder", *op_interval("%", bounds))
        qd = q.scale(d.const) if not d.terms else self.product(q, d)
        self.add(a - qd - r, 0.0, 0.0)
        if bounds[1][0] > 0:
            self.add(d - r, lo=1.0)
        else:
            self.add(r - d, lo=1.0)
        return q, r

    def extreme(self, op: str, xs: list[Lin]) -> Lin:
        """``min(xs)`` or ``max(xs)`` of integer expressions: ``m`` on the right side of
        every one and equal to the one a selector binary picks (big-M from the bounds)."""
        from greybox.rules.engine import op_interval

        bounds = [self.int_bounds(x) for x in xs]
        lo, hi = op_interval(op, bounds)
        sign = 1.0 if op == "min" else -1.0      # max(xs) = -min(-xs)
        if op == "max":
            xs, bounds, (lo, hi) = [-x for x in xs], [(-b, -a) for a, b in bounds], (-hi, -lo)
        # an operand below every other's lowest value is the minimum
        for i, (_, h) in enumerate(bounds):
            if all(h <= low for j, (low, _) in enumerate(bounds) if j != i):
                return xs[i].scale(sign)
        m = self._integer(op, lo, hi, integer=False)
        total = _lin(0.0)
        for x, (_, h) in zip(xs, bounds):
            s = self.binary(f"{op}.pick")
            total = total + s
            self.add(x - m, lo=0.0)                                   # m <= x
            self.add(m - x + s.scale(float(lo - h)), lo=float(lo - h))  # s = 1 -> m >= x
        self.add(total, 1.0, 1.0)
        out = m.scale(sign)
        out.integral = all(x.integral for x in xs)
        return out

    def arith(self, op: str, xs: list[Lin]) -> Lin:
        """:class:`~greybox.rules.ast.Arith` ``op`` over integer expressions."""
        if op in ("//", "%"):
            q, r = self.divmod(*xs)
            return q if op == "//" else r
        if op == "abs":
            (x,) = xs
            lo, hi = self.int_bounds(x)
            if lo >= 0:
                return x
            if hi <= 0:
                return -x
            return self.extreme("max", [x, -x])
        return self.extreme(op, xs)

    def and_(self, xs: list[Lin]) -> Lin:
        xs = [x for x in xs if not (not x.terms and x.const == 1.0)]
        if any(not x.terms and x.const == 0.0 for x in xs):
            return _lin(0.0)
        if not xs:
            return _lin(1.0)
        if len(xs) == 1:
            return xs[0]
        y = self.binary("and")
        for x in xs:
            self.add(y - x, hi=0.0)
        total = _lin(0.0)
        for x in xs:
            total = total + x
        self.add(y - total, lo=1.0 - len(xs))
        return y

    def not_(self, x: Lin) -> Lin:
        return _lin(1.0) - x

    def or_(self, xs: list[Lin]) -> Lin:
        return self.not_(self.and_([self.not_(x) for x in xs]))

    # solving ---------------------------------------------------------------------------
    def solve(self, objective: Lin | None = None, *, time_limit: float = 10.0):
        """Minimise ``objective``; returns the variable values, or None when infeasible."""
        n = len(self.lb)
        c = np.zeros(n)
        if objective is not None:
            for k, v in objective.terms.items():
                c[k] += v
        lo = np.full(max(1, len(self.rows)), -np.inf)
        hi = np.full(max(1, len(self.rows)), np.inf)
        ri, ci, vals = [], [], []
        for r, (terms, a, b) in enumerate(self.rows):
            ri += [r] * len(terms)
            ci += list(terms)
            vals += list(terms.values())
            lo[r], hi[r] = a, b
        matrix = csr_matrix((vals, (ri, ci)), shape=(max(1, len(self.rows)), n))
        cons = [LinearConstraint(matrix, lo, hi)] if self.rows else []
        with _quiet_stdout():   # HiGHS' C++ core may print debugging lines to fd 1
            res = milp(c, integrality=np.asarray(self.integer),
                       bounds=Bounds(self.lb, self.ub), constraints=cons,
                       options={"time_limit": float(time_limit)})
        if res.status == 2:          # infeasible
            return None
        if res.status != 0 or res.x is None:
            raise SolverError(f"HiGHS could not solve the program ({res.message}); raise the "
                              "timeout or use backend='z3'")
        return res.x


@contextlib.contextmanager
def _quiet_stdout():
    """Silence writes to file descriptor 1 (C libraries' printf) for the duration."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):   # no real stdout (notebooks, pytest)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
    finally:
        os.close(saved)
