"""The rule language and symbolic engine of greybox (``greybox.rules``).

Parse rule text into a validated :class:`KnowledgeBase`, print it back, evaluate it crisply
on data, and analyse or prove things about it with Z3. This package imports neither torch
nor the model code.

Examples
--------
>>> import greybox.rules as gr
>>> kb = gr.parse('''
... input age: int 0..120
... input income: real[0, 1000000]
... output approve: bool
... rule poor weight 2.0: income < ~20000 -> not approve
... rule earns: income >= 30000 -> approve
... constraint minors: age < 18 -> not approve
... ''')
>>> gr.entails(kb, "age < 18 -> not approve").holds
True
>>> gr.evaluate(kb, {"age": [30, 15], "income": [50000, 50000]}).decisions["approve"].tolist()
[True, False]

``__all__`` is what a user writes with: parsing and printing (:func:`parse`, :func:`load`,
:func:`to_text`, :func:`parse_formula`, :class:`KnowledgeBase` with its :class:`Variable`
and :class:`FamilyInfo` items), the Python :class:`Builder` and its helpers, rules learned
from data (:func:`induce`), crisp evaluation (:func:`evaluate` → :class:`Evaluation`; its
``proof`` → :class:`Proof`), Z3 (:func:`check` → :class:`CheckReport` of :class:`Finding`,
:func:`entails` → :class:`Entailment`, :func:`to_z3`, :class:`Z3Encoding`, :data:`Z3_LOCK`), the errors, and
the syntax tree :mod:`greybox.rules.ast` (its nodes: ``gr.ast.Var``, ``gr.ast.And``, ...).
What the model and the explanations need beyond that lives in :mod:`greybox.rules.engine`,
internal to greybox. The names that left this namespace (the syntax-tree nodes and the
engine's internals) still resolve here, with a ``DeprecationWarning`` naming their home.
"""

import sys
import warnings

from greybox.errors import DataError, GreyboxError, RuleError, RuleSyntaxError, SolverError

from . import _ast, ast, engine
from ._boost import induce
from ._builder import Builder, Term, count, iff, implies, learnable, maximum, minimum
from ._check import CheckReport, Finding, check
from ._entails import Entailment, entails
from ._evaluate import Evaluation, evaluate
from ._ground import FamilyInfo
from ._kb import KnowledgeBase, load, parse, parse_formula, to_text
from ._proofs import Proof
from ._validate import Variable
from ._z3 import Z3_LOCK, Z3Encoding, to_z3

__all__ = [
    # parsing, printing, the knowledge base
    "parse",
    "load",
    "to_text",
    "parse_formula",
    "KnowledgeBase",
    "Variable",
    "FamilyInfo",
    # the Python builder
    "Builder",
    "Term",
    "implies",
    "iff",
    "count",
    "learnable",
    "maximum",
    "minimum",
    # rules learned from data
    "induce",
    # crisp evaluation
    "evaluate",
    "Evaluation",
    "Proof",
    # Z3
    "check",
    "CheckReport",
    "Finding",
    "entails",
    "Entailment",
    "to_z3",
    "Z3Encoding",
    "Z3_LOCK",
    # errors
    "GreyboxError",
    "RuleSyntaxError",
    "RuleError",
    "DataError",
    "SolverError",
    # the syntax tree: nodes, traversal, domains
    "ast",
]

#: names that were once exported here, by their home now (the syntax-tree nodes and the
#: engine's internals, from the one list each of those modules keeps)
_MOVED = {**{name: "greybox.rules.engine" for name in engine.__all__},
          **{name: "greybox.rules.ast" for name in _ast.__all__}}


def __getattr__(name: str):
    """The names that left ``greybox.rules``: still there, with a ``DeprecationWarning``."""
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'greybox.rules' has no attribute {name!r}")
    # ``from greybox.rules import Var`` asks twice: the import system's hasattr (is it a
    # submodule to import?), then the import statement: only the second one warns
    if sys._getframe(1).f_globals.get("__name__") != "importlib._bootstrap":
        why = "is internal to greybox" if home.endswith("engine") else "moved"
        warnings.warn(f"greybox.rules.{name} {why}: use {home}.{name}",
                      DeprecationWarning, stacklevel=2)
    return getattr(engine if home.endswith("engine") else ast, name)
