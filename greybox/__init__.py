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
from .errors import (
    CheckpointError,
    DataError,
    GreyboxError,
    ModelError,
    RuleError,
    RuleSyntaxError,
    SaveError,
    SolverError,
)

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "CheckpointError",
    "DataError",
    "GreyBox",
    "GreyBoxClassifier",
    "GreyBoxRegressor",
    "GreyboxError",
    "History",
    "ModelError",
    "RuleError",
    "RuleSyntaxError",
    "SaveError",
    "SolverError",
    "Trace",
    "errors",
    "explain",
    "fit",
    "functional",
    "load",
    "rules",
    "semantics",
    "write_atomic",
]

_SUBMODULES = {"rules", "explain", "semantics", "functional"}
#: public names of the model part, loaded (with torch) on first use
_LAZY = {
    "GreyBox": "greybox._model",
    "Batch": "greybox._batch",
    "write_atomic": "greybox._io",
    "Trace": "greybox._trace",
    "History": "greybox._train",
    "fit": "greybox._train",
    "load": "greybox._io",
    "GreyBoxClassifier": "greybox._sklearn",
    "GreyBoxRegressor": "greybox._sklearn",
}

if TYPE_CHECKING:  # pragma: no cover
    from . import explain, functional, rules, semantics
    from ._batch import Batch
    from ._io import load, write_atomic
    from ._model import GreyBox
    from ._sklearn import GreyBoxClassifier, GreyBoxRegressor
    from ._trace import Trace
    from ._train import History, fit


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"greybox.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'greybox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_LAZY))
