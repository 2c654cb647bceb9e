"""greybox: neuro-symbolic grey-box models.

PyTorch networks coupled with symbolic rules and the Z3 solver, so every decision can be
traced to rules, neural concepts and parameters, verified, explained and debugged.

``import greybox`` is light: the rule engine (:mod:`greybox.rules`) needs neither torch nor
captum; the model and explanation parts load on first use.

Examples
--------
>>> import greybox as gb
>>> kb = gb.rules.parse("input age: int 0..120  output approve: bool  "
...                     "rule adult: age >= 18 -> approve")
>>> gb.rules.entails(kb, "age < 18 -> not approve").holds
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import errors
from .errors import DataError, GreyboxError, RuleError, RuleSyntaxError, SolverError

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "GreyboxError",
    "RuleError",
    "RuleSyntaxError",
    "SolverError",
    "errors",
    "explain",
    "rules",
]

_SUBMODULES = {"rules", "explain"}

if TYPE_CHECKING:  # pragma: no cover
    from . import explain, rules


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"greybox.{name}")
    raise AttributeError(f"module 'greybox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
