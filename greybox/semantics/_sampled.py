"""Monte Carlo blocks of the approximate route: a formula too large for exact inference
(even split into blocks) estimated by sampling the worlds of the variables it reads.

A formula the approximate route cannot compute exactly -- a connective of factored
formulas that would expand into more than :data:`~._factored.MAX_TERMS` products (the
unrolled layers of a recursive ``define`` over 6 nodes or more), or a query or block whose
elimination needs more than :data:`~._approx.COMPONENT_LIMIT` entries per row -- is kept as
a lazy tree (:class:`Sampled`) and estimated per row:

* ``GreyBox(..., samples=...)`` worlds (default :data:`SAMPLES`) are drawn (a ``torch.Generator`` seeded with :data:`SEED` at
  each query, so ``predict_proba`` is reproducible): each neural variable from its
  network's distribution (independent given the row), each variable a define or a
  decision introduces from its conditional factor given the values drawn for its parents
  (a define's is 0/1: it is computed);
* the formula is evaluated crisply in every world, vectorised over the worlds, and its
  probability is the mean, whose standard error is ``sqrt(P (1 - P) / SAMPLES)`` (at most
  0.016 at P = 1/2);
* the gradient is IndeCateR's (De Smet et al., 2023), Rao-Blackwellised per variable:
  ``d P = sum_v sum_k d p_v(k) * mean f(v = k, the rest drawn)``, unbiased and of low
  variance for bool and finite neural variables (exact for a formula of one variable).
  Its cost is one more evaluation of the formula per value of each neural variable read
  (72 for 36 bool edges), paid only where a gradient is asked for; the score function
  with a baseline would cost nothing more but its variance grows with the number of
  variables, which here is the quantity that made exact inference refuse.

A log-probability of an estimate below :data:`floor` (``1 / (2 * SAMPLES)``, half a
world: an estimate of 0 says only that P is small) is taken at the floor, with the
estimate's gradient kept. Hard constraints are not conditioned on by sampling: a sampled
formula that depends on one is refused.
"""

from __future__ import annotations

import math

import torch

from greybox.errors import ModelError
from greybox.rules import ast as A

from ._factored import Factored, describe
from ._fields import Field

__all__ = ["SAMPLES", "SEED", "Sampled", "check_samples", "floor", "sampled_mean"]

#: Worlds drawn per sampled query by default (``GreyBox(..., samples=...)``; the standard
#: error is at most 0.5 / sqrt(samples)).
SAMPLES = 1000

#: Most values per tensor while the worlds are evaluated (worlds are drawn in chunks).
CHUNK = 1 << 21

#: The seed of the generator each sampled query starts from (reproducible predictions).
SEED = 0


def check_samples(samples) -> int:
    """``samples`` (worlds per Monte Carlo estimate) as an int, or refused.

    Examples
    --------
    >>> check_samples(2000)
    2000
    >>> check_samples(0)
    Traceback (most recent call last):
    ...
    greybox.errors.ModelError: samples must be a positive integer (worlds drawn per \
Monte Carlo estimate of inference='approximate'); got 0
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ModelError("samples must be a positive integer (worlds drawn per Monte Carlo "
                         f"estimate of inference='approximate'); got {samples!r}")
    return samples


def floor(samples: int = SAMPLES) -> float:
    """The least probability a sampled estimate is taken at inside a logarithm: half a
    world, ``1 / (2 * samples)``.

    Examples
    --------
    >>> floor()
    0.0005
    """
    return 0.5 / samples


class Sampled(Factored):
    """A bool formula ``op`` (``and``, ``or``, ``not``, ``->``, ``<->``) of ``args``
    (fields, factored formulas, sampled formulas), kept lazy: its probability is
    estimated by sampling (:func:`sampled_mean`). ``node`` is the formula, for messages."""

    __slots__ = ("op", "args")

    def __init__(self, node, args: list):
        super().__init__((), node)
        self.op, self.args = type(node), tuple(args)

    def variables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for a in self.args for v in (
            a.scope if isinstance(a, Field) else a.variables())))


def refuse_reading(x: Sampled):
    raise ModelError(
        f"{describe(x)} is estimated by sampling (too large for exact inference, "
        "inference='approximate'); and, or, not, -> and <-> may read it, comparisons, "
        "arithmetic and hard constraints cannot: use a fuzzy semantics "
        "(semantics='product' or 'lukasiewicz')")


def at(f: Field, world: dict) -> torch.Tensor:
    """Field ``f``'s value in each world (``world``: value indices (M, B) per variable)."""
    t = f.t
    if not f.scope:
        return t.reshape(1, -1)
    idx = [world[v] for v in f.scope]
    if t.shape[0] == 1:
        return t[0][tuple(idx)]
    rows = torch.arange(t.shape[0], device=t.device).view(1, -1)
    return t[(rows, *idx)]


def evaluate(x, world: dict, memo: dict) -> torch.Tensor:
    """Formula ``x``'s truth in each world, (M, B) (shared sub-formulas once: ``memo``)."""
    found = memo.get(id(x))
    if found is not None:
        return found
    if isinstance(x, Sampled):
        a = [evaluate(y, world, memo) for y in x.args]
        if x.op is A.And:
            out = math.prod(a[1:], start=a[0])
        elif x.op is A.Or:
            out = 1.0 - math.prod([1.0 - y for y in a[1:]], start=1.0 - a[0])
        elif x.op is A.Not:
            out = 1.0 - a[0]
        elif x.op is A.Implies:
            out = 1.0 - a[0] * (1.0 - a[1])
        else:
            out = a[0] * a[1] + (1.0 - a[0]) * (1.0 - a[1])
    elif isinstance(x, Factored):
        out = 0.0
        for c, parts in x.terms:
            term = torch.ones((), dtype=torch.float64)
            for p in parts:
                for f in (p.fields if getattr(p, "opaque", False) else (p,)):
                    term = term * at(f, world)
            out = out + c * term
    else:
        out = at(x, world)
    memo[id(x)] = out
    return out


def _producers(graph, scope, x) -> tuple[dict, list]:
    """The variables the query on ``scope`` depends on, each with the factor that
    introduces it (in the order to draw them) and the neural ones; a factor that
    introduces nothing (a hard constraint) is refused."""
    made: dict = {}
    for f in graph.closure(tuple(scope)):
        if id(f) in graph.neural_ids:
            made[graph.neural_ids[id(f)]] = f
        elif id(f) in graph.conditional:
            out = graph.introduces.get(id(f), f[0][-1:])
            if len(out) != 1:
                raise ModelError(f"a factor introducing {', '.join(out)} at once cannot "
                                 "be sampled (inference='approximate')")
            made[out[0]] = f
        else:
            raise ModelError(
                f"{describe(x) if isinstance(x, Factored) else 'a query'} is estimated by "
                f"sampling (too large for exact inference) and depends on a hard "
                f"constraint over {', '.join(f[0][:4])}: sampling does not condition on "
                "hard constraints; make it a soft constraint (with a weight), or use a "
                "fuzzy semantics (semantics='product' or 'lukasiewicz')")
    return made, [v for v in made if v in graph.logits]


def _draw(probs: torch.Tensor, gen) -> torch.Tensor:
    """One value index per (world, row) from ``probs`` (M, B, K)."""
    u = torch.rand(probs.shape[:2], generator=gen, device=probs.device, dtype=torch.float64)
    cum = probs.double().cumsum(-1)
    cum = cum / cum[..., -1:].clamp(min=1e-300)
    return (u.unsqueeze(-1) > cum).sum(-1).clamp(max=probs.shape[-1] - 1)


def _complete(graph, made: dict, world: dict, gen) -> dict:
    """``world`` (the neural variables' values) with every other variable of ``made``
    drawn from its factor given its parents' values (a define's: computed)."""
    def value(v):
        got = world.get(v)
        if got is not None:
            return got
        scope, t = made[v]
        if v not in scope:
            raise ModelError(f"variable {v!r}: no factor over it to sample it from")
        parents = [u for u in scope if u != v]
        idx = [value(u) for u in parents]
        t = t.movedim(1 + scope.index(v), -1)
        if parents:
            rows = torch.arange(t.shape[0], device=t.device).view(1, -1) \
                if t.shape[0] > 1 else torch.zeros((1, 1), dtype=torch.long, device=t.device)
            probs = t[(rows, *idx)]
        else:
            probs = t.unsqueeze(0)
        world[v] = _draw(probs, gen)
        return world[v]

    for v in made:
        value(v)
    return world


def sampled_mean(graph, scope, fn, n: int | None, *, subject=None) -> torch.Tensor:
    """E[fn(world)] per row (``n`` rows; None: as many as the graph's tensors), estimated
    from ``graph.samples`` worlds (``GreyBox(..., samples=...)``, default :data:`SAMPLES`)
    of the variables the query on ``scope`` depends on;
    ``fn(world, memo)`` is the query's value in each world, (M, B). Differentiable:
    IndeCateR's estimator for the neural variables' distributions (see the module
    docstring), the pathwise one for ``fn``'s own tensors. The worlds are drawn in chunks
    of at most :data:`CHUNK` values per tensor (a large batch does not hold them all at
    once). ``subject`` is the formula, for messages."""
    made, neural = _producers(graph, scope, subject)
    samples = getattr(graph, "samples", SAMPLES)
    gen = torch.Generator(device=graph.device).manual_seed(SEED)
    probs = {v: graph.distribution(v) for v in neural}
    grads = [v for v in neural if torch.is_grad_enabled() and probs[v].requires_grad]
    rows = max([p.shape[0] for p in probs.values()] + [1])
    widest = max([probs[v].shape[1] for v in grads] + [1])
    step = max(1, min(samples, CHUNK // (rows * widest)))
    est, surrogate = 0.0, 0.0
    for start in range(0, samples, step):
        w = min(step, samples - start)
        base = {v: _draw(p.unsqueeze(0).expand(w, -1, -1), gen) for v, p in probs.items()}
        est = est + fn(_complete(graph, made, dict(base), gen), {}).double().sum(0)
        for v in grads:
            surrogate = surrogate + _indecater(graph, made, fn, base, v, probs[v], gen)
    est = est / samples
    if grads:
        surrogate = surrogate / samples
        est = est + surrogate - surrogate.detach()
    return est if n is None else est.expand(n)


def _indecater(graph, made, fn, base: dict, v: str, p: torch.Tensor, gen) -> torch.Tensor:
    """``sum_k p_v(k) * sum f(v = k, the rest as in ``base``)`` per row: its gradient (the
    sums held constant) is IndeCateR's for variable ``v`` over ``base``'s worlds."""
    k = p.shape[1]
    w = next(iter(base.values())).shape[0]
    tiled = {u: (torch.arange(k, device=p.device).view(k, 1, 1).expand(k, w, p.shape[0])
                 if u == v else x.expand(k, -1, -1)).reshape(k * w, -1)
             for u, x in base.items()}
    with torch.no_grad():
        f = fn(_complete(graph, made, tiled, gen), {}).double().reshape(k, w, -1).sum(1)
    return (p.double() * f.T).sum(1)


def sampled_truth(graph, x: Sampled | Factored, n: int | None) -> torch.Tensor:
    """P(x) per row (float64), estimated by :func:`sampled_mean`."""
    return sampled_mean(graph, x.variables(), lambda w, memo: evaluate(x, w, memo), n,
                        subject=x)
