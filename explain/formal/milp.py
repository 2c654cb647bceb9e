"""The MILP backend: the decision function as a mixed-integer program, solved by HiGHS.

The alternative to Z3 for input-level queries through ReLU networks: each ReLU becomes a
binary with big-M constraints whose M comes from interval bounds propagated from the
inputs' ranges (declared, or the training range -- widened to the explained row's own
value where that lies outside it, the input then being that value or within the range),
each comparison in a rule an indicator binary, and/or/not their standard linearisations,
a bool decision ``score > 0``, an int or enum decision one binary per value, the
residual's logits added to the scores.
``scipy.optimize.milp`` (HiGHS) then solves counterfactuals (minimum L1 change or fewest
changes), reasons and verification queries.

Soundness: comparisons between integer expressions are exact (a margin of 1); between
real expressions both sides are allowed at equality, so the program *over-approximates*
the decision function: when it says no input differs (a reason, a proof), none does.
A witness it finds may sit exactly on a threshold on the wrong side: every witness is
checked by running the decision function, and one that does not replay is asked again of
Z3, which is exact.

Scope: decisions that no hard constraint ties to others, table inputs with bounds,
networks of Linear/ReLU layers. Anything else is a clear ModelError naming it (use
``backend="z3"``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from fractions import Fraction

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from greybox.errors import ModelError, SolverError
from greybox.rules import MISSING, definite, not_false, plan, z3_serialised
from greybox.rules import ast as A

from ._networks import propagate
from ._protocol import NO_WISHES, Backend, Problem, Wishes
from ._row import decision_on, row_state

__all__ = ["MilpBackend", "Program", "compile_decision"]



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
        from greybox.rules import op_interval

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
        from greybox.rules import op_interval

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


class _Compiler:
    """The crisp decision of a model as a Program over its table inputs."""

    def __init__(self, model, kb, bias: dict, max_relus: int, margin: float = 0.0,
                 row: dict | None = None):
        self.model, self.kb, self.bias = model, kb, bias
        self.p = Program(margin)
        #: the row's own values of the table inputs (codes): each input ranges over its
        #: range *and* its row value, which may lie outside the training range
        self.row = dict(row or {})
        #: inputs whose row value lies outside their range: (the binary "within the
        #: range", the range's ends, the row value)
        self.outside: dict[str, tuple[int, float, float, float]] = {}
        self.inputs: dict[str, Lin] = {}
        self.onehot: dict[str, list[Lin]] = {}
        self.values: dict[str, Lin] = {}
        #: optional inputs: the binary "is missing" (their value variable is read only
        #: where it is 0: see the rule language, missing values)
        self.missing: dict[str, Lin] = {}
        self.max_relus = max_relus
        #: inputs declared without bounds, bounded by the range seen in the data
        self.assumed: dict[str, tuple[float, float]] = {}
        for name, var in kb.variables.items():
            if A.big_int(var.type):
                raise ModelError(f"{name!r} is int {var.type.lo}..{var.type.hi}, beyond "
                                 "±2**53: the MILP backend (HiGHS, in float64) cannot hold "
                                 "it exactly (use backend='z3', exact with any integer)")
        for name in kb.inputs:
            self._input(name)
        for name in kb.neural:
            self._neural(name)
        self.residual: dict[str, list[Lin]] = {}
        if model.residual is not None and self.missing:
            raise ModelError(f"the residual network reads the optional input(s) "
                             f"{', '.join(self.missing)}, held at a placeholder where missing; "
                             "the MILP backend does not encode that (use backend='z3')")
        if model.residual is not None:
            feats = self._features()
            for name in kb.decided:
                net = model.residual_for(name)
                if net is not None:
                    self.residual[name] = self._network(net, feats, f"residual:{name}")
        self.decisions: dict[str, Lin] = {}
        for comp in plan(kb).components:
            if len(comp.variables) != 1:
                raise ModelError(f"hard constraints tie {', '.join(comp.variables)} together; "
                                 "the MILP backend decides one variable at a time "
                                 "(use backend='z3')")
            if comp.dynamic:
                raise ModelError(f"rule(s) {', '.join(sorted(comp.dynamic))} read the decision "
                                 f"of {comp.variables[0]!r} they conclude; the MILP backend "
                                 "cannot encode that (use backend='z3')")
            self._decide(comp)
        for c in plan(kb).fixed_constraints:
            self.p.add(self.truth(not_false(kb, c.formula)), lo=1.0)

    # variables -------------------------------------------------------------------------
    def _input(self, name):
        t = self.kb.variables[name].type
        if self.kb.variables[name].optional:
            self.missing[name] = self.p.binary(f"{name}.missing")
        if isinstance(t, A.TensorType):
            raise ModelError(f"input {name!r} is a tensor; the MILP backend reasons over "
                             "table inputs")
        if isinstance(t, A.BoolType):
            self.values[name] = self.inputs[name] = self.p.binary(name)
        elif isinstance(t, A.EnumType):
            hots = [self.p.binary(f"{name}={v}") for v in t.values]
            total = _lin(0.0)
            code = _lin(0.0)
            for k, h in enumerate(hots):
                total = total + h
                code = code + h.scale(k)
            self.p.add(total, 1.0, 1.0)
            self.onehot[name] = hots
            self.values[name] = self.inputs[name] = code
        else:
            lo, hi, from_data = self.model.input_range(name)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ModelError(f"input {name!r} has no bounds (declared `real`) and the "
                                 "model has seen no data for it: declare `real[lo, hi]`, or "
                                 "calibrate/fit the model so its training range bounds it "
                                 "(or use backend='z3')")
            if from_data:
                self.assumed[name] = (lo, hi)
            integer = isinstance(t, A.IntType)
            at = self.row.get(name)
            at = float(at) if at is not None else None
            if at is None or not np.isfinite(at) or lo <= at <= hi:
                i = self.p.var(name, lo, hi, integer)
                self.values[name] = self.inputs[name] = Lin({i: 1.0}, 0.0, integer)
                return
            # the row's value lies outside the range (an input declared without bounds,
            # beyond the training range): the input is that value, or within the range.
            # Its variable's bounds -- and so every big-M derived from them (ReLUs,
            # comparisons, distances) -- cover both
            vlo, vhi = min(lo, at), max(hi, at)
            i = self.p.var(name, vlo, vhi, integer)
            x = Lin({i: 1.0}, 0.0, integer)
            inside = self.p.binary(f"{name}.in_range")
            self.p.add(x - inside.scale(vhi - at), hi=at)    # inside = 0 -> x = at
            self.p.add(x - inside.scale(vlo - at), lo=at)
            self.p.add(x - inside.scale(lo - vlo), lo=vlo)   # inside = 1 -> lo <= x <= hi
            self.p.add(x - inside.scale(hi - vhi), hi=vhi)
            self.values[name] = self.inputs[name] = x
            self.outside[name] = (next(iter(inside.terms)), lo, hi, at)

    def _feature(self, a, standardise: bool = True) -> list[Lin]:
        """Table input ``a`` as networks read it: standardised (the residual, networks
        in ``model.scaled_networks``) or as it is, an enum one-hot."""
        t = self.kb.variables[a].type
        if isinstance(t, A.TensorType):
            raise ModelError(f"the tensor input {a!r} is read by a network; the MILP backend "
                             "needs networks over table inputs")
        if isinstance(t, A.EnumType):
            return list(self.onehot[a])
        if not standardise:
            return [self.values[a]]
        i = self.model.feature_names.index(a)
        center = float(self.model.feature_center[i])
        scale = float(self.model.feature_scale[i])
        return [(self.values[a] - center).scale(1.0 / scale)]

    def _features(self) -> list[Lin]:
        """Every table input as the residual network reads them (``feature_names``)."""
        out = []
        for a in self.kb.inputs:
            if not isinstance(self.kb.variables[a].type, A.TensorType):
                out += self._feature(a)
        return out

    def _neural(self, name):
        var = self.kb.variables[name]
        feats = []
        scaled = self.model.scales_inputs(var.network)
        for a in var.args:
            feats += self._feature(a, scaled)
        net = self.model.network(var.network)
        out = self._network(net, feats, name)
        t = var.type
        if isinstance(t, A.BoolType):
            self.values[name] = self.p.indicator(out[0], strict=True, name=f"{name}")
        elif A.is_finite_type(t):
            hots = [self.p.binary(f"{name}#{k}") for k in range(len(out))]
            total, code = _lin(0.0), _lin(0.0)
            d = A.domain(t)
            for k, h in enumerate(hots):
                total = total + h
                code = code + h.scale(float(d.code_at(k)))
                for j in range(len(out)):   # chosen k beats j (strictly for j < k: ties)
                    if j == k:
                        continue
                    diff = out[k] - out[j]
                    dlo, _ = self.p.bounds(diff)
                    need = self.p.margin if j < k else 0.0   # ties to the first value
                    # h = 1 -> diff >= need
                    self.p.add(diff - h.scale(need - dlo), lo=dlo)
            self.p.add(total, 1.0, 1.0)
            self.onehot[name] = hots
            self.values[name] = code
        else:
            self.values[name] = out[0]

    def _network(self, net, feats: list[Lin], name) -> list[Lin]:
        def affine(values, w, b):
            e = _lin(b)
            for i, x in enumerate(values):
                if w[i] != 0.0:
                    e = e + x.scale(float(w[i]))
            e.integral = False
            return e

        def relu(x, k):
            lo, hi = self.p.bounds(x)
            if lo >= 0:
                return x
            if hi <= 0:
                return _lin(0.0)
            y = Lin({self.p.var(f"{name}.relu{k}", 0.0, hi): 1.0}, 0.0, False)
            z = self.p.binary(f"{name}.on{k}")
            self.p.add(y - x, lo=0.0)                     # y >= x
            self.p.add(y - x - z.scale(lo), hi=-lo)       # y <= x - lo (1 - z)
            self.p.add(y - z.scale(hi), hi=0.0)           # y <= hi z
            return y

        return propagate(net, feats, affine=affine, relu=relu, max_relus=self.max_relus,
                         what=f"the network for {name!r}")

    # formulas ---------------------------------------------------------------------------
    def expr(self, e) -> Lin:
        if isinstance(e, A.Num):
            if e.learnable:
                return _lin(float(e.value))
            return _lin(float(e.value))
        if isinstance(e, A.Var):
            var = self.kb.variables[e.name]
            if var.role == "defined":
                return self.expr(var.expr)
            if var.role == "decided":
                return self.decisions[e.name]
            return self.values[e.name]
        if isinstance(e, A.Neg):
            return -self.expr(e.operand)
        if isinstance(e, A.Sum):
            acc = self.expr(e.args[0])
            for op, arg in zip(e.ops, e.args[1:]):
                acc = acc + self.expr(arg) if op == "+" else acc - self.expr(arg)
            return acc
        if isinstance(e, A.Mul):
            left, right = self.expr(e.left), self.expr(e.right)
            if not left.terms:
                return right.scale(left.const)
            if not right.terms:
                return left.scale(right.const)
            return self.p.product(left, right)   # two integer expressions
        if isinstance(e, A.Arith):
            return self.p.arith(e.op, [self.expr(a) for a in e.args])
        if isinstance(e, A.Count):   # the formulas' indicators (binaries or constants)
            acc = _lin(0.0)
            for a in e.args:
                acc = acc + self.truth(a)
            return acc
        return self.truth(e)

    def _enum_code(self, e, other):
        if isinstance(e, A.Sym):
            t = self.kb.variables[other.name].type
            return _lin(float(A.domain(t).code(e.name)))
        return self.expr(e)

    def truth(self, e) -> Lin:
        p = self.p
        if isinstance(e, A.BoolConst):
            return _lin(1.0 if e.value else 0.0)
        if isinstance(e, A.Var):
            return self.expr(e)
        if isinstance(e, A.Not):
            return p.not_(self.truth(e.operand))
        if isinstance(e, A.IsMissing):
            return self.missing[e.operand.name]
        if isinstance(e, A.And):
            return p.and_([self.truth(a) for a in e.args])
        if isinstance(e, A.Or):
            return p.or_([self.truth(a) for a in e.args])
        if isinstance(e, A.Implies):
            return p.or_([p.not_(self.truth(e.left)), self.truth(e.right)])
        if isinstance(e, A.Iff):
            a, b = self.truth(e.left), self.truth(e.right)
            return p.or_([p.and_([a, b]), p.and_([p.not_(a), p.not_(b)])])
        if isinstance(e, A.InSet):
            return p.or_([self.truth(A.Compare("==", e.operand, v)) for v in e.values])
        if isinstance(e, A.Compare):
            hot = self._onehot_compare(e)
            if hot is not None:
                return hot
            left = self._enum_code(e.left, e.right)
            right = self._enum_code(e.right, e.left)
            d = left - right
            if e.op == ">":
                return p.indicator(d, strict=True)
            if e.op == ">=":
                return p.indicator(d, strict=False)
            if e.op == "<":
                return p.indicator(-d, strict=True)
            if e.op == "<=":
                return p.indicator(-d, strict=False)
            eq = p.and_([p.indicator(d, strict=False), p.indicator(-d, strict=False)])
            return eq if e.op == "==" else p.not_(eq)
        raise ModelError(f"the MILP backend cannot encode {type(e).__name__}")

    def _onehot_compare(self, e):
        """``kind == a`` on an enum (or a finite neural concept): its one-hot binary."""
        if e.op not in ("==", "!=") or not isinstance(e.left, A.Var):
            return None
        hots = self.onehot.get(e.left.name)
        if hots is None:
            return None
        t = self.kb.variables[e.left.name].type
        if isinstance(e.right, A.Sym):
            k = A.domain(t).index(e.right.name)
        elif isinstance(e.right, A.Num) and isinstance(t, A.IntType):
            k = A.domain(t).index(e.right.value)
            if not 0 <= k < len(hots):
                return _lin(0.0 if e.op == "==" else 1.0)
        else:
            return None
        return hots[k] if e.op == "==" else self.p.not_(hots[k])

    # decisions --------------------------------------------------------------------------
    def _decide(self, comp):
        (name,) = comp.variables
        t = self.kb.variables[name].type
        if not isinstance(t, A.BoolType):
            self._decide_finite(comp)
            return
        score = _lin(float(self.bias.get(name, 0.0)))
        score.integral = False
        if name in self.residual:
            score = score + self.residual[name][0]
        for r in self.kb.rules_for(name):
            w = -r.weight if r.head.value is False else r.weight
            score = score + self.truth(definite(self.kb, r.body)).scale(w)
        score.integral = False
        prefer = self.p.indicator(score, strict=True, name=f"{name}.score")
        if not comp.constraints:
            self.decisions[name] = prefer
            return
        feasible = {}
        for value in (0.0, 1.0):
            self.decisions[name] = _lin(value)
            feasible[value] = self.p.and_([self.truth(not_false(self.kb, c.formula))
                                           for c in comp.constraints])
        self.p.add(self.p.or_([feasible[0.0], feasible[1.0]]), lo=1.0)   # a decision exists
        # True when True is allowed and preferred, or False is not allowed
        self.decisions[name] = self.p.and_(
            [feasible[1.0], self.p.or_([prefer, self.p.not_(feasible[0.0])])])

    def _decide_finite(self, comp):
        """An int or enum decision: one binary per value, the chosen value's score at
        least every allowed value's (strictly above those earlier in domain order: ties
        go to the first value), only allowed values chosen."""
        (name,) = comp.variables
        t = self.kb.variables[name].type
        d = A.domain(t)
        values = list(d.values)
        if len(values) > 256:
            raise ModelError(f"{name!r} has {len(values)} values; the MILP backend decides "
                             "finite outputs of at most 256 values (use backend='z3')")
        bias = self.bias.get(name, {})
        scores = []
        for k, v in enumerate(values):
            s = _lin(float(bias.get(v, 0.0)) if isinstance(bias, dict) else 0.0)
            if name in self.residual:
                s = s + self.residual[name][k]
            for r in self.kb.rules_for(name):
                if _pushes(r, v):
                    s = s + self.truth(definite(self.kb, r.body)).scale(float(r.weight))
            s.integral = False
            scores.append(s)
        allowed = []
        for v in values:
            if comp.constraints:
                self.decisions[name] = _lin(float(d.code(v)))
                allowed.append(self.p.and_([self.truth(not_false(self.kb, c.formula))
                                            for c in comp.constraints]))
            else:
                allowed.append(_lin(1.0))
        hots = [self.p.binary(f"{name}#{k}") for k in range(len(values))]
        total = _lin(0.0)
        code = _lin(0.0)
        for k, h in enumerate(hots):
            total = total + h
            code = code + h.scale(float(d.code(values[k])))
            self.p.add(h - allowed[k], hi=0.0)           # only allowed values are chosen
            for j in range(len(values)):
                if j == k:
                    continue
                diff = scores[k] - scores[j]
                dlo, dhi = self.p.bounds(diff)
                need = self.p.margin * max(1.0, abs(dlo), abs(dhi)) if j < k else 0.0
                big = need - min(dlo, 0.0) + 1.0
                # h_k = 1 and j allowed -> diff >= need
                self.p.add(diff - h.scale(big) - allowed[j].scale(big), lo=need - 2 * big)
        self.p.add(total, 1.0, 1.0)
        self.onehot[name] = hots
        self.decisions[name] = code


def _pushes(rule, value) -> bool:
    v = rule.head.value
    target = v.value if isinstance(v, A.Num) else v.name
    return target == value


def compile_decision(model, kb, bias: dict, *, max_relus: int = 64,
                     margin: float = 0.0, row: dict | None = None) -> _Compiler:
    """The decision function of ``model`` over its table inputs as a mixed-integer program
    (``margin``: see :class:`Program`). ``row``: a row's input values (codes); each input
    then ranges over its range and its row value (which may lie outside the range)."""
    return _Compiler(model, kb, bias, max_relus, margin, row)


# ------------------------------------------------------------------------------ queries


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
        t = comp.kb.variables[name].type
        w = wishes.weight(name)
        if name in comp.missing:
            (m,) = comp.missing[name].terms
            if facts[name] is not MISSING:   # a counterfactual never erases a value
                lb[m] = ub[m] = 0.0
            elif not wishes.fill_missing:
                lb[m] = ub[m] = 1.0
                continue
            else:                            # a value filled in counts 1
                c = p.not_(comp.missing[name])
                distance, changed = distance + c.scale(w), changed + c.scale(w)
                flags[name] = c
                continue
        if isinstance(t, A.EnumType):
            for k, h in enumerate(comp.onehot[name]):
                if name in wishes.values and k != int(facts[name]) and \
                        A.domain(t).code_at(k) not in wishes.values[name]:
                    ub[next(iter(h.terms))] = 0.0       # a value it may not take
            c = p.not_(comp.onehot[name][int(facts[name])])
            distance, changed = distance + c.scale(w), changed + c.scale(w)
            flags[name] = c
            continue
        if isinstance(t, A.BoolType):
            if name in wishes.values and (not facts[name]) not in wishes.values[name]:
                _fix(comp, name, facts[name], lb, ub)
            c = e if not facts[name] else p.not_(e)
            distance, changed = distance + c.scale(w), changed + c.scale(w)
            flags[name] = c
            continue
        (i,) = e.terms
        span = ub[i] - lb[i]
        gap = Lin({p.var(f"{name}.gap", 0.0, max(span, 0.0)): 1.0}, 0.0, False)
        p.add(gap - e + float(facts[name]), lo=0.0)     # gap >= x - x0
        p.add(gap + e - float(facts[name]), lo=0.0)     # gap >= x0 - x
        distance = distance + gap.scale(w / max(spreads.get(name, 1.0), 1e-12))
        c = p.binary(f"{name}.changed")
        p.add(gap - c.scale(max(span, 0.0)), hi=0.0)    # gap > 0 -> changed
        changed = changed + c.scale(w)
        flags[name] = c
        lo, hi = wishes.ranges.get(name, (None, None))
        # changed -> within the wished range (unchanged, it keeps the row's value)
        if lo is not None and np.isfinite(lo) and lo > lb[i]:
            p.add(e - c.scale(lo - lb[i]), lo=lb[i])
        if hi is not None and np.isfinite(hi) and hi < ub[i]:
            p.add(e - c.scale(hi - ub[i]), hi=ub[i])
    for earlier in wishes.exclude:
        # one of an earlier answer's changed inputs keeps its value (one held already
        # satisfies it)
        if all(n in flags for n in earlier):
            total = _lin(0.0)
            for n in earlier:
                total = total + flags[n]
            p.add(total, hi=len(earlier) - 1)
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


# ------------------------------------------------------------------------------ backend


class MilpProblem(Problem):
    """One row's decision as a mixed-integer program over the table inputs."""

    def __init__(self, model, batch, row: int, output: str, *, max_relus: int,
                 timeout: float):
        self.kb = kb = model.to_kb()
        self.output, self.level, self.timeout = output, "input", timeout
        self._where = (model, batch, row, max_relus)
        self._exact = None
        facts, self.decision = row_state(model, batch, row, output)
        self.facts = {n: v for n, v in facts.items() if kb.variables[n].role == "input"}
        # the residual is encoded from the inputs: the biases alone here
        self.comp = compile_decision(model, kb, model.bias_table(), max_relus=max_relus,
                                     row=self._row_values())

    def _row_values(self) -> dict:
        """The row's real and int inputs: the program ranges over them too."""
        return {n: v for n, v in self.facts.items() if v is not MISSING
                and isinstance(self.kb.variables[n].type, (A.RealType, A.IntType))}

    def differs(self, fixed: dict):
        witness = differs(self.comp, self.output, self.decision, fixed,
                          time_limit=self.timeout)
        if witness is None:
            return None       # the program over-approximates: no input differs
        if self._replays(witness):
            return witness
        # a witness on a threshold's wrong side: ask Z3, which is exact
        return self._exact_problem().differs(fixed)

    def _replays(self, witness: dict, target=None) -> bool:
        """Whether the decision function decides otherwise (``target``, where given) on
        the witness's inputs."""
        model, batch, row, _ = self._where
        got = decision_on(model, batch, row, self.output, witness)
        if target is not None:
            return got == target
        return got is not None and got != self.decision

    @z3_serialised
    def _exact_problem(self):
        if self._exact is None:
            import z3

            from .z3 import Z3Problem

            model, batch, row, max_relus = self._where
            exact = Z3Problem(model, batch, row, self.output, level="input",
                              max_relus=max_relus, timeout=self.timeout)
            # over the program's ranges: inputs declared without bounds within the
            # training range, as this problem's assumptions say (Z3 alone ranges over
            # every real) -- or at the row's own value, which may lie outside it
            rows = self._row_values()
            exact.background = list(exact.background) + [
                z3.Or(z3.And(exact.const(n) >= Fraction(lo), exact.const(n) <= Fraction(hi)),
                      exact.const(n) == Fraction(float(rows[n])))
                if n in rows and not lo <= float(rows[n]) <= hi else
                z3.And(exact.const(n) >= Fraction(lo), exact.const(n) <= Fraction(hi))
                for n, (lo, hi) in self.comp.assumed.items()]
            self._exact = exact
        return self._exact

    def closest(self, *, minimize: str, immutable, spreads: dict, wishes: Wishes = NO_WISHES):
        # searched in the inner program (a margin around real thresholds), so that the
        # change found replays; the over-approximating one says when none exists at all
        # ``timeout`` bounds the whole search, every program (and Z3) together
        deadline = time.monotonic() + self.timeout

        def left() -> float:
            return max(1e-3, deadline - time.monotonic())

        model, _, _, max_relus = self._where
        inner = compile_decision(model, self.kb, model.bias_table(), max_relus=max_relus,
                                 margin=EPS, row=self._row_values())
        found = closest_change(inner, self.output, self.decision, self.facts,
                               minimize=minimize, immutable=set(immutable), spreads=spreads,
                               time_limit=left(), wishes=wishes)
        if found is not None and not self._replays(found, wishes.target):
            # HiGHS' feasibility tolerance (1e-7) let a fact the change keeps, a hair off
            # a threshold (x = 2.75999999724 against x >= 2.76), count as over it, and
            # polishing moves only changed facts: which change works is Z3's to say
            exact = self._exact_problem()
            exact.timeout = left()
            return exact.closest(minimize=minimize, immutable=immutable, spreads=spreads,
                                 wishes=wishes)
        if found is None:
            found = closest_change(self.comp, self.output, self.decision, self.facts,
                                   minimize=minimize, immutable=set(immutable),
                                   spreads=spreads, time_limit=left(), wishes=wishes)
            if found is not None and not self._replays(found, wishes.target):
                # the over-approximation's change sits on a threshold (a score of exactly
                # 0, a real at equality): whether any change exists is Z3's to say, exactly
                exact = self._exact_problem()
                exact.timeout = left()
                found = exact.closest(minimize=minimize, immutable=immutable,
                                      spreads=spreads, wishes=wishes)
        return found

    def assumptions(self, fixed=()) -> tuple:
        return assumptions(self.comp, fixed)

    def why_none(self) -> str:
        """Why no input change flips a bool decision: the residual's logit bounds over
        the inputs' ranges against what the rules can add."""
        comp, output, decision = self.comp, self.output, self.decision
        if output not in comp.residual or not isinstance(decision, bool):
            return ""
        lo, hi = comp.p.bounds(comp.residual[output][0])
        bias = float(comp.bias.get(output, 0.0))
        swing = sum(abs(float(r.weight)) for r in comp.kb.rules_for(output))
        if (decision and lo + bias - swing > 0) or (not decision and hi + bias + swing <= 0):
            return (f"; the residual network alone decides this: its logit stays within "
                    f"[{lo:.3g}, {hi:.3g}] over the inputs' ranges, and the rules add at "
                    f"most {swing:g}")
        return ""


def assumptions(comp: _Compiler, fixed=()) -> tuple:
    """What a result assumes: the inputs declared without bounds that it leaves free range
    over the training range."""
    free = [f"{n} in [{lo:.6g}, {hi:.6g}]" for n, (lo, hi) in comp.assumed.items()
            if n not in fixed]
    return (f"for inputs within the training range ({', '.join(free)})",) if free else ()


class MilpBackend(Backend):
    """HiGHS: the input level, table inputs bounded (or bounded by the training range),
    decisions no hard constraint ties together."""

    name = "milp"

    def problem(self, model, batch, row, output, *, level, max_relus, timeout) -> MilpProblem:
        if level != "input":
            raise ModelError("the MILP backend reasons at the input level (use "
                             "backend='z3' for level='concept')")
        return MilpProblem(model, batch, row, output, max_relus=max_relus, timeout=timeout)

    def refute(self, model, formula, *, level, max_relus, timeout):
        if level != "input":
            raise ModelError("the MILP backend verifies at the input level (use "
                             "backend='z3' for level='concept')")
        import pandas as pd

        from ._row import show

        kb = model.to_kb()
        comp = compile_decision(model, kb, model.bias_table(), max_relus=max_relus)
        rows = len(comp.p.rows)
        comp.p.add(comp.truth(not_false(kb, formula)), hi=0.0)   # known false
        try:
            x = comp.p.solve(None, time_limit=timeout)
        finally:
            del comp.p.rows[rows:]
        if x is None:
            return None, assumptions(comp)
        codes = _decode(comp, x)
        row = pd.DataFrame({n: [show(kb, n, c)] for n, c in codes.items()})
        return row, assumptions(comp)
