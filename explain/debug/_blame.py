"""Blame for one failure, split between the rules, the neural concepts, the parameters
and (with training data, by TracIn) the training rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from greybox.errors import DataError, GreyboxError

from ._failures import _pushes_toward
from ._show import _frame_html, _py

__all__ = ["Blame"]


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


def blame(dbg, row, *, layers=None) -> Blame:
    """The blame for ``row`` of ``dbg``'s data (see :meth:`Debugger.blame`)."""
    from .._explain import explain
    from ._tracin import tracin_layers

    if layers is not None:      # refused at once, not only when TracIn runs
        tracin_layers(dbg._model, layers)
    if row not in dbg._now.index:
        raise DataError(f"row {row!r} is not in the data")
    pos = dbg.batch.index.get_loc(row)
    info = dbg._now.loc[row]
    correct = bool(info["correct"])
    sub = dbg.batch.take(torch.as_tensor([pos]))
    ex = explain(dbg._model, sub, dbg.output)
    rules = _toward_wrong(dbg, ex.rules.copy(), info, correct)
    concepts = pd.DataFrame(columns=["concept", "value", "needed"])
    if correct:
        return Blame(row, _py(info["predicted"]), _py(info["target"]),
                     rules.drop(columns=["row"]).reset_index(drop=True), concepts,
                     ex.top_parameters.drop(columns=["row"], errors="ignore"), None,
                     "predicted correctly: nothing to blame", ex, correct=True)
    if dbg._model.kb.neural and not dbg.numeric:   # a number's concepts: not yet (issue 21)
        concepts = _suspect_concepts(dbg, sub, concepts)
    training = _tracin(dbg, sub, info, layers) \
        if dbg.train is not None and not dbg.numeric else None
    return Blame(row, _py(info["predicted"]), _py(info["target"]),
                 rules.drop(columns=["row"]).reset_index(drop=True),
                 concepts.reset_index(drop=True),
                 ex.top_parameters.drop(columns=["row"], errors="ignore"),
                 training, f"most likely: {_culprit(rules, concepts)}", ex)


def _toward_wrong(dbg, rules: pd.DataFrame, info, correct: bool) -> pd.DataFrame:
    """The explanation's ``rules`` with each one's push toward the wrong answer
    (``toward_wrong``), largest first."""
    kb = dbg._model.kb
    # toward the prediction when it is wrong; away from it (toward any other value) when
    # it is right -- then there is no mistake, and a positive push is a risk, not a cause
    sign = -1.0 if correct else 1.0
    if dbg.numeric:   # a number: pushed the way of its error
        err = float(np.sign(info["error"]))
        rules["toward_wrong"] = [sign * err * c if sign > 0 else abs(c)
                                 for c in rules.contribution]
    else:
        rules["toward_wrong"] = [
            sign * (c if _pushes_toward(kb, dbg.output, r, info["predicted"], 1.0) else -c)
            for r, c in zip(rules.rule, rules.contribution)]
    return rules.sort_values("toward_wrong", ascending=False, kind="stable")


def _suspect_concepts(dbg, sub, none: pd.DataFrame) -> pd.DataFrame:
    """The neural concepts whose smallest change (the inputs held) flips the decision of
    the one-row batch ``sub``, with their values and the values needed; ``none`` where no
    change of the concepts alone flips it."""
    from ..formal import counterfactual

    kb = dbg._model.kb
    try:
        # the concepts alone change (inputs held): a concept-level question
        cf = counterfactual(dbg._model, sub, None, dbg.output, level="concept",
                            immutable=[n for n in kb.inputs if n in dbg.batch.columns])
    except GreyboxError:   # no change of the concepts alone flips it: none suspect
        return none
    moved = cf.changes
    return pd.DataFrame({"concept": moved.fact,
                         "value": pd.Series(list(moved.before), dtype=object),
                         "needed": pd.Series(list(moved.after), dtype=object)})


def _culprit(rules: pd.DataFrame, concepts: pd.DataFrame) -> str:
    """The most likely culprit: the first suspect concept, else the rule pushing most
    toward the wrong answer, else the bias or the residual."""
    if len(concepts):
        return f"concept {concepts.concept.iloc[0]} = {concepts.value.iloc[0]!r} " \
               "(the nearest value that flips the decision: " \
               f"{concepts.needed.iloc[0]!r})"
    if (rules.toward_wrong > 1e-6).any():
        return f"rule {rules.rule.iloc[0]} (pushed {rules.toward_wrong.iloc[0]:+.2f} " \
               "toward the wrong answer)"
    return "bias/residual"


def _tracin(dbg, sub, info, layers=None) -> pd.DataFrame:
    from ._tracin import tracin_influence

    return tracin_influence(dbg._model, dbg.output, dbg.train, sub, info["target"],
                            layers=layers)
