"""Crisp semantics: plain booleans, for inference and auditing.

The model's decision function (:mod:`greybox._decide`): the networks' most probable
values (repaired where they violate a hard constraint) are handed to
:func:`greybox.rules.evaluate` together with the model's learned weights, thresholds and
biases (and the residual network's logits as a per-row bias). The trace's decisions are
therefore exactly what :meth:`GreyBox.predict` returns.
"""

from __future__ import annotations

import numpy as np
import torch

from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import type_to_text

from .._trace import Trace
from ._base import Semantics
from ._compiled import EXACT_FLOAT32, wide_int

__all__ = ["CrispSemantics", "crisp_scores", "evaluate_with"]


def crisp_scores(model, batch, ev, logits, name: str) -> np.ndarray:
    """(rows, values) scores of decided variable ``name`` in the decision ``ev`` (from
    ``model.decision.evaluate``): bias, residual and rule weights; ``-inf`` where the hard
    constraints allow no decision with that value (:func:`greybox._decide.decision_scores`;
    their argmax, ties to the first value, is the decision where nothing else ties the
    variable).

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox("input x: real  output y: bool  rule r weight 2: x > 1 -> y",
    ...                    semantics="product")
    >>> batch = model.batch({"x": [0.0, 3.0]})
    >>> ev, logits = model.decision.evaluate(batch)
    >>> crisp_scores(model, batch, ev, logits, "y").tolist()   # False, True
    [[0.0, 0.0], [0.0, 2.0]]
    """
    from .._decide import decision_scores

    return np.asarray(decision_scores(model, ev.kb, batch, logits, ev, name),
                      dtype=np.float64)


def evaluate_with(model, kb, batch, logits, *, bias=None):
    """The crisp evaluation of other rules ``kb`` with ``model``'s networks' values
    (``logits``, as ``model.decision.evaluate`` returns them) and biases (``bias``: a
    :meth:`~greybox.GreyBox.bias_table`, default the model's on ``batch``): what a copy of
    the model with those rules decides, without building it.

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox("input x: real  output y: bool  rule r: x > 1 -> y",
    ...                    semantics="product")
    >>> batch = model.batch({"x": [0.0, 3.0]})
    >>> _, logits = model.decision.evaluate(batch)
    >>> other = gb.rules.parse("input x: real  output y: bool  rule r: x > -1 -> y")
    >>> evaluate_with(model, other, batch, logits).decisions["y"].tolist()
    [True, True]
    """
    from .._decide import _evaluate

    return _evaluate(kb, batch, logits, model.bias_table(batch) if bias is None else bias)


class CrispSemantics(Semantics):
    """Plain boolean evaluation (see the module docstring)."""

    name = "crisp"

    def trace(self, model, batch) -> Trace:
        from .._decide import output_indices

        kb = model.kb
        ev, logits = model.decision.evaluate(batch)

        def tensor(x, dtype=torch.float32):
            return torch.as_tensor(np.array(x), dtype=dtype, device=model.device)

        values = _values(kb, ev, batch, logits, tensor)
        scores = {}
        for name in kb.decided:
            t = kb.variables[name].type
            scores[name] = tensor(ev.scores[name].to_numpy()) \
                if isinstance(t, A.BoolType) or name in kb.additive \
                else torch.stack([tensor(ev.scores[f"{name}={v}"].to_numpy())
                                  for v in A.domain_values(t)], 1)

        def log_prob(name, target):
            if name not in values:
                raise KeyError(name)
            v = values[name]
            t = kb.variables[name].type
            if v.dim() == 1 and not isinstance(t, A.BoolType):
                raise ModelError(f"{name!r} ({kb.variables[name].role}, "
                                 f"{type_to_text(t)}) holds its value in a crisp trace, not "
                                 "a distribution: it has no log-probability")
            if v.dim() == 2:
                p = v.gather(1, target.long().view(-1, 1)).squeeze(1)
            else:
                p = torch.where(target.bool(), v, 1.0 - v)
            return torch.log(p)

        def decide():
            from .._bigint import BigLabels

            return {name: BigLabels(output_indices(kb, name, ev, logits))
                    if A.big_int(kb.variables[name].type) else    # exact Python ints
                    tensor(output_indices(kb, name, ev, logits),
                           torch.long if A.is_finite_type(kb.variables[name].type)
                           else torch.float32) for name in kb.outputs}

        return Trace(semantics="crisp", n=batch.n, kb=kb, values=values, logits=logits,
                     bodies={r: tensor(ev.bodies[r].to_numpy()) for r in kb.rules},
                     contributions={r: tensor(ev.contributions[r].to_numpy())
                                    for r in kb.rules}, scores=scores,
                     constraints={c: tensor(~ev.violations[c].to_numpy()) for c in kb.constraints},
                     infeasible=tensor(ev.infeasible.to_numpy(), torch.bool),
                     _log_prob=log_prob, _decide=decide)


def _values(kb, ev, batch, logits, tensor) -> dict:
    """Every variable's crisp value as the trace holds it: a bool 0/1, a real value, an
    integer input or define its value (as the fuzzy traces hold them: a domain of ten
    billion values is one number, not a one-hot row of 80 GB), another finite variable
    (an enum, a network's or a decided output's value) one-hot."""
    from .._decide import indices

    values = {}
    hidden = kb.layers
    for name, var in kb.variables.items():
        t = var.type
        if isinstance(t, A.TensorType) or var.role not in ("decided", "defined") \
                or A.big_int(t) or name in hidden:
            continue    # (beyond ±2**53 no tensor holds it exactly: predict gives it;
            #             a recursion's layers are hidden)
        code = ev.code(name)
        if name in kb.additive:   # a number (an int's value, not its index)
            values[name] = tensor(np.asarray(code, dtype=np.float64))
            continue
        idx = indices(t, code)
        if isinstance(t, A.BoolType) or not A.is_finite_type(t):
            values[name] = tensor(idx)
        elif isinstance(t, A.IntType) and var.role in ("input", "defined"):
            # exact: float64 where float32 would round the range's integers
            wide = max(abs(t.lo), abs(t.hi)) > EXACT_FLOAT32
            values[name] = tensor(np.asarray(idx, dtype=np.int64) + t.lo,
                                  torch.float64 if wide else torch.float32)
        else:
            values[name] = torch.nn.functional.one_hot(tensor(idx, torch.long),
                                                       A.domain(t).size).float()
    for name in kb.inputs:
        if name in batch.columns and name not in values:
            t = kb.variables[name].type
            x = batch.values[name]
            # numbers in float32; integers beyond float32's exact ones as read (float64)
            values[name] = (torch.nn.functional.one_hot(x, t.size).float()
                            if isinstance(t, A.EnumType) else x if wide_int(t) else x.float())
    for name, out in logits.items():
        t = kb.variables[name].type
        if isinstance(t, A.BoolType):
            values[name] = (out > 0).float()
        elif A.is_finite_type(t):
            values[name] = torch.nn.functional.one_hot(out.argmax(1), out.shape[1]).float()
        else:
            values[name] = out.detach()
    return values


def __getattr__(name: str):
    """``crisp_evaluation`` (removed: another name for the model's decision) still works,
    with a DeprecationWarning naming its replacement."""
    if name == "crisp_evaluation":
        import warnings

        warnings.warn("greybox.semantics.crisp.crisp_evaluation(model, batch) is deprecated: "
                      "use model.decision.evaluate(batch)", DeprecationWarning, stacklevel=2)
        return _crisp_evaluation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _crisp_evaluation(model, batch):
    """The crisp evaluation and the networks' logits of ``batch``: the model's decision."""
    return model.decision.evaluate(batch)
