"""Running a grey-box model's networks and residual, checked and named.

:class:`NetworkCalls` is a component of :class:`~greybox.GreyBox`, given the knowledge
base, the network and residual module dicts, the input statistics and the networks that
read standardised inputs: each neural variable's network output (networks shared by
several variables run once over their stacked inputs), the residual's logits, inputs in
the network's own dtype, errors that name the network and the variables it serves.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from greybox.errors import DataError, GreyboxError, ModelError, listed
from greybox.rules import ast as A

from ._batch import Batch, kb_cached
from ._names import _key, _type
from ._statistics import InputStatistics
from .functional import input_for

__all__ = ["NetworkCalls", "input_for", "overflow_error"]


class NetworkCalls:
    """The calls of the networks and residual modules of knowledge base ``kb``.

    Contract: :meth:`run_networks` gives each neural variable's raw output checked
    against its type, :meth:`residual_scores` each decided output's residual logits;
    table arguments are the features ``statistics`` computes (standardised for the
    networks named in ``scaled``). A module's own error becomes a :class:`ModelError`
    naming the network and the variables it serves.
    """

    def __init__(self, kb, *, networks: nn.ModuleDict, residual: nn.ModuleDict | None,
                 statistics: InputStatistics, scaled: tuple[str, ...]):
        self.kb, self.networks, self.residual = kb, networks, residual
        self.statistics, self.scaled = statistics, tuple(scaled)

    def residual_for(self, output: str) -> nn.Module | None:
        """The residual network added to ``output``'s scores, or None."""
        if self.residual is None or _key(output) not in self.residual:
            return None
        return self.residual[_key(output)]

    def run_networks(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each neural variable's raw network output, checked against its type."""
        kb = self.kb
        net_plan = kb_cached(kb, "network_plan", _network_plan)
        out: dict[str, torch.Tensor] = {}
        feats: dict[bool, torch.Tensor] = {}     # the table inputs, standardised or not
        groups: dict[tuple, list[str]] = {}
        for name, network, arg, _ in net_plan.stackable:
            x = batch.values[arg]
            groups.setdefault((network, x.shape[1:]), []).append(name)
        for name in net_plan.others:
            var = kb.variables[name]
            tensors = all(isinstance(kb.variables[a].type, A.TensorType) for a in var.args)
            if tensors:
                args = [batch.values[a] for a in var.args]
            else:
                scaled = var.network in self.scaled
                if scaled not in feats:
                    feats[scaled] = self.statistics.features(batch, standardise=scaled)
                table = feats[scaled]
                args = []
                for a in var.args:
                    t = kb.variables[a].type
                    if isinstance(t, A.TensorType):
                        args.append(batch.values[a])
                    elif isinstance(t, A.EnumType):
                        i = self.statistics.feature_names.index(f"{a}={t.values[0]}")
                        args.append(table[:, i:i + t.size])
                    else:
                        i = self.statistics.feature_names.index(a)
                        args.append(table[:, i:i + 1])
                if not any(isinstance(kb.variables[a].type, A.TensorType) for a in var.args):
                    args = [torch.cat(args, 1)]
            y = self._call(self.networks[_key(var.network)], args,
                           f"network {var.network!r} (for {name!r})")
            out[name] = self._check_output(name, y, batch.n)
        for group in net_plan.groups:           # inputs of declared shapes: known groups
            self._run_group(batch, group, out)
        for (network, _), names in groups.items():
            self._run_group(batch, _group(network, names, [kb.variables[n].args[0] for n in names],
                                          [net_plan.sizes[n] for n in names]), out)
        if batch.overrides:
            out.update(batch.overrides)
        elif net_plan.in_order:
            return out
        return {n: out[n] for n in net_plan.order}

    def _run_group(self, batch: Batch, group: _Group, out: dict) -> None:
        """One call of a network on the stacked inputs of the variables it serves."""
        n, names, m = batch.n, group.names, len(group.args)
        if m > 1:   # member-major: the rows of the first, then of the second...
            x = batch.stacked(group.args)         # once per batch, taken with its rows
            x = x.transpose(0, 1).reshape(m * n, *x.shape[2:])
        else:
            x = batch.values[group.args[0]]
        y = self._call(self.networks[_key(group.network)], [x], group.what)
        if isinstance(y, torch.Tensor):
            # the common cases without further ado: as many logits per row as values, or
            # one logit (or value) per row and member
            if group.size is not None and y.shape == (n * m, group.size):
                out.update(zip(names, torch.split(y, n, 0)) if m > 1 else ((names[0], y),))
                return
            if group.size is None and m > 1 and y.shape in ((m * n,), (m * n, 1)):
                out.update(zip(names, y.reshape(m, n)))
                return
        parts = torch.split(y, n, 0) if m > 1 and isinstance(y, torch.Tensor) \
            and y.shape[0] == n * m else None
        if parts is None and m > 1:
            self._check_output(names[0], y, n * m)
        for i, name in enumerate(names):
            out[name] = self._check_output(name, parts[i] if parts is not None else y, n)

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
            ints = any(isinstance(a, torch.Tensor) and not a.is_floating_point()
                       for a in args)
            hint = ("; integer tensor inputs reach networks as int64 (token ids, e.g. for "
                    "nn.Embedding): give a network that computes on floats a float tensor "
                    "(x.float())") if ints else ""
            raise ModelError(f"{what} failed on its input{many} of shape{many} {shapes}: "
                             f"{type(err).__name__}: {first}{hint}") from err

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
        """Each decided output's residual logits over the standardised table inputs: one
        per row for a bool or additive output, one per value otherwise."""
        if self.residual is None:
            return {}
        feats = self.statistics.features(batch)
        out = {}
        for name in self.kb.decided:
            if _key(name) not in self.residual:
                continue
            y = self._call(self.residual[_key(name)], [feats],
                           f"the residual network for {name!r} (its input: the "
                           f"{feats.shape[1]} standardised table inputs, model.feature_names)")
            t = self.kb.variables[name].type
            one = isinstance(t, A.BoolType) or name in self.kb.additive   # one score a row
            if one and y.dim() == 2 and y.shape[1] == 1:
                y = y[:, 0]
            want = (batch.n,) if one else (batch.n, A.domain(t).size)
            if tuple(y.shape) != want:
                raise ModelError(f"residual for {name!r} returned shape {list(y.shape)}; "
                                 f"expected {list(want)}")
            out[name] = y
        return out


class _Group(NamedTuple):
    """Neural variables served by one network call on their inputs stacked."""

    network: str
    names: tuple[str, ...]
    args: tuple[str, ...]
    #: logits per row of every one of them (a finite non-bool type of that size), or None
    size: int | None
    #: the call, as error messages name it
    what: str


def _group(network: str, names, args, sizes) -> _Group:
    sizes = set(sizes)
    what = (f"network {network!r} (for {listed(map(repr, names))}"
            + (", their inputs stacked in one call)" if len(names) > 1 else ")"))
    return _Group(network, tuple(names), tuple(args), sizes.pop() if len(sizes) == 1 else None,
                  what)


class _NetworkPlan(NamedTuple):
    #: (name, network, input) of neural variables reading one tensor of undeclared shape
    #: (grouped per batch by the shape of their inputs)
    stackable: tuple
    #: neural variables with several or table arguments (one call each)
    others: tuple[str, ...]
    #: the neural variables in order
    order: tuple[str, ...]
    #: logits per row of each finite non-bool one (None for the others)
    sizes: dict
    #: groups of neural variables reading one tensor each of declared shapes
    groups: tuple[_Group, ...]
    #: whether the groups' outputs come in ``order`` with nothing else to run
    in_order: bool


def _network_plan(kb) -> _NetworkPlan:
    """Neural variables that read one tensor each (a network serving several of them runs
    once on their inputs stacked, when their shapes agree: known from the rules when
    the tensors' shapes are declared); the others; the neural variables in order; and
    how many logits per row each finite non-bool one takes (None for the others)."""
    stackable, others, sizes = [], [], {}
    declared: dict[tuple, list[str]] = {}
    for name in kb.neural:
        var = kb.variables[name]
        t = var.type
        sizes[name] = (A.domain(t).size if A.is_finite_type(t)
                       and not isinstance(t, A.BoolType) else None)
        arg = var.args[0] if len(var.args) == 1 else None
        if arg is None or not isinstance(kb.variables[arg].type, A.TensorType):
            others.append(name)
        else:
            stackable.append((name, var.network, arg, sizes[name]))
    # a network whose inputs all have declared shapes: its groups are known here (else
    # grouped per batch, so that inputs of one shape still go through it together)
    undeclared = {network for _, network, arg, _ in stackable
                  if kb.variables[arg].type.shape is None}
    for name, network, arg, _ in stackable:
        if network not in undeclared:
            declared.setdefault((network, tuple(kb.variables[arg].type.shape)),
                                []).append(name)
    stackable = [entry for entry in stackable if entry[1] in undeclared]
    groups = tuple(_group(network, names, [kb.variables[n].args[0] for n in names],
                          [sizes[n] for n in names])
                   for (network, _), names in declared.items())
    in_order = not stackable and not others and \
        tuple(n for g in groups for n in g.names) == tuple(kb.neural)
    return _NetworkPlan(tuple(stackable), tuple(others), tuple(kb.neural), sizes, groups,
                        in_order)


def overflow_error(model, name: str, logits: np.ndarray, batch: Batch) -> GreyboxError:
    """The error for residual logits of ``name`` that are not finite on a row (an input far
    beyond the range the network's arithmetic holds): a :class:`DataError` naming the row
    by its label and the inputs to blame (those whose standardised value overflowed, else
    the farthest), or a :class:`ModelError` when the residual's weights are not finite.
    Reads ``model`` through its public names only."""
    bad = ~np.isfinite(logits.reshape(len(logits), -1)).all(axis=1)
    pos = int(np.flatnonzero(bad)[0])
    got = logits.reshape(len(logits), -1)[pos]
    got = got[~np.isfinite(got)][0]
    label = batch.index[pos]
    label = label.item() if hasattr(label, "item") else label
    with torch.no_grad():
        feats = model.features(batch.take(torch.as_tensor([pos])))[0].double().cpu().numpy()
    names = list(model.feature_names)
    reals = [i for i, f in enumerate(names) if f in model.kb.variables]
    over = [i for i in reals if not np.isfinite(feats[i])]
    if not over:
        net = model.residual_for(name)
        broken = [n for n, p in (net.named_parameters() if net is not None else ())
                  if not torch.isfinite(p).all()]
        if broken:
            return ModelError(f"the residual network for {name!r} has non-finite weights "
                              f"({broken[0]!r}): its logit at row {label!r} is "
                              f"{float(got)!r}")
        over = [max(reals, key=lambda i: abs(feats[i]))] if reals else []
    shown = []
    for i in over:
        f = names[i]
        value = batch.columns[f][pos] if f in batch.columns else feats[i]
        value = value.item() if hasattr(value, "item") else value
        lo, hi, from_data = model.input_range(f)
        where = "training range" if from_data else "declared range"
        shown.append(f"input {f!r} = {value!r} (its {where} [{lo:.6g}, {hi:.6g}])")
    blame = (", ".join(shown) + " lies" if len(shown) == 1 else ", ".join(shown) + " lie") \
        if shown else "the inputs lie"
    return DataError(f"the residual network for {name!r} overflowed at row {label!r} (its "
                     f"logit is {float(got)!r}): {blame} beyond "
                     "what its float arithmetic holds, so the decision is not defined there; "
                     "drop the row or clip the input to a plausible value")
