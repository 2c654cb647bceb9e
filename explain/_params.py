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

from greybox._batch import Batch
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
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    buffers = dict(model.named_buffers())
    flat = torch.cat([p.detach().flatten() for _, p in named])
    keys = [k for k in batch.values]
    data = tuple(batch.values[k] for k in keys)

    def one_row(p_flat, tgt, *row):
        params = {n: t.view(s) for n, t, s in zip(names, p_flat.split(sizes), shapes)}
        sub = Batch({k: v.unsqueeze(0) for k, v in zip(keys, row)}, 1, pd.RangeIndex(1), {})
        trace = functional_call(model, (params, buffers), (sub,))
        return probability_of(trace.values[output], tgt.view(1))[0]

    def forward(p_batch, tgt, *rows):
        return vmap(one_row)(p_batch, tgt, *rows)

    inputs = flat.unsqueeze(0).expand(batch.n, -1).clone()
    base = torch.zeros_like(flat)
    if baseline == "thresholds":
        start = 0
        for name, size in zip(names, sizes):
            if ".thresholds." in name:
                base[start:start + size] = flat[start:start + size]
            start += size
    base = base.unsqueeze(0).expand(batch.n, -1).clone()
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
    per_tensor = torch.stack([a.sum(1) for a in attr.split(sizes, dim=1)], 1)   # (n, T)
    rows = []
    for i in range(batch.n):
        for j, name in enumerate(names):
            rows.append({"row": i, "parameter": name, "attribution": float(per_tensor[i, j])})
    tensors = pd.DataFrame(rows)
    top = []
    k = min(top_k, attr.shape[1])
    values, idx = attr.abs().topk(k, dim=1)
    offsets = np.cumsum([0] + sizes)
    for i in range(batch.n):
        for rank, flat_index in enumerate(idx[i].tolist()):
            if float(values[i, rank]) == 0.0:   # nothing else carried this decision
                break
            t = int(np.searchsorted(offsets, flat_index, side="right") - 1)
            local = np.unravel_index(flat_index - offsets[t], tuple(shapes[t]) or (1,))
            where = ", ".join(str(int(x)) for x in local) if shapes[t] else ""
            top.append({"row": i, "rank": rank + 1, "parameter": names[t],
                        "entry": f"{names[t]}[{where}]" if where else names[t],
                        "value": float(flat[flat_index]),
                        "attribution": float(attr[i, flat_index])})
    total = attr.sum(1)
    completeness = pd.DataFrame({
        "row": range(batch.n),
        "sum_of_attributions": total.numpy(),
        "output_change": (at_theta - at_zero).numpy(),
        "gap": delta.detach().abs().numpy(),
    })
    return tensors, pd.DataFrame(top), completeness
