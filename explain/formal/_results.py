"""What the formal functions return: reasons, counterfactuals, verifications."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from greybox.rules import Entailment

if TYPE_CHECKING:
    from greybox import Batch

__all__ = ["Counterfactual", "Counterfactuals", "Reason", "Verification"]


@dataclass(frozen=True)
class Reason:
    """An abductive explanation: facts that guarantee the decision.

    ``facts`` (name -> value) is subset-minimal: with these values fixed, every
    completion of the other facts within their types and the hard constraints gets the
    same decision, and dropping any one of them admits a completion that does not.
    ``verified``: an independent Z3 query confirmed the guarantee.
    """

    row: object
    output: str
    decision: object
    facts: dict
    verified: bool
    seconds: float
    #: ``"input"`` (the reason holds through the networks, for every value of the other
    #: inputs) or ``"concept"`` (neural concepts and residual logits are facts)
    level: str = "concept"
    #: what the guarantee assumes beyond the declared types, e.g. an input declared
    #: without bounds held within the range seen in training
    assumptions: tuple = ()
    #: the facts the reason was asked not to use (``reason(..., free=)``): the guarantee
    #: holds whatever their values within the types and hard constraints
    free: tuple = ()

    def __str__(self) -> str:
        extra = "".join(f"; {a}" for a in self.assumptions)
        if self.facts:
            facts = " and ".join(f"{k} is missing" if v is None else f"{k} = {_fact(k, v)}"
                                 for k, v in self.facts.items())
            whatever = f", whatever {', '.join(self.free)}" if self.free else ""
            why = f"because {facts}{whatever}"
        else:   # no fact is needed: the learned rules and the hard constraints decide
            why = "whatever its facts: the model's rules and hard constraints alone force it"
        return (f"{self.output} = {self.decision!r} for row {self.row} {why} "
                f"(minimal; {'verified' if self.verified else 'NOT verified'}{extra})")

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"fact": list(self.facts), "value": list(self.facts.values())})


def _fact(name: str, value) -> str:
    """A fact's value as printed: data values as they are, a network's logit (a float
    computed by the model, not read from the data) to 4 significant digits (``facts``
    keeps it exact)."""
    if name.startswith("residual:") and isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)


@dataclass(frozen=True)
class Counterfactual:
    """A minimal change of a row's facts that changes its decision.

    ``changes`` lists each changed fact (``fact``, ``before``, ``after``);
    ``new_decision`` what the model decides on the changed row. ``row_after`` is that
    row as :meth:`GreyBox.predict` reads it: every input, table inputs changed (single
    values; one-row arrays, the row's tensors included, where the model has tensor
    inputs). ``concepts_after``: the neural concepts' values on the changed row where
    they are facts (``level="concept"``; empty at the input level, where the networks
    follow from the inputs) -- a counterfactual may change them, which no input of
    ``row_after`` does, so :meth:`batch` holds them by overriding their networks'
    outputs. ``verified``: ``model.predict(cf.batch(model))`` decides ``new_decision``
    (this is what was run); where no neural concept changed, ``model.predict(cf.row_after)``
    decides it too.
    """

    row: object
    output: str
    decision: object
    new_decision: object
    changes: pd.DataFrame
    row_after: dict
    distance: float
    verified: bool
    seconds: float
    #: ``"input"`` (only inputs change; networks and residual follow) or ``"concept"``
    level: str = "concept"
    #: what the search assumed beyond the declared types (training ranges)
    assumptions: tuple = ()
    #: the neural concepts' values on the changed row (concept level), name -> value
    concepts_after: dict = field(default_factory=dict)

    def batch(self, model) -> Batch:
        """``row_after`` read by ``model``, each neural concept of ``concepts_after`` held
        at its value (its network's output overridden): ``model.predict`` on it decides
        ``new_decision``.

        Examples
        --------
        >>> import greybox as gb
        >>> model = gb.GreyBox("input x: real[0, 10]  output y: bool  rule r: x > 5 -> y",
        ...                    semantics="product")
        >>> cf = gb.explain.counterfactual(model, {"x": [2.0]})
        >>> cf.row_after, model.predict(cf.batch(model))["y"].tolist()
        ({'x': 5.01}, [True])
        """
        from ._row import overridden

        return overridden(model, self.row_after, self.concepts_after)

    def __str__(self) -> str:
        moves = ", ".join(f"{c.fact}: {c.before!r} -> {c.after!r}"
                          for c in self.changes.itertuples())
        def shown(v):   # a regression output's number, readable (the field keeps it exact)
            return f"{v:.6g}" if isinstance(v, float) else repr(v)

        return (f"{self.output} would be {shown(self.new_decision)} instead of "
                f"{shown(self.decision)} (row {self.row}) if {moves} "
                f"({'verified' if self.verified else 'NOT verified'} by predict)")

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>" + self.changes._repr_html_()

    def to_frame(self) -> pd.DataFrame:
        return self.changes


@dataclass(frozen=True)
class Counterfactuals(Sequence):
    """Several counterfactuals of one row (:func:`~greybox.explain.counterfactuals`), a
    sequence of :class:`Counterfactual`, closest first.

    Diverse by construction: no answer changes every fact an earlier one changes, so
    their change sets differ. ``stopped``: why there are no more -- ``"n"`` (as many as
    asked), ``"exhausted"`` (the solver proved no further change set reaches the
    decision within the options) or ``"timeout"``. ``diversity`` is the mean pairwise
    Jaccard distance of the change sets (1: disjoint; 0 for fewer than two answers).
    """

    row: object
    output: str
    decision: object
    answers: tuple
    seconds: float
    stopped: str = "n"

    def __len__(self) -> int:
        return len(self.answers)

    def __getitem__(self, i):
        return self.answers[i]

    @property
    def verified(self) -> bool:
        """Whether every answer was verified by running ``predict`` on it."""
        return all(a.verified for a in self.answers)

    @property
    def diversity(self) -> float:
        sets = [frozenset(a.changes.fact) for a in self.answers]
        pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1:]]
        if not pairs:
            return 0.0
        return sum(1.0 - len(a & b) / len(a | b) for a, b in pairs) / len(pairs)

    def __str__(self) -> str:
        why = {"n": "", "exhausted": "; no other change set reaches it",
               "timeout": "; the time ran out"}.get(self.stopped, "")
        head = (f"{len(self)} counterfactual(s) of row {self.row}: {self.output} = "
                f"{self.decision!r}{why}")
        lines = [head]
        for k, a in enumerate(self.answers, 1):
            moves = ", ".join(f"{c.fact}: {c.before!r} -> {c.after!r}"
                              for c in a.changes.itertuples())
            lines.append(f"  {k}. {a.output} = {a.new_decision!r} if {moves} "
                         f"({'verified' if a.verified else 'NOT verified'})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head, *rest = str(self).split("\n")
        items = "".join(f"<li>{html.escape(r.strip().split('. ', 1)[1])}</li>" for r in rest)
        return f"<p>{html.escape(head)}</p><ol>{items}</ol>"

    def to_frame(self) -> pd.DataFrame:
        """One line per change: ``answer`` (1, 2, ...), ``fact``, ``before``, ``after``,
        ``new_decision``, ``distance``."""
        frames = []
        for k, a in enumerate(self.answers, 1):
            f = a.changes.copy()
            f.insert(0, "answer", k)
            f["new_decision"] = [a.new_decision] * len(f)
            f["distance"] = a.distance
            frames.append(f)
        if not frames:
            return pd.DataFrame(columns=["answer", "fact", "before", "after",
                                         "new_decision", "distance"])
        return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Verification(Entailment):
    """The answer to :func:`verify`: an :class:`~greybox.rules.Entailment` that also says
    what the proof assumed beyond the declared types (``assumptions``: inputs declared
    without bounds range over the training range)."""

    assumptions: tuple = ()

    def __str__(self) -> str:
        return super().__str__() + "".join(f"\n  {a}" for a in self.assumptions)

    def _repr_html_(self) -> str:
        return super()._repr_html_() + "".join(f"<p><i>{html.escape(a)}</i></p>"
                                               for a in self.assumptions)
