"""Bool formulas kept as sums of products of small fields, never multiplied out.

A connective whose joint table would be large (the conjunction of a ``forall`` or of
``all_different`` units over many variables) is kept as a product of its parts, each over
few variables (:class:`Factored`); a negation, disjunction, implication or equivalence of
such a product is a short sum of products, by inclusion-exclusion. This module is that
term algebra (:func:`negation`, :func:`connective`), the reading of a
factored formula as one table where it fits (:func:`materialize`, :func:`parts_of`) and the
refusals that name the formula where it does not. Its probability is
:mod:`greybox.semantics._logspace`'s.
"""

from __future__ import annotations

import itertools
import math
import re

import torch

from greybox._linear import FACTOR_LIMIT
from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import expr_to_text

from ._fields import Field, binop, expand, joint_size

__all__ = ["MAX_TERMS", "Factored", "connective", "describe", "materialize", "negation",
           "parts_of"]

#: Most products a factored formula may expand to (a negation or disjunction of a
#: factored conjunction adds them by inclusion-exclusion).
MAX_TERMS = 64


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


def _terms(x) -> tuple:
    """``x`` (a field or a factored formula) as a sum of products."""
    return x.terms if isinstance(x, Factored) else ((1.0, (x,)),)


def _one_minus(items) -> tuple:
    """The terms of ``1 - sum(items)``."""
    return ((1.0, ()),) + tuple((-c, parts) for c, parts in items)


def negation(x, node):
    """``not x``: ``1 - x``, a field or a factored formula as ``x`` is."""
    if isinstance(x, Factored):
        return Factored(_one_minus(x.terms), node)
    return Field(x.scope, 1.0 - x.t)


def connective(e, args: list, sizes: dict[str, int], *, factored: bool) -> Field | Factored:
    """The connective ``e`` (``and``, ``or``, ``->``, ``<->``) of its operands ``args``:
    multiplied out into one field (``args`` all fields), or kept ``factored``: a sum of
    products of their parts, by inclusion-exclusion; refused beyond :data:`MAX_TERMS`
    products."""
    if not factored:
        if isinstance(e, A.Implies):
            return binop(*args, lambda a, b: 1.0 - a + a * b, sizes)
        if isinstance(e, A.Iff):
            return binop(*args, lambda a, b: 1.0 - a - b + 2.0 * a * b, sizes)
        fn = torch.mul if isinstance(e, A.And) else (lambda a, b: a + b - a * b)
        acc = args[0]
        for arg in args[1:]:
            acc = binop(acc, arg, fn, sizes)
        return acc
    if isinstance(e, A.And):
        out = _product([_terms(a) for a in args], e, sizes)
    elif isinstance(e, A.Or):      # 1 - prod(1 - a)
        out = _one_minus(_product([_terms(negation(a, e)) for a in args], e, sizes))
    elif isinstance(e, A.Implies):  # 1 - a (1 - b)
        out = _one_minus(_product([_terms(args[0]), _terms(negation(args[1], e))], e, sizes))
    else:                           # a b + (1 - a)(1 - b)
        out = _product([_terms(a) for a in args], e, sizes) + _product(
            [_terms(negation(a, e)) for a in args], e, sizes)
    if len(out) > MAX_TERMS:
        _refuse_terms(e, len(out))
    return Factored(out, e)


def _product(factors: list, node, sizes: dict[str, int]) -> tuple:
    """The terms of the product of sums of terms ``factors``, multiplied out (each
    product's parts merged once); refused beyond :data:`MAX_TERMS` products."""
    count = math.prod(len(t) for t in factors)
    if count > MAX_TERMS:
        _refuse_terms(node, count)
    return tuple((math.prod(c for c, _ in combo),
                  _merge([f for _, parts in combo for f in parts], sizes))
                 for combo in itertools.product(*factors))


def _merge(parts, sizes: dict[str, int]) -> tuple:
    """The product of ``parts`` as few fields: each part multiplied into a kept one
    whose scope holds its own (a duplicate, a constant), never into a larger table."""
    kept: list[list] = []          # [scope as a set, field]
    for f in sorted(parts, key=lambda f: -len(f.scope)):
        mine = set(f.scope)
        for k in kept:   # (an opaque part, the approximate route's, is never merged)
            if mine <= k[0] and not getattr(f, "opaque", False) and \
                    not getattr(k[1], "opaque", False):
                k[1] = Field(k[1].scope, k[1].t * expand(f, k[1].scope, sizes))
                break
        else:
            kept.append([mine, f])
    return tuple(f for _, f in kept)


def parts_of(x, sizes: dict[str, int], const) -> list:
    """The fields whose product is ``x`` (a hard constraint's factors); a factored
    formula that is not one product (a negated or disjoined conjunction) is refused.
    ``const(c)`` makes the constant field ``c``."""
    if isinstance(x, Field):
        return [x]
    if len(x.terms) == 1 and x.terms[0][0] == 1.0:
        return list(x.terms[0][1])
    if joint_size([f for _, parts in x.terms for f in parts], sizes) <= FACTOR_LIMIT:
        return [materialize(x, sizes, const)]
    raise ModelError(
        f"{describe(x)} is a hard constraint that is not a conjunction of small "
        "parts (a negation or disjunction of a large conjunction): exact inference "
        "cannot condition on it; make it a soft constraint (with a weight), or use a "
        "fuzzy semantics (semantics='product' or 'lukasiewicz')")


def describe(x: Factored) -> str:
    """``x`` for a message: its formula, location and variables."""
    names = x.variables()
    shown = ", ".join(names[:6]) + (f", ... ({len(names)} variables)"
                                     if len(names) > 6 else "")
    # a recursion's hidden layers (`reach(a, c)@2`) by the define the user wrote
    text = re.sub(r"@\d+`", "`", expr_to_text(x.node))
    text = text if len(text) <= 70 else text[:67] + "..."
    where = f" at {x.node.span}" if x.node.span is not None else ""
    return f"the formula{where} ({text})" + (f" over {shown}" if names else "")


def materialize(x: Factored, sizes: dict[str, int], const) -> Field:
    """``x`` as one table over all its variables, where that table fits the budget
    (a comparison or a hard constraint reads it so); else refused, naming it.
    ``const(c)`` makes the constant field ``c``."""
    fields = [f for _, parts in x.terms for f in parts]
    if joint_size(fields, sizes) > FACTOR_LIMIT:
        _refuse_reading(x)
    total = None
    for c, parts in x.terms:
        term = const(c)
        for f in parts:
            term = binop(term, f, torch.mul, sizes)
        total = term if total is None else binop(total, term, torch.add, sizes)
    return total


def _refuse_reading(x: Factored):
    raise ModelError(
        f"{describe(x)} is kept as a product of its parts by exact inference (its "
        "joint table is too large to build); and, or, not, -> and <-> may read it, "
        "comparisons and arithmetic cannot: use a fuzzy semantics (semantics='product' "
        "or 'lukasiewicz')")


def _refuse_terms(node, count: int):
    """Refuse formula ``node``, which would expand into ``count`` products."""
    raise ModelError(
        f"{describe(Factored((), node))}: exact inference would expand it into "
        f"{count:,} products of its parts (negations and disjunctions of large "
        f"conjunctions, more than {MAX_TERMS}): ask for the approximate route "
        "(inference='approximate': a Monte Carlo estimate of it, docs/semantics.md), or use "
        "a fuzzy semantics (semantics='product' or 'lukasiewicz'), which evaluates it "
        "approximately in time linear in its size")
