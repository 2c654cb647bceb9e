"""Rules whose body can never hold."""

from __future__ import annotations

import z3

from .._missing import definite
from ._base import Analysis, Context, Finding, keep_partial


class DeadRules(Analysis):
    name = "dead-rule"
    description = "rules whose body can never hold within the types and hard constraints"

    def run(self, ctx: Context) -> list[Finding]:
        solver = ctx.solver()
        pool = ctx.pool()
        findings = []
        with keep_partial(findings):
            for rule in ctx.kb.rules.values():
                if pool.body(rule.name).any():
                    continue  # it fires on a point of the pool
                result = ctx.check(solver, ctx.enc.expr(definite(ctx.kb, rule.body)),
                                   doing=f"checking whether rule {rule.name} can fire")
                if result == z3.unsat:
                    findings.append(Finding(self.name, "warning",
                                            f"rule {rule.name} can never fire: its body is "
                                            "unsatisfiable", (rule.name,)))
                elif result == z3.unknown:
                    findings.append(ctx.undecided(self.name,
                                                  f"whether rule {rule.name} can fire",
                                                  solver, (rule.name,)))
        return findings


def dead_rule_names(ctx: Context) -> set[str]:
    return {f.subjects[0] for f in ctx.findings if f.check == DeadRules.name
            and f.severity == "warning"}
