"""Cohorts: where the debugger's errors concentrate, as the leaves of a shallow decision
tree over the inputs, the concepts and the rules that fired."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from greybox.rules import ast as A
from greybox.rules.engine import missing_key


def cohorts(dbg, *, max_depth: int = 3, min_size: int = 10) -> pd.DataFrame:
    """Where the errors of ``dbg`` concentrate (see :meth:`Debugger.cohorts`)."""
    from sklearn.tree import DecisionTreeClassifier

    feats = _features(dbg)
    errors = (~dbg._now["correct"]).to_numpy().astype(int)
    if errors.sum() == 0 or errors.sum() == len(errors):
        rate = float(errors.mean()) if len(errors) else 0.0
        return pd.DataFrame([{"cohort": "all rows", "size": len(errors),
                              "errors": int(errors.sum()), "error_rate": rate}])
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_size,
                                  random_state=0).fit(feats.to_numpy(), errors)
    leaves = tree.apply(feats.to_numpy())
    t = tree.tree_
    paths = {0: []}
    for node in range(t.node_count):
        if t.children_left[node] != -1:
            name = feats.columns[t.feature[node]]
            thr = t.threshold[node]
            paths[t.children_left[node]] = paths[node] + [(name, thr, False)]
            paths[t.children_right[node]] = paths[node] + [(name, thr, True)]
    rows = []
    for leaf in np.unique(leaves):
        mask = leaves == leaf
        rows.append({"cohort": _conditions(paths[leaf]) or "all rows",
                     "size": int(mask.sum()), "errors": int(errors[mask].sum()),
                     "error_rate": float(errors[mask].mean())})
    out = pd.DataFrame(rows).sort_values(["error_rate", "size"], ascending=[False, False],
                                         kind="stable")
    return out.reset_index(drop=True)


def _features(dbg) -> pd.DataFrame:
    """What a cohort is described by, one column per row of the data: the table inputs
    (an enum one-hot, a missing cell flagged), the neural concepts' values and which
    rules fired."""
    kb = dbg._model.kb
    cols = {}
    for n in kb.inputs:
        t = kb.variables[n].type
        if isinstance(t, A.TensorType) or n not in dbg.batch.columns:
            continue
        v = dbg.batch.columns[n]
        if isinstance(t, A.EnumType):
            for k, name in enumerate(t.values):
                cols[f"{n} == {name}"] = (v == k).astype(float)
        else:
            cols[n] = v.astype(float)
        if kb.variables[n].optional:   # missing cells hold a placeholder: say where
            cols[f"{n} is missing"] = dbg.batch.columns[missing_key(n)].astype(float)
    with torch.no_grad():
        trace = dbg._model.eval()(dbg.batch)
    for n in kb.neural:
        v = trace.values[n]
        t = kb.variables[n].type
        if v.dim() == 2:
            for k, name in enumerate(A.domain_values(t)):
                cols[f"{n} == {name}"] = (v.argmax(1) == k).float().numpy()
        else:
            cols[n] = (v > 0.5).float().numpy() if isinstance(t, A.BoolType) else v.numpy()
    with torch.no_grad():
        decided = dbg._model(dbg.batch, crisp=True)
    for r in kb.rules:
        cols[f"rule {r} fired"] = (decided.bodies[r].expand(dbg.batch.n) > 0.5
                                   ).float().numpy()
    return pd.DataFrame(cols, index=dbg.batch.index)


def _conditions(path: list) -> str:
    """A tree path ``[(column, threshold, went_right), ...]`` as one condition per column:
    the tightest bounds of a number (``0.97 < hue <= 1.2``, not ``hue > 0.97 and hue >
    1.135``), a rule or a concept's value as it is."""
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    flags: dict[str, bool] = {}
    order: list[str] = []
    for name, thr, right in path:
        if name not in order:
            order.append(name)
        if name.startswith("rule ") or " == " in name:
            flags[name] = right
        elif right:
            lower[name] = max(lower.get(name, -np.inf), thr)
        else:
            upper[name] = min(upper.get(name, np.inf), thr)
    parts = []
    for name in order:
        if name in flags:
            parts.append(name if flags[name] else f"not ({name})")
        elif name in lower and name in upper:
            parts.append(f"{lower[name]:.4g} < {name} <= {upper[name]:.4g}")
        elif name in lower:
            parts.append(f"{name} > {lower[name]:.4g}")
        else:
            parts.append(f"{name} <= {upper[name]:.4g}")
    return " and ".join(parts)
