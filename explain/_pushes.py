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

A concept with more values (an enum, an int) has one logit per value -- its network's
outputs, whose softmax is its distribution; an output's score of each value -- and the
loss differentiates all of them: each grounding pushes every value's logit (the pushes of
one grounding add up to 0 over the values: only the differences between logits change
the distribution), and the pushes add up, value by value, to the gradient of the row's
loss.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from greybox.errors import ModelError
from greybox.functional import soft_violation
from greybox.rules import ast as A
from greybox.rules.engine import (
    closure,
    decode_bools,
    family_columns,
    missing_values,
    plan,
    type_to_text,
)

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
        The concept pushed (a neural concept or a decided output; bool, enum or int).
    row : object
        The row's label in the data.
    probability : float
        The concept's probability of True now (with more values: of its most probable
        value).
    logit : float
        What the pushes move: a neural concept's network logit, a decided output's score
        (with more values: the most probable value's).
    terms : DataFrame
        One line per grounding (and the concept's own label): ``template`` (the family, or
        the statement's name), ``grounding``, ``kind`` (``constraint``, ``rule`` or
        ``label``), ``truth`` now (a rule's body; the label's probability), ``push``
        (``-d loss / d logit``: positive pushes toward True), ``toward`` (``True``,
        ``False`` or ``-``), ``share`` of the sum of absolute pushes, ``via`` (the head a
        rule's push comes through). Strongest template first, strongest grounding first
        within it. With more values, one line per grounding and value, a ``value``
        column after ``kind``, ``push`` on that value's logit and ``toward`` the value
        (``not VALUE`` for a push down).
    total : float
        ``-d loss / d logit`` of the row's whole training loss (autograd); with more
        values, the entry of ``by_value.total`` largest in size.
    gap : float
        ``total`` minus the sum of ``push``: what reaches the concept along other paths;
        with more values, the entry of ``by_value.gap`` largest in size.
    by_value : DataFrame
        Per value whose logit is pushed (index: the values; a bool's one logit is
        True's): ``probability``, ``logit``, ``total``, ``gap``.
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
    by_value: pd.DataFrame

    def __str__(self) -> str:
        if len(self.by_value) > 1:
            return self._values_text()
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

    def _values_text(self) -> str:
        """The text for a concept with more values: a grounding's push on each value."""
        v = self.by_value

        def each(column, fmt):
            return ", ".join(f"{k} {fmt(x)}" for k, x in column.items())

        lines = [f"pushes on {self.concept}, row {self.row} ({self.semantics} semantics): "
                 f"p = {each(v.probability, '{:.2f}'.format)}",
                 f"  training pushes the {self.wrt}: {each(v.total, '{:+.3g}'.format)}"]
        for template, group in self.terms.groupby("template", sort=False):
            kind = group["kind"].iloc[0]
            groundings = list(dict.fromkeys(group["grounding"]))
            moving = [g for g in groundings if (group[group.grounding == g].push != 0).any()]
            if kind == "label":
                lines.append(f"  label {groundings[0]}: " + each(
                    group.set_index("value").push, "{:+.3g}".format))
                continue
            what = "soft constraint" if kind == "constraint" else "rule"
            lines.append(f"  {template} ({what}): {len(moving)} of {len(groundings)} "
                         "groundings push")
            width = max(len(g) for g in moving[:SHOWN]) if moving else 0
            for g in moving[:SHOWN]:
                lines_g = group[group.grounding == g]
                via = f" (via {lines_g.via.iloc[0]})" if lines_g.via.iloc[0] else ""
                lines.append(f"    {g:<{width}}  truth {lines_g.truth.iloc[0]:.2f}  "
                             + each(lines_g.set_index("value").push, "{:+.3g}".format) + via)
            if len(moving) > SHOWN:
                lines.append(f"    ... {len(moving) - SHOWN} more")
        if (v.gap.abs() <= GAP * np.maximum(1.0, v.total.abs())).all():
            lines.append(f"  the pushes add up to the total of each value (gaps below {GAP:g})")
        else:
            lines.append(f"  the pushes leave {each(v.gap, '{:+.3g}'.format)} to paths not "
                         "itemised (labelled definitions over the concept, outputs decided "
                         "jointly)")
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
        A neural concept (``smokes(anna)``) or an output decided by rules
        (``cancer(bob)``): bool, enum or int (one push per value's logit).
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
    if var.role not in ("neural", "decided"):
        article = "an" if var.role[0] in "aeiou" else "a"
        raise ModelError(f"pushes are computed for neural concepts and outputs decided by "
                         f"rules; {concept!r} is {article} {var.role} variable of type "
                         f"{type_to_text(var.type)}")
    if not A.is_finite_type(var.type):
        raise ModelError(f"{concept!r} is real: it has no logit for a grounding to push "
                         "(its loss is a squared error on its value); pushes are computed "
                         "for bool, enum and int concepts. For a real concept, take the "
                         "gradient of model.loss with respect to trace.values"
                         f"[{concept!r}] with torch.autograd")
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


def _label(kb, labels, name: str) -> int | None:
    """The label of ``name`` in one row's labels (already checked by the loss) as a value
    index (0/1 for a bool, decoded as training decodes it), or None."""
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
    if missing_values(np.array([v], dtype=object))[0]:
        return None
    t = kb.variables[name].type
    if isinstance(t, A.BoolType):
        decoded, _ = decode_bools(np.array([v], dtype=object), np.array([False]))
        return int(bool(decoded[0]))
    return A.domain(t).index(v.strip() if isinstance(v, str) else
                             v if isinstance(t, A.EnumType) else int(float(v)))


def _templates(kb) -> dict[str, str]:
    """Each grounded rule's and constraint's family name."""
    return {m: f.name for f in kb.families.values() if f.kind in ("rule", "constraint")
            for m in f.members.values()}


class _Grad:
    """``-d (.) / d logit`` of the concept, on one row, per value whose logit is pushed
    (a bool's one logit; each value's of an enum or int): through its network logits, or
    through its probabilities and the softmax's Jacobian for an output decided by its
    scores (``p (1 - p)`` for a bool)."""

    def __init__(self, model, trace, concept: str):
        var = model.kb.variables[concept]
        self.bool = isinstance(var.type, A.BoolType)
        self.values = (True,) if self.bool else tuple(A.domain_values(var.type))
        self.probs = _numbers(trace.values[concept])
        self.neural = var.role == "neural"
        if self.neural:
            self.x = trace.logits[concept]
            self.logits = _numbers(self.x)
        else:
            self.x = trace.values[concept]
            if self.bool:
                p = self.probs[0]
                self.logits = np.array([float(np.log(p / (1.0 - p))) if 0 < p < 1 else
                                        float("inf") * (1 if p >= 1 else -1)])
            else:
                self.logits = _numbers(trace.scores[concept])
        self.wrt = ("logit" if self.neural else "score") + ("" if self.bool else "s")

    def push(self, value: torch.Tensor) -> np.ndarray:
        """``-d value / d logit`` per value (0 when ``value`` does not read the concept)."""
        if not value.requires_grad:
            return np.zeros(len(self.values))
        (g,) = torch.autograd.grad(value, self.x, retain_graph=True, allow_unused=True)
        if g is None:
            return np.zeros(len(self.values))
        return -self.through(_numbers(g))

    def through(self, g: np.ndarray) -> np.ndarray:
        """A gradient with respect to what the trace holds (the logits; an output's
        probabilities) as one with respect to the logits."""
        if self.neural:
            return g
        p = self.probs
        if self.bool:
            return g * (p * (1.0 - p))
        return g * p - p * float(g @ p)    # the softmax's Jacobian

    def label(self, y: int) -> np.ndarray:
        """``-d (-log P(y)) / d logit`` of an output decided by its scores: ``1[y] - p``
        (its label reaches its score through the log distribution, not the probability)."""
        if self.bool:
            return np.array([y - self.probs[0]])
        return np.eye(len(self.values))[y] - self.probs


def _numbers(t: torch.Tensor) -> np.ndarray:
    """The first row of a trace tensor as float64 numbers ((1,) for a bool's)."""
    return t.detach()[0].reshape(-1).double().cpu().numpy()


def _pushes(model, one, concept: str, labels, row_label) -> Pushes:
    kb = model.kb
    trace = model(one, crisp=False)
    grad = _Grad(model, trace, concept)
    loss = model.loss(one, labels, trace=trace) if labels is not None else \
        model.loss(one, trace=trace)
    own = _label(kb, labels, concept)
    total = grad.push(loss)
    if not grad.neural and own is not None:
        total = total + grad.label(own)
    templates = _templates(kb)
    rows = _constraint_rows(kb, trace, grad, concept, templates)
    rows += _rule_rows(model, trace, grad, concept, templates, loss, labels)
    if own is not None:
        if grad.neural:
            y = torch.tensor([own], device=model.device)
            push = grad.push(-trace.log_prob(concept, y).mean())
        else:
            push = grad.label(own)
        value = bool(own) if grad.bool else A.domain_values(kb.variables[concept].type)[own]
        truth = (grad.probs[0] if own else 1.0 - grad.probs[0]) if grad.bool else \
            grad.probs[own]
        rows.append({"template": "label", "grounding": f"{concept} = {value}",
                     "kind": "label", "truth": float(truth), "push": push, "via": ""})
    terms = _table(rows, None if grad.bool else grad.values)
    if grad.bool:
        pushed = np.array([terms["push"].sum()])
    else:
        pushed = terms.groupby("value", sort=False)["push"].sum().reindex(
            list(grad.values)).to_numpy()
    total = total + 0.0     # no -0.0
    by_value = pd.DataFrame({"probability": grad.probs, "logit": grad.logits,
                             "total": total, "gap": total - pushed + 0.0},
                            index=pd.Index(list(grad.values), name="value"))
    if grad.bool:
        top, largest, worst = 0, 0, 0
    else:
        top = int(np.argmax(grad.probs))
        largest, worst = int(np.argmax(np.abs(total))), int(np.argmax(np.abs(total - pushed)))
    return Pushes(concept=concept, row=row_label, semantics=trace.semantics,
                  probability=float(grad.probs[top]), logit=float(grad.logits[top]),
                  wrt=grad.wrt, terms=terms, total=float(total[largest]),
                  gap=float((total - pushed)[worst]), by_value=by_value)


def _constraint_rows(kb, trace, grad, concept: str, templates: dict) -> list[dict]:
    """A row per soft constraint over ``concept``: its truth and its push (its weight
    times its violation, as the loss adds it)."""
    rows = []
    for c in kb.constraints.values():
        if c.hard or concept not in closure(kb, A.variables(c.formula)):
            continue
        t = trace.constraints[c.name]
        v = soft_violation(t, trace.semantics)
        rows.append({"template": templates.get(c.name, c.name), "grounding": c.name,
                     "kind": "constraint", "truth": float(t.detach()[0]),
                     "push": grad.push(c.weight * v.mean()), "via": ""})
    return rows


def _rule_rows(model, trace, grad, concept: str, templates: dict, loss, labels
               ) -> list[dict]:
    """A row per rule over ``concept`` whose head is itemised: its body's truth and its
    push through its head's score."""
    kb = model.kb
    rows = []
    heads: dict[str, np.ndarray] = {}
    for r in kb.rules.values():
        h = r.head.name
        if h == concept or concept not in closure(kb, A.variables(r.body)):
            continue
        if not _alone(kb, h):
            continue   # not itemised: its push is in the gap
        if h not in heads:
            heads[h] = _head_signal(model, trace, loss, labels, h)
        body = trace.bodies[r.name]
        w = float(model.rule_weight(r.name).detach().reshape(-1)[0])
        if isinstance(r.head.value, bool):
            signal = heads[h][0] * (-1.0 if r.head.value is False else 1.0)
        else:   # -> grade = high: its contribution adds to the score of high
            value = r.head.value
            signal = heads[h][A.domain(kb.variables[h].type).index(
                value.value if isinstance(value, A.Num) else value.name)]
        rows.append({"template": templates.get(r.name, r.name), "grounding": r.name,
                     "kind": "rule", "truth": float(body.detach()[0]),
                     "push": -signal * w * grad.push(body), "via": h})
    return rows


def _head_signal(model, trace, loss, labels, head: str) -> np.ndarray:
    """``-dL / d score`` of an output decided by its own scores, per value (a bool's one
    score): its label's pull ``1[y] - p`` plus what reads its probabilities (soft
    constraints, other labels)."""
    signal = _Grad(model, trace, head)
    p = trace.values[head]
    g = torch.autograd.grad(loss, p, retain_graph=True, allow_unused=True)[0] \
        if loss.requires_grad else None
    out = np.zeros(len(signal.values)) if g is None else -signal.through(_numbers(g))
    y = _label(model.kb, labels, head)
    return out if y is None else out + signal.label(y)


def _table(rows: list[dict], values=None) -> pd.DataFrame:
    """The terms with ``toward`` and ``share``, strongest template and grounding first;
    with ``values`` (a concept with more values), one line per grounding and value."""
    columns = [c for c in _COLUMNS if c not in ("toward", "share")]
    if values is None:
        frame = pd.DataFrame([{**r, "push": float(r["push"][0])} for r in rows],
                             columns=columns)
    else:
        columns.insert(3, "value")
        frame = pd.DataFrame([{**r, "value": v, "push": float(r["push"][k])} for r in rows
                              for k, v in enumerate(values)], columns=columns)
    frame["push"] = frame["push"].astype(float) + 0.0    # no -0.0
    if values is None:
        frame["toward"] = np.where(frame["push"] > 0, "True",
                                   np.where(frame["push"] < 0, "False", "-"))
    else:
        name = frame["value"].astype(str)
        frame["toward"] = np.where(frame["push"] > 0, name,
                                   np.where(frame["push"] < 0, "not " + name, "-"))
    size = frame["push"].abs()
    frame["share"] = size / size.sum() if size.sum() > 0 else 0.0
    strength = size.groupby(frame["template"]).transform("sum")
    each = size.groupby(frame["grounding"]).transform("sum")
    frame = frame.assign(_t=strength, _g=each).sort_values(
        ["_t", "template", "_g", "grounding"] if values is not None else
        ["_t", "template", "_g"], ascending=[False, True, False, True][:3 + (
            values is not None)], kind="stable")
    order = [c for c in _COLUMNS if c in frame] if values is None else \
        _COLUMNS[:3] + ["value"] + _COLUMNS[3:]
    return frame.drop(columns=["_t", "_g"])[order].reset_index(drop=True)
