"""Exact probabilistic semantics over finite-domain variables.

Neural finite variables are independent distributions given the inputs; ``define``s over
them are deterministic factors (integer arithmetic is split into small pieces by
:mod:`greybox._linear`: digit columns with carries for positional sums); hard constraints
over non-decided variables are 0/1 factors that condition everything they touch. A rule
body's truth is the exact probability of the body under this factor graph, computed by
variable elimination (:mod:`greybox._factors`). A comparison with something to learn (a
``~`` threshold, a real network output) is a Bernoulli variable whose probability is the
smooth comparison; other comparisons are crisp.

A connective whose joint table would be large (the conjunction of a ``forall`` or of
``all_different`` units over many variables) is never multiplied out: it is kept as a
product of its parts, each over few variables (:class:`Factored`; a negation or a
disjunction of such a product is a short sum of products, by inclusion-exclusion), and its
probability is the product contracted with the networks' distributions by variable
elimination in log space (:func:`greybox._factors.log_contract`, min-fill order), or summed
over its satisfying assignments when its crisp parts admit few (the 288 valid 4x4 sudoku
grids). Both are exact and differentiable; the largest table is estimated from the
structure first, and a formula beyond the budget is refused, naming it and the
approximate route.

Decisions sit on top, as in every semantics: a decided variable's score is
``bias + sum(weight * P(body))``.
"""

from __future__ import annotations

import itertools
import math
import operator
import weakref

import numpy as np
import torch
import torch.nn.functional as nn_f

from greybox import functional as F
from greybox._batch import kb_cached
from greybox._factors import contract, elimination_order, largest_table, log_contract, mpe
from greybox._linear import CHAIN_LIMIT, FACTOR_LIMIT, count_chain, count_chain_size
from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules import expr_to_text, not_false, plan, type_to_text, value_set

from ._base import Context, Env, Semantics
from ._compiled import smooth_truth, stated_threshold, wide_int

__all__ = ["ProbabilisticSemantics"]

#: Largest joint table enumerated to give a sum's distribution in the trace.
MAX_MARGINAL = 1 << 14
#: Most joint values a ``count`` is summed over densely (beyond: a chain of partial sums).
_DENSE_COUNT = 1 << 12

#: A connective whose joint table has more entries per row than this is kept factored
#: (:class:`Factored`) instead of multiplied out.
SMALL_JOINT = 1 << 10

#: Most products a factored formula may expand to (a negation or disjunction of a
#: factored conjunction adds them by inclusion-exclusion).
MAX_TERMS = 64

#: A factored conjunction whose crisp parts have at most this many satisfying assignments
#: may be summed over them instead of eliminated (whichever is cheaper).
MAX_MODELS = 1 << 16

#: 1 - P below this is not resolved by float64 near P = 1 (its unit roundoff).
_EPS = 2.0 ** -52

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


class Factored:
    """A bool formula's truth kept as a sum of products of small fields,
    ``sum_k coef_k * prod(parts_k)``, never multiplied out into one table over all its
    variables. A conjunction is one product; a negation, disjunction or implication of
    one is a short sum by inclusion-exclusion (``not a = 1 - a``,
    ``a or b = 1 - (1 - a)(1 - b)``). ``node`` is the formula, for messages."""

    __slots__ = ("terms", "node")

    def __init__(self, terms: tuple, node):
        self.terms, self.node = terms, node

    def variables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for _, parts in self.terms for f in parts
                                   for v in f.scope))


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, stably (Maechler's two branches), with ``x``
    held at most ``-_EPS`` in value (not in gradient): float64 resolves no ``1 - P``
    smaller than that."""
    x = x - torch.where(x > -_EPS, x.detach() + _EPS, torch.zeros_like(x))
    ln2 = math.log(2.0)
    near = torch.log(-torch.expm1(x.clamp(min=-ln2)))
    far = torch.log1p(-torch.exp(x.clamp(max=-ln2)))
    return torch.where(x > -ln2, near, far)


def _signed_log_sum(items) -> torch.Tensor:
    """``log(sum(c * exp(a)))`` over ``(c, a)`` pairs whose sum is a probability: the
    positive and negative parts by log-sum-exp, their difference by :func:`_log1mexp`."""
    pos = [math.log(c) + a for c, a in items if c > 0]
    neg = [math.log(-c) + a for c, a in items if c < 0]
    lp = torch.logsumexp(torch.stack(torch.broadcast_tensors(*pos)), 0)
    if not neg:
        return lp
    ln = torch.logsumexp(torch.stack(torch.broadcast_tensors(*neg)), 0)
    ok = torch.isfinite(lp)
    gap = torch.where(ok, ln - torch.where(ok, lp, torch.zeros_like(lp)), -torch.inf)
    return torch.where(ok, lp + _log1mexp(gap.clamp(max=0.0)), lp)


def _models(crisp: list, scope: tuple, sizes: dict, limit: int) -> np.ndarray | None:
    """Every assignment of ``scope`` (value indices, (S, len(scope))) that every crisp
    0/1 table of ``crisp`` (``(scope, bool array)``) allows, by extending partial
    assignments one variable at a time (the most constrained next) and filtering each
    table as soon as its variables are placed; None when more than ``limit`` would be
    held at once."""
    placed: list[str] = []
    rows = np.zeros((1, 0), dtype=np.int64)
    left = list(scope)
    while left:
        v = max(left, key=lambda u: (sum(1 for s, _ in crisp if u in s and any(
            w in placed for w in s)), -left.index(u)))
        left.remove(v)
        k = sizes[v]
        if len(rows) * k > 4 * limit:
            return None
        rows = np.concatenate([np.repeat(rows, k, axis=0),
                               np.tile(np.arange(k), len(rows))[:, None]], axis=1)
        placed.append(v)
        for s, table in crisp:
            if v in s and all(w in placed for w in s):
                rows = rows[table[tuple(rows[:, placed.index(w)] for w in s)]]
        if len(rows) > limit:
            return None
    return rows[:, [placed.index(v) for v in scope]]


class ProbContext(Context):
    def __init__(self, model, batch):
        super().__init__(model, batch)
        self.sizes: dict[str, int] = {}
        self.vals: dict[str, torch.Tensor] = {}
        #: inside a comparison or define whose integer arithmetic float32 cannot hold
        #: exactly (Compiled.wide): observed numbers and constants are read as float64
        self.wide = False
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
        #: conditional factors by id -> the variables they are a distribution over (where
        #: known): without a query on those, such a factor is barren (see closure)
        self._introduces: dict[int, tuple[str, ...]] = {}
        #: neural variables' value fields (the same for every batch), per compiled model
        self._neural_fields = _NEURAL_FIELDS.setdefault(model.compiled, {})
        #: softmax of whole network outputs (several variables' logits), by the output
        self._base_probs: dict = {}
        #: the neural distribution factors in the graph: id -> variable
        self._neural_ids: dict[int, str] = {}
        #: counts over many formulas, by their placeholder factor's id: (placeholder, the
        #: count's name, its formulas' variables and factors); each replaced in a query's factors by one
        #: factor (folded) or by its chain of partial sums (see _counts_in)
        self._counts: dict[int, tuple] = {}
        self._count_factors: dict[tuple, list] = {}

    # helpers ---------------------------------------------------------------------------
    def const(self, x) -> Field:
        return Field((), torch.full((1,), float(x), device=self.device,
                                    dtype=torch.float64 if self.wide else None))

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
        if isinstance(a, Factored):
            a = self._materialize(a)
        if isinstance(b, Factored):
            b = self._materialize(b)
        ta, tb, scope = self._align(a, b)
        # joint values per row, whatever the batch (a table without a batch axis, shared by
        # the rows, and one with it are refused alike): refused before it is allocated
        size = math.prod(torch.broadcast_shapes(ta.shape, tb.shape)[1:])
        if size > FACTOR_LIMIT:
            shown = ", ".join(scope[:8]) + (f", ... ({len(scope)} variables)"
                                            if len(scope) > 8 else "")
            raise ModelError(
                f"a formula over {shown} has {size:,} joint values per row, "
                f"more than exact inference holds ({FACTOR_LIMIT:,}): use a fuzzy semantics "
                "(semantics='product' or 'lukasiewicz'), which evaluates it approximately in "
                "time linear in its size, or split it -- a family of constraints "
                "(constraint c(p in s, ...): ...) instead of one forall")
        return Field(scope, fn(ta, tb))

    def closure(self, scope, *, fold: bool = True) -> list:
        """Every factor connected to ``scope``: what a query on it depends on. Factors of
        variables below (definitions, constraints) are included: evidence and
        constraints there condition the query; unconstrained ones sum out to 1. A count
        over many formulas is one factor where its formulas are independent of the rest
        (``fold``; else, and for a most probable assignment, its chain of partial sums)."""
        out = self._closure(scope)
        return self._counts_in(out, scope, fold) if self._counts else out

    def _closure(self, scope) -> list:
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
        return self._without_barren(out, scope) if self._introduces else out

    def _without_barren(self, factors: list, scope) -> list:
        """``factors`` less the barren ones: a conditional factor whose variables nothing
        else reads and the query does not ask for sums to 1 and changes nothing (a count's
        chain or a define that this query does not reach). Peeled from the leaves, in time
        linear in the factors; kept, they would tie every count over the same variables
        (``count(friends(p, q) and smokes(q) for q ...)`` for every p) into one table."""
        uses: dict[str, int] = {}
        for f in factors:
            for v in f[0]:
                uses[v] = uses.get(v, 0) + 1
        asked = set(scope)
        alive = {id(f): f for f in factors}
        stack = [f for f in factors if id(f) in self._introduces]
        while stack:
            f = stack.pop()
            made = self._introduces.get(id(f))
            if id(f) not in alive or any(v in asked or uses[v] > 1 for v in made):
                continue
            del alive[id(f)]
            for v in f[0]:
                uses[v] -= 1
                if uses[v] == 1:   # the one factor left reading v may be barren now
                    stack.extend(g for g in self.touch.get(v, ())
                                 if id(g) in alive and id(g) in self._introduces)
        return [f for f in factors if id(f) in alive]

    def _counts_in(self, factors: list, scope, fold: bool) -> list:
        """``factors`` with each count's placeholder replaced: by one factor over the count,
        the Poisson-binomial of its formulas' probabilities (:func:`F.poisson_binomial`,
        O(n^2) per row), where its formulas read neural variables that nothing else among
        ``factors`` reads nor the query asks (so they sum out alone); else by its chain of
        partial sums (refused beyond :data:`CHAIN_LIMIT`)."""
        holders = [f for f in factors if id(f) in self._counts]
        if not holders:
            return factors
        uses: dict[str, int] = {}
        for f in factors:
            for v in f[0]:
                uses[v] = uses.get(v, 0) + 1
        present = {id(f) for f in factors}
        asked = set(scope)
        drop, add = set(), []
        for holder in holders:
            _, name, atoms, formulas = self._counts[id(holder)]
            alone = fold and all(
                id(f) in present and uses[a] == 2 and a not in asked and all(
                    v in self.logits and uses[v] == 2 and v not in asked for v in f[0][:-1])
                for a, f in zip(atoms, formulas))
            if alone:
                own = {v: g for f in formulas for v in f[0][:-1] for g in self.touch[v]
                       if id(g) in self._neural_ids and id(g) in present}
                if len(own) < sum(len(f[0]) - 1 for f in formulas):
                    alone = False       # (a variable's own distribution not among them)
            if alone:
                drop.update(id(f) for f in formulas)
                drop.update(id(g) for g in own.values())
                add.append(self._folded(holder, own))
            else:
                add.extend(self._chain_of(holder))
            drop.add(id(holder))
        return [f for f in factors if id(f) not in drop] + add

    def unfolded(self, factors: list) -> list:
        """``factors`` with each count's placeholder replaced by its chain of partial sums
        (for a most probable joint assignment, which the chain's variables take part in)."""
        return self._counts_in(factors, (), False) if self._counts else factors

    def _folded(self, holder, own: dict):
        """The count's distribution as one factor over it (made once), from its formulas'
        factors and the distributions ``own`` of the neural variables they read."""
        key = ("folded", id(holder))
        found = self._count_factors.get(key)
        if found is not None:
            return found
        _, name, _, formulas = self._counts[id(holder)]
        probs = []
        for f in formulas:
            scope = f[0][:-1]
            t, s = contract([own[v] for v in scope] + [(scope, f[1][..., 1])])
            probs.append((t * torch.exp(s)).double())
        p = torch.stack(torch.broadcast_tensors(*probs), 1).clamp(0.0, 1.0)
        folded = ((name,), F.poisson_binomial(p).to(formulas[0][1].dtype))
        self._keep_alive.append(folded)
        self.conditional.add(id(folded))
        self._count_factors[key] = folded
        return folded

    def _chain_of(self, holder) -> list:
        """A count's chain of partial sums (built once), or refused where too large."""
        found = self._count_factors.get(("chain", id(holder)))
        if found is not None:
            return found
        _, name, atoms, _ = self._counts[id(holder)]
        arith = count_chain(name, atoms)
        if arith is None:
            raise ModelError(
                f"count over {len(atoms):,} formulas is too large for exact inference "
                f"where its formulas are tied to the rest of the model (its chain of "
                f"partial sums holds {count_chain_size(len(atoms)):,} values, at most "
                f"{CHAIN_LIMIT:,}): use a fuzzy semantics (semantics='product'), where it "
                "is the sum of their truth degrees")
        for aux, values in arith.aux.items():
            self.sizes[aux] = len(values)
            self.vals[aux] = self.model.compiled.value_tensor(tuple(values))
        factors = [(s, f.to(self.device)) for s, f in arith.factors]
        for factor in factors:   # each a function of the ones before: its last variable
            self._keep_alive.append(factor)
            self.conditional.add(id(factor))
        self._count_factors[("chain", id(holder))] = factors
        return factors

    def _log_z(self, factors) -> torch.Tensor | float:
        if all(id(f) in self.conditional for f in factors):
            return 0.0
        t, s = contract(factors)
        return F.safe_log(t) + s

    # constructors ----------------------------------------------------------------------
    def observe(self, name, x):
        # (an integer input beyond float32's exact integers arrives in float64: kept)
        return Field((), x if x.dtype == torch.float64 else x.float())

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
        factor = ((name,), self._distribution(name))
        self._neural_ids[id(factor)] = name
        self.add_factor(factor)

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

    def _neural_logp(self, name, dtype=None) -> torch.Tensor:
        out = self.logits[name] if dtype is None else self.logits[name].to(dtype)
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
                    for factor, conditional, made in zip(arith.factors, arith.conditionals,
                                                         arith.made):
                        if conditional:
                            self._introduces[id(factor)] = made
                        self.add_factor(factor, conditional=conditional)
                    if arith.columns and all(arith.conditionals):
                        self._sums[name] = arith     # a plain sum (see log_prob)
                    self.sizes[name] = var.type.size
                    self.vals[name] = self.model.compiled.value_tensor(tuple(self._values_of(name)))
                    return Field((name,), self.vals[name].view(1, -1))
        if isinstance(var.type, A.IntType) and not self.wide and \
                self.model.compiled.wide(var.expr, define=name):
            self.wide = True
            try:
                f = self.field(var.expr, env)
            finally:
                self.wide = False
        else:
            try:
                f = self.field(var.expr, env)
            except ModelError as err:
                raise _located(err, self.kb, var.expr, f"define {name!r}") from None
        if isinstance(f, Factored):
            return f       # a bool kept factored: what reads it reads its parts
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
        if ind[:1].numel() > FACTOR_LIMIT:    # per row (checked above; kept as a guard)
            raise ModelError(f"define {name!r}: {ind.numel()} joint values, too many for exact "
                             "inference")
        conditional = bool((ind.sum(-1) == 1).all())
        factor = (f.scope + (vname,), ind)
        if conditional:
            self._introduces[id(factor)] = (vname,)
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
        if isinstance(e, A.Neg):
            inner = self.field(e.operand, env)
            if isinstance(inner, Factored):
                inner = self._materialize(inner)
            return Field(inner.scope, -inner.t)
        if isinstance(e, A.Sum):
            acc = self.field(e.args[0], env)
            chain = _nonlinear(self.kb, e)
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
        if isinstance(e, A.Arith):
            parts = [self.field(a, env) for a in e.args]
            if e.op == "abs":
                out = Field(parts[0].scope, parts[0].t.abs())
            else:
                op = e.op
                out = parts[0]
                for p in parts[1:]:
                    out = self._binop(out, p, lambda a, b: F.arith(op, [a, b]))
            return self._intermediate(out, e, 0, env)
        if isinstance(e, A.Not):
            return self._negation(self.field(e.operand, env), e)
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

    # connectives: multiplied out while small, else kept factored ---------------------
    def _connective(self, e, env) -> Field | Factored:
        args = [self.field(a, env) for a in
                (e.args if isinstance(e, (A.And, A.Or)) else (e.left, e.right))]
        if all(isinstance(a, Field) for a in args) and self._joint_size(args) <= SMALL_JOINT:
            if isinstance(e, A.Implies):
                return self._binop(*args, lambda a, b: 1.0 - a + a * b)
            if isinstance(e, A.Iff):
                return self._binop(*args, lambda a, b: 1.0 - a - b + 2.0 * a * b)
            fn = torch.mul if isinstance(e, A.And) else (lambda a, b: a + b - a * b)
            acc = args[0]
            for arg in args[1:]:
                acc = self._binop(acc, arg, fn)
            return acc
        terms = self._terms
        if isinstance(e, A.And):
            out = self._product([terms(a, e) for a in args], e)
        elif isinstance(e, A.Or):      # 1 - prod(1 - a)
            out = self._one_minus(self._product(
                [terms(self._negation(a, e), e) for a in args], e))
        elif isinstance(e, A.Implies):  # 1 - a (1 - b)
            out = self._one_minus(self._product(
                [terms(args[0], e), terms(self._negation(args[1], e), e)], e))
        else:                           # a b + (1 - a)(1 - b)
            out = self._product([terms(a, e) for a in args], e) + self._product(
                [terms(self._negation(a, e), e) for a in args], e)
        if len(out) > MAX_TERMS:
            self._refuse_terms(e, len(out))
        return Factored(out, e)

    def _joint_size(self, fields) -> int:
        scope = dict.fromkeys(v for f in fields for v in f.scope)
        return math.prod(self.sizes[v] for v in scope)

    def _negation(self, x, node):
        if isinstance(x, Factored):
            return Factored(self._one_minus(x.terms), node)
        return Field(x.scope, 1.0 - x.t)

    @staticmethod
    def _terms(x, node) -> tuple:
        return x.terms if isinstance(x, Factored) else ((1.0, (x,)),)

    @staticmethod
    def _one_minus(terms) -> tuple:
        return ((1.0, ()),) + tuple((-c, parts) for c, parts in terms)

    def _product(self, factors: list, node) -> tuple:
        """The terms of the product of sums of terms ``factors``, multiplied out (each
        product's parts merged once)."""
        count = math.prod(len(t) for t in factors)
        if count > MAX_TERMS:
            self._refuse_terms(node, count)
        return tuple((math.prod(c for c, _ in combo),
                      self._merge([f for _, parts in combo for f in parts]))
                     for combo in itertools.product(*factors))

    def _merge(self, parts) -> tuple:
        """The product of ``parts`` as few fields: each part multiplied into a kept one
        whose scope holds its own (a duplicate, a constant), never into a larger table."""
        kept: list[list] = []          # [scope as a set, field]
        for f in sorted(parts, key=lambda f: -len(f.scope)):
            mine = set(f.scope)
            for k in kept:
                if mine <= k[0]:
                    k[1] = Field(k[1].scope, k[1].t * self._expand(f, k[1].scope))
                    break
            else:
                kept.append([mine, f])
        return tuple(f for _, f in kept)

    def parts_of(self, x) -> list:
        """The fields whose product is ``x`` (a hard constraint's factors); a factored
        formula that is not one product (a negated or disjoined conjunction) is refused."""
        if isinstance(x, Field):
            return [x]
        if len(x.terms) == 1 and x.terms[0][0] == 1.0:
            return list(x.terms[0][1])
        if self._joint_size([f for _, parts in x.terms for f in parts]) <= FACTOR_LIMIT:
            return [self._materialize(x)]
        raise ModelError(
            f"{self._describe(x)} is a hard constraint that is not a conjunction of small "
            "parts (a negation or disjunction of a large conjunction): exact inference "
            "cannot condition on it; make it a soft constraint (with a weight), or use a "
            "fuzzy semantics (semantics='product' or 'lukasiewicz')")

    def _describe(self, x: Factored) -> str:
        names = x.variables()
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} variables)"
                                         if len(names) > 6 else "")
        text = expr_to_text(x.node)
        text = text if len(text) <= 70 else text[:67] + "..."
        where = f" at {x.node.span}" if x.node.span is not None else ""
        return f"the formula{where} ({text})" + (f" over {shown}" if names else "")

    def _materialize(self, x: Factored) -> Field:
        """``x`` as one table over all its variables, where that table fits the budget
        (a comparison or a hard constraint reads it so); else refused, naming it."""
        fields = [f for _, parts in x.terms for f in parts]
        if self._joint_size(fields) > FACTOR_LIMIT:
            self._refuse_reading(x)
        total = None
        for c, parts in x.terms:
            term = self.const(c)
            for f in parts:
                term = self._binop(term, f, torch.mul)
            total = term if total is None else self._binop(total, term, torch.add)
        return total

    def _refuse_reading(self, x: Factored):
        raise ModelError(
            f"{self._describe(x)} is kept as a product of its parts by exact inference (its "
            "joint table is too large to build); and, or, not, -> and <-> may read it, "
            "comparisons and arithmetic cannot: use a fuzzy semantics (semantics='product' "
            "or 'lukasiewicz')")

    def _refuse_terms(self, node, count: int):
        raise ModelError(
            f"{self._describe(Factored((), node))}: exact inference would expand it into "
            f"{count:,} products of its parts (negations and disjunctions of large "
            f"conjunctions, more than {MAX_TERMS}): use a fuzzy semantics "
            "(semantics='product' or 'lukasiewicz'), which evaluates it approximately in "
            "time linear in its size")

    # the probability of a factored formula -------------------------------------------
    def _log_factor(self, factor):
        name = self._neural_ids.get(id(factor))
        if name is not None:     # from the logits in float64: log(1 - 1e-12) is not 0
            return factor[0], self._neural_logp(name, torch.float64)
        return factor[0], F.safe_log(factor[1])

    def _log_truth(self, x: Factored) -> tuple[torch.Tensor, torch.Tensor]:
        """log P(x) and log P(not x) per row (float64), each as a signed sum over the
        products of ``x``, so ``P(not x) = 1 - P(x)`` keeps its digits when P(x) is near 1."""
        items = [(c, self._log_expect(parts, x) if parts else
                  torch.zeros(1, dtype=torch.float64, device=self.device))
                 for c, parts in x.terms]
        yes = _signed_log_sum(items)
        no = _signed_log_sum([(1.0, torch.zeros_like(yes))] + [(-c, a) for c, a in items])
        return yes.expand(self.n), no.expand(self.n)

    def _log_expect(self, parts, x: Factored) -> torch.Tensor:
        """log E[prod(parts)] under the graph (conditioned on its hard constraints)."""
        scope = tuple(dict.fromkeys(v for f in parts for v in f.scope))
        closure = self.closure(scope)
        logs = [self._log_factor(f) for f in closure]
        log_z = 0.0
        if not all(id(f) in self.conditional for f in closure):
            log_z = self._eliminate(logs, x)
        by_models = self._by_models(parts, closure, logs, scope)
        if by_models is not None:
            return by_models - log_z
        return self._eliminate(logs + [(f.scope, F.safe_log(f.t)) for f in parts], x) - log_z

    def _eliminate(self, logs, x: Factored) -> torch.Tensor:
        """log of the sum of the product of the log-factors ``logs``, refused before
        anything is allocated when its largest table exceeds the budget."""
        self._check_width(tuple(s for s, _ in logs), x)
        return log_contract(logs)

    def _check_width(self, scopes, x: Factored) -> None:
        """Refuse an elimination of factors over ``scopes`` whose largest table would
        exceed the budget (estimated from the structure, before anything is built)."""
        cache = kb_cached(self.kb, "probabilistic/largest", lambda kb: {})
        largest = cache.get(scopes)
        if largest is None:
            largest = cache[scopes] = largest_table(
                scopes, self.sizes, elimination_order(scopes, ()))
        if largest > FACTOR_LIMIT:
            count = f"{largest:,}" if largest < 10 ** 15 else f"about {largest:.1e}"
            raise ModelError(
                f"exact inference of {self._describe(x)} needs {count} joint values "
                f"per row at the largest step of its elimination, more than exact "
                f"inference holds ({FACTOR_LIMIT:,}): use a fuzzy semantics "
                "(semantics='product' or 'lukasiewicz'), which evaluates it approximately "
                "in time linear in its size, or split it -- a family of constraints "
                "(constraint c(p in s, ...): ...) instead of one forall")

    def _by_models(self, parts, closure, logs, scope) -> torch.Tensor | None:
        """log E[prod(parts)] as a sum over the assignments the crisp parts allow (those
        the same for every row, 0/1), when the variables' own factors lie within
        ``scope`` and those assignments are few enough to be cheaper than elimination;
        else None. The assignments are enumerated once per structure."""
        here = set(scope)
        if self.device.type == "meta" or not all(set(f[0]) <= here for f in closure):
            return None       # (tensors without values: the crisp parts cannot be read)
        crisp, rest = [], []
        for f in parts:
            (crisp if f.scope and f.t.shape[0] == 1 else rest).append(f)
        if not crisp:
            return None
        tables = [(f.scope, f.t[0].detach().cpu().numpy()) for f in crisp]
        scopes = tuple(s for s, _ in logs) + tuple(f.scope for f in parts)
        key = (scope, scopes, tuple((s, t.tobytes()) for s, t in tables))
        cache = kb_cached(self.kb, "probabilistic/models", lambda kb: {})
        models = cache.get(key, False)
        if models is False:
            models = None
            if all(((t == 0) | (t == 1)).all() for _, t in tables):
                models = _models([(s, t > 0) for s, t in tables], scope, self.sizes,
                                 MAX_MODELS)
            if models is not None and len(models) * len(scope) > largest_table(
                    scopes, self.sizes, elimination_order(scopes, ())):
                models = None           # elimination is cheaper
            if models is not None:
                models = torch.as_tensor(models)
            if len(cache) >= 256:      # crisp parts that differ per batch: keep it bounded
                cache.clear()
            cache[key] = models
        if models is None:
            return None
        if not len(models):
            return torch.full((1,), -torch.inf, dtype=torch.float64, device=self.device)
        at = models.to(self.device)
        total = None
        for s, t in logs + [(f.scope, F.safe_log(f.t)) for f in rest]:
            if not s:
                term = t.double().reshape(-1, 1)
            else:
                term = t.double()[(slice(None), *[at[:, scope.index(v)] for v in s])]
            total = term if total is None else total + term
        return torch.logsumexp(total, dim=1)

    def _operand(self, e, other, env) -> Field:
        if isinstance(e, A.Sym):
            t = self.kb.variables[other.name].type if isinstance(other, A.Var) else None
            if t is None or not isinstance(t, A.EnumType):
                raise ModelError(f"enum value {e.name!r} compared with a non-enum")
            return self.const(t.values.index(e.name))
        return self.field(e, env)

    def _crisp(self, e) -> bool:
        """Whether comparison or membership test ``e`` is crisp here."""
        return self.hard or self.model._crisp or (
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
        self._introduces[id(factor)] = (name,)
        out = self._atoms[key] = self._register(name, values, factor)
        return out

    def _count(self, e: A.Count, env) -> Field:
        """``count``: the sum of its formulas' 0/1 fields, exact. Over few joint values, one
        dense field; over more, each formula is a bool variable (its own factor) and the
        count a chain of partial sums over them (:func:`greybox._linear.count_chain`), so
        that a count of many independent formulas costs polynomially, not 2^n."""
        parts = [self.field(a, env) for a in e.args]
        parts = [self._materialize(p) if isinstance(p, Factored) else p for p in parts]
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
                    self._introduces[id(factor)] = (atom,)
                    self._register(atom, [0, 1], factor)
                    atoms.append(atom)
                    formulas.append(factor)
            # a placeholder over the formulas and the count, replaced in each query's
            # factors (see _counts_in): its chain of partial sums is built only where a
            # query needs it
            holder = ((*atoms, name), None)
            self._counts[id(holder)] = (holder, name, atoms, formulas)
            self._introduces[id(holder)] = (name,)
            self._atoms[key] = self._register(name, range(len(atoms) + 1), holder)
        acc = self._atoms[key]
        for p in parts:  # the formulas known from the inputs: a number per row
            if not p.scope:
                acc = self._binop(acc, p, torch.add)
        return acc

    def expectation(self, f: Field | Factored) -> torch.Tensor:
        if isinstance(f, Factored):
            return self._log_truth(f)[0].exp().float()
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
                self._check_width(tuple(s for s, _ in self.closure(x.variables())), x)
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
        if isinstance(x, Factored):
            yes, no = self._log_truth(x)
            return torch.where(target.bool(), yes, no).float()
        if isinstance(x, Virtual):
            lo = A.domain(var.type).offset     # indices -> codes (the sum's values)
            if self._independent(x.arith):
                return x.arith.log_prob(self._stacked, _codes(target, lo), self.device)
            self._add_arithmetic(x)
            evidence = x.arith.evidence(_codes(target, lo))
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
        if isinstance(x, Factored):
            return self.expectation(x)
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
            # a trace holds numbers in float32 (integers beyond 2**24 exactly, in float64,
            # as the crisp trace holds them)
            return x.t.expand(self.n) if x.t.dtype == torch.float32 or wide_int(var.type) \
                else x.t.float().expand(self.n)
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
            assignment, _ = mpe(self.closure((*a.digits, a.carry), fold=False), self.n)
            if A.domain(var.type).big:    # beyond int64: Python ints, exactly
                from .._bigint import BigLabels

                places = [a.base ** k for k in range(len(a.digits) + 1)]
                cols = [assignment[d].expand(self.n).tolist() for d in (*a.digits, a.carry)]
                shift = a.offset - A.domain(var.type).offset
                return BigLabels(np.array([sum(p * int(c[r]) for p, c in zip(places, cols))
                                           + shift for r in range(self.n)], dtype=object))
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


def _nonlinear(kb, e) -> bool:
    """Whether sum ``e`` holds a product of variables or an operation of
    :class:`~greybox.rules.ast.Arith` (its partial sums are then variables of their own)."""
    cache = kb_cached(kb, "probabilistic/nonlinear", lambda kb: {})
    found = cache.get(id(e))
    if found is None:
        found = cache[id(e)] = any(
            isinstance(n, A.Arith) or (isinstance(n, A.Mul) and not (
                A.is_constant(n.left) or A.is_constant(n.right))) for n in A.walk(e))
    return found


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


def _codes(target: torch.Tensor, offset: int) -> torch.Tensor:
    """Value indices (long) as codes: ``target + offset`` (no operation for 0); big
    integers' labels (:class:`~greybox._bigint.BigLabels`) shifted exactly."""
    if not isinstance(target, torch.Tensor):
        return target.shifted(offset)
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
