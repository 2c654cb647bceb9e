"""Encoding of knowledge bases into Z3: types, expressions and the crisp decision.

Every Z3 failure is turned into :class:`~greybox.errors.SolverError`; Z3 exceptions never
escape.

Z3 is used across threads through :mod:`._z3calls` (a lock and a context per call).
"""

from __future__ import annotations

import copy as _copy
import itertools
from collections.abc import Mapping
from fractions import Fraction

import pandas as pd
import z3

from greybox.errors import DataError, RuleError, SolverError

from . import _ast as A
from ._deadline import Deadline, z3_milliseconds
from ._decisions import candidates, plan
from ._domain import domain
from ._kb import KnowledgeBase, parse_formula
from ._missing import definite, missing_key, not_false, placeholder
from ._z3calls import Z3_LOCK, call_cache, in_context, z3_serialised

__all__ = ["Z3Encoding", "Z3_LOCK", "to_z3", "witness_row", "solve", "z3_serialised",
           "call_cache", "in_context"]

def _num(value) -> z3.ArithRef:
    if isinstance(value, int):
        return z3.IntVal(value)
    return z3.RealVal(Fraction(value))


def arith_term(op: str, args: list) -> z3.ArithRef:
    """The Z3 term of :class:`~greybox.rules.ast.Arith` ``op`` over integer terms, with
    Python's floor semantics: SMT-LIB's ``div``/``mod`` are Euclidean (the remainder is
    never negative), which agrees with floor division for a positive divisor; for a
    negative one, ``a // d == (-a) div (-d)`` and ``a % d == -((-a) mod (-d))``.

    Examples
    --------
    >>> import z3
    >>> from greybox.rules._z3 import arith_term
    >>> [z3.simplify(arith_term(op, [z3.IntVal(a), z3.IntVal(d)])).as_long()
    ...  for op in ("//", "%") for a, d in ((-7, 2), (7, -2), (-7, -2))]
    [-4, -4, 3, 1, -1, -1]
    """
    if op in ("//", "%"):
        a, d = (z3.ToInt(x) if x.is_real() else x for x in args)
        if z3.is_int_value(d):   # a constant divisor: its sign is known
            if d.as_long() > 0:
                return a / d if op == "//" else a % d
            return (-a) / (-d) if op == "//" else -((-a) % (-d))
        if op == "//":
            return z3.If(d > 0, a / d, (-a) / (-d))
        return z3.If(d > 0, a % d, -((-a) % (-d)))
    if op == "abs":
        (a,) = args
        return z3.If(a >= 0, a, -a)
    acc = args[0]
    for b in args[1:]:
        acc = z3.If(b < acc, b, acc) if op == "min" else z3.If(b > acc, b, acc)
    return acc


class Z3Encoding:
    """The Z3 view of a knowledge base.

    Each input, neural and decided variable is a Z3 constant (bool -> Bool, int and enum
    -> Int, real -> Real; enum values are their position in the declaration); defined
    variables are replaced by their expressions. Learnable thresholds take their current
    value.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input age: int 0..120  output ok: bool  rule r: age >= 18 -> ok")
    >>> enc = gr.Z3Encoding(kb)
    >>> enc.expr(kb.rules["r"].body)
    18 <= age
    >>> enc.domain()
    [And(age >= 0, age <= 120)]
    """

    def __init__(self, kb: KnowledgeBase, *, bias: Mapping | None = None):
        if not isinstance(kb, KnowledgeBase):
            raise TypeError(f"Z3Encoding needs a KnowledgeBase, got {type(kb).__name__}")
        self.kb = kb
        self._consts: dict[str, z3.ExprRef] = {}
        self._defined: dict[str, z3.ExprRef] = {}
        from ._evaluate import _bias_table

        self._bias = _bias_table(kb, bias)

    # ------------------------------------------------------------------ contexts
    def _held(self) -> dict:
        """Every Z3 term this encoding keeps, by slot (a subclass keeping more adds its
        own slots, and takes them back in :meth:`_hold`)."""
        held = {("const", k): v for k, v in self._consts.items()}
        held.update({("defined", k): v for k, v in self._defined.items()})
        return held

    def _hold(self, slot: tuple, term: z3.ExprRef) -> None:
        kind, key = slot
        (self._consts if kind == "const" else self._defined)[key] = term

    def _emptied(self) -> Z3Encoding:
        """A copy holding no term yet (its slots filled by :meth:`_hold`)."""
        copy = _copy.copy(self)
        copy._consts, copy._defined = {}, {}
        return copy

    def translated(self, ctx: z3.Context, extra=()) -> tuple[Z3Encoding, list]:
        """A copy of this encoding whose terms live in ``ctx``, and the terms ``extra``
        (built with it) in ``ctx`` too: Z3's translation of all of them at once, so that
        shared subterms are copied once.

        Examples
        --------
        >>> import z3
        >>> import greybox.rules as gr
        >>> enc = gr.Z3Encoding(gr.parse("input age: int 0..120  output ok: bool"))
        >>> term = enc.expr(gr.parse_formula("age < 18"))
        >>> other = z3.Context()
        >>> copy, [moved] = enc.translated(other, [term])
        >>> moved.ctx is other, copy.var("age").ctx is other, moved
        (True, True, 18 > age)
        """
        held = self._held()
        terms = [*held.values(), *extra]
        copy = self._emptied()
        if not terms:
            return copy, []
        vector = z3.AstVector(ctx=terms[0].ctx)
        for t in terms:
            vector.push(t)
        moved = vector.translate(ctx)
        for i, slot in enumerate(held):
            copy._hold(slot, moved[i])
        return copy, [moved[i] for i in range(len(held), len(terms))]

    # ------------------------------------------------------------------ variables
    def const(self, name: str) -> z3.ExprRef:
        """The Z3 constant of a non-defined variable."""
        c = self._consts.get(name)
        if c is None:
            t = self.kb.variables[name].type
            if isinstance(t, A.TensorType):
                raise RuleError(f"{name!r} is a tensor and has no Z3 encoding")
            c = self._consts[name] = domain(t).z3_const(name)
        return c

    def missing(self, name: str) -> z3.BoolRef:
        """The Z3 Bool ``name is missing`` of optional input ``name`` (its value constant
        is free where it is true: every formula reads it only where it is false)."""
        key = missing_key(name)
        c = self._consts.get(key)
        if c is None:
            c = self._consts[key] = z3.Bool(name + "\x1fmissing")
        return c

    def var(self, name: str) -> z3.ExprRef:
        """A variable's value: its constant, or for a defined variable its expression."""
        v = self.kb.variables[name]
        if v.role == "defined":
            e = self._defined.get(name)
            if e is None:
                enum = v.type if isinstance(v.type, A.EnumType) else None
                e = self._defined[name] = self.expr(v.expr, enum)
            return e
        return self.const(name)

    def type_constraint(self, name: str, value: z3.ExprRef | None = None) -> z3.BoolRef | None:
        """``value`` (default: the variable) lies within the declared type, or None."""
        t = self.kb.variables[name].type
        x = self.var(name) if value is None else value
        if isinstance(t, A.IntType):
            return z3.And(x >= t.lo, x <= t.hi)
        if isinstance(t, A.EnumType):
            return z3.And(x >= 0, x < len(t.values))
        if isinstance(t, A.RealType) and t.lo is not None:
            return z3.And(x >= _num(t.lo), x <= _num(t.hi))
        return None

    def free_names(self, roles=("input", "neural", "decided")) -> list[str]:
        return [n for n, v in self.kb.variables.items()
                if v.role in roles and not isinstance(v.type, A.TensorType)]

    def domain(self, roles=("input", "neural", "decided")) -> list[z3.BoolRef]:
        """Type constraints of the variables with these roles; an optional input that is
        missing holds its placeholder, as ``predict`` holds it (only a residual network
        reads it there)."""
        out = []
        for n in self.free_names(roles):
            c = self.type_constraint(n)
            if c is not None:
                out.append(c)
            if self.kb.variables[n].optional:
                t = self.kb.variables[n].type
                held = placeholder(t)
                out.append(z3.Implies(self.missing(n), self.var(n) == domain(t).z3_value(held)))
        return out

    # ---------------------------------------------------------------- expressions
    def expr(self, e, enum: A.EnumType | None = None) -> z3.ExprRef:
        """The Z3 term of a validated expression."""
        if isinstance(e, A.Num):
            return _num(e.value)
        if isinstance(e, A.BoolConst):
            return z3.BoolVal(e.value)
        if isinstance(e, A.Var):
            return self.var(e.name)
        if isinstance(e, A.Sym):
            return domain(enum).z3_value(e.name)
        if isinstance(e, A.Neg):
            return -self.expr(e.operand)
        if isinstance(e, A.Sum):
            acc = self.expr(e.args[0])
            for op, a in zip(e.ops, e.args[1:]):
                acc = acc + self.expr(a) if op == "+" else acc - self.expr(a)
            return acc
        if isinstance(e, A.Mul):
            left, right = self.expr(e.left), self.expr(e.right)
            if A.is_constant(e.left) or A.is_constant(e.right):
                return left * right
            # two bounded integers: by cases of the side with fewer values (linear
            # arithmetic, which Z3 optimises far better than non-linear)
            cases = self._cases(e.left, left, lambda v: z3.IntVal(v) * right)
            alt = self._cases(e.right, right, lambda v: left * z3.IntVal(v))
            best = min((c for c in (cases, alt) if c is not None), key=lambda c: c[1],
                       default=None)
            return best[0] if best is not None else left * right
        if isinstance(e, A.Count):
            return z3.Sum([z3.If(self.expr(a), z3.IntVal(1), z3.IntVal(0)) for a in e.args])
        if isinstance(e, A.Arith):
            args = [self.expr(a) for a in e.args]
            if e.op in ("//", "%") and not A.is_constant(e.args[1]):
                found = self._cases(e.args[1], args[1],
                                    lambda v: arith_term(e.op, [args[0], z3.IntVal(v)]))
                if found is not None:     # by the divisor's values: division by constants
                    return found[0]
            return arith_term(e.op, args)
        if isinstance(e, A.Compare):
            ctx = _enum_of(e.left, self.kb) or _enum_of(e.right, self.kb)
            left, right = self.expr(e.left, ctx), self.expr(e.right, ctx)
            return {"<": lambda: left < right, "<=": lambda: left <= right,
                    ">": lambda: left > right, ">=": lambda: left >= right,
                    "==": lambda: left == right, "!=": lambda: left != right}[e.op]()
        if isinstance(e, A.InSet):
            ctx = _enum_of(e.operand, self.kb)
            x = self.expr(e.operand)
            return z3.Or([x == self.expr(v, ctx) for v in e.values])
        if isinstance(e, A.Not):
            return z3.Not(self.expr(e.operand))
        if isinstance(e, A.IsMissing):
            return self.missing(e.operand.name)
        if isinstance(e, A.And):
            return z3.And([self.expr(a) for a in e.args])
        if isinstance(e, A.Or):
            return z3.Or([self.expr(a) for a in e.args])
        if isinstance(e, A.Implies):
            return z3.Implies(self.expr(e.left), self.expr(e.right))
        if isinstance(e, A.Iff):
            return self.expr(e.left) == self.expr(e.right)
        raise TypeError(f"cannot encode {e!r}")

    #: most values an operand of non-linear arithmetic is split into cases over
    MAX_CASES = 64

    def _cases(self, node, term, fn) -> tuple[z3.ExprRef, int] | None:
        """``fn(v)`` for the value ``v`` that ``term`` (of expression ``node``) takes, as
        a chain of ``If`` over the values ``node`` can take (the last one the default),
        with their number; None where they are many or unknown."""
        from ._intervals import value_set

        values = value_set(node, self.kb.variables)
        if not values or len(values) > self.MAX_CASES:
            return None
        out = fn(values[-1])
        for v in reversed(values[:-1]):
            out = z3.If(term == v, fn(v), out)
        return out, len(values)

    def hard_constraints(self) -> list[z3.BoolRef]:
        return [self.expr(not_false(self.kb, c.formula))
                for c in self.kb.constraints.values() if c.hard]

    # ------------------------------------------------------------------ decisions
    def value_of(self, name: str, value) -> z3.ExprRef:
        """The Z3 constant for a value of a finite variable."""
        return domain(self.kb.variables[name].type).z3_value(value)

    def score(self, name: str, value) -> z3.ArithRef:
        """The crisp score of ``name = value`` (for a bool, the score of True)."""
        b = self._bias.get(name, {})
        total = _num(b.get(value, 0.0) if b else 0.0)
        for r in self.kb.rules_for(name):
            head = r.head.value
            if isinstance(head, bool):
                w = r.weight if head else -r.weight
            else:
                target = head.value if isinstance(head, A.Num) else head.name
                if target != value:
                    continue
                w = r.weight
            total = total + z3.If(self.expr(definite(self.kb, r.body)), _num(w), _num(0))
        return total

    def decision(self, *, deadline: Deadline | None = None) -> list[z3.BoolRef]:
        """Constraints that make every decided variable equal the crisp decision:
        the highest-scoring assignment satisfying the hard constraints (first in domain
        order on ties). Inputs for which no assignment is feasible have no model.

        A variable decided alone is encoded over its candidate values only (see
        :func:`~greybox.rules._decisions.candidates`), whatever the size of its domain;
        tied variables over their joint assignments. ``deadline`` is checked while
        building (:class:`~greybox.rules._deadline.OutOfTime`)."""
        deadline = deadline or Deadline(None)
        out = []
        for comp in plan(self.kb).components:
            deadline.check(f"encoding the decision of {', '.join(comp.variables)}")
            out.extend(self.domain_for(comp.variables))
            if comp.enumerated:
                out.extend(self._joint_decision(comp, deadline))
            else:
                out.extend(self._single_decision(comp.variables[0]))
        return out

    def _objective(self, name: str, x: z3.ExprRef, values) -> z3.ArithRef:
        """The score of the value ``x`` takes, for ``x`` among ``values``; every other
        value scores 0 (no rule concludes it and no bias names it)."""
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType):
            return z3.If(x, self.score(name, True), _num(0))
        out = _num(0)
        for value in reversed(values):
            out = z3.If(x == self.value_of(name, value), self.score(name, value), out)
        return out

    def _scored(self, name: str, values) -> list:
        """The values of ``values`` that can score other than 0."""
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType):
            return [True]
        pushed = set(candidates(self.kb, name, self._bias.get(name, {})))
        return [v for v in values if v in pushed]

    def _single_decision(self, name: str) -> list[z3.BoolRef]:
        """``name`` decided alone: the argmax over its candidates, ties to the earlier."""
        t = self.kb.variables[name].type
        x = self.const(name)
        if name in self.kb.additive:
            return [x == self._additive(t, self.score(name, True))]
        values = candidates(self.kb, name, self._bias.get(name, {}))
        objective = self._objective(name, x, self._scored(name, values))
        d = domain(t)
        rank = d.z3_index(x)
        out = [z3.Or([x == self.value_of(name, v) for v in values])]
        for v in values:
            o_v = z3.substitute(objective, (x, self.value_of(name, v)))
            out.append(z3.Or(o_v < objective,
                             z3.And(o_v == objective, rank <= d.index(v))))
        return out

    @staticmethod
    def _additive(t, s):
        """An additive variable's value from its score ``s``, as
        :func:`~greybox.rules._decisions.additive_value` computes it."""
        if isinstance(t, A.IntType):
            s = z3.ToInt(s + z3.RealVal(Fraction(1, 2)))   # floor(s + 1/2): halves up
        if getattr(t, "lo", None) is not None:
            lo, hi = (_num(t.lo), _num(t.hi)) if isinstance(t, A.RealType) else \
                (z3.IntVal(t.lo), z3.IntVal(t.hi))
            s = z3.If(s < lo, lo, z3.If(s > hi, hi, s))
        return s

    def _joint_decision(self, comp, deadline: Deadline) -> list[z3.BoolRef]:
        """Tied variables: the best feasible joint assignment, ties to the earlier one
        (the rank of an assignment is its place in the mixed-radix domain order)."""
        names = comp.variables
        xs = [self.const(v) for v in names]
        types = [self.kb.variables[v].type for v in names]
        doms = [domain(t) for t in types]
        scored = {v: set(self._scored(v, d.values)) for v, d in zip(names, doms)}
        objective = _num(0)
        for v, x, d in zip(names, xs, doms):
            objective = objective + self._objective(v, x, [u for u in d.values
                                                           if u in scored[v]])
        rank = _num(0)
        for x, d in zip(xs, doms):
            rank = rank * d.size + d.z3_index(x)
        cons = z3.And([self.expr(not_false(self.kb, c.formula)) for c in comp.constraints])
        # each value's score as a function of the component's variables, built once
        score_of = {(v, u): self.score(v, u) for v in names for u in scored[v]}
        out = [cons]
        for k, a in enumerate(itertools.product(*(d.values for d in doms))):
            if k % 256 == 0:
                deadline.check(f"encoding the joint decision of {', '.join(names)} "
                               f"(assignment {k:,} of {comp.size(self.kb):,})")
            subs = [(x, self.value_of(v, u)) for x, v, u in zip(xs, names, a)]
            o_k = z3.Sum([score_of[v, u] for v, u in zip(names, a) if u in scored[v]]
                         or [_num(0)])
            o_k = z3.substitute(o_k, *subs)
            c_k = z3.substitute(cons, *subs)
            out.append(z3.Implies(c_k, z3.Or(o_k < objective,
                                             z3.And(o_k == objective, rank <= k))))
        return out

    def domain_for(self, names) -> list[z3.BoolRef]:
        return [c for c in (self.type_constraint(n) for n in names) if c is not None]


def _enum_of(e, kb) -> A.EnumType | None:
    if isinstance(e, A.Var):
        t = kb.variables[e.name].type
        return t if isinstance(t, A.EnumType) else None
    return None


@z3_serialised(own_context=False)
def to_z3(kb: KnowledgeBase, formula=None, *, ctx: z3.Context | None = None) -> z3.ExprRef:
    """The Z3 term of ``formula`` (rule text or AST) over ``kb``'s variables; without a
    formula, the conjunction of the declared types and the hard constraints.

    The term is built in ``ctx``, by default z3py's default context (so that it mixes with
    your own terms). A Z3 context is not thread-safe: from several threads, give each
    thread a context of its own (``z3.Context()``), or hold :data:`Z3_LOCK` while you
    work with the terms.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input age: int 0..120  output ok: bool")
    >>> gr.to_z3(kb, "age < 18 -> not ok")
    Implies(18 > age, Not(ok))
    >>> import z3
    >>> mine = z3.Context()
    >>> gr.to_z3(kb, "ok", ctx=mine).ctx is mine
    True
    """
    if ctx is not None and not isinstance(ctx, z3.Context):
        raise DataError(f"to_z3: ctx must be a z3.Context or None, got {ctx!r} "
                        f"({type(ctx).__name__})")
    with in_context(ctx if ctx is not None else z3.main_ctx()):
        enc = Z3Encoding(kb)
        if formula is None:
            return z3.And(enc.domain() + enc.hard_constraints())
        return enc.expr(parse_formula(formula, kb))


def z3_message(err: z3.Z3Exception) -> str:
    """The text of a Z3 exception (Z3 gives bytes)."""
    value = getattr(err, "value", err)
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def solve(solver: z3.Solver, *assumptions) -> z3.CheckSatResult:
    """``solver.check`` with Z3 errors turned into SolverError."""
    try:
        return solver.check(*assumptions)
    except z3.Z3Exception as err:  # pragma: no cover - depends on Z3 internals
        raise SolverError(f"Z3 failed: {z3_message(err)}") from None


def make_solver(timeout: float | None) -> z3.Solver:
    s = z3.Solver()
    if timeout is not None:
        s.set("timeout", z3_milliseconds(timeout))
    return s


def real_value(value: z3.ExprRef) -> float:
    """A Z3 numeral (rational or algebraic) as a float."""
    return domain(A.RealType()).z3_decode(value)


def witness_row(enc: Z3Encoding, model: z3.ModelRef, names) -> pd.DataFrame:
    """One-row DataFrame with the model's values of ``names`` (enums as their labels)."""
    row = {}
    for n in names:
        d = domain(enc.kb.variables[n].type)
        if enc.kb.variables[n].optional and z3.is_true(
                model.eval(enc.missing(n), model_completion=True)):
            row[n] = pd.Series([None], dtype=object)   # missing in this row
            continue
        value = model.eval(enc.var(n), model_completion=True)
        row[n] = d.series([d.code(d.z3_decode(value))])
    return pd.DataFrame(row)
