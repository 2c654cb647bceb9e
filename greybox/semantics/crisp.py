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

from greybox.rules import _ast as A

from .._trace import Trace
from ._base import Semantics

__all__ = ["CrispSemantics", "crisp_evaluation"]


def crisp_evaluation(model, batch, logits=None):
    """The model's decision function on ``batch`` (:func:`greybox._decide.decide`):
    ``(Evaluation, logits)``."""
    from .._decide import decide

    return decide(model, batch, logits)


def _index(kb, name, series) -> np.ndarray:
    t = kb.variables[name].type
    if isinstance(t, A.EnumType):
        return series.cat.codes.to_numpy().astype(np.int64)
    if isinstance(t, A.IntType):
        return series.to_numpy().astype(np.int64) - t.lo
    if isinstance(t, A.BoolType):
        return series.to_numpy().astype(np.int64)
    return series.to_numpy()


class CrispSemantics(Semantics):
    """Plain boolean evaluation (see the module docstring)."""

    name = "crisp"

    def trace(self, model, batch) -> Trace:
        kb = model.kb
        dev = model.device
        ev, logits = crisp_evaluation(model, batch)

        def tensor(x, dtype=torch.float32):
            return torch.as_tensor(np.array(x), dtype=dtype, device=dev)

        values = {}
        indices = {}
        for name, var in kb.variables.items():
            t = var.type
            if isinstance(t, A.TensorType):
                continue
            if name in ev.decisions:
                series = ev.decisions[name]
            elif name in ev.values:
                series = ev.values[name]
            else:
                continue
            idx = _index(kb, name, series)
            indices[name] = idx
            if isinstance(t, A.BoolType):
                values[name] = tensor(idx)
            elif A.is_finite_type(t):
                values[name] = torch.nn.functional.one_hot(tensor(idx, torch.long),
                                                           len(A.domain_values(t))).float()
            else:
                values[name] = tensor(idx)
        for name in kb.inputs:
            if name in batch.columns and name not in values:
                t = kb.variables[name].type
                x = batch.values[name]
                values[name] = (torch.nn.functional.one_hot(x, t.size).float()
                                if isinstance(t, A.EnumType) else x.float())
        for name, out in logits.items():
            t = kb.variables[name].type
            if isinstance(t, A.BoolType):
                values[name] = (out > 0).float()
            elif A.is_finite_type(t):
                values[name] = torch.nn.functional.one_hot(out.argmax(1), out.shape[1]).float()
            else:
                values[name] = out.detach()
        bodies = {r: tensor(ev.bodies[r].to_numpy()) for r in kb.rules}
        contributions = {r: tensor(ev.contributions[r].to_numpy()) for r in kb.rules}
        scores = {}
        for name in kb.decided:
            t = kb.variables[name].type
            if isinstance(t, A.BoolType):
                scores[name] = tensor(ev.scores[name].to_numpy())
            else:
                scores[name] = torch.stack([tensor(ev.scores[f"{name}={v}"].to_numpy())
                                            for v in A.domain_values(t)], 1)

        def log_prob(name, target):
            if name not in values:
                raise KeyError(name)
            v = values[name]
            if v.dim() == 2:
                p = v.gather(1, target.long().view(-1, 1)).squeeze(1)
            else:
                p = torch.where(target.bool(), v, 1.0 - v)
            return torch.log(p)

        def decide():
            out = {}
            for name in kb.outputs:
                t = kb.variables[name].type
                out[name] = tensor(indices[name], torch.long if A.is_finite_type(t)
                                   else torch.float32)
            return out

        return Trace(semantics="crisp", n=batch.n, kb=kb, values=values, logits=logits,
                     bodies=bodies, contributions=contributions, scores=scores,
                     constraints={c: tensor(~ev.violations[c].to_numpy()) for c in kb.constraints},
                     infeasible=tensor(ev.infeasible.to_numpy(), torch.bool),
                     _log_prob=log_prob, _decide=decide)
