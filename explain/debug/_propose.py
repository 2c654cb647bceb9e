"""New rules proposed to the debugger: rules that fix failures, and rules that say what a
residual network adds.

Both build on :func:`greybox.rules.engine.search_conjunctions`. A rule ``BODY -> HEAD``
with weight ``w`` adds ``w`` to the score of the head's value (``not y``: to False's) on
the rows where its body holds, and changes nothing elsewhere. So, from each row's current
scores, the weight a row *needs* for the head's value to win is known exactly (the gap to
the best score; rows already deciding that value are unaffected). For a candidate weight,
a row is worth +1 if the rule would fix it (it is a failure the caller asked about and its
target is the head's value) and -1 if it would break it (it is correct and would change);
the search finds the bodies with the largest net, and each body then gets the weight that
maximises its net exactly (a sweep over its rows' needed weights, the weight put strictly
between two of them, in few digits). Every candidate is checked with
:func:`greybox.rules.check` on the edited rules: never dead, never subsumed by (or
equivalent to) another rule, no contradiction; the ones that fail are dropped.

The counts are estimates from the scores the rules see; ``Debugger.what_if`` (and the
suggestions' ``measure``) compute what ``predict`` does with the rule added.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import greybox.rules as gr
from greybox.rules import ast as A
from greybox.rules.engine import search_conjunctions

from ._edits import AddStatement, DropResidual

__all__ = ["candidate_rules", "residual_rules"]

#: the analyses a proposed rule must pass (on the knowledge base with the rule added)
CHECKS = ("contradiction", "dead-rule", "subsumed-rule")
#: fraction points of the needed weights the search tries per head value
_QUANTILES = (0.5, 0.8, 1.0)


# ------------------------------------------------------------------ features


def rule_features(dbg) -> pd.DataFrame:
    """What a proposed rule may read, per row of the debugger's data, typed as the rules
    see it: table inputs (numbers, bools, enums as categoricals of their value names) and
    neural concepts (bools by probability > 1/2, finite ones by their most probable value,
    reals as predicted). Tensor inputs are left out."""
    kb = dbg.model.kb
    batch = dbg.batch
    cols: dict[str, object] = {}
    for n in kb.inputs:
        t = kb.variables[n].type
        if isinstance(t, A.TensorType) or n not in batch.columns:
            continue
        v = batch.columns[n]
        v = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        cols[n] = _typed(t, v)
    if kb.neural:
        with torch.no_grad():
            trace = dbg.model.eval()(batch)
        for n in kb.neural:
            t = kb.variables[n].type
            v = trace.values[n].detach().cpu()
            if isinstance(t, A.BoolType):
                cols[n] = (v > 0.5).numpy()
            elif v.dim() == 2:
                cols[n] = _typed(t, v.argmax(1).numpy())
            else:
                cols[n] = v.double().numpy()
    return pd.DataFrame(cols, index=batch.index)


def _typed(t, v: np.ndarray):
    if isinstance(t, A.BoolType):
        return v.astype(bool)
    if isinstance(t, A.EnumType):
        return pd.Categorical.from_codes(v.astype(np.int64), categories=list(t.values))
    return v.astype(np.float64)


# -------------------------------------------------------------------- scores


def _score_matrix(model, batch, output: str, *, residual: bool = True) -> np.ndarray:
    """(n, K) scores of the output's values as the rules decide (a bool: [0, score of
    True]); without the residual network's part when ``residual`` is False."""
    with torch.no_grad():
        trace = model.eval()(batch, crisp=True)
        s = trace.scores[output].detach().double().cpu()
        if not residual:
            r = model.residual_scores(batch).get(output)
            if r is not None:
                s = s - r.detach().double().cpu()
    s = s.numpy()
    return np.column_stack([np.zeros(len(s)), s]) if s.ndim == 1 else s


def _codes(kb, output: str, values) -> np.ndarray:
    t = kb.variables[output].type
    domain = list(A.domain_values(t))
    index = {v: i for i, v in enumerate(domain)}
    out = np.full(len(values), -1, dtype=np.int64)  # -1: no value (an infeasible row)
    for i, v in enumerate(values):
        v = v.item() if isinstance(v, np.generic) else v
        if isinstance(t, A.BoolType) and isinstance(v, (bool, int)):
            v = bool(v)
        out[i] = index.get(v, -1) if _hashable(v) else -1
    return out


def _hashable(v) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------ proposals


def _decimal_between(a: float, b: float) -> float:
    """A number strictly between ``a`` and ``b`` (``b`` may be inf) in few digits."""
    if not np.isfinite(b):
        b = a + max(1.0, abs(a))
    mid = (a + b) / 2
    for digits in range(1, 18):
        t = float(f"{mid:.{digits}g}")
        if a < t < b:
            return t
    return mid


def _best_weight(need: np.ndarray, value: np.ndarray):
    """The weight with the largest net ``sum(value[need < w])``: ``(net, w)``."""
    order = np.argsort(need, kind="stable")
    nd, val = need[order], value[order]
    net = np.cumsum(val)
    # a weight can only stop between distinct needs
    last = np.r_[nd[1:] != nd[:-1], True]
    cand = np.flatnonzero(last)
    k = cand[int(np.argmax(net[cand]))]
    best = float(net[k])
    # strictly above need k, below the next row that would break
    later = np.flatnonzero((nd > nd[k]) & (val < 0))
    upper = float(nd[later[0]]) if later.size else np.inf
    return best, _decimal_between(float(nd[k]), upper)


def _propose(dbg, frame: pd.DataFrame, scores: np.ndarray, current: np.ndarray,
             desired: np.ndarray, wanted: np.ndarray, *, max_conditions: int, top: int,
             base: str):
    """Rules moving rows from ``current`` to ``desired`` (class indices): +1 per row of
    ``wanted`` it moves to its desired class, -1 per row whose class is right now (current
    == desired) that it moves away. ``[(net, rule)]``, best first."""
    kb = dbg.model.to_kb()
    output = dbg.output
    t = kb.variables[output].type
    k = scores.shape[1]
    right = (current == desired) & (current >= 0)
    best_score = scores.max(axis=1)
    found: dict = {}
    for c in range(k):
        need = best_score - scores[:, c]
        moves = current != c  # rows already deciding c are unaffected
        fixes = wanted & ~right & (desired == c) & moves
        if not fixes.any():
            continue
        value = np.where(fixes, 1.0, np.where(right & moves, -1.0, 0.0))
        need_c = np.where(moves, need, np.inf)
        for q in _QUANTILES:
            w = float(np.quantile(need_c[fixes], q))
            gain = np.where(need_c <= w, value, 0.0)
            for conj in search_conjunctions(frame, gain, max_conditions=max_conditions,
                                            top=top, min_support=1):
                key = (conj.mask.tobytes(), c)
                if key in found:
                    continue
                rows = conj.mask & moves & (value != 0)
                if not rows.any():
                    continue
                net, weight = _best_weight(need_c[rows], value[rows])
                if net > 0:
                    found[key] = (net, conj, c, weight)
    ranked = sorted(found.values(), key=lambda x: (-x[0], len(x[1].conditions), -x[3]))
    taken = set(kb.variables) | set(kb.rules) | set(kb.constraints)
    out = []
    number = 0
    kept: list = []
    for net, conj, c, weight in ranked:
        if len(out) >= top:
            break
        if any(kc == c and knet >= net and not (conj.mask & ~kmask).any()
               for knet, kmask, kc in kept):
            continue  # a narrower copy of a better rule: nothing new to try
        number += 1
        name = f"{base}_{number}"
        while name in taken:
            number += 1
            name = f"{base}_{number}"
        rule = A.Rule(name, conj.formula, _head(output, t, c), weight=weight)
        if _passes_checks(kb, rule):
            taken.add(name)
            out.append((net, rule, conj))
            kept.append((net, conj.mask, c))
    return out


def _head(output: str, t, c: int) -> A.Head:
    if isinstance(t, A.BoolType):
        return A.Head(output, bool(c))
    value = A.domain_values(t)[c]
    return A.Head(output, A.Num(int(value)) if isinstance(t, A.IntType) else A.Sym(value))


def _passes_checks(kb, rule: A.Rule) -> bool:
    """The rule added to ``kb`` is valid and :func:`greybox.rules.check` finds no error,
    and no warning about it (dead, subsumed by or equivalent to another rule)."""
    try:
        new = gr.KnowledgeBase([*kb.statements, rule])
    except gr.GreyboxError:
        return False
    report = gr.check(new, analyses=CHECKS, timeout=5.0)
    for f in report.findings:
        if f.severity == "error":
            return False
        if f.severity == "warning" and rule.name in " ".join(map(str, f.subjects)):
            return False
    return True


def _edit(rule: A.Rule) -> tuple[AddStatement, ...]:
    return (AddStatement(str(rule)),)


def candidate_rules(dbg, rows=None, *, max_conditions: int = 3,
                    top: int = 5) -> list[tuple[AddStatement, ...]]:
    """New rules that fix the debugger's failures: each a one-edit tuple adding
    ``rule learned_N weight W: CONDITIONS -> HEAD``.

    Parameters
    ----------
    dbg : Debugger
    rows : sequence of row labels, optional
        The failures to fix (default: every failure); other rows count only when a rule
        would break them.
    max_conditions : int, default 3
        Most conditions in a rule's body (over table inputs and neural concepts).
    top : int, default 5
        Most candidates.

    Returns
    -------
    list of tuple of AddStatement
        Best first (estimated fixed minus broken, then fewer conditions), none a narrower
        copy of a better one with the same head (firing on a subset of its rows); each rule checked
        with :func:`greybox.rules.check` on the edited rules (not dead, not subsumed, no
        contradiction). Apply one with ``dbg.what_if(*edits)``.

    Examples
    --------
    >>> import numpy as np, greybox as gb
    >>> from greybox.explain.debug._propose import candidate_rules
    >>> model = gb.GreyBox('''
    ... input x: real
    ... input z: real
    ... output y: bool
    ... rule big: x > 5 -> y
    ... ''', semantics="product")
    >>> x = np.arange(20.0); z = np.tile([0.0, 1.0], 10)
    >>> dbg = gb.explain.Debugger(model, {"x": x, "z": z}, (x > 5) | ((x < 4) & (z > 0.5)))
    >>> (edit,) = candidate_rules(dbg, top=1)[0]
    >>> print(edit.text)
    rule learned_1 weight 0.5: x <= 4 and z > 0 -> y
    >>> result = dbg.what_if(edit)
    >>> len(result.fixed), len(result.broken)
    (2, 0)
    """
    pred = dbg.predictions()
    kb = dbg.model.kb
    current = _codes(kb, dbg.output, pred["predicted"].tolist())
    desired = _codes(kb, dbg.output, pred["target"].tolist())
    if rows is None:
        wanted = np.ones(len(pred), dtype=bool)
    else:
        wanted = np.asarray(pred.index.isin(list(rows)))
    wanted &= ~pred["infeasible"].to_numpy() & (current >= 0)
    scores = _score_matrix(dbg.model, dbg.batch, dbg.output)
    frame = rule_features(dbg)
    found = _propose(dbg, frame, scores, current, desired, wanted,
                     max_conditions=max_conditions, top=top, base="learned")
    return [_edit(rule) for _net, rule, _conj in found]


def residual_rules(dbg, *, max_conditions: int = 3,
                   top: int = 5) -> list[tuple[AddStatement, ...]]:
    """Rules that reproduce what the model's residual network adds: the rows where the
    residual flips the rules' decision are the targets, so that the rules alone, with
    these added, decide as the rules plus the residual do. A user can then drop the
    residual (``GreyBox(kb)`` without ``residual=``) and read, check and keep the rules.

    Returns ``[]`` for a model without a residual for the debugger's output, or where the
    residual flips no decision. Otherwise as :func:`candidate_rules`, best first, each
    rule checked, but each tuple is the replacement: ``(AddStatement("rule residual_N
    weight W: CONDITIONS -> HEAD"), DropResidual(output))``, so ``dbg.what_if(*edits)``
    shows what the rules alone, with the new one, decide.
    The counts behind the ranking are on the rules alone (the residual removed):
    rows where the rule reproduces the residual's flip minus rows where it changes a
    decision the residual does not.
    """
    model = dbg.model
    if model.residual_for(dbg.output) is None:
        return []
    with_res = _score_matrix(model, dbg.batch, dbg.output)
    rules_only = _score_matrix(model, dbg.batch, dbg.output, residual=False)
    current = np.argmax(rules_only, axis=1)  # ties to the first value, as greybox decides
    desired = np.argmax(with_res, axis=1)
    flipped = current != desired
    if not flipped.any():
        return []
    frame = rule_features(dbg)
    found = _propose(dbg, frame, rules_only, current, desired, flipped,
                     max_conditions=max_conditions, top=top, base="residual")
    return [(*_edit(rule), DropResidual(dbg.output)) for _net, rule, _conj in found]
