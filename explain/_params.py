"""Parameter attribution: which weights, thresholds and biases carried a decision.

Integrated gradients over the parameters themselves: every row gets its own copy of the
flattened parameter vector as Captum's input, and the model runs on each row with its own
copy through ``torch.func.functional_call`` under ``torch.func.vmap`` -- vectorised over
rows and integration steps, no Python loop over rows. The baseline sets the parameters to
0 (thresholds keep their values by default), so each row's attributions add up to
``P(decision | θ) − P(decision | baseline)`` (Captum's convergence delta is the gap,
reported per row).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from torch.func import functional_call, vmap

from greybox import Batch
from greybox.functional import probability_of

__all__ = ["parameter_attributions"]


def parameter_attributions(model, batch: Batch, output: str, target: torch.Tensor, *,
                           n_steps: int = 32, top_k: int = 10, baseline: str = "thresholds"
                           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per row: attribution per parameter tensor, the ``top_k`` individual entries, and
    the completeness check (sum, output change from the baseline, gap).

    ``baseline="thresholds"`` (default): every parameter starts at 0 except the ``~``
    thresholds, which keep their values (a threshold has no natural zero: 0 would be an
    arbitrary point on the column's scale, and every rule would fire along the path), so
    the credit goes to weights, biases and network parameters. ``"zero"``: everything
    starts at 0, thresholds included."""
    if baseline not in ("thresholds", "zero"):
        from greybox.errors import ModelError

        raise ModelError(f"parameter baseline must be 'thresholds' or 'zero', got {baseline!r}")
    flat = _Flat(model)
    forward = _forward(model, flat, batch, output)
    data = tuple(batch.values.values())
    inputs = flat.values.unsqueeze(0).expand(batch.n, -1).clone()
    base = _baseline(flat, baseline).unsqueeze(0).expand(batch.n, -1).clone()
    ig = IntegratedGradients(forward)
    was = model.training
    model.eval()
    try:
        attr, delta = ig.attribute(inputs, baselines=base,
                                   additional_forward_args=(target, *data), n_steps=n_steps,
                                   return_convergence_delta=True)
        with torch.no_grad():
            at_theta = forward(inputs, target, *data)
            at_zero = forward(base, target, *data)
    finally:
        model.train(was)
    attr = attr.detach()
    completeness = pd.DataFrame({
        "row": range(batch.n),
        "sum_of_attributions": attr.sum(1).numpy(),
        "output_change": (at_theta - at_zero).numpy(),
        "gap": delta.detach().abs().numpy(),
    })
    return _per_tensor(flat, attr), _top_entries(flat, attr, top_k), completeness


class _Flat:
    """A model's trainable parameters as one flat vector, with their names and shapes."""

    def __init__(self, model):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.values = torch.cat([p.detach().flatten() for _, p in named])

    def unflatten(self, p_flat) -> dict:
        return {n: t.view(s) for n, t, s in zip(self.names, p_flat.split(self.sizes),
                                                self.shapes)}


def _forward(model, flat: _Flat, batch: Batch, output: str):
    """``forward(parameters per row, targets, *columns)``: each row's probability of its
    target under its own parameter vector (vmapped over rows and integration steps)."""
    buffers = dict(model.named_buffers())
    keys = list(batch.values)

    def one_row(p_flat, tgt, *row):
        sub = Batch({k: v.unsqueeze(0) for k, v in zip(keys, row)}, 1, pd.RangeIndex(1), {})
        trace = functional_call(model, (flat.unflatten(p_flat), buffers), (sub,))
        return probability_of(trace.values[output], tgt.view(1))[0]

    def forward(p_batch, tgt, *rows):
        return vmap(one_row)(p_batch, tgt, *rows)

    return forward


def _baseline(flat: _Flat, baseline: str) -> torch.Tensor:
    """Zeros, except the ``~`` thresholds at their values under ``"thresholds"``."""
    base = torch.zeros_like(flat.values)
    if baseline == "thresholds":
        start = 0
        for name, size in zip(flat.names, flat.sizes):
            if ".thresholds." in name:
                base[start:start + size] = flat.values[start:start + size]
            start += size
    return base


def _per_tensor(flat: _Flat, attr: torch.Tensor) -> pd.DataFrame:
    per_tensor = torch.stack([a.sum(1) for a in attr.split(flat.sizes, dim=1)], 1)   # (n, T)
    return pd.DataFrame([{"row": i, "parameter": name, "attribution": float(per_tensor[i, j])}
                         for i in range(attr.shape[0]) for j, name in enumerate(flat.names)])


def _top_entries(flat: _Flat, attr: torch.Tensor, top_k: int) -> pd.DataFrame:
    """Per row, the ``top_k`` parameter entries by absolute attribution (none that is 0)."""
    names, shapes = flat.names, flat.shapes
    top = []
    values, idx = attr.abs().topk(min(top_k, attr.shape[1]), dim=1)
    offsets = np.cumsum([0] + flat.sizes)
    for i in range(attr.shape[0]):
        for rank, flat_index in enumerate(idx[i].tolist()):
            if float(values[i, rank]) == 0.0:   # nothing else carried this decision
                break
            t = int(np.searchsorted(offsets, flat_index, side="right") - 1)
            local = np.unravel_index(flat_index - offsets[t], tuple(shapes[t]) or (1,))
            where = ", ".join(str(int(x)) for x in local) if shapes[t] else ""
            top.append({"row": i, "rank": rank + 1, "parameter": names[t],
                        "entry": f"{names[t]}[{where}]" if where else names[t],
                        "value": float(flat.values[flat_index]),
                        "attribution": float(attr[i, flat_index])})
    return pd.DataFrame(top)
