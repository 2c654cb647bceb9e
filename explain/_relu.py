"""Exact Z3 encoding of small ReLU networks, for reasoning at the input level.

A network made of ``Linear`` and ``ReLU`` layers (``Flatten``, ``Identity`` and
``Dropout`` pass through in eval mode) is a piecewise-linear function; it is encoded
exactly over Z3 reals (weights as the exact rationals of their float values, each ReLU
an ``If``). Z3 slows sharply as ReLUs multiply, so networks above ``max_relus`` are
refused with a clear error rather than a hang; every query also has a timeout.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import z3
from torch import nn

from greybox.errors import ModelError

__all__ = ["count_relus", "encode_network", "layers_of"]

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


def _rational(x: float) -> z3.RatNumRef:
    return z3.RealVal(Fraction(float(x)))


def encode_network(net: nn.Module, inputs: list, *, max_relus: int = 64) -> list:
    """The network's outputs as Z3 terms of ``inputs`` (Z3 reals, one per input unit).

    Raises ModelError for layers other than Linear/ReLU (and pass-through ones) and for
    networks with more than ``max_relus`` hidden ReLUs.

    Examples
    --------
    >>> import torch, z3
    >>> from torch import nn
    >>> from greybox.explain._relu import encode_network
    >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
    >>> with torch.no_grad():
    ...     _ = net[0].weight.fill_(2.0), net[0].bias.fill_(-1.0)
    >>> x = z3.Real("x")
    >>> (y,) = encode_network(net, [x])
    >>> z3.simplify(z3.substitute(y, (x, z3.RealVal(3))))
    5
    """
    layers = layers_of(net)
    relus = count_relus(net)
    if relus > max_relus:
        raise ModelError(f"the network has {relus} hidden ReLUs; exact encoding is limited to "
                         f"{max_relus} (Z3 slows sharply past about 20): pass a larger "
                         "max_relus, or reason at the concept level")
    values = list(inputs)
    for m in layers:
        if isinstance(m, nn.Linear):
            if m.in_features != len(values):
                raise ModelError(f"Linear layer expects {m.in_features} inputs, the encoding "
                                 f"has {len(values)}")
            w = m.weight.detach().double().cpu()
            b = m.bias.detach().double().cpu() if m.bias is not None else \
                torch.zeros(m.out_features, dtype=torch.float64)
            out = []
            for j in range(m.out_features):
                terms = [_rational(w[j, i]) * values[i] for i in range(len(values))
                         if float(w[j, i]) != 0.0]
                out.append(z3.Sum(terms) + _rational(b[j]) if terms else _rational(b[j]))
            values = out
        elif isinstance(m, nn.ReLU):
            values = [z3.If(v > 0, v, z3.RealVal(0)) for v in values]
    return values
