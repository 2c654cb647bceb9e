"""The debugger's failing rows, each with the rules that fired, its concept values and a
one-line verdict; and per rule and constraint, where it fires and how often it is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from greybox.errors import ModelError
from greybox.rules import ast as A

from ._show import _py, _short
from ._targets import _check_tol


def failures(dbg, tol: float | None = None) -> pd.DataFrame:
    """The wrong predictions of ``dbg`` (see :meth:`Debugger.failures`)."""
    now = dbg._now
    if tol is not None:
        if not dbg.numeric:
            raise ModelError(f"tol is for outputs that are numbers; {dbg.output!r} is "
                             "compared exactly")
        tol = _check_tol(tol)
        now = now.assign(correct=dbg._right(now, tol))
    wrong = now[~now["correct"]]
    if not len(wrong):
        return wrong.assign(rules_fired="", concepts="", verdict="")
    fired, concepts, verdicts = _described(dbg, wrong)
    out = wrong.assign(rules_fired=fired, concepts=concepts, verdict=verdicts)
    if "confidence" in out:
        out = out.sort_values("confidence", ascending=False, kind="stable")
    elif "error" in out:
        out = out.iloc[np.argsort(-np.abs(out["error"].to_numpy(np.float64)),
                                  kind="stable")]
    return out


def _described(dbg, wrong: pd.DataFrame) -> tuple[list, list, list]:
    """Per failing row of ``wrong``: the rules that fired, the concept values and the
    verdict (three lists of text)."""
    positions = [dbg.batch.index.get_loc(i) for i in wrong.index]
    n = len(positions)
    sub = dbg.batch.take(torch.as_tensor(positions))
    with torch.no_grad():
        # the rules as the decision function fired them (what predict decided with);
        # the concepts with the networks' probabilities
        trace = dbg._model.eval()(sub)
        decided = dbg._model(sub, crisp=True)
    fired, concepts, verdicts = [], [], []
    kb = dbg._model.kb
    # what the output depends on: in a relational model, its own groundings only
    behind = kb.depends_on(dbg.output)
    own_rules = [r for r in kb.rules if "rule:" + r in behind]
    own_neural = [n for n in kb.neural if n in behind]
    for j in range(n):
        rules = [(r, float(decided.contributions[r].expand(n)[j]))
                 for r in own_rules
                 if float(decided.bodies[r].expand(n)[j]) > 0.5]
        fired.append("; ".join(r for r, _ in rules))   # names may hold ", "
        values = _concept_values(kb, own_neural, trace, j)
        concepts.append("; ".join(values))
        verdicts.append(_verdict(dbg, wrong.iloc[j], rules, values))
    return fired, concepts, verdicts


def _concept_values(kb, names: list[str], trace, j: int) -> list[str]:
    """The neural concepts ``names`` on row ``j`` of ``trace``, with their probabilities."""
    values = []
    for n in names:
        v = trace.values[n][j]
        t = kb.variables[n].type
        if isinstance(t, A.BoolType):
            values.append(f"{n}={bool(v > 0.5)} (p={max(float(v), 1 - float(v)):.2f})")
        elif v.dim() == 1 and A.is_finite_type(t):
            k = int(v.argmax())
            values.append(f"{n}={A.domain(t).value(k)} (p={float(v[k]):.2f})")
        else:
            values.append(f"{n}={float(v):.3g}")
    return values


def _verdict(dbg, row, rules: list[tuple[str, float]], values: list[str]) -> str:
    """One line on why the failing ``row`` went wrong, from the rules that fired
    (``(name, contribution)``) and its concept values."""
    kb = dbg._model.kb
    if row["infeasible"]:
        return "no decision satisfies the hard constraints"
    if kb.variables[dbg.output].role == "defined":   # computed from concepts
        return (f"predicted {_py(row['predicted'])!r} instead of "
                f"{_py(row['target'])!r}; computed from {values and ', '.join(values) or 'its definition'}"
                " -- a concept is probably wrong")
    pushes = sorted(rules, key=lambda rc: -abs(rc[1]))
    if dbg.numeric:   # the rules that pushed the number the wrong way
        err = float(row["error"])
        toward = [f"{r} ({_short(c)})" for r, c in pushes if c * err > 0]
        return (f"predicted {_short(row['predicted'], sign=False)} instead of "
                f"{_short(row['target'], sign=False)} (error {_short(err)})"
                + (f"; pushed {'up' if err > 0 else 'down'} by {', '.join(toward[:2])}"
                   if toward else "; no rule pushed it that way: bias, residual or "
                   "a missing rule"))
    toward = [f"{r} ({c:+.2f})" for r, c in pushes
              if _pushes_toward(kb, dbg.output, r, row["predicted"], c)]
    return (f"predicted {_py(row['predicted'])!r} instead of {_py(row['target'])!r}"
            + (f"; pushed by {', '.join(toward[:2])}" if toward else "; no rule fired for "
               "it: bias, residual or concepts decided"))


def rule_stats(dbg) -> pd.DataFrame:
    """Per rule and constraint of ``dbg``'s model (see :meth:`Debugger.rule_stats`)."""
    kb = dbg._model.to_kb()
    n = dbg.batch.n
    with torch.no_grad():
        decided = dbg._model.eval()(dbg.batch, crisp=True)
    correct = dbg._now["correct"].to_numpy()
    total = int((~correct).sum())
    rows = []
    for s in kb.statements:
        if isinstance(s, A.Rule):
            kind, truth = "rule", decided.bodies.get(s.name)
        elif isinstance(s, A.Constraint):
            kind = "hard" if s.weight is None else "soft"
            truth = decided.constraints.get(s.name)
        else:
            continue
        if truth is None:   # not part of this output's decision
            continue
        on = (truth.expand(n) > 0.5).cpu().numpy()
        wrong = int((on & ~correct).sum())
        rows.append({"name": s.name, "kind": kind, "fires": int(on.sum()),
                     "accuracy": float(correct[on].mean()) if on.any() else float("nan"),
                     "failures": wrong, "share": wrong / total if total else float("nan")})
    out = pd.DataFrame(rows, columns=["name", "kind", "fires", "accuracy", "failures",
                                      "share"])
    return out.set_index("name").rename_axis(None)


def _pushes_toward(kb, output: str, rule: str, value, contribution: float) -> bool:
    """Whether a rule's contribution pushes ``output`` toward ``value``."""
    r = kb.rules[rule]
    if r.head.name != output:
        return False
    if isinstance(kb.variables[output].type, A.BoolType):
        return (contribution > 0) == bool(value)
    target = r.head.value.value if isinstance(r.head.value, A.Num) else r.head.value.name
    return target == value and contribution > 0
