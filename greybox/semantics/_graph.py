"""The factor graph of one exact-inference pass: its factors, what touches what, the
networks' distributions, and the factors a query depends on.

A factor is ``(scope, tensor)`` (:mod:`greybox._factors`). Neural variables' distributions
are factors made when a query first reaches them; a conditional factor is a distribution
over the variables it introduces given the others (it sums to 1 over them), so a query
that reaches none of those variables leaves it out (it is barren). A ``count`` over many
formulas enters as a placeholder, replaced in each query's factors by one factor over the
count where its formulas sum out alone, else by its chain of partial sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nn_f

from greybox import functional as F
from greybox._batch import kb_cached
from greybox._factors import contract
from greybox._linear import CHAIN_LIMIT, count_chain, count_chain_size
from greybox.errors import ModelError
from greybox.rules import ast as A

from ._fields import Field

__all__ = ["FactorGraph", "values_of"]


def values_of(kb, name) -> tuple:
    """Variable ``name``'s values as exact inference indexes them: an enum's value indices,
    0 and 1 for a bool, an int's numbers (computed once per knowledge base)."""
    cache = kb_cached(kb, "probabilistic/values", lambda kb: {})
    found = cache.get(name)
    if found is None:
        t = kb.variables[name].type
        if isinstance(t, A.EnumType):
            found = tuple(range(len(t.values)))
        elif isinstance(t, A.BoolType):
            found = (0, 1)
        else:
            found = tuple(t.values)
        cache[name] = found
    return found


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


class FactorGraph:
    """The factors of one pass over a batch and the variables' value tables.

    ``kb`` and ``device`` are the model's, ``value_tensor`` makes a variable's tensor of
    values (:meth:`Compiled.value_tensor`), ``neural_fields`` is the per-model cache of
    what does not change between batches."""

    def __init__(self, kb, device, value_tensor, neural_fields: dict):
        self.kb, self.device, self.value_tensor = kb, device, value_tensor
        self.neural_fields = neural_fields
        #: neural variables' log-distributions, by (name, dtype) (see neural_logp)
        self._logp: dict = {}
        #: each variable's number of values and tensor of values
        self.sizes: dict[str, int] = {}
        self.vals: dict[str, torch.Tensor] = {}
        #: ids of the conditional factors (see add)
        self.conditional: set[int] = set()
        #: the factors over each variable
        self.touch: dict[str, list] = {}
        self._keep_alive: list = []
        #: conditional factors by id -> the variables they are a distribution over (where
        #: known): without a query on those, such a factor is barren (see closure)
        self.introduces: dict[int, tuple[str, ...]] = {}
        #: finite neural variables' network outputs
        self.logits: dict[str, torch.Tensor] = {}
        #: neural variables whose factor (their distribution) is made on first use
        self.lazy: set[str] = set()
        #: the neural distribution factors in the graph: id -> variable
        self.neural_ids: dict[int, str] = {}
        #: softmax of whole network outputs (several variables' logits), by the output
        self._base_probs: dict = {}
        #: counts over many formulas, by their placeholder factor's id: (placeholder, the
        #: count's name, its formulas' variables and factors); each replaced in a query's
        #: factors by one factor (folded) or by its chain of partial sums (see _counts_in)
        self.counts: dict[int, tuple] = {}
        self._count_factors: dict[tuple, list] = {}

    # building ---------------------------------------------------------------------------
    def add(self, factor, *, conditional=True):
        """Add a factor to the graph; ``conditional``: it is a distribution over the
        variables it introduces given the others (it sums to 1 over them)."""
        self._keep_alive.append(factor)
        for v in factor[0]:
            self.touch.setdefault(v, []).append(factor)
        if conditional:
            self.conditional.add(id(factor))

    def add_values(self, values_by_name: dict) -> None:
        """Each variable of ``values_by_name`` with its values (an auxiliary variable of
        compiled arithmetic: a partial sum, a carry)."""
        for aux, values in values_by_name.items():
            self.sizes[aux] = len(values)
            self.vals[aux] = self.value_tensor(tuple(values))

    def add_count(self, holder, name: str, atoms: list, formulas: list) -> None:
        """A count's placeholder factor ``holder`` (over its formulas' bool variables
        ``atoms``, whose factors are ``formulas``, and the count ``name``)."""
        self.counts[id(holder)] = (holder, name, atoms, formulas)
        self.introduces[id(holder)] = (name,)

    # the networks' distributions --------------------------------------------------------
    def neural(self, name, out):
        """Neural variable ``name``'s field from its network output ``out``: its values (a
        finite one, whose distribution joins the graph when a query reaches it), or
        ``out`` itself (a real one)."""
        field = self.neural_fields.get(name)
        if field is None:
            if not A.is_finite_type(self.kb.variables[name].type):
                field = self.neural_fields[name] = False
            else:
                vals = self.value_tensor(values_of(self.kb, name))
                field = self.neural_fields[name] = Field((name,), vals.view(1, -1))
        if field is False:     # a real network output: its value
            return Field((), out)
        self.logits[name] = out
        self.sizes[name] = field.t.shape[1]
        self.vals[name] = field.t[0]
        self.lazy.add(name)   # its factor is made when a query reaches it
        return field

    def neurals(self, outs):
        """:meth:`neural` of each network output of ``outs`` (by variable): the finite ones
        registered at once from what is known per model (set operations, no loop over the
        variables)."""
        key = ("neurals", tuple(outs))
        known = self.neural_fields.get(key)
        if known is None:
            fields = {name: self.neural(name, out) for name, out in outs.items()}
            finite = [n for n in outs if n in self.logits]
            if len(finite) < len(outs):
                return fields        # real network outputs among them: one by one
            known = self.neural_fields[key] = (fields, {n: self.sizes[n] for n in finite},
                                               {n: self.vals[n] for n in finite})
            return fields
        fields, sizes, vals = known
        self.logits.update(outs)
        self.sizes.update(sizes)
        self.vals.update(vals)
        self.lazy.update(outs)
        return fields

    def distribution(self, name) -> torch.Tensor:
        """A neural variable's distribution (B, K) from its network output."""
        out = self.logits[name]
        if out.dim() == 1:
            p = torch.sigmoid(out)
            return torch.stack([1.0 - p, p], 1)
        return torch.softmax(out, dim=1)

    def neural_logp(self, name, dtype=None) -> torch.Tensor:
        """A neural variable's log-distribution (B, K) from its network output (computed
        once per pass and dtype)."""
        key = (name, dtype)
        found = self._logp.get(key)
        if found is not None:
            return found
        out = self.logits[name] if dtype is None else self.logits[name].to(dtype)
        if out.dim() == 1:
            found = torch.stack([nn_f.logsigmoid(-out), nn_f.logsigmoid(out)], 1)
        else:
            found = torch.log_softmax(out, dim=1)
        self._logp[key] = found
        return found

    def _neural_factor(self, name):
        self.lazy.discard(name)
        factor = ((name,), self.distribution(name))
        self.neural_ids[id(factor)] = name
        self.add(factor)

    def stacked(self, names) -> torch.Tensor:
        """The distributions of neural variables, stacked: (len(names), B, K)."""
        outs = [self.logits[n] for n in names]
        if outs[0].dim() != 2:
            return torch.stack([self.distribution(n) for n in names])
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
        index = self.neural_fields.get(("blocks", blocks))
        if index is None:
            index = self.neural_fields[("blocks", blocks)] = torch.tensor(
                blocks, device=torch.device("cpu")).to(probs.device)
        return probs.index_select(0, index)

    def independent(self, arith) -> bool:
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
            if others and (name in self.lazy or len(others) > 1
                           or others[0][0] != (name,) or id(others[0]) not in
                           self.conditional):
                return False
        # (the sum's own variables, name#digit0..., are named by nothing else)
        return True

    # what a query depends on ------------------------------------------------------------
    def closure(self, scope, *, fold: bool = True) -> list:
        """Every factor connected to ``scope``: what a query on it depends on. Factors of
        variables below (definitions, constraints) are included: evidence and
        constraints there condition the query; unconstrained ones sum out to 1. A count
        over many formulas is one factor where its formulas are independent of the rest
        (``fold``; else, and for a most probable assignment, its chain of partial sums)."""
        out = self._closure(scope)
        return self._counts_in(out, scope, fold) if self.counts else out

    def _closure(self, scope) -> list:
        seen, fids, out = set(), set(), []
        stack = list(scope)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in self.lazy:
                self._neural_factor(v)
            for f in self.touch.get(v, ()):
                if id(f) not in fids:
                    fids.add(id(f))
                    out.append(f)
                    stack.extend(f[0])
        return self._without_barren(out, scope) if self.introduces else out

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
        stack = [f for f in factors if id(f) in self.introduces]
        while stack:
            f = stack.pop()
            made = self.introduces.get(id(f))
            if id(f) not in alive or any(v in asked or uses[v] > 1 for v in made):
                continue
            del alive[id(f)]
            for v in f[0]:
                uses[v] -= 1
                if uses[v] == 1:   # the one factor left reading v may be barren now
                    stack.extend(g for g in self.touch.get(v, ())
                                 if id(g) in alive and id(g) in self.introduces)
        return [f for f in factors if id(f) in alive]

    def _counts_in(self, factors: list, scope, fold: bool) -> list:
        """``factors`` with each count's placeholder replaced: by one factor over the count,
        the Poisson-binomial of its formulas' probabilities (:func:`F.poisson_binomial`,
        O(n^2) per row), where its formulas read neural variables that nothing else among
        ``factors`` reads nor the query asks (so they sum out alone); else by its chain of
        partial sums (refused beyond :data:`CHAIN_LIMIT`)."""
        holders = [f for f in factors if id(f) in self.counts]
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
            own = self._alone(holder, uses, present, asked) if fold else None
            if own is not None:
                drop.update(id(f) for f in self.counts[id(holder)][3])
                drop.update(id(g) for g in own.values())
                add.append(self._folded(holder, own))
            else:
                add.extend(self._chain_of(holder))
            drop.add(id(holder))
        return [f for f in factors if id(f) not in drop] + add

    def _alone(self, holder, uses: dict, present: set, asked: set) -> dict | None:
        """Where the count ``holder``'s formulas read neural variables that nothing else
        among the query's factors reads (``uses``: how many read each variable; ``present``:
        the factors' ids) nor the query asks: those variables' own distribution factors,
        by variable; else None."""
        _, _, atoms, formulas = self.counts[id(holder)]
        alone = all(
            id(f) in present and uses[a] == 2 and a not in asked and all(
                v in self.logits and uses[v] == 2 and v not in asked for v in f[0][:-1])
            for a, f in zip(atoms, formulas))
        if not alone:
            return None
        own = {v: g for f in formulas for v in f[0][:-1] for g in self.touch[v]
               if id(g) in self.neural_ids and id(g) in present}
        if len(own) < sum(len(f[0]) - 1 for f in formulas):
            return None       # (a variable's own distribution not among them)
        return own

    def unfolded(self, factors: list) -> list:
        """``factors`` with each count's placeholder replaced by its chain of partial sums
        (for a most probable joint assignment, which the chain's variables take part in)."""
        return self._counts_in(factors, (), False) if self.counts else factors

    def _folded(self, holder, own: dict):
        """The count's distribution as one factor over it (made once), from its formulas'
        factors and the distributions ``own`` of the neural variables they read."""
        key = ("folded", id(holder))
        found = self._count_factors.get(key)
        if found is not None:
            return found
        _, name, _, formulas = self.counts[id(holder)]
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
        _, name, atoms, _ = self.counts[id(holder)]
        arith = count_chain(name, atoms)
        if arith is None:
            raise ModelError(
                f"count over {len(atoms):,} formulas is too large for exact inference "
                f"where its formulas are tied to the rest of the model (its chain of "
                f"partial sums holds {count_chain_size(len(atoms)):,} values, at most "
                f"{CHAIN_LIMIT:,}): use a fuzzy semantics (semantics='product'), where it "
                "is the sum of their truth degrees")
        self.add_values(arith.aux)
        factors = [(s, f.to(self.device)) for s, f in arith.factors]
        for factor in factors:   # each a function of the ones before: its last variable
            self._keep_alive.append(factor)
            self.conditional.add(id(factor))
        self._count_factors[("chain", id(holder))] = factors
        return factors

    def log_z(self, factors) -> torch.Tensor | float:
        """The log partition function of ``factors`` per row (0 where every factor is
        conditional: they sum to 1)."""
        if all(id(f) in self.conditional for f in factors):
            return 0.0
        t, s = contract(factors)
        return F.safe_log(t) + s

    # queries ----------------------------------------------------------------------------
    def expectation(self, f: Field, n: int) -> torch.Tensor:
        """E[f] per row (``n`` rows) of a field over variables of the graph (0 where the
        hard constraints allow nothing)."""
        factors = self.closure(f.scope)
        t, s = contract(factors + [(f.scope, f.t)])
        log_z = self.log_z(factors)
        if not isinstance(log_z, torch.Tensor):
            return (t * torch.exp(s)).expand(n)
        ok = torch.isfinite(log_z)
        out = t * torch.exp(s - torch.where(ok, log_z, torch.zeros_like(log_z)))
        return torch.where(ok, out, torch.zeros_like(out)).expand(n)

    def marginal(self, v: str) -> torch.Tensor:
        """The distribution of variable ``v`` (batch first)."""
        t, _ = contract(self.closure((v,)), keep=(v,))
        return t / t.sum(1, keepdim=True)

    def log_prob(self, v: str, target: torch.Tensor, n: int) -> torch.Tensor:
        """log P(v = target) per row (``target``: value indices, (n,))."""
        factors = self.closure((v,))
        t, s = contract(factors, keep=(v,))
        p = t.expand(n, -1).gather(1, target.long().view(-1, 1)).squeeze(1)
        return F.safe_log(p) + s - self.log_z(factors)

    def log_evidence(self, scope, evidence: list) -> torch.Tensor:
        """log P(evidence) per row: ``evidence`` is 0/1 factors over the variables
        ``scope``."""
        factors = self.closure(scope)
        t, s = contract(factors + evidence)
        return F.safe_log(t) + s - self.log_z(factors)
