"""Goedel (min/max) t-norm: ``a and b = min(a, b)``, ``a or b = max(a, b)``. Idempotent
(``a and a = a``); the gradient flows only to the operand that decides the min or max."""

from __future__ import annotations

from ._tnorm import TNormSemantics

__all__ = ["GodelSemantics"]


class GodelSemantics(TNormSemantics):
    """Godel t-norm semantics (see the module docstring)."""

    name = tnorm = "godel"
