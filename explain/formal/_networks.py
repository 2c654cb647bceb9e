"""One encoding of ReLU networks, shared by the solver backends.

A network made of ``Linear`` and ``ReLU`` layers (``Flatten``, ``Identity`` and
``Dropout`` pass through in eval mode) is a piecewise-linear function. :func:`propagate`
walks its layers once and asks the backend for two things only: an affine combination of
its current values (a Z3 sum of exact rationals, a linear expression of the
mixed-integer program) and a ReLU of one value (a Z3 ``If``, a big-M binary). Networks
above ``max_relus`` hidden ReLUs are refused with a clear error rather than a hang.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch import nn

from greybox.errors import ModelError

__all__ = ["count_relus", "layers_of", "propagate"]

_PASS = (nn.Flatten, nn.Identity, nn.Dropout)


def layers_of(net: nn.Module) -> list[nn.Module]:
    """The layers of a network built from Sequential, Linear and ReLU; ModelError
    naming the first layer that is not."""
    if isinstance(net, nn.Sequential):
        out = []
        for m in net:
            out.extend(layers_of(m))
        return out
    if isinstance(net, (nn.Linear, nn.ReLU, *_PASS)):
        return [net]
    raise ModelError(f"{type(net).__name__} layers cannot be encoded exactly; input-level "
                     "reasoning needs networks of Linear and ReLU layers (reason at the "
                     "concept level instead)")


def count_relus(net: nn.Module) -> int:
    """Hidden ReLUs: the units of each Linear layer followed by a ReLU."""
    layers = layers_of(net)
    total = 0
    for i, m in enumerate(layers):
        if isinstance(m, nn.ReLU):
            prev = next((p for p in reversed(layers[:i]) if isinstance(p, nn.Linear)), None)
            if prev is not None:
                total += prev.out_features
    return total


def propagate(net: nn.Module, inputs: Sequence, *,
              affine: Callable[[Sequence, np.ndarray, float], object],
              relu: Callable[[object, int], object], max_relus: int = 64,
              what: str = "the network") -> list:
    """The network's outputs as backend terms of ``inputs``.

    ``affine(values, weights, bias)`` builds ``bias + sum(weights[i] * values[i])`` (the
    weights in float64; zero weights may be skipped); ``relu(value, unit)`` builds
    ``max(value, 0)`` for hidden unit ``unit`` of the current layer.
    """
    layers = layers_of(net)
    relus = count_relus(net)
    if relus > max_relus:
        raise ModelError(f"{what} has {relus} hidden ReLUs; exact encoding is limited to "
                         f"{max_relus} (Z3 slows sharply past about 20): pass a larger "
                         "max_relus, or reason at the concept level")
    values = list(inputs)
    for m in layers:
        if isinstance(m, nn.Linear):
            if m.in_features != len(values):
                raise ModelError(f"{what}: a Linear layer expects {m.in_features} inputs, "
                                 f"the encoding has {len(values)}")
            w = m.weight.detach().double().cpu().numpy()
            b = (m.bias.detach().double().cpu().numpy() if m.bias is not None
                 else np.zeros(m.out_features))
            values = [affine(values, w[j], float(b[j])) for j in range(m.out_features)]
        elif isinstance(m, nn.ReLU):
            values = [relu(v, k) for k, v in enumerate(values)]
    return values
