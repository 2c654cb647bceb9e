"""Blaming training examples: Captum's TracInCP with the model's current parameters.

TracIn compares gradients of the loss per training row with the test row's, over the
parameters of the chosen ``layers`` (modules of the model, by the names of
``model.named_modules()``). By default every layer up to :data:`TRACIN_ALL_LAYERS`
trainable parameters; beyond, the last layers, as TracIn's authors do on big networks
(Pruthi et al., 2020, keep a ResNet-50's last layer for ImageNet): the rules' own
parameters (weights, thresholds, decision biases, which sit on top of the networks) and
the last layer of each network and residual network, in the order the forward pass runs
them. Training rows are differentiated in batches of at most :data:`TRACIN_BUDGET`
gradient entries (at least one row), never a gradient of every parameter for every row
of a batch of 64.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pandas as pd
import torch
from captum.influence import TracInCP
from torch import nn
from torch.utils.data import TensorDataset

from greybox import Batch
from greybox.errors import ModelError, listed
from greybox.rules import ast as A

__all__ = ["TRACIN_ALL_LAYERS", "TRACIN_BUDGET", "tracin_influence", "tracin_layers"]

#: Trainable parameters up to which TracIn compares the gradients of every layer by
#: default; a bigger model is compared on its last layers (see the module's text).
TRACIN_ALL_LAYERS = 1_000_000

#: Gradient entries (rows times selected parameters) held per training batch.
TRACIN_BUDGET = 2 ** 24


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


def tracin_influence(model, output: str, train, test_batch, test_target, *, k: int = 10,
                     layers=None) -> pd.DataFrame:
    """The ``k`` training rows whose gradient most opposes the test row's correct answer
    (TracIn with the current parameters as the one checkpoint): the examples that pushed
    the model toward its mistake -- often mislabelled ones. ``layers``: see
    :func:`tracin_layers`."""
    train_data, train_targets = train
    tb = model.batch(train_data)
    keys = list(tb.values)
    chosen = tracin_layers(model, layers, test_batch)
    y = _indices(model.kb, output, np.asarray(train_targets))
    dataset = TensorDataset(*[tb.values[key] for key in keys], y.to(model.device))
    wrapper = _Probabilities(model, keys, output)
    params = {id(p): p for name in chosen for p in model.get_submodule(name).parameters()}
    size = sum(p.numel() for p in params.values())
    batch_size = max(1, min(64, TRACIN_BUDGET // max(1, size)))
    frozen = [p for p in params.values() if not p.requires_grad]
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
            with warnings.catch_warnings():    # it switches frozen ones on (undone below)
                warnings.filterwarnings("ignore", "Setting required grads for layer")
                tracin = TracInCP(wrapper, dataset, checkpoints=[path],
                                  checkpoints_load_func=load, loss_fn=_Loss(),
                                  batch_size=batch_size,
                                  layers=[f"model.{name}" for name in chosen])
            target = _indices(model.kb, output, [test_target]).to(model.device)
            inputs = (*[test_batch.values[key] for key in keys], target)
            result = tracin.influence(inputs, k=min(k, len(dataset)), proponents=False)
        finally:
            model.train(was)
            for p in frozen:   # Captum switches gradients on in the layers it is given
                p.requires_grad_(False)
    finally:
        os.unlink(path)
    idx = result.indices[0].tolist()
    scores = result.influence_scores[0].tolist()
    labels = [tb.index[i] for i in idx]
    targets = np.asarray(train_targets)
    return pd.DataFrame({"train_row": labels, "influence": scores,
                         "label": [targets[i] for i in idx]})


def _owners(model) -> list[str]:
    """Names of the modules that own trainable parameters themselves, in module order."""
    return [name for name, m in model.named_modules()
            if any(p.requires_grad for p in m.parameters(recurse=False))]


def _network_roots(model) -> list[str]:
    """``networks.<name>`` and ``residual.<name>``: the model's networks."""
    roots = []
    for prefix in ("networks", "residual"):
        container = getattr(model, prefix, None)
        if container is not None:
            roots.extend(f"{prefix}.{key}" for key in container)
    return roots


def tracin_layers(model, layers=None, batch=None) -> list[str]:
    """The modules whose parameters' gradients TracIn compares, by name.

    Parameters
    ----------
    model : GreyBox
    layers : None, "all", "last", str or list of str
        None (default): ``"all"`` for a model of at most :data:`TRACIN_ALL_LAYERS`
        trainable parameters, else ``"last"``. ``"all"``: every module that owns
        trainable parameters. ``"last"``: the rules' parameters (weights, thresholds,
        decision biases) and each network's last layer with trainable parameters.
        Otherwise names of the model's modules (one, or a list): a module stands for its
        parameters and those of its submodules (``"networks.digit"`` for a whole
        network, ``"rules"`` for every rule).
    batch : Batch, optional
        Rows of the model's inputs: its first row is run to see which layer of each
        network runs last (without it, the last in module order).

    Returns
    -------
    list of str
        Module names, none inside another one of the list.

    Raises
    ------
    ModelError
        For a name that is no module of the model, or a module without trainable
        parameters, listing the valid names.

    Examples
    --------
    >>> import greybox as gb
    >>> from torch import nn
    >>> from greybox.explain.debug._tracin import tracin_layers
    >>> model = gb.GreyBox('''
    ... input img: tensor[4]
    ... neural d: bool = net(img)
    ... output y: bool
    ... rule r: d -> y
    ... ''', {"net": nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))})
    >>> tracin_layers(model)
    ['networks.net.0', 'networks.net.2', 'rules.r', 'decisions.y']
    >>> tracin_layers(model, "last")
    ['networks.net.2', 'rules.r', 'decisions.y']
    >>> tracin_layers(model, ["networks.net", "networks.net.0"])
    ['networks.net']
    """
    owners = _owners(model)
    if not owners:
        raise ModelError("the model has no trainable parameters for TracIn")
    if layers is None:
        size = sum(p.numel() for p in model.parameters() if p.requires_grad)
        layers = "all" if size <= TRACIN_ALL_LAYERS else "last"
    if isinstance(layers, str) and layers in ("all", "last"):
        return owners if layers == "all" else _last_layers(model, owners, batch)
    return _named_layers(model, layers, owners)


def _named_layers(model, layers, owners: list[str]) -> list[str]:
    """The modules named by ``layers`` (a name or a list of them), none inside another
    one listed; a ModelError for a name that is no module with trainable parameters
    (``owners``: the modules that hold some)."""
    names = [layers] if isinstance(layers, str) else layers
    if not isinstance(names, (list, tuple)) or not names or \
            not all(isinstance(n, str) for n in names):
        raise ModelError(f"layers= takes 'all', 'last' or a non-empty list of module names, "
                         f"got {layers!r}")
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or not any(p.requires_grad for p in modules[name].parameters()):
            why = "no module" if name not in modules else "a module without trainable parameters"
            groups = _network_roots(model) + ["rules"]
            raise ModelError(f"TracIn layer {name!r} is {why} of the model; the layers with "
                             f"trainable parameters are {listed(owners)} (or a module holding "
                             f"several, such as {listed(groups, limit=5)})")
    # a module inside another one listed is counted with it
    return [n for n in dict.fromkeys(names)
            if not any(n.startswith(o + ".") for o in names)]


def _last_layers(model, owners: list[str], batch) -> list[str]:
    """Each network's last layer with trainable parameters (in the order the forward pass
    finishes them on ``batch``'s first row; module order without), then the rules'
    parameters."""
    roots = _network_roots(model)
    inside = {root: [o for o in owners if o == root or o.startswith(root + ".")]
              for root in roots}
    done: list[str] = []
    if batch is not None and batch.n:
        handles = [model.get_submodule(o).register_forward_hook(
            lambda *_, name=o: done.append(name)) for own in inside.values() for o in own]
        try:
            with torch.no_grad():
                model(batch.take(torch.arange(1)))
        finally:
            for h in handles:
                h.remove()
    chosen = []
    for root, own in inside.items():
        if not own:
            continue
        inner = [o for o in own if o != root] or own      # a bare layer: itself
        ran = [o for o in done if o in inner]
        chosen.append(ran[-1] if ran else inner[-1])
    symbolic = [o for o in owners if not any(o == r or o.startswith(r + ".") for r in roots)]
    return chosen + symbolic
