"""Defined variables whose expression can leave the declared type."""

from __future__ import annotations

import z3

from .. import _ast as A
from .._printer import type_to_text
from ._base import Analysis, Context, Finding, keep_partial


class DefineDomain(Analysis):
    name = "define-out-of-domain"
    description = "defined variables whose expression can take a value outside their type"

    def run(self, ctx: Context) -> list[Finding]:
        solver = ctx.solver(constraints=False)
        findings = []
        with keep_partial(findings):
            for name, var in ctx.kb.variables.items():
                if var.role != "defined" or not isinstance(var.type, (A.IntType, A.RealType)):
                    continue
                inside = ctx.enc.type_constraint(name)
                if inside is None:
                    continue
                result = ctx.check(solver, z3.Not(inside), doing=f"checking the range of {name}")
                if result == z3.sat:
                    model = solver.model()
                    value = model.eval(ctx.enc.var(name), model_completion=True)
                    findings.append(Finding(
                        self.name, "error",
                        f"{name} can evaluate to {value}, outside its type "
                        f"{type_to_text(var.type)}", (name,), ctx.witness(model)))
                elif result == z3.unknown:
                    findings.append(ctx.undecided(self.name, f"the range of {name}", solver,
                                                  (name,)))
        return findings
