"""Running a grey-box model's networks and residual, checked and named.

:class:`NetworkCalls` is mixed into :class:`~greybox.GreyBox`: each neural variable's
network output (networks shared by several variables run once over their stacked inputs),
the residual's logits, inputs in the network's own dtype, errors that name the network and
the variables it serves.
"""

from __future__ import annotations

import torch
from torch import nn

from greybox.errors import GreyboxError, ModelError
from greybox.rules import ast as A

from ._batch import Batch, kb_cached
from ._names import _key, _type
from .functional import input_for

__all__ = ["NetworkCalls", "input_for"]




class NetworkCalls:
    """Network and residual calls of a :class:`~greybox.GreyBox` (a mixin)."""

    def run_networks(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each neural variable's raw network output, checked against its type."""
        kb = self.kb
        stackable, others, order, sizes = kb_cached(kb, "network_plan", _network_plan)
        out: dict[str, torch.Tensor] = {}
        feats = None
        groups: dict[tuple, list[str]] = {}
        for name, network, arg, _ in stackable:
            x = batch.values[arg]
            groups.setdefault((network, x.shape[1:]), []).append(name)
        for name in others:
            var = kb.variables[name]
            tensors = all(isinstance(kb.variables[a].type, A.TensorType) for a in var.args)
            if tensors:
                args = [batch.values[a] for a in var.args]
            else:
                if feats is None:
                    feats = self._features(batch)
                args = []
                for a in var.args:
                    t = kb.variables[a].type
                    if isinstance(t, A.TensorType):
                        args.append(batch.values[a])
                    elif isinstance(t, A.EnumType):
                        i = self.feature_names.index(f"{a}={t.values[0]}")
                        args.append(feats[:, i:i + t.size])
                    else:
                        i = self.feature_names.index(a)
                        args.append(feats[:, i:i + 1])
                if not any(isinstance(kb.variables[a].type, A.TensorType) for a in var.args):
                    args = [torch.cat(args, 1)]
            y = self._call(self.networks[_key(var.network)], args,
                           f"network {var.network!r} (for {name!r})")
            out[name] = self._check_output(name, y, batch.n)
        for (network, _), names in groups.items():
            m = len(names)
            if m > 1:   # member-major: the rows of the first, then of the second...
                x = batch.stacked(tuple(kb.variables[n].args[0] for n in names))
                x = x.transpose(0, 1).reshape(m * batch.n, *x.shape[2:])
            else:
                x = batch.values[kb.variables[names[0]].args[0]]
            y = self._call(self.networks[_key(network)], [x],
                           f"network {network!r} (for {', '.join(map(repr, names))}"
                           + (", their inputs stacked in one call)" if m > 1 else ")"))
            if m > 1 and sizes[names[0]] is None and isinstance(y, torch.Tensor) and \
                    y.shape in ((m * batch.n,), (m * batch.n, 1)) and \
                    isinstance(kb.variables[names[0]].type, A.BoolType):
                rows = y.reshape(m, batch.n)    # bools: one logit per row and member
                for i, n in enumerate(names):
                    out[n] = rows[i]
                continue
            parts = torch.split(y, batch.n, 0) if m > 1 and isinstance(y, torch.Tensor) \
                and y.shape[0] == batch.n * m else None
            if parts is None and m > 1:
                self._check_output(names[0], y, batch.n * m)
            for i, n in enumerate(names):
                part = parts[i] if parts is not None else y
                # the common case (as many logits per row as values) without further ado
                ok = isinstance(part, torch.Tensor) and part.shape == (batch.n, sizes[n])
                out[n] = part if ok else self._check_output(n, part, batch.n)
        out.update(batch.overrides)
        return {n: out[n] for n in order}

    @staticmethod
    def _call(module: nn.Module, args: list, what: str):
        """``module(*args)``, floating-point inputs first converted to the dtype of the
        module's first floating-point parameter (float64 arrays meet float32 weights);
        an error raised inside the module becomes a :class:`ModelError` naming ``what``
        (the network and the variables it serves) and the input shapes."""
        args = [input_for(module, a) for a in args]
        try:
            return module(*args)
        except (GreyboxError, torch.OutOfMemoryError):
            raise
        except Exception as err:
            shapes = ", ".join(str(list(a.shape)) if isinstance(a, torch.Tensor)
                               else type(a).__name__ for a in args)
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            many = "s" if len(args) > 1 else ""
            raise ModelError(f"{what} failed on its input{many} of shape{many} {shapes}: "
                             f"{type(err).__name__}: {first}") from err

    def _check_output(self, name: str, y, n: int) -> torch.Tensor:
        var = self.kb.variables[name]
        t = var.type
        if not isinstance(y, torch.Tensor):
            raise ModelError(f"network {var.network!r} for {name!r} returned "
                             f"{type(y).__name__}, expected a tensor")
        if A.is_finite_type(t) and not isinstance(t, A.BoolType):
            k = A.domain(t).size
            if tuple(y.shape) != (n, k):
                raise ModelError(f"network {var.network!r} for {name!r} ({_type(t)}) returned "
                                 f"shape {list(y.shape)}; expected [{n}, {k}] (one logit per "
                                 "value)")
            return y
        if y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if tuple(y.shape) != (n,):
            what = "one logit" if isinstance(t, A.BoolType) else "one value"
            raise ModelError(f"network {var.network!r} for {name!r} ({_type(t)}) returned shape "
                             f"{list(y.shape)}; expected [{n}] or [{n}, 1] ({what} per row)")
        return y

    def residual_scores(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.residual is None:
            return {}
        feats = self._features(batch)
        out = {}
        for name in self.kb.decided:
            if _key(name) not in self.residual:
                continue
            y = self._call(self.residual[_key(name)], [feats],
                           f"the residual network for {name!r} (its input: the "
                           f"{feats.shape[1]} standardised table inputs, model.feature_names)")
            t = self.kb.variables[name].type
            k = A.domain(t).size
            if isinstance(t, A.BoolType) and y.dim() == 2 and y.shape[1] == 1:
                y = y[:, 0]
            want = (batch.n,) if isinstance(t, A.BoolType) else (batch.n, k)
            if tuple(y.shape) != want:
                raise ModelError(f"residual for {name!r} returned shape {list(y.shape)}; "
                                 f"expected {list(want)}")
            out[name] = y
        return out


def _network_plan(kb):
    """Neural variables that read one tensor each (a network serving several of them runs
    once on their inputs stacked, when their shapes agree): (name, network, input); the
    others; the neural variables in order; and how many logits per row each finite
    non-bool one takes (None for the others)."""
    stackable, others, sizes = [], [], {}
    for name in kb.neural:
        var = kb.variables[name]
        t = var.type
        sizes[name] = (A.domain(t).size if A.is_finite_type(t)
                       and not isinstance(t, A.BoolType) else None)
        if len(var.args) == 1 and isinstance(kb.variables[var.args[0]].type, A.TensorType):
            stackable.append((name, var.network, var.args[0], sizes[name]))
        else:
            others.append(name)
    return tuple(stackable), tuple(others), tuple(kb.neural), sizes
