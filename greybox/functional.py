"""The maths of grey-box models as plain functions on tensors.

The modules in :mod:`greybox` stay thin; the t-norms, the smooth comparisons and the
decision layer live here, so they can be used and tested on their own.

Examples
--------
>>> import torch
>>> from greybox import functional as F
>>> a, b = torch.tensor([0.2, 0.9]), torch.tensor([0.5, 0.5])
>>> [round(x, 2) for x in F.t_and(a, b, "product").tolist()]
[0.1, 0.45]
>>> [round(x, 2) for x in F.t_and(a, b, "godel").tolist()]
[0.2, 0.5]
>>> [round(x, 2) for x in F.t_or(a, b, "lukasiewicz").tolist()]
[0.7, 1.0]
"""

from __future__ import annotations

import torch

__all__ = [
    "arith",
    "arith_distribution",
    "input_for",
    "TNORMS",
    "poisson_binomial",
    "probability_of",
    "safe_log",
    "smooth_compare",
    "soft_violation",
    "t_and",
    "t_iff",
    "t_implies",
    "t_not",
    "t_or",
]

#: The fuzzy semantics by name.
TNORMS = ("product", "godel", "lukasiewicz")


def t_not(a: torch.Tensor) -> torch.Tensor:
    """Standard negation ``1 - a`` (the same for every t-norm)."""
    return 1.0 - a


def t_and(a: torch.Tensor, b: torch.Tensor, tnorm: str) -> torch.Tensor:
    """Conjunction of truth degrees under ``tnorm`` (product, godel or lukasiewicz)."""
    if tnorm == "product":
        return a * b
    if tnorm == "godel":
        return torch.minimum(a, b)
    if tnorm == "lukasiewicz":
        return torch.clamp(a + b - 1.0, min=0.0)
    raise ValueError(f"unknown t-norm {tnorm!r}; expected one of {TNORMS}")


def t_or(a: torch.Tensor, b: torch.Tensor, tnorm: str) -> torch.Tensor:
    """Disjunction: the t-conorm dual to ``tnorm``."""
    if tnorm == "product":
        return a + b - a * b
    if tnorm == "godel":
        return torch.maximum(a, b)
    if tnorm == "lukasiewicz":
        return torch.clamp(a + b, max=1.0)
    raise ValueError(f"unknown t-norm {tnorm!r}; expected one of {TNORMS}")


def t_implies(a: torch.Tensor, b: torch.Tensor, tnorm: str) -> torch.Tensor:
    """Material implication ``not a or b`` under ``tnorm`` (Reichenbach for product,
    Kleene-Dienes for Goedel, the Lukasiewicz implication for Lukasiewicz)."""
    return t_or(t_not(a), b, tnorm)


def t_iff(a: torch.Tensor, b: torch.Tensor, tnorm: str) -> torch.Tensor:
    """Equivalence: both implications, joined by ``tnorm``."""
    return t_and(t_implies(a, b, tnorm), t_implies(b, a, tnorm), tnorm)


def smooth_compare(op: str, left: torch.Tensor, right: torch.Tensor,
                   temperature: torch.Tensor | float) -> torch.Tensor:
    """Truth degree of ``left OP right`` for real values.

    ``<``/``<=``/``>``/``>=`` are ``sigmoid(margin / temperature)``; ``==`` is
    ``exp(-(difference / temperature)^2)`` and ``!=`` its complement. As the temperature
    goes to 0 they approach the crisp comparison.

    Examples
    --------
    >>> import torch
    >>> from greybox.functional import smooth_compare
    >>> smooth_compare(">", torch.tensor([1.0, 3.0]), torch.tensor(2.0), 0.1).round(decimals=3).tolist()
    [0.0, 1.0]
    """
    if op in ("<", "<="):
        return torch.sigmoid((right - left) / temperature)
    if op in (">", ">="):
        return torch.sigmoid((left - right) / temperature)
    close = torch.exp(-(((left - right) / temperature) ** 2))
    if op == "==":
        return close
    if op == "!=":
        return 1.0 - close
    raise ValueError(f"unknown comparison {op!r}")


def probability_of(dist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per row, the probability of the value with index ``target``: ``dist`` is P(True)
    of a bool (shape (n,), target 0/1) or a distribution (n, K).

    Examples
    --------
    >>> import torch
    >>> from greybox.functional import probability_of
    >>> [round(p, 2) for p in probability_of(torch.tensor([0.9, 0.2]),
    ...                                      torch.tensor([1, 0])).tolist()]
    [0.9, 0.8]
    """
    if dist.dim() == 1:
        return torch.where(target.bool(), dist, 1.0 - dist)
    return dist.gather(-1, target.long().view(-1, 1)).squeeze(-1)


def poisson_binomial(p: torch.Tensor) -> torch.Tensor:
    """The distribution of the number of independent events that happen, given their
    probabilities ``p`` (rows, n): (rows, n + 1), exact (no FFT) and differentiable.

    The product of the polynomials ``1 - p_j + p_j z``, multiplied in pairs level by level
    (each level one grouped convolution): ``O(n^2)`` operations per row, and what autograd
    keeps ``O(n log n)`` per row (a chain of partial sums keeps ``O(n^2)``).

    Examples
    --------
    >>> import torch
    >>> from greybox.functional import poisson_binomial
    >>> poisson_binomial(torch.tensor([[0.5, 0.5, 1.0]], dtype=torch.float64)).tolist()
    [[0.0, 0.25, 0.5, 0.25]]
    """
    rows, n = p.shape
    width = 1 << max(0, (n - 1).bit_length())
    # the last products unfold into about width^2 entries per row while they are made:
    # rows a few at a time beyond 2^23 of them
    chunk = max(1, (1 << 23) // (width * width))
    if rows > chunk:
        return torch.cat([poisson_binomial(p[i:i + chunk]) for i in range(0, rows, chunk)])
    polys = torch.stack([1.0 - p, p], -1)                  # (rows, n, 2)
    if width > n:                                          # padded with "never" events
        pad = torch.zeros(rows, width - n, 2, dtype=p.dtype, device=p.device)
        pad[..., 0] = 1.0
        polys = torch.cat([polys, pad], 1)
    while polys.shape[1] > 1:
        pairs, degree = polys.shape[1] // 2, polys.shape[2]
        a = polys[:, 0::2].reshape(1, rows * pairs, degree)
        b = polys[:, 1::2].flip(-1).reshape(rows * pairs, 1, degree)
        out = torch.nn.functional.conv1d(torch.nn.functional.pad(a, (degree - 1, degree - 1)),
                                         b, groups=rows * pairs)
        polys = out.reshape(rows, pairs, 2 * degree - 1)
    return polys[:, 0, :n + 1]


def soft_violation(truth: torch.Tensor, semantics: str) -> torch.Tensor:
    """How much a soft constraint of truth ``truth`` is violated, per row: ``-log truth``
    under the probabilistic semantics (``truth`` is the probability that it holds, floored
    at 1e-12), ``1 - truth`` under the fuzzy ones. The training loss adds each soft
    constraint's weight times its mean.

    Examples
    --------
    >>> import torch
    >>> t = torch.tensor([1.0, 0.5])
    >>> soft_violation(t, "product").tolist(), soft_violation(t, "probabilistic")[1].item()
    ([0.0, 0.5], 0.6931471824645996)
    """
    if semantics == "probabilistic":
        return -torch.log(truth.clamp_min(1e-12))
    return 1.0 - truth


def safe_log(t: torch.Tensor) -> torch.Tensor:
    """``log(t)`` that is ``-inf`` at 0 without poisoning gradients with NaN (the gradient
    at 0 is 0, so rows or assignments of probability 0 can be masked out downstream)."""
    tiny = torch.finfo(t.dtype).tiny
    return torch.log(t.clamp_min(tiny)).masked_fill(t <= 0, -torch.inf)


def input_for(module, x):
    """``x`` as ``module`` takes it: a floating-point tensor in the dtype of the module's
    first floating-point parameter (float64 arrays meet float32 weights); anything else
    as it is.

    Examples
    --------
    >>> import torch
    >>> from greybox.functional import input_for
    >>> input_for(torch.nn.Linear(2, 1), torch.zeros(1, 2, dtype=torch.float64)).dtype
    torch.float32
    """
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        return x
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    return x if dtype is None or x.dtype == dtype else x.to(dtype)


def arith(op: str, args: list):
    """``//``, ``%``, ``min``, ``max`` or ``abs`` (``op``) on tensors or numbers holding
    integers, with Python's floor semantics (the quotient rounds toward minus infinity,
    the remainder has the divisor's sign), as every backend of the rule language.

    Examples
    --------
    >>> import torch
    >>> from greybox import functional as F
    >>> a = torch.tensor([-7.0, 7.0, -7.0])
    >>> F.arith("//", [a, torch.tensor([2.0, -2.0, -2.0])]).tolist()
    [-4.0, -4.0, 3.0]
    >>> F.arith("%", [a, 2.0]).tolist(), F.arith("max", [a, 0.0, -a]).tolist()
    ([1.0, 1.0, 1.0], [7.0, 7.0, 7.0])
    """
    if not any(isinstance(x, torch.Tensor) for x in args):
        from greybox.rules.engine import apply_arith as apply

        return apply(op, list(args))
    if op == "//":
        a, d = args
        return torch.div(a, d, rounding_mode="floor") if isinstance(a, torch.Tensor) \
            else torch.div(torch.as_tensor(a, dtype=d.dtype, device=d.device), d,
                           rounding_mode="floor")
    if op == "%":
        a, d = args
        return torch.remainder(a, d) if isinstance(a, torch.Tensor) else \
            torch.remainder(torch.as_tensor(a, dtype=d.dtype, device=d.device), d)
    if op == "abs":
        return torch.abs(args[0])
    like = next(x for x in args if isinstance(x, torch.Tensor))
    fn = torch.minimum if op == "min" else torch.maximum
    acc = None
    for x in args:
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=like.dtype,
                                                                   device=like.device)
        acc = x if acc is None else fn(acc, x)
    return acc


def arith_distribution(op: str, dists: list[tuple[torch.Tensor, torch.Tensor]], *,
                       same: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact distribution of ``op`` (``*`` or an :func:`arith` operation) over
    independent integer operands, each ``(probabilities (B or 1, K), values (K,))``:
    ``(probabilities (B', M), values (M,))`` over the distinct results, ascending.
    With ``same=n``, ``op`` over ``n`` copies of the one operand given (``d * d``).

    Examples
    --------
    >>> import torch
    >>> from greybox import functional as F
    >>> p, v = F.arith_distribution("*", [(torch.tensor([[0.5, 0.5]]), torch.tensor([1., 2.])),
    ...                                   (torch.tensor([[0.5, 0.5]]), torch.tensor([1., 2.]))])
    >>> v.tolist(), p.tolist()
    ([1.0, 2.0, 4.0], [[0.25, 0.5, 0.25]])
    """
    probs, values = dists[0]
    if same > 1:
        out = values * values if op == "*" and same == 2 else arith(op, [values] * same)
        values, inverse = torch.unique(out, return_inverse=True)
        return (probs.new_zeros(probs.shape[:-1] + (len(values),)).index_add(-1, inverse, probs),
                values)
    for p, v in dists[1:]:
        joint = (probs.unsqueeze(-1) * p.unsqueeze(-2)).flatten(-2)
        pair = [values.unsqueeze(-1).expand(-1, len(v)).flatten(),
                v.unsqueeze(0).expand(len(values), -1).flatten()]
        out = pair[0] * pair[1] if op == "*" else arith(op, pair)
        values, inverse = torch.unique(out, return_inverse=True)
        probs = joint.new_zeros(joint.shape[:-1] + (len(values),)).index_add(-1, inverse, joint)
    if len(dists) == 1:    # abs (or min/max of one operand)
        out = arith(op, [values])
        values, inverse = torch.unique(out, return_inverse=True)
        probs = probs.new_zeros(probs.shape[:-1] + (len(values),)).index_add(-1, inverse, probs)
    return probs, values
