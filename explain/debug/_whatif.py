"""What-if edits: the original model's rules with edits applied (on a relational model,
to its templates or to single groundings), the model rebuilt from them, and the effect
on the whole data set against the original model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from greybox.errors import ModelError
from greybox.rules import KnowledgeBase
from greybox.rules import ast as A
from greybox.rules.engine import parse_statements

from ._edits import DropResidual, Edit, NotFound, Remove, Replace, _ReplaceBy
from ._export import relational_kb
from ._show import _frame_html

__all__ = ["WhatIf"]


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


def rebuild(dbg, edits: list[Edit]):
    """A copy of ``dbg``'s original model with ``edits`` applied (what
    :meth:`Debugger.what_if` predicts with)."""
    dropped = [e.name for e in edits if isinstance(e, DropResidual)]
    return dbg._base.replace(kb=edited_kb(dbg, edits),
                             drop_residual=list(dict.fromkeys(dropped))).eval()


def edited_kb(dbg, edits: list[Edit]) -> KnowledgeBase:
    """The original model's learned knowledge base with ``edits`` applied."""
    kb, templates, members = edited_templates(dbg, edits)
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
    if dbg.output not in new_kb.outputs:
        raise ModelError(f"the edits leave no output {dbg.output!r}")
    return new_kb


def edited_templates(dbg, edits: list[Edit]):
    """The learned knowledge base of ``dbg``'s original model with the edits of whole
    statements applied (on a relational model: of templates), its statements (the
    templates, on a relational model) and the edits left for grounded members."""
    kb = dbg._base.to_kb()
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


def diff(dbg) -> WhatIf:
    """The effect of ``dbg``'s current edits against its original model."""
    before, now = dbg._before, dbg._now
    fixed = now[~before["correct"] & now["correct"]]
    broken = now[before["correct"] & ~now["correct"]]
    cols = ["predicted", "target"]
    fixed = fixed[cols].assign(was=before.loc[fixed.index, "predicted"])
    broken = broken[cols].assign(was=before.loc[broken.index, "predicted"])
    changed = int((before["predicted"] != now["predicted"]).sum())
    return WhatIf(tuple(e.describe() for e in dbg._edits), float(before["correct"].mean()),
                  float(now["correct"].mean()), fixed, broken, changed)


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
