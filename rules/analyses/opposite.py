"""Rules with opposite heads that can fire on the same input."""

from __future__ import annotations

import itertools

import z3

from .._printer import head_to_text
from ._base import Analysis, Context, Finding
from .dead import dead_rule_names
from .subsumed import head_key


class OppositeRules(Analysis):
    name = "opposite-rules"
    description = "pairs of rules with opposite heads that can fire together (with a witness)"

    def run(self, ctx: Context) -> list[Finding]:
        dead = dead_rule_names(ctx)
        rules = [r for r in ctx.kb.rules.values() if r.name not in dead]
        solver = ctx.solver()
        findings = []
        for a, b in itertools.combinations(rules, 2):
            if a.head.name != b.head.name or head_key(a) == head_key(b):
                continue
            result = ctx.check(solver, ctx.enc.expr(a.body), ctx.enc.expr(b.body))
            if result == z3.sat:
                findings.append(Finding(
                    self.name, "info",
                    f"rules {a.name} ({head_to_text(a.head)}) and {b.name} "
                    f"({head_to_text(b.head)}) can fire together; the weights decide",
                    (a.name, b.name), ctx.witness(solver.model())))
            elif result == z3.unknown:
                findings.append(ctx.undecided(
                    self.name, f"whether rules {a.name} and {b.name} can fire together",
                    solver, (a.name, b.name)))
        return findings
