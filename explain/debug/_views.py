"""What the web debugger's JSON API answers: plain, JSON-ready views of a :class:`Debugger`'s
state (its rules as text with their numbers in place, statistics, a what-if diff, one row's
explanation, ranked suggestions). The server (``_server.py``) only routes and guards."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from greybox.errors import GreyboxError, RuleError, RuleSyntaxError
from greybox.rules import ast as A
from greybox.rules import to_text

from ._edits import AddStatement, Disable, Remove, Replace, SetThreshold, SetWeight, _numbers


def plain(value):
    """JSON-ready Python values from numpy / pandas ones (NaN and infinities as None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA:
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict]:
    frame = frame.reset_index().rename(columns={"index": "row"})
    return [plain(r) for r in frame.to_dict(orient="records")]


def error(err: GreyboxError) -> dict:
    out = {"error": str(err)}
    if isinstance(err, RuleSyntaxError):
        out.update(line=err.lineno, column=err.offset)
    elif isinstance(err, RuleError) and getattr(err, "diagnostics", None):
        loc = err.diagnostics[0][1]
        if loc is not None:
            out.update(line=loc.line, column=loc.column)
    return out


def diff(w) -> dict:
    return {"edits": list(w.edits), "accuracy_before": w.accuracy_before,
            "accuracy_after": w.accuracy_after, "fixed": records(w.fixed),
            "broken": records(w.broken), "changed": w.changed}


# ---------------------------------------------------------------------- rules as text
def _sentinel(k: int, value) -> float:
    """A float whose printed form occurs nowhere else in a rule's text: it marks where
    number ``k`` stands (with the sign of ``value``, so that the text keeps its layout)."""
    s = float(f"7.31{k:05d}9e+301")
    return -s if value < 0 or str(value).startswith("-") else s


def rule_parts(s) -> list[dict]:
    """A rule or constraint's text as the rule language prints it, cut where its numbers
    stand: ``{"text": ...}`` pieces and ``{"slot": "weight"}`` / ``{"slot": "number",
    "index": k, "role": "threshold" or "number", "learnable": bool}`` ones with their
    ``value``. ``index`` counts as :class:`SetThreshold` does (source order); a rule's
    weight is a slot even where the text leaves out ``weight 1.0``."""
    body = s.body if isinstance(s, A.Rule) else s.formula
    nums = _numbers(body)
    compared = {id(c) for n in A.walk(body) if isinstance(n, A.Compare)
                for c in A.children(n) if isinstance(c, A.Num)}
    marks = {id(n): A.Num(_sentinel(k, n.value), n.learnable) for k, n in enumerate(nums)}
    slots = {repr(marks[id(n)].value): {"slot": "number", "index": k, "value": n.value,
                                        "learnable": n.learnable,
                                        "role": "threshold" if id(n) in compared else "number"}
             for k, n in enumerate(nums)}
    marked = A.rewrite(body, lambda node: marks.get(id(node)))
    if isinstance(s, A.Rule):
        w = _sentinel(len(nums), s.weight)
        slots[repr(w)] = {"slot": "weight", "value": s.weight, "fixed": s.fixed}
        text = to_text(dataclasses.replace(s, body=marked, weight=w))
    else:
        text = to_text(dataclasses.replace(s, formula=marked))
    parts, rest = [], text
    while rest:
        found = [(rest.find(m), m) for m in slots if m in rest]
        if not found:
            parts.append({"text": rest})
            break
        at, m = min(found)
        if at:
            parts.append({"text": rest[:at]})
        parts.append(dict(slots[m]))
        rest = rest[at + len(m):]
    return parts


def rules(dbg) -> list[dict]:
    """Every rule and constraint of the edited model: name, kind (``rule``, ``hard`` or
    ``soft``), text, weight, numbers (in :class:`SetThreshold`'s order), the text cut at
    its numbers (:func:`rule_parts`) and the statistics of :meth:`Debugger.rule_stats`."""
    stats = dbg.rule_stats()
    out = []
    for s in dbg.model.to_kb().statements:
        if not isinstance(s, (A.Rule, A.Constraint)):
            continue
        body = s.body if isinstance(s, A.Rule) else s.formula
        kind = "rule" if isinstance(s, A.Rule) else "hard" if s.weight is None else "soft"
        st = stats.loc[s.name] if s.name in stats.index else None
        out.append({"name": s.name, "kind": kind, "text": to_text(s),
                    "weight": s.weight, "numbers": [n.value for n in _numbers(body)],
                    "parts": rule_parts(s),
                    "stats": None if st is None else plain(
                        {k: st[k] for k in ("fires", "accuracy", "failures", "share")})})
    return out


# ---------------------------------------------------------------------- one row
def row(dbg, label) -> dict:
    import torch

    from .._explain import explain

    pos = dbg.batch.index.get_loc(label)
    sub = dbg.batch.take(torch.as_tensor([pos]))
    ex = explain(dbg.model, sub, dbg.output, parameters=False)
    attributions = {}
    for key, a in ex.attributions.items():
        values = a[0].detach().cpu()
        shape = ex._image_shape(key)
        attributions[key] = {"values": values.flatten().tolist(),
                             "shape": list(shape) if shape else None,
                             "names": None if shape else ex._attribution_names(key,
                                                                                values.numel())}
    info = dbg.predictions().loc[label]
    out = {"row": label, "text": ex.row_text(),
           "decision": records(ex.decision)[0], "rules": records(ex.rules.drop(columns="row")),
           "concepts": records(ex.concepts.drop(columns="row")),
           "attributions": attributions, "target": info["target"],
           "correct": bool(info["correct"])}
    try:
        out["reason"] = str(ex.reason())
    except GreyboxError as err:
        out["reason"] = f"no reason: {err}"
    try:
        out["counterfactual"] = str(ex.counterfactual())
    except GreyboxError as err:
        out["counterfactual"] = f"no counterfactual: {err}"
    return out


# ---------------------------------------------------------------------- suggestions
def edit_spec(edit) -> dict | None:
    """The mapping :func:`parse_edit` reads back as ``edit`` (what the page sends to
    /api/edit to apply it); None for an edit that has none (the page cannot apply it)."""
    if hasattr(edit, "to_spec"):
        return edit.to_spec()
    if isinstance(edit, SetWeight):
        return {"op": "weight", "name": edit.name, "value": edit.weight}
    if isinstance(edit, SetThreshold):
        return {"op": "threshold", "name": edit.name, "index": edit.index, "value": edit.value}
    if isinstance(edit, Disable):
        return {"op": "disable", "name": edit.name}
    if isinstance(edit, Remove):
        return {"op": "remove", "name": edit.name}
    if isinstance(edit, AddStatement):
        return {"op": "add", "text": edit.text}
    if isinstance(edit, Replace):
        return {"op": "replace", "name": edit.name, "text": edit.text}
    return None


def suggestions(found, top: int) -> dict:
    """Ranked suggestions (of ``Debugger.suggest`` or ``propose_rules``: a sequence, or a
    result with ``suggestions``, ``candidates``, ``measured``, ``seconds`` and ``notes``)
    as JSON: the ``top`` first, each with its edits (described, and as specs for
    /api/edit; None where an edit has none), the rows it fixes and breaks (as ``what_if``
    reports them), the accuracy after, the held-out figures where given and what was
    checked; and how the search went."""
    items = list(getattr(found, "suggestions", found))[:top]
    out = []
    for rank, s in enumerate(items, 1):
        out.append(plain({
            "rank": rank, "kind": getattr(s, "kind", ""), "text": str(s),
            "edits": [{"text": e.describe(), "spec": edit_spec(e)} for e in s.edits],
            "fixed": list(s.fixed), "broken": list(s.broken),
            "accuracy_after": s.accuracy_after,
            "validation": getattr(s, "validation", None),
            "checks": list(getattr(s, "checks", ()))}))
    return plain({"suggestions": out, "candidates": getattr(found, "candidates", None),
                  "measured": getattr(found, "measured", None),
                  "seconds": getattr(found, "seconds", None),
                  "notes": list(getattr(found, "notes", ()))})
