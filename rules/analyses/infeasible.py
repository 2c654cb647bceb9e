"""Inputs for which no decision satisfies the hard constraints."""

from __future__ import annotations

import z3

from greybox.errors import listed

from ._base import Analysis, Context, Finding


class InfeasibleInputs(Analysis):
    name = "infeasible-input"
    description = "inputs within their types for which no decision satisfies the constraints"

    def run(self, ctx: Context) -> list[Finding]:
        kb, enc = ctx.kb, ctx.enc
        hard = enc.hard_constraints()
        if not hard or any(f.check == "contradiction" and f.severity == "error"
                           for f in ctx.findings):
            return []
        inner = enc.free_names(("neural", "decided"))
        solver = ctx.solver(constraints=False)
        solver.add(*enc.domain(("input",)))
        body = z3.Not(z3.And(hard))
        if inner:
            consts = [enc.const(n) for n in inner]
            body = z3.ForAll(consts, z3.Implies(z3.And(enc.domain_for(inner) or [True]), body))
        solver.add(body)
        result = ctx.check(solver, doing="looking for inputs without a feasible decision")
        if result == z3.unknown:
            return [ctx.undecided(self.name, "whether every input has a feasible decision",
                                  solver)]
        if result == z3.unsat:
            return []
        witness = ctx.witness(solver.model(), roles=("input",))
        names = tuple(c.name for c in kb.constraints.values() if c.hard)
        return [Finding(self.name, "error",
                        "some inputs have no decision that satisfies the hard constraints "
                        f"({listed(names)}); narrow the input types or relax a constraint",
                        names, witness)]
