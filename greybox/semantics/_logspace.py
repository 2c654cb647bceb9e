"""The probability of a factored formula (:class:`~._factored.Factored`), in log space.

Each product of the formula is contracted with the graph's factors (the networks'
distributions, conditioned on the hard constraints) by variable elimination in log space
(:func:`greybox._factors.log_contract`, min-fill order), or summed over its satisfying
assignments when its crisp parts admit few (the 288 valid 4x4 sudoku grids); the products
are added as a signed log-sum, so ``P(not x) = 1 - P(x)`` keeps its digits near 1. Both
routes are exact and differentiable; the largest table is estimated from the structure
first, and a formula beyond the budget is refused, naming it and the approximate route.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from greybox import functional as F
from greybox._batch import kb_cached
from greybox._factors import elimination_order, largest_table, log_contract
from greybox._linear import FACTOR_LIMIT
from greybox.errors import ModelError

from ._factored import Factored, describe

__all__ = ["MAX_MODELS", "check_width", "log_truth"]

#: A factored conjunction whose crisp parts have at most this many satisfying assignments
#: may be summed over them instead of eliminated (whichever is cheaper).
MAX_MODELS = 1 << 16

#: 1 - P below this is not resolved by float64 near P = 1 (its unit roundoff).
_EPS = 2.0 ** -52


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


def log_truth(graph, x: Factored, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log P(x) and log P(not x) per row (float64, ``n`` rows) under ``graph``
    (:class:`~._graph.FactorGraph`), each as a signed sum over the products of ``x``, so
    ``P(not x) = 1 - P(x)`` keeps its digits when P(x) is near 1."""
    items = [(c, _log_expect(graph, parts, x) if parts else
              torch.zeros(1, dtype=torch.float64, device=graph.device))
             for c, parts in x.terms]
    yes = _signed_log_sum(items)
    no = _signed_log_sum([(1.0, torch.zeros_like(yes))] + [(-c, a) for c, a in items])
    return yes.expand(n), no.expand(n)


def _log_factor(graph, factor):
    name = graph.neural_ids.get(id(factor))
    if name is not None:     # from the logits in float64: log(1 - 1e-12) is not 0
        return factor[0], graph.neural_logp(name, torch.float64)
    return factor[0], F.safe_log(factor[1])


def _log_expect(graph, parts, x: Factored) -> torch.Tensor:
    """log E[prod(parts)] under the graph (conditioned on its hard constraints)."""
    scope = tuple(dict.fromkeys(v for f in parts for v in f.scope))
    closure = graph.closure(scope)
    logs = [_log_factor(graph, f) for f in closure]
    log_z = 0.0
    if not all(id(f) in graph.conditional for f in closure):
        log_z = _eliminate(graph, logs, x)
    by_models = _by_models(graph, parts, closure, logs, scope)
    if by_models is not None:
        return by_models - log_z
    return _eliminate(graph, logs + [(f.scope, F.safe_log(f.t)) for f in parts], x) - log_z


def _eliminate(graph, logs, x: Factored) -> torch.Tensor:
    """log of the sum of the product of the log-factors ``logs``, refused before
    anything is allocated when its largest table exceeds the budget."""
    check_width(graph, tuple(s for s, _ in logs), x)
    return log_contract(logs)


def check_width(graph, scopes, x: Factored) -> None:
    """Refuse an elimination of factors over ``scopes`` whose largest table would
    exceed the budget (estimated from the structure, before anything is built)."""
    cache = kb_cached(graph.kb, "probabilistic/largest", lambda kb: {})
    largest = cache.get(scopes)
    if largest is None:
        largest = cache[scopes] = largest_table(
            scopes, graph.sizes, elimination_order(scopes, ()))
    if largest > FACTOR_LIMIT:
        count = f"{largest:,}" if largest < 10 ** 15 else f"about {largest:.1e}"
        raise ModelError(
            f"exact inference of {describe(x)} needs {count} joint values "
            f"per row at the largest step of its elimination, more than exact "
            f"inference holds ({FACTOR_LIMIT:,}): use a fuzzy semantics "
            "(semantics='product' or 'lukasiewicz'), which evaluates it approximately "
            "in time linear in its size, or split it -- a family of constraints "
            "(constraint c(p in s, ...): ...) instead of one forall; or approximate it: "
            "GreyBox(..., inference='approximate') computes its parts exactly and "
            "combines them as if independent")


def _by_models(graph, parts, closure, logs, scope) -> torch.Tensor | None:
    """log E[prod(parts)] as a sum over the assignments the crisp parts allow (those
    the same for every row, 0/1), when the variables' own factors lie within
    ``scope`` and those assignments are few enough to be cheaper than elimination;
    else None. The assignments are enumerated once per structure."""
    here = set(scope)
    if graph.device.type == "meta" or not all(set(f[0]) <= here for f in closure):
        return None       # (tensors without values: the crisp parts cannot be read)
    crisp, rest = [], []
    for f in parts:
        (crisp if f.scope and f.t.shape[0] == 1 else rest).append(f)
    if not crisp:
        return None
    models = _models_of(graph, crisp, logs, parts, scope)
    if models is None:
        return None
    if not len(models):
        return torch.full((1,), -torch.inf, dtype=torch.float64, device=graph.device)
    at = models.to(graph.device)
    total = None
    for s, t in logs + [(f.scope, F.safe_log(f.t)) for f in rest]:
        if not s:
            term = t.double().reshape(-1, 1)
        else:
            term = t.double()[(slice(None), *[at[:, scope.index(v)] for v in s])]
        total = term if total is None else total + term
    return torch.logsumexp(total, dim=1)


def _models_of(graph, crisp, logs, parts, scope) -> torch.Tensor | None:
    """The assignments of ``scope`` the crisp parts ``crisp`` allow (cached per
    structure), or None where they are not all 0/1, too many, or dearer to sum over
    than the elimination of ``logs`` and ``parts``."""
    tables = [(f.scope, f.t[0].detach().cpu().numpy()) for f in crisp]
    scopes = tuple(s for s, _ in logs) + tuple(f.scope for f in parts)
    key = (scope, scopes, tuple((s, t.tobytes()) for s, t in tables))
    cache = kb_cached(graph.kb, "probabilistic/models", lambda kb: {})
    models = cache.get(key, False)
    if models is not False:
        return models
    models = None
    if all(((t == 0) | (t == 1)).all() for _, t in tables):
        models = _models([(s, t > 0) for s, t in tables], scope, graph.sizes, MAX_MODELS)
    if models is not None and len(models) * len(scope) > largest_table(
            scopes, graph.sizes, elimination_order(scopes, ())):
        models = None           # elimination is cheaper
    if models is not None:
        models = torch.as_tensor(models)
    if len(cache) >= 256:      # crisp parts that differ per batch: keep it bounded
        cache.clear()
    cache[key] = models
    return models
