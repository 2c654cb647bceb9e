"""How each grounding of a soft constraint or rule pushed a concept in training.

A soft constraint does not decide anything: it shapes training, by adding
``weight * (1 - truth)`` (``-log truth`` under the probabilistic semantics) to the loss for
each grounding. Where rules tie entities together ("friends of smokers smoke"), one
concept such as ``smokes(anna)`` is read by many groundings, and each pulls it its own
way. :func:`pushes` says how: for one row, the gradient of each grounding's loss term with
respect to the concept's logit, split exactly along the training loss --

- each soft-constraint grounding whose formula reads the concept: ``-d (w * loss(truth)) /
  d logit``;
- each rule grounding whose body reads the concept: the push its head's training signal
  (the head's label and whatever reads the head) sends back through that rule's
  contribution to the head's score, ``-dL/d score(head) * signed weight * d body / d
  logit``;
- the concept's own label, when ``targets`` gives one.

The pushes add up to the whole gradient of the row's training loss with respect to the
logit (``total``); what does not reach the concept along these paths (a labelled
definition over it, a head decided jointly with others under hard constraints) is the
``gap``, reported, never hidden.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules import closure, family_columns, plan, type_to_text

__all__ = ["Pushes", "pushes"]

#: groundings shown per template in the text (all are in ``terms``)
SHOWN = 8
#: a gap this small (relative to the total) is rounding
GAP = 1e-6
_COLUMNS = ["template", "grounding", "kind", "truth", "push", "toward", "share", "via"]


@dataclass(frozen=True)
class Pushes:
    """How training pushes one concept of one row, grounding by grounding.

    Attributes
    ----------
    concept : str
        The bool concept pushed (a neural concept or a decided output).
    row : object
        The row's label in the data.
    probability : float
        The concept's probability of True now.
    logit : float
        What the pushes move: a neural concept's network logit, a decided output's score.
    terms : DataFrame
        One line per grounding (and the concept's own label): ``template`` (the family, or
        the statement's name), ``grounding``, ``kind`` (``constraint``, ``rule`` or
        ``label``), ``truth`` now (a rule's body; the label's probability), ``push``
        (``-d loss / d logit``: positive pushes toward True), ``toward`` (``True``,
        ``False`` or ``-``), ``share`` of the sum of absolute pushes, ``via`` (the head a
        rule's push comes through). Strongest template first, strongest grounding first
        within it.
    total : float
        ``-d loss / d logit`` of the row's whole training loss (autograd).
    gap : float
        ``total`` minus the sum of ``push``: what reaches the concept along other paths.
    """

    concept: str
    row: object
    semantics: str
    probability: float
    logit: float
    wrt: str
    terms: pd.DataFrame
    total: float
    gap: float

    def __str__(self) -> str:
        lines = [f"pushes on {self.concept}, row {self.row} ({self.semantics} semantics): "
                 f"p(True) = {self.probability:.2f}, {self.wrt} {self.logit:+.2f}",
                 f"  training pushes the {self.wrt} {self.total:+.3g} in all "
                 f"({_toward(self.total)})"]
        for template, group in self.terms.groupby("template", sort=False):
            moving = group[group["toward"] != "-"]
            kind = group["kind"].iloc[0]
            if kind == "label":
                r = group.iloc[0]
                lines.append(f"  label {r.grounding}: {r.push:+.3g} toward {r.toward} "
                             f"({r.share:.0%})")
                continue
            what = "soft constraint" if kind == "constraint" else "rule"
            lines.append(f"  {template} ({what}): {len(moving)} of {len(group)} groundings "
                         f"push, {group['push'].sum():+.3g} in all")
            width = max(len(g) for g in moving["grounding"].head(SHOWN)) if len(moving) else 0
            for r in moving.head(SHOWN).itertuples():
                via = f" (via {r.via})" if r.via else ""
                lines.append(f"    {r.grounding:<{width}}  truth {r.truth:.2f}  "
                             f"{r.push:>+10.3g} toward {r.toward:<5} {r.share:>4.0%}{via}")
            if len(moving) > SHOWN:
                lines.append(f"    ... {len(moving) - SHOWN} more")
        pushed = self.terms["push"].sum()
        if abs(self.gap) <= GAP * max(1.0, abs(self.total)):
            lines.append(f"  the pushes add up to the total (gap below {GAP:g})")
        else:
            lines.append(f"  the pushes add up to {pushed:+.3g}; the other {self.gap:+.3g} "
                         "comes along paths not itemised (labelled definitions over the "
                         "concept, outputs decided jointly)")
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """The pushes, one line per grounding (:attr:`terms`)."""
        return self.terms.copy()

    def _repr_html_(self) -> str:
        head, *_ = str(self).splitlines()
        return (f"<div><b>{html.escape(head)}</b><pre>{html.escape(str(self))}</pre>"
                + self.terms.head(50)._repr_html_() + "</div>")


def _toward(push: float) -> str:
    return "toward True" if push > 0 else "toward False" if push < 0 else "no push"


def pushes(model, data, concept: str, *, targets=None, row=None) -> Pushes:
    """How each grounding that reads ``concept`` pushes it in training, on one row.

    Parameters
    ----------
    model : GreyBox
    data : DataFrame or mapping
        The rows (as for ``model(data)``); one of them is taken (``row``).
    concept : str
        A bool neural concept (``smokes(anna)``) or a bool output decided by rules
        (``cancer(bob)``).
    targets : mapping, optional
        The labels training sees (as for ``model.fit``), for the pushes that come from
        labels: the concept's own, and its rules' heads'. Without them, only the soft
        constraints push.
    row : optional
        The row's label in the data's index (default: the first row).

    Returns
    -------
    Pushes

    Examples
    --------
    >>> import numpy as np, torch, greybox as gb
    >>> kb = gb.rules.parse('''
    ... set person
    ... input friends(person, person): bool
    ... input features(person): tensor[2]
    ... neural smokes(person): bool = net(features(person))
    ... constraint fs(p in person, q in person) weight 1.0:
    ...     p != q -> (friends(p, q) and smokes(p) -> smokes(q))
    ... ''', sets={"person": ["a", "b", "c"]})
    >>> net = torch.nn.Linear(2, 1)
    >>> _ = torch.nn.init.zeros_(net.weight), torch.nn.init.zeros_(net.bias)   # p = 0.5
    >>> model = gb.GreyBox(kb, {"net": net}, semantics="product")
    >>> friends = np.array([[[0, 1, 0], [1, 0, 0], [0, 0, 0]]], bool)   # a and b
    >>> data = {**kb.families["friends"].split(friends),
    ...         **kb.families["features"].split(np.zeros((1, 3, 2), np.float32))}
    >>> p = gb.explain.pushes(model, data, "smokes(a)")
    >>> p.terms[["grounding", "truth", "push", "toward"]]
      grounding  truth   push toward
    0  fs(a, b)   0.75 -0.125  False
    1  fs(b, a)   0.75  0.125   True
    2  fs(a, c)   1.00  0.000      -
    3  fs(c, a)   1.00  0.000      -
    """
    _check_concept(model, concept)
    from .formal._row import row_position

    batch = model.batch(data)
    pos = row_position(batch.index, row)
    one = batch.take(torch.tensor([pos], device=model.device))
    labels = None if targets is None else _row_of(targets, pos)
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            return _pushes(model, one, concept, labels, batch.index[pos])
    finally:
        model.train(was)


def _check_concept(model, concept: str) -> None:
    kb = model.kb
    var = kb.variables.get(concept)
    if var is None:
        from difflib import get_close_matches

        close = get_close_matches(concept, list(kb.variables), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"{concept!r} is not a variable of the model{hint}")
    if not isinstance(var.type, A.BoolType) or var.role not in ("neural", "decided"):
        raise ModelError(f"pushes are computed for bool neural concepts and bool outputs "
                         f"decided by rules; {concept!r} is a {var.role} variable of type "
                         f"{type_to_text(var.type)}")
    if var.role == "decided" and not _alone(kb, concept):
        raise ModelError(f"{concept!r} is decided jointly with other variables under hard "
                         "constraints: its value is not a function of its own score, so the "
                         "push on that score is not defined")


def _alone(kb, name: str) -> bool:
    """Whether a decided variable is decided by its own score alone (no hard constraint,
    no rule reading its own component): its probability is the sigmoid of its score."""
    for comp in plan(kb).components:
        if name in comp.variables:
            return len(comp.variables) == 1 and not comp.constraints and not comp.dynamic
    return False


def _row_of(targets, pos: int):
    """The labels of the row at position ``pos`` (still one row per label column)."""
    if isinstance(targets, pd.DataFrame):
        return targets.iloc[pos:pos + 1]
    if isinstance(targets, pd.Series):
        return targets.iloc[pos:pos + 1]
    if isinstance(targets, Mapping):
        return {k: _row_of(v, pos) for k, v in targets.items()}
    if isinstance(targets, torch.Tensor):
        return targets[pos:pos + 1]
    return np.asarray(targets)[pos:pos + 1]


def _label(kb, labels, name: str) -> float | None:
    """The (already checked) bool label of ``name`` in one row's labels, or None."""
    if labels is None:
        return None
    if isinstance(labels, pd.DataFrame):
        items = {c: labels[c] for c in labels.columns}
    elif isinstance(labels, Mapping):
        items = dict(labels)
    else:
        items = {kb.outputs[0]: labels} if len(kb.outputs) == 1 else {}
    items = family_columns(kb, items)
    if name not in items:
        return None
    v = items[name]
    v = v.iloc[0] if isinstance(v, pd.Series) else np.asarray(
        v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=object).reshape(-1)[0]
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return float(bool(v))


def _templates(kb) -> dict[str, str]:
    """Each grounded rule's and constraint's family name."""
    return {m: f.name for f in kb.families.values() if f.kind in ("rule", "constraint")
            for m in f.members.values()}


class _Grad:
    """``-d (.) / d logit`` of the concept, on one row: through its network logit, or
    through its probability times ``p (1 - p)`` for an output decided by its score."""

    def __init__(self, model, trace, concept: str):
        var = model.kb.variables[concept]
        p = trace.values[concept]
        self.p = float(p.detach()[0])
        if var.role == "neural":
            self.x, self.scale = trace.logits[concept], 1.0
            self.logit = float(self.x.detach()[0])
            self.wrt = "logit"
        else:
            self.x, self.scale = p, self.p * (1.0 - self.p)
            self.logit = float(np.log(self.p / (1.0 - self.p))) if 0 < self.p < 1 else \
                float("inf") * (1 if self.p >= 1 else -1)
            self.wrt = "score"

    def push(self, value: torch.Tensor) -> float:
        """``-d value / d logit`` (0 when ``value`` does not read the concept)."""
        if not value.requires_grad:
            return 0.0
        (g,) = torch.autograd.grad(value, self.x, retain_graph=True, allow_unused=True)
        return 0.0 if g is None else -float(g[0]) * self.scale


def _pushes(model, one, concept: str, labels, row_label) -> Pushes:
    kb = model.kb
    trace = model(one, crisp=False)
    grad = _Grad(model, trace, concept)
    loss = model.loss(one, labels, trace=trace) if labels is not None else \
        model.loss(one, trace=trace)
    own = _label(kb, labels, concept)
    total = grad.push(loss)
    if kb.variables[concept].role == "decided" and own is not None:
        total += own - grad.p     # its label reaches its score through log_dists, not p
    templates = _templates(kb)
    rows = []
    probabilistic = trace.semantics == "probabilistic"
    for c in kb.constraints.values():
        if c.hard or concept not in closure(kb, A.variables(c.formula)):
            continue
        t = trace.constraints[c.name]
        v = -torch.log(t.clamp_min(1e-12)) if probabilistic else 1.0 - t
        rows.append({"template": templates.get(c.name, c.name), "grounding": c.name,
                     "kind": "constraint", "truth": float(t.detach()[0]),
                     "push": grad.push(c.weight * v.mean()), "via": ""})
    heads: dict[str, float] = {}
    for r in kb.rules.values():
        h = r.head.name
        if h == concept or concept not in closure(kb, A.variables(r.body)):
            continue
        if not isinstance(kb.variables[h].type, A.BoolType) or not _alone(kb, h):
            continue   # not itemised: its push is in the gap
        if h not in heads:
            heads[h] = _head_signal(model, trace, loss, labels, h)
        body = trace.bodies[r.name]
        sign = -1.0 if r.head.value is False else 1.0
        w = float(model.rule_weight(r.name).detach().reshape(-1)[0]) * sign
        rows.append({"template": templates.get(r.name, r.name), "grounding": r.name,
                     "kind": "rule", "truth": float(body.detach()[0]),
                     "push": -heads[h] * w * grad.push(body), "via": h})
    if own is not None:
        if kb.variables[concept].role == "neural":
            y = torch.tensor([own], device=model.device)
            push = grad.push(-trace.log_prob(concept, y).mean())
        else:
            push = own - grad.p
        rows.append({"template": "label", "grounding": f"{concept} = {bool(own)}",
                     "kind": "label", "truth": grad.p if own else 1.0 - grad.p,
                     "push": push, "via": ""})
    terms = _table(rows)
    return Pushes(concept=concept, row=row_label, semantics=trace.semantics,
                  probability=grad.p, logit=grad.logit, wrt=grad.wrt, terms=terms,
                  total=total, gap=total - float(terms["push"].sum()))


def _head_signal(model, trace, loss, labels, head: str) -> float:
    """``-dL / d score`` of a bool output decided by its own score: its label's pull
    ``y - p`` plus what reads its probability (soft constraints, other labels)."""
    p = trace.values[head]
    g = torch.autograd.grad(loss, p, retain_graph=True, allow_unused=True)[0] \
        if loss.requires_grad else None
    pv = float(p.detach()[0])
    signal = 0.0 if g is None else -float(g[0]) * pv * (1.0 - pv)
    y = _label(model.kb, labels, head)
    return signal + (0.0 if y is None else y - pv)


def _table(rows: list[dict]) -> pd.DataFrame:
    """The terms with ``toward`` and ``share``, strongest template and grounding first."""
    frame = pd.DataFrame(rows, columns=[c for c in _COLUMNS if c not in ("toward", "share")])
    frame["push"] = frame["push"].astype(float) + 0.0    # no -0.0
    frame["toward"] = np.where(frame["push"] > 0, "True",
                               np.where(frame["push"] < 0, "False", "-"))
    size = frame["push"].abs()
    frame["share"] = size / size.sum() if size.sum() > 0 else 0.0
    strength = size.groupby(frame["template"]).transform("sum")
    frame = frame.assign(_t=strength, _g=size).sort_values(
        ["_t", "template", "_g"], ascending=[False, True, False], kind="stable")
    return frame.drop(columns=["_t", "_g"])[_COLUMNS].reset_index(drop=True)
