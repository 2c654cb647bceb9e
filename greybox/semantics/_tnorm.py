"""Fuzzy (t-norm) semantics: formulas get truth degrees in [0, 1].

Values are tagged tuples: ``("t", degree)`` for bools, ``("d", probs, values)`` for finite
variables (a distribution over their values), ``("n", number)`` for numbers and ``("s",
name)`` for enum symbols. Comparisons read a distribution exactly where they can
(``d1 < 5`` is the probability mass below 5) and are otherwise smooth:
``sigmoid(margin / (temperature * spread))`` where the spread is the data's spread of the
compared quantity. Comparisons with nothing to learn (no ``~`` threshold, no network
value) stay crisp, since a gradient through them would reach nothing.
"""

from __future__ import annotations

import operator

import torch

from greybox import functional as F
from greybox._batch import kb_cached
from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import closure

from ._base import Context, Env, Semantics
from ._compiled import EXACT_FLOAT32, smooth_truth, stated_threshold, wide_int
from ._stacked import ConstraintValues, RuleValues

__all__ = ["TNormSemantics", "FuzzyContext"]

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


class FuzzyContext(Context):
    tnorm = "product"

    def __init__(self, model, batch):
        super().__init__(model, batch)
        self.crisp = False
        #: inside a comparison or define whose integer arithmetic float32 cannot hold
        #: exactly (Compiled.wide): numbers are read as float64
        self.wide = False
        #: a forward pass's stacked columns of variables (see _stacked._StackedEnv)
        self.column_stacks: dict = {}

    def const(self, x: float) -> torch.Tensor:
        return torch.full((1,), float(x), device=self.device)

    def _vals(self, name):
        t = self.kb.variables[name].type
        vals = A.domain_values(t)
        if isinstance(t, A.EnumType):
            vals = range(len(vals))
        vals = [float(v) for v in vals]
        # integers beyond float32's exact ones (2**24) in float64
        wide = bool(vals) and max(abs(vals[0]), abs(vals[-1])) > EXACT_FLOAT32
        return torch.tensor(vals, device=self.device, dtype=torch.float64 if wide else None)

    # constructors --------------------------------------------------------------------
    def observe(self, name, x):
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType):
            return ("t", x)
        if isinstance(t, A.EnumType):
            return ("d", torch.nn.functional.one_hot(x, len(t.values)).float(), self._vals(name))
        return ("n", x)

    def neural(self, name, out):
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType):
            return ("t", torch.sigmoid(out))
        if A.is_finite_type(t):
            return ("d", torch.softmax(out, dim=1), self._vals(name))
        return ("n", out)

    def decided(self, name, dist):
        if dist.dim() == 1:
            return ("t", dist)
        return ("d", dist, self._vals(name))

    def fixed(self, name, index):
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType):
            return ("t", self.const(index))
        size = A.domain(t).size
        hot = torch.zeros(1, size, device=self.device)
        hot[0, index] = 1.0
        return ("d", hot, self._vals(name))

    def define(self, name, env):
        var = self.kb.variables[name]
        if isinstance(var.type, A.BoolType):
            return ("t", self.truth(var.expr, env))
        if isinstance(var.type, A.IntType) and self.model.compiled.wide(var.expr, define=name):
            wide, self.wide = self.wide, True
            try:
                value = self.value(var.expr, env)
            finally:
                self.wide = wide
        else:
            value = self.value(var.expr, env)
        if isinstance(var.type, A.EnumType) and value[0] == "s":
            return self.fixed(name, var.type.values.index(value[1]))
        if isinstance(var.type, A.IntType) and value[0] == "d":
            # a distribution over the values of non-linear arithmetic: onto the type's
            # values (as its marginal and its labels index them)
            vals = self._vals(name)
            if value[2].shape != vals.shape or not torch.equal(value[2], vals):
                onto = (value[2].unsqueeze(1) == vals.to(value[2].dtype)).to(value[1].dtype)
                return ("d", value[1] @ onto, vals)
        return value

    # evaluation ----------------------------------------------------------------------
    def num(self, fv) -> torch.Tensor | float:
        if fv[0] == "d":
            out = (fv[1] * fv[2]).sum(-1)
        elif fv[0] == "s":
            raise ModelError(f"enum value {fv[1]!r} used as a number")
        else:
            out = fv[1]
        if self.wide and isinstance(out, torch.Tensor) and out.dtype != torch.float64:
            out = out.double()
        return out

    def value(self, e, env: Env):
        if isinstance(e, A.Num):
            if e.learnable:
                return ("n", stated_threshold(self.model, e, self.offsets))
            return ("n", float(e.value))
        if isinstance(e, A.Var):
            return env[e.name]
        if isinstance(e, A.Sym):
            return ("s", e.name)
        if isinstance(e, A.BoolConst):
            return ("t", self.const(e.value))
        if isinstance(e, A.Neg):
            return ("n", -self.num(self.value(e.operand, env)))
        if isinstance(e, A.Sum):
            acc = self.num(self.value(e.args[0], env))
            for op, arg in zip(e.ops, e.args[1:]):
                x = self.num(self.value(arg, env))
                acc = acc + x if op == "+" else acc - x
            return ("n", acc)
        if isinstance(e, A.Mul):
            left, right = self.value(e.left, env), self.value(e.right, env)
            if "d" in (left[0], right[0]) and not (
                    A.is_constant(e.left) or A.is_constant(e.right)):   # two variables
                found = self._distribution("*", [left, right], e)
                if found is not None:
                    return found
            return ("n", self.num(left) * self.num(right))
        if isinstance(e, A.Arith):
            # over distributions of finite values (networks' outputs, decided values):
            # the exact distribution of the result, the operands independent; else (an
            # observed value, an expectation) the operation on the numbers
            args = [self.value(a, env) for a in e.args]
            if any(a[0] == "d" for a in args):
                found = self._distribution(e.op, args, e)
                if found is not None:
                    return found
            return ("n", F.arith(e.op, [self.num(a) for a in args]))
        if isinstance(e, A.Count):   # the sum of the truth degrees: the expected count
            acc = self._truth(e.args[0], env)
            for arg in e.args[1:]:
                acc = acc + self._truth(arg, env)
            return ("n", acc)
        return ("t", self.truth(e, env))

    def _distribution(self, op: str, args, e):
        """``op`` over distributions and constants as a distribution ("d"), or None where
        an operand is a number per row, two operands read the same variable (they are
        not independent; ``d * d`` of one operand is exact), or their joint values are
        many (> 4,096)."""
        operands = (e.left, e.right) if isinstance(e, A.Mul) else e.args
        if all(x == operands[0] for x in operands[1:]) and args[0][0] == "d":
            probs, values = F.arith_distribution(op, [(args[0][1], args[0][2])], same=len(args))
            return ("d", probs, values)
        if not _independent(self.kb, e, operands):
            return None
        dists, size = [], 1
        for a in args:
            if a[0] == "d":
                dists.append((a[1], a[2]))
                size *= a[2].numel()
            elif a[0] == "n" and not isinstance(a[1], torch.Tensor):
                dists.append((torch.ones(1, 1, device=self.device),
                              torch.tensor([float(a[1])], device=self.device)))
            else:
                return None
        if size > 4096:
            return None
        probs, values = F.arith_distribution(op, dists)
        return ("d", probs, values)

    def _full(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=self.device)
        return t.expand(self.n) if t.dim() <= 1 else t

    def truth(self, e, env: Env) -> torch.Tensor:
        return self._full(self._truth(e, env))

    def _truth(self, e, env):
        tn = self.tnorm
        if isinstance(e, A.BoolConst):
            return self.const(e.value)
        if isinstance(e, A.Var):
            fv = env[e.name]
            if fv[0] != "t":
                raise ModelError(f"{e.name!r} is not a bool")
            return fv[1]
        if isinstance(e, A.Not):
            return F.t_not(self._truth(e.operand, env))
        if isinstance(e, A.IsMissing):
            return self.missing(e.operand.name)
        if isinstance(e, (A.And, A.Or)):
            op = F.t_and if isinstance(e, A.And) else F.t_or
            acc = self._truth(e.args[0], env)
            for arg in e.args[1:]:
                acc = op(acc, self._truth(arg, env), tn)
            return acc
        if isinstance(e, A.Implies):
            return F.t_implies(self._truth(e.left, env), self._truth(e.right, env), tn)
        if isinstance(e, A.Iff):
            return F.t_iff(self._truth(e.left, env), self._truth(e.right, env), tn)
        if isinstance(e, A.Compare):
            return self._compare(e, env)
        if isinstance(e, A.InSet):
            return self._inset(e, env)
        raise ModelError(f"not a formula: {e!r}")

    def _code(self, fv_dist_vals, sym_or_num, e):
        """Index in a distribution of a constant (enum symbol or number); None if absent."""
        kind, x = sym_or_num
        var = _enum_var(e, self.kb)
        if kind == "s":
            return var.type.values.index(x) if var is not None else None
        return x

    def _crisp(self, e) -> bool:
        """Whether comparison or membership test ``e`` is crisp here (a membership test
        always is: on a distribution it is its exact mass)."""
        return self.crisp or self.hard or isinstance(e, A.InSet) or \
            not self.model.compiled.smooth(e, neural=True)

    def _exactly(self, e, env, evaluate):
        """``evaluate(e, env)`` as ``predict`` decides it: a crisp test of observed inputs
        whose arithmetic float64 may round is read from the crisp evaluation of the batch;
        the others are computed in float64 where they read real values or fractions
        (:meth:`Compiled.float64`), their truth returned in float32."""
        found = self._observed_truth(e)
        if found is not None:
            return found
        compiled = self.model.compiled
        if not self._crisp(e) and isinstance(e, A.Compare) and compiled.single(e) is not None:
            name, num, first = compiled.single(e)
            x, t = self.batch.float32(name), self.model.threshold(num)
            return smooth_truth(e.op, *((x, t) if first else (t, x)), compiled.temperature(e))
        return self._widened(e, env, evaluate,
                             lambda out: out.float() if isinstance(out, torch.Tensor) else out)

    def _compare(self, e: A.Compare, env):
        return self._exactly(e, env, self._compare_as)

    def _compare_as(self, e: A.Compare, env):
        left, right = self.value(e.left, env), self.value(e.right, env)
        op = _OPS[e.op]
        # enum comparisons and distributions against constants: exact mass
        if left[0] == "d" and right[0] in ("s", "n") and not _learnable(e.right) \
                and not isinstance(right[1], torch.Tensor):
            c = self._code(left, right, e.left)
            mask = op(self._values(left[2]), c).float()
            return (left[1] * mask).sum(-1)
        if right[0] == "d" and left[0] in ("s", "n") and not _learnable(e.left) \
                and not isinstance(left[1], torch.Tensor):
            c = self._code(right, left, e.right)
            mask = op(c, self._values(right[2])).float()
            return (right[1] * mask).sum(-1)
        if left[0] == "d" and right[0] == "d" and e.op in ("==", "!=") and \
                left[2].shape == right[2].shape and torch.equal(left[2], right[2]):
            same = (left[1] * right[1]).sum(-1)
            return same if e.op == "==" else 1.0 - same
        lv, rv = self.num(left), self.num(right)
        if self._crisp(e):
            dtype = torch.float64 if self.wide else None
            return op(torch.as_tensor(lv, dtype=dtype, device=self.device),
                      torch.as_tensor(rv, dtype=dtype, device=self.device)).float()
        return smooth_truth(e.op, lv, rv, self.model.compiled.temperature(e))

    def _values(self, vals: torch.Tensor) -> torch.Tensor:
        """A distribution's values, in float64 inside a float64 test."""
        return vals.double() if self.wide else vals

    def _inset(self, e: A.InSet, env):
        return self._exactly(e, env, self._inset_as)

    def _inset_as(self, e: A.InSet, env):
        x = self.value(e.operand, env)
        consts = [self.value(v, env) for v in e.values]
        if x[0] == "d":
            mask = torch.zeros_like(x[2])
            for c in consts:
                code = self._code(x, c, e.operand)
                mask = torch.maximum(mask, (self._values(x[2]) == float(code)).float())
            return (x[1] * mask).sum(-1)
        v = self.num(x)
        out = None
        for c in consts:
            hit = (torch.as_tensor(v, device=self.device) == float(c[1])).float()
            out = hit if out is None else torch.maximum(out, hit)
        return out

    def constraint_values(self, env):
        """Constraint truths, the groundings of a relational constraint stacked."""
        return ConstraintValues(self, env, self.kb)

    def rule_values(self, env):
        """The rules of one template evaluated at once (see :mod:`._stacked`)."""
        values = RuleValues(self, env, self.model)
        return values if values.stacks else None

    # queries -------------------------------------------------------------------------
    def has_marginal(self, name) -> bool:
        return True

    def marginal(self, name, env):
        fv = env[name]
        if fv[0] == "s":
            return self.fixed(name, self.kb.variables[name].type.values.index(fv[1]))[1]
        if fv[0] == "d":
            return fv[1].expand(self.n, -1)
        if wide_int(self.kb.variables[name].type) and isinstance(fv[1], torch.Tensor):
            return fv[1].double().expand(self.n)    # exact, as the crisp trace holds it
        return self._full(fv[1])

    def log_prob(self, name, target, env):
        fv = env[name]
        if fv[0] == "t":
            return _log_truth(self._full(fv[1]), target)
        if fv[0] == "d":
            p = fv[1].expand(self.n, -1).gather(1, target.long().view(-1, 1)).squeeze(1)
            return torch.log(p.clamp_min(1e-12))
        raise ModelError(f"{name!r} is a number under {self.tnorm} semantics; supervise it as a "
                         "real value or use semantics='probabilistic' for exact distributions")

    def log_probs(self, names, target, env):
        """Truth degrees of many bools stacked: :meth:`log_prob` elementwise."""
        values = [env[name] for name in names]
        if not all(v[0] == "t" for v in values):
            return None
        return _log_truth(torch.stack([self._full(v[1]) for v in values], 1), target)

    def mode(self, name, env):
        fv = env[name]
        if fv[0] == "t":
            return (self._full(fv[1]) > 0.5).long()
        if fv[0] == "d":
            return fv[1].expand(self.n, -1).argmax(dim=1)
        return self._full(self.num(fv))


def _log_truth(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log p`` where ``target`` is 1, ``log(1 - p)`` where it is 0, at least log(1e-12).
    Only the chosen side is taken the log of: a degree of exactly 1 (a saturated sigmoid in
    float32, where ``1 - 1e-12`` is 1) made the other side ``log 0``, whose zero-weighted
    gradient is NaN (0 * inf) and poisoned every parameter."""
    chosen = torch.where(target.bool(), p, 1.0 - p)
    return torch.log(chosen.clamp_min(1e-12))


def _independent(kb, e, operands) -> bool:
    """Whether no two ``operands`` of ``e`` read a common variable (through defines)."""
    cache = kb_cached(kb, "fuzzy/independent", lambda kb: {})
    found = cache.get(id(e))
    if found is None:
        seen: set = set()
        found = True
        for x in operands:
            names = set(closure(kb, A.variables(x)))
            found &= seen.isdisjoint(names)
            seen |= names
        cache[id(e)] = found
    return found


def _learnable(e) -> bool:
    return any(isinstance(n, A.Num) and n.learnable for n in A.walk(e))


def _enum_var(e, kb):
    if isinstance(e, A.Var):
        v = kb.variables[e.name]
        return v if isinstance(v.type, A.EnumType) else None
    return None


class TNormSemantics(Semantics):
    """Base of the three fuzzy semantics; a subclass names its t-norm."""

    tnorm = "product"

    def __init__(self):
        tnorm = self.tnorm
        self.context_class = type(f"{tnorm.title()}Context", (FuzzyContext,), {"tnorm": tnorm})
