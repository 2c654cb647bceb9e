"""Rule-base analyses run by :func:`greybox.rules.check`, one per module.

``REGISTRY`` lists them in the order they run (later ones may read earlier findings).
"""

from ._base import Analysis, Context, Finding
from .contradictions import Contradictions
from .dead import DeadRules
from .define_domain import DefineDomain
from .infeasible import InfeasibleInputs
from .opposite import OppositeRules
from .subsumed import SubsumedRules
from .too_large import TooLarge
from .uncovered import Uncovered

REGISTRY: tuple[Analysis, ...] = (
    TooLarge(),
    Contradictions(),
    InfeasibleInputs(),
    DefineDomain(),
    DeadRules(),
    SubsumedRules(),
    OppositeRules(),
    Uncovered(),
)

__all__ = ["REGISTRY", "Analysis", "Context", "Finding"]
