"""Inputs on which no rule about a decided variable fires."""

from __future__ import annotations

import numpy as np
import z3

from .._missing import definite
from ._base import Analysis, Context, Finding, keep_partial


class Uncovered(Analysis):
    name = "uncovered"
    description = "inputs where no rule concludes a decided variable (its bias alone decides)"

    def run(self, ctx: Context) -> list[Finding]:
        solver = ctx.solver()
        pool = ctx.pool()
        findings = []
        with keep_partial(findings):
            for name in ctx.kb.decided:
                rules = ctx.kb.rules_for(name)
                if not rules:
                    findings.append(Finding(self.name, "info", f"no rule concludes {name}",
                                            (name,)))
                    continue
                silent = np.ones(len(pool), bool)
                for r in rules:
                    silent &= ~pool.body(r.name)
                if silent.any():
                    findings.append(Finding(
                        self.name, "info", f"no rule about {name} fires on some inputs",
                        (name,), pool.witness(int(np.argmax(silent)))))
                    continue
                result = ctx.check(solver, *[z3.Not(ctx.enc.expr(definite(ctx.kb, r.body))) for r in rules],
                                   doing=f"checking whether rules cover {name}")
                if result == z3.sat:
                    findings.append(Finding(
                        self.name, "info", f"no rule about {name} fires on some inputs",
                        (name,), ctx.witness(solver.model())))
                elif result == z3.unknown:
                    findings.append(ctx.undecided(self.name, f"whether rules cover {name}",
                                                  solver, (name,)))
        return findings
