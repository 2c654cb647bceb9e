"""Rules with opposite heads that can fire on the same input."""

from __future__ import annotations

import itertools

import numpy as np
import z3

from .._missing import definite
from .._printer import head_to_text
from ._base import Analysis, Context, Finding, keep_partial
from .dead import dead_rule_names
from .subsumed import head_key


class OppositeRules(Analysis):
    name = "opposite-rules"
    description = "pairs of rules with opposite heads that can fire together (with a witness)"

    def run(self, ctx: Context) -> list[Finding]:
        dead = dead_rule_names(ctx)
        by_head: dict = {}
        additive = set(ctx.kb.additive)   # their rules add up: no head is opposite
        for r in ctx.kb.rules.values():
            if r.name not in dead and r.head.name not in additive:
                by_head.setdefault(r.head.name, []).append(r)
        solver = ctx.solver()
        pool = ctx.pool()
        findings = []
        with keep_partial(findings):
            for rules in by_head.values():
                # [i, j]: some point of the pool fires both rules
                fired = np.stack([pool.body(r.name) for r in rules]).astype(np.float32)
                together = (fired @ fired.T) > 0
                for (i, a), (j, b) in itertools.combinations(enumerate(rules), 2):
                    if head_key(a) == head_key(b):
                        continue
                    if together[i, j]:
                        both = pool.body(a.name) & pool.body(b.name)
                        findings.append(self._finding(a, b, pool.witness(int(np.argmax(both)))))
                        continue
                    result = ctx.check(solver, ctx.enc.expr(definite(ctx.kb, a.body)),
                                       ctx.enc.expr(definite(ctx.kb, b.body)),
                                       doing=f"checking whether rules {a.name} and {b.name} "
                                       "can fire together")
                    if result == z3.sat:
                        model = solver.model()
                        pool.add_model(model)
                        findings.append(self._finding(a, b, ctx.witness(model)))
                    elif result == z3.unknown:
                        findings.append(ctx.undecided(
                            self.name, f"whether rules {a.name} and {b.name} can fire together",
                            solver, (a.name, b.name)))
        return findings

    def _finding(self, a, b, witness) -> Finding:
        return Finding(self.name, "info",
                       f"rules {a.name} ({head_to_text(a.head)}) and {b.name} "
                       f"({head_to_text(b.head)}) can fire together; the weights decide",
                       (a.name, b.name), witness)
