"""Parameter attribution: which weights, thresholds and biases carried a decision.

Integrated gradients over the parameters themselves, on Captum's path and weights
(Gauss-Legendre): the model runs with the parameters at each point of the path through
``torch.func.functional_call``. The baseline sets the parameters to 0 (thresholds keep
their values by default), so each row's attributions add up to
``P(decision | θ) − P(decision | baseline)`` (the gap is reported per row, as Captum's
convergence delta).

Two ways, one result (to floating-point rounding; tested against Captum's
``IntegratedGradients`` over a copy of the parameters per row):

- a small network (up to :data:`VMAP_PARAMETERS`): every (row, step) pair gets its own
  copy of the flat parameter vector and runs under ``torch.func.vmap``, in chunks of at
  most :data:`PARAMETER_BUDGET` numbers -- vectorised, no Python loop over rows;
- a big one: one row and step at a time through the plain model, each parameter tensor
  its own leaf, a row's gradients summed in place over its steps and reduced to its
  per-tensor sums and top entries as soon as its last step is done. A few copies of the
  parameters are held, never a copy per row: a 10M-parameter network is explained in
  about four copies of its parameters whatever the number of rows.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from torch.func import functional_call, vmap

from greybox import Batch
from greybox.errors import ModelError
from greybox.functional import probability_of

__all__ = ["PARAMETER_BUDGET", "VMAP_PARAMETERS", "parameter_attributions"]

#: Numbers (parameter entries times copies) differentiated at once: a chunk holds
#: ``max(1, PARAMETER_BUDGET // n_parameters)`` copies of the parameters, one per row and
#: integration step (2**24: 64 MiB of float32 per tensor of the chunk).
PARAMETER_BUDGET = 2 ** 24

#: Trainable parameters up to which rows and steps go together under ``vmap``; a bigger
#: network goes one row and step at a time through the plain model, which is faster for
#: it (vmap gives each row its own weights: a convolution per row; measured on a
#: convolutional network of 0.8M parameters, 2 rows, 8 steps: 3.0 s under vmap, 0.6 s
#: row by row; of 0.2M: 0.27 s and 0.45 s).
VMAP_PARAMETERS = 2 ** 18


def parameter_attributions(model, batch: Batch, output: str, target: torch.Tensor, *,
                           n_steps: int = 32, top_k: int = 10, baseline: str = "thresholds",
                           chunk: int | None = None
                           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per row: attribution per parameter tensor, the ``top_k`` individual entries, and
    the completeness check (sum, output change from the baseline, gap).

    ``baseline="thresholds"`` (default): every parameter starts at 0 except the ``~``
    thresholds, which keep their values (a threshold has no natural zero: 0 would be an
    arbitrary point on the column's scale, and every rule would fire along the path), so
    the credit goes to weights, biases and network parameters. ``"zero"``: everything
    starts at 0, thresholds included.

    ``chunk``: (row, step) pairs differentiated at once, each with its own copy of the
    parameters (default: 1 above :data:`VMAP_PARAMETERS` parameters, else as many as
    :data:`PARAMETER_BUDGET` allows, at least 1); 1 runs the plain model, row by row. The
    result does not depend on it beyond floating-point rounding: the path and its
    weights are Captum's ``IntegratedGradients`` (Gauss-Legendre, ``n_steps`` points)."""
    if baseline not in ("thresholds", "zero"):
        raise ModelError(f"parameter baseline must be 'thresholds' or 'zero', got {baseline!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int)
                              or chunk < 1):
        raise ModelError(f"chunk must be a whole number >= 1, got {chunk!r}")
    flat = _Flat(model)
    n = batch.n
    if chunk is None:
        size = sum(flat.sizes)
        chunk = 1 if size > VMAP_PARAMETERS else max(1, PARAMETER_BUDGET // max(1, size))
    steps, alphas = approximation_parameters("gausslegendre")
    if not flat.tensors:
        raise ModelError("the model has no trainable parameters to attribute")
    device = flat.tensors[0].device
    # Captum's path and weights (its weights are float32 whatever the inputs' dtype)
    alpha = torch.tensor(alphas(n_steps), dtype=torch.float64)
    weight = torch.tensor(steps(n_steps)).float()
    single = _single(model, batch, output, target)
    kept = [baseline == "thresholds" and ".thresholds." in name for name in flat.names]
    was = model.training
    model.eval()
    try:
        if chunk == 1:
            per_tensor, top, sums = _row_by_row(flat, single, n, alpha, weight, kept, top_k)
        else:
            per_tensor, top, sums = _chunks(model, flat, batch, output, target, chunk,
                                            alpha.to(device), weight.to(device), kept, top_k)
        with torch.no_grad():    # the same parameters for every row: plain batches
            base = {name: t if keep else torch.zeros_like(t)
                    for name, t, keep in zip(flat.names, flat.tensors, kept)}
            at_theta, at_zero = (torch.cat([
                single(values, rows).cpu()
                for rows in torch.arange(n, device=device).split(max(chunk, 64))])
                for values in (flat.named(), base))
    finally:
        model.train(was)
    change = at_theta - at_zero
    completeness = pd.DataFrame({
        "row": range(n),
        "sum_of_attributions": sums.numpy(),
        "output_change": change.numpy(),
        "gap": (sums - change.to(sums.dtype)).abs().numpy(),
    })
    return (pd.DataFrame(per_tensor, columns=["row", "parameter", "attribution"]),
            pd.DataFrame(top, columns=["row", "rank", "parameter", "entry", "value",
                                       "attribution"]),
            completeness)


def _row_by_row(flat: _Flat, single, n: int, alpha, weight, kept, top_k: int):
    """One (row, step) pair at a time through the plain model, each parameter tensor its
    own leaf (no flat copy, no vmap): the memory of a few copies of the parameters, what
    a big network needs. Each row's weighted gradients are summed in place over its steps
    and reduced as soon as its last step is done."""
    per_tensor, top, sums = [], [], torch.zeros(n, dtype=torch.float64)
    moving = [name for name, keep in zip(flat.names, kept) if not keep]
    for row in range(n):
        rows = torch.tensor([row], device=flat.tensors[0].device)
        totals = None
        for step in range(len(alpha)):
            leaves = {name: (t.detach() * float(alpha[step])).requires_grad_(True)
                      for name, t, keep in zip(flat.names, flat.tensors, kept) if not keep}
            with torch.enable_grad():
                p = single({**flat.named(), **leaves}, rows)
                grads = torch.autograd.grad(p.sum(), list(leaves.values()),
                                            allow_unused=True, materialize_grads=True)
            del leaves, p
            w = float(weight[step])
            if totals is None:
                totals = [g.mul(w) for g in grads]
            else:
                for total, g in zip(totals, grads):
                    total.add_(g, alpha=w)
            del grads
        attr = dict(zip(moving, totals))
        for name, t in zip(flat.names, flat.tensors):     # theta - baseline
            if name in attr:
                attr[name].mul_(t.detach())
        per_tensor.extend({"row": row, "parameter": name,
                           "attribution": float(attr[name].sum()) if name in attr else 0.0}
                          for name in flat.names)
        top.extend(_top_of_tensors(flat, attr, top_k, row))
        sums[row] = float(sum(a.sum(dtype=torch.float64) for a in attr.values()))
        del attr, totals
    return per_tensor, top, sums


def _top_of_tensors(flat: _Flat, attr: dict, top_k: int, row: int) -> list[dict]:
    """:func:`_top_entries` from the attributions of each tensor: each tensor's ``top_k``,
    then the best of them."""
    found = []
    for t, name in enumerate(flat.names):
        if name not in attr:
            continue
        a = attr[name].flatten()
        values, idx = a.abs().topk(min(top_k, a.numel()))
        found.extend((float(v), t, int(i)) for v, i in zip(values, idx))
    found.sort(key=lambda f: -f[0])
    top = []
    for rank, (size, t, i) in enumerate(found[:top_k]):
        if size == 0.0:      # nothing else carried this decision
            break
        name, shape = flat.names[t], flat.shapes[t]
        local = np.unravel_index(i, tuple(shape) or (1,))
        where = ", ".join(str(int(x)) for x in local) if shape else ""
        top.append({"row": row, "rank": rank + 1, "parameter": name,
                    "entry": f"{name}[{where}]" if where else name,
                    "value": float(flat.tensors[t].detach().flatten()[i]),
                    "attribution": float(attr[name].flatten()[i])})
    return top


def _chunks(model, flat: _Flat, batch: Batch, output: str, target, chunk: int, alpha,
            weight, kept, top_k: int):
    """``chunk`` (row, step) pairs at a time, each with its own copy of the flat parameter
    vector, under ``vmap``: a small network's rows and steps in one call."""
    forward = _forward(model, flat, batch, output)
    data = tuple(batch.values.values())
    theta = flat.values
    base = torch.cat([t.detach().flatten() if keep else torch.zeros(t.numel(), dtype=t.dtype,
                                                                    device=t.device)
                      for t, keep in zip(flat.tensors, kept)])
    diff = theta - base
    n_steps = len(alpha)
    alpha = alpha.to(theta.dtype)
    per_tensor, top, sums = [], [], torch.zeros(batch.n, dtype=torch.float64)
    total = None     # the current row's weighted gradient summed over its steps so far
    for first in range(0, batch.n * n_steps, chunk):
        pairs = torch.arange(first, min(first + chunk, batch.n * n_steps), device=theta.device)
        rows, at = pairs // n_steps, pairs % n_steps
        path = (base + alpha[at].unsqueeze(1) * diff).requires_grad_(True)
        with torch.enable_grad():
            p = forward(path, target[rows], *(d[rows] for d in data))
            grad, = torch.autograd.grad(p.sum(), path)
        del path, p
        w = weight[at].to(grad.dtype)
        # pairs go row by row: each row of the chunk is one slice of it
        bounds = torch.searchsorted(rows, torch.unique_consecutive(rows), right=True)
        start = 0
        for end in bounds.tolist():
            part = w[start:end] @ grad[start:end]
            total = part if total is None else total.add_(part)
            if int(at[end - 1]) == n_steps - 1:       # the row's last step: reduce it
                row = int(rows[end - 1])
                attr = total.mul_(diff)
                per_tensor.extend(_per_tensor(flat, attr, row))
                top.extend(_top_entries(flat, attr, top_k, row))
                sums[row] = float(attr.sum())
                total = None
            start = end
        del grad
    return per_tensor, top, sums


class _Flat:
    """A model's trainable parameters as one flat vector, with their names and shapes."""

    def __init__(self, model):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.tensors = [p for _, p in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]

    @functools.cached_property
    def values(self) -> torch.Tensor:
        """The flat vector (a copy: only the vmapped computation of small networks)."""
        return torch.cat([p.detach().flatten() for p in self.tensors])

    def named(self) -> dict:
        return {n: p.detach() for n, p in zip(self.names, self.tensors)}

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
        trace = functional_call(model, (flat.unflatten(p_flat), buffers), (sub,), {"crisp": False})
        return probability_of(trace.values[output], tgt.view(1))[0]

    def forward(p_batch, tgt, *rows):
        return vmap(one_row)(p_batch, tgt, *rows)

    return forward


def _single(model, batch: Batch, output: str, target: torch.Tensor):
    """``single(parameters, rows)``: the probability of each row's target under one set
    of parameters (by name) shared by the rows (the plain model, no vmap)."""
    buffers = dict(model.named_buffers())
    keys = list(batch.values)

    def single(params, rows):
        sub = Batch({k: batch.values[k][rows] for k in keys}, len(rows),
                    pd.RangeIndex(len(rows)), {})
        trace = functional_call(model, (params, buffers), (sub,), {"crisp": False})
        return probability_of(trace.values[output], target[rows])

    return single


def _per_tensor(flat: _Flat, attr: torch.Tensor, row: int) -> list[dict]:
    """One row's attribution per parameter tensor (``attr``: the row's flat vector)."""
    return [{"row": row, "parameter": name, "attribution": float(a.sum())}
            for name, a in zip(flat.names, attr.split(flat.sizes))]


def _top_entries(flat: _Flat, attr: torch.Tensor, top_k: int, row: int) -> list[dict]:
    """One row's ``top_k`` parameter entries by absolute attribution (none that is 0)."""
    names, shapes = flat.names, flat.shapes
    top = []
    values, idx = attr.abs().topk(min(top_k, attr.numel()))
    offsets = np.cumsum([0] + flat.sizes)
    for rank, flat_index in enumerate(idx.tolist()):
        if float(values[rank]) == 0.0:   # nothing else carried this decision
            break
        t = int(np.searchsorted(offsets, flat_index, side="right") - 1)
        local = np.unravel_index(flat_index - offsets[t], tuple(shapes[t]) or (1,))
        where = ", ".join(str(int(x)) for x in local) if shapes[t] else ""
        top.append({"row": row, "rank": rank + 1, "parameter": names[t],
                    "entry": f"{names[t]}[{where}]" if where else names[t],
                    "value": float(flat.values[flat_index]),
                    "attribution": float(attr[flat_index])})
    return top
