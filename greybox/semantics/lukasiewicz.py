"""Lukasiewicz t-norm: ``a and b = max(0, a + b - 1)``, ``a or b = min(1, a + b)``. Its
implication is the residuum ``min(1, 1 - a + b)``; linear pieces, so gradients do not
vanish until a bound is hit."""

from __future__ import annotations

from ._tnorm import TNormSemantics

__all__ = ["LukasiewiczSemantics"]


class LukasiewiczSemantics(TNormSemantics):
    """Lukasiewicz t-norm semantics (see the module docstring)."""

    name = tnorm = "lukasiewicz"
