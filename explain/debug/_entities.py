"""Debugging a relational model entity by entity.

A relational model decides a family of outputs -- ``cancer(p)`` for every person -- over
the same rows. :class:`EntityDebugger` debugs each member with its own :class:`Debugger`
(one model, the same rows and edits) and shows the failures per entity: which entities
fail, on which rows, pushed by which of their groundings (:meth:`EntityDebugger.pushes`:
how each grounding of a soft constraint or rule pushed the concept behind one).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from greybox.errors import DataError, ModelError, listed

from ._debugger import Blame, Debugger
from ._edits import parse_edit
from ._show import _frame_html

__all__ = ["EntityDebugger", "EntityWhatIf"]


def _label(index: tuple) -> str:
    return ", ".join(str(i) for i in index)


@dataclass(frozen=True, repr=False)
class EntityWhatIf:
    """The effect of the edits so far, entity by entity (``by_entity``: accuracy before
    and after, failures fixed and correct predictions broken), and over all entities."""

    edits: tuple[str, ...]
    accuracy_before: float
    accuracy_after: float
    by_entity: pd.DataFrame

    def __str__(self) -> str:
        changed = self.by_entity[(self.by_entity["fixed"] > 0) | (self.by_entity["broken"] > 0)]
        lines = [f"what if: {'; '.join(self.edits) or 'no edit'}",
                 f"  accuracy {self.accuracy_before:.3f} -> {self.accuracy_after:.3f} over "
                 f"{len(self.by_entity)} entities; {int(self.by_entity['fixed'].sum())} "
                 f"failures fixed, {int(self.by_entity['broken'].sum())} correct predictions "
                 "broken"]
        for entity, row in changed.head(10).iterrows():
            lines.append(f"  {entity}: {int(row['fixed'])} fixed, {int(row['broken'])} broken")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"EntityWhatIf({len(self.edits)} edit(s): accuracy "
                f"{self.accuracy_before:.3f} -> {self.accuracy_after:.3f} over "
                f"{len(self.by_entity)} entities, {int(self.by_entity['fixed'].sum())} "
                f"fixed, {int(self.by_entity['broken'].sum())} broken)")

    def to_frame(self) -> pd.DataFrame:
        return self.by_entity.copy()

    def _repr_html_(self) -> str:
        return _frame_html("What if, by entity", self.by_entity, str(self))


class EntityDebugger:
    """The failures of a family of outputs, entity by entity.

    Parameters
    ----------
    model : GreyBox
        A model over relational rules (``output cancer(person): bool``).
    data : DataFrame or mapping
        The rows (worlds) to debug.
    targets : mapping
        The correct values: per member (``{"cancer(anna)": [...], ...}``; members left
        out are not debugged), or the whole family under its name, an array with one axis
        per parameter after the rows (``{"cancer": labels}`` of shape (rows, people)).
    family : str, optional
        The output family; default: the only one the targets name.
    train : (data, targets), optional
        Training data, for blaming training examples (TracIn); ``targets`` name the
        family (``{"cancer": array}``) or its members, as for ``fit``.

    Examples
    --------
    >>> import numpy as np, greybox as gb, greybox.rules as gr
    >>> kb = gr.parse('''
    ... set person
    ... input smokes(person): bool
    ... output cancer(person): bool
    ... rule own(p in person) weight 2.0: smokes(p) -> cancer(p)
    ... ''', sets={"person": ["anna", "bob"]})
    >>> model = gb.GreyBox(kb, semantics="product")
    >>> data = {"smokes": np.array([[True, False], [True, True]])}
    >>> dbg = gb.explain.EntityDebugger(model, data,
    ...                                 {"cancer": np.array([[True, False], [False, True]])})
    >>> dbg.entities()[["rows", "failures"]]
          rows  failures
    anna     2         1
    bob      2         0
    >>> dbg.failures()[["entity", "predicted", "target", "rules_fired"]]
      entity  predicted  target rules_fired
    1   anna       True   False   own(anna)
    """

    def __init__(self, model, data, targets, *, family: str | None = None, train=None):
        kb = model.kb
        outputs = {n: f for n, f in kb.families.items() if f.kind == "output"}
        if not outputs:
            raise ModelError("the model has no output family (relational rules declare one "
                             "as 'output cancer(person): bool'); use Debugger")
        if not hasattr(targets, "items"):
            raise DataError("targets for the entity debugger map the family's name, or its "
                            "members' names, to the correct values")
        named = [n for n in outputs if n in targets or any(m in targets for m in
                                                           outputs[n].members.values())]
        if family is None and not named and len(outputs) == 1:
            named = list(outputs)   # the only family: its members are checked below
        if family is None:
            if len(named) != 1:
                raise DataError(f"name the family to debug (family=...): the targets name "
                                f"{listed(named) or 'none'} of {listed(outputs)}")
            family = named[0]
        if family not in outputs:
            raise ModelError(f"{family!r} is not an output family (output families: "
                             f"{', '.join(outputs)})")
        fam = outputs[family]
        columns = fam.split(targets[family]) if family in targets else {}
        for name, values in targets.items():   # the family's members, or refused below
            if name == family:
                continue
            if name in columns:
                raise DataError(f"{name!r} is given twice: as its own target and in "
                                f"family {family!r}")
            columns[name] = values
        unknown = [k for k in columns if k not in fam.members.values()]
        if unknown:
            raise DataError(f"targets name {', '.join(map(repr, unknown[:3]))}, which are "
                            f"not members of {family} (an entity debugger debugs one output "
                            "family; debug another output with Debugger)")
        self.family = family
        self.data = data
        self.members: dict[str, Debugger] = {
            _label(index): Debugger(model, data, {name: columns[name]}, train=train)
            for index, name in fam.members.items() if name in columns}
        if not self.members:
            raise DataError(f"no target names a member of {family}")

    def member(self, entity) -> Debugger:
        """The debugger of one entity (``"anna"``, or ``("anna", "bob")`` / ``"anna, bob"``
        for a family over pairs)."""
        key = _label(entity) if isinstance(entity, tuple) else str(entity)
        if key not in self.members:
            raise DataError(f"{key!r} is not an entity of {self.family} (entities: "
                            f"{', '.join(list(self.members)[:10])})")
        return self.members[key]

    @property
    def model(self):
        """The model with the edits so far (one model serves every entity)."""
        return next(iter(self.members.values())).model

    @property
    def edits(self) -> tuple:
        """The edits so far, in order (as :attr:`Debugger.edits`)."""
        return next(iter(self.members.values())).edits

    @property
    def accuracy(self) -> float:
        """The share of right predictions over every entity and row."""
        frames = [d.predictions()["correct"] for d in self.members.values()]
        return float(pd.concat(frames).mean())

    def entities(self) -> pd.DataFrame:
        """Per entity: rows, failures and accuracy, most failures first."""
        table = pd.DataFrame(
            [{"entity": e, "output": d.output, "rows": len(d.predictions()),
              "failures": int((~d.predictions()["correct"]).sum()), "accuracy": d.accuracy}
             for e, d in self.members.items()]).set_index("entity")
        table.index.name = None
        return table.sort_values("failures", ascending=False, kind="stable")

    def failures(self) -> pd.DataFrame:
        """Every wrong prediction with its entity and output first, then what
        :meth:`Debugger.failures` says of it (the rules of that entity's groundings that
        fired, its concepts, a verdict); indexed by row label, most confident first."""
        frames = [d.failures().assign(entity=e, output=d.output)
                  for e, d in self.members.items()]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=["entity", "output", "predicted", "target"])
        out = pd.concat(frames)
        first = ["entity", "output"]
        out = out[first + [c for c in out.columns if c not in first]]
        if "confidence" in out:
            out = out.sort_values("confidence", ascending=False, kind="stable")
        return out

    def blame(self, row, entity, *, layers=None) -> Blame:
        """Who is to blame for ``entity``'s failure on ``row`` (its rules, concepts,
        parameters and training rows): :meth:`Debugger.blame` of that member (``layers``:
        TracIn's, as there)."""
        return self.member(entity).blame(row, layers=layers)

    def pushes(self, row, entity, concept: str | None = None, *, targets=None):
        """How training pushes the concept behind ``entity``'s output on ``row``: each
        grounding of a soft constraint or rule that reads it, with the model as edited so
        far (see :func:`greybox.explain.pushes`). ``concept``: by default the one neural
        concept with finite values (bool, enum, int) the entity's output depends on
        (``smokes(anna)`` behind ``cancer(anna)``); ``targets``: by default the correct
        values of every entity."""
        from greybox.rules import ast as A

        from .._pushes import pushes

        d = self.member(entity)
        model = d.model
        if concept is None:
            kb = model.kb
            needed = kb.depends_on(d.output)
            found = [n for n in kb.neural if n in needed
                     and A.is_finite_type(kb.variables[n].type)]
            if len(found) != 1:
                raise ModelError(f"name the concept (concept=...): {d.output} depends on "
                                 f"{', '.join(found) or 'no neural concept with finite values'}")
            concept = found[0]
        if targets is None:
            targets = {m.output: m.target for m in self.members.values()}
        # the rows as the debugger read them (a model edited member by member that no
        # relational text says is grounded: it reads no family's data under its name)
        return pushes(model, d.batch, concept, targets=targets, row=row)

    def what_if(self, *edits) -> EntityWhatIf:
        """Apply ``edits`` to one copy of the model for every entity and re-evaluate:
        per entity, which failures they fix and which correct predictions they break."""
        first = next(iter(self.members.values()))
        parsed = [parse_edit(e) for e in edits]
        model = first._rebuild(first._edits + parsed)   # raises before anything changes
        for d in self.members.values():
            d._edits = d._edits + parsed
            d._model = model
            d._now = d._predict(model)
        return self.diff()

    def undo(self, n: int = 1) -> EntityWhatIf:
        """Take back the last ``n`` edits for every entity."""
        first = next(iter(self.members.values()))
        if n < 0 or n > len(first.edits):
            raise ModelError(f"cannot undo {n} edit(s); there are {len(first.edits)}")
        edits = first._edits[:len(first._edits) - n]
        model = first._rebuild(edits) if edits else first._base   # built once, shared
        for d in self.members.values():
            d._edits, d._model = list(edits), model
            d._now = d._predict(model) if edits else d._before
        return self.diff()

    def export(self, path=None) -> str:
        """The edited rule file (learned values written in, edits applied), as
        :meth:`Debugger.export`: one model serves every entity."""
        return next(iter(self.members.values())).export(path)

    def diff(self) -> EntityWhatIf:
        """The effect of the edits so far against the original model, entity by entity."""
        rows, before, after = [], [], []
        for e, d in self.members.items():
            w = d.diff()
            rows.append({"entity": e, "accuracy_before": w.accuracy_before,
                         "accuracy_after": w.accuracy_after, "fixed": len(w.fixed),
                         "broken": len(w.broken)})
            before.append(d._before["correct"])
            after.append(d._now["correct"])
        table = pd.DataFrame(rows).set_index("entity")
        table.index.name = None
        edits = tuple(e.describe() for e in next(iter(self.members.values())).edits)
        return EntityWhatIf(edits, float(pd.concat(before).mean()),
                            float(pd.concat(after).mean()), table)

    def __repr__(self) -> str:
        failures = sum(int((~d.predictions()["correct"]).sum()) for d in self.members.values())
        return (f"EntityDebugger({self.family!r}: {len(self.members)} entities, {failures} "
                f"failures, accuracy {self.accuracy:.3f})")

    def _repr_html_(self) -> str:
        return _frame_html(repr(self), self.entities())
