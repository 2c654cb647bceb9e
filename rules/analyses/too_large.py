"""Decisions tied together into more joint assignments than can be enumerated."""

from __future__ import annotations

from greybox.errors import RuleError

from .._decisions import plan
from ._base import Analysis, Context, Finding


class TooLarge(Analysis):
    name = "too-large-decision"
    description = ("hard constraints or rules that tie decisions into more joint assignments "
                   "than crisp evaluation and Z3 enumerate (a model of these rules is refused)")

    def run(self, ctx: Context) -> list[Finding]:
        try:
            plan(ctx.kb)
        except RuleError as err:
            message, loc = err.diagnostics[0]
            where = f"{loc}: " if loc is not None else ""
            subjects = tuple(c for c in ctx.kb.constraints
                             if f"constraint(s) {c}" in message or f"Constraint {c} " in message)
            return [Finding(self.name, "error", where + message, subjects)]
        return []
