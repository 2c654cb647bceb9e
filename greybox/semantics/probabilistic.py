"""Exact probabilistic semantics over finite-domain variables.

Neural finite variables are independent distributions given the inputs; ``define``s over
them are deterministic factors (integer arithmetic is split into small pieces by
:mod:`greybox._linear`: digit columns with carries for positional sums, kept digit by digit
by :mod:`._digits`); hard constraints over non-decided variables are 0/1 factors that
condition everything they touch. A rule body's truth is the exact probability of the body
under this factor graph (:mod:`._graph`), computed by variable elimination
(:mod:`greybox._factors`). A comparison with something to learn (a ``~`` threshold, a real
network output) is a Bernoulli variable whose probability is the smooth comparison; other
comparisons are crisp.

A connective whose joint table would be large (the conjunction of a ``forall`` or of
``all_different`` units over many variables) is never multiplied out: it is kept as a
product of its parts (:mod:`._factored`), whose probability is computed in log space
(:mod:`._logspace`), exactly and differentiably, or refused, naming it and the approximate
route. The tables themselves are :mod:`._fields`. This module walks the formulas into them.

Decisions sit on top, as in every semantics: a decided variable's score is
``bias + sum(weight * P(body))``.
"""

from __future__ import annotations

import math
import operator
import weakref

import torch

from greybox import functional as F
from greybox._batch import kb_cached
from greybox._linear import FACTOR_LIMIT
from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import expr_to_text, not_false, plan, type_to_text, value_set

from ._base import Context, Env, Semantics
from ._compiled import int_leaves, nonlinear, smooth_truth, stated_threshold, wide_int
from ._digits import Virtual, codes, distribution, most_probable
from ._factored import Factored, connective, materialize, negation, parts_of
from ._fields import Field, binop, joint_size
from ._graph import FactorGraph, values_of
from ._logspace import check_width, log_truth

__all__ = ["ProbabilisticSemantics"]

#: Largest joint table enumerated to give a sum's distribution in the trace.
MAX_MARGINAL = 1 << 14
#: Most joint values a ``count`` is summed over densely (beyond: a chain of partial sums).
_DENSE_COUNT = 1 << 12

#: A connective whose joint table has more entries per row than this is kept factored
#: (:class:`Factored`) instead of multiplied out.
SMALL_JOINT = 1 << 10

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


#: Per model's compiled state (rebuilt when the model moves): each neural variable's Field
#: of values, or False for a real one.
_NEURAL_FIELDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ProbContext(Context):
    """One exact-inference pass over a batch: walks the formulas into fields and factors
    of its :class:`~._graph.FactorGraph` (``self.graph``) and answers the queries."""

    def __init__(self, model, batch):
        super().__init__(model, batch)
        #: neural variables' value fields (the same for every batch), per compiled model
        self._neural_fields = _NEURAL_FIELDS.setdefault(model.compiled, {})
        self.graph = FactorGraph(self.kb, self.device, model.compiled.value_tensor,
                                 self._neural_fields)
        #: each variable's number of values and values (the graph's)
        self.sizes: dict[str, int] = self.graph.sizes
        self.vals: dict[str, torch.Tensor] = self.graph.vals
        #: finite neural variables' network outputs (the graph's)
        self.logits: dict[str, torch.Tensor] = self.graph.logits
        #: inside a comparison or define whose integer arithmetic float32 cannot hold
        #: exactly (Compiled.wide): observed numbers and constants are read as float64
        self.wide = False
        self.constraint_factors: list = []
        #: positional sums whose factors are in the graph
        self._virtual_added: set[str] = set()
        #: defines that are plain sums of variables, by name (their compiled arithmetic)
        self._sums: dict = {}
        self._atoms: dict = {}

    # helpers ---------------------------------------------------------------------------
    def const(self, x) -> Field:
        return Field((), torch.full((1,), float(x), device=self.device,
                                    dtype=torch.float64 if self.wide else None))

    def _register(self, var: str, values, factor, *, conditional=True):
        vals = self.model.compiled.value_tensor(tuple(values))
        self.sizes[var] = len(vals)
        self.vals[var] = vals
        self.add_factor(factor, conditional=conditional)
        return Field((var,), vals.view(1, -1))

    def add_factor(self, factor, *, conditional=True):
        """Add a factor to the graph; ``conditional``: it is a distribution over the
        variables it introduces given the others (it sums to 1 over them)."""
        self.graph.add(factor, conditional=conditional)

    def _table(self, x) -> Field:
        """``x`` as one field (a factored formula multiplied out, where it fits)."""
        return materialize(x, self.sizes, self.const) if isinstance(x, Factored) else x

    def _binop(self, a: Field, b: Field, fn) -> Field:
        return binop(self._table(a), self._table(b), fn, self.sizes)

    def unfolded(self, factors: list) -> list:
        """``factors`` with each count's placeholder replaced by its chain of partial sums
        (for a most probable joint assignment, which the chain's variables take part in)."""
        return self.graph.unfolded(factors)

    def parts_of(self, x) -> list:
        """The fields whose product is ``x`` (a hard constraint's factors); a factored
        formula that is not one product (a negated or disjoined conjunction) is refused."""
        return parts_of(x, self.sizes, self.const)

    # constructors ----------------------------------------------------------------------
    def observe(self, name, x):
        # (an integer input beyond float32's exact integers arrives in float64: kept)
        return Field((), x if x.dtype == torch.float64 else x.float())

    def neural(self, name, out):
        return self.graph.neural(name, out)

    def neurals(self, outs):
        return self.graph.neurals(outs)

    def _independent(self, arith) -> bool:
        """Whether a positional sum's carries can be summed column by column
        (:meth:`FactorGraph.independent`)."""
        return self.graph.independent(arith)

    def _add_arithmetic(self, x: Virtual) -> None:
        """A positional sum's factors into the graph, when a query needs them there."""
        if x.name in self._virtual_added:
            return
        self._virtual_added.add(x.name)
        arith = x.arith
        self.graph.add_values(arith.aux)
        for factor, conditional in zip(arith.factors, arith.conditionals):
            self.add_factor(factor, conditional=conditional)

    def decided(self, name, dist):
        p = torch.stack([1 - dist, dist], 1) if dist.dim() == 1 else dist
        return self._register(name, values_of(self.kb, name), ((name,), p))

    def fixed(self, name, index):
        return self.const(values_of(self.kb, name)[index])

    def define(self, name, env: Env):
        var = self.kb.variables[name]
        if isinstance(var.type, A.IntType) and env.parent is None:
            found = self._linear_define(name, var)
            if found is not None:
                return found
        f = self._define_expr(name, var, env)
        if isinstance(f, Factored):
            return f       # a bool kept factored: what reads it reads its parts
        if not f.scope or isinstance(var.type, A.RealType):
            return f
        return self._define_variable(name, var, f, env)

    def _linear_define(self, name, var) -> Field | Virtual | None:
        """An integer define linear in int or bool variables, as compiled arithmetic
        (:mod:`greybox._linear`) whose factors join the graph (a positional sum's when a
        query needs them); None where it is not one."""
        leaves = int_leaves(self.kb, self.model.compiled, name)
        if leaves is None or not self.sizes.keys() >= leaves[1]:
            return None
        arith = self.model.compiled.arithmetic(name, leaves[0])
        if arith is None:
            return None
        if arith.kind == "positional":
            return Virtual(name, arith)   # its factors join the graph when needed
        self.graph.add_values(arith.aux)
        for factor, conditional, made in zip(arith.factors, arith.conditionals, arith.made):
            if conditional:
                self.graph.introduces[id(factor)] = made
            self.add_factor(factor, conditional=conditional)
        if arith.columns and all(arith.conditionals):
            self._sums[name] = arith     # a plain sum (see log_prob)
        self.sizes[name] = var.type.size
        self.vals[name] = self.model.compiled.value_tensor(tuple(values_of(self.kb, name)))
        return Field((name,), self.vals[name].view(1, -1))

    def _define_expr(self, name, var, env: Env):
        """The field of define ``name``'s expression (in float64 where its integer
        arithmetic needs it)."""
        if isinstance(var.type, A.IntType) and not self.wide and \
                self.model.compiled.wide(var.expr, define=name):
            self.wide = True
            try:
                return self.field(var.expr, env)
            finally:
                self.wide = False
        try:
            return self.field(var.expr, env)
        except ModelError as err:
            raise _located(err, self.kb, *_written(self.kb, name, var.expr)) from None

    def _define_variable(self, name, var, f: Field, env: Env) -> Field:
        """Define ``name`` as a variable of its own: a 0/1 factor over the variables of its
        expression's field ``f`` and it."""
        size = A.domain(var.type).size
        if f.t[:1].numel() * size > FACTOR_LIMIT:
            raise ModelError(
                f"define {name!r}: its type {type_to_text(var.type)} has {size:,} values; "
                f"exact inference would enumerate them for every joint value of "
                f"{', '.join(f.scope)} ({f.t[:1].numel() * size:,} entries per row, at most "
                f"{FACTOR_LIMIT:,}): declare a tighter range, or use a fuzzy semantics")
        vname = name + env.key
        values = values_of(self.kb, name)
        vals = torch.as_tensor([float(v) for v in values], device=self.device)
        if isinstance(var.type, A.EnumType) and f.t.dtype != torch.float32:
            f = Field(f.scope, f.t.float())
        ind = (f.t.unsqueeze(-1) == vals).to(torch.float32)
        if ind[:1].numel() > FACTOR_LIMIT:    # per row (checked above; kept as a guard)
            raise ModelError(f"define {name!r}: {ind.numel()} joint values, too many for exact "
                             "inference")
        conditional = bool((ind.sum(-1) == 1).all())
        factor = (f.scope + (vname,), ind)
        if conditional:
            self.graph.introduces[id(factor)] = (vname,)
        return self._register(vname, values, factor, conditional=conditional)

    # formulas --------------------------------------------------------------------------
    def field(self, e, env: Env) -> Field:
        if isinstance(e, A.Num):
            if e.learnable:
                return Field((), stated_threshold(self.model, e, self.offsets).reshape(1))
            return self.const(e.value)
        if isinstance(e, A.BoolConst):
            return self.const(float(e.value))
        if isinstance(e, A.Var):
            return self._variable(e, env)
        if isinstance(e, (A.Neg, A.Sum, A.Mul, A.Arith)):
            return self._arithmetic(e, env)
        if isinstance(e, A.Not):
            return negation(self.field(e.operand, env), e)
        if isinstance(e, A.IsMissing):
            return Field((), self.missing(e.operand.name))
        if isinstance(e, (A.And, A.Or, A.Implies, A.Iff)):
            return self._connective(e, env)
        if isinstance(e, A.Compare):
            return self._compare(e, env)
        if isinstance(e, A.Count):
            return self._count(e, env)
        if isinstance(e, A.InSet):
            return self._exactly(e, env, self._inset)
        raise ModelError(f"cannot evaluate {e!r}")

    def _variable(self, e: A.Var, env: Env) -> Field:
        x = env[e.name]
        if isinstance(x, Virtual):
            raise ModelError(
                f"{e.name!r} is a sum that exact inference keeps digit by digit (its "
                "values are too many to enumerate); rules and constraints cannot read it "
                "under semantics='probabilistic' -- supervise it, or use a fuzzy semantics")
        if self.wide and isinstance(x, Field) and x.t.is_floating_point() and \
                x.t.dtype != torch.float64:
            return Field(x.scope, x.t.double())
        return x

    def _arithmetic(self, e, env: Env) -> Field:
        """``-x``, a sum, a product or an operation of :class:`~greybox.rules.ast.Arith`;
        a non-linear result over two or more variables is one variable of its own."""
        if isinstance(e, A.Neg):
            inner = self._table(self.field(e.operand, env))
            return Field(inner.scope, -inner.t)
        if isinstance(e, A.Sum):
            acc = self.field(e.args[0], env)
            chain = nonlinear(self.kb, e)
            for i, (op, arg) in enumerate(zip(e.ops, e.args[1:])):
                nxt = self.field(arg, env)
                acc = self._binop(acc, nxt, torch.add if op == "+" else torch.sub)
                if chain and i + 2 < len(e.args):   # a partial sum: one variable
                    acc = self._intermediate(acc, e, i + 2, env)
            return acc
        if isinstance(e, A.Mul):
            out = self._binop(self.field(e.left, env), self.field(e.right, env), torch.mul)
            if not (A.is_constant(e.left) or A.is_constant(e.right)):
                out = self._intermediate(out, e, 0, env)
            return out
        parts = [self.field(a, env) for a in e.args]
        if e.op == "abs":
            out = Field(parts[0].scope, parts[0].t.abs())
        else:
            op = e.op
            out = parts[0]
            for p in parts[1:]:
                out = self._binop(out, p, lambda a, b: F.arith(op, [a, b]))
        return self._intermediate(out, e, 0, env)

    # connectives: multiplied out while small, else kept factored ---------------------
    def _connective(self, e, env) -> Field | Factored:
        args = [self.field(a, env) for a in
                (e.args if isinstance(e, (A.And, A.Or)) else (e.left, e.right))]
        small = all(isinstance(a, Field) for a in args) and \
            joint_size(args, self.sizes) <= SMALL_JOINT
        return connective(e, args, self.sizes, factored=not small)




    def _operand(self, e, other, env) -> Field:
        if isinstance(e, A.Sym):
            t = self.kb.variables[other.name].type if isinstance(other, A.Var) else None
            if t is None or not isinstance(t, A.EnumType):
                raise ModelError(f"enum value {e.name!r} compared with a non-enum")
            return self.const(t.values.index(e.name))
        return self.field(e, env)

    def _crisp(self, e) -> bool:
        """Whether comparison or membership test ``e`` is crisp here."""
        return self.hard or self.model.is_crisp or (
            isinstance(e, A.InSet) or not self.model.compiled.smooth(e, neural=False))

    def _exactly(self, e, env, evaluate) -> Field:
        """``evaluate(e, env)`` as ``predict`` decides it: a crisp test of observed inputs
        whose arithmetic float64 may round is read from the crisp evaluation of the batch;
        the others are computed in float64 where they read real values or fractions
        (:meth:`Compiled.float64`), their truth returned in float32."""
        found = self._observed_truth(e)
        if found is not None:
            return Field((), found)
        if not self._crisp(e) and isinstance(e, A.Compare) and \
                self.model.compiled.single(e) is not None:
            return evaluate(e, env)      # read in float32 (see Compiled.single)
        return self._widened(e, env, evaluate, lambda out: out if out.t.dtype == torch.float32
                             else Field(out.scope, out.t.float()))

    def _compare(self, e: A.Compare, env) -> Field:
        return self._exactly(e, env, self._compare_fields)

    def _inset(self, e: A.InSet, env) -> Field:
        x = self._operand(e.operand, e.operand, env)
        out = None
        for v in e.values:
            hit = self._binop(x, self._operand(v, e.operand, env),
                              lambda a, b: (a == b).float())
            out = hit if out is None else self._binop(out, hit, torch.maximum)
        return out

    def _compare_fields(self, e: A.Compare, env) -> Field:
        single = None if self._crisp(e) else self.model.compiled.single(e)
        if single is not None:   # a real input against a ~ threshold, in float32
            name, num, first = single
            x = Field((), self.batch.float32(name))
            t = Field((), self.model.threshold(num).reshape(1))
            left, right = (x, t) if first else (t, x)
        else:
            left = self._operand(e.left, e.right, env)
            right = self._operand(e.right, e.left, env)
        op = _OPS[e.op]
        if self._crisp(e):
            fields = self._neural_fields
            if (isinstance(e.left, A.Var) and isinstance(e.right, A.Var)
                    and fields.get(e.left.name) is left and fields.get(e.right.name) is right):
                # two neural variables' value fields (the same for every batch): one table
                key = ("compare", e.op, e.left.name, e.right.name)
                found = fields.get(key)
                if found is None:
                    found = fields[key] = self._binop(left, right, lambda a, b: op(a, b).float())
                return found
            return self._binop(left, right, lambda a, b: op(a, b).float())
        temp = self.model.compiled.temperature(e)
        p = self._binop(left, right, lambda a, b: smooth_truth(e.op, a, b, temp).float())
        key = (id(e), env.key)
        if key not in self._atoms:
            atom = f"atom#{len(self._atoms)}{env.key}"
            factor = (p.scope + (atom,), torch.stack([1.0 - p.t, p.t], -1))
            self._atoms[key] = self._register(atom, [0, 1], factor)
        return self._atoms[key]

    def _intermediate(self, f: Field, e, k: int, env) -> Field:
        """A result of non-linear arithmetic over two or more variables (``e``, or the
        sum of its first ``k`` terms) as one new variable: a 0/1 factor over them and
        it, so that what reads it (a sum of products, a comparison) sees one variable,
        and the tables grow polynomially in the number of terms, not exponentially.
        Its values are those the expression can take (from the declared domains)."""
        if len(f.scope) < 2:
            return f
        key = ("arith", id(e), k, env.key)
        found = self._atoms.get(key)
        if found is not None:
            return found
        node = A.Sum(e.args[:k], e.ops[:k - 1]) if k else e
        values = value_set(node, self.kb.variables)
        if values is None or f.t[:1].numel() * len(values) > FACTOR_LIMIT:
            return f      # kept as the joint table (refused later if that is too large)
        name = f"arith#{len(self._atoms)}{env.key}"
        vals = self.model.compiled.value_tensor(tuple(values))
        ind = (f.t.unsqueeze(-1) == vals.to(f.t.dtype)).to(torch.float32)
        factor = (f.scope + (name,), ind)
        self.graph.introduces[id(factor)] = (name,)
        out = self._atoms[key] = self._register(name, values, factor)
        return out

    def _count(self, e: A.Count, env) -> Field:
        """``count``: the sum of its formulas' 0/1 fields, exact. Over few joint values, one
        dense field; over more, each formula is a bool variable (its own factor) and the
        count a chain of partial sums over them (:func:`greybox._linear.count_chain`), so
        that a count of many independent formulas costs polynomially, not 2^n."""
        parts = [self.field(a, env) for a in e.args]
        parts = [self._table(p) for p in parts]
        scope = tuple(dict.fromkeys(v for p in parts for v in p.scope))
        if math.prod(self.sizes[v] for v in scope) <= _DENSE_COUNT:
            acc = parts[0]
            for p in parts[1:]:
                acc = self._binop(acc, p, torch.add)
            return acc
        key = ("count", id(e), env.key)
        if key not in self._atoms:
            name = f"count#{len(self._atoms)}{env.key}"
            atoms, formulas = [], []
            for j, p in enumerate(parts):
                if p.scope:
                    atom = f"{name}#{j}"
                    factor = (p.scope + (atom,), torch.stack([1.0 - p.t, p.t], -1))
                    self.graph.introduces[id(factor)] = (atom,)
                    self._register(atom, [0, 1], factor)
                    atoms.append(atom)
                    formulas.append(factor)
            # a placeholder over the formulas and the count, replaced in each query's
            # factors (see _counts_in): its chain of partial sums is built only where a
            # query needs it
            holder = ((*atoms, name), None)
            self.graph.add_count(holder, name, atoms, formulas)
            self._atoms[key] = self._register(name, range(len(atoms) + 1), holder)
        acc = self._atoms[key]
        for p in parts:  # the formulas known from the inputs: a number per row
            if not p.scope:
                acc = self._binop(acc, p, torch.add)
        return acc

    def expectation(self, f: Field | Factored) -> torch.Tensor:
        if isinstance(f, Factored):
            return log_truth(self.graph, f, self.n)[0].exp().float()
        if not f.scope:
            return f.t.expand(self.n)
        return self.graph.expectation(f, self.n)

    def truth(self, e, env):
        try:
            return self.expectation(self.field(e, env))
        except ModelError as err:
            raise _located(err, self.kb, e) from None

    def feasible(self, env):
        out = torch.ones(self.n, dtype=torch.bool, device=self.device)
        for c in plan(self.kb).fixed_constraints:
            self.hard = True
            try:
                x = self.field(not_false(self.kb, c.formula), env)
            except ModelError as err:
                raise _located(err, self.kb, c.formula) from None
            finally:
                self.hard = False
            for f in self.parts_of(x):
                if not f.scope:
                    out = out & (f.t.expand(self.n) > 0)
                else:
                    factor = (f.scope, f.t)
                    self.constraint_factors.append(factor)
                    self.add_factor(factor, conditional=False)
            if isinstance(x, Factored):    # refused here, before a query contracts it
                check_width(self.graph, tuple(s for s, _ in self.graph.closure(x.variables())), x)
        if self.constraint_factors:
            vars_ = {v for s, _ in self.constraint_factors for v in s}
            log_z = self.graph.log_z(self.graph.closure(vars_))
            out = out & (torch.as_tensor(log_z, device=self.device).expand(self.n) > -float("inf"))
        return out

    # queries ---------------------------------------------------------------------------
    def _unconditioned(self, name) -> bool:
        return name in self.logits and len(self.graph.closure((name,))) == 1

    def log_prob(self, name, target, env):
        x = env[name]
        var = self.kb.variables[name]
        if isinstance(x, Factored):
            yes, no = log_truth(self.graph, x, self.n)
            return torch.where(target.bool(), yes, no).float()
        if isinstance(x, Virtual):
            lo = A.domain(var.type).offset     # indices -> codes (the sum's values)
            if self._independent(x.arith):
                return x.arith.log_prob(self.graph.stacked, codes(target, lo), self.device)
            self._add_arithmetic(x)
            evidence = x.arith.evidence(codes(target, lo))
            return self.graph.log_evidence([s[0] for s, _ in evidence], evidence)
        if not x.scope:
            if not A.is_finite_type(var.type):
                raise ModelError(f"{name!r} is real-valued; it is supervised by squared error")
            value = torch.as_tensor(values_of(self.kb, name), device=self.device,
                                    dtype=torch.float32)[target.long()]
            hit = x.t.expand(self.n) == value
            return torch.where(hit, 0.0, -float("inf"))
        if self._unconditioned(name):
            return self.graph.neural_logp(name).gather(1, target.long().view(-1, 1)).squeeze(1)
        arith = self._sums.get(name)
        if arith is not None and self._independent(arith) and all(
                f is arith.factors[0] for f in self.graph.touch.get(name, ())):
            # a plain sum of independent variables read by nothing else: its column
            return arith.log_prob(self.graph.stacked, codes(target, A.domain(var.type).offset),
                                  self.device)
        return self.graph.log_prob(x.scope[0], target, self.n)

    def has_marginal(self, name) -> bool:
        var = self.kb.variables[name]
        return (var.role == "input" or not isinstance(var.type, A.IntType)
                or var.type.size <= MAX_MARGINAL)

    def marginal(self, name, env):
        x = env[name]
        var = self.kb.variables[name]
        if isinstance(x, Factored):
            return self.expectation(x)
        if isinstance(x, Virtual):
            self._add_arithmetic(x)
            return distribution(self.graph, x, var.type, self.n)
        if not x.scope:  # known from the inputs: its value (an enum one-hot)
            if isinstance(var.type, A.EnumType):
                return torch.nn.functional.one_hot(x.t.long().expand(self.n),
                                                   var.type.size).float()
            # a trace holds numbers in float32 (integers beyond 2**24 exactly, in float64,
            # as the crisp trace holds them)
            return x.t.expand(self.n) if x.t.dtype == torch.float32 or wide_int(var.type) \
                else x.t.float().expand(self.n)
        if self._unconditioned(name):
            p = self.graph.neural_logp(name).exp()
        else:
            p = self.graph.marginal(x.scope[0])
        p = p.expand(self.n, -1)
        return p[:, 1] if isinstance(var.type, A.BoolType) else p

    def mode(self, name, env):
        x = env[name]
        var = self.kb.variables[name]
        if isinstance(x, Virtual):
            if self.has_marginal(name):
                return self.marginal(name, env).argmax(dim=1)
            self._add_arithmetic(x)
            return most_probable(self.graph, x, var.type, self.n)
        m = self.marginal(name, env)
        if m.dim() == 2:
            return m.argmax(dim=1)
        if isinstance(var.type, A.BoolType):
            return (m > 0.5).long()
        return m


def _written(kb, name: str, expr) -> tuple:
    """The expression and the name an error names define ``name`` by: a hidden layer of a
    recursion (``reach(a, c)@3``) by the user's recursive define and its written text."""
    rec = kb.recursion
    if rec is None or name not in rec.layers:
        return expr, f"define {name!r}"
    user, step = name.rsplit("@", 1)
    return rec.original.get(user, expr), (f"define {user!r} (recursive: step {step} of "
                                          f"its unrolling)")


def _located(err: ModelError, kb, e, what: str | None = None) -> ModelError:
    """``err`` with the statement it arose in named first (the rule or constraint whose
    formula is ``e``, or ``what``) and its location, once (an error already located
    passes through)."""
    if getattr(err, "located", False):
        return err
    if what is None:
        found = kb_cached(kb, "probabilistic/statements", lambda kb: {
            **{id(r.body): f"rule {r.name!r}" for r in kb.rules.values()},
            **{id(c.formula): f"constraint {c.name!r}" for c in kb.constraints.values()}})
        what = found.get(id(e), "the formula")
    text = expr_to_text(e)
    text = text if len(text) <= 70 else text[:67] + "..."
    where = f" at {e.span}" if e.span is not None else ""
    out = ModelError(f"{what}{where} ({text}): {err}")
    out.located = True
    return out


class ProbabilisticSemantics(Semantics):
    """Exact inference over finite-domain variables (see the module docstring)."""

    name = "probabilistic"
    context_class = ProbContext
