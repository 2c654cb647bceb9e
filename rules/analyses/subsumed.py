"""Rules made redundant by another rule with the same head."""

from __future__ import annotations

import itertools

import z3

from ._base import Analysis, Context, Finding
from .dead import dead_rule_names


def head_key(rule):
    v = rule.head.value
    return (rule.head.name, v if isinstance(v, bool) else (type(v).__name__, getattr(
        v, "value", getattr(v, "name", None))))


class SubsumedRules(Analysis):
    name = "subsumed-rule"
    description = "rules whose body implies the body of another rule with the same head"

    def run(self, ctx: Context) -> list[Finding]:
        dead = dead_rule_names(ctx)
        groups: dict = {}
        for r in ctx.kb.rules.values():
            if r.name not in dead:
                groups.setdefault(head_key(r), []).append(r)
        solver = ctx.solver()
        findings = []
        for rules in groups.values():
            bodies = {r.name: ctx.enc.expr(r.body) for r in rules}
            implies = {}
            for a, b in itertools.permutations(rules, 2):
                result = ctx.check(solver, bodies[a.name], z3.Not(bodies[b.name]))
                implies[a.name, b.name] = result == z3.unsat
                if result == z3.unknown:
                    findings.append(ctx.undecided(
                        self.name, f"whether rule {a.name} implies rule {b.name}", solver,
                        (a.name, b.name)))
            for a, b in itertools.combinations(rules, 2):
                ab, ba = implies[a.name, b.name], implies[b.name, a.name]
                if ab and ba:
                    findings.append(Finding(self.name, "warning",
                                            f"rules {a.name} and {b.name} have equivalent "
                                            "bodies and the same head", (a.name, b.name)))
                elif ab or ba:
                    narrow, wide = (a, b) if ab else (b, a)
                    findings.append(Finding(
                        self.name, "warning",
                        f"rule {narrow.name} is subsumed by rule {wide.name}: whenever "
                        f"{narrow.name} fires, {wide.name} fires too, with the same head",
                        (narrow.name, wide.name)))
        return findings
