"""The Debugger: failures, where they concentrate, who is to blame, and what-if edits.

The class holds the state (the data, the targets, the edits so far and the predictions
before and after them); the work is done in the rooms of the package: :mod:`._failures`
(failures, rule statistics), :mod:`._cohorts`, :mod:`._blame`, :mod:`._whatif` (edits
applied, the model rebuilt, the diff), :mod:`._suggest` and :mod:`._propose` (repairs),
:mod:`._targets` (the correct answers decoded)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from greybox.errors import DataError, ModelError
from greybox.rules import KnowledgeBase, to_text
from greybox.rules import ast as A

from ._blame import Blame, blame
from ._cohorts import cohorts
from ._edits import Edit, parse_edit
from ._export import bias_text, relational_kb
from ._failures import failures, rule_stats
from ._show import _frame_html, _short
from ._targets import _decode_targets, _tolerance, _training_set, _unique_labels
from ._whatif import WhatIf, diff, edited_kb, edited_templates, rebuild

__all__ = ["Blame", "Debugger", "WhatIf"]


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
        self.batch = model.batch(data).own()   # not a view of the caller's frame
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
                model.kb.variables[self.output].type) and not getattr(model, "is_crisp", False) \
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
        return failures(self, tol)

    # ------------------------------------------------------------------ cohorts
    def cohorts(self, *, max_depth: int = 3, min_size: int = 10) -> pd.DataFrame:
        """Where errors concentrate: the leaves of a shallow decision tree that predicts
        failure from the inputs, the concept values and which rules fired (as in
        error-analysis trees), ranked by error rate, then size."""
        return cohorts(self, max_depth=max_depth, min_size=min_size)

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
        return rule_stats(self)

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
        return blame(self, row, layers=layers)

    # ------------------------------------------------------------------ what if
    def _templates(self, edits: list[Edit]):
        """The learned knowledge base with the edits of whole statements applied (on a
        relational model: of templates), its statements (the templates, on a relational
        model) and the edits left for grounded members."""
        return edited_templates(self, edits)

    def _rebuild(self, edits: list[Edit]):
        """A copy of the original model with ``edits`` applied (what :meth:`what_if`
        predicts with)."""
        return rebuild(self, edits)

    def _edited_kb(self, edits: list[Edit]) -> KnowledgeBase:
        """The original model's learned knowledge base with ``edits`` applied."""
        return edited_kb(self, edits)

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
        return diff(self)

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
        (:func:`greybox.rules.engine.search_conjunctions`), the weight the rows' current scores
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
        from ._measure import at_least_one, measure
        from ._propose import candidate_rules

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
        from ._measure import at_least_one, measure
        from ._propose import residual_rules

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


def _first(found, top: int):
    """``found`` (Suggestions) cut to its ``top`` best."""
    return dataclasses.replace(found, suggestions=found.suggestions[:top])
