"""A grey-box model's decision part: the decision function, its predictions and their
probabilities.

:class:`Decision` is a component the model hands out (``model.decision``): it holds the
model and reads it only through :class:`DecisionModel`, the model's contract with it.
Between the data read in and the predictions written out, values are codes
(:class:`~greybox.rules.ast.Domain`'s convention): the batch's columns, the networks'
values and the decisions go to and from :func:`greybox.rules.engine.evaluate_codes` as they are.
:class:`Predictions` is the model's face for it (``predict`` and ``predict_proba``;
it stores nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from greybox.errors import DataError, ModelError, listed
from greybox.rules import ast as A

from ._batch import Batch, kb_cached
from ._decide import decide, decision_scores, output_codes

__all__ = ["Decision", "DecisionModel", "Predictions", "output_frame"]


class DecisionModel(Protocol):
    """What :class:`Decision` reads of a model: its rules and learned rules, its data
    reader, its networks, residual and biases (and, as an ``nn.Module``, its submodules)."""

    kb: object
    networks: nn.Module
    residual: nn.Module | None

    def to_kb(self): ...

    def batch(self, data) -> Batch: ...

    def run_networks(self, batch: Batch) -> dict: ...

    def bias_table(self, batch: Batch | None = None) -> dict: ...

    def modules(self) -> Iterator[nn.Module]: ...


class Decision:
    """The decision function of a model and what is computed from it: ``predict``,
    ``predict_proba``, the evaluation every formal result replays (:meth:`evaluate`).

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox("input x: real  output y: bool  rule r weight 2: x > 1 -> y",
    ...                    semantics="product")
    >>> ev, _ = model.decision.evaluate(model.batch({"x": [0.0, 3.0]}))
    >>> ev.code("y").tolist()
    [False, True]
    """

    __slots__ = ("model",)

    def __init__(self, model: DecisionModel):
        self.model = model

    def evaluate(self, batch: Batch, logits: dict | None = None):
        """The model's crisp decision of every row of ``batch``: ``(Evaluation, logits)``
        (:func:`greybox._decide.decide`: the networks' most probable values, repaired
        where they violate a hard constraint, decided by the learned rules)."""
        return decide(self.model, batch, logits)

    def chunks(self, batch: Batch, batch_size: int):
        """``(sub-batch, Evaluation, logits)`` of the decision function, chunk by chunk,
        the modules it runs (networks and residual) in evaluation mode."""
        with self.evaluating(self._run_modules()):
            for start in range(0, batch.n, batch_size):
                sub = batch if start == 0 and batch_size >= batch.n else \
                    batch.take(torch.arange(start, min(batch.n, start + batch_size)))
                ev, logits = decide(self.model, sub)
                yield sub, ev, logits

    def predict(self, data, *, on_infeasible: str = "raise", batch_size: int = 4096
                ) -> pd.DataFrame:
        """:meth:`GreyBox.predict <greybox.GreyBox.predict>`: the decision of every
        output, one row per example (labels written once, from the decisions' codes)."""
        if on_infeasible not in ("raise", "flag"):
            raise ModelError(f"on_infeasible must be 'raise' or 'flag', got {on_infeasible!r}")
        model = self.model
        kb = model.kb
        batch = model.batch(data)
        parts, flags = [], []
        for _sub, ev, logits in self.chunks(batch, batch_size):
            parts.append({name: output_codes(kb, name, ev, logits) for name in kb.outputs})
            flags.append(ev.infeasible_rows)
        infeasible = np.concatenate(flags) if flags else np.zeros(0, bool)
        if on_infeasible == "raise" and infeasible.any():
            rows = np.flatnonzero(infeasible)
            labels = [batch.index[i] for i in rows[:5]]
            raise DataError(f"{len(rows)} row(s) have no decision satisfying the hard "
                            f"constraints (first: {labels}); predict(..., on_infeasible='flag') "
                            "returns them flagged")
        codes = {}
        for name in kb.outputs:
            codes[name] = parts[0][name] if len(parts) == 1 else \
                np.concatenate([p[name] for p in parts]) if parts else \
                np.zeros(0, object if A.domain(kb.variables[name].type).big else np.float64)
        df = output_frame(kb, codes, batch.index)
        if on_infeasible == "flag":
            df["infeasible"] = infeasible
        return df

    def _run_modules(self) -> list[nn.Module]:
        """The modules whose ``forward`` the decision runs -- the networks and the
        residual, with their submodules -- the only ones whose mode it can see (the rule
        parameters' hundred modules of a 50-rule model are walked for nothing: 0.1 ms
        per call)."""
        model = self.model
        found = list(model.networks.modules())
        residual = getattr(model, "residual", None)
        if residual is not None:
            found += residual.modules()
        return found

    @contextlib.contextmanager
    def evaluating(self, modules: list[nn.Module] | None = None):
        """Every submodule (or each of ``modules``) in evaluation mode inside, each back
        in its own mode after -- without ``eval()``/``train()``'s
        ``nn.Module.__setattr__`` on each of a hundred submodules (a 50-rule model:
        0.6 ms per call). Where a training module overrides ``train``, ``eval()`` then
        ``train(was)`` of the whole model (that module's own logic runs; every module ends
        in the model's mode)."""
        model = self.model
        on = [m for m in (model.modules() if modules is None else modules) if m.training]
        if any(type(m).train is not nn.Module.train for m in on):
            was = model.training
            model.eval()
            try:
                yield
            finally:
                model.train(was)
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
        """:meth:`GreyBox.predict_proba <greybox.GreyBox.predict_proba>`."""
        kb = self.model.kb
        if output is None:
            if len(kb.outputs) != 1:
                raise ModelError(f"name the output: one of {listed(kb.outputs)}")
            output = kb.outputs[0]
        var = kb.variables.get(output)
        if var is None or not var.output or not A.is_finite_type(var.type):
            raise ModelError(f"{output!r} is not a finite output")
        if A.big_int(var.type):
            raise ModelError(f"{output!r} is {var.type.lo}..{var.type.hi}, beyond ±2**53: its "
                             "values cannot be listed one by one; predict gives its exact "
                             "decision, and the trace's log_prob the probability of a value")
        batch = self.model.batch(data)
        values = list(A.domain_values(var.type))
        parts = self._decided_proba(batch, output, batch_size) if var.role == "decided" \
            else self._traced_proba(batch, output, batch_size)
        p = np.concatenate(parts) if parts else np.zeros((0, len(values)))
        return pd.DataFrame(p, index=batch.index, columns=values)

    def _decided_proba(self, batch: Batch, output: str, batch_size: int) -> list:
        """The softmax of a decided output's crisp scores over the values the hard
        constraints allow, chunk by chunk."""
        parts = []
        for sub, ev, logits in self.chunks(batch, batch_size):
            s = decision_scores(self.model, ev.kb, sub, logits, ev, output)
            s = torch.as_tensor(s, dtype=torch.float64)
            parts.append(torch.softmax(s, 1).numpy())
        return parts

    def _traced_proba(self, batch: Batch, output: str, batch_size: int) -> list:
        """A defined or neural output's exact distribution under the networks'
        distributions (the model's trace), chunk by chunk."""
        parts = []
        with self.evaluating(), torch.no_grad():
            for start in range(0, batch.n, batch_size):
                rows = torch.arange(start, min(batch.n, start + batch_size))
                tr = self.model(batch.take(rows))
                if output not in tr.values:
                    raise ModelError(f"{output!r} has too many values to enumerate "
                                     "its distribution")
                p = tr.values[output]
                if p.dim() == 1:
                    p = torch.stack([1 - p, p], 1)
                parts.append(p.cpu().numpy())
        return parts


def output_frame(kb, codes: dict, index: pd.Index) -> pd.DataFrame:
    """The outputs' values from their codes, a column each in ``kb.outputs``' order
    (:meth:`~greybox.rules.ast.Domain.series`' dtypes): built from one 2-D array when
    every output is held in one numpy dtype (bools, ints or reals: a Series each and
    their alignment cost ~0.1-0.3 ms for one row), else from a Series each."""
    dtype, columns = kb_cached(kb, "predict/frame", _frame_layout)
    if dtype is None:
        return pd.DataFrame({name: A.domain(kb.variables[name].type).series(
            codes[name], index=index) for name in kb.outputs}, index=index)
    values = np.stack([np.asarray(codes[name]).astype(dtype) for name in kb.outputs], 1)
    # a view of the columns: a name the caller gives them stays on that frame
    return pd.DataFrame(values, index=index, columns=columns.view(), copy=False)


def _frame_layout(kb) -> tuple:
    """``(dtype, columns)`` of :func:`output_frame`: the one numpy dtype of every output
    (None: an enum's categories, a big int's Python ints, mixed dtypes, no output)."""
    dtypes = set()
    for name in kb.outputs:
        t = kb.variables[name].type
        d = A.domain(t)
        dtypes.add(None if d.big or isinstance(t, A.EnumType) else
                   np.int64 if isinstance(t, A.IntType) else
                   bool if isinstance(t, A.BoolType) else np.float64)
    dtype = dtypes.pop() if len(dtypes) == 1 else None
    return dtype, pd.Index(list(kb.outputs))


class Predictions:
    """``predict`` and ``predict_proba`` of a :class:`~greybox.GreyBox`: its face for its
    :class:`Decision` part (it stores nothing; each method hands the call on)."""

    @property
    def decision(self) -> Decision:
        """The model's decision part: the decision function every prediction and formal
        result speaks about (see :class:`greybox._predictions.Decision`)."""
        return Decision(self)

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
        return Decision(self).predict(data, on_infeasible=on_infeasible,
                                      batch_size=batch_size)

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
        return Decision(self).predict_proba(data, output, batch_size=batch_size)
