"""Formal reasons, counterfactuals and verification (``greybox.explain.formal``).

Each is a statement about the function :meth:`GreyBox.predict` computes, checkable by
running it. The algorithms (:mod:`._reason`, :mod:`._counterfactual`, :mod:`._verify`) are
written once over a small backend protocol (:class:`Backend`, :class:`Problem`:
``differs``, ``closest``, ``refute``); the backends are in :data:`BACKENDS`: ``"z3"`` and
``"milp"`` (HiGHS), sharing one encoding of ReLU networks (:func:`propagate`).

Examples
--------
>>> from greybox.explain.formal import BACKENDS
>>> sorted(BACKENDS)
['milp', 'z3']
"""

from ._backend import BACKENDS, Backend, Problem
from ._counterfactual import counterfactual, counterfactuals
from ._networks import count_relus, layers_of, propagate
from ._reason import reason
from ._results import Counterfactual, Counterfactuals, Reason, Verification
from ._verify import verify

__all__ = [
    "BACKENDS",
    "Backend",
    "Counterfactual",
    "Counterfactuals",
    "Problem",
    "Reason",
    "Verification",
    "count_relus",
    "counterfactual",
    "counterfactuals",
    "layers_of",
    "propagate",
    "reason",
    "verify",
]
