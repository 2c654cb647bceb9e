"""Rules made redundant by another rule with the same head."""

from __future__ import annotations

import itertools

import numpy as np
import z3

from .. import _ast as A
from .._missing import definite
from ._base import Analysis, Context, Finding, keep_partial
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
            # a rule whose body is `true` is a bias written as a rule (the debugger's export
            # and induce write them so): every rule with its head would be "subsumed" by it
            if r.name not in dead and r.body != A.BoolConst(True):
                groups.setdefault(head_key(r), []).append(r)
        solver = ctx.solver()
        pool = ctx.pool()
        findings = []
        with keep_partial(findings):
            for rules in groups.values():
                self._group(ctx, solver, pool, rules, findings)
        return findings

    def _group(self, ctx, solver, pool, rules, findings) -> None:
        bodies = {}
        implies = {}
        # [i, j]: some point of the pool fires rule i and not rule j (no implication)
        seen = len(pool)
        fired = np.stack([pool.body(r.name) for r in rules]).astype(np.float32)
        refuted = (fired @ (1.0 - fired).T) > 0
        try:
            for (i, a), (j, b) in itertools.permutations(enumerate(rules), 2):
                if refuted[i, j] or (pool.body(a.name)[seen:] & ~pool.body(b.name)[seen:]).any():
                    implies[a.name, b.name] = False
                    continue
                for r in (a, b):
                    if r.name not in bodies:
                        bodies[r.name] = ctx.enc.expr(definite(ctx.kb, r.body))
                result = ctx.check(solver, bodies[a.name], z3.Not(bodies[b.name]),
                                   doing=f"checking whether rule {a.name} implies rule {b.name}")
                implies[a.name, b.name] = result == z3.unsat
                if result == z3.sat:
                    pool.add_model(solver.model())
                elif result == z3.unknown:
                    findings.append(ctx.undecided(
                        self.name, f"whether rule {a.name} implies rule {b.name}", solver,
                        (a.name, b.name)))
        finally:  # also when the time runs out: report the pairs already settled
            self._report(rules, implies, findings)

    def _report(self, rules, implies, findings) -> None:
        """Findings for the pairs whose implications are known both ways, in rule order."""
        place = {r.name: i for i, r in enumerate(rules)}
        found = []
        for (a, b), ab in implies.items():
            ba = implies.get((b, a))
            if not ab or ba is None or (ba and place[a] > place[b]):
                continue
            key = (min(place[a], place[b]), max(place[a], place[b]))
            if ba:
                found.append((key, Finding(self.name, "warning",
                                           f"rules {a} and {b} have equivalent bodies and "
                                           "the same head", (a, b))))
            else:
                found.append((key, Finding(
                    self.name, "warning",
                    f"rule {a} is subsumed by rule {b}: whenever {a} fires, {b} fires too, "
                    "with the same head", (a, b))))
        findings.extend(f for _, f in sorted(found, key=lambda kf: kf[0]))
