"""The semantics a grey-box model can run under (``GreyBox(..., semantics=NAME)``).

Each semantics lives in its own module on the small base class :class:`Semantics`:

- ``"probabilistic"``: exact inference over finite-domain variables (``probabilistic.py``
  walks the formulas; the algebra it asks lives in ``_fields`` (tables), ``_factored``
  (formulas kept as products of their parts), ``_logspace`` (their probability),
  ``_graph`` (the factor graph and its queries) and ``_digits`` (sums kept digit by digit));
- ``"product"``, ``"godel"``, ``"lukasiewicz"``: fuzzy t-norm semantics;
- ``"crisp"``: plain booleans, identical to :func:`greybox.rules.evaluate`.

``APPROXIMATE`` holds the approximate route of a semantics that has one
(``GreyBox(..., inference="approximate")``: ``"probabilistic"``, in ``_approx.py``).

Examples
--------
>>> from greybox.semantics import REGISTRY
>>> sorted(REGISTRY)
['crisp', 'godel', 'lukasiewicz', 'probabilistic', 'product']
"""

from ._approx import ApproximateSemantics
from ._base import Semantics
from ._compiled import Compiled
from .crisp import CrispSemantics
from .godel import GodelSemantics
from .lukasiewicz import LukasiewiczSemantics
from .probabilistic import ProbabilisticSemantics
from .product import ProductSemantics

__all__ = [
    "APPROXIMATE",
    "REGISTRY",
    "Compiled",
    "CrispSemantics",
    "GodelSemantics",
    "LukasiewiczSemantics",
    "ProbabilisticSemantics",
    "ProductSemantics",
    "Semantics",
]

#: Semantics by name.
REGISTRY: dict[str, Semantics] = {
    s.name: s
    for s in (ProbabilisticSemantics(), ProductSemantics(), GodelSemantics(),
              LukasiewiczSemantics(), CrispSemantics())
}

#: The approximate route of a semantics, by name (``inference="approximate"``).
APPROXIMATE: dict[str, Semantics] = {"probabilistic": ApproximateSemantics()}
