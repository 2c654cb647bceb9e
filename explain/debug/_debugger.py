"""The Debugger: failures, where they concentrate, who is to blame, and what-if edits."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from greybox.errors import DataError, GreyboxError, ModelError
from greybox.rules import (
    KnowledgeBase,
    align_labels,
    decode_bools,
    family_columns,
    missing_key,
    missing_values,
    parse_statements,
    to_text,
)
from greybox.rules import ast as A

from ._edits import DropResidual, Edit, NotFound, Remove, Replace, _find, parse_edit
from ._export import bias_text, relational_kb

__all__ = ["Blame", "Debugger", "WhatIf"]


def _frame_html(title: str, frame: pd.DataFrame, text: str = "") -> str:
    pre = f"<pre>{html.escape(text)}</pre>" if text else ""
    return f"<div><b>{html.escape(title)}</b>{pre}{frame.head(50)._repr_html_()}</div>"


@dataclass(frozen=True, repr=False)
class WhatIf:
    """The effect of the edits so far on the whole data set, against the original model:
    ``fixed`` (failures now right), ``broken`` (right predictions now wrong), accuracy
    before and after."""

    edits: tuple[str, ...]
    accuracy_before: float
    accuracy_after: float
    fixed: pd.DataFrame
    broken: pd.DataFrame
    changed: int

    def __str__(self) -> str:
        lines = [f"what if: {'; '.join(self.edits) or 'no edit'}",
                 f"  accuracy {self.accuracy_before:.3f} -> {self.accuracy_after:.3f}; "
                 f"{len(self.fixed)} failures fixed, {len(self.broken)} correct predictions "
                 f"broken, {self.changed} predictions changed"]
        if len(self.fixed):
            lines.append(f"  fixed: rows {', '.join(map(str, list(self.fixed.index[:10])))}")
        if len(self.broken):
            lines.append(f"  broken: rows {', '.join(map(str, list(self.broken.index[:10])))}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"WhatIf({len(self.edits)} edit(s): accuracy {self.accuracy_before:.3f} -> "
                f"{self.accuracy_after:.3f}, {len(self.fixed)} fixed, {len(self.broken)} "
                f"broken, {self.changed} changed)")

    def to_frame(self) -> pd.DataFrame:
        return pd.concat([self.fixed.assign(effect="fixed"), self.broken.assign(effect="broken")])

    def _repr_html_(self) -> str:
        return _frame_html("What if", self.to_frame(), str(self))


@dataclass(frozen=True, repr=False)
class Blame:
    """Who is to blame for one failure.

    ``rules``: each rule's push toward the wrong answer (positive = toward it);
    ``concepts``: the neural concepts whose smallest change fixes the decision (the likely
    culprits), with their values (``concept_attributions``: what their networks looked
    at); ``parameters``: the top parameter entries behind the
    decision; ``training``: the training rows that pushed most toward the wrong answer
    (TracIn), when training data was given; ``verdict``: one line.
    """

    row: object
    predicted: object
    target: object
    rules: pd.DataFrame
    concepts: pd.DataFrame
    parameters: pd.DataFrame
    training: pd.DataFrame | None
    verdict: str
    explanation: object = field(repr=False, default=None)
    #: whether the row was predicted right (then nothing is blamed: no suspect concepts,
    #: no training rows; ``rules.toward_wrong`` is each rule's push away from the answer)
    correct: bool = False

    @property
    def concept_attributions(self) -> dict:
        """Input attributions of the suspect concepts (what their networks looked at)."""
        if self.explanation is None:
            return {}
        return {c: self.explanation.attributions[c][0] for c in self.concepts.concept
                if c in self.explanation.attributions}

    def __str__(self) -> str:
        lines = [f"row {self.row}: predicted {self.predicted!r}, expected {self.target!r}"
                 + (" (correct)" if self.correct else ""),
                 f"  verdict: {self.verdict}"]
        wrong = self.rules[self.rules.toward_wrong > 1e-6]
        if len(wrong):
            lines.append(("  rules pushing away from it: " if self.correct
                          else "  rules pushing it wrong: ") + ", ".join(
                f"{r.rule} {r.toward_wrong:+.3f}" for r in wrong.itertuples()))
        if len(self.concepts):
            lines.append("  suspect concepts: " + ", ".join(
                f"{c.concept} = {c.value!r} (would need {c.needed!r})"
                for c in self.concepts.itertuples()))
        if len(self.parameters):
            lines.append("  parameters: " + ", ".join(
                f"{p.entry} {p.attribution:+.3g}" for p in self.parameters.head(3).itertuples()))
        if self.training is not None and len(self.training):
            lines.append("  training rows that pushed toward it: " + ", ".join(
                f"{t.train_row} ({t.influence:+.3g})" for t in self.training.head(5).itertuples()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Blame(row {self.row!r}: predicted {self.predicted!r}, expected "
                f"{self.target!r}; {self.verdict})")

    def to_frame(self) -> pd.DataFrame:
        """Every piece of blame in one tidy table: ``kind`` (rule, concept, parameter,
        training row), ``name`` and ``score`` (push toward the wrong answer, attribution
        or influence; a suspect concept scores 1 and names the value it would need)."""
        rows = [{"kind": "rule", "name": r.rule, "score": float(r.toward_wrong), "detail": ""}
                for r in self.rules.itertuples()]
        rows += [{"kind": "concept", "name": c.concept, "score": 1.0,
                  "detail": f"{c.value!r} -> {c.needed!r}"} for c in self.concepts.itertuples()]
        rows += [{"kind": "parameter", "name": p.entry, "score": float(p.attribution),
                  "detail": ""} for p in self.parameters.itertuples()]
        if self.training is not None:
            rows += [{"kind": "training row", "name": t.train_row, "score": float(t.influence),
                      "detail": ""} for t in self.training.itertuples()]
        return pd.DataFrame(rows, columns=["kind", "name", "score", "detail"])

    def _repr_html_(self) -> str:
        return _frame_html("Blame", self.rules, str(self))


class Debugger:
    """Debug a model's failing predictions on a labelled data set.

    Parameters
    ----------
    model : GreyBox
    data : DataFrame or mapping
        The rows to debug.
    targets : array, Series or mapping, optional
        The correct values of ``output`` (a mapping names the output), one per row, by
        position; default: the data's column named after the output. They are decoded
        like the output's type: a bool output takes True/False, 1/0 or the strings
        ``true``/``false``/``yes``/``no``/``1``/``0`` (any case); an int output integral
        numbers or their strings within its range; an enum output its value names; a real
        output finite numbers. Anything else, and a missing target (NaN, None, a blank CSV
        cell), raises :class:`~greybox.DataError` naming the row: the debugger needs the
        correct answer of every row (drop unlabelled rows first, e.g.
        ``data[data[col].notna()]``), never guesses one.
    output : str, optional
        Default: the only output.
    tol : float, optional
        For a regression output (a rule-decided real, or an int its rules add to): a row
        fails when ``|predicted - target| > tol``. Default: a tenth of the targets'
        standard deviation for a real output, 0 (exact) for an int one.
        :meth:`failures` takes another for one call; :meth:`metrics` gives MAE, RMSE
        and R².
    train : (data, targets), optional
        Training data, for blaming training examples (TracIn). ``targets`` as for fit:
        the output's labels (an array or Series, one per row), or a mapping naming the
        output (on a relational model, its family: ``{"cancer": array}``); rows whose
        label is missing (NaN, None) taught the output nothing and are left out.

    Examples
    --------
    >>> import numpy as np, greybox as gb
    >>> model = gb.GreyBox('''
    ... input x: real[0, 10]
    ... output high: bool
    ... rule big: x > 5 -> high
    ... rule small: x <= 5 -> not high
    ... ''', semantics="product")
    >>> x = np.linspace(0, 10, 21)
    >>> dbg = gb.explain.Debugger(model, {"x": x}, x > 6)
    >>> len(dbg.failures())
    2
    >>> result = dbg.what_if(gb.explain.SetThreshold("big", 0, 6.0),
    ...                      gb.explain.SetThreshold("small", 0, 6.0))
    >>> len(result.fixed), len(result.broken), result.accuracy_after
    (2, 0, 1.0)
    """

    def __init__(self, model, data, targets=None, *, output: str | None = None, train=None,
                 tol: float | None = None):
        kb = model.kb
        if targets is None:   # the correct answers as a column of the data
            name = output or kb.outputs[0]
            if not (isinstance(data, (pd.DataFrame, Mapping)) and name in data):
                raise DataError(f"give targets, or a column {name!r} in the data with the "
                                "correct answers")
            targets = data[name]
        if isinstance(targets, Mapping):
            if len(targets) != 1:
                raise DataError("targets for the debugger name exactly one output")
            output, targets = next(iter(targets.items()))
        output = output or kb.outputs[0]
        var = kb.variables.get(output)
        families = [n for n, f in kb.families.items() if f.kind == "output"]
        if var is None and output in families:
            member = next(iter(kb.families[output].members.values()))
            raise ModelError(f"{output!r} is an output family: debug one member with "
                             f"Debugger (targets={{{member!r}: ...}}), or every member "
                             f"with EntityDebugger(model, data, {{{output!r}: ...}})")
        if var is None or not var.output:
            raise ModelError(f"{output!r} is not an output (outputs: {', '.join(kb.outputs)})")
        if families and not isinstance(targets, Mapping) and np.ndim(targets) == 2:
            raise DataError(f"targets must have one value per row (of {output!r}): got shape "
                            f"{np.shape(targets)}; the targets of a whole output family are "
                            f"debugged with EntityDebugger(model, data, "
                            f"{{{families[0]!r}: targets}})")
        self.output = output
        self._base = model
        self.data = data
        self.batch = model.batch(data)
        _unique_labels(self.batch.index)
        self.target = _decode_targets(var, targets, self.batch.index)
        #: whether the output is a number (a regression output), compared within ``tol``
        self.numeric = output in kb.additive or (var.role != "decided" and isinstance(
            var.type, A.RealType))
        self.tol = _tolerance(self, var, tol)
        #: the training rows with a label for the output (batch, decoded targets), for
        #: TracIn; None without ``train``
        self.train = None if train is None else _training_set(model, var, train)
        self._edits: list[Edit] = []
        self._model = model
        self._before = self._predict(model)
        self._now = self._before

    # ------------------------------------------------------------------ state
    @property
    def model(self):
        """The model with the edits so far. On a relational model it stays relational
        after edits of single groundings where the rule language can say them (see
        :meth:`export`): it reads the data as the original does."""
        return self._model

    @property
    def edits(self) -> tuple[Edit, ...]:
        return tuple(self._edits)

    def _predict(self, model, *, confidence: bool = True, batch_size: int = 4096
                 ) -> pd.DataFrame:
        """Per row of the data: ``model``'s prediction, whether it is infeasible,
        (``confidence``: its probability,) the target and whether it is correct
        (``batch_size``: predict's chunks; each row is decided on its own)."""
        pred = model.predict(self.batch, on_infeasible="flag", batch_size=batch_size)
        out = pd.DataFrame({"predicted": pred[self.output].to_numpy()}, index=self.batch.index)
        out["infeasible"] = pred["infeasible"].to_numpy()
        if not confidence or self.numeric:
            out["target"] = self.target
            if self.numeric:
                out["error"] = out["predicted"].to_numpy(np.float64) - self.target
            out["correct"] = self._right(out)
            return out
        with torch.no_grad():
            model.eval()
            p = model.predict_proba(self.batch, self.output) if A.is_finite_type(
                model.kb.variables[self.output].type) and not getattr(model, "_crisp", False) \
                else None
        if p is not None:
            cols = list(p.columns)
            idx = [cols.index(v) for v in out["predicted"]]
            out["confidence"] = p.to_numpy()[np.arange(len(out)), idx]
        out["target"] = self.target
        out["correct"] = (out["predicted"].to_numpy() == self.target) & ~out["infeasible"]
        return out

    def _right(self, out: pd.DataFrame, tol: float | None = None) -> np.ndarray:
        """Per row, whether the prediction is right: equal to the target, or for a
        number within ``tol`` (default :attr:`tol`) of it; never where infeasible."""
        pred = out["predicted"].to_numpy()
        if self.numeric:
            tol = self.tol if tol is None else tol
            ok = np.abs(pred.astype(np.float64) - self.target) <= tol
        else:
            ok = pred == self.target
        return ok & ~out["infeasible"].to_numpy()

    def predictions(self) -> pd.DataFrame:
        """Per row: predicted, confidence (a finite output), error (a number: predicted -
        target), target, correct (with the edits so far)."""
        return self._now.copy()

    def metrics(self) -> dict:
        """Error figures of the predictions (with the edits so far): for a number, MAE,
        RMSE, R² (1 - squared error / the targets' variance around their mean), the
        tolerance and the share of rows within it; for a class, the accuracy. Infeasible
        rows are left out of the errors.

        Examples
        --------
        >>> import numpy as np, greybox as gb
        >>> model = gb.GreyBox("input x: real  output y: real  rule r weight 10: x > 1 -> y",
        ...                    semantics="product")
        >>> dbg = gb.explain.Debugger(model, {"x": [0.0, 2.0, 3.0]}, [1.0, 10.0, 13.0], tol=2)
        >>> {k: round(v, 3) for k, v in dbg.metrics().items()}
        {'mae': 1.333, 'rmse': 1.826, 'r2': 0.872, 'tol': 2.0, 'within_tol': 0.667}
        """
        now = self._now
        if not self.numeric:
            return {"accuracy": self.accuracy}
        ok = ~now["infeasible"].to_numpy()
        err = now["error"].to_numpy(np.float64)[ok]
        y = self.target[ok]
        var = float(((y - y.mean()) ** 2).sum()) if len(y) else float("nan")
        sse = float((err ** 2).sum())
        return {"mae": float(np.abs(err).mean()) if len(err) else float("nan"),
                "rmse": float(np.sqrt((err ** 2).mean())) if len(err) else float("nan"),
                "r2": 1.0 - sse / var if var > 0 else float("nan"),
                "tol": float(self.tol),
                "within_tol": float(now["correct"].mean()) if len(now) else float("nan")}

    @property
    def accuracy(self) -> float:
        return float(self._now["correct"].mean()) if len(self._now) else float("nan")

    # ------------------------------------------------------------------ failures
    def failures(self, tol: float | None = None) -> pd.DataFrame:
        """The wrong predictions: confidence, the rules that fired, concept values and a
        one-line verdict, most confident first. ``rules_fired`` and ``concepts`` list
        their items separated by ``"; "`` (grounded names such as ``spread(bob, anna)``
        hold ``", "``).

        For a number (a regression output), a row fails when ``|predicted - target| >
        tol`` (default the debugger's :attr:`tol`); largest errors first, with the
        rules that pushed the prediction the wrong way."""
        now = self._now
        if tol is not None:
            if not self.numeric:
                raise ModelError(f"tol is for outputs that are numbers; {self.output!r} is "
                                 "compared exactly")
            tol = _check_tol(tol)
            now = now.assign(correct=self._right(now, tol))
        wrong = now[~now["correct"]]
        if not len(wrong):
            return wrong.assign(rules_fired="", concepts="", verdict="")
        positions = [self.batch.index.get_loc(i) for i in wrong.index]
        sub = self.batch.take(torch.as_tensor(positions))
        with torch.no_grad():
            # the rules as the decision function fired them (what predict decided with);
            # the concepts with the networks' probabilities
            trace = self._model.eval()(sub)
            decided = self._model(sub, crisp=True)
        fired, concepts, verdicts = [], [], []
        kb = self._model.kb
        # what the output depends on: in a relational model, its own groundings only
        behind = kb.depends_on(self.output)
        own_rules = [r for r in kb.rules if "rule:" + r in behind]
        own_neural = [n for n in kb.neural if n in behind]
        for j in range(len(positions)):
            rules = [(r, float(decided.contributions[r].expand(len(positions))[j]))
                     for r in own_rules
                     if float(decided.bodies[r].expand(len(positions))[j]) > 0.5]
            fired.append("; ".join(r for r, _ in rules))   # names may hold ", "
            values = []
            for n in own_neural:
                v = trace.values[n][j]
                t = kb.variables[n].type
                if isinstance(t, A.BoolType):
                    values.append(f"{n}={bool(v > 0.5)} (p={max(float(v), 1 - float(v)):.2f})")
                elif v.dim() == 1 and A.is_finite_type(t):
                    k = int(v.argmax())
                    values.append(f"{n}={A.domain(t).value(k)} (p={float(v[k]):.2f})")
                else:
                    values.append(f"{n}={float(v):.3g}")
            concepts.append("; ".join(values))
            row = wrong.iloc[j]
            if row["infeasible"]:
                verdicts.append("no decision satisfies the hard constraints")
                continue
            if kb.variables[self.output].role == "defined":   # computed from concepts
                verdicts.append(f"predicted {_py(row['predicted'])!r} instead of "
                                f"{_py(row['target'])!r}; computed from {values and ', '.join(values) or 'its definition'}"
                                " -- a concept is probably wrong")
                continue
            pushes = sorted(rules, key=lambda rc: -abs(rc[1]))
            if self.numeric:   # the rules that pushed the number the wrong way
                err = float(row["error"])
                toward = [f"{r} ({_short(c)})" for r, c in pushes if c * err > 0]
                verdicts.append(
                    f"predicted {_short(row['predicted'], sign=False)} instead of "
                    f"{_short(row['target'], sign=False)} (error {_short(err)})"
                    + (f"; pushed {'up' if err > 0 else 'down'} by {', '.join(toward[:2])}"
                       if toward else "; no rule pushed it that way: bias, residual or "
                       "a missing rule"))
                continue
            toward = [f"{r} ({c:+.2f})" for r, c in pushes
                      if _pushes_toward(kb, self.output, r, row["predicted"], c)]
            verdicts.append(
                f"predicted {_py(row['predicted'])!r} instead of {_py(row['target'])!r}"
                + (f"; pushed by {', '.join(toward[:2])}" if toward else "; no rule fired for "
                   "it: bias, residual or concepts decided"))
        out = wrong.assign(rules_fired=fired, concepts=concepts, verdict=verdicts)
        if "confidence" in out:
            out = out.sort_values("confidence", ascending=False, kind="stable")
        elif "error" in out:
            out = out.iloc[np.argsort(-np.abs(out["error"].to_numpy(np.float64)),
                                      kind="stable")]
        return out

    # ------------------------------------------------------------------ cohorts
    def _features(self) -> pd.DataFrame:
        kb = self._model.kb
        cols = {}
        for n in kb.inputs:
            t = kb.variables[n].type
            if isinstance(t, A.TensorType) or n not in self.batch.columns:
                continue
            v = self.batch.columns[n]
            if isinstance(t, A.EnumType):
                for k, name in enumerate(t.values):
                    cols[f"{n} == {name}"] = (v == k).astype(float)
            else:
                cols[n] = v.astype(float)
            if kb.variables[n].optional:   # missing cells hold a placeholder: say where
                cols[f"{n} is missing"] = self.batch.columns[missing_key(n)].astype(float)
        with torch.no_grad():
            trace = self._model.eval()(self.batch)
        for n in kb.neural:
            v = trace.values[n]
            t = kb.variables[n].type
            if v.dim() == 2:
                for k, name in enumerate(A.domain_values(t)):
                    cols[f"{n} == {name}"] = (v.argmax(1) == k).float().numpy()
            else:
                cols[n] = (v > 0.5).float().numpy() if isinstance(t, A.BoolType) else v.numpy()
        with torch.no_grad():
            decided = self._model(self.batch, crisp=True)
        for r in kb.rules:
            cols[f"rule {r} fired"] = (decided.bodies[r].expand(self.batch.n) > 0.5
                                       ).float().numpy()
        return pd.DataFrame(cols, index=self.batch.index)

    def cohorts(self, *, max_depth: int = 3, min_size: int = 10) -> pd.DataFrame:
        """Where errors concentrate: the leaves of a shallow decision tree that predicts
        failure from the inputs, the concept values and which rules fired (as in
        error-analysis trees), ranked by error rate, then size."""
        from sklearn.tree import DecisionTreeClassifier

        feats = self._features()
        errors = (~self._now["correct"]).to_numpy().astype(int)
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

    # ------------------------------------------------------------------ rule statistics
    def rule_stats(self) -> pd.DataFrame:
        """Per rule and constraint of the model with the edits so far, counted by crisp
        evaluation on every row (as the decision function fires them, not estimated).

        Columns: ``kind`` (``rule``, ``hard`` or ``soft`` constraint); ``fires`` (rows
        where a rule's body holds; for a constraint, rows where it holds);
        ``accuracy`` (of the model's decision on those rows; NaN on none);
        ``failures`` (failing rows among them) and ``share`` (``failures`` over every
        failure; NaN with no failure). Indexed by name, in the rules' order.

        Examples
        --------
        >>> import numpy as np, greybox as gb
        >>> model = gb.GreyBox('''
        ... input x: real[0, 10]
        ... output high: bool
        ... rule big: x > 5 -> high
        ... rule small: x <= 5 -> not high
        ... ''', semantics="product")
        >>> x = np.linspace(0, 10, 21)
        >>> dbg = gb.explain.Debugger(model, {"x": x}, x > 6)
        >>> dbg.rule_stats()[["fires", "accuracy", "failures", "share"]]
               fires  accuracy  failures  share
        big       10       0.8         2    1.0
        small     11       1.0         0    0.0
        """
        kb = self._model.to_kb()
        n = self.batch.n
        with torch.no_grad():
            decided = self._model.eval()(self.batch, crisp=True)
        correct = self._now["correct"].to_numpy()
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

    # ------------------------------------------------------------------ blame
    def blame(self, row, *, layers=None) -> Blame:
        """Split the blame for one failure (``row``: a label of the data's index) between
        rules, neural concepts, parameters and, with training data, training examples.

        ``layers``: the modules whose gradients TracIn compares to blame training rows
        (names of ``model.named_modules()`` such as ``"networks.digit.fc"`` or
        ``"rules"``, or ``"all"`` or ``"last"``; default: every layer of a model of at
        most 1,000,000 trainable parameters, else each network's last layer and the
        rules' parameters, as in docs/explanations.md, "Big networks"). A name that is
        no module with trainable parameters raises :class:`~greybox.ModelError` listing
        the valid ones.

        A row predicted right has nothing to blame: its ``Blame`` says so (``correct``),
        names no suspect concept and no training row, and lists the rules that pushed
        away from the answer (``toward_wrong > 0``) -- the risks, not causes."""
        from .._explain import explain
        from ..formal import counterfactual
        from ._tracin import tracin_layers

        if layers is not None:      # refused at once, not only when TracIn runs
            tracin_layers(self._model, layers)
        if row not in self._now.index:
            raise DataError(f"row {row!r} is not in the data")
        pos = self.batch.index.get_loc(row)
        info = self._now.loc[row]
        correct = bool(info["correct"])
        sub = self.batch.take(torch.as_tensor([pos]))
        ex = explain(self._model, sub, self.output)
        kb = self._model.kb
        rules = ex.rules.copy()
        # toward the prediction when it is wrong; away from it (toward any other value) when
        # it is right -- then there is no mistake, and a positive push is a risk, not a cause
        sign = -1.0 if correct else 1.0
        if self.numeric:   # a number: pushed the way of its error
            err = float(np.sign(info["error"]))
            rules["toward_wrong"] = [sign * err * c if sign > 0 else abs(c)
                                     for c in rules.contribution]
        else:
            rules["toward_wrong"] = [
                sign * (c if _pushes_toward(kb, self.output, r, info["predicted"], 1.0) else -c)
                for r, c in zip(rules.rule, rules.contribution)]
        rules = rules.sort_values("toward_wrong", ascending=False, kind="stable")
        concepts = pd.DataFrame(columns=["concept", "value", "needed"])
        if correct:
            return Blame(row, _py(info["predicted"]), _py(info["target"]),
                         rules.drop(columns=["row"]).reset_index(drop=True), concepts,
                         ex.top_parameters.drop(columns=["row"], errors="ignore"), None,
                         "predicted correctly: nothing to blame", ex, correct=True)
        if kb.neural and not self.numeric:   # a number's concepts: not yet (issue 21)
            try:
                # the concepts alone change (inputs held): a concept-level question
                cf = counterfactual(self._model, sub, None, self.output, level="concept",
                                    immutable=[n for n in kb.inputs if n in self.batch.columns])
                moved = cf.changes
                concepts = pd.DataFrame({"concept": moved.fact,
                                         "value": pd.Series(list(moved.before), dtype=object),
                                         "needed": pd.Series(list(moved.after), dtype=object)})
            except GreyboxError:   # no change of the concepts alone flips it: none suspect
                pass
        training = self._tracin(sub, info, layers) \
            if self.train is not None and not self.numeric else None
        culprit = "rules" if (rules.toward_wrong > 1e-6).any() else "bias/residual"
        if len(concepts):
            culprit = f"concept {concepts.concept.iloc[0]} = {concepts.value.iloc[0]!r} " \
                      "(the nearest value that flips the decision: " \
                      f"{concepts.needed.iloc[0]!r})"
        elif (rules.toward_wrong > 1e-6).any():
            culprit = f"rule {rules.rule.iloc[0]} (pushed {rules.toward_wrong.iloc[0]:+.2f} " \
                      "toward the wrong answer)"
        return Blame(row, _py(info["predicted"]), _py(info["target"]),
                     rules.drop(columns=["row"]).reset_index(drop=True),
                     concepts.reset_index(drop=True),
                     ex.top_parameters.drop(columns=["row"], errors="ignore"),
                     training, f"most likely: {culprit}", ex)

    def _tracin(self, sub, info, layers=None) -> pd.DataFrame:
        from ._tracin import tracin_influence

        return tracin_influence(self._model, self.output, self.train, sub, info["target"],
                                layers=layers)

    # ------------------------------------------------------------------ what if
    def _templates(self, edits: list[Edit]):
        """The learned knowledge base with the edits of whole statements applied (on a
        relational model: of templates), its statements (the templates, on a relational
        model) and the edits left for grounded members."""
        kb = self._base.to_kb()
        # the original statements are valid: any error is in an edit, so locations and
        # carets refer to the edit's own text
        texts = [e.text for e in edits if hasattr(e, "text")]
        source = texts[-1] if texts else None
        if kb.program is None:
            return kb, list(kb.statements), list(edits)
        # relational: edits that name a template change it (the whole family) ...
        templates, members = list(kb.program.templates), []
        for e in edits:
            try:
                templates = e.apply(templates)
            except NotFound:
                members.append(e)
            else:   # in order: a later template edit reaches its edited groundings
                members = _after_template_edit(members, e, kb.program)
        kb = KnowledgeBase(templates, filename="<edit>", source=source)
        return kb, templates, [_grounded_text(e, templates) for e in members]

    def _rebuild(self, edits: list[Edit]):
        """A copy of the original model with ``edits`` applied (what :meth:`what_if`
        predicts with)."""
        dropped = [e.name for e in edits if isinstance(e, DropResidual)]
        return self._base.replace(kb=self._edited_kb(edits),
                                  drop_residual=list(dict.fromkeys(dropped))).eval()

    def _edited_kb(self, edits: list[Edit]) -> KnowledgeBase:
        """The original model's learned knowledge base with ``edits`` applied."""
        kb, templates, members = self._templates(edits)
        texts = [e.text for e in edits if hasattr(e, "text")]
        source = texts[-1] if texts else None
        # ... the others a grounded member (or, propositional, a statement)
        statements = list(kb.statements)
        for e in members:
            statements = e.apply(statements)
        new_kb = KnowledgeBase(statements, filename="<edit>", source=source) if members \
            else kb
        if members and kb.program is not None:
            # the same statements written relationally, where the language can: the
            # edited model reads the data as the original does (a family under its
            # name), and its rules print as templates
            new_kb = relational_kb(new_kb, templates, start=kb) or new_kb
        if self.output not in new_kb.outputs:
            raise ModelError(f"the edits leave no output {self.output!r}")
        return new_kb

    def what_if(self, *edits) -> WhatIf:
        """Apply ``edits`` (on top of the earlier ones) to a copy of the model and
        re-evaluate every row: which failures they fix, which correct predictions they
        break. An invalid edit raises its error and changes nothing."""
        parsed = [parse_edit(e) for e in edits]
        model = self._rebuild(self._edits + parsed)   # raises before anything changes
        self._edits += parsed
        self._model = model
        self._now = self._predict(model)
        return self.diff()

    def diff(self) -> WhatIf:
        """The effect of the current edits against the original model."""
        before, now = self._before, self._now
        fixed = now[~before["correct"] & now["correct"]]
        broken = now[before["correct"] & ~now["correct"]]
        cols = ["predicted", "target"]
        fixed = fixed[cols].assign(was=before.loc[fixed.index, "predicted"])
        broken = broken[cols].assign(was=before.loc[broken.index, "predicted"])
        changed = int((before["predicted"] != now["predicted"]).sum())
        return WhatIf(tuple(e.describe() for e in self._edits), float(before["correct"].mean()),
                      float(now["correct"].mean()), fixed, broken, changed)

    def suggest(self, rows=None, *, validation=None, keep=(), max_edits: int = 2,
                top: int = 10, timeout: float = 10.0, n_jobs: int | None = None):
        """Ranked, certified edits that fix failing predictions.

        Each :class:`~greybox.explain.debug.Suggestion` is a short list of ordinary edits
        (a rule's weight or one of its numbers, a rule switched off, a hard constraint's
        number or its removal, a bias change; a pair of those with ``max_edits=2``) with the rows it fixes
        and breaks exactly as :meth:`what_if` reports them (``dbg.what_if(*s.edits)``: the
        same rebuild and ``predict``), certified by Z3. The debugger itself does not change.

        The best value of one weight or number is exact: a sweep over the rows'
        breakpoints (where some row's decision changes), the value a short decimal in the
        best interval; pairs come from a bounded search (the best single edits, each
        followed by the sweep of every other weight and number); see
        :mod:`greybox.explain.debug._suggest`. A bias change is suggested as the rule it
        equals (``rule bias_shift_out weight b fixed: true -> out``: the language has no
        bias statement).

        Parameters
        ----------
        rows : row labels, optional
            The failures to fix (e.g. a cohort's rows); default every failure. Rows
            predicted right are ignored.
        validation : (data, targets), optional
            Held-out rows: suggestions are ranked by what they fix minus what they break
            there first.
        keep : sequence of str
            Properties every suggestion must keep entailed (``greybox.rules.entails``),
            e.g. ``["age < 18 -> not approve"]``.
        max_edits : int
            1: single edits; 2: pairs too.
        top : int
            How many suggestions to return.
        timeout : float
            Seconds for each Z3 check.
        n_jobs : int, optional
            Measure the candidates (each a rebuild, ``predict`` on every row and its Z3
            checks) that many at a time through ``joblib.Parallel`` (worker processes;
            ``joblib.parallel_config`` picks Dask or Ray): the same suggestions as the
            serial search.

        Returns
        -------
        Suggestions
            Best first: held-out fixed minus broken (with ``validation``), then the aimed
            failures fixed minus rows broken, then fewer edits, then the smaller change.
            ``dropped`` says which candidates a check left out, and why.

        Raises
        ------
        DataError
            ``rows`` names labels not in the data; bad ``validation``.
        ModelError
            ``max_edits`` or ``top`` below 1; a real output, or one not decided by rules.

        Examples
        --------
        >>> import numpy as np, greybox as gb
        >>> model = gb.GreyBox('''
        ... input x: real[0, 10]
        ... output high: bool
        ... rule big: x > 5 -> high
        ... ''', semantics="product")
        >>> x = np.linspace(0, 10, 21)
        >>> dbg = gb.explain.Debugger(model, {"x": x}, x > 6)
        >>> best = dbg.suggest()[0]
        >>> print(best)
        set number 0 of big to 6: +2 fixed, -0 broken, accuracy 0.905 -> 1.000
        >>> len(dbg.what_if(*best.edits).fixed)
        2
        """
        from ._suggest import suggest

        return suggest(self, rows, validation=validation, keep=keep, max_edits=max_edits,
                       top=top, timeout=timeout, n_jobs=n_jobs)

    def propose_rules(self, rows=None, *, max_conditions: int = 3, top: int = 5,
                      validation=None, keep=(), timeout: float = 10.0):
        """New rules, learned from the failures, that fix them: certified suggestions.

        Each suggestion adds one rule ``rule learned_N weight W: CONDITIONS -> HEAD`` --
        a conjunction of at most ``max_conditions`` conditions over the table inputs and
        the neural concepts, thresholds at the data's breakpoints
        (:func:`greybox.rules.search_conjunctions`), the weight the rows' current scores
        need -- chosen for failures fixed minus correct rows broken and checked against
        the existing rules (not dead, not subsumed, no contradiction:
        :func:`greybox.rules.check`). Its ``fixed`` and ``broken`` are then what
        :meth:`what_if` reports (the same rebuild and ``predict``), and it is certified as
        :meth:`suggest`'s are (``keep``, consistent hard constraints).

        Parameters
        ----------
        rows : row labels, optional
            The failures to fix; default every failure.
        max_conditions : int
            Most conditions in a learned rule's body.
        top : int
            Most suggestions.
        validation, keep, timeout
            As for :meth:`suggest`.

        Returns
        -------
        Suggestions
            Of kind ``"rule"``, best first as :meth:`suggest` ranks.

        Examples
        --------
        >>> import numpy as np, greybox as gb
        >>> model = gb.GreyBox('''
        ... input x: real
        ... input z: real
        ... output y: bool
        ... rule big: x > 5 -> y
        ... ''', semantics="product")
        >>> x = np.arange(20.0); z = np.tile([0.0, 1.0], 10)
        >>> dbg = gb.explain.Debugger(model, {"x": x, "z": z}, (x > 5) | ((x < 4) & (z > 0.5)))
        >>> best = dbg.propose_rules(top=1)[0]
        >>> print(best.edits[0].text)
        rule learned_1 weight 0.5: x <= 4 and z > 0 -> y
        >>> len(best.fixed), len(best.broken)
        (2, 0)
        """
        from ._propose import candidate_rules
        from ._suggest import at_least_one, measure

        at_least_one("top", top, "suggestions returned")
        at_least_one("max_conditions", max_conditions, "conditions in a learned rule")
        found = candidate_rules(self, rows, max_conditions=max_conditions, top=top)
        return _first(measure(self, found, validation=validation, keep=keep, kind="rule",
                              rows=rows, timeout=timeout), top)

    def residual_rules(self, *, max_conditions: int = 3, top: int = 5, validation=None,
                       keep=(), timeout: float = 10.0):
        """Readable rules in place of what the residual network adds: certified suggestions.

        The rows where the output's residual network flips the rules' decision are the
        targets: each suggestion adds a rule ``rule residual_N weight W: CONDITIONS ->
        HEAD`` that reproduces those flips and drops the residual
        (:class:`~greybox.explain.debug.DropResidual`), so its ``fixed`` and ``broken``
        (exactly what :meth:`what_if` reports) say what replacing the opaque correction by
        the rule costs. Empty where the model has no residual for the output, or where it
        flips no decision.

        Parameters
        ----------
        max_conditions, top, validation, keep, timeout
            As for :meth:`propose_rules`.

        Returns
        -------
        Suggestions
            Of kind ``"residual"``, best first.
        """
        from ._propose import residual_rules
        from ._suggest import at_least_one, measure

        at_least_one("top", top, "suggestions returned")
        at_least_one("max_conditions", max_conditions, "conditions in a learned rule")
        found = residual_rules(self, max_conditions=max_conditions, top=top)
        return _first(measure(self, found, validation=validation, keep=keep,
                              kind="residual", timeout=timeout), top)

    def undo(self, n: int = 1) -> WhatIf:
        """Take back the last ``n`` edits."""
        if n < 0 or n > len(self._edits):
            raise ModelError(f"cannot undo {n} edit(s); there are {len(self._edits)}")
        self._edits = self._edits[:len(self._edits) - n]
        self._model = self._rebuild(self._edits) if self._edits else self._base
        self._now = self._predict(self._model) if self._edits else self._before
        return self.diff()

    def export(self, path=None) -> str:
        """The edited rule file (learned weights, thresholds and biases written in);
        written to ``path`` atomically when given. It parses back to the model's
        knowledge base (:meth:`GreyBox.to_kb`) plus, where a decided variable's learned
        bias is not 0, one fixed rule per bias after a comment line: the rule language
        has no bias statement, and a bias ``b`` is exactly ``rule bias_out weight b
        fixed: true -> out`` (for an int or enum, one per value: ``-> grade = mid``; for
        an output family, one template: ``rule bias_cancer(i0 in person) ...``). A
        model built from the text (its own biases 0) with the same networks, residual
        and calibration decides as the edited model. Not carried: the networks' and
        the residual's weights and the calibration statistics (the checkpoint of
        ``gb.save`` holds those).

        A relational model is written as its templates, as the user wrote them (with the
        edits of whole templates applied), also after an edit of one grounding: the
        edited template is restricted to its other members by an index guard
        (``rule own(p in person) ...: p != anna and ...``) and the edited member follows
        as a plain rule named like it (``rule `own(anna)` ...``), so the text grounds to
        exactly the edited model's statements. Where no guard the language can state
        does that, the edited template alone is written as its grounded members (the
        others stay relational); failing that, the whole grounded knowledge base.
        """
        kb = self._model.to_kb()
        if kb.program is None and self._edits and self._base.kb.program is not None:
            _, templates, _ = self._templates(self._edits)
            kb = relational_kb(kb, templates) or kb
        text = to_text(kb)
        biases = bias_text(self._model, kb)
        if biases:
            text = text.rstrip("\n") + "\n" + biases
        if path is not None:
            from greybox import write_atomic

            write_atomic(path, lambda f: f.write(text), binary=False)
        return text

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        n = len(self._now)
        if self.numeric:
            m = self.metrics()
            return (f"Debugger({self.output!r}: {int((~self._now['correct']).sum())} failures "
                    f"(|error| > {_short(m['tol'], sign=False)}) in {n} rows, MAE "
                    f"{_short(m['mae'], sign=False)}, RMSE {_short(m['rmse'], sign=False)}, "
                    f"R² {m['r2']:.3f}, {len(self._edits)} edits)")
        return (f"Debugger({self.output!r}: {int((~self._now['correct']).sum())} failures in "
                f"{n} rows, accuracy {self.accuracy:.3f}, {len(self._edits)} edits)")

    def __str__(self) -> str:
        return repr(self)

    def _repr_html_(self) -> str:
        failures = self.failures()
        if self.numeric:   # numbers to 4 significant digits: readable, not raw floats
            failures = failures.copy()
            for c in ("predicted", "target", "error"):
                failures[c] = [float(f"{v:.4g}") for v in failures[c].to_numpy(np.float64)]
        return _frame_html(repr(self), failures)


def _short(x, *, sign: bool = True) -> str:
    """A number to 4 significant digits (with its sign where ``sign``)."""
    return f"{float(x):+.4g}" if sign else f"{float(x):.4g}"


def _check_tol(tol) -> float:
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        tol = float("nan")
    if not (np.isfinite(tol) and tol >= 0):
        raise ModelError(f"tol must be a number >= 0, got {tol!r}")
    return tol


def _tolerance(dbg, var, tol) -> float:
    """The tolerance of a number output (see ``tol``); 0 for a class."""
    if not dbg.numeric:
        if tol is not None:
            raise ModelError(f"tol is for outputs that are numbers; {dbg.output!r} is "
                             "compared exactly")
        return 0.0
    if tol is not None:
        return _check_tol(tol)
    if isinstance(var.type, A.IntType):
        return 0.0
    y = np.asarray(dbg.target, dtype=np.float64)
    return float(0.1 * y.std()) if len(y) > 1 else 0.0


def _first(found, top: int):
    """``found`` (Suggestions) cut to its ``top`` best."""
    return dataclasses.replace(found, suggestions=found.suggestions[:top])


def _training_set(model, var, train) -> tuple:
    """``(batch, targets)`` of ``train=(data, targets)``: the rows labelled for ``var``
    and their labels decoded like the debugger's targets."""
    if not isinstance(train, (tuple, list)) or len(train) != 2:
        raise DataError(f"train= is (data, targets), the training rows and their labels; "
                        f"got {type(train).__name__}")
    data, targets = train
    batch = model.batch(data)
    if isinstance(targets, Mapping):
        columns = family_columns(model.kb, dict(targets))   # a family under its name
        if var.name not in columns:
            shown = ", ".join(map(repr, list(targets)[:5]))
            raise DataError(f"train= labels name no {var.name!r} (they name {shown})")
        targets = columns[var.name]
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    targets = align_labels("train= labels", targets, batch.index)   # by row label
    y = targets.astype(object).to_numpy() if isinstance(targets, (pd.Series, pd.Index)) \
        else np.asarray(targets)
    if y.shape != (batch.n,):
        raise DataError(f"train= labels of {var.name!r} must have one value per training "
                        f"row: expected shape ({batch.n},), got {y.shape}")
    labelled = np.flatnonzero(~missing_values(y))
    if not len(labelled):
        raise DataError(f"train= has no label of {var.name!r}: no training row to blame")
    batch = batch.take(torch.as_tensor(labelled))
    return batch, _decode_targets(var, y[labelled], batch.index)


def _unique_labels(index: pd.Index) -> None:
    """A DataError naming the labels that more than one row of the data carries: the
    debugger names rows by their labels (failures, blame, what-if)."""
    if index.is_unique:
        return
    dup = index[index.duplicated()].unique()
    shown = ", ".join(_cell(v) for v in dup[:5]) + (f", ... ({len(dup)} in all)"
                                                    if len(dup) > 5 else "")
    raise DataError(f"the data's index labels {shown} name more than one row: the debugger "
                    "names rows by their labels; give each row its own (e.g. "
                    "data.reset_index(drop=True))")


def _after_template_edit(members: list[Edit], edit: Edit, program) -> list[Edit]:
    """The pending edits of grounded members once ``edit`` changed a whole template, so
    that edits take effect in order: a later ``Replace`` or ``Remove`` of the template
    drops the earlier edits of its groundings (they are gone); a later weight, threshold or
    disable edit is applied to each of them after their own edits (it wins where both set
    the same thing)."""
    name = getattr(edit, "name", None)
    info = program.families.get(f"rule:{name}") or program.families.get(f"constraint:{name}")
    if info is None:
        return members
    grounded = set(info.members.values())
    touched = list(dict.fromkeys(e.name for e in members if getattr(e, "name", None)
                                 in grounded))
    if not touched:
        return members
    if isinstance(edit, (Replace, Remove)):
        return [e for e in members if getattr(e, "name", None) not in grounded]
    return members + [_IfPresent(dataclasses.replace(edit, name=n)) for n in touched]


@dataclass(frozen=True)
class _IfPresent(Edit):
    """A template's edit carried to one of its groundings, unless an earlier edit of the
    grounding removed or renamed it."""

    edit: Edit

    def apply(self, statements):
        try:
            return self.edit.apply(statements)
        except NotFound:
            return statements

    def describe(self):
        return self.edit.describe()


def _grounded_text(edit: Edit, templates: list) -> Edit:
    r"""A ``Replace`` of one grounded member whose text refers to grounded facts as they
    are written (``lvl(anna)``, as ``AddStatement`` takes them): its statement grounded
    over the relational declarations (the form of the grounded statements,
    ``\`lvl(anna)\```)."""
    if not isinstance(edit, Replace):
        return edit
    new = parse_statements(edit.text, filename="<edit>")
    if len(new) != 1 or isinstance(new[0], A.Family) or not A.is_relational(new[0]):
        return edit   # refused, or taken as it is, by Replace.apply
    declarations = [t for t in templates if not isinstance(
        t.statement if isinstance(t, A.Family) else t, (A.Rule, A.Constraint))]
    grounded = KnowledgeBase(declarations + new, filename="<edit>", source=edit.text)
    statement, = (s for s in grounded.statements if isinstance(s, (A.Rule, A.Constraint)))
    return _ReplaceBy(edit.name, statement)


@dataclass(frozen=True)
class _ReplaceBy(Edit):
    """Replace the rule or constraint ``name`` by an already grounded statement."""

    name: str
    statement: object

    def apply(self, statements):
        i, _ = _find(statements, self.name)
        return statements[:i] + [self.statement] + statements[i + 1:]

    def describe(self):
        return f"replace {self.name}"


def _pushes_toward(kb, output: str, rule: str, value, contribution: float) -> bool:
    """Whether a rule's contribution pushes ``output`` toward ``value``."""
    r = kb.rules[rule]
    if r.head.name != output:
        return False
    if isinstance(kb.variables[output].type, A.BoolType):
        return (contribution > 0) == bool(value)
    target = r.head.value.value if isinstance(r.head.value, A.Num) else r.head.value.name
    return target == value and contribution > 0


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


def _py(value):
    """A numpy scalar as the plain Python value (for messages)."""
    return value.item() if hasattr(value, "item") else value


def _cell(value) -> str:
    """A target for a message: the plain value's repr, cut short."""
    text = repr(_py(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _as_int(value):
    """An integral number (or its string) as an int; None when it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if np.isfinite(value) and float(value).is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if np.isfinite(number) and number.is_integer() else None
    return None


def _as_real(value):
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if np.isfinite(number) else None


def _decode_targets(var, targets, index: pd.Index) -> np.ndarray:
    """The debugger's targets decoded like ``var``'s type (see :class:`Debugger`): bool,
    int64 or float64 arrays, or the value names of an enum; a missing or undecodable
    target is a DataError naming its row by the data's index label."""
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    targets = align_labels("targets", targets, index)   # a Series: by the data's row labels
    if isinstance(targets, (pd.Series, pd.Index)):   # nullable and categorical as objects
        y = targets.to_numpy() if isinstance(targets.dtype, np.dtype) else \
            targets.astype(object).to_numpy()
    else:
        y = np.asarray(targets)
    n = len(index)
    if y.shape != (n,):
        raise DataError(f"targets must have one value per row: expected shape ({n},), got "
                        f"{y.shape}")
    t = var.type
    name = var.name
    missing = missing_values(y)
    if isinstance(t, A.BoolType):   # the decoder of fit's labels
        decoded, bad = decode_bools(y, missing)
        _refuse(name, y, index, np.flatnonzero(missing), np.flatnonzero(bad),
                "true/false (True/False, 1/0, yes/no)")
        return decoded.astype(bool)
    if isinstance(t, A.IntType):
        def decode(v):
            number = _as_int(v)
            return number if number is not None and t.lo <= number <= t.hi else None

        expected, dtype = f"an integer in {t.lo}..{t.hi}", np.int64
    elif isinstance(t, A.EnumType):
        names = set(t.values)

        def decode(v):
            name = v.strip() if isinstance(v, str) else None
            return name if name in names else None

        expected, dtype = f"one of {{{', '.join(t.values)}}}", object
    else:
        expected, decode, dtype = "a finite number", _as_real, np.float64
    if y.dtype.kind in "iuf" and dtype is not object:   # numbers, checked at numpy speed
        num = y.astype(np.float64)
        if isinstance(t, A.IntType):
            ok = np.isfinite(num) & (num == np.floor(num)) & (num >= t.lo) & (num <= t.hi)
        else:
            ok = np.isfinite(num)
        _refuse(name, y, index, np.flatnonzero(missing), np.flatnonzero(~ok & ~missing),
                expected)
        return (y if y.dtype.kind in "iu" else num).astype(dtype)
    out, bad = [], []
    for pos, v in enumerate(y):
        decoded = None if missing[pos] else decode(v)
        if decoded is None and not missing[pos]:
            bad.append(pos)
        out.append(decoded)
    _refuse(name, y, index, np.flatnonzero(missing), bad, expected)
    return np.array(out, dtype=dtype)


def _refuse(name: str, y, index: pd.Index, missing, bad, expected: str) -> None:
    """Raise for the first missing target, else for the first undecodable one."""
    if len(missing):
        more = f" (and {len(missing) - 1} more row(s))" if len(missing) > 1 else ""
        raise DataError(f"target of {name!r} is missing at row {_cell(index[missing[0]])}{more}: "
                        "the debugger needs the correct answer of every row; drop or fill in "
                        "the unlabelled rows first")
    if len(bad):
        more = f" (and {len(bad) - 1} more row(s))" if len(bad) > 1 else ""
        raise DataError(f"target of {name!r}: {_cell(y[bad[0]])} at row "
                        f"{_cell(index[bad[0]])}{more} is not {expected}")
