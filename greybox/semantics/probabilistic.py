"""Exact probabilistic semantics over finite-domain variables.

Neural finite variables are independent distributions given the inputs; ``define``s over
them are deterministic factors (integer arithmetic is split into small pieces by
:mod:`greybox._linear`: digit columns with carries for positional sums); hard constraints
over non-decided variables are 0/1 factors that condition everything they touch. A rule
body's truth is the exact probability of the body under this factor graph, computed by
variable elimination (:mod:`greybox._factors`). A comparison with something to learn (a
``~`` threshold, a real network output) is a Bernoulli variable whose probability is the
smooth comparison; other comparisons are crisp.

Decisions sit on top, as in every semantics: a decided variable's score is
``bias + sum(weight * P(body))``.
"""

from __future__ import annotations

import math
import operator
import weakref

import torch
import torch.nn.functional as nn_f

from greybox import functional as F
from greybox._batch import kb_cached
from greybox._factors import contract, mpe
from greybox._linear import FACTOR_LIMIT
from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules import plan, type_to_text

from ._base import Context, Env, Semantics

__all__ = ["ProbabilisticSemantics"]

#: Largest joint table enumerated to give a sum's distribution in the trace.
MAX_MARGINAL = 1 << 14

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


#: Per model's compiled state (rebuilt when the model moves): each neural variable's Field
#: of values, or False for a real one.
_NEURAL_FIELDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _blocks(outs: list) -> tuple[int, ...] | None:
    """When every tensor of ``outs`` (each (B, K)) is a block of B consecutive rows of the
    same contiguous (m * B, K) tensor (a network's output for several variables, split),
    the blocks' positions; else None."""
    first = outs[0]
    base = first._base
    if base is None or base.dim() != 2 or not base.is_contiguous():
        return None
    rows, k = first.shape
    size = rows * k
    if base.shape[1] != k or rows == 0 or base.shape[0] % rows:
        return None
    out = []
    try:
        for t in outs:
            off = t.storage_offset() - base.storage_offset()
            if t._base is not base or t.shape != first.shape or not t.is_contiguous() \
                    or off % size:
                return None
            out.append(off // size)
    except RuntimeError:   # tensors without storage (under torch.func transforms)
        return None
    return tuple(out)


class Field:
    """A quantity over the joint values of ``scope`` (random variables): a tensor with
    the batch first (size n or 1), then one dimension per variable."""

    __slots__ = ("scope", "t")

    def __init__(self, scope: tuple[str, ...], t: torch.Tensor):
        self.scope, self.t = scope, t


class Virtual:
    """A sum represented digit by digit (never enumerated)."""

    def __init__(self, name, arith):
        self.name, self.arith = name, arith


class ProbContext(Context):
    def __init__(self, model, batch):
        super().__init__(model, batch)
        self.sizes: dict[str, int] = {}
        self.vals: dict[str, torch.Tensor] = {}
        self.conditional: set[int] = set()
        self.constraint_factors: list = []
        self.touch: dict[str, list] = {}
        self.logits: dict[str, torch.Tensor] = {}
        #: neural variables whose factor (their distribution) is made on first use
        self._lazy: set[str] = set()
        #: positional sums whose factors are in the graph
        self._virtual_added: set[str] = set()
        #: defines that are plain sums of variables, by name (their compiled arithmetic)
        self._sums: dict = {}
        self._atoms: dict = {}
        self._keep_alive: list = []
        #: neural variables' value fields (the same for every batch), per compiled model
        self._neural_fields = _NEURAL_FIELDS.setdefault(model.compiled, {})
        #: softmax of whole network outputs (several variables' logits), by the output
        self._base_probs: dict = {}

    # helpers ---------------------------------------------------------------------------
    def const(self, x) -> Field:
        return Field((), torch.full((1,), float(x), device=self.device))

    def _values_of(self, name) -> tuple:
        cache = kb_cached(self.kb, "probabilistic/values", lambda kb: {})
        found = cache.get(name)
        if found is None:
            t = self.kb.variables[name].type
            if isinstance(t, A.EnumType):
                found = tuple(range(len(t.values)))
            elif isinstance(t, A.BoolType):
                found = (0, 1)
            else:
                found = tuple(t.values)
            cache[name] = found
        return found

    def _register(self, var: str, values, factor, *, conditional=True):
        vals = self.model.compiled.value_tensor(tuple(values))
        self.sizes[var] = len(vals)
        self.vals[var] = vals
        self.add_factor(factor, conditional=conditional)
        return Field((var,), vals.view(1, -1))

    def add_factor(self, factor, *, conditional=True):
        """Add a factor to the graph; ``conditional``: it is a distribution over the
        variables it introduces given the others (it sums to 1 over them)."""
        self._keep_alive.append(factor)
        for v in factor[0]:
            self.touch.setdefault(v, []).append(factor)
        if conditional:
            self.conditional.add(id(factor))

    def _expand(self, f: Field, scope) -> torch.Tensor:
        if f.scope == scope:
            return f.t
        present = [v for v in scope if v in f.scope]
        t = f.t.permute(0, *[1 + f.scope.index(v) for v in present])
        shape = [t.shape[0]] + [self.sizes[v] if v in f.scope else 1 for v in scope]
        return t.reshape(shape)

    def _align(self, a: Field, b: Field):
        scope = a.scope + tuple(v for v in b.scope if v not in a.scope)
        return self._expand(a, scope), self._expand(b, scope), scope

    def _binop(self, a: Field, b: Field, fn) -> Field:
        ta, tb, scope = self._align(a, b)
        size = math.prod(torch.broadcast_shapes(ta.shape, tb.shape))
        if size > FACTOR_LIMIT * max(1, self.n):  # refused before it is allocated
            shown = ", ".join(scope[:8]) + (f", ... ({len(scope)} variables)"
                                            if len(scope) > 8 else "")
            raise ModelError(
                f"a formula over {shown} has {size // max(1, self.n):,} joint values per row, "
                f"more than exact inference holds ({FACTOR_LIMIT:,}): use a fuzzy semantics "
                "(semantics='product' or 'lukasiewicz'), which evaluates it approximately in "
                "time linear in its size, or split it -- a family of constraints "
                "(constraint c(p in s, ...): ...) instead of one forall")
        return Field(scope, fn(ta, tb))

    def closure(self, scope) -> list:
        """Every factor connected to ``scope``: what a query on it depends on. Factors of
        variables below (definitions, constraints) are included: evidence and
        constraints there condition the query; unconstrained ones sum out to 1."""
        seen, fids, out = set(), set(), []
        stack = list(scope)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in self._lazy:
                self._neural_factor(v)
            for f in self.touch.get(v, ()):
                if id(f) not in fids:
                    fids.add(id(f))
                    out.append(f)
                    stack.extend(f[0])
        return out

    def _log_z(self, factors) -> torch.Tensor | float:
        if all(id(f) in self.conditional for f in factors):
            return 0.0
        t, s = contract(factors)
        return F.safe_log(t) + s

    # constructors ----------------------------------------------------------------------
    def observe(self, name, x):
        return Field((), x.float())

    def neural(self, name, out):
        field = self._neural_fields.get(name)
        if field is None:
            if not A.is_finite_type(self.kb.variables[name].type):
                field = self._neural_fields[name] = False
            else:
                vals = self.model.compiled.value_tensor(self._values_of(name))
                field = self._neural_fields[name] = Field((name,), vals.view(1, -1))
        if field is False:     # a real network output: its value
            return Field((), out)
        self.logits[name] = out
        self.sizes[name] = field.t.shape[1]
        self.vals[name] = field.t[0]
        self._lazy.add(name)   # its factor is made when a query reaches it
        return field

    def neurals(self, outs):
        # the finite ones registered at once from what is known per model (set
        # operations, no loop over the variables)
        key = ("neurals", tuple(outs))
        known = self._neural_fields.get(key)
        if known is None:
            fields = {name: self.neural(name, out) for name, out in outs.items()}
            finite = [n for n in outs if n in self.logits]
            if len(finite) < len(outs):
                return fields        # real network outputs among them: one by one
            known = self._neural_fields[key] = (fields, {n: self.sizes[n] for n in finite},
                                                {n: self.vals[n] for n in finite})
            return fields
        fields, sizes, vals = known
        self.logits.update(outs)
        self.sizes.update(sizes)
        self.vals.update(vals)
        self._lazy.update(outs)
        return fields

    def _distribution(self, name) -> torch.Tensor:
        """A neural variable's distribution (B, K) from its network output."""
        out = self.logits[name]
        if out.dim() == 1:
            p = torch.sigmoid(out)
            return torch.stack([1.0 - p, p], 1)
        return torch.softmax(out, dim=1)

    def _neural_factor(self, name):
        self._lazy.discard(name)
        self.add_factor(((name,), self._distribution(name)))

    def _stacked(self, names) -> torch.Tensor:
        """The distributions of neural variables, stacked: (len(names), B, K)."""
        outs = [self.logits[n] for n in names]
        if outs[0].dim() != 2:
            return torch.stack([self._distribution(n) for n in names])
        blocks = _blocks(outs)
        if blocks is None:
            return torch.softmax(torch.stack(outs), dim=2)
        # the variables' logits are row blocks of one network call: one softmax of it all
        base, rows = outs[0]._base, outs[0].shape[0]
        probs = self._base_probs.get(id(base))
        if probs is None or probs[0] is not base:
            probs = self._base_probs[id(base)] = (base, torch.softmax(base, dim=1).view(
                -1, rows, base.shape[1]))
        probs = probs[1]
        first = blocks[0]
        if blocks == tuple(range(first, first + len(blocks))):
            return probs[first:first + len(blocks)]
        index = self._neural_fields.get(("blocks", blocks))
        if index is None:
            index = self._neural_fields[("blocks", blocks)] = torch.tensor(
                blocks, device=torch.device("cpu")).to(probs.device)
        return probs.index_select(0, index)

    def _independent(self, arith) -> bool:
        """Whether the variables a positional sum adds are neural variables that nothing
        else ties (each only in its own distribution and the sum's factors), and the
        sum's own variables appear in no other factor: then the carries can be summed
        column by column (:meth:`Arithmetic.log_prob`)."""
        summed = arith.summed
        if not self.logits.keys() >= summed:
            return False
        own = None
        for name in summed & self.touch.keys():     # (set operations: no loop over all)
            touching = self.touch[name]
            if not touching:
                continue
            if own is None:
                own = {id(f) for f in arith.factors}
            others = [f for f in touching if id(f) not in own]
            if others and (name in self._lazy or len(others) > 1
                           or others[0][0] != (name,) or id(others[0]) not in
                           self.conditional):
                return False
        # (the sum's own variables, name#digit0..., are named by nothing else)
        return True

    def _add_arithmetic(self, x: Virtual) -> None:
        """A positional sum's factors into the graph, when a query needs them there."""
        if x.name in self._virtual_added:
            return
        self._virtual_added.add(x.name)
        arith = x.arith
        for aux, values in arith.aux.items():
            self.sizes[aux] = len(values)
            self.vals[aux] = self.model.compiled.value_tensor(tuple(values))
        for factor, conditional in zip(arith.factors, arith.conditionals):
            self.add_factor(factor, conditional=conditional)

    def _neural_logp(self, name) -> torch.Tensor:
        out = self.logits[name]
        if out.dim() == 1:
            return torch.stack([nn_f.logsigmoid(-out), nn_f.logsigmoid(out)], 1)
        return torch.log_softmax(out, dim=1)

    def decided(self, name, dist):
        p = torch.stack([1 - dist, dist], 1) if dist.dim() == 1 else dist
        return self._register(name, self._values_of(name), ((name,), p))

    def fixed(self, name, index):
        return self.const(self._values_of(name)[index])

    def define(self, name, env: Env):
        var = self.kb.variables[name]
        if isinstance(var.type, A.IntType) and env.parent is None:
            leaves = _int_leaves(self.kb, self.model.compiled, name)
            if leaves is not None and self.sizes.keys() >= leaves[1]:
                arith = self.model.compiled.arithmetic(name, leaves[0])
                if arith is not None and arith.kind == "positional":
                    return Virtual(name, arith)   # its factors join the graph when needed
                if arith is not None:
                    for aux, values in arith.aux.items():
                        self.sizes[aux] = len(values)
                        self.vals[aux] = self.model.compiled.value_tensor(tuple(values))
                    for factor, conditional in zip(arith.factors, arith.conditionals):
                        self.add_factor(factor, conditional=conditional)
                    if arith.columns and all(arith.conditionals):
                        self._sums[name] = arith     # a plain sum (see log_prob)
                    self.sizes[name] = var.type.size
                    self.vals[name] = self.model.compiled.value_tensor(tuple(self._values_of(name)))
                    return Field((name,), self.vals[name].view(1, -1))
        f = self.field(var.expr, env)
        if not f.scope or isinstance(var.type, A.RealType):
            return f
        size = A.domain(var.type).size
        if f.t[:1].numel() * size > FACTOR_LIMIT:
            raise ModelError(
                f"define {name!r}: its type {type_to_text(var.type)} has {size:,} values; "
                f"exact inference would enumerate them for every joint value of "
                f"{', '.join(f.scope)} ({f.t[:1].numel() * size:,} entries per row, at most "
                f"{FACTOR_LIMIT:,}): declare a tighter range, or use a fuzzy semantics")
        vname = name + env.key
        values = self._values_of(name)
        vals = torch.as_tensor([float(v) for v in values], device=self.device)
        if isinstance(var.type, A.EnumType) and f.t.dtype != torch.float32:
            f = Field(f.scope, f.t.float())
        ind = (f.t.unsqueeze(-1) == vals).to(torch.float32)
        if ind.numel() > FACTOR_LIMIT * max(1, self.n):
            raise ModelError(f"define {name!r}: {ind.numel()} joint values, too many for exact "
                             "inference")
        conditional = bool((ind.sum(-1) == 1).all())
        return self._register(vname, values, (f.scope + (vname,), ind), conditional=conditional)

    # formulas --------------------------------------------------------------------------
    def field(self, e, env: Env) -> Field:
        if isinstance(e, A.Num):
            if e.learnable:
                return Field((), self.model.threshold(e).reshape(1))
            return self.const(e.value)
        if isinstance(e, A.BoolConst):
            return self.const(float(e.value))
        if isinstance(e, A.Var):
            x = env[e.name]
            if isinstance(x, Virtual):
                raise ModelError(
                    f"{e.name!r} is a sum that exact inference keeps digit by digit (its "
                    "values are too many to enumerate); rules and constraints cannot read it "
                    "under semantics='probabilistic' -- supervise it, or use a fuzzy semantics")
            return x
        if isinstance(e, A.Neg):
            inner = self.field(e.operand, env)
            return Field(inner.scope, -inner.t)
        if isinstance(e, A.Sum):
            acc = self.field(e.args[0], env)
            for op, arg in zip(e.ops, e.args[1:]):
                nxt = self.field(arg, env)
                acc = self._binop(acc, nxt, torch.add if op == "+" else torch.sub)
            return acc
        if isinstance(e, A.Mul):
            return self._binop(self.field(e.left, env), self.field(e.right, env), torch.mul)
        if isinstance(e, A.Not):
            inner = self.field(e.operand, env)
            return Field(inner.scope, 1.0 - inner.t)
        if isinstance(e, (A.And, A.Or)):
            acc = self.field(e.args[0], env)
            fn = torch.mul if isinstance(e, A.And) else (lambda a, b: a + b - a * b)
            for arg in e.args[1:]:
                acc = self._binop(acc, self.field(arg, env), fn)
            return acc
        if isinstance(e, A.Implies):
            return self._binop(self.field(e.left, env), self.field(e.right, env),
                               lambda a, b: 1.0 - a + a * b)
        if isinstance(e, A.Iff):
            return self._binop(self.field(e.left, env), self.field(e.right, env),
                               lambda a, b: 1.0 - a - b + 2.0 * a * b)
        if isinstance(e, A.Compare):
            return self._compare(e, env)
        if isinstance(e, A.InSet):
            x = self._operand(e.operand, e.operand, env)
            out = None
            for v in e.values:
                hit = self._binop(x, self._operand(v, e.operand, env),
                                  lambda a, b: (a == b).float())
                out = hit if out is None else self._binop(out, hit, torch.maximum)
            return out
        raise ModelError(f"cannot evaluate {e!r}")

    def _operand(self, e, other, env) -> Field:
        if isinstance(e, A.Sym):
            t = self.kb.variables[other.name].type if isinstance(other, A.Var) else None
            if t is None or not isinstance(t, A.EnumType):
                raise ModelError(f"enum value {e.name!r} compared with a non-enum")
            return self.const(t.values.index(e.name))
        return self.field(e, env)

    def _compare(self, e: A.Compare, env) -> Field:
        left = self._operand(e.left, e.right, env)
        right = self._operand(e.right, e.left, env)
        op = _OPS[e.op]
        if not self.model.compiled.smooth(e, neural=False) or self.model._crisp or self.hard:
            return self._binop(left, right, lambda a, b: op(a, b).float())
        temp = self.model.compiled.temperature(e)
        p = self._binop(left, right, lambda a, b: F.smooth_compare(e.op, a, b, temp))
        key = (id(e), env.key)
        if key not in self._atoms:
            atom = f"atom#{len(self._atoms)}{env.key}"
            factor = (p.scope + (atom,), torch.stack([1.0 - p.t, p.t], -1))
            self._atoms[key] = self._register(atom, [0, 1], factor)
        return self._atoms[key]

    def expectation(self, f: Field) -> torch.Tensor:
        if not f.scope:
            return f.t.expand(self.n)
        factors = self.closure(f.scope)
        t, s = contract(factors + [(f.scope, f.t)])
        log_z = self._log_z(factors)
        if not isinstance(log_z, torch.Tensor):
            return (t * torch.exp(s)).expand(self.n)
        ok = torch.isfinite(log_z)
        out = t * torch.exp(s - torch.where(ok, log_z, torch.zeros_like(log_z)))
        return torch.where(ok, out, torch.zeros_like(out)).expand(self.n)

    def truth(self, e, env):
        return self.expectation(self.field(e, env))

    def feasible(self, env):
        out = torch.ones(self.n, dtype=torch.bool, device=self.device)
        for c in plan(self.kb).fixed_constraints:
            self.hard = True
            try:
                f = self.field(c.formula, env)
            finally:
                self.hard = False
            if not f.scope:
                out = out & (f.t.expand(self.n) > 0)
            else:
                factor = (f.scope, f.t)
                self.constraint_factors.append(factor)
                self.add_factor(factor, conditional=False)
        if self.constraint_factors:
            vars_ = {v for s, _ in self.constraint_factors for v in s}
            log_z = self._log_z(self.closure(vars_))
            out = out & (torch.as_tensor(log_z, device=self.device).expand(self.n) > -float("inf"))
        return out

    # queries ---------------------------------------------------------------------------
    def _unconditioned(self, name) -> bool:
        return name in self.logits and len(self.closure((name,))) == 1

    def log_prob(self, name, target, env):
        x = env[name]
        var = self.kb.variables[name]
        if isinstance(x, Virtual):
            lo = A.domain(var.type).offset     # indices -> codes (the sum's values)
            if self._independent(x.arith):
                return x.arith.log_prob(self._stacked, _codes(target, lo), self.device)
            self._add_arithmetic(x)
            evidence = x.arith.evidence(target.long() + lo)
            scope = [s[0] for s, _ in evidence]
        elif x.scope:
            if self._unconditioned(name):
                return self._neural_logp(name).gather(1, target.long().view(-1, 1)).squeeze(1)
            arith = self._sums.get(name)
            if arith is not None and self._independent(arith) and all(
                    f is arith.factors[0] for f in self.touch.get(name, ())):
                # a plain sum of independent variables read by nothing else: its column
                return arith.log_prob(self._stacked, _codes(target, A.domain(var.type).offset),
                                      self.device)
            v = x.scope[0]
            factors = self.closure((v,))
            t, s = contract(factors, keep=(v,))
            p = t.expand(self.n, -1).gather(1, target.long().view(-1, 1)).squeeze(1)
            return F.safe_log(p) + s - self._log_z(factors)
        else:
            if not A.is_finite_type(var.type):
                raise ModelError(f"{name!r} is real-valued; it is supervised by squared error")
            value = torch.as_tensor(self._values_of(name), device=self.device,
                                    dtype=torch.float32)[target.long()]
            hit = x.t.expand(self.n) == value
            return torch.where(hit, 0.0, -float("inf"))
        factors = self.closure(scope)
        t, s = contract(factors + evidence)
        return F.safe_log(t) + s - self._log_z(factors)

    def has_marginal(self, name) -> bool:
        var = self.kb.variables[name]
        return (var.role == "input" or not isinstance(var.type, A.IntType)
                or var.type.size <= MAX_MARGINAL)

    def marginal(self, name, env):
        x = env[name]
        var = self.kb.variables[name]
        if isinstance(x, Virtual):
            self._add_arithmetic(x)
            a = x.arith
            keep = (*a.digits, a.carry)
            t, _ = contract(self.closure(keep), keep=keep)
            weights = torch.ones(1, device=self.device)
            value = torch.zeros(1, device=self.device, dtype=torch.long)
            for k, d in enumerate(keep):
                place = a.base ** k
                v = torch.arange(self.sizes[d], device=self.device) * place
                value = (value.unsqueeze(-1) + v).reshape(-1)
            del weights
            index = value + a.offset - A.domain(var.type).offset
            flat = t.reshape(t.shape[0], -1)
            ok = (index >= 0) & (index < var.type.size)
            out = torch.zeros(flat.shape[0], var.type.size, device=self.device)
            out = out.index_add(1, index[ok], flat[:, ok])
            return (out / out.sum(1, keepdim=True)).expand(self.n, -1)
        if not x.scope:  # known from the inputs: its value (an enum one-hot)
            if isinstance(var.type, A.EnumType):
                return torch.nn.functional.one_hot(x.t.long().expand(self.n),
                                                   var.type.size).float()
            return x.t.expand(self.n)
        v = x.scope[0]
        if self._unconditioned(name):
            p = self._neural_logp(name).exp()
        else:
            t, _ = contract(self.closure((v,)), keep=(v,))
            p = t / t.sum(1, keepdim=True)
        p = p.expand(self.n, -1)
        return p[:, 1] if isinstance(var.type, A.BoolType) else p

    def mode(self, name, env):
        x = env[name]
        var = self.kb.variables[name]
        if isinstance(x, Virtual):
            if self.has_marginal(name):
                return self.marginal(name, env).argmax(dim=1)
            self._add_arithmetic(x)
            a = x.arith
            assignment, _ = mpe(self.closure((*a.digits, a.carry)), self.n)
            value = torch.zeros(self.n, dtype=torch.long, device=self.device)
            for k, d in enumerate((*a.digits, a.carry)):
                value = value + assignment[d] * a.base ** k
            return (value + a.offset - A.domain(var.type).offset).clamp(0, var.type.size - 1)
        m = self.marginal(name, env)
        if m.dim() == 2:
            return m.argmax(dim=1)
        if isinstance(var.type, A.BoolType):
            return (m > 0.5).long()
        return m


def _codes(target: torch.Tensor, offset: int) -> torch.Tensor:
    """Value indices (long) as codes: ``target + offset`` (no operation for 0)."""
    target = target if target.dtype == torch.long else target.long()
    return target + offset if offset else target


def _int_leaves(kb, compiled, name) -> tuple[tuple[str, ...], frozenset] | None:
    """The variables an integer define is linear in (in order, and as a set), when they
    are all int or bool variables; else None (computed once per knowledge base)."""
    cache = kb_cached(kb, "probabilistic/int_leaves", lambda kb: {})
    if name not in cache:
        form = compiled.linear_form(name)
        leaves = tuple(form[1]) if form is not None else ()
        cache[name] = (leaves, frozenset(leaves)) if leaves and all(
            isinstance(kb.variables[k].type, (A.IntType, A.BoolType)) for k in leaves) \
            else None
    return cache[name]


class ProbabilisticSemantics(Semantics):
    """Exact inference over finite-domain variables (see the module docstring)."""

    name = "probabilistic"
    context_class = ProbContext
