"""Debugging failing predictions (``greybox.explain.debug``), apart from explanations.

:class:`Debugger` finds failures, where they concentrate and who is to blame, and tries
rule edits (:class:`SetWeight`, :class:`SetThreshold`, :class:`Disable`, :class:`Remove`,
:class:`AddStatement`, :class:`Replace`) on the whole data set with a fixed/broken diff;
:func:`candidate_rules` and :func:`residual_rules` propose new rules (learned from the
failures, or from what a residual network adds) as edits to try; :class:`EntityDebugger`
does it entity by entity for a relational model's family of
outputs; :class:`DebugServer` serves it as a local web page (``greybox debug``). Everything here
is also importable from :mod:`greybox.explain`.

Examples
--------
>>> from greybox.explain.debug import Debugger, SetWeight
>>> SetWeight("big", 0.5).describe()
'set the weight of big to 0.5'
"""

from ._debugger import Blame, Debugger, WhatIf
from ._edits import (
    EDIT_FIELDS,
    AddStatement,
    Disable,
    DropResidual,
    Edit,
    Remove,
    Replace,
    SetThreshold,
    SetWeight,
    parse_edit,
)
from ._entities import EntityDebugger, EntityWhatIf
from ._measure import measure
from ._propose import candidate_rules, residual_rules
from ._server import DebugServer
from ._suggestions import Suggestion, Suggestions

__all__ = [
    "EDIT_FIELDS",
    "AddStatement",
    "Blame",
    "DebugServer",
    "Debugger",
    "Disable",
    "DropResidual",
    "Edit",
    "EntityDebugger",
    "EntityWhatIf",
    "Remove",
    "Replace",
    "SetThreshold",
    "SetWeight",
    "Suggestion",
    "Suggestions",
    "WhatIf",
    "candidate_rules",
    "measure",
    "parse_edit",
    "residual_rules",
]
