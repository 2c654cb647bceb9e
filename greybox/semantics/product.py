"""Product t-norm: ``a and b = a*b``, ``a or b = a + b - a*b``. Smooth everywhere, so
gradients reach every operand; conjunctions of many weak truths shrink towards 0."""

from __future__ import annotations

from ._tnorm import TNormSemantics

__all__ = ["ProductSemantics"]


class ProductSemantics(TNormSemantics):
    """Product t-norm semantics (see the module docstring)."""

    name = tnorm = "product"
