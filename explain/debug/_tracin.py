"""Blaming training examples: Captum's TracInCP with the model's current parameters."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
import torch
from captum.influence import TracInCP
from torch import nn
from torch.utils.data import TensorDataset

from greybox import Batch
from greybox.rules import ast as A

__all__ = ["tracin_influence"]


class _Probabilities(nn.Module):
    """The model as Captum's influence methods want it: tensors in, P(output) out."""

    def __init__(self, model, keys, output):
        super().__init__()
        self.model, self.keys, self.output = model, keys, output

    def forward(self, *xs):
        batch = Batch(dict(zip(self.keys, xs)), xs[0].shape[0], pd.RangeIndex(xs[0].shape[0]),
                      {})
        return self.model(batch).values[self.output]


class _Loss:
    """Per-example negative log-likelihood (Captum computes per-example gradients)."""

    reduction = "none"

    def __call__(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _loss(p, y)


def _loss(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if p.dim() == 1:
        return nn.functional.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), y.float(),
                                                  reduction="none")
    return nn.functional.nll_loss(torch.log(p.clamp_min(1e-12)), y.long(), reduction="none")


def _indices(kb, output, values) -> torch.Tensor:
    t = kb.variables[output].type
    if isinstance(t, A.BoolType):
        return torch.as_tensor(np.asarray(values).astype(bool).astype(np.float32))
    return torch.as_tensor(A.domain(t).indices(values))


def tracin_influence(model, output: str, train, test_batch, test_target, *, k: int = 10
                     ) -> pd.DataFrame:
    """The ``k`` training rows whose gradient most opposes the test row's correct answer
    (TracIn with the current parameters as the one checkpoint): the examples that pushed
    the model toward its mistake -- often mislabelled ones."""
    train_data, train_targets = train
    tb = model.batch(train_data)
    keys = list(tb.values)
    y = _indices(model.kb, output, np.asarray(train_targets))
    dataset = TensorDataset(*[tb.values[key] for key in keys], y.to(model.device))
    wrapper = _Probabilities(model, keys, output)
    fd, path = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:
        torch.save(wrapper.state_dict(), path)

        def load(net, checkpoint):
            net.load_state_dict(torch.load(checkpoint, weights_only=True))
            return 1.0

        was = model.training
        model.eval()
        try:
            tracin = TracInCP(wrapper, dataset, checkpoints=[path], checkpoints_load_func=load,
                              loss_fn=_Loss(), batch_size=64)
            target = _indices(model.kb, output, [test_target]).to(model.device)
            inputs = (*[test_batch.values[key] for key in keys], target)
            result = tracin.influence(inputs, k=min(k, len(dataset)), proponents=False)
        finally:
            model.train(was)
    finally:
        os.unlink(path)
    idx = result.indices[0].tolist()
    scores = result.influence_scores[0].tolist()
    labels = [tb.index[i] for i in idx]
    targets = np.asarray(train_targets)
    return pd.DataFrame({"train_row": labels, "influence": scores,
                         "label": [targets[i] for i in idx]})
