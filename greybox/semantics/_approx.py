"""Approximate probabilistic inference past the exact route's table limit (opt-in:
``GreyBox(..., semantics="probabilistic", inference="approximate")``).

Exact inference keeps a large conjunction (a ``forall`` of ``all_different`` units, a
dense clique of pairwise rules) as a product of its parts (:class:`~._factored.Factored`)
and eliminates them jointly; past :data:`~greybox._linear.FACTOR_LIMIT` entries per row it
refuses. The approximate route is a **factored approximation**: each product of parts is
split into blocks that are each computed EXACTLY, and the blocks are combined as if they
were independent, ``log P(A and B) ~ log P(A) + log P(B)`` (negations, disjunctions and
implications of such products by the same inclusion-exclusion as the exact route, so
``P(not x) = 1 - P(x)``):

* an ``all_different`` over independent finite neural variables (no hard constraint
  touches them, no operand of its conjunction other than a unit reads them) is one block, its probability exact by a dynamic programme over the
  subsets of values used (``2**m`` states for ``m`` values: 512 for a 9x9 sudoku unit),
  instead of the ``9**8``-entry elimination of its 36 pairs;
* the other parts are grouped into the components that share no variable (directly or
  through the factors they depend on): a component whose elimination fits
  :data:`COMPONENT_LIMIT` (the exact route's limit) is one block, computed exactly as the exact route computes it; a larger
  one is split greedily, in the order of its parts, into the longest consecutive runs
  whose variables (with those of the factors they depend on) have at most
  :data:`BLOCK_LIMIT` joint values per row.

A formula no exact block can hold -- a connective that would expand into more than
:data:`~._factored.MAX_TERMS` products (a recursive component's unrolled layers), a query
or a block whose elimination is refused -- is a **Monte Carlo block**
(:mod:`._sampled`): estimated from seeded sampled worlds, with IndeCateR's gradient.

Where every block is independent of the others (disjoint variables, no shared factor) the
result is exact. Elsewhere its error is measured, not bounded (docs/semantics.md has the
table; ``benchmarks/bench_approx.py`` reproduces it). Hard constraints are conditioned on
exactly as before (a hard constraint too large for exact inference is refused).
"""

from __future__ import annotations

import itertools
import math

import torch

from greybox._batch import kb_cached
from greybox._factors import elimination_order, largest_table
from greybox._linear import FACTOR_LIMIT
from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import closure

from ._factored import MAX_TERMS, Factored, connective, materialize, negation, parts_of
from ._fields import Field, joint_size
from ._logspace import _log_expect, _signed_log_sum
from ._sampled import SAMPLES, Sampled, at, floor, refuse_reading, sampled_mean, sampled_truth
from .probabilistic import SMALL_JOINT, ProbabilisticSemantics, ProbContext

__all__ = ["BLOCK_LIMIT", "COMPONENT_LIMIT", "INFERENCE", "ApproximateSemantics", "Unit", "check_inference",
           "log_all_different"]

#: The inference routes ``GreyBox(..., inference=...)`` accepts.
INFERENCE = ("exact", "approximate")

#: A component whose elimination needs at most this many entries per row is computed
#: whole, exactly (as the exact route computes it); a larger one is split.
COMPONENT_LIMIT = FACTOR_LIMIT

#: Most joint values (per row) of the variables of one block a component too large for
#: exact inference is split into (a block is eliminated exactly: larger blocks are more
#: accurate and slower).
BLOCK_LIMIT = 1 << 16

#: Most values an ``all_different`` block may range over (its programme has 2**m states).
MAX_UNIT_VALUES = 16

#: A log-probability standing for 0 inside the subset programme (finite: no NaN gradient).
_NEG = -1e30


def check_inference(semantics: str, inference: str) -> None:
    """Refuse an unknown ``inference``, or ``"approximate"`` under a semantics that has no
    approximate route (the fuzzy ones are approximate by construction).

    Examples
    --------
    >>> check_inference("probabilistic", "approximate")
    >>> check_inference("product", "approximate")
    Traceback (most recent call last):
    ...
    greybox.errors.ModelError: inference='approximate' applies to semantics='probabilistic' \
only (the fuzzy semantics 'product' has one inference route); got semantics='product'
    """
    if inference not in INFERENCE:
        raise ModelError(f"unknown inference {inference!r}; expected 'exact' (default) or "
                         "'approximate' (semantics='probabilistic' past its table limit)")
    if inference == "approximate" and semantics != "probabilistic":
        raise ModelError(f"inference='approximate' applies to semantics='probabilistic' "
                         f"only (the fuzzy semantics {semantics!r} has one inference route); "
                         f"got semantics={semantics!r}")


class Unit:
    """``all_different`` over the finite variables ``scope`` (distinct names) as one
    opaque part of a factored product; :attr:`fields` are its pairwise ``!=`` fields, made
    by ``make_fields()`` only where it cannot be one block (a hard constraint touches its
    variables, or a comparison reads it)."""

    __slots__ = ("scope", "_make", "_fields")
    #: not a table: never multiplied into another part
    opaque = True

    def __init__(self, scope: tuple[str, ...], make_fields):
        self.scope, self._make, self._fields = scope, make_fields, None

    @property
    def fields(self) -> tuple:
        if self._fields is None:
            self._fields = tuple(self._make())
        return self._fields


def _differ(a) -> bool:
    return isinstance(a, A.Compare) and a.op == "!=" and isinstance(a.left, A.Var) \
        and isinstance(a.right, A.Var)


def _clique_at(args, i: int) -> tuple[str, ...] | None:
    """The variables of the grounded ``all_different`` starting at ``args[i]`` (``a != b``
    over every pair of distinct variables, in the order grounding writes them), else
    None."""
    if not _differ(args[i]):
        return None
    first, j = args[i].left.name, i
    while j < len(args) and _differ(args[j]) and args[j].left.name == first:
        j += 1
    names = (first, *(a.right.name for a in args[i:j]))
    pairs = list(itertools.combinations(names, 2))
    if len(names) < 3 or len(set(names)) < len(names) or i + len(pairs) > len(args):
        return None
    if all(_differ(a) and (a.left.name, a.right.name) == p
           for a, p in zip(args[i:i + len(pairs)], pairs)):
        return names
    return None


def _units(args) -> list:
    """A conjunction's operands as runs: ``(names, indices)`` for each ``all_different``
    among them, ``(None, [i])`` for each other operand."""
    out, i = [], 0
    while i < len(args):
        names = _clique_at(args, i)
        k = len(names) * (len(names) - 1) // 2 if names else 1
        out.append((names, list(range(i, i + k))))
        i += k
    return out


def _plain(x):
    """``x`` with each :class:`Unit` replaced by its pairwise fields."""
    if not isinstance(x, Factored) or not any(
            isinstance(p, Unit) for _, parts in x.terms for p in parts):
        return x
    terms = tuple((c, tuple(f for p in parts for f in (
        p.fields if isinstance(p, Unit) else (p,)))) for c, parts in x.terms)
    return Factored(terms, x.node)


class ApproxContext(ProbContext):
    """One pass of the approximate route: the exact context, with ``all_different`` kept
    as :class:`Unit` parts and factored formulas' probabilities by :func:`log_truth`."""

    def __init__(self, model, batch):
        super().__init__(model, batch)
        self.graph.samples = model.samples      # worlds per Monte Carlo block

    def field(self, e, env):
        if isinstance(e, A.Not):
            x = self.field(e.operand, env)
            return Sampled(e, [x]) if isinstance(x, Sampled) else negation(x, e)
        return super().field(e, env)

    def _connective(self, e, env):
        runs = None if self.hard or not isinstance(e, A.And) else _units(e.args)
        if not runs or all(names is None for names, _ in runs):
            args = [self.field(a, env) for a in
                    (e.args if isinstance(e, (A.And, A.Or)) else (e.left, e.right))]
            small = all(isinstance(a, Field) for a in args) and \
                joint_size(args, self.sizes) <= SMALL_JOINT
            return _join(e, args, self.sizes, factored=not small)
        # a unit whose variables another (non-unit) operand reads stays pairwise: its
        # exact joint with that operand is what the rest of the route computes
        read = closure(self.kb, {n for names, idx in runs if names is None
                                 for i in idx for n in A.variables(e.args[i])})
        args = []
        for names, idx in runs:
            if names is not None and not read.intersection(names) and all(
                    type(env[n]) is Field and env[n].scope == (n,) for n in names):
                pairs = [e.args[i] for i in idx]
                unit = Unit(names, lambda pairs=pairs: [self.field(a, env) for a in pairs])
                args.append(Factored(((1.0, (unit,)),), e))
            else:
                args.extend(self.field(e.args[i], env) for i in idx)
        return _join(e, args, self.sizes, factored=True) if len(args) > 1 else args[0]

    def _table(self, x):
        if isinstance(x, Sampled):
            refuse_reading(x)
        return materialize(_plain(x), self.sizes, self.const) if isinstance(x, Factored) \
            else x

    def parts_of(self, x) -> list:
        if isinstance(x, Sampled):
            refuse_reading(x)
        return parts_of(_plain(x), self.sizes, self.const)

    def expectation(self, f):
        if isinstance(f, Sampled):
            return sampled_truth(self.graph, f, self.n).float()
        if isinstance(f, Factored):
            return log_truth(self.graph, f, self.n)[0].exp().float()
        if f.scope and _too_wide(self.graph, [f.scope]):
            return sampled_mean(self.graph, f.scope, lambda w, memo: at(f, w),
                                self.n).float()
        return super().expectation(f)

    def log_prob(self, name, target, env):
        x = env[name]
        if isinstance(x, Sampled):
            p = sampled_truth(self.graph, x, self.n)
            yes, no = _at_least(p, self.graph), _at_least(1.0 - p, self.graph)
            return torch.where(target.bool(), yes.log(), no.log()).float()
        if isinstance(x, Factored):
            yes, no = log_truth(self.graph, x, self.n)
            return torch.where(target.bool(), yes, no).float()
        if isinstance(x, Field) and len(x.scope) == 1 and not self._unconditioned(name) \
                and _too_wide(self.graph, [x.scope]):
            v, t = x.scope[0], target.long().view(1, -1)
            return _at_least(sampled_mean(self.graph, x.scope, lambda w, memo: (
                w[v] == t).double(), self.n), self.graph).log().float()
        return super().log_prob(name, target, env)


class ApproximateSemantics(ProbabilisticSemantics):
    """The probabilistic semantics with the approximate route (see the module
    docstring); its traces are ``"probabilistic"`` ones (the same losses)."""

    context_class = ApproxContext


def _join(e, args: list, sizes: dict, *, factored: bool):
    """:func:`connective` of ``args``, or a :class:`Sampled` formula where an operand is
    one or the factored result would expand into more than :data:`MAX_TERMS` products."""
    if any(isinstance(a, Sampled) for a in args) or (
            factored and _products(e, args) > MAX_TERMS):
        return Sampled(e, args)
    return connective(e, args, sizes, factored=factored)


def _products(e, args: list) -> int:
    """How many products the factored connective ``e`` of ``args`` expands into."""
    n = [len(a.terms) if isinstance(a, Factored) else 1 for a in args]
    neg = [k + 1 if isinstance(a, Factored) else 1 for k, a in zip(n, args)]
    if isinstance(e, A.And):
        return math.prod(n)
    if isinstance(e, A.Or):
        return 1 + math.prod(neg)
    if isinstance(e, A.Implies):
        return 1 + n[0] * neg[1]
    return math.prod(n) + math.prod(neg)


def _at_least(p: torch.Tensor, graph=None) -> torch.Tensor:
    """``p`` held at least :func:`floor` (of the graph's samples) in value, its gradient
    kept."""
    return p + (floor(getattr(graph, "samples", SAMPLES)) - p).clamp(min=0.0).detach()


def _too_wide(graph, scopes: list) -> bool:
    """Whether eliminating the parts over ``scopes`` with the factors they depend on needs
    more than :data:`COMPONENT_LIMIT` entries per row (then the query is sampled)."""
    cache = kb_cached(graph.kb, "probabilistic/approx-width", lambda kb: {})
    key = tuple(tuple(s) for s in scopes)
    found = cache.get(key)
    if found is None:
        found = cache[key] = _width(graph, scopes)
    return found > COMPONENT_LIMIT


def log_truth(graph, x: Factored, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate log P(x) and log P(not x) per row (float64, ``n`` rows): each product
    of ``x`` by :func:`_log_product`, the products added as the exact route adds them."""
    items = [(c, _log_product(graph, parts, x) if parts else
              torch.zeros(1, dtype=torch.float64, device=graph.device))
             for c, parts in x.terms]
    yes = _signed_log_sum(items).clamp(max=0.0)
    no = _signed_log_sum([(1.0, torch.zeros_like(yes))] + [(-c, a) for c, a in items])
    return yes.expand(n), no.expand(n)


def _log_product(graph, parts, x: Factored) -> torch.Tensor:
    """log E[prod(parts)], approximately: the sum of its blocks' exact log-expectations
    (the ``all_different`` units over independent neural variables in one programme)."""
    total = torch.zeros(1, dtype=torch.float64, device=graph.device)
    fields, units = [], []
    for p in parts:
        if isinstance(p, Unit) and all(v in graph.logits and len(graph.closure((v,))) == 1
                                       for v in p.scope):
            units.append(p)
        else:
            fields.extend(p.fields if isinstance(p, Unit) else (p,))
    if units:
        total = total + _log_units(graph, units)
    for block in _blocks(graph, fields):
        try:
            total = total + _log_expect(graph, block, x)
        except ModelError:
            if not _too_wide(graph, [f.scope for f in block]):
                raise
            # too wide to eliminate: a Monte Carlo block
            p = sampled_truth(graph, Factored(((1.0, tuple(block)),), x.node), None)
            total = total + _at_least(p, graph).log()
    return total


def _log_units(graph, units: list) -> torch.Tensor:
    """The sum of the log-probabilities of ``units`` (rows), those of the same size and
    values in one programme."""
    groups: dict = {}
    for u in units:
        vals = [graph.vals[v] for v in u.scope]
        union = tuple(sorted({float(x) for t in vals for x in t.tolist()}))
        groups.setdefault((len(u.scope), union), []).append(u)
    total = torch.zeros(1, dtype=torch.float64, device=graph.device)
    for (k, union), members in groups.items():
        spread = torch.stack(torch.broadcast_tensors(*[
            _spread(graph.neural_logp(v, torch.float64), graph.vals[v], union)
            for u in members for v in u.scope]), 1)           # (rows, units * k, m)
        spread = spread.reshape(spread.shape[0], len(members), k, len(union))
        total = total + _subset_programme(spread.flatten(0, 1), len(union)).reshape(
            -1, len(members)).sum(1)
    return total


def _spread(logp: torch.Tensor, vals: torch.Tensor, union: tuple) -> torch.Tensor:
    """A log-distribution over ``vals`` as one over the values ``union`` (``_NEG`` for
    the values it does not have)."""
    where = {x: j for j, x in enumerate(union)}
    out = torch.full((logp.shape[0], len(union)), _NEG, dtype=torch.float64,
                     device=logp.device)
    out[:, [where[float(x)] for x in vals.tolist()]] = logp.double()
    return out


def _layers(m: int, k: int) -> list:
    """For each step ``i < k`` of the subset programme over ``m`` values: the subsets of
    ``i + 1`` values (as positions in the step's list), and for each, the position of
    each subset one value smaller in the previous step's list and that value."""
    key = (m, k)
    found = _LAYERS.get(key)
    if found is None:
        by_size = [[s for s in range(1 << m) if bin(s).count("1") == i] for i in range(k + 1)]
        at = [{s: j for j, s in enumerate(layer)} for layer in by_size]
        found = []
        for i in range(k):
            prev, vals = [], []
            for s in by_size[i + 1]:
                bits = [b for b in range(m) if s >> b & 1]
                prev.append([at[i][s ^ (1 << b)] for b in bits])
                vals.append(bits)
            found.append((torch.as_tensor(prev), torch.as_tensor(vals)))
        _LAYERS[key] = found
    return found


_LAYERS: dict = {}


def _subset_programme(spread: torch.Tensor, m: int) -> torch.Tensor:
    """log P(all differ) per row of ``spread`` (rows, k, m): k independent variables'
    log-distributions over m values, summed over the subsets of values used so far."""
    rows, k, _ = spread.shape
    if k > m:
        return torch.full((rows,), -torch.inf, dtype=torch.float64, device=spread.device)
    f = torch.zeros((rows, 1), dtype=torch.float64, device=spread.device)
    for i, (prev, vals) in enumerate(_layers(m, k)):
        prev, vals = prev.to(spread.device), vals.to(spread.device)
        f = torch.logsumexp(f[:, prev] + spread[:, i][:, vals], dim=2)
    out = torch.logsumexp(f, dim=1)
    return out.masked_fill(out < _NEG / 2, -torch.inf)


def log_all_different(logps: list, values: list) -> torch.Tensor:
    """log P(the variables all differ), each variable independent with log-distribution
    ``logps[i]`` (rows, K_i) over its values ``values[i]``; exact, by a programme over the
    subsets of the values used so far (``2**m`` states for ``m`` values in all).

    Examples
    --------
    >>> import torch
    >>> u = torch.full((1, 3), 1 / 3).log()
    >>> v = torch.tensor([0.0, 1.0, 2.0])
    >>> round(log_all_different([u, u, u], [v, v, v]).exp().item(), 6)  # 3! / 3**3
    0.222222
    """
    union = tuple(sorted({float(x) for v in values for x in v.tolist()}))
    if len(union) > MAX_UNIT_VALUES:
        raise ModelError(f"all_different over {len(logps)} variables with {len(union)} "
                         f"values in all: the approximate route sums it over the subsets of "
                         f"at most {MAX_UNIT_VALUES} values")
    spread = torch.stack(torch.broadcast_tensors(*[
        _spread(lp, v, union) for lp, v in zip(logps, values)]), 1)
    return _subset_programme(spread, len(union))


def _blocks(graph, fields: list) -> list[list]:
    """``fields`` split into blocks (lists of fields): the components that share no
    variable or factor, each split greedily into consecutive runs whose elimination fits
    :data:`BLOCK_LIMIT` (cached per structure)."""
    if not fields:
        return []
    key = (tuple(f.scope for f in fields), COMPONENT_LIMIT, BLOCK_LIMIT)
    cache = kb_cached(graph.kb, "probabilistic/approx-blocks", lambda kb: {})
    found = cache.get(key)
    if found is None:
        found = cache[key] = _split(graph, fields)
    return [[fields[i] for i in block] for block in found]


def _width(graph, scopes: list) -> int:
    """Largest table (entries per row) eliminating the parts over ``scopes`` needs,
    with the factors they depend on."""
    scope = tuple(dict.fromkeys(v for s in scopes for v in s))
    all_scopes = tuple(s for s, _ in graph.closure(scope)) + tuple(scopes)
    return largest_table(all_scopes, graph.sizes, elimination_order(all_scopes, ()))


def _split(graph, fields: list) -> list[list[int]]:
    """The blocks of :func:`_blocks`, as lists of indices into ``fields``."""
    parent: dict[str, str] = {}

    def find(v):
        while parent.setdefault(v, v) != v:
            v = parent[v]
        return v

    for f in fields:
        linked = [v for s, _ in graph.closure(f.scope) for v in s] + list(f.scope)
        for v in linked[1:]:
            parent[find(v)] = find(linked[0])
    groups: dict[str, list[int]] = {}
    loose: list[list[int]] = []
    for i, f in enumerate(fields):
        if f.scope:
            groups.setdefault(find(f.scope[0]), []).append(i)
        else:
            loose.append([i])
    blocks = []
    for group in groups.values():
        if _width(graph, [fields[i].scope for i in group]) <= COMPONENT_LIMIT:
            blocks.append(group)     # the component fits: exact, as the exact route does
            continue
        current: list[int] = []
        held: set[str] = set()
        for i in group:
            mine = {v for s, _ in graph.closure(fields[i].scope) for v in s}
            mine.update(fields[i].scope)
            if current and math.prod(graph.sizes[v] for v in held | mine) > BLOCK_LIMIT:
                blocks.append(current)
                current, held = [], set()
            current.append(i)
            held |= mine
        blocks.append(current)
    return blocks + loose
