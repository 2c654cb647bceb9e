"""Exact inference on factor graphs by variable elimination with ``torch.einsum``.

A factor is ``(scope, tensor)``: ``scope`` names the variables, the tensor has the batch
first (size B, or 1 when the factor is the same for every row) and one dimension per
variable. Elimination follows a greedy min-fill order computed with networkx once per
graph structure and cached; every step is one ``torch.einsum`` followed by a rescaling
(kept as a per-row log scale) so long chains neither underflow nor overflow.
:func:`log_contract` is the same elimination over log-weights, in float64, for queries
whose answer or whose intermediate tables span more than float32 holds (a conjunction
over many confident networks); :func:`largest_table` sizes an elimination before it runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import networkx as nx
import torch

__all__ = ["Factor", "contract", "elimination_order", "largest_table", "log_contract", "mpe"]

Factor = tuple[tuple[str, ...], torch.Tensor]

_TINY = 1e-30


@functools.lru_cache(maxsize=4096)
def elimination_order(scopes: tuple[tuple[str, ...], ...], keep: tuple[str, ...]) -> tuple[str, ...]:
    """A greedy min-fill elimination order for the variables of ``scopes`` not in ``keep``.

    Ties go to the smaller degree, then to the earlier variable, so the order is
    deterministic.
    """
    g = nx.Graph()
    first: dict[str, int] = {}
    for scope in scopes:
        for v in scope:
            first.setdefault(v, len(first))
        g.add_nodes_from(scope)
        g.add_edges_from((a, b) for i, a in enumerate(scope) for b in scope[i + 1:])
    todo = [v for v in g.nodes if v not in keep]
    order = []
    while todo:
        def cost(v):
            nbrs = list(g.neighbors(v))
            fill = sum(1 for i, a in enumerate(nbrs) for b in nbrs[i + 1:]
                       if not g.has_edge(a, b))
            return fill, len(nbrs), first[v]

        v = min(todo, key=cost)
        nbrs = list(g.neighbors(v))
        g.add_edges_from((a, b) for i, a in enumerate(nbrs) for b in nbrs[i + 1:])
        g.remove_node(v)
        todo.remove(v)
        order.append(v)
    return tuple(order)


def largest_table(scopes, sizes: dict[str, int], order) -> int:
    """Entries per row of the largest table that eliminating ``order`` builds (the table
    of a step before its variable is summed out), computed from the scopes alone, so an
    elimination too large for memory is refused before anything is allocated.

    Examples
    --------
    >>> from greybox._factors import largest_table
    >>> chain = (("a", "b"), ("b", "c"), ("c", "d"))
    >>> largest_table(chain, dict.fromkeys("abcd", 10), ("a", "b", "c", "d"))
    100
    >>> largest_table(chain, dict.fromkeys("abcd", 10), ("b", "c", "a", "d"))
    1000
    """
    pool = [set(s) for s in scopes]
    largest = max((math.prod(sizes[v] for v in s) for s in pool), default=1)
    for v in order:
        with_v = [s for s in pool if v in s]
        pool = [s for s in pool if v not in s]
        union = set().union(*with_v)
        largest = max(largest, math.prod(sizes[u] for u in union))
        pool.append(union - {v})
    return largest


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY"


@functools.lru_cache(maxsize=4096)
def _equation(scopes: tuple, batched: tuple, out_scope: tuple) -> str | None:
    """The einsum equation (batch letter ``Z``; factors shared by all rows have none), or
    None when there are more variables than letters."""
    ids: dict[str, str] = {}
    for scope in (*scopes, out_scope):
        for v in scope:
            if v not in ids:
                if len(ids) == len(_LETTERS):
                    return None
                ids[v] = _LETTERS[len(ids)]
    terms = [("Z" if b else "") + "".join(ids[v] for v in scope)
             for scope, b in zip(scopes, batched)]
    return ",".join(terms) + "->Z" + "".join(ids[v] for v in out_scope)


def _product(parts: Sequence[Factor], out_scope: tuple[str, ...]) -> torch.Tensor:
    """einsum of ``parts`` onto ``out_scope`` (summing every other variable)."""
    scopes = tuple(s for s, _ in parts)
    batched = tuple(t.shape[0] != 1 for _, t in parts)
    if not any(batched):
        batched = (True,) + batched[1:]
    eq = _equation(scopes, batched, tuple(out_scope))
    if eq is not None:
        return torch.einsum(eq, *[t if b else t[0] for (_, t), b in zip(parts, batched)])
    ids: dict[str, int] = {}
    args: list = []
    for scope, t in parts:
        args.append(t)
        args.append([0] + [ids.setdefault(v, len(ids) + 1) for v in scope])
    args.append([0] + [ids.setdefault(v, len(ids) + 1) for v in out_scope])
    return torch.einsum(*args)


def _rescale(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if t.dim() == 1:
        return t, torch.zeros_like(t)
    s = t.detach().flatten(1).amax(dim=1).clamp_min(_TINY)
    return t / s.view(-1, *([1] * (t.dim() - 1))), torch.log(s)


#: Graphs of at most this many factors, whose joint table has at most SMALL_TABLE entries
#: per row, are contracted in one einsum call.
SMALL_FACTORS = 5
SMALL_TABLE = 1 << 16


def _small(factors, keep) -> bool:
    if len(factors) > SMALL_FACTORS:
        return False
    sizes: dict[str, int] = {}
    for scope, t in factors:
        for v, k in zip(scope, t.shape[1:]):
            sizes[v] = k
    total = 1
    for k in sizes.values():
        total *= k
    return total <= SMALL_TABLE


def _eliminate(factors: Sequence[Factor], order, step) -> list:
    """Variable elimination, the one loop of this module: for each variable ``v`` of
    ``order``, the factors over it are replaced by one factor over their other variables,
    ``(scope, step(v, with_v, scope))`` (``with_v``: those factors). Returns the factors
    left (over the variables not in ``order``)."""
    pool = list(factors)
    for v in order:
        with_v = [f for f in pool if v in f[0]]
        pool = [f for f in pool if v not in f[0]]
        scope = tuple(u for u in dict.fromkeys(u for s, _ in with_v for u in s) if u != v)
        pool.append((scope, step(v, with_v, scope)))
    return pool


def _total(scales: list) -> torch.Tensor:
    """The sum of the per-row log scales ``scales``, added in order."""
    total = scales[0]
    for s in scales[1:]:
        total = total + s
    return total


def contract(factors: Sequence[Factor], keep: Sequence[str] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum out every variable but ``keep``.

    Returns ``(table, log_scale)``: the unnormalised table over ``keep`` (batch first) is
    ``table * exp(log_scale)``. With ``keep=()`` the table has shape (B,), and
    ``log(table) + log_scale`` is the log partition function per row (``-inf`` where every
    assignment has weight 0).

    Examples
    --------
    >>> import torch
    >>> from greybox._factors import contract
    >>> p = torch.tensor([[0.25, 0.75]])                  # P(x), one row
    >>> both = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])   # y == x
    >>> t, s = contract([(("x",), p), (("x", "y"), both)], keep=("y",))
    >>> (t * s.exp()[:, None]).tolist()
    [[0.25, 0.75]]
    """
    keep = tuple(keep)
    scopes = tuple(s for s, _ in factors)
    absent = set(keep) - {v for s in scopes for v in s}
    if absent:
        raise ValueError(f"cannot keep {sorted(absent)}: no factor mentions them")
    if _small(factors, keep):
        # a handful of small factors: one einsum, no intermediate rescaling needed
        t = _product(factors, keep)
        return t, torch.zeros(t.shape[0], dtype=t.dtype, device=t.device)
    scales: list[torch.Tensor] = []

    def sum_out(v, with_v, scope):
        t, s = _rescale(_product(with_v, scope))
        scales.append(s)
        return t

    pool = _eliminate(factors, elimination_order(scopes, keep), sum_out)
    if not pool:
        raise ValueError("nothing to contract")
    t = _product(pool, keep)
    t, s = _rescale(t) if keep else (t, torch.zeros_like(t))
    return t, _total(scales + [s])


def _log_product(parts: Sequence[Factor], out_scope: tuple[str, ...]) -> torch.Tensor:
    """``log`` of the einsum of the exponentiated log-factors ``parts`` onto ``out_scope``:
    each factor is shifted by its largest finite entry per row before ``exp`` (float64),
    and the shifts are added back after the ``log``."""
    shifted, shift = [], None
    for scope, t in parts:
        m = t.detach().flatten(1).amax(dim=1) if t.dim() > 1 else t.detach()
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        shifted.append((scope, torch.exp(t - m.view(-1, *([1] * (t.dim() - 1))))))
        shift = m if shift is None else shift + m
    out = _product(shifted, out_scope)
    tiny = torch.finfo(out.dtype).tiny     # log 0 = -inf with a gradient of 0, never NaN
    out = torch.log(out.clamp_min(tiny)).masked_fill(out <= 0, -torch.inf)
    return out + shift.view(-1, *([1] * len(out_scope)))


def log_contract(factors: Sequence[Factor], keep: Sequence[str] = ()) -> torch.Tensor:
    """Sum out every variable but ``keep``, in log space: the factors' tensors are
    log-weights (``-inf`` for weight 0), batch first as in :func:`contract`; returns the
    log table over ``keep`` (float64, batch first; shape (B,) for ``keep=()``: the log
    partition function per row).

    Tables move between steps as logs and every step exponentiates its factors shifted by
    their own maxima, so neither the answer nor any entry an intermediate table holds
    underflows, however small (a product of 16 confident digit distributions).

    Examples
    --------
    >>> import torch
    >>> from greybox._factors import log_contract
    >>> p = torch.tensor([[-400.0, 0.0]])                 # log P: P(0) = e^-400
    >>> zero = torch.tensor([[0.0, -torch.inf]])          # evidence: the value is 0
    >>> log_contract([(("x",), p), (("y",), p), (("x",), zero), (("y",), zero)]).tolist()
    [-800.0]
    >>> same = torch.log(torch.eye(2)).unsqueeze(0)       # y == x
    >>> log_contract([(("x",), p), (("x", "y"), same)], keep=("y",)).tolist()
    [[-400.0, 0.0]]
    """
    keep = tuple(keep)
    pool = [(s, t.double()) for s, t in factors]
    pool = _eliminate(pool, elimination_order(tuple(s for s, _ in pool), keep),
                      lambda v, with_v, scope: _log_product(with_v, scope))
    if not pool:
        raise ValueError("nothing to contract")
    return _log_product(pool, keep)


def mpe(factors: Sequence[Factor], batch: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The most probable joint assignment (max-product elimination with back-tracking).

    Returns the value index of every variable, shape (B,), and the log weight of the
    assignment per row (``-inf`` where every assignment has weight 0).
    """
    scales: list[torch.Tensor] = []
    trail = []

    def max_out(v, with_v, scope):
        full = tuple(dict.fromkeys(u for s, _ in with_v for u in s))
        best, arg = _product(with_v, full).max(dim=1 + full.index(v))
        trail.append((v, scope, arg))
        t, s = _rescale(best)
        scales.append(s)
        return t

    pool = _eliminate(factors, elimination_order(tuple(s for s, _ in factors), ()), max_out)
    total = None
    for _, t in pool:  # one number per row each
        total = t if total is None else total * t
    log_w = torch.log(total) + (_total(scales) if scales else 0.0)
    rows = torch.arange(batch, device=log_w.device)
    values: dict[str, torch.Tensor] = {}
    for v, scope, arg in reversed(trail):
        arg = arg.expand(batch, *arg.shape[1:])
        values[v] = arg[(rows, *[values[u] for u in scope])]
    return values, log_w.expand(batch)
