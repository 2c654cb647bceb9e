"""Explanations and debugging of grey-box decisions (``greybox.explain``).

:func:`explain` traces each decision to rules (exact contributions), concepts (values and
the assignments behind derived ones), inputs (Captum attributions) and parameters
(integrated gradients over the weights, thresholds and biases themselves); the
:class:`Explanation` renders as text, tables, HTML, plots and graphs. :func:`pushes` says how
each grounding of a soft constraint or rule pushed a concept in training. :func:`reason`,
:func:`counterfactual` and :func:`verify` are formal: proved with Z3 (or HiGHS).
:class:`Debugger` finds failures, where they concentrate and who is to blame, and tries
rule edits on the whole data set; ``greybox debug`` serves it as a local web page.

Examples
--------
>>> import greybox as gb
>>> model = gb.GreyBox('''
... input income: real[0, 100000]
... output approve: bool
... rule earns weight 2: income > ~30000 -> approve
... rule poor: income < 10000 -> not approve
... ''', semantics="product")
>>> ex = gb.explain.explain(model, {"income": [50000.0, 5000.0]})
>>> print(ex.row_text(1).splitlines()[0])
row 1: approve = False (p=0.73)
"""

from ._explain import explain
from ._explanation import Explanation
from ._methods import METHODS
from ._partitions import evaluate_partitions, explain_partitions, predict_partitions
from ._pushes import Pushes, pushes
from .debug import (
    AddStatement,
    Blame,
    Debugger,
    Disable,
    DropResidual,
    Edit,
    EntityDebugger,
    EntityWhatIf,
    Remove,
    Replace,
    SetThreshold,
    SetWeight,
    Suggestion,
    Suggestions,
    WhatIf,
)
from .formal import (
    Counterfactual,
    Counterfactuals,
    Reason,
    Verification,
    counterfactual,
    counterfactuals,
    reason,
    verify,
)

__all__ = [
    "METHODS",
    "AddStatement",
    "Blame",
    "Counterfactual",
    "Counterfactuals",
    "Debugger",
    "Disable",
    "DropResidual",
    "Edit",
    "EntityDebugger",
    "EntityWhatIf",
    "Explanation",
    "Pushes",
    "Reason",
    "Remove",
    "Replace",
    "SetThreshold",
    "SetWeight",
    "Suggestion",
    "Suggestions",
    "Verification",
    "WhatIf",
    "counterfactual",
    "counterfactuals",
    "evaluate_partitions",
    "explain",
    "explain_partitions",
    "predict_partitions",
    "pushes",
    "reason",
    "verify",
]
