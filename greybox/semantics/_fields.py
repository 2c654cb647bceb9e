"""Tables over the joint values of finite random variables, for exact inference.

A :class:`Field` is a quantity (a value, a truth, a probability) over the joint values of
its ``scope``: a tensor with the batch first (size n, or 1 when it is the same for every
row), then one dimension per variable, in the scope's order. Operations on two fields
align them over the union of their scopes (:func:`binop`), refusing before anything is
allocated a table larger than exact inference holds.
"""

from __future__ import annotations

import math

import torch

from greybox._linear import FACTOR_LIMIT
from greybox.errors import ModelError

__all__ = ["Field", "align", "binop", "expand", "joint_size"]


class Field:
    """A quantity over the joint values of ``scope`` (random variables): a tensor with
    the batch first (size n or 1), then one dimension per variable."""

    __slots__ = ("scope", "t")

    def __init__(self, scope: tuple[str, ...], t: torch.Tensor):
        self.scope, self.t = scope, t


def expand(f: Field, scope: tuple[str, ...], sizes: dict[str, int]) -> torch.Tensor:
    """``f``'s tensor viewed over ``scope`` (which holds ``f.scope``), broadcastable:
    its variables permuted into ``scope``'s order, a dimension of 1 for each other."""
    if f.scope == scope:
        return f.t
    present = [v for v in scope if v in f.scope]
    t = f.t.permute(0, *[1 + f.scope.index(v) for v in present])
    shape = [t.shape[0]] + [sizes[v] if v in f.scope else 1 for v in scope]
    return t.reshape(shape)


def align(a: Field, b: Field, sizes: dict[str, int]):
    """``a`` and ``b`` over the union of their scopes (``a``'s variables first), and it."""
    scope = a.scope + tuple(v for v in b.scope if v not in a.scope)
    return expand(a, scope, sizes), expand(b, scope, sizes), scope


def binop(a: Field, b: Field, fn, sizes: dict[str, int]) -> Field:
    """``fn(a, b)`` over the union of their scopes; refused (:class:`ModelError`) before
    it is allocated where it has more than ``FACTOR_LIMIT`` joint values per row."""
    ta, tb, scope = align(a, b, sizes)
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


def joint_size(fields, sizes: dict[str, int]) -> int:
    """How many joint values the variables of ``fields`` have together."""
    scope = dict.fromkeys(v for f in fields for v in f.scope)
    return math.prod(sizes[v] for v in scope)
