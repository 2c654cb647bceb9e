"""A grey-box model's training objective: the loss, its labels, the rules as the prior.

:class:`Objective` is a component of :class:`~greybox.GreyBox`, given the knowledge base,
the rule values and the network calls: the loss of a trace (labels on any variable, soft
constraints), the pull of rule weights and thresholds toward the values written in the
rules, and the optimiser's parameter groups. It owns what :func:`greybox.fit` sets for
regression outputs (:attr:`Objective.output_spread`, :attr:`Objective.regression_loss`).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
from torch import nn

from greybox.rules import ast as A

from ._batch import to_targets
from ._calls import NetworkCalls
from ._parameters import RuleValues
from ._trace import Trace
from .functional import soft_violation

__all__ = ["Objective"]


class Objective:
    """The training objective of knowledge base ``kb`` over the parameters in ``values``
    (and the residual networks of ``calls``).

    Contract: :meth:`loss` is the loss of a trace and its labels; :meth:`prior_terms`,
    :meth:`prior_penalty` and :meth:`parameter_groups` say how rule parameters are
    regularised and how fast each parameter learns. The model's own things (its compiled
    temperatures, its parameters, its device) are passed in, never read.
    """

    #: the loss of additive (regression) outputs: "squared" or "absolute" error (set by
    #: :func:`greybox.fit`'s ``loss``)
    regression_loss = "squared"

    def __init__(self, kb, *, values: RuleValues, calls: NetworkCalls):
        self.kb, self.values, self.calls = kb, values, calls
        #: per additive output, the spread (standard deviation) of its training labels
        self.output_spread: dict[str, float] = {}

    def targets(self, targets, n, index: pd.Index | None, device):
        """Labels read for ``n`` rows, on ``device``; a bad one is named by its row's label
        in ``index`` (the data's), else by its position."""
        if hasattr(targets, "values") and hasattr(targets, "mask") and not isinstance(
                targets, (pd.DataFrame, pd.Series, Mapping)):
            return targets.to(device)
        default = self.kb.outputs[0] if len(self.kb.outputs) == 1 else None
        return to_targets(self.kb, targets, n, index=index, default=default).to(device)

    def loss(self, trace: Trace, labels, device) -> torch.Tensor:
        """Negative log-likelihood of every labelled variable of ``labels`` (squared error
        for real ones, :attr:`regression_loss` for additive ones) plus each soft
        constraint's weight times its mean :func:`~greybox.functional.soft_violation`."""
        total = self._label_terms(trace, labels) if labels is not None else None
        stacked = set()  # the groundings of a relational constraint, taken at once
        for names, weights, t in getattr(trace.constraints, "soft_stacks", tuple)():
            v = soft_violation(t, trace.semantics)
            total = _plus(total, (weights * v.mean(0)).sum())
            stacked.update(names)
        for c in self.kb.constraints.values():
            if c.hard or c.name in stacked:
                continue
            v = soft_violation(trace.constraints[c.name], trace.semantics)
            total = _plus(total, c.weight * v.mean())
        return torch.zeros((), device=device) if total is None else total

    def _label_terms(self, trace: Trace, labels) -> torch.Tensor | None:
        """The sum of the label terms of :meth:`loss` (None: no labelled row)."""
        total = None       # the sum of the terms (no zero tensor to start it)
        stacked_labels = set()   # a family's members, taken at once
        for names, y, mask in getattr(labels, "stacks", ()):
            total = _plus(total, _stacked_label_loss(trace.log_probs(names, y), mask))
            stacked_labels.update(names)
        for name in labels.values:
            if name in stacked_labels:
                continue
            y, mask = labels.values[name], labels.mask[name]
            if name in labels.complete:
                mask = None       # every row labelled: no look at the mask
            elif not bool(mask.any()):
                continue
            var = self.kb.variables[name]
            if name in self.kb.additive:
                total = _plus(total, self._regression_loss(name, trace.values[name], y,
                                                           mask))
            elif A.is_finite_type(var.type):
                total = _plus(total, _label_loss(trace.log_prob(name, y), mask))
            else:
                pred = trace.values[name]
                if mask is not None:
                    pred, y = pred[mask], y[mask]
                total = _plus(total, ((pred - y) ** 2).mean())
        return total

    def _regression_loss(self, name: str, pred, y, mask) -> torch.Tensor:
        """An additive output's loss: squared or absolute error (:attr:`regression_loss`)
        of its score in units of its labels' spread (:attr:`output_spread`), so that it
        weighs like the other terms whatever the unit of the labels."""
        if mask is not None:
            pred, y = pred[mask], y[mask]
        err = (pred - y) / self.output_spread.get(name, 1.0)
        return (err.abs() if self.regression_loss == "absolute" else err ** 2).mean()

    def _weight_units(self) -> dict[str, float]:
        """Per rule module key, the unit of its weight where it is not 1: the labels'
        spread of the additive output it adds to."""
        spread = self.output_spread
        if not spread:
            return {}
        out = {}
        for r in self.kb.rules.values():
            s = spread.get(r.head.name)
            if s is not None:
                out[self.values.index.key("rule", r.name)] = s
        return out

    def prior_terms(self, compiled, temperature: float
                    ) -> list[tuple[nn.Parameter, float, float]]:
        """``(parameter, prior, scale)`` of every learnable rule weight and ``~`` threshold:
        the value written in the rules and the unit in which a move away from it is
        measured (1 for a weight, which is in logits -- the labels' spread for one adding
        to a regression output; for a threshold, the spread of what it is compared with,
        as in :meth:`parameter_groups`)."""
        terms: list[tuple[nn.Parameter, float, float]] = []
        spread = self._weight_units()
        for key, m in self.values.rules.items():
            if isinstance(m.weight, nn.Parameter):
                terms.append((m.weight, m._init[0], spread.get(key, 1.0)))
        seen: set[int] = set()
        for s in (*self.kb.rules.values(), *self.kb.constraints.values()):
            body = s.body if isinstance(s, A.Rule) else s.formula
            for node in A.walk(body):
                if not isinstance(node, A.Compare):
                    continue
                spread = float(compiled.temperature(node)) / temperature
                for num in A.walk(node):
                    if isinstance(num, A.Num) and num.learnable and \
                            self.values.index.place(num) is not None:
                        p = self.values.threshold(num)
                        if id(p) not in seen:
                            seen.add(id(p))
                            # self.kb keeps the rule file's numbers: the prior
                            terms.append((p, float(num.value), max(spread, 1e-12)))
        return terms

    def prior_penalty(self, weight_decay: float, compiled, temperature: float, device
                      ) -> torch.Tensor:
        """``weight_decay / 2 * sum(((p - prior) / scale) ** 2)`` over :meth:`prior_terms`
        (see :meth:`greybox.GreyBox.prior_penalty`)."""
        return _prior_penalty(self.prior_terms(compiled, temperature), weight_decay, device)

    def parameter_groups(self, lr: float, parameters: list, compiled, temperature: float
                         ) -> list[dict]:
        """Optimiser parameter groups: thresholds learn at ``lr`` times the spread of what
        they are compared with (so a threshold on an area and one on a ratio move alike);
        an additive (regression) output's bias, rule weights and the last linear layer
        of its residual at ``lr`` times its labels' spread (:attr:`output_spread`: they
        are in the labels' unit); everything else at ``lr``. Rule weights and thresholds
        get ``weight_decay=0``:
        they are regularised toward the rules' values by :meth:`prior_penalty`, not toward
        0; biases, networks and the residual keep the optimiser's weight decay.
        ``parameters``: every parameter of the model, in its order."""
        terms = self.prior_terms(compiled, temperature)
        weights = {id(m.weight) for m in self.values.rules.values()}
        # an additive output's bias and rule weights are in its labels' unit: they learn
        # at lr times the labels' spread
        biases = {id(self.values.decisions_bias(n)): s for n, s in self.output_spread.items()
                  if n in self.kb.additive}
        # so is the last linear layer of its residual network (its output is added)
        for n, s in self.output_spread.items():
            net = self.calls.residual_for(n) if n in self.kb.additive else None
            last = [m for m in (net.modules() if net is not None else ())
                    if isinstance(m, nn.Linear)]
            if last:
                biases.update({id(p): s for p in last[-1].parameters()})
        seen = {id(p) for p, _, _ in terms} | set(biases)
        groups = [{"params": [p for p in parameters if id(p) not in seen], "lr": lr}]
        rule_weights = [p for p, _, scale in terms if id(p) in weights and scale == 1.0]
        if rule_weights:
            groups.append({"params": rule_weights, "lr": lr, "weight_decay": 0.0})
        groups += [{"params": [p], "lr": lr * scale, "weight_decay": 0.0}
                   for p, _, scale in terms if id(p) in weights and scale != 1.0]
        bias_ids = {id(self.values.decisions_bias(n)) for n in self.output_spread}
        groups += [{"params": [p], "lr": lr * biases[id(p)]}
                   | ({"weight_decay": 0.0} if id(p) in bias_ids else {})
                   for p in parameters if id(p) in biases]
        groups += [{"params": [p], "lr": lr * scale, "weight_decay": 0.0}
                   for p, _, scale in terms if id(p) not in weights]
        return groups


def _stacked_label_loss(lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sum over columns of ``-mean(lp)`` over each column's labelled rows whose label is
    possible (as the loss takes each variable alone; columns with no such row add 0)."""
    ok = mask & torch.isfinite(lp)
    if bool(ok.all()):
        return -lp.mean(0).sum()
    count = ok.sum(0)
    keep = count > 0
    return -(torch.where(ok, lp, 0.0).sum(0)[keep] / count[keep]).sum()


def _label_loss(lp: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """``-mean(lp)`` over the labelled rows (``mask``; None: all) whose label is possible:
    rows whose label has probability 0 teach nothing (None when no row is left)."""
    if mask is None:
        mean = lp.mean()
        if bool(torch.isfinite(mean)):    # log-probabilities are <= 0: all finite
            return -mean
        ok = torch.isfinite(lp)
    else:
        ok = mask & torch.isfinite(lp)
        if bool(ok.all()):
            return -lp.mean()
    return -lp[ok].mean() if bool(ok.any()) else None


def _plus(total: torch.Tensor | None, term: torch.Tensor | None) -> torch.Tensor | None:
    """``total + term``, None standing for nothing yet (or nothing to add)."""
    return term if total is None else total if term is None else total + term


def _prior_penalty(terms, weight_decay: float, device) -> torch.Tensor:
    """``weight_decay / 2 * sum(((p - prior) / scale) ** 2)`` over ``(p, prior, scale)``."""
    total = torch.zeros((), device=device)
    if not weight_decay:
        return total
    for p, prior, scale in terms:
        total = total + ((p - prior) / scale) ** 2
    return 0.5 * weight_decay * total
