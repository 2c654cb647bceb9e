"""A grey-box model's predictions: the decision function and its probabilities.

:class:`Predictions` is mixed into :class:`~greybox.GreyBox`; the decision itself is
:mod:`greybox._decide`.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch
from torch import nn

from greybox.errors import DataError, ModelError, listed
from greybox.rules import ast as A

from ._batch import Batch

__all__ = ["Predictions"]


class Predictions:
    """``predict`` and ``predict_proba`` of a :class:`~greybox.GreyBox` (a mixin)."""

    def predict(self, data, *, on_infeasible: str = "raise", batch_size: int = 4096
                ) -> pd.DataFrame:
        """The decision of every output, one row per example: the model's one decision
        function (see :mod:`greybox._decide`), which every formal result speaks about.

        The networks' most probable values are taken, the rules score the decided outputs
        with the learned weights, thresholds, biases and residual, and the best-scoring
        values allowed by the hard constraints win. Hard constraints hold in every row
        returned: where the networks' most probable values violate one, the most probable
        values that satisfy it are used -- for finite neural variables the MAP
        assignment, computed exactly (see :mod:`greybox._repair`). Where no value
        satisfies them, ``on_infeasible="raise"`` (default) raises
        :class:`~greybox.DataError` naming the rows; ``"flag"`` returns them with a True
        ``infeasible`` column instead.
        """
        if on_infeasible not in ("raise", "flag"):
            raise ModelError(f"on_infeasible must be 'raise' or 'flag', got {on_infeasible!r}")
        batch = self.batch(data)
        parts, flags = [], []
        for _sub, ev, logits in self._decisions(batch, batch_size):
            parts.append({name: _decided(self.kb, name, ev, logits)
                          for name in self.kb.outputs})
            flags.append(ev.infeasible.to_numpy())
        infeasible = np.concatenate(flags) if flags else np.zeros(0, bool)
        if on_infeasible == "raise" and infeasible.any():
            rows = np.flatnonzero(infeasible)
            labels = [batch.index[i] for i in rows[:5]]
            raise DataError(f"{len(rows)} row(s) have no decision satisfying the hard "
                            f"constraints (first: {labels}); predict(..., on_infeasible='flag') "
                            "returns them flagged")
        cols = {}
        for name in self.kb.outputs:
            v = np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
            cols[name] = A.domain(self.kb.variables[name].type).from_indices(v, index=batch.index)
        df = pd.DataFrame(cols, index=batch.index)
        if on_infeasible == "flag":
            df["infeasible"] = infeasible
        return df

    def _decisions(self, batch: Batch, batch_size: int):
        """``(sub-batch, Evaluation, logits)`` of the decision function, chunk by chunk."""
        from ._decide import decide

        with self._evaluating():
            for start in range(0, batch.n, batch_size):
                sub = batch.take(torch.arange(start, min(batch.n, start + batch_size)))
                ev, logits = decide(self, sub)
                yield sub, ev, logits

    @contextlib.contextmanager
    def _evaluating(self):
        """Every submodule in evaluation mode inside, each back in its own mode after --
        without ``eval()``/``train()``'s ``nn.Module.__setattr__`` on each of a hundred
        submodules (a 50-rule model: 0.6 ms per call). Where a training module overrides
        ``train``, ``eval()`` then ``train(was)`` (that module's own logic runs; every
        module ends in the model's mode)."""
        on = [m for m in self.modules() if m.training]
        if any(type(m).train is not nn.Module.train for m in on):
            was = self.training
            self.eval()
            try:
                yield
            finally:
                self.train(was)
            return
        for m in on:
            m.__dict__["training"] = False
        try:
            yield
        finally:
            for m in on:
                m.__dict__["training"] = True

    def predict_proba(self, data, output: str | None = None, *, batch_size: int = 4096
                      ) -> pd.DataFrame:
        """The probability of each value of a finite output (default: the only output), one
        column per value (``False``/``True`` for a bool); the most probable value is the
        decision :meth:`predict` returns.

        For an output decided by rules: the softmax of its crisp scores (bias, residual
        and the weights of the rules that fire) over the values the hard constraints
        allow. For a defined or neural output: its exact distribution under the
        networks' distributions (probabilistic semantics; its mode can differ from the
        decision, which takes each network's most probable value).
        """
        if output is None:
            if len(self.kb.outputs) != 1:
                raise ModelError(f"name the output: one of {listed(self.kb.outputs)}")
            output = self.kb.outputs[0]
        var = self.kb.variables.get(output)
        if var is None or not var.output or not A.is_finite_type(var.type):
            raise ModelError(f"{output!r} is not a finite output")
        if A.big_int(var.type):
            raise ModelError(f"{output!r} is {var.type.lo}..{var.type.hi}, beyond ±2**53: its "
                             "values cannot be listed one by one; predict gives its exact "
                             "decision, and the trace's log_prob the probability of a value")
        batch = self.batch(data)
        values = list(A.domain_values(var.type))
        parts = []
        if var.role == "decided":
            from ._decide import decision_scores

            for sub, ev, logits in self._decisions(batch, batch_size):
                s = decision_scores(self, ev.kb, sub, logits, ev, output)
                s = torch.as_tensor(s, dtype=torch.float64)
                parts.append(torch.softmax(s, 1).numpy())
        else:
            with self._evaluating():
                with torch.no_grad():
                    for start in range(0, batch.n, batch_size):
                        rows = torch.arange(start, min(batch.n, start + batch_size))
                        tr = self(batch.take(rows))
                        if output not in tr.values:
                            raise ModelError(f"{output!r} has too many values to enumerate "
                                             "its distribution")
                        p = tr.values[output]
                        if p.dim() == 1:
                            p = torch.stack([1 - p, p], 1)
                        parts.append(p.cpu().numpy())
        p = np.concatenate(parts) if parts else np.zeros((0, len(values)))
        return pd.DataFrame(p, index=batch.index, columns=values)


def _decided(kb, name: str, ev, logits) -> np.ndarray:
    """An output's decision as value codes (enum index, int offset from ``lo``, bool,
    real value), from the decision function's evaluation."""
    from ._decide import output_codes

    codes = output_codes(kb, name, ev, logits)
    return codes.astype(bool) if isinstance(kb.variables[name].type, A.BoolType) else codes
