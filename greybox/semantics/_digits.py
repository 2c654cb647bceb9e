"""Sums kept digit by digit: a positional integer define (:class:`Virtual`) is never
enumerated; its digits and last carry are variables of the factor graph
(:class:`greybox._linear.Arithmetic`, kind ``"positional"``), and its distribution, most
probable value and log-probability are read from them.
"""

from __future__ import annotations

import numpy as np
import torch

from greybox._bigint import BigLabels
from greybox._factors import contract, mpe
from greybox.rules import ast as A

__all__ = ["Virtual", "codes", "distribution", "most_probable"]


class Virtual:
    """A sum represented digit by digit (never enumerated)."""

    def __init__(self, name, arith):
        self.name, self.arith = name, arith


def codes(target: torch.Tensor, offset: int) -> torch.Tensor:
    """Value indices (long) as codes: ``target + offset`` (no operation for 0); big
    integers' labels (:class:`~greybox._bigint.BigLabels`) shifted exactly."""
    if not isinstance(target, torch.Tensor):
        return target.shifted(offset)
    target = target if target.dtype == torch.long else target.long()
    return target + offset if offset else target


def distribution(graph, x: Virtual, type_: A.IntType, n: int) -> torch.Tensor:
    """The distribution (n, size) of ``x`` over the values of its type, from the joint
    table of its digits and carry under ``graph`` (:class:`~._graph.FactorGraph`, which
    holds its factors)."""
    a, device = x.arith, graph.device
    keep = (*a.digits, a.carry)
    t, _ = contract(graph.closure(keep), keep=keep)
    value = torch.zeros(1, device=device, dtype=torch.long)
    for k, d in enumerate(keep):
        place = a.base ** k
        v = torch.arange(graph.sizes[d], device=device) * place
        value = (value.unsqueeze(-1) + v).reshape(-1)
    index = value + a.offset - A.domain(type_).offset
    flat = t.reshape(t.shape[0], -1)
    ok = (index >= 0) & (index < type_.size)
    out = torch.zeros(flat.shape[0], type_.size, device=device)
    out = out.index_add(1, index[ok], flat[:, ok])
    return (out / out.sum(1, keepdim=True)).expand(n, -1)


def most_probable(graph, x: Virtual, type_: A.IntType, n: int):
    """The value index of ``x`` in the most probable joint assignment of ``graph`` per row
    (long (n,), or :class:`~greybox._bigint.BigLabels` beyond int64)."""
    a = x.arith
    assignment, _ = mpe(graph.closure((*a.digits, a.carry), fold=False), n)
    if A.domain(type_).big:    # beyond int64: Python ints, exactly
        places = [a.base ** k for k in range(len(a.digits) + 1)]
        cols = [assignment[d].expand(n).tolist() for d in (*a.digits, a.carry)]
        shift = a.offset - A.domain(type_).offset
        return BigLabels(np.array([sum(p * int(c[r]) for p, c in zip(places, cols))
                                   + shift for r in range(n)], dtype=object))
    value = torch.zeros(n, dtype=torch.long, device=graph.device)
    for k, d in enumerate((*a.digits, a.carry)):
        value = value + assignment[d] * a.base ** k
    return (value + a.offset - A.domain(type_).offset).clamp(0, type_.size - 1)
