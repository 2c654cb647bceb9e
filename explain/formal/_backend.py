"""The solver backends' registry, and which level and backend to use.

A backend (:mod:`._protocol`) compiles the model's decision function for one row into a :class:`Problem`
that answers three questions -- the only ones :func:`reason`, :func:`counterfactual` and
:func:`verify` ask:

- ``differs(fixed)``: with the facts in ``fixed`` held, can the decision differ? (a
  completion of the others that changes it, or None when none does; ``forces(fixed)``
  asks the same without the completion);
- ``closest(minimize, immutable, spreads)``: the closest facts whose decision differs;
- ``refute(formula)`` (on the backend itself): a row on which the property fails.

Backends live in :data:`BACKENDS`: ``"z3"`` (exact rationals, every level and model) and
``"milp"`` (HiGHS through ``scipy.optimize.milp``; the input level, table inputs).
"""

from __future__ import annotations

import numpy as np

from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import plan

from ._networks import count_relus
from ._protocol import Backend, Problem
from ._row import row_position
from .milp import MilpBackend
from .z3 import Z3Backend

__all__ = ["BACKENDS", "Backend", "Problem", "choose", "resolve_level"]

#: Backends by name.
BACKENDS: dict[str, Backend] = {b.name: b for b in (Z3Backend(), MilpBackend())}


def _networks(model) -> list:
    kb = model.kb
    nets = [model.network(kb.variables[n].network) for n in kb.neural]
    if model.residual is not None:
        nets += list(model.residual.values())
    return nets


def resolve_level(level: str, model, max_relus: int) -> str:
    """``"auto"``: the input level where every network of the model (neural concepts and
    residual) is a Linear/ReLU network over table inputs within ``max_relus`` -- then
    results speak about the whole model, inputs to decision -- the concept level
    otherwise (and for rules alone, where both are the same)."""
    if level not in ("auto", "concept", "input"):
        raise ModelError(f"level must be 'auto', 'concept' or 'input', got {level!r}")
    from greybox.rules.engine import constrains_networks as repair_needed

    kb = model.kb
    if repair_needed(kb):
        # predict repairs network values that break a hard constraint (the most probable
        # values that satisfy it); the input-level encodings do not model that search
        if level == "input":
            raise ModelError("a hard constraint reads a neural concept, and predict repairs "
                             "network values that break it; input-level reasoning does not "
                             "model that repair: use level='concept'")
        return "concept"
    if level != "auto":
        return level
    for name in kb.neural:
        if any(isinstance(kb.variables[a].type, A.TensorType) for a in kb.variables[name].args):
            return "concept"
    nets = _networks(model)
    if not nets:
        return "concept"
    try:
        relus = sum(count_relus(n) for n in nets)
    except ModelError:
        return "concept"
    return "input" if relus <= max_relus else "concept"


def milp_applies(model) -> bool:
    """Whether the MILP encoding covers the model: table inputs (bounded, or bounded by
    the data the model was calibrated on), one decision per component, at most 256
    values."""
    kb = model.kb
    if any(A.big_int(v.type) for v in kb.variables.values()):
        return False   # (HiGHS computes in float64)
    if model.residual is not None and any(kb.variables[n].optional for n in kb.inputs):
        return False   # (a residual reads a missing input's placeholder: Z3 encodes that)
    for name in kb.inputs:
        t = kb.variables[name].type
        if isinstance(t, A.TensorType):
            return False
        if isinstance(t, A.RealType):
            lo, hi, _ = model.input_range(name)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                return False
    for comp in plan(kb).components:
        if len(comp.variables) != 1 or comp.dynamic:
            return False
        if comp.variables[0] in kb.additive:   # a number: the MILP decides classes
            return False
        t = kb.variables[comp.variables[0]].type
        if not isinstance(t, A.BoolType) and A.domain(t).size > 256:
            return False
    return True


def choose(backend: str, level: str, model, *, optimise: bool = False) -> Backend:
    """``"auto"``: HiGHS at the input level wherever the MILP encoding applies (Z3's
    optimiser is occasionally very slow on L1 objectives through ReLUs), Z3 otherwise
    and for rules alone."""
    if backend not in ("auto", *BACKENDS):
        raise ModelError(f"backend must be 'auto', {', '.join(repr(b) for b in BACKENDS)}, "
                         f"got {backend!r}")
    if backend != "auto":
        return BACKENDS[backend]
    if level != "input" or not milp_applies(model):
        return BACKENDS["z3"]
    try:
        relus = sum(count_relus(n) for n in _networks(model))
    except ModelError:
        return BACKENDS["z3"]
    if optimise or relus > 16 or model.residual is not None:
        return BACKENDS["milp"]
    return BACKENDS["z3"]


def _problem(model, batch, row, output, level, max_relus, backend, timeout, *,
             optimise=False):
    output = output or model.kb.outputs[0]
    if output not in model.kb.variables or not model.kb.variables[output].output:
        raise ModelError(f"{output!r} is not an output (outputs: {', '.join(model.kb.outputs)})")
    batch = model.batch(batch)
    if batch.n == 0:
        raise ModelError("no rows to explain")
    row = row_position(batch.index, row)
    level = resolve_level(level, model, max_relus)
    b = choose(backend, level, model, optimise=optimise)
    p = b.problem(model, batch, int(row), output, level=level, max_relus=max_relus,
                  timeout=timeout)
    return p, batch, output, row


def _additive(model, output) -> bool:
    kb = model.kb
    return (output or (kb.outputs[0] if kb.outputs else None)) in kb.additive
